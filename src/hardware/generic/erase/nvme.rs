//! NVMe secure erase through the admin pass-through ioctl (what IPA's
//! `_nvme_erase` does with `nvme id-ctrl` and `nvme format -s`), extended
//! with Sanitize.
//!
//! Order of preference, from the controller's Identify data (NVM Express
//! Base Specification 2.0, Figure 275, "Identify Controller"):
//!
//! 1. **Sanitize** (opcode 84h) when SANICAP (bytes 328–331) offers it:
//!    crypto erase (bit 0), then block erase (bit 1), then overwrite
//!    (bit 2, one pass of zeroes). Sanitize acts on the whole NVM
//!    subsystem's user data, every namespace, so it is used only when
//!    every namespace of the controller is being erased by this step. The
//!    sanitize status log page (81h) is polled to completion. AUSE is set
//!    so that a failed sanitize can be exited and the overwrite fallback
//!    can still write.
//! 2. **Format NVM** (opcode 80h) when OACS (bytes 256–257) bit 1 says it
//!    is supported, with Secure Erase Setting 2 (cryptographic erase) when
//!    FNA (byte 524) bit 2 says so, else 1 (user data erase), keeping the
//!    namespace's LBA format and protection settings. When FNA bit 0 or 1
//!    says format or secure erase applies to all namespaces, the format is
//!    a controller-wide operation too, with the same rule as sanitize.
//!    IPA formats the namespace with nvme-cli whatever FNA says, which
//!    erases every namespace of such controllers.
//!
//! Status codes "Invalid Command Opcode" and "Invalid Field in Command" make
//! a method "unsupported" (the next one is tried); other failures are
//! "failed". What each method leaves behind: overwrite with a zero pattern
//! reads back as zeroes; crypto erase, block erase and user-data erase
//! leave unspecified content ("indeterminate", NVMe 2.0 §5.23), so they are
//! verified as "no longer the old data".

use super::block::{Outcome, Promise};
use crate::root::Root;
use crate::sys::passthru::{nvme_admin, nvme_namespace_id, NvmeAdminCmd, NvmeCompletion};
use crate::util::bytes::{le16, le32};
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

const OP_GET_LOG_PAGE: u8 = 0x02;
const OP_IDENTIFY: u8 = 0x06;
const OP_FORMAT_NVM: u8 = 0x80;
const OP_SANITIZE: u8 = 0x84;
const LOG_SANITIZE_STATUS: u32 = 0x81;
const NSID_ALL: u32 = 0xffff_ffff;

/// The admin commands a device takes; a `File` in production, a recorded
/// fake in tests.
pub trait Admin {
    fn admin(&self, cmd: &mut NvmeAdminCmd, data: &mut [u8]) -> io::Result<NvmeCompletion>;
    fn namespace_id(&self) -> io::Result<u32>;
}

impl Admin for File {
    fn admin(&self, cmd: &mut NvmeAdminCmd, data: &mut [u8]) -> io::Result<NvmeCompletion> {
        nvme_admin(self, cmd, data)
    }
    fn namespace_id(&self) -> io::Result<u32> {
        nvme_namespace_id(self)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// The Identify Controller fields erase decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdCtrl {
    pub vid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub oacs: u16,
    pub sanicap: u32,
    pub nn: u32,
    pub fna: u8,
}

impl IdCtrl {
    pub fn parse(b: &[u8]) -> Option<IdCtrl> {
        (b.len() >= 4096).then(|| IdCtrl {
            vid: le16(b, 0),
            serial: text(&b[4..24]),
            model: text(&b[24..64]),
            firmware: text(&b[64..72]),
            oacs: le16(b, 256),
            sanicap: le32(b, 328),
            nn: le32(b, 516),
            fna: b[524],
        })
    }

    pub fn format_supported(&self) -> bool {
        self.oacs & 0b10 != 0
    }

    /// FNA bit 0 (format applies to all namespaces) or bit 1 (secure erase
    /// applies to all namespaces).
    pub fn format_is_controller_wide(&self) -> bool {
        self.fna & 0b11 != 0
    }

