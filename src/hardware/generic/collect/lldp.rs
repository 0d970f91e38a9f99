//! LLDP (IEEE 802.1AB) neighbours: IPA's `netutils.get_lldp_info` and
//! `GenericHardwareManager.collect_lldp_data`, reported as IPA does: per
//! interface a list of `[type, "hex value"]` TLV pairs, raw (the whole
//! value after the 2-byte header, lower-case hex), in wire order, the End
//! TLV included as `[0, ""]`.
//!
//! How it listens, and where it differs from IPA:
//! * every interface at once, one AF_PACKET socket each (ethertype
//!   0x88cc), with poll(2) and **one deadline** for the whole collection:
//!   at most `lldp_timeout`, where IPA restarts its `select` timeout after
//!   every interface that answers (up to N × the timeout);
//! * the sockets join the LLDP multicast groups (PACKET_ADD_MEMBERSHIP)
//!   instead of setting IFF_PROMISC on the NIC, so nothing else about the
//!   NIC changes and there is nothing to undo;
//! * a NIC that is down is brought up for the listen and taken down again
//!   afterwards (IPA listens on it as it is and hears nothing: its ramdisk
//!   relies on DHCP on every NIC having brought them up);
//! * a frame is taken only when it is an LLDPDU: its TLVs all fit in the
//!   frame and it starts with the mandatory Chassis ID, Port ID and TTL
//!   TLVs (802.1AB 9.2.7.7.1 has receivers discard anything else). Other
//!   frames are skipped and the NIC keeps listening, up to
//!   [`MAX_FRAMES_PER_NIC`] frames, after which it is given up (a flood
//!   cannot keep the others, or the CPU, busy). IPA takes the first frame
//!   of the ethertype whatever it holds;
//! * the list stops at the End TLV; IPA goes on into the Ethernet padding
//!   and reports each pair of zero bytes as one more `[0, ""]`;
//! * frames this host sent itself (an lldpd in the ramdisk) are ignored.
//!
//! One collection per interface per process: later inventories (lookup,
//! the `lldp` collector, `poll.get_hardware_info`) reuse it, as IPA's
//! cached inventory does for inspection and lookup; IPA's wait for DHCP
//! and its `lldp` collector would listen again each time.

use crate::sys::packet::{self, PacketSocket, Received, ETH_P_LLDP, LLDP_GROUPS};
use crate::util::lock;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One TLV as the inventory reports it: type and lower-case hex value.
pub type Tlv = (u8, String);

/// Frames read from one NIC before it is given up on.
pub const MAX_FRAMES_PER_NIC: usize = 256;
/// Frames read from one NIC per poll wake-up, so a flooded NIC cannot
/// starve the others.
const BATCH: usize = 16;
/// The receive buffer: the largest jumbo frame; longer ones are cut.
const FRAME_BUF: usize = 9216;

const TLV_END: u8 = 0;
const TLV_CHASSIS_ID: u8 = 1;
const TLV_PORT_ID: u8 = 2;
const TLV_TTL: u8 = 3;

/// Why a frame is not an LLDPDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    /// Shorter than an Ethernet header.
    Short(usize),
    /// Another ethertype.
    NotLldp(u16),
    /// A TLV (header or value) runs past the end of the frame.
    Truncated { offset: usize, tlv_type: u8 },
    /// The first three TLVs are not Chassis ID, Port ID and TTL with
    /// their lengths.
    Mandatory {
        position: usize,
        tlv_type: u8,
        len: usize,
    },
    /// Cut by the receive buffer.
    TooLong(usize),
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadFrame::Short(n) => write!(f, "{n} bytes, shorter than an Ethernet header"),
            BadFrame::NotLldp(t) => write!(f, "ethertype {t:#06x}, not LLDP"),
            BadFrame::Truncated { offset, tlv_type } => write!(
                f,
                "TLV type {tlv_type} at byte {offset} runs past the end of the frame"
            ),
            BadFrame::Mandatory {
                position,
                tlv_type,
                len,
            } => write!(
                f,
                "TLV {position} is type {tlv_type} of {len} bytes, not the mandatory \
                 Chassis ID, Port ID, TTL"
            ),
            BadFrame::TooLong(n) => write!(f, "{n} bytes, more than {FRAME_BUF}"),
        }
    }
}

