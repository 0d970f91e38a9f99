//! Command pass-through to storage devices, for secure erase without
//! nvme-cli, hdparm or sg3_utils:
//!
//! * NVMe admin commands (`NVME_IOCTL_ADMIN_CMD`, `NVME_IOCTL_ID`) from
//!   `include/uapi/linux/nvme_ioctl.h`;
//! * SCSI commands through the SCSI generic v3 interface (`SG_IO`,
//!   `struct sg_io_hdr` from `include/scsi/sg.h`), which also carries ATA
//!   commands wrapped in ATA PASS-THROUGH(16) (T10 SAT) to SATA disks
//!   behind libata or a SAS HBA.
//!
//! Neither structure is in the libc crate; both are declared here with
//! compile-time size checks against the kernel's layout (x86_64 and
//! aarch64, LP64). Both ioctls need CAP_SYS_ADMIN (NVMe) or CAP_SYS_RAWIO
//! (arbitrary SCSI opcodes), which the ramdisk's agent has as root.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `struct nvme_passthru_cmd` (alias `nvme_admin_cmd`), 72 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NvmeAdminCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    /// 0 = the driver's default admin timeout (60 s).
    pub timeout_ms: u32,
    /// Completion queue entry dword 0.
    pub result: u32,
}

const _: () = assert!(std::mem::size_of::<NvmeAdminCmd>() == 72);

/// `_IO('N', 0x40)`: the namespace ID of a namespace block device.
pub const NVME_IOCTL_ID: u32 = 0x4e40;
/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
pub const NVME_IOCTL_ADMIN_CMD: u32 = 0xc048_4e41;

/// What an NVMe admin command returned: the status field of the
/// completion (0 = success; Status Code Type in bits 10:8, Status Code in
/// 7:0, as the ioctl returns it) and completion dword 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeCompletion {
    pub status: u32,
    pub result: u32,
}

/// Send one admin command. `data` is the command's data buffer (either
/// direction: Identify and Get Log Page fill it, Format and Sanitize take
/// none); `cmd.addr` and `cmd.data_len` are set from it here. `Err` is an
/// errno from the driver (ENOTTY: not an NVMe device); a device-side
/// failure is `Ok` with a non-zero `status`.
pub fn nvme_admin(f: &File, cmd: &mut NvmeAdminCmd, data: &mut [u8]) -> io::Result<NvmeCompletion> {
    cmd.addr = if data.is_empty() {
        0
    } else {
        data.as_mut_ptr() as u64
    };
    cmd.data_len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NVMe buffer too large"))?;
    // SAFETY: `f` is an open NVMe block or character device; the kernel
    // reads the 72-byte `nvme_admin_cmd` at `cmd` (layout checked above),
    // writes back its `result` field, and transfers at most `data_len`
    // bytes to or from `addr`, which point into `data`, a live exclusive
    // slice of exactly that length for the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            NVME_IOCTL_ADMIN_CMD as _,
            cmd as *mut NvmeAdminCmd,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NvmeCompletion {
        status: ret as u32,
        result: cmd.result,
    })
}

/// NVME_IOCTL_ID: the namespace ID behind a namespace block device.
pub fn nvme_namespace_id(f: &File) -> io::Result<u32> {
    // SAFETY: `f` is an open file descriptor; NVME_IOCTL_ID takes no
    // argument and returns the namespace ID as the ioctl's value.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), NVME_IOCTL_ID as _, 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// `struct sg_io_hdr` (`include/scsi/sg.h`), 88 bytes on LP64.
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<SgIoHdr>() == 88);

/// `SG_IO` from `include/scsi/sg.h`.
pub const SG_IO: u32 = 0x2285;
const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// Direction of a SCSI command's data phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgDir {
    None,
    ToDevice,
    FromDevice,
}

/// How a SCSI command ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SgResult {
    /// SCSI status byte (0 GOOD, 2 CHECK CONDITION, ...).
    pub status: u8,
    pub host_status: u16,
    pub driver_status: u16,
    /// Sense data the device returned (empty when none).
    pub sense: Vec<u8>,
    /// Bytes requested but not transferred.
    pub resid: i32,
}

/// Send one SCSI command (`cdb`, 6 to 16 bytes) with `data` as its data
/// buffer in direction `dir`. `Err` is an errno from the ioctl (ENOTTY or
/// EINVAL: the device does not take SCSI commands, e.g. virtio-blk);
/// command failures are `Ok` with a non-GOOD status and sense data.
pub fn sg_io(
    f: &File,
    cdb: &[u8],
    dir: SgDir,
    data: &mut [u8],
    timeout_ms: u32,
) -> io::Result<SgResult> {
    if cdb.len() > 16 || cdb.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad CDB length",
        ));
    }
    let mut sense = [0u8; 64];
    let (direction, len) = match dir {
        SgDir::None => (SG_DXFER_NONE, 0),
        SgDir::ToDevice => (SG_DXFER_TO_DEV, data.len()),
        SgDir::FromDevice => (SG_DXFER_FROM_DEV, data.len()),
    };
    let mut hdr = SgIoHdr {
        interface_id: b'S' as libc::c_int,
        dxfer_direction: direction,
        cmd_len: cdb.len() as u8,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: u32::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SG_IO buffer too large"))?,
        dxferp: if len == 0 {
            std::ptr::null_mut()
        } else {
            data.as_mut_ptr().cast()
        },
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `f` is an open SCSI-capable block or sg device; the kernel
    // reads the 88-byte `sg_io_hdr` at `hdr` (layout checked above) and
    // writes its output fields; it reads `cmd_len` bytes from `cmdp`
    // (`cdb`), writes at most `mx_sb_len` bytes to `sbp` (`sense`, 64
    // bytes) and transfers at most `dxfer_len` bytes to or from `dxferp`
    // (`data`, at least that long). All four buffers outlive the call.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SgResult {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        sense: sense[..usize::from(hdr.sb_len_wr).min(sense.len())].to_vec(),
        resid: hdr.resid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_refuse_passthrough() {
        let f = File::open("/proc/self/status").unwrap();
        let mut cmd = NvmeAdminCmd {
            opcode: 0x06,
            cdw10: 1,
            ..Default::default()
        };
        let mut buf = [0u8; 4096];
        assert!(nvme_admin(&f, &mut cmd, &mut buf).is_err());
        assert!(nvme_namespace_id(&f).is_err());
        let mut id = [0u8; 512];
        let cdb = [0x85, 0x08, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xec, 0];
        assert!(sg_io(&f, &cdb, SgDir::FromDevice, &mut id, 1000).is_err());
        assert!(sg_io(&f, &[], SgDir::None, &mut [], 1000).is_err());
    }
}