    pub fn crypto_format_supported(&self) -> bool {
        self.fna & 0b100 != 0
    }
}

/// The Identify Namespace fields a format must preserve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdNs {
    pub nsze: u64,
    pub flbas: u8,
    pub dps: u8,
    pub dlfeat: u8,
}

impl IdNs {
    pub fn parse(b: &[u8]) -> Option<IdNs> {
        (b.len() >= 4096).then(|| IdNs {
            nsze: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            flbas: b[26],
            dps: b[29],
            dlfeat: b[33],
        })
    }

    /// Format NVM dword 10 without SES: the current LBA format (FLBAS bits
    /// 3:0 and 6:5), metadata setting (bit 4), protection type and
    /// location (DPS bits 2:0 and 3).
    pub fn format_cdw10(&self, ses: u32) -> u32 {
        let f = u32::from(self.flbas);
        let d = u32::from(self.dps);
        (f & 0xf)
            | ((f >> 4) & 1) << 4
            | (d & 0x7) << 5
            | ((d >> 3) & 1) << 8
            | (ses & 0x7) << 9
            | ((f >> 5) & 0x3) << 12
    }
}

/// An NVMe erase method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    SanitizeCrypto,
    SanitizeBlock,
    SanitizeOverwrite,
    FormatCrypto { all_namespaces: bool },
    FormatUserData { all_namespaces: bool },
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::SanitizeCrypto => "nvme_sanitize_crypto_erase",
            Method::SanitizeBlock => "nvme_sanitize_block_erase",
            Method::SanitizeOverwrite => "nvme_sanitize_overwrite",
            Method::FormatCrypto { .. } => "nvme_format_crypto_erase",
            Method::FormatUserData { .. } => "nvme_format_user_data_erase",
        }
    }

    /// True when one command erases every namespace of the controller.
    pub fn controller_wide(self) -> bool {
        match self {
            Method::SanitizeCrypto | Method::SanitizeBlock | Method::SanitizeOverwrite => true,
            Method::FormatCrypto { all_namespaces } | Method::FormatUserData { all_namespaces } => {
                all_namespaces
            }
        }
    }

    fn promise(self) -> Promise {
        match self {
            Method::SanitizeOverwrite => Promise::Zeroes,
            _ => Promise::Changed,
        }
    }
}

/// The methods to try, strongest first, and why others are left out.
/// `whole_controller` says every namespace of the controller is being
/// erased, so controller-wide commands are allowed.
pub fn plan(c: &IdCtrl, whole_controller: bool) -> (Vec<Method>, Vec<(&'static str, String)>) {
    let mut m = vec![];
    let mut skipped = vec![];
    let sanitize = [
        (1u32, Method::SanitizeCrypto),
        (2, Method::SanitizeBlock),
        (4, Method::SanitizeOverwrite),
    ];
    if c.sanicap & 0b111 == 0 {
        skipped.push((
            "nvme_sanitize",
            format!(
                "the controller does not support Sanitize (SANICAP 0x{:x})",
                c.sanicap
            ),
        ));
    } else {
        for (bit, method) in sanitize {
            if c.sanicap & bit == 0 {
                continue;
            }
            if whole_controller {
                m.push(method);
            } else {
                skipped.push((
                    method.name(),
                    "Sanitize erases every namespace of the controller, and this step does \
                     not erase all of them"
                        .to_string(),
                ));
            }
        }
    }
    if !c.format_supported() {
        skipped.push((
            "nvme_format",
            format!(
                "the controller does not support Format NVM (OACS 0x{:x})",
                c.oacs
            ),
        ));
    } else {
        let all = c.format_is_controller_wide();
        let mut formats = vec![];
        if c.crypto_format_supported() {
            formats.push(Method::FormatCrypto {
                all_namespaces: all,
            });
        }
        formats.push(Method::FormatUserData {
            all_namespaces: all,
        });
        for f in formats {
            if all && !whole_controller {
                skipped.push((
                    f.name(),
                    format!(
                        "Format applies to every namespace of the controller (FNA 0x{:x}), \
                         and this step does not erase all of them",
                        c.fna
                    ),
                ));
            } else {
                m.push(f);
            }
        }
    }
    (m, skipped)
}

fn identify(dev: &dyn Admin, cns: u32, nsid: u32) -> io::Result<Result<Vec<u8>, u32>> {
    let mut buf = vec![0u8; 4096];
    let mut cmd = NvmeAdminCmd {
        opcode: OP_IDENTIFY,
        nsid,
        cdw10: cns,
        ..Default::default()
    };
    let c = dev.admin(&mut cmd, &mut buf)?;
    Ok(if c.status == 0 {
        Ok(buf)
    } else {
        Err(c.status)
    })
}

/// Identify Controller, or why the device cannot be treated as NVMe.
pub fn identify_controller(dev: &dyn Admin) -> Result<IdCtrl, Outcome> {
    match identify(dev, 1, 0) {
        Ok(Ok(b)) => Ok(IdCtrl::parse(&b).expect("4096 bytes")),
        Ok(Err(st)) => Err(Outcome::Failed(format!(
            "Identify Controller failed with NVMe status 0x{:x}",
            st & 0x7ff
        ))),
        Err(e) => Err(io_outcome("Identify Controller", e)),
    }
}

pub fn identify_namespace(dev: &dyn Admin, nsid: u32) -> Result<IdNs, Outcome> {
    match identify(dev, 0, nsid) {
        Ok(Ok(b)) => Ok(IdNs::parse(&b).expect("4096 bytes")),
        Ok(Err(st)) => Err(Outcome::Failed(format!(
            "Identify Namespace {nsid} failed with NVMe status 0x{:x}",
            st & 0x7ff
        ))),
        Err(e) => Err(io_outcome("Identify Namespace", e)),
    }
}

fn io_outcome(what: &str, e: io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            Outcome::Unsupported(format!("{what}: not an NVMe device ({e})"))
        }
        _ => Outcome::Failed(format!("{what}: {e}")),
    }
}