/// The TLVs of one Ethernet frame (destination, source, ethertype, then
/// the LLDPDU; one 802.1Q tag is skipped), checked as the module comment
/// says. Total: any input gives TLVs or a [`BadFrame`], never a panic,
/// and never reads past the slice.
pub fn parse_frame(frame: &[u8]) -> Result<Vec<(u8, &[u8])>, BadFrame> {
    if frame.len() < 14 {
        return Err(BadFrame::Short(frame.len()));
    }
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == 0x8100 && frame.len() >= 18 {
        at = 16;
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
    }
    if ethertype != ETH_P_LLDP {
        return Err(BadFrame::NotLldp(ethertype));
    }
    let tlvs = parse_tlvs(&frame[at + 2..], at + 2)?;
    // 802.1AB: Chassis ID (2..=256), Port ID (2..=256), TTL (2) first
    let want = [
        (TLV_CHASSIS_ID, 2..=256),
        (TLV_PORT_ID, 2..=256),
        (TLV_TTL, 2..=usize::MAX),
    ];
    for (i, (ty, lens)) in want.into_iter().enumerate() {
        match tlvs.get(i) {
            Some((t, v)) if *t == ty && lens.contains(&v.len()) => {}
            Some((t, v)) => {
                return Err(BadFrame::Mandatory {
                    position: i + 1,
                    tlv_type: *t,
                    len: v.len(),
                })
            }
            None => {
                return Err(BadFrame::Mandatory {
                    position: i + 1,
                    tlv_type: TLV_END,
                    len: 0,
                })
            }
        }
    }
    Ok(tlvs)
}

/// IPA's `_parse_tlv` made total: 7-bit type and 9-bit length, then the
/// value; stops after the End TLV (type 0), which is kept. A lone
/// trailing byte (padding) is ignored; a value longer than what is left
/// is an error, not a short value. `base` only numbers the error.
pub fn parse_tlvs(mut buf: &[u8], base: usize) -> Result<Vec<(u8, &[u8])>, BadFrame> {
    let mut out = vec![];
    let mut offset = base;
    while buf.len() >= 2 {
        let hdr = u16::from_be_bytes([buf[0], buf[1]]);
        let (ty, len) = ((hdr >> 9) as u8, (hdr & 0x01ff) as usize);
        let Some(value) = buf.get(2..2 + len) else {
            return Err(BadFrame::Truncated {
                offset,
                tlv_type: ty,
            });
        };
        out.push((ty, value));
        if ty == TLV_END {
            break;
        }
        buf = &buf[2 + len..];
        offset += 2 + len;
    }
    Ok(out)
}

use crate::util::bytes::hex;

/// The inventory's form of a frame's TLVs.
pub fn encode(tlvs: &[(u8, &[u8])]) -> Vec<Tlv> {
    tlvs.iter().map(|(t, v)| (*t, hex(v))).collect()
}

/// Something [`listen`] reads frames from: a packet socket, or a datagram
/// socket standing in for one in tests.
pub trait FrameSource: AsRawFd {
    /// One frame into `buf`; `None` when none is queued.
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<Option<Received>>;
}

impl FrameSource for PacketSocket {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.recv(buf)
    }
}

/// What [`listen`] found on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The first LLDPDU's TLVs.
    Frame(Vec<Tlv>),
    /// Nothing valid before the deadline (or the frame budget ran out):
    /// IPA's `[]`.
    Nothing,
    /// The socket failed while reading: IPA leaves the interface out.
    Failed,
}

/// What each interface said, in the order the interfaces were given
/// (a Vec, not a map: smaller code for a handful of NICs).
pub type PerInterface<T> = Vec<(String, T)>;

/// The value for interface `name`.
pub fn get<'a, T>(list: &'a PerInterface<T>, name: &str) -> Option<&'a T> {
    list.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Wait on every source at once until each has delivered an LLDPDU or
