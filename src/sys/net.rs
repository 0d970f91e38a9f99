//! Network interface ioctls for the inventory (IPA's `netutils.py` uses
//! the same two through `fcntl.ioctl` and psutil): the permanent MAC
//! address (SIOCETHTOOL ETHTOOL_GPERMADDR) and the primary IPv4 address
//! (SIOCGIFADDR). Only meaningful on the real root.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// include/uapi/linux/sockios.h
const SIOCETHTOOL: libc::c_ulong = 0x8946;
// include/uapi/linux/ethtool.h
const ETHTOOL_GPERMADDR: u32 = 0x0000_0020;
/// MAX_ADDR_LEN in include/linux/netdevice.h.
const MAX_ADDR_LEN: usize = 32;
const IFNAMSIZ: usize = 16;

/// `struct ethtool_perm_addr { __u32 cmd; __u32 size; __u8 data[]; }`
/// followed by room for the longest hardware address.
#[repr(C)]
struct PermAddr {
    cmd: u32,
    size: u32,
    data: [u8; MAX_ADDR_LEN],
}

/// `struct ifreq` with its union as a pointer (`ifr_data`) or a
/// `struct sockaddr` (`ifr_addr`); 40 bytes on 64-bit Linux.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    union: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let n = name.as_bytes();
        if n.is_empty() || n.len() >= IFNAMSIZ || n.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            union: [0; 24],
        };
        r.name[..n.len()].copy_from_slice(n);
        Ok(r)
    }
}

/// A datagram socket to issue interface ioctls on (no address bound).
pub struct IfSocket(OwnedFd);

impl IfSocket {
    pub fn new() -> io::Result<IfSocket> {
        // SAFETY: socket(2) with constant arguments; the returned fd, when
        // valid, is owned by nobody else and is wrapped at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor we own.
        Ok(IfSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The permanent hardware address (`ethtool -P`), `None` when the
    /// driver reports none (all zeros: virtio, bonds, bridges).
    pub fn permanent_mac(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let mut data = PermAddr {
            cmd: ETHTOOL_GPERMADDR,
            size: MAX_ADDR_LEN as u32,
            data: [0; MAX_ADDR_LEN],
        };
        let mut ifr = IfReq::new(name)?;
        let ptr = &mut data as *mut PermAddr as usize;
        ifr.union[..std::mem::size_of::<usize>()].copy_from_slice(&ptr.to_ne_bytes());
        // SAFETY: the socket fd is open; SIOCETHTOOL reads the interface
        // name and the `ifr_data` pointer from `ifr`, then reads `cmd` and
        // `size` from and writes at most `size` (32) address bytes and the
        // real size into `data`, a live PermAddr the pointer points at.
        let r =
            unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL as _, &mut ifr as *mut IfReq) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (data.size as usize).min(MAX_ADDR_LEN);
        let addr = &data.data[..len];
        Ok((len > 0 && addr.iter().any(|b| *b != 0)).then(|| addr.to_vec()))
    }

    /// Whether the interface is administratively up (IFF_UP, SIOCGIFFLAGS).
    pub fn is_up(&self, name: &str) -> io::Result<bool> {
        Ok(self.flags(name)?.0 & libc::IFF_UP as libc::c_short != 0)
    }

    /// `ip link set <name> up|down`: IFF_UP set or cleared in the
    /// interface's current flags (SIOCGIFFLAGS, then SIOCSIFFLAGS), the
    /// other flags left as they are.
    pub fn set_up(&self, name: &str, up: bool) -> io::Result<()> {
        let (flags, mut ifr) = self.flags(name)?;
        let up_flag = libc::IFF_UP as libc::c_short;
        let new = if up {
            flags | up_flag
        } else {
            flags & !up_flag
        };
        if new == flags {
            return Ok(());
        }
        ifr.union[..2].copy_from_slice(&new.to_ne_bytes());
        // SAFETY: the socket fd is open; SIOCSIFFLAGS reads the name and
        // `ifr_flags` (the union's first two bytes) from `ifr`, a live
        // 40-byte struct ifreq.
        let r = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCSIFFLAGS as _,
                &mut ifr as *mut IfReq,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn flags(&self, name: &str) -> io::Result<(libc::c_short, IfReq)> {
        let mut ifr = IfReq::new(name)?;
        // SAFETY: the socket fd is open; SIOCGIFFLAGS reads the name from
        // and writes `ifr_flags` (a short at the union's start) into
        // `ifr`, a live 40-byte struct ifreq.
        let r = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &mut ifr as *mut IfReq,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            libc::c_short::from_ne_bytes([ifr.union[0], ifr.union[1]]),
            ifr,
        ))
    }

    /// The interface's primary IPv4 address (SIOCGIFADDR); `None` when it
    /// has none (EADDRNOTAVAIL).
    pub fn ipv4_address(&self, name: &str) -> io::Result<Option<Ipv4Addr>> {
        let mut ifr = IfReq::new(name)?;
        // SAFETY: the socket fd is open; SIOCGIFADDR reads the name from
        // and writes a `struct sockaddr_in` (16 bytes) into the 24-byte
        // union of `ifr`.
        let r = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCGIFADDR as _,
                &mut ifr as *mut IfReq,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EADDRNOTAVAIL) => Ok(None),
                _ => Err(e),
            };
        }
        // sockaddr_in: family (2), port (2), address (4, network order)
        let a = &ifr.union[4..8];
        Ok(Some(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_numbers_on_both_architectures() {
        // include/uapi/linux/sockios.h (no _IOC encoding: the same number
        // on x86_64 and aarch64); struct ifreq is 40 bytes on LP64
        assert_eq!(SIOCETHTOOL, 0x8946);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(
            std::mem::size_of::<IfReq>(),
            std::mem::size_of::<libc::ifreq>()
        );
        assert_eq!(std::mem::size_of::<PermAddr>(), 8 + MAX_ADDR_LEN);
    }

    #[test]
    fn loopback_and_bad_names() {
        let s = IfSocket::new().unwrap();
        assert_eq!(s.ipv4_address("lo").unwrap(), Some(Ipv4Addr::LOCALHOST));
        // lo has no permanent address (or the ioctl is refused)
        assert!(!matches!(s.permanent_mac("lo"), Ok(Some(_))));
        assert!(s.ipv4_address("no-such-nic0").is_err());
        assert!(s.ipv4_address("").is_err());
        assert!(s.ipv4_address("much-too-long-name").is_err());
        assert!(s.is_up("lo").unwrap());
        assert!(s.is_up("no-such-nic0").is_err());
        // lo is already up: nothing to change, no privilege needed
        s.set_up("lo", true).unwrap();
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}

/// Set TCP_NODELAY on a listening socket; Linux copies it to every
/// accepted connection. tiny_http writes a response's headers and body
/// separately once the body outgrows its 1 KiB buffer; with Nagle on, the
/// body then waits for the client's delayed ACK (40 ms) on every
/// keep-alive request.
pub fn set_nodelay(l: &std::net::TcpListener) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the listener fd is open; setsockopt reads
    // size_of::<c_int>() bytes from `one`, which lives across the call.
    let r = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod nodelay_tests {
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        super::set_nodelay(&l).unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }
}