fn status_outcome(what: &str, status: u32) -> Outcome {
    let (sct, sc) = ((status >> 8) & 0x7, status & 0xff);
    if sct == 0 && (sc == 0x01 || sc == 0x02) {
        Outcome::Unsupported(format!(
            "{what}: the controller rejected the command as invalid (status 0x{:x})",
            status & 0x7ff
        ))
    } else {
        Outcome::Failed(format!(
            "{what} failed with NVMe status 0x{:x}",
            status & 0x7ff
        ))
    }
}

/// The sanitize status log page (81h): (SSTAT, SCDW10, estimated seconds
/// for overwrite, block erase, crypto erase; 0xffffffff = no estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SanitizeStatus {
    pub sprog: u16,
    pub sstat: u16,
    pub scdw10: u32,
    pub estimates: [u32; 3],
}

impl SanitizeStatus {
    pub fn parse(b: &[u8]) -> SanitizeStatus {
        SanitizeStatus {
            sprog: le16(b, 0),
            sstat: le16(b, 2),
            scdw10: le32(b, 4),
            estimates: [le32(b, 8), le32(b, 12), le32(b, 16)],
        }
    }

    /// SSTAT bits 2:0: 1 completed, 2 in progress, 3 failed, 4 completed
    /// without deallocation.
    pub fn state(&self) -> u16 {
        self.sstat & 0x7
    }
}

fn sanitize_log(dev: &dyn Admin) -> io::Result<Result<SanitizeStatus, u32>> {
    let mut buf = vec![0u8; 512];
    let numd = (buf.len() / 4 - 1) as u32;
    let mut cmd = NvmeAdminCmd {
        opcode: OP_GET_LOG_PAGE,
        nsid: NSID_ALL,
        cdw10: LOG_SANITIZE_STATUS | (numd & 0xffff) << 16,
        cdw11: numd >> 16,
        ..Default::default()
    };
    let c = dev.admin(&mut cmd, &mut buf)?;
    Ok(if c.status == 0 {
        Ok(SanitizeStatus::parse(&buf))
    } else {
        Err(c.status)
    })
}

