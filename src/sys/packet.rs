//! AF_PACKET sockets for LLDP (IEEE 802.1AB): one raw socket per
//! interface, bound to that interface and one ethertype, that joins the
//! LLDP multicast group instead of putting the NIC into promiscuous mode
//! (what IPA's `netutils.RawPromiscuousSockets` does), and reads without
//! blocking. Plus the interface flags (up/down) and a poll(2) over any
//! number of descriptors.
//!
//! Constants and layouts are `include/uapi/linux/if_packet.h`,
//! `if_ether.h` and `if.h`; the tests below pin them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `ETH_P_LLDP` (include/uapi/linux/if_ether.h).
pub const ETH_P_LLDP: u16 = 0x88cc;
/// The nearest-bridge group address every LLDP agent sends to (802.1AB
/// table 7-1); the other two (…00:03, …00:00) are for non-TPMR and
/// customer bridges and are joined too.
pub const LLDP_GROUPS: [[u8; 6]; 3] = [
    [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
    [0x01, 0x80, 0xc2, 0x00, 0x00, 0x03],
    [0x01, 0x80, 0xc2, 0x00, 0x00, 0x00],
];

// include/uapi/linux/if_packet.h
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_MULTICAST: libc::c_ushort = 0;
/// `sll_pkttype` of a frame this host sent.
const PACKET_OUTGOING: u8 = 4;

/// `struct packet_mreq` (16 bytes).
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

/// One frame read from a [`PacketSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the buffer (at most its length).
    pub len: usize,
    /// The frame's real length (more than `len` when it did not fit).
    pub full_len: usize,
    /// A frame this host sent (the kernel loops those back to packet
    /// sockets), not one it received.
    pub outgoing: bool,
}

/// A raw socket bound to one interface and one ethertype. Closing it
/// leaves the multicast groups it joined.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: libc::c_int,
}

/// The kernel's index of interface `name` (if_nametoindex(3)).
pub fn interface_index(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call; the
    // function only reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(idx).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

fn sockaddr_ll(ifindex: libc::c_int, ethertype: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as libc::c_ushort;
    sa.sll_protocol = ethertype.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

impl PacketSocket {
    /// A non-blocking raw socket that receives the frames of `ethertype`
    /// arriving on interface `name` only. It is created with protocol 0
    /// (it receives nothing) and bound afterwards, so no frame of another
    /// interface slips in between.
    pub fn open(name: &str, ethertype: u16) -> io::Result<PacketSocket> {
        let ifindex = interface_index(name)?;
        // SAFETY: socket(2) with constant arguments; the descriptor, when
        // valid, is owned by nobody else and is wrapped at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sa = sockaddr_ll(ifindex, ethertype);
        // SAFETY: bind(2) reads size_of::<sockaddr_ll>() bytes from `sa`,
        // a live, initialised sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// PACKET_ADD_MEMBERSHIP / PACKET_MR_MULTICAST: make the NIC accept
    /// frames sent to `mac` (its multicast filter, not promiscuous mode).
    pub fn join_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        let mut mr = PacketMreq {
            mr_ifindex: self.ifindex,
            mr_type: PACKET_MR_MULTICAST,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        mr.mr_address[..6].copy_from_slice(&mac);
        // SAFETY: setsockopt reads size_of::<PacketMreq>() bytes from
        // `mr`, a live packet_mreq with the kernel's layout.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                &mr as *const PacketMreq as *const libc::c_void,
                std::mem::size_of::<PacketMreq>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read one frame into `buf`; `None` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into
            // `buf` and at most `len` bytes into `from`, then stores the
            // address length in `len`; all three live across the call.
            // MSG_TRUNC makes it return the frame's real length.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n >= 0 {
                let full_len = n as usize;
                return Ok(Some(Received {
                    len: full_len.min(buf.len()),
                    full_len,
                    outgoing: from.sll_pkttype == PACKET_OUTGOING,
                }));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Send one whole frame (destination MAC first) out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) reads `frame.len()` bytes from `frame`.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wait until any of `fds` is readable or in error, at most `timeout_ms`
/// milliseconds (-1: forever). Returns, per descriptor, whether poll(2)
/// reported anything for it (all false on timeout).
pub fn poll_any(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` holds `p.len()` initialised pollfd structs that the
        // kernel reads and whose `revents` it writes.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|s| s.revents != 0).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn constants_match_the_kernel_headers() {
        assert_eq!(ETH_P_LLDP as libc::c_int, libc::ETH_P_LLDP);
        assert_eq!(SOL_PACKET, libc::SOL_PACKET);
        assert_eq!(PACKET_ADD_MEMBERSHIP, 1);
        assert_eq!(PACKET_MR_MULTICAST, 0);
        assert_eq!(PACKET_OUTGOING, 4);
        assert_eq!(LLDP_GROUPS[0], [0x01, 0x80, 0xc2, 0, 0, 0x0e]);
        // every group address is a multicast one (I/G bit set)
        assert!(LLDP_GROUPS.iter().all(|g| g[0] & 1 == 1));
    }

    #[test]
    fn struct_layouts_match_the_kernel() {
        // struct packet_mreq { int mr_ifindex; unsigned short mr_type,
        // mr_alen; unsigned char mr_address[8]; }
        assert_eq!(size_of::<PacketMreq>(), 16);
        assert_eq!(offset_of!(PacketMreq, mr_type), 4);
        assert_eq!(offset_of!(PacketMreq, mr_alen), 6);
        assert_eq!(offset_of!(PacketMreq, mr_address), 8);
        // struct sockaddr_ll: 20 bytes, protocol at 2, ifindex at 4,
        // pkttype at 10
        assert_eq!(size_of::<libc::sockaddr_ll>(), 20);
        assert_eq!(offset_of!(libc::sockaddr_ll, sll_protocol), 2);
        assert_eq!(offset_of!(libc::sockaddr_ll, sll_ifindex), 4);
        assert_eq!(offset_of!(libc::sockaddr_ll, sll_pkttype), 10);
        let sa = sockaddr_ll(7, ETH_P_LLDP);
        assert_eq!(sa.sll_protocol.to_ne_bytes(), [0x88, 0xcc]); // network order
        assert_eq!(sa.sll_ifindex, 7);
    }

    #[test]
    fn unknown_interfaces_and_bad_names() {
        assert!(interface_index("no-such-nic0").is_err());
        assert!(interface_index("a\0b").is_err());
        assert!(PacketSocket::open("no-such-nic0", ETH_P_LLDP).is_err());
        assert_eq!(interface_index("lo").unwrap(), 1);
    }

    #[test]
    fn poll_times_out_and_sees_readable() {
        use std::os::unix::net::UnixDatagram;
        let (a, b) = UnixDatagram::pair().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            poll_any(&[a.as_raw_fd(), b.as_raw_fd()], 30).unwrap(),
            [false, false]
        );
        assert!(t.elapsed() >= std::time::Duration::from_millis(25));
        a.send(b"x").unwrap();
        assert_eq!(
            poll_any(&[a.as_raw_fd(), b.as_raw_fd()], 1000).unwrap(),
            [false, true]
        );
        assert!(poll_any(&[], 0).unwrap().is_empty());
    }
}
