//! SCSI SANITIZE (SBC-4 §5.30) for SAS and other SCSI disks, through
//! SG_IO, without sg3_utils. IPA has no SCSI path (its non-NVMe secure
//! erase is ATA only, so SAS disks are always shredded).
//!
//! A service action is used only when REPORT SUPPORTED OPERATION CODES
//! (SPC-5 §6.35, one command with service action) says the device supports
//! it: cryptographic erase (03h), then block erase (02h), then overwrite
//! (01h, one pass of a 4-byte zero pattern). The command is sent with IMMED
//! and AUSE set; completion is polled with TEST UNIT READY, which answers
//! NOT READY / "sanitize in progress" (04h/1Bh) until it is done and
//! MEDIUM ERROR / "sanitize command failed" (31h/03h) if it failed, after
//! which EXIT FAILURE MODE (1Fh) lets the overwrite fallback write.

use super::ata::sense_key;
use super::block::{Outcome, Promise};
use crate::error::AgentError;
use crate::sys::passthru::{sg_io, SgDir, SgResult};
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

const SANITIZE: u8 = 0x48;
const SA_OVERWRITE: u8 = 0x01;
const SA_BLOCK_ERASE: u8 = 0x02;
const SA_CRYPTO_ERASE: u8 = 0x03;
const SA_EXIT_FAILURE_MODE: u8 = 0x1f;

/// Something that executes SCSI commands.
pub trait ScsiPort {
    fn scsi(
        &self,
        cdb: &[u8],
        dir: SgDir,
        data: &mut [u8],
        timeout: Duration,
    ) -> io::Result<SgResult>;
}

impl ScsiPort for File {
    fn scsi(
        &self,
        cdb: &[u8],
        dir: SgDir,
        data: &mut [u8],
        timeout: Duration,
    ) -> io::Result<SgResult> {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        sg_io(self, cdb, dir, data, ms)
    }
}

/// The sanitize service actions, strongest first: (SA, method name,
/// what the device reads back).
pub const ACTIONS: [(u8, &str, Promise); 3] = [
    (
        SA_CRYPTO_ERASE,
        "scsi_sanitize_crypto_erase",
        Promise::Changed,
    ),
    (
        SA_BLOCK_ERASE,
        "scsi_sanitize_block_erase",
        Promise::Changed,
    ),
    (SA_OVERWRITE, "scsi_sanitize_overwrite", Promise::Zeroes),
];

/// REPORT SUPPORTED OPERATION CODES for SANITIZE with service action `sa`:
/// `Ok(true/false)`, or `Err` when the device cannot be asked.
pub fn supports(port: &dyn ScsiPort, sa: u8) -> Result<bool, AgentError> {
    let cdb = [0xa3, 0x0c, 0x02, SANITIZE, 0, sa, 0, 0, 0, 32, 0, 0];
    let mut buf = [0u8; 32];
    let r = port
        .scsi(&cdb, SgDir::FromDevice, &mut buf, Duration::from_secs(30))
        .map_err(|e| AgentError::erase(format!("the device takes no SCSI commands ({e})")))?;
    if r.host_status != 0 {
        return Err(AgentError::erase(format!(
            "REPORT SUPPORTED OPERATION CODES: host status 0x{:x}",
            r.host_status
        )));
    }
    if r.status != 0 {
        return Err(AgentError::erase(match sense_key(&r.sense) {
            Some((k, asc, ascq)) => format!(
                "REPORT SUPPORTED OPERATION CODES failed (sense key {k:x}, ASC/ASCQ \
                 {asc:02x}/{ascq:02x}); SANITIZE support unknown"
            ),
            None => format!(
                "REPORT SUPPORTED OPERATION CODES failed (status 0x{:x})",
                r.status
            ),
        }));
    }
    // SUPPORT field: 011b supported as the standard says, 101b vendor-specific.
    Ok(matches!(buf[1] & 0x7, 0b011 | 0b101))
}

