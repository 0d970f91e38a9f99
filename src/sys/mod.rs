//! The only module with `unsafe`: thin wrappers over the kernel interfaces
//! the agent needs and std does not offer (block-device ioctls, the md driver's in [`md`], sync(2),
//! reboot(2), getrandom(2); NVMe admin and SCSI generic pass-through in
//! [`passthru`]; the IPMI device in [`ipmi`]; interface ioctls in [`net`];
//! rtnetlink in [`netlink`]; process-group signals in [`process`];
//! AF_PACKET sockets for LLDP in [`packet`]). Every call site has a
//! `// SAFETY:` comment naming the file descriptor and the memory the
//! kernel reads or writes.
//!
//! Request numbers come from `include/uapi/linux/fs.h`; libc does not define
//! most BLK* ioctls (only BLKSSZGET/BLKPBSZGET). The request argument is
//! written `req as _` because its C type differs between musl (`int`) and
//! glibc (`unsigned long`).
#![allow(unsafe_code)]

pub mod ipmi;
pub mod md;
pub mod net;
pub mod netlink;
pub mod packet;
pub mod passthru;
pub mod process;
pub mod sha512;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

// include/uapi/linux/fs.h
/// `_IO(0x12,95)`: re-read the partition table.
pub const BLKRRPART: u32 = 0x125f;
/// `_IO(0x12,97)`: flush the buffer cache.
pub const BLKFLSBUF: u32 = 0x1261;
/// `_IO(0x12,104)`: logical sector size (int).
pub const BLKSSZGET: u32 = 0x1268;
/// `_IO(0x12,123)`: physical sector size (unsigned int).
pub const BLKPBSZGET: u32 = 0x127b;
/// `_IOR(0x12,114,size_t)`: device size in bytes (u64).
pub const BLKGETSIZE64: u32 = 0x8008_1272;
/// `_IO(0x12,119)`: discard a byte range (`__u64 range[2]`).
pub const BLKDISCARD: u32 = 0x1277;
/// `_IO(0x12,125)`: secure-discard a byte range (`__u64 range[2]`).
pub const BLKSECDISCARD: u32 = 0x127d;
/// `_IO(0x12,127)`: zero a byte range (`__u64 range[2]`).
pub const BLKZEROOUT: u32 = 0x127f;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An ioctl that takes no argument.
pub fn ioctl_none(f: &File, req: u32) -> io::Result<()> {
    // SAFETY: `f` is an open file descriptor; the request takes no argument
    // pointer, so the kernel reads and writes no user memory.
    check(unsafe { libc::ioctl(f.as_raw_fd(), req as _, 0) }).map(|_| ())
}

/// BLKRRPART: ask the kernel to re-read the partition table. EBUSY means a
/// partition is in use; EINVAL means the device cannot be partitioned.
pub fn reread_partitions(f: &File) -> io::Result<()> {
    ioctl_none(f, BLKRRPART)
}

/// BLKFLSBUF: write back and drop the device's buffer cache
/// (`blockdev --flushbufs`).
pub fn flush_buffers(f: &File) -> io::Result<()> {
    ioctl_none(f, BLKFLSBUF)
}

/// BLKGETSIZE64: the device size in bytes.
pub fn block_device_size(f: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: `f` is an open block device; BLKGETSIZE64 writes one u64 to
    // the pointer, which points at `size`, alive for the call.
    check(unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) })?;
    Ok(size)
}

/// BLKSSZGET: the logical sector size.
pub fn logical_sector_size(f: &File) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: `f` is an open block device; BLKSSZGET writes one int to the
    // pointer, which points at `v`.
    check(unsafe { libc::ioctl(f.as_raw_fd(), BLKSSZGET as _, &mut v as *mut libc::c_int) })?;
    Ok(v as u32)
}