/// `deadline` passes, reading at most `max_frames` frames per source.
/// Sources that are done are dropped at once (leaving their multicast
/// groups). The result is in the sources' order.
pub fn listen<S: FrameSource>(
    sources: Vec<(String, S)>,
    deadline: Instant,
    max_frames: usize,
) -> PerInterface<Heard> {
    let order: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
    let mut out: PerInterface<Heard> = vec![];
    // (name, source, frames read)
    let mut waiting: Vec<(String, S, usize)> =
        sources.into_iter().map(|(n, s)| (n, s, 0)).collect();
    let mut buf = vec![0u8; FRAME_BUF];
    if !waiting.is_empty() {
        crate::util::log_at!(
            Info,
            "Waiting on LLDP info for interfaces: {:?}, timeout: {:.1} s",
            waiting.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
            deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        );
    }
    while !waiting.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let left_ms = (deadline - now).as_millis().saturating_add(1);
        let fds: Vec<RawFd> = waiting.iter().map(|w| w.1.as_raw_fd()).collect();
        let ready = match packet::poll_any(&fds, left_ms.min(i32::MAX as u128) as i32) {
            Ok(r) => r,
            Err(e) => {
                crate::util::log_at!(Error, "Error while getting LLDP info: poll: {e}");
                break;
            }
        };
        let mut done = vec![false; waiting.len()];
        for (i, (name, src, count)) in waiting.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let result = read_batch(name, src, count, max_frames, &mut buf);
            if let Some(r) = result {
                out.push((name.clone(), r));
                done[i] = true;
            }
        }
        let mut i = 0;
        waiting.retain(|_| {
            i += 1;
            !done[i - 1]
        });
    }
    if !waiting.is_empty() {
        crate::util::log_at!(
            Warn,
            "LLDP timed out, remaining interfaces: {:?}",
            waiting.iter().map(|w| w.0.as_str()).collect::<Vec<_>>()
        );
    }
    for (name, _, _) in waiting {
        out.push((name, Heard::Nothing));
    }
    order
        .into_iter()
        .filter_map(|n| {
            let i = out.iter().position(|(o, _)| *o == n)?;
            Some(out.swap_remove(i))
        })
        .collect()
}

/// Read up to [`BATCH`] queued frames of one source; `Some` when the
/// interface is done.
fn read_batch<S: FrameSource>(
    name: &str,
    src: &S,
    count: &mut usize,
    max_frames: usize,
    buf: &mut [u8],
) -> Option<Heard> {
    for _ in 0..BATCH {
        if *count >= max_frames {
            crate::util::log_at!(
                Warn,
                "{count} frames on {name} and no valid LLDPDU among them: not listening \
                 on it any more"
            );
            return Some(Heard::Nothing);
        }
        let r = match src.recv_frame(buf) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                crate::util::log_at!(
                    Error,
                    "Socket for network interface {name} said that it was ready to read we \
                     were unable to read from the socket while trying to get LLDP packet. \
                     Skipping this network interface. ({e})"
                );
                return Some(Heard::Failed);
            }
        };
        if r.outgoing {
            continue;
        }
        *count += 1;
        let parsed = if r.full_len > r.len {
            Err(BadFrame::TooLong(r.full_len))
        } else {
            parse_frame(&buf[..r.len])
        };
        match parsed {
            Ok(tlvs) => {
                crate::util::log_at!(Info, "Found LLDP info for interface: {name}");
                return Some(Heard::Frame(encode(&tlvs)));
            }
            // the first bad frame of a NIC is worth a warning, a flood is not
            Err(e) if *count == 1 => {
                crate::util::log_at!(
                    Warn,
                    "skipping a frame on {name} that is not an LLDPDU: {e}"
                )
            }
            Err(e) => crate::util::log_at!(
                Debug,
                "skipping a frame on {name} that is not an LLDPDU: {e}"
            ),
        }
    }
    None
}

/// Interfaces brought up for the listen, taken down again when dropped
/// (also on a panic).
struct BroughtUp {
    sock: Option<crate::sys::net::IfSocket>,
    names: Vec<String>,
}

