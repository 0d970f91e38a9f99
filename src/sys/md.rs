//! The md (software RAID) driver's ioctls (`include/uapi/linux/raid/md_u.h`,
//! `drivers/md/md.c: md_ioctl`), what mdadm uses to assemble native v1.x
//! arrays: `SET_ARRAY_INFO` with only the metadata version ("assemble from
//! the superblocks"), `ADD_NEW_DISK` per member (the kernel reads and
//! checks that member's superblock), `RUN_ARRAY`, and `STOP_ARRAY`.
//!
//! The kernel never writes a fresh v1 superblock itself: `crate::disk::md`
//! builds them and `crate::disk::md::array` drives these calls. Every
//! request except the three GET ones needs CAP_SYS_ADMIN.

use super::check;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `MD_MAJOR` (include/uapi/linux/major.h): the block major of `mdN`.
pub const MD_MAJOR: u32 = 9;

/// `_IOC(dir, type, nr, size)` on x86-64 and arm64: dir in bits 30–31
/// (1 = write, 2 = read), the size in bits 16–29.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (MD_MAJOR << 8) | nr
}

/// `_IOR(MD_MAJOR, 0x11, mdu_array_info_t)`.
pub const GET_ARRAY_INFO: u32 = ioc(2, 0x11, std::mem::size_of::<ArrayInfo>());
/// `_IOR(MD_MAJOR, 0x12, mdu_disk_info_t)`.
pub const GET_DISK_INFO: u32 = ioc(2, 0x12, std::mem::size_of::<DiskInfo>());
/// `_IOW(MD_MAJOR, 0x21, mdu_disk_info_t)`.
pub const ADD_NEW_DISK: u32 = ioc(1, 0x21, std::mem::size_of::<DiskInfo>());
/// `_IOW(MD_MAJOR, 0x23, mdu_array_info_t)`.
pub const SET_ARRAY_INFO: u32 = ioc(1, 0x23, std::mem::size_of::<ArrayInfo>());
/// `_IOW(MD_MAJOR, 0x30, mdu_param_t)`: a 12-byte struct the kernel
/// ignores (mdadm passes NULL).
pub const RUN_ARRAY: u32 = ioc(1, 0x30, 12);
/// `_IO(MD_MAJOR, 0x32)`.
pub const STOP_ARRAY: u32 = ioc(0, 0x32, 0);
/// `_IO(MD_MAJOR, 0x34)`: EBUSY when the array is already read-write.
pub const RESTART_ARRAY_RW: u32 = ioc(0, 0x34, 0);

/// `mdu_array_info_t`: 18 ints. For v1.x assembly only the version
/// fields are set; everything else stays 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrayInfo {
    pub major_version: i32,
    pub minor_version: i32,
    pub patch_version: i32,
    pub ctime: u32,
    pub level: i32,
    /// KiB per member (-1 when it does not fit an int).
    pub size: i32,
    pub nr_disks: i32,
    pub raid_disks: i32,
    pub md_minor: i32,
    pub not_persistent: i32,
    pub utime: u32,
    pub state: i32,
    pub active_disks: i32,
    pub working_disks: i32,
    pub failed_disks: i32,
    pub spare_disks: i32,
    pub layout: i32,
    pub chunk_size: i32,
}

/// `mdu_disk_info_t`: for `ADD_NEW_DISK` while assembling only `major`
/// and `minor` count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    pub number: i32,
    pub major: i32,
    pub minor: i32,
    pub raid_disk: i32,
    pub state: i32,
}

/// `GET_ARRAY_INFO`. ENODEV: the md device has no array configured (a
/// free node).
pub fn get_array_info(f: &File) -> io::Result<ArrayInfo> {
    let mut info = ArrayInfo::default();
    // SAFETY: `f` is an open md device; GET_ARRAY_INFO writes one
    // mdu_array_info_t (72 bytes, the size encoded in the request) into
    // `info`, a #[repr(C)] struct of that layout alive for the call.
    check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            GET_ARRAY_INFO as _,
            &mut info as *mut ArrayInfo,
        )
    })?;
    Ok(info)
}