/// One of BLKDISCARD, BLKSECDISCARD, BLKZEROOUT over `[offset, offset+len)`.
/// EOPNOTSUPP means the device does not implement that operation.
pub fn block_range(f: &File, req: u32, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: `f` is an open block device; these requests read a 16-byte
    // `__u64 range[2]` from the pointer, which points at `range`.
    check(unsafe { libc::ioctl(f.as_raw_fd(), req as _, range.as_ptr()) }).map(|_| ())
}

/// `_IO(0x12,105)`: add or delete one partition of a disk (BLKPG).
pub const BLKPG: u32 = 0x1269;

/// `struct blkpg_partition` (include/uapi/linux/blkpg.h).
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

/// BLKPG_ADD_PARTITION / BLKPG_DEL_PARTITION of partition `number` at
/// `[start, start+len)` bytes (what partprobe and partx use): unlike
/// BLKRRPART, it works while other partitions of the disk are in use
/// (members of running md arrays). EBUSY: that partition is in use;
/// ENXIO (delete): there is no such partition.
pub fn blkpg_partition(f: &File, add: bool, number: u32, start: u64, len: u64) -> io::Result<()> {
    let (Ok(start), Ok(length), Ok(pno)) = (
        i64::try_from(start),
        i64::try_from(len),
        i32::try_from(number),
    ) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mut part = BlkpgPartition {
        start,
        length,
        pno,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: if add { 1 } else { 2 },
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: `f` is an open block device; BLKPG reads the 24-byte
    // blkpg_ioctl_arg `arg` and, through its `data` pointer, the
    // blkpg_partition `part` (`datalen` bytes); both live across the call.
    check(unsafe { libc::ioctl(f.as_raw_fd(), BLKPG as _, &arg as *const BlkpgIoctlArg) })
        .map(|_| ())
}

/// sync(2): commit every filesystem's dirty data.
pub fn sync_all_filesystems() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// What to do with the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

/// reboot(2) after sync(2). Only returns on failure (EPERM without
/// CAP_SYS_BOOT, or inside a container).
pub fn power(action: PowerAction) -> io::Error {
    sync_all_filesystems();
    let cmd = match action {
        PowerAction::PowerOff => libc::RB_POWER_OFF,
        PowerAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid LINUX_REBOOT_CMD_* value and no
    // argument pointer; on success it does not return.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Fill `buf` from the kernel's CSPRNG (getrandom(2), blocking until the
/// pool is initialised, as rustls and ring also do).
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live mutable
        // slice the kernel fills with at most `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Take a network interface down (`ip link set <nic> down`) with
/// SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket.
pub fn set_link_down(name: &str) -> io::Result<()> {
    // struct ifreq: char ifr_name[IFNAMSIZ=16]; union { short ifr_flags; ... }
    // padded to 40 bytes on 64-bit Linux (include/uapi/linux/if.h).
    let mut ifr = [0u8; 40];
    let n = name.as_bytes();
    if n.is_empty() || n.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    ifr[..n.len()].copy_from_slice(n);
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: the socket fd is open; SIOCGIFFLAGS reads the name from and
    // writes the flags into `ifr`, a 40-byte buffer matching struct ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, ifr.as_mut_ptr()) })?;
    let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) & !(libc::IFF_UP as i16);
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, ifr.as_ptr()) })?;
    Ok(())
}

/// Wait until one of `fds` is readable (or hung up), up to `timeout_ms`
/// (-1 = forever). Returns which are ready; all false on timeout.
pub fn poll_readable<const N: usize>(fds: [i32; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    Ok(poll(fds.map(|fd| (fd, libc::POLLIN)), timeout_ms)?.map(|revents| revents != 0))
}

/// poll(2): wait until one of `fds` has one of its `events` (`libc::POLL*`
/// bits; hang-ups and errors are always reported), up to `timeout_ms`
/// (-1 = forever). Returns each fd's `revents`; all 0 on timeout.
pub fn poll<const N: usize>(fds: [(i32, i16); N], timeout_ms: i32) -> io::Result<[i16; N]> {
    let mut p = [libc::pollfd {
        fd: 0,
        events: 0,
        revents: 0,
    }; N];
    for (slot, (fd, events)) in p.iter_mut().zip(fds) {
        slot.fd = fd;
        slot.events = events;
    }
    loop {
        // SAFETY: `p` is an array of N initialised pollfd structs that the
        // kernel reads and whose `revents` it writes.
        let r = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p.map(|slot| slot.revents));
    }
}