impl Drop for BroughtUp {
    fn drop(&mut self) {
        let Some(sock) = &self.sock else { return };
        for name in self.names.iter().rev() {
            match sock.set_up(name, false) {
                Ok(()) => crate::util::log_at!(
                    Info,
                    "{name} is down again, as it was before the LLDP listen"
                ),
                Err(e) => crate::util::log_at!(
                    Warn,
                    "taking {name} down again after the LLDP listen: {e}"
                ),
            }
        }
    }
}

/// Listen on the live interfaces `names` (never `lo`) for at most
/// `timeout` in all: open, bring up the down ones, join the groups,
/// [`listen`], restore. An interface whose socket cannot be set up is
/// left out (IPA leaves every interface out then).
pub fn capture(names: &[String], timeout: Duration) -> PerInterface<Heard> {
    let deadline = Instant::now() + timeout;
    let ifsock = crate::sys::net::IfSocket::new()
        .map_err(|e| crate::util::log_at!(Warn, "LLDP: no socket for interface flags: {e}"))
        .ok();
    let mut up = BroughtUp {
        sock: ifsock,
        names: vec![],
    };
    let mut sources = vec![];
    for name in names.iter().filter(|n| n.as_str() != "lo") {
        if let Some(s) = &up.sock {
            if let Ok(false) = s.is_up(name) {
                match s.set_up(name, true) {
                    Ok(()) => {
                        crate::util::log_at!(
                            Info,
                            "{name} is down: bringing it up to listen for LLDP"
                        );
                        up.names.push(name.clone());
                    }
                    Err(e) => crate::util::log_at!(
                        Warn,
                        "{name} is down and could not be brought up: {e}"
                    ),
                }
            }
        }
        let sock = PacketSocket::open(name, ETH_P_LLDP).and_then(|s| {
            for g in LLDP_GROUPS {
                s.join_multicast(g)?;
            }
            Ok(s)
        });
        match sock {
            Ok(s) => sources.push((name.clone(), s)),
            Err(e) => crate::util::log_at!(Error, "Failed to open an LLDP socket on {name}: {e}"),
        }
    }
    let heard = listen(sources, deadline, MAX_FRAMES_PER_NIC);
    drop(up);
    heard
}

/// What each interface said, collected once per process (see the module
/// comment): `None` for an interface whose socket failed.
static CACHE: Mutex<PerInterface<Option<Vec<Tlv>>>> = Mutex::new(Vec::new());
/// Held during a capture, so that two callers do not listen twice.
static CAPTURING: Mutex<()> = Mutex::new(());