/// Sanitize dword 10 for a method: SANACT, AUSE = 1, OWPASS = 1 for
/// overwrite (pattern 0 in dword 11, no inversion), NDAS = 0.
fn sanitize_cdw10(m: Method) -> u32 {
    let sanact = match m {
        Method::SanitizeBlock => 2,
        Method::SanitizeOverwrite => 3,
        Method::SanitizeCrypto => 4,
        _ => unreachable!("not a sanitize method"),
    };
    let owpass = if m == Method::SanitizeOverwrite { 1 } else { 0 };
    sanact | 1 << 3 | owpass << 4
}

/// Run one method. `nsid` is the namespace of `dev` (formats that apply
/// to one namespace); `wait` sleeps between sanitize status polls (tests
/// pass a no-op).
pub fn run(dev: &dyn Admin, m: Method, ns: &IdNs, nsid: u32, wait: &dyn Fn(Duration)) -> Outcome {
    match m {
        Method::FormatCrypto { all_namespaces } | Method::FormatUserData { all_namespaces } => {
            let ses = if matches!(m, Method::FormatCrypto { .. }) {
                2
            } else {
                1
            };
            let mut cmd = NvmeAdminCmd {
                opcode: OP_FORMAT_NVM,
                nsid: if all_namespaces { NSID_ALL } else { nsid },
                cdw10: ns.format_cdw10(ses),
                // A user-data erase may rewrite the media; give it hours
                // rather than the driver's 60 s admin timeout.
                timeout_ms: if ses == 2 { 600_000 } else { 4 * 3_600_000 },
                ..Default::default()
            };
            crate::util::log_at!(Info, "NVMe {} (SES {ses}) on namespace {nsid}", m.name());
            match dev.admin(&mut cmd, &mut []) {
                Ok(c) if c.status == 0 => Outcome::Done(m.promise()),
                Ok(c) => status_outcome("Format NVM", c.status),
                Err(e) => io_outcome("Format NVM", e),
            }
        }
        _ => sanitize(dev, m, wait),
    }
}

fn sanitize(dev: &dyn Admin, m: Method, wait: &dyn Fn(Duration)) -> Outcome {
    let cdw10 = sanitize_cdw10(m);
    let mut cmd = NvmeAdminCmd {
        opcode: OP_SANITIZE,
        cdw10,
        cdw11: 0,
        ..Default::default()
    };
    crate::util::log_at!(Info, "NVMe {}: starting", m.name());
    match dev.admin(&mut cmd, &mut []) {
        Ok(c) if c.status == 0 => {}
        Ok(c) => return status_outcome("Sanitize", c.status),
        Err(e) => return io_outcome("Sanitize", e),
    }
    let started = Instant::now();
    let mut deadline = Duration::from_secs(24 * 3600);
    let mut seen_running = false;
    let mut last_log = Instant::now();
    loop {
        let st = match sanitize_log(dev) {
            Ok(Ok(s)) => s,
            Ok(Err(status)) => {
                return Outcome::Failed(format!(
                    "reading the sanitize status log failed with NVMe status 0x{:x}",
                    status & 0x7ff
                ))
            }
            Err(e) => return Outcome::Failed(format!("reading the sanitize status log: {e}")),
        };
        let est = match m {
            Method::SanitizeOverwrite => st.estimates[0],
            Method::SanitizeBlock => st.estimates[1],
            _ => st.estimates[2],
        };
        if est != u32::MAX && est != 0 {
            deadline = Duration::from_secs(u64::from(est) * 2 + 600);
        }
        match st.state() {
            2 => seen_running = true,
            1 | 4 if seen_running || st.scdw10 == cdw10 => {
                crate::util::log_at!(
                    Info,
                    "NVMe {}: completed in {:.1} s",
                    m.name(),
                    started.elapsed().as_secs_f64()
                );
                return Outcome::Done(m.promise());
            }
            3 if seen_running || st.scdw10 == cdw10 => {
                // Leave the failure mode (AUSE was set) so that the
                // namespaces take writes again.
                let mut exit = NvmeAdminCmd {
                    opcode: OP_SANITIZE,
                    cdw10: 1,
                    ..Default::default()
                };
                let _ = dev.admin(&mut exit, &mut []);
                return Outcome::Failed(format!("{}: the sanitize operation failed", m.name()));
            }
            _ => {}
        }
        if started.elapsed() > deadline {
            return Outcome::Failed(format!(
                "{}: not complete after {} s",
                m.name(),
                deadline.as_secs()
            ));
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            crate::util::log_at!(
                Info,
                "NVMe {}: {:.1}% done",
                m.name(),
                f64::from(st.sprog) * 100.0 / 65536.0
            );
        }
        wait(Duration::from_secs(2));
    }
}