// include/uapi/linux/fs.h: _IOR('f', 1, long) / _IOW('f', 2, long); the
// kernel reads and writes an int whatever the size in the number says
// (e2fsprogs' chattr passes an int too).
const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_int = 0x10;

/// `chattr -i`: clear FS_IMMUTABLE_FL. efivarfs creates non-standard
/// variables immutable (Documentation/filesystems/efivarfs.rst), and
/// writing or deleting them then fails with EPERM. Filesystems without
/// inode flags answer ENOTTY/EOPNOTSUPP/EINVAL: that means "not
/// immutable", so it is success.
pub fn clear_immutable(f: &File) -> io::Result<()> {
    let mut flags: libc::c_int = 0;
    // SAFETY: `f` is an open file; FS_IOC_GETFLAGS writes one int to the
    // pointer, which points at `flags`.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags as *mut _) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL) => Ok(()),
            _ => Err(e),
        };
    }
    if flags & FS_IMMUTABLE_FL == 0 {
        return Ok(());
    }
    flags &= !FS_IMMUTABLE_FL;
    // SAFETY: as above; FS_IOC_SETFLAGS reads one int from `flags`.
    check(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags as *const _) })
        .map(|_| ())
}

fn cstr(p: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// mount(2) a block device read-write with an explicit filesystem type
/// (the kernel does the filesystem work; no mount(8), which would probe
/// types from /proc/filesystems).
pub fn mount(source: &std::path::Path, target: &std::path::Path, fstype: &str) -> io::Result<()> {
    let src = cstr(source)?;
    let dst = cstr(target)?;
    let ty = std::ffi::CString::new(fstype)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad filesystem type"))?;
    // SAFETY: three NUL-terminated strings that live across the call; no
    // data argument (null), flags 0.
    check(unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) })
        .map(|_| ())
}

/// umount2(2) without flags.
pub fn umount(target: &std::path::Path) -> io::Result<()> {
    let dst = cstr(target)?;
    // SAFETY: a NUL-terminated path string alive for the call.
    check(unsafe { libc::umount2(dst.as_ptr(), 0) }).map(|_| ())
}

/// Turn O_DIRECT on or off on an open file (fcntl F_SETFL may toggle it
/// on Linux); returns whether it was on. The partition-table code does
/// small unaligned I/O, which O_DIRECT refuses with EINVAL, on the file
/// the streaming writer opened with O_DIRECT.
pub fn set_o_direct(f: &File, on: bool) -> io::Result<bool> {
    // SAFETY: F_GETFL on an open fd takes no pointer argument.
    let flags = check(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) })?;
    let was = flags & libc::O_DIRECT != 0;
    if was != on {
        let new = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        // SAFETY: F_SETFL with an int argument; no memory is passed.
        check(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(was)
}

/// The kernel's page size (the swap header's unit), 4096 if sysconf
/// cannot tell.
pub fn page_size() -> u64 {
    // SAFETY: sysconf(3) takes a constant and touches no caller memory.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// CPUs this process may run on (sched_getaffinity(2)), at least 1.
/// `std::thread::available_parallelism` also reads cgroup v1/v2 CPU
/// quotas, which a ramdisk does not have, for ~8 KiB of static binary.
pub fn cpus_allowed() -> usize {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid (empty) set; the
    // kernel writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set) as usize).max(1)
    }
}

/// fallocate(2) `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE` over
/// `[offset, offset+len)`: afterwards the range reads as zeroes. On a
/// block device the kernel turns this into a zero-out *without* the
/// write-zeroes fallback (`blkdev_fallocate` → `blkdev_issue_zeroout(...,
/// BLKDEV_ZERO_NOFALLBACK)`, block/fops.c), so it is cheap or fails with
/// EOPNOTSUPP; it is never a plain discard, which need not zero (kernel
/// commits 98262f2762f0, 48920ff2a5a9). On a regular file it deallocates.
pub fn punch_hole(f: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: fallocate on an open fd with integer arguments; no memory is
    // passed to the kernel.
    check(unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            n,
        )
    })
    .map(|_| ())
}

