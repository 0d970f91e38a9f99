//! The kernel's IPMI character device (`ipmi_devintf`,
//! include/uapi/linux/ipmi.h): send one request to the BMC over the system
//! interface and wait for its response. This replaces the `ipmitool lan
//! print` calls IPA makes for `bmc_address`/`bmc_mac`/`bmc_v6address`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// IPMI_SYSTEM_INTERFACE_ADDR_TYPE
const SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0c;
/// IPMI_BMC_CHANNEL: "the BMC itself" on the system interface.
const BMC_CHANNEL: libc::c_short = 0xf;
/// IPMI_RESPONSE_RECV_TYPE
const RESPONSE_RECV_TYPE: libc::c_int = 1;
/// IPMI_MAX_ADDR_SIZE
const MAX_ADDR_SIZE: usize = 32;
/// IPMI_MAX_MSG_LENGTH
const MAX_MSG_LENGTH: usize = 272;

/// `struct ipmi_system_interface_addr`
#[repr(C)]
struct SystemInterfaceAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    lun: libc::c_uchar,
}

/// `struct ipmi_addr`, the receive side's address buffer.
#[repr(C)]
struct IpmiAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    data: [u8; MAX_ADDR_SIZE],
}

/// `struct ipmi_msg`
#[repr(C)]
struct IpmiMsg {
    netfn: libc::c_uchar,
    cmd: libc::c_uchar,
    data_len: libc::c_ushort,
    data: *mut u8,
}

/// `struct ipmi_req`
#[repr(C)]
struct IpmiReq {
    addr: *mut u8,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

/// `struct ipmi_recv`
#[repr(C)]
struct IpmiRecv {
    recv_type: libc::c_int,
    addr: *mut u8,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

/// `_IOC(dir, type, nr, size)` in the generic encoding (x86, arm, riscv).
const fn ioc(dir: u32, ty: u8, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
/// `_IOR(IPMI_IOC_MAGIC, 13, struct ipmi_req)`
const IPMICTL_SEND_COMMAND: u32 = ioc(IOC_READ, b'i', 13, std::mem::size_of::<IpmiReq>());
/// `_IOWR(IPMI_IOC_MAGIC, 11, struct ipmi_recv)`
const IPMICTL_RECEIVE_MSG_TRUNC: u32 = ioc(
    IOC_READ | IOC_WRITE,
    b'i',
    11,
    std::mem::size_of::<IpmiRecv>(),
);

/// The values of _IOR('i', 13, struct ipmi_req) and _IOWR('i', 11, struct
/// ipmi_recv) on x86_64 and aarch64 (both asm-generic ioctl encoding and
/// LP64: 40- and 48-byte structs).
#[cfg(test)]
pub(crate) fn check_request_numbers() {
    #[cfg(target_pointer_width = "64")]
    {
        assert_eq!(std::mem::size_of::<IpmiReq>(), 40);
        assert_eq!(std::mem::size_of::<IpmiRecv>(), 48);
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }
}

/// An open IPMI device (/dev/ipmi0).
pub struct Ipmi {
    f: File,
    next_id: libc::c_long,
}

impl Ipmi {
    pub fn open(path: &Path) -> io::Result<Ipmi> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Ipmi { f, next_id: 1 })
    }

    /// Send `netfn`/`cmd` with `data` to the BMC and return the response
    /// data, completion code first. Fails with ENOTTY on anything that is
    /// not an IPMI device, TimedOut when the BMC does not answer.
    pub fn request(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        timeout_ms: i32,
    ) -> io::Result<Vec<u8>> {
        let mut addr = SystemInterfaceAddr {
            addr_type: SYSTEM_INTERFACE_ADDR_TYPE,
            channel: BMC_CHANNEL,
            lun: 0,
        };
        let mut payload = data.to_vec();
        let msgid = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut req = IpmiReq {
            addr: &mut addr as *mut SystemInterfaceAddr as *mut u8,
            addr_len: std::mem::size_of::<SystemInterfaceAddr>() as libc::c_uint,
            msgid,
            msg: IpmiMsg {
                netfn,
                cmd,
                data_len: payload.len() as libc::c_ushort,
                data: payload.as_mut_ptr(),
            },
        };
        // SAFETY: the fd is open; IPMICTL_SEND_COMMAND reads `req` (a
        // struct ipmi_req), the `addr_len` bytes of `addr` and `data_len`
        // bytes of `payload` it points at, all alive for the call.
        let r = unsafe {
            libc::ioctl(
                self.f.as_raw_fd(),
                IPMICTL_SEND_COMMAND as _,
                &mut req as *mut IpmiReq,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let ready = super::poll_readable([self.f.as_raw_fd()], timeout_ms)?;
            if !ready[0] {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the BMC did not answer",
                ));
            }
            let mut raddr = IpmiAddr {
                addr_type: 0,
                channel: 0,
                data: [0; MAX_ADDR_SIZE],
            };
            let mut buf = vec![0u8; MAX_MSG_LENGTH];
            let mut recv = IpmiRecv {
                recv_type: 0,
                addr: &mut raddr as *mut IpmiAddr as *mut u8,
                addr_len: std::mem::size_of::<IpmiAddr>() as libc::c_uint,
                msgid: 0,
                msg: IpmiMsg {
                    netfn: 0,
                    cmd: 0,
                    data_len: buf.len() as libc::c_ushort,
                    data: buf.as_mut_ptr(),
                },
            };
            // SAFETY: the fd is open; IPMICTL_RECEIVE_MSG_TRUNC reads and
            // writes `recv` (a struct ipmi_recv), writes at most `addr_len`
            // bytes into `raddr` and at most `data_len` bytes into `buf`,
            // both alive for the call.
            let r = unsafe {
                libc::ioctl(
                    self.f.as_raw_fd(),
                    IPMICTL_RECEIVE_MSG_TRUNC as _,
                    &mut recv as *mut IpmiRecv,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                // EMSGSIZE: truncated, the data we have is still valid
                if e.raw_os_error() != Some(libc::EMSGSIZE) {
                    return Err(e);
                }
            }
            if recv.recv_type == RESPONSE_RECV_TYPE && recv.msgid == msgid {
                let n = (recv.msg.data_len as usize).min(buf.len());
                buf.truncate(n);
                return Ok(buf);
            }
            // an event or a stale answer: keep waiting for ours
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        check_request_numbers();
    }

    #[test]
    fn a_regular_file_is_not_a_bmc() {
        let p = std::env::temp_dir().join(format!("ipmi-test-{}", std::process::id()));
        std::fs::write(&p, b"").unwrap();
        let mut i = Ipmi::open(&p).unwrap();
        let e = i.request(0x0c, 0x02, &[1, 3, 0, 0], 100).unwrap_err();
        if super::super::under_qemu_user() {
            // qemu-user does not know the IPMI ioctls
            assert_eq!(e.raw_os_error(), Some(libc::ENOSYS));
        } else {
            assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        }
        let _ = std::fs::remove_file(&p);
    }
}