/// `SET_ARRAY_INFO` with `raid_disks == 0`: record the superblock format
/// (major 1, minor 0/1/2) so that the members' own superblocks describe
/// the array. EBUSY when the md device already has members.
pub fn set_array_version(f: &File, major: i32, minor: i32) -> io::Result<()> {
    let info = ArrayInfo {
        major_version: major,
        minor_version: minor,
        ..ArrayInfo::default()
    };
    // SAFETY: `f` is an open md device; SET_ARRAY_INFO reads one
    // mdu_array_info_t (72 bytes) from `info`, a #[repr(C)] struct of that
    // layout alive for the call.
    check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            SET_ARRAY_INFO as _,
            &info as *const ArrayInfo,
        )
    })
    .map(|_| ())
}

/// `ADD_NEW_DISK` of the block device `major:minor`: the kernel opens it
/// exclusively and loads its superblock. EINVAL: no valid superblock, or
/// one of another array; EBUSY: in use or a duplicate slot.
pub fn add_new_disk(f: &File, major: u32, minor: u32) -> io::Result<()> {
    let d = DiskInfo {
        major: major as i32,
        minor: minor as i32,
        ..DiskInfo::default()
    };
    // SAFETY: `f` is an open md device; ADD_NEW_DISK reads one
    // mdu_disk_info_t (20 bytes) from `d`, a #[repr(C)] struct of that
    // layout alive for the call.
    check(unsafe { libc::ioctl(f.as_raw_fd(), ADD_NEW_DISK as _, &d as *const DiskInfo) })
        .map(|_| ())
}

/// `RUN_ARRAY` (argument NULL, as mdadm): validate the bound members'
/// superblocks, load the personality (the kernel's request_module
/// "md-level-N"), start the array.
pub fn run_array(f: &File) -> io::Result<()> {
    // SAFETY: `f` is an open md device; RUN_ARRAY ignores its argument, a
    // null pointer here, so the kernel reads no user memory.
    check(unsafe { libc::ioctl(f.as_raw_fd(), RUN_ARRAY as _, std::ptr::null::<u8>()) }).map(|_| ())
}

/// `STOP_ARRAY`: stop and release every member. EBUSY while anyone but
/// this file descriptor has the md device open (a mount, another holder).
pub fn stop_array(f: &File) -> io::Result<()> {
    super::ioctl_none(f, STOP_ARRAY)
}

/// `RESTART_ARRAY_RW`: switch an auto-read-only array to read-write (so
/// its resync starts); EBUSY when it already is.
pub fn restart_array_rw(f: &File) -> io::Result<()> {
    super::ioctl_none(f, RESTART_ARRAY_RW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_md_u_h() {
        // computed with the kernel's _IOR/_IOW macros on x86-64
        assert_eq!(GET_ARRAY_INFO, 0x8048_0911);
        assert_eq!(GET_DISK_INFO, 0x8014_0912);
        assert_eq!(ADD_NEW_DISK, 0x4014_0921);
        assert_eq!(SET_ARRAY_INFO, 0x4048_0923);
        assert_eq!(RUN_ARRAY, 0x400c_0930);
        assert_eq!(STOP_ARRAY, 0x0000_0932);
        assert_eq!(RESTART_ARRAY_RW, 0x0000_0934);
    }

    #[test]
    fn struct_layouts() {
        assert_eq!(std::mem::size_of::<ArrayInfo>(), 72);
        assert_eq!(std::mem::size_of::<DiskInfo>(), 20);
        assert_eq!(std::mem::align_of::<ArrayInfo>(), 4);
        let a = ArrayInfo::default();
        let base = &a as *const ArrayInfo as usize;
        assert_eq!(&a.ctime as *const u32 as usize - base, 12);
        assert_eq!(&a.utime as *const u32 as usize - base, 40);
        assert_eq!(&a.chunk_size as *const i32 as usize - base, 68);
        let d = DiskInfo::default();
        assert_eq!(
            &d.state as *const i32 as usize - &d as *const DiskInfo as usize,
            16
        );
    }

    #[test]
    fn not_an_md_device() {
        let f = File::open("/proc/self/status").unwrap();
        assert!(get_array_info(&f).is_err());
        assert!(stop_array(&f).is_err());
    }
}