/// sync_file_range(2): start writeback of `[offset, offset+len)`
/// (`wait` = also wait for it). Keeps buffered image writes from piling
/// up dirty pages in a RAM-only system.
pub fn sync_file_range(f: &File, offset: u64, len: u64, wait: bool) -> io::Result<()> {
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: integer arguments on an open fd; no memory is passed.
    check(unsafe { libc::sync_file_range(f.as_raw_fd(), off as _, n as _, flags) }).map(|_| ())
}

/// posix_fadvise(POSIX_FADV_DONTNEED): drop clean cached pages of a range
/// already written back.
pub fn drop_cache(f: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: integer arguments on an open fd; no memory is passed.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), off, n, libc::POSIX_FADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        // posix_fadvise returns the error number instead of setting errno
        Err(io::Error::from_raw_os_error(r))
    }
}

/// The machine's RAM in bytes (sysinfo(2): totalram × mem_unit), 0 if
/// the kernel will not say.
pub fn ram_total() -> u64 {
    // SAFETY: sysinfo is plain data, zeroed is valid; the kernel fills it.
    unsafe {
        let mut si: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut si) != 0 {
            return 0;
        }
        (si.totalram as u64).saturating_mul(u64::from(si.mem_unit.max(1)))
    }
}

/// CPU seconds (user, system) the calling thread has used so far:
/// getrusage(RUSAGE_THREAD). For the image stream's stage timers.
pub fn thread_cpu() -> (f64, f64) {
    // SAFETY: rusage is plain data, zeroed is valid; the kernel fills it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut ru) != 0 {
            return (0.0, 0.0);
        }
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// The calling thread under SCHED_FIFO at `priority` (1 is the lowest
/// real-time priority): ahead of every ordinary thread on its CPU until it
/// blocks. Needs CAP_SYS_NICE (the agent runs as root in the ramdisk).
pub fn sched_fifo(priority: i32) -> io::Result<()> {
    // (musl's sched_setscheduler is a stub answering ENOSYS: the per-
    // thread call is pthread_setschedparam, which returns the error.)
    // SAFETY: sched_param is plain data (musl's has sporadic-server
    // fields beside the priority), zeroed is valid; pthread_self is the
    // calling thread.
    let r = unsafe {
        let mut p: libc::sched_param = std::mem::zeroed();
        p.sched_priority = priority;
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &p)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// True when `f` is a block device (not a regular file standing in for
/// one in a fixture root).
pub fn is_block_device(f: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    f.metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// True when this test binary runs under qemu-user (`cargo test --target
/// aarch64-unknown-linux-musl` on an x86_64 host): qemu fakes uname(2) but
/// not /proc/sys/kernel/arch, which names the host kernel's machine. qemu
/// answers ioctls it does not know (IPMI, NVMe admin) with ENOSYS instead
/// of passing them to the kernel, whose answer on a file would be ENOTTY.
#[cfg(test)]
pub(crate) fn under_qemu_user() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/arch")
        .map(|a| a.trim() != std::env::consts::ARCH)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SCHED_FIFO lands on the calling thread only (as root; an
    /// unprivileged run gets EPERM and the thread is left as it was).
    #[test]
    fn sched_fifo_is_per_thread() {
        let policy = || {
            // SAFETY: out-parameters of plain data for the calling thread.
            unsafe {
                let mut pol = 0;
                let mut p: libc::sched_param = std::mem::zeroed();
                assert_eq!(
                    libc::pthread_getschedparam(libc::pthread_self(), &mut pol, &mut p),
                    0
                );
                (pol, p.sched_priority)
            }
        };
        let (r, inside) = std::thread::spawn(move || (sched_fifo(1), policy()))
            .join()
            .unwrap();
        match r {
            Ok(()) => assert_eq!(inside, (libc::SCHED_FIFO, 1)),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(inside.0, libc::SCHED_OTHER);
            }
        }
        assert_eq!(
            policy().0,
            libc::SCHED_OTHER,
            "the caller's thread is untouched"
        );
    }

    #[test]
    fn random_bytes() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        getrandom(&mut a).unwrap();
        getrandom(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn blkpg_layout() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
        let f = File::open("/proc/self/status").unwrap();
        assert!(blkpg_partition(&f, true, 1, 0, 512).is_err());
    }

    #[test]
    fn regular_file_is_not_block_device() {
        let f = File::open("/proc/self/status").unwrap();
        assert!(!is_block_device(&f));
        assert!(block_device_size(&f).is_err());
    }
}

/// What differs between x86_64 and aarch64 in the kernel interfaces this
/// module uses, checked on whichever of the two the tests run on (`cargo
/// test` here, `cargo test --target aarch64-unknown-linux-musl` under
/// qemu-user: scripts/test-all unit-arm64).
///
/// * ioctl numbers: both architectures take `_IOC` from
///   include/uapi/asm-generic/ioctl.h (arch/x86 and arch/arm64 have no
///   ioctl.h of their own; powerpc, mips, sparc and alpha do, with 3
///   direction bits and 13 size bits), and both are LP64, so every size
///   encoded in a number (`size_t`, `long`, the pass-through structs) is
///   the same: every request number is identical on the two, and the
///   tests below recompute each from its header definition.
/// * open(2) flags: arm64 has its own asm/fcntl.h, where O_DIRECTORY,
///   O_NOFOLLOW, O_DIRECT and O_LARGEFILE differ from asm-generic's (x86):
///   O_DIRECT is 0o200000 there, 0o40000 on x86_64. The code takes them
///   from libc, per target.
/// * syscalls: aarch64 has no poll(2) (musl calls ppoll) and numbers every
///   syscall differently; everything here goes through libc, and the
///   tests exercise the calls whose argument order differs between
///   architectures (sync_file_range, fadvise64, fallocate).
/// * `char` is unsigned on aarch64 (`libc::c_char` = u8): the code
///   passes C strings only as `CString` pointers.
#[cfg(test)]
mod arch_tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    /// include/uapi/asm-generic/ioctl.h
    const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
        (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
    }
    const NONE: u32 = 0;
    const WRITE: u32 = 1;
    const READ: u32 = 2;

    #[test]
    // libc's numbers are c_ulong on glibc, c_int on musl
    #[allow(clippy::unnecessary_cast)]
    fn block_and_fs_ioctl_numbers() {
        // include/uapi/linux/fs.h
        assert_eq!(BLKRRPART, ioc(NONE, 0x12, 95, 0));
        assert_eq!(BLKFLSBUF, ioc(NONE, 0x12, 97, 0));
        assert_eq!(BLKSSZGET, ioc(NONE, 0x12, 104, 0));
        assert_eq!(BLKPBSZGET, ioc(NONE, 0x12, 123, 0));
        assert_eq!(BLKDISCARD, ioc(NONE, 0x12, 119, 0));
        assert_eq!(BLKSECDISCARD, ioc(NONE, 0x12, 125, 0));
        assert_eq!(BLKZEROOUT, ioc(NONE, 0x12, 127, 0));
        // _IOR(0x12,114,size_t) and _IOR('f', 1, long) / _IOW('f', 2, long)
        assert_eq!(std::mem::size_of::<libc::size_t>(), 8);
        assert_eq!(std::mem::size_of::<libc::c_long>(), 8);
        assert_eq!(BLKGETSIZE64, ioc(READ, 0x12, 114, 8));
        assert_eq!(FS_IOC_GETFLAGS, ioc(READ, b'f', 1, 8));
        assert_eq!(FS_IOC_SETFLAGS, ioc(WRITE, b'f', 2, 8));
        // libc's own (per target) agree with ours
        assert_eq!(BLKSSZGET as u64, libc::BLKSSZGET as u64);
        assert_eq!(BLKPBSZGET as u64, libc::BLKPBSZGET as u64);
    }

    #[test]
    fn passthrough_and_ipmi_ioctl_numbers() {
        // include/uapi/linux/nvme_ioctl.h, include/scsi/sg.h
        assert_eq!(passthru::NVME_IOCTL_ID, ioc(NONE, b'N', 0x40, 0));
        assert_eq!(
            passthru::NVME_IOCTL_ADMIN_CMD,
            ioc(
                READ | WRITE,
                b'N',
                0x41,
                std::mem::size_of::<passthru::NvmeAdminCmd>()
            )
        );
        assert_eq!(passthru::NVME_IOCTL_ADMIN_CMD, 0xc048_4e41);
        assert_eq!(passthru::SG_IO, 0x2285);
        // the IPMI numbers encode struct ipmi_req (40 bytes) and struct
        // ipmi_recv (48): the same on both LP64 targets
        ipmi::check_request_numbers();
    }

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn socket_ioctl_numbers() {
        // include/uapi/linux/sockios.h: plain numbers, no _IOC encoding
        assert_eq!(libc::SIOCGIFFLAGS as u64, 0x8913);
        assert_eq!(libc::SIOCSIFFLAGS as u64, 0x8914);
        assert_eq!(libc::SIOCGIFADDR as u64, 0x8915);
        // struct ifreq: 16-byte name + a 24-byte union on LP64
        assert_eq!(std::mem::size_of::<libc::ifreq>(), 40);
    }

    #[test]
    fn open_flags_follow_the_architecture() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(libc::O_DIRECT, 0o40000);
        #[cfg(target_arch = "aarch64")]
        assert_eq!(libc::O_DIRECT, 0o200000);
        // and set_o_direct toggles the target's bit, as F_GETFL reports it
        let p = std::env::temp_dir().join(format!("sys-odirect-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        // tmpfs refuses O_DIRECT with EINVAL: nothing to check there
        if set_o_direct(&f, true).is_ok() {
            assert!(set_o_direct(&f, false).unwrap());
            assert!(!set_o_direct(&f, false).unwrap());
        }
    }

    #[test]
    fn range_syscalls_take_their_arguments_in_order() {
        // sync_file_range, posix_fadvise and fallocate order their 64-bit
        // arguments differently per architecture (arm32's
        // sync_file_range2): the effect shows the arguments arrived
        let p = std::env::temp_dir().join(format!("sys-range-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f.write_all(&[0xa5; 3 * 4096]).unwrap();
        sync_file_range(&f, 0, 3 * 4096, true).unwrap();
        drop_cache(&f, 0, 3 * 4096).unwrap();
        match punch_hole(&f, 4096, 4096) {
            Ok(()) => {
                let mut b = vec![0u8; 3 * 4096];
                f.seek(SeekFrom::Start(0)).unwrap();
                f.read_exact(&mut b).unwrap();
                assert!(b[..4096].iter().all(|&x| x == 0xa5));
                assert!(b[4096..8192].iter().all(|&x| x == 0));
                assert!(b[8192..].iter().all(|&x| x == 0xa5));
                assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
            }
            // a file system without hole punching
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
        }
    }

    #[test]
    fn poll_without_a_poll_syscall() {
        // aarch64 has ppoll only; musl's poll() maps onto it
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(poll_readable([a.as_raw_fd()], 0).unwrap(), [false]);
        (&b).write_all(b"x").unwrap();
        assert_eq!(poll_readable([a.as_raw_fd()], 1000).unwrap(), [true]);
    }

    #[test]
    fn page_size_is_the_kernels() {
        // arm64 kernels may use 4, 16 or 64 KiB pages (Debian's: 4)
        assert!([4096, 16384, 65536].contains(&page_size()));
    }
}