/// The controller (or subsystem) a namespace block device belongs to: the
/// name its sysfs `device` link points at ("nvme0").
pub fn controller_of(root: &Root, kname: &str) -> Option<String> {
    root.link_name(format!("/sys/block/{kname}/device"))
        .filter(|c| c.starts_with("nvme"))
}

/// Every namespace block device of that controller.
pub fn namespaces_of(root: &Root, controller: &str) -> Vec<String> {
    root.list("/sys/block")
        .into_iter()
        .filter(|k| k.starts_with("nvme"))
        .filter(|k| controller_of(root, k).as_deref() == Some(controller))
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Identify Controller rebuilt from recorded `nvme id-ctrl` output of
    /// a real drive: the fields the output lists, at their offsets in the
    /// specification; every other byte is zero (hand-built from recorded
    /// values, not a raw dump).
    pub fn id_ctrl(c: &IdCtrl) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..2].copy_from_slice(&c.vid.to_le_bytes());
        let pad = |s: &str, n: usize| format!("{s:<n$}").into_bytes();
        b[4..24].copy_from_slice(&pad(&c.serial, 20));
        b[24..64].copy_from_slice(&pad(&c.model, 40));
        b[64..72].copy_from_slice(&pad(&c.firmware, 8));
        b[256..258].copy_from_slice(&c.oacs.to_le_bytes());
        b[328..332].copy_from_slice(&c.sanicap.to_le_bytes());
        b[516..520].copy_from_slice(&c.nn.to_le_bytes());
        b[524] = c.fna;
        b
    }

    #[allow(clippy::too_many_arguments)]
    fn ctrl(
        vid: u16,
        sn: &str,
        mn: &str,
        fr: &str,
        oacs: u16,
        sanicap: u32,
        nn: u32,
        fna: u8,
    ) -> Vec<u8> {
        id_ctrl(&IdCtrl {
            vid,
            serial: sn.into(),
            model: mn.into(),
            firmware: fr.into(),
            oacs,
            sanicap,
            nn,
            fna,
        })
    }

    /// Samsung PM1733 (MZWLJ7T6HALA-00AU3), `nvme id-ctrl -H` in
    /// github.com/tnear/linux nvme-id-ctrl.md: OACS 0x5f, SANICAP 0x3
    /// (crypto + block erase), FNA 0x4 (crypto erase, per namespace), 32
    /// namespaces.
    pub fn pm1733() -> Vec<u8> {
        ctrl(
            0x144d,
            "S5RTNC0T104269",
            "SAMSUNG MZWLJ7T6HALA-00AU3",
            "EPK9CR5Q",
            0x5f,
            0x3,
            32,
            0x4,
        )
    }

    /// WDC PC SN730 256 GB, `nvme id-ctrl -o json` recorded in IPA's
    /// `tests/unit/samples/hardware_samples.py`
    /// (NVME_CLI_INFO_TEMPLATE_CRYPTO_SUPPORTED): OACS 23, SANICAP
    /// 1610612739 (0x60000003), FNA 4, NN 1.
    pub fn sn730() -> Vec<u8> {
        ctrl(
            0x15b7,
            "1951B3444502",
            "WDC PC SN730 SDBQNTY-256G-1001",
            "11170101",
            23,
            0x6000_0003,
            1,
            4,
        )
    }

    /// A controller that answers like the recorded one, keeps every
    /// command it was sent, and runs sanitize for `polls` status reads.
    pub struct Fake {
        pub ctrl: Vec<u8>,
        pub ns: Vec<u8>,
        pub sent: RefCell<Vec<NvmeAdminCmd>>,
        pub reject: Vec<(u8, u32)>,
        pub polls: RefCell<u32>,
        pub sanitize_fails: bool,
        pub last_sanitize: RefCell<u32>,
    }

    impl Fake {
        pub fn new(ctrl: Vec<u8>) -> Fake {
            let mut ns = vec![0u8; 4096];
            ns[0..8].copy_from_slice(&1_000_215_216u64.to_le_bytes());
            ns[26] = 0x12; // LBA format 2, metadata at end of LBA
            ns[29] = 0x09; // PI type 1, first 8 bytes
            Fake {
                ctrl,
                ns,
                sent: RefCell::new(vec![]),
                reject: vec![],
                polls: RefCell::new(3),
                sanitize_fails: false,
                last_sanitize: RefCell::new(0),
            }
        }

        pub fn opcodes(&self) -> Vec<(u8, u32, u32)> {
            self.sent
                .borrow()
                .iter()
                .map(|c| (c.opcode, c.nsid, c.cdw10))
                .collect()
        }
    }

    impl Admin for Fake {
        fn admin(&self, cmd: &mut NvmeAdminCmd, data: &mut [u8]) -> io::Result<NvmeCompletion> {
            self.sent.borrow_mut().push(*cmd);
            let ok = NvmeCompletion {
                status: 0,
                result: 0,
            };
            if let Some((_, st)) = self.reject.iter().find(|(op, _)| *op == cmd.opcode) {
                return Ok(NvmeCompletion {
                    status: *st,
                    result: 0,
                });
            }
            match cmd.opcode {
                OP_IDENTIFY if cmd.cdw10 == 1 => data.copy_from_slice(&self.ctrl),
                OP_IDENTIFY => data.copy_from_slice(&self.ns),
                OP_SANITIZE => *self.last_sanitize.borrow_mut() = cmd.cdw10,
                OP_GET_LOG_PAGE => {
                    let mut p = self.polls.borrow_mut();
                    let state: u16 = if *p > 0 {
                        *p -= 1;
                        2
                    } else if self.sanitize_fails {
                        3
                    } else {
                        1
                    };
                    data.fill(0);
                    data[2..4].copy_from_slice(&state.to_le_bytes());
                    data[4..8].copy_from_slice(&self.last_sanitize.borrow().to_le_bytes());
                    data[8..20].fill(0xff);
                }
                _ => {}
            }
            Ok(ok)
        }
        fn namespace_id(&self) -> io::Result<u32> {
            Ok(1)
        }
    }

    #[test]
    fn recorded_controllers_parse() {
        let c = IdCtrl::parse(&pm1733()).unwrap();
        assert_eq!(c.model, "SAMSUNG MZWLJ7T6HALA-00AU3");
        assert!(c.format_supported() && c.crypto_format_supported());
        assert!(!c.format_is_controller_wide());
        assert_eq!(c.nn, 32);
        let c = IdCtrl::parse(&sn730()).unwrap();
        assert_eq!(c.sanicap & 0b111, 0b011);
        assert!(IdCtrl::parse(&[0u8; 100]).is_none());
    }

    #[test]
    fn plans_follow_the_capabilities() {
        let c = IdCtrl::parse(&pm1733()).unwrap();
        let (m, _) = plan(&c, true);
        assert_eq!(
            m,
            vec![
                Method::SanitizeCrypto,
                Method::SanitizeBlock,
                Method::FormatCrypto {
                    all_namespaces: false
                },
                Method::FormatUserData {
                    all_namespaces: false
                }
            ]
        );
        // one namespace of 32 being erased: no sanitize, formats only
        let (m, skipped) = plan(&c, false);
        assert_eq!(
            m[0],
            Method::FormatCrypto {
                all_namespaces: false
            }
        );
        assert!(skipped
            .iter()
            .any(|(n, _)| *n == "nvme_sanitize_crypto_erase"));
        // FNA bit 1: secure erase hits every namespace
        let mut raw = pm1733();
        raw[524] = 0x6;
        let (m, skipped) = plan(&IdCtrl::parse(&raw).unwrap(), false);
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(skipped.len(), 4);
        // no format, no sanitize (the FORMAT_UNSUPPORTED case IPA tests)
        let none = IdCtrl::parse(&ctrl(1, "s", "m", "f", 0, 0, 1, 0)).unwrap();
        let (m, skipped) = plan(&none, true);
        assert!(m.is_empty());
        assert!(skipped[0].1.contains("SANICAP") && skipped[1].1.contains("OACS"));
    }

    #[test]
    fn format_keeps_the_lba_format_and_protection() {
        let ns = IdNs::parse(&Fake::new(sn730()).ns).unwrap();
        // LBAF 2, MSET 1, PI 1, PIL 1, SES 2
        assert_eq!(ns.format_cdw10(2), 2 | 1 << 4 | 1 << 5 | 1 << 8 | 2 << 9);
        let mut raw = vec![0u8; 4096];
        raw[26] = 0x60 | 0x3; // LBAF index 0x33
        assert_eq!(
            IdNs::parse(&raw).unwrap().format_cdw10(1),
            3 | 1 << 9 | 3 << 12
        );
    }

    #[test]
    fn sanitize_polls_to_completion() {
        let f = Fake::new(sn730());
        let ns = IdNs::default();
        let waits = RefCell::new(0);
        let out = run(&f, Method::SanitizeCrypto, &ns, 1, &|_| {
            *waits.borrow_mut() += 1
        });
        assert_eq!(out, Outcome::Done(Promise::Changed));
        assert_eq!(*waits.borrow(), 3);
        let ops = f.opcodes();
        // crypto erase, AUSE
        assert_eq!(ops[0], (OP_SANITIZE, 0, 4 | 1 << 3));
        assert!(ops[1..]
            .iter()
            .all(|o| o.0 == OP_GET_LOG_PAGE && o.2 & 0xff == 0x81));
        // overwrite: one pass of zeroes
        let f = Fake::new(sn730());
        assert_eq!(
            run(&f, Method::SanitizeOverwrite, &ns, 1, &|_| {}),
            Outcome::Done(Promise::Zeroes)
        );
        assert_eq!(f.opcodes()[0].2, 3 | 1 << 3 | 1 << 4);
    }

    #[test]
    fn failed_sanitize_exits_failure_mode() {
        let mut f = Fake::new(sn730());
        f.sanitize_fails = true;
        let out = run(&f, Method::SanitizeBlock, &IdNs::default(), 1, &|_| {});
        assert!(
            matches!(out, Outcome::Failed(ref w) if w.contains("failed")),
            "{out:?}"
        );
        assert_eq!(f.opcodes().last().unwrap(), &(OP_SANITIZE, 0, 1));
    }

    #[test]
    fn status_codes_split_unsupported_from_failed() {
        let mut f = Fake::new(pm1733());
        f.reject = vec![(OP_FORMAT_NVM, 0x02)];
        let ns = IdNs::default();
        let m = Method::FormatCrypto {
            all_namespaces: false,
        };
        assert!(matches!(
            run(&f, m, &ns, 5, &|_| {}),
            Outcome::Unsupported(_)
        ));
        assert_eq!(f.opcodes()[0], (OP_FORMAT_NVM, 5, 2 << 9));
        f.reject = vec![(OP_FORMAT_NVM, 0x10a)]; // Invalid Format
        assert!(
            matches!(run(&f, m, &ns, 5, &|_| {}), Outcome::Failed(ref w) if w.contains("0x10a"))
        );
        let all = Method::FormatUserData {
            all_namespaces: true,
        };
        f.reject.clear();
        assert_eq!(
            run(&f, all, &ns, 5, &|_| {}),
            Outcome::Done(Promise::Changed)
        );
        assert_eq!(
            f.opcodes().last().unwrap(),
            &(OP_FORMAT_NVM, NSID_ALL, 1 << 9)
        );
    }

    #[test]
    fn a_regular_file_is_not_nvme() {
        let f = File::open("/proc/self/status").unwrap();
        let r = identify_controller(&f);
        if crate::sys::under_qemu_user() {
            // qemu-user answers the NVMe admin ioctl it does not know with
            // ENOSYS instead of asking the kernel
            assert!(r.is_err());
        } else {
            assert!(matches!(r, Err(Outcome::Unsupported(_))));
        }
    }
}