/// IPA's `collect_lldp_data(interface_names)`: the TLVs per interface,
/// listening (at most `timeout`) only on interfaces not heard before.
/// Interfaces whose socket failed are absent.
pub fn lldp_data(names: &[String], timeout: Duration) -> PerInterface<Vec<Tlv>> {
    let _one = lock(&CAPTURING);
    let missing: Vec<String> = {
        let cache = lock(&CACHE);
        names
            .iter()
            .filter(|n| n.as_str() != "lo" && get(&cache, n).is_none())
            .cloned()
            .collect()
    };
    if !missing.is_empty() {
        let heard = capture(&missing, timeout);
        let mut cache = lock(&CACHE);
        for name in missing {
            let v = match get(&heard, &name) {
                Some(Heard::Frame(t)) => Some(t.clone()),
                Some(Heard::Nothing) => Some(vec![]),
                Some(Heard::Failed) | None => None,
            };
            cache.push((name, v));
        }
    }
    let cache = lock(&CACHE);
    names
        .iter()
        .filter_map(|n| Some((n.clone(), get(&cache, n)?.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// IPA's test vector (tests/unit/test_netutils.py).
    const IPA_FRAME: &str = "0180c200000e885a92365a3988cc\
                             020704885a92ec5459040d0545746865726e6574312f3138\
                             060200780000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A frame: LLDP multicast, a source MAC, 0x88cc, then the TLVs.
    fn frame(tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut f = unhex("0180c200000e525400aabbcc88cc");
        for (t, v) in tlvs {
            let hdr = ((*t as u16) << 9) | v.len() as u16;
            f.extend(hdr.to_be_bytes());
            f.extend(*v);
        }
        f
    }

    fn good() -> Vec<u8> {
        frame(&[
            (1, b"\x04\x88\x5a\x92\xec\x54\x59"),
            (2, b"\x05Ethernet1/18"),
            (3, b"\x00\x78"),
            (5, b"switch-1"),
            (0, b""),
        ])
    }

    #[test]
    fn ipas_test_vector() {
        // IPA's vector starts with End, which 802.1AB does not allow: its
        // TLVs, without the End first, as IPA encodes them
        let f = unhex(IPA_FRAME);
        let tlvs = parse_frame(&f).unwrap();
        assert_eq!(
            encode(&tlvs),
            vec![
                (1, "04885a92ec5459".to_string()),
                (2, "0545746865726e6574312f3138".to_string()),
                (3, "0078".to_string()),
                (0, String::new()),
            ]
        );
        // IPA's exact frame (End first) is not an LLDPDU
        let mut ipa = unhex("0180c200000e885a92365a3988cc0000");
        ipa.extend(&f[14..]);
        assert!(matches!(
            parse_frame(&ipa),
            Err(BadFrame::Mandatory { position: 1, .. })
        ));
    }

    #[test]
    fn stops_at_end_and_ignores_padding() {
        let mut f = good();
        f.extend([0u8; 20]); // Ethernet padding
        let t = parse_frame(&f).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t.last(), Some(&(0u8, &b""[..])));
        // no End TLV, one stray byte of padding: accepted
        let mut f = frame(&[(1, b"\x04abcdef"), (2, b"\x05p1"), (3, b"\x00\x78")]);
        f.push(0);
        assert_eq!(parse_frame(&f).unwrap().len(), 3);
        // a VLAN tag before the ethertype
        let mut tagged = good();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        assert_eq!(parse_frame(&tagged).unwrap().len(), 5);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        let g = good();
        // every truncation of a good frame: an error or (cut at a TLV
        // boundary after the mandatory three) fewer TLVs, never a panic
        for n in 0..g.len() {
            if let Ok(t) = parse_frame(&g[..n]) {
                assert!(t.len() >= 3, "{n}");
            }
        }
        assert_eq!(parse_frame(&[]), Err(BadFrame::Short(0)));
        assert_eq!(parse_frame(&g[..13]), Err(BadFrame::Short(13)));
        let mut ip = g.clone();
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_frame(&ip), Err(BadFrame::NotLldp(0x0800)));
        // a length past the end (the system name claims 511 bytes)
        let mut long = g.clone();
        let at = 14 + 9 + 15 + 4;
        long[at..at + 2].copy_from_slice(&((5u16 << 9) | 0x1ff).to_be_bytes());
        assert_eq!(
            parse_frame(&long),
            Err(BadFrame::Truncated {
                offset: at,
                tlv_type: 5
            })
        );
        // a lone header byte at the end of a frame without End
        let mut odd = frame(&[(1, b"\x04abcdef"), (2, b"\x05p1"), (3, b"\x00\x78")]);
        odd.push(0x0a);
        assert!(parse_frame(&odd).is_ok());
        // mandatory TLVs missing, out of order, or of the wrong length
        for tlvs in [
            vec![(2u8, &b"\x05p1"[..]), (1, b"\x04abcdef"), (3, b"\x00\x78")],
            vec![(1, &b"\x04"[..]), (2, b"\x05p1"), (3, b"\x00\x78")],
            vec![(1, &b"\x04abcdef"[..]), (2, b"\x05p1")],
            vec![(1, &b"\x04abcdef"[..]), (2, b"\x05p1"), (3, b"\x00")],
            vec![],
        ] {
            assert!(
                matches!(parse_frame(&frame(&tlvs)), Err(BadFrame::Mandatory { .. })),
                "{tlvs:?}"
            );
        }
        let huge = vec![b'x'; 300];
        let f = frame(&[(1, &huge[..]), (2, b"\x05p1"), (3, b"\x00\x78")]);
        assert!(matches!(parse_frame(&f), Err(BadFrame::Mandatory { .. })));
        // random bytes behind a valid header never panic
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..20_000 {
            let n = rng.usize(0..120);
            let mut f = unhex("0180c200000e525400aabbcc88cc");
            f.extend((0..n).map(|_| rng.u8(..)));
            let _ = parse_frame(&f);
        }
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(b"\x00\xab\xff"), "00abff");
        assert_eq!(hex(b""), "");
    }

    impl FrameSource for UnixDatagram {
        fn recv_frame(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
            match self.recv(buf) {
                Ok(n) => Ok(Some(Received {
                    len: n,
                    full_len: n,
                    outgoing: false,
                })),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    fn pair() -> (UnixDatagram, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn one_deadline_for_all_sources() {
        // four NICs: two answer at once, one after garbage, one never
        let (s0, r0) = pair();
        let (_s1, r1) = pair();
        let (s2, r2) = pair();
        let (s3, r3) = pair();
        s0.send(&good()).unwrap();
        s2.send(b"garbage").unwrap();
        s2.send(&good()[..30]).unwrap();
        s2.send(&good()).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            s3.send(&good()).unwrap();
            s3
        });
        let t = Instant::now();
        let names = ["eth0", "eth1", "eth2", "eth3"].map(String::from);
        let got = listen(
            names.iter().cloned().zip([r0, r1, r2, r3]).collect(),
            t + Duration::from_millis(600),
            MAX_FRAMES_PER_NIC,
        );
        let took = t.elapsed();
        let _s3 = sender.join().unwrap();
        let want = Heard::Frame(encode(&parse_frame(&good()).unwrap()));
        assert_eq!(*get(&got, "eth0").unwrap(), want);
        assert_eq!(*get(&got, "eth1").unwrap(), Heard::Nothing);
        assert_eq!(*get(&got, "eth2").unwrap(), want);
        assert_eq!(*get(&got, "eth3").unwrap(), want);
        // the whole listen took the one deadline, not one per NIC
        assert!(took >= Duration::from_millis(590), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn everyone_answers_no_waiting_for_the_deadline() {
        let (s, r) = pair();
        s.send(&good()).unwrap();
        let t = Instant::now();
        let got = listen(vec![("eth0".into(), r)], t + Duration::from_secs(30), 8);
        assert!(matches!(*get(&got, "eth0").unwrap(), Heard::Frame(_)));
        assert!(t.elapsed() < Duration::from_secs(5));
        // no sources: nothing to wait for
        let none: Vec<(String, UnixDatagram)> = vec![];
        assert!(listen(none, t + Duration::from_secs(30), 8).is_empty());
    }

    #[test]
    fn a_flood_is_bounded_and_does_not_stop_the_others() {
        let (flood_tx, flood_rx) = pair();
        let (ok_tx, ok_rx) = pair();
        for _ in 0..100 {
            flood_tx.send(b"not a frame at all").unwrap();
        }
        let ok = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ok_tx.send(&good()).unwrap();
            ok_tx
        });
        let t = Instant::now();
        let got = listen(
            vec![("flood".into(), flood_rx), ("ok".into(), ok_rx)],
            t + Duration::from_secs(5),
            40,
        );
        let _ok = ok.join().unwrap();
        assert_eq!(*get(&got, "flood").unwrap(), Heard::Nothing);
        assert!(matches!(*get(&got, "ok").unwrap(), Heard::Frame(_)));
        // given up after 40 frames, answered without waiting for the deadline
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn a_failing_socket_is_left_out() {
        /// Readable, but every read fails (an interface that went away).
        struct Broken(UnixDatagram);
        impl AsRawFd for Broken {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }
        impl FrameSource for Broken {
            fn recv_frame(&self, _: &mut [u8]) -> io::Result<Option<Received>> {
                Err(io::Error::from_raw_os_error(libc::ENETDOWN))
            }
        }
        let (tx, rx) = pair();
        tx.send(b"x").unwrap();
        let (ok_tx, ok_rx) = pair();
        ok_tx.send(&good()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = listen(vec![("bad".into(), Broken(rx))], deadline, 8);
        drop(tx);
        assert_eq!(*get(&got, "bad").unwrap(), Heard::Failed);
        let got = listen(vec![("ok".into(), ok_rx)], deadline, 8);
        assert!(matches!(*get(&got, "ok").unwrap(), Heard::Frame(_)));
    }
}