fn sanitize_cdb(sa: u8, param_len: u16) -> [u8; 10] {
    let l = param_len.to_be_bytes();
    // IMMED (bit 7) and AUSE (bit 5) with the service action.
    [SANITIZE, 0x80 | 0x20 | sa, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

/// Run one sanitize service action to completion.
pub fn run(port: &dyn ScsiPort, sa: u8, promise: Promise, wait: &dyn Fn(Duration)) -> Outcome {
    // Overwrite parameters: OWCOUNT 1, no inversion, a 4-byte zero pattern.
    let mut params = [0x01u8, 0, 0, 4, 0, 0, 0, 0];
    let (dir, data): (SgDir, &mut [u8]) = if sa == SA_OVERWRITE {
        (SgDir::ToDevice, &mut params)
    } else {
        (SgDir::None, &mut [])
    };
    let cdb = sanitize_cdb(sa, data.len() as u16);
    match port.scsi(&cdb, dir, data, Duration::from_secs(120)) {
        Ok(r) if r.status == 0 && r.host_status == 0 => {}
        Ok(r) => {
            return match sense_key(&r.sense) {
                Some((0x5, asc, ascq)) => Outcome::Unsupported(format!(
                    "SANITIZE rejected (ILLEGAL REQUEST, ASC/ASCQ {asc:02x}/{ascq:02x})"
                )),
                Some((k, asc, ascq)) => Outcome::Failed(format!(
                    "SANITIZE failed (sense key {k:x}, ASC/ASCQ {asc:02x}/{ascq:02x})"
                )),
                None => Outcome::Failed(format!(
                    "SANITIZE failed (status 0x{:x}, host 0x{:x})",
                    r.status, r.host_status
                )),
            }
        }
        Err(e) => return Outcome::Failed(format!("SANITIZE: {e}")),
    }
    let started = Instant::now();
    let deadline = Duration::from_secs(48 * 3600);
    loop {
        let tur = [0u8; 6];
        match port.scsi(&tur, SgDir::None, &mut [], Duration::from_secs(30)) {
            // GOOD from the device *and* no transport error: a host error
            // with status 0 is not "sanitize complete" (found in review)
            Ok(r) if r.status == 0 && r.host_status == 0 => {
                crate::util::log_at!(
                    Info,
                    "SCSI sanitize (action 0x{sa:02x}) completed in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Outcome::Done(promise);
            }
            Ok(r) => match sense_key(&r.sense) {
                // in progress, or a unit attention to clear: poll again
                Some((0x2, 0x04, 0x1b)) | Some((0x6, _, _)) => {}
                Some((0x3, 0x31, 0x03)) => {
                    let exit = sanitize_cdb(SA_EXIT_FAILURE_MODE, 0);
                    let _ = port.scsi(&exit, SgDir::None, &mut [], Duration::from_secs(60));
                    return Outcome::Failed("the SCSI sanitize operation failed".into());
                }
                Some((k, asc, ascq)) => {
                    return Outcome::Failed(format!(
                        "waiting for SANITIZE: sense key {k:x}, ASC/ASCQ {asc:02x}/{ascq:02x}"
                    ))
                }
                None => {
                    return Outcome::Failed(format!(
                        "waiting for SANITIZE: status 0x{:x}, host 0x{:x}",
                        r.status, r.host_status
                    ))
                }
            },
            Err(e) => return Outcome::Failed(format!("waiting for SANITIZE: {e}")),
        }
        if started.elapsed() > deadline {
            return Outcome::Failed(format!(
                "SANITIZE not complete after {} s",
                deadline.as_secs()
            ));
        }
        wait(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A SAS disk model: which service actions RSOC reports, how many TEST
    /// UNIT READY polls the sanitize takes, and whether it fails.
    struct Sas {
        supported: Vec<u8>,
        rsoc_ok: bool,
        polls: RefCell<u32>,
        fails: bool,
        host_error: bool,
        sent: RefCell<Vec<Vec<u8>>>,
    }

    fn check(key: u8, asc: u8, ascq: u8) -> SgResult {
        SgResult {
            status: 2,
            sense: vec![0x72, key, asc, ascq, 0, 0, 0, 0],
            ..Default::default()
        }
    }

    impl ScsiPort for Sas {
        fn scsi(
            &self,
            cdb: &[u8],
            _d: SgDir,
            data: &mut [u8],
            _t: Duration,
        ) -> io::Result<SgResult> {
            self.sent.borrow_mut().push(cdb.to_vec());
            Ok(match cdb[0] {
                0xa3 if !self.rsoc_ok => check(0x5, 0x20, 0),
                0xa3 => {
                    data[1] = if self.supported.contains(&cdb[5]) {
                        0b011
                    } else {
                        0b001
                    };
                    SgResult::default()
                }
                SANITIZE => SgResult::default(),
                0x00 => {
                    let mut p = self.polls.borrow_mut();
                    if *p > 0 {
                        *p -= 1;
                        check(0x2, 0x04, 0x1b)
                    } else if self.fails {
                        check(0x3, 0x31, 0x03)
                    } else if self.host_error {
                        // DID_TIME_OUT with a GOOD status byte and no sense
                        SgResult {
                            host_status: 0x03,
                            ..SgResult::default()
                        }
                    } else {
                        SgResult::default()
                    }
                }
                _ => check(0x5, 0x20, 0),
            })
        }
    }

    fn sas(supported: &[u8]) -> Sas {
        Sas {
            supported: supported.to_vec(),
            rsoc_ok: true,
            polls: RefCell::new(2),
            fails: false,
            host_error: false,
            sent: RefCell::new(vec![]),
        }
    }

    #[test]
    fn support_is_asked_per_service_action() {
        let d = sas(&[SA_BLOCK_ERASE, SA_OVERWRITE]);
        assert_eq!(supports(&d, SA_CRYPTO_ERASE), Ok(false));
        assert_eq!(supports(&d, SA_BLOCK_ERASE), Ok(true));
        assert_eq!(
            d.sent.borrow()[0],
            vec![0xa3, 0x0c, 0x02, 0x48, 0, 3, 0, 0, 0, 32, 0, 0]
        );
        let mut old = sas(&[]);
        old.rsoc_ok = false;
        assert!(supports(&old, SA_BLOCK_ERASE)
            .unwrap_err()
            .details
            .contains("unknown"));
        let f = File::open("/proc/self/status").unwrap();
        assert!(supports(&f, SA_CRYPTO_ERASE).is_err());
    }

    #[test]
    fn sanitize_polls_until_ready() {
        let d = sas(&[SA_OVERWRITE]);
        let n = RefCell::new(0);
        let out = run(&d, SA_OVERWRITE, Promise::Zeroes, &|_| *n.borrow_mut() += 1);
        assert_eq!(out, Outcome::Done(Promise::Zeroes));
        assert_eq!(*n.borrow(), 2);
        assert_eq!(d.sent.borrow()[0], vec![0x48, 0xa1, 0, 0, 0, 0, 0, 0, 8, 0]);
    }

    #[test]
    fn failed_sanitize_exits_failure_mode() {
        let mut d = sas(&[SA_CRYPTO_ERASE]);
        d.fails = true;
        let out = run(&d, SA_CRYPTO_ERASE, Promise::Changed, &|_| {});
        assert!(matches!(out, Outcome::Failed(_)));
        assert_eq!(d.sent.borrow().last().unwrap()[..2], [0x48, 0xbf]);
    }

    /// A transport error during the TEST UNIT READY poll is not a finished
    /// sanitize, even with a GOOD status byte (found in review).
    #[test]
    fn a_transport_error_while_polling_is_not_done() {
        let mut d = sas(&[SA_OVERWRITE]);
        d.host_error = true;
        let out = run(&d, SA_OVERWRITE, Promise::Zeroes, &|_| {});
        assert!(
            matches!(out, Outcome::Failed(ref w) if w.contains("host 0x3")),
            "{out:?}"
        );
    }
}
