//! Block devices opened for the agent's work, and the buffers their direct
//! I/O needs. One place decides how a disk is opened:
//!
//! * [`Disk::open`] with [`Access::Read`]: erase verification and surveys
//!   read with `O_DIRECT`, so what comes back is what the device returns
//!   and not the page cache;
//! * [`Disk::open`] with [`Access::Write`]: erase and metadata wipes also
//!   open with `O_EXCL`: for a block device the kernel then refuses with
//!   EBUSY while a file system is mounted on it or on one of its
//!   partitions, or an md/dm device holds it (`bd_prepare_to_claim`), a
//!   last guard beneath the agent's own in-use checks
//!   ([`super::usage::check_not_in_use`]);
//! * [`open_for_image`]: the image writer's exclusive open, `O_DIRECT`
//!   where the device accepts it, buffered otherwise (or when asked).
//!
//! Fixture roots stand in for disks with regular (sparse) files: those get
//! plain buffered I/O and `fsync`, and no ioctls; their sector size comes
//! from the fixture's `/sys/block/<dev>/queue/logical_block_size`.

use super::Geometry;
use crate::error::{AgentError, Kind, Result};
use crate::root::Root;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Memory alignment of every buffer handed to `O_DIRECT` I/O: the page
/// size, which satisfies any logical block size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// A heap buffer whose usable part starts at an [`ALIGN`] boundary,
/// without unsafe code: a `Vec` over-allocated by `ALIGN` bytes, used from
/// its first aligned byte and never reallocated. `len` bytes of the
/// capacity are in use; the buffer derefs to them.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
    /// Bytes in use, from the start.
    pub len: usize,
}

impl AlignedBuf {
    /// An empty buffer of `cap` bytes of (zeroed) capacity.
    pub fn new(cap: usize) -> AlignedBuf {
        let raw = vec![0u8; cap + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        assert!(start < ALIGN, "u8 pointers can always be aligned");
        AlignedBuf {
            raw,
            start,
            cap,
            len: 0,
        }
    }

    /// `len` zero bytes, all in use.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::new(len);
        b.len = len;
        b
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The whole capacity, for filling.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.cap]
    }

    /// The bytes in use.
    pub fn data(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// How [`Disk::open`] opens a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only, `O_DIRECT` on block devices.
    Read,
    /// Read and write, `O_DIRECT | O_EXCL` on block devices.
    Write,
}

/// A disk opened for erase work, with positional direct I/O.
pub struct Disk {
    file: File,
    /// The machine name ("/dev/sda"), for messages.
    pub name: String,
    /// The path opened (root-mapped; a symlink or sparse file in fixtures).
    pub path: PathBuf,
    pub size: u64,
    /// Logical sector size: every direct I/O offset and length is a
    /// multiple of it.
    pub sector: u32,
    /// A real block device (ioctls and `O_DIRECT` apply).
    pub block: bool,
}

impl Disk {
    /// Open `path` (standing for `name`). `sector_hint` is used for regular
    /// files (the fixture's sysfs `queue/logical_block_size`, else 512).
    pub fn open(path: &Path, name: &str, access: Access, sector_hint: u32) -> io::Result<Disk> {
        let write = access == Access::Write;
        let block = std::fs::metadata(path)?.file_type().is_block_device();
        let mut o = OpenOptions::new();
        o.read(true).write(write);
        if block {
            let mut flags = libc::O_DIRECT;
            if write {
                flags |= libc::O_EXCL;
            }
            o.custom_flags(flags);
        }
        let file = o.open(path)?;
        let (size, sector) = if block {
            (
                crate::sys::block_device_size(&file)?,
                crate::sys::logical_sector_size(&file)?,
            )
        } else {
            (file.metadata()?.len(), sector_hint.max(512))
        };
        Ok(Disk {
            file,
            name: name.to_string(),
            path: path.to_path_buf(),
            size,
            sector,
            block,
        })
    }

    /// Open the device `name` ("/dev/sda") under `root`, its sector hint
    /// from the root's sysfs.
    pub fn open_in(root: &Root, name: &str, access: Access) -> io::Result<Disk> {
        let hint = root
            .read_u64(format!(
                "/sys/block/{}/queue/logical_block_size",
                kname(Path::new(name))
            ))
            .unwrap_or(512) as u32;
        Disk::open(&root.path(name), name, access, hint)
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Round `[off, off+len)` outwards to whole sectors, clamped to the
    /// device.
    pub fn align_out(&self, off: u64, len: u64) -> (u64, u64) {
        let s = u64::from(self.sector);
        let start = off / s * s;
        let end = (off.saturating_add(len)).div_ceil(s) * s;
        let end = end.min(self.size);
        (start.min(end), end.saturating_sub(start.min(end)))
    }

    /// Read `len` bytes at `off` (any alignment); fewer at the end of the
    /// device.
    pub fn read_at(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let (start, alen) = self.align_out(off, len as u64);
        let mut buf = AlignedBuf::zeroed(alen as usize);
        let got = self.read_full(start, &mut buf)?;
        let skip = (off - start) as usize;
        if got <= skip {
            return Ok(vec![]);
        }
        Ok(buf[skip..got.min(skip + len)].to_vec())
    }

    /// Fill `buf` from `off` (aligned when direct), retrying short reads;
    /// returns the bytes read (less than `buf.len()` only at the end).
    pub fn read_full(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Write all of `buf` at `off` (both sector-aligned and `buf` from an
    /// [`AlignedBuf`] when the disk is a block device).
    pub fn write_all_at(&self, off: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }

    /// Zero `[off, off+len)`, rounded out to sectors and clamped to the
    /// device, with ordinary writes (not BLKZEROOUT: a write of zeroes is
    /// what every device honours the same way). Returns the bytes written.
    pub fn zero(&self, off: u64, len: u64, zeroes: &AlignedBuf) -> io::Result<u64> {
        let (mut pos, len) = self.align_out(off, len);
        let end = pos + len;
        while pos < end {
            let n = ((end - pos) as usize).min(zeroes.len());
            self.write_all_at(pos, &zeroes[..n])?;
            pos += n as u64;
        }
        Ok(len)
    }

    /// fsync: for a block device this also flushes the drive's volatile
    /// write cache (`blkdev_fsync` issues a FLUSH).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Tell the kernel to re-read the partition table ([`reread`]).
    pub fn reread_partitions(&self) -> io::Result<()> {
        reread(&self.file).map(drop)
    }
}

/// The kernel name of a device path: "/dev/sda" → "sda".
pub fn kname(dev_path: &Path) -> String {
    dev_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Turn O_DIRECT off on `file` for small, unaligned table I/O; returns
/// whether it was on, for [`direct_restore`]. The streaming writer hands
/// over the file it opened with O_DIRECT.
pub fn direct_off(dev_path: &Path, file: &File) -> bool {
    crate::sys::set_o_direct(file, false).unwrap_or_else(|e| {
        crate::util::log_at!(
            Warn,
            "{}: cannot turn O_DIRECT off: {e}",
            dev_path.display()
        );
        false
    })
}

/// Put O_DIRECT back when [`direct_off`] found it on.
pub fn direct_restore(dev_path: &Path, file: &File, was: bool) {
    if was {
        if let Err(e) = crate::sys::set_o_direct(file, true) {
            crate::util::log_at!(
                Warn,
                "{}: cannot turn O_DIRECT back on: {e}",
                dev_path.display()
            );
        }
    }
}

/// BLKSSZGET/BLKGETSIZE64 for a block device; for a regular file (fixture
/// root) its length and `/sys/block/<name>/queue/logical_block_size` from
/// the root, 512 when absent.
pub fn geometry(root: &Root, dev_path: &Path, file: &File) -> Result<Geometry> {
    let (sector, size) = if crate::sys::is_block_device(file) {
        let s = crate::sys::logical_sector_size(file).map_err(|e| {
            AgentError::io(
                Kind::BlockDeviceError,
                format!("reading the sector size of {}", dev_path.display()),
                e,
            )
        })?;
        let n = crate::sys::block_device_size(file).map_err(|e| {
            AgentError::io(
                Kind::BlockDeviceError,
                format!("reading the size of {}", dev_path.display()),
                e,
            )
        })?;
        (u64::from(s), n)
    } else {
        let n = file
            .metadata()
            .map_err(|e| {
                AgentError::io(
                    Kind::BlockDeviceError,
                    format!("reading the size of {}", dev_path.display()),
                    e,
                )
            })?
            .len();
        let p = root.path(format!(
            "/sys/block/{}/queue/logical_block_size",
            kname(dev_path)
        ));
        let s = std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(512);
        (s, n)
    };
    if !(512..=65536).contains(&sector) || !sector.is_power_of_two() {
        return Err(AgentError::block_device(format!(
            "{} reports an unsupported logical sector size of {sector} bytes",
            dev_path.display()
        )));
    }
    Ok(Geometry { sector, size })
}

/// BLKRRPART with coreos-installer's retries (`src/blockdev.rs:
/// reread_partition_table`: 20 × 100 ms while the kernel answers EBUSY,
/// e.g. while udev still holds a partition it just probed). Regular files
/// are skipped. `Ok(false)`: EINVAL, a device that cannot carry partitions
/// (a loop device without partscan, md), which callers do not treat as an
/// error (IPA's `partprobe` failures are warnings too).
pub fn reread(file: &File) -> io::Result<bool> {
    if !crate::sys::is_block_device(file) {
        return Ok(true);
    }
    let mut attempt = 0;
    loop {
        match crate::sys::reread_partitions(file) {
            Ok(()) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 19 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`reread`] after a sync, as a `BlockDeviceError` naming why it failed;
/// a device that cannot be partitioned is a warning.
pub fn reread_partitions(dev_path: &Path, file: &File) -> Result<()> {
    let _ = file.sync_all();
    match reread(file) {
        Ok(true) => Ok(()),
        Ok(false) => {
            crate::util::log_at!(
                Warn,
                "{}: the kernel cannot re-read its partition table (not a partitionable \
                 device, e.g. a loop device without partscan)",
                dev_path.display()
            );
            Ok(())
        }
        Err(e) => {
            let busy = if e.raw_os_error() == Some(libc::EBUSY) {
                " (a partition is still in use; tried 20 times over 2 s)"
            } else {
                ""
            };
            Err(AgentError::new(
                Kind::BlockDeviceError,
                format!(
                    "re-reading the partition table of {}: {e}{busy}",
                    dev_path.display()
                ),
            ))
        }
    }
}

/// How the device is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    Direct,
    Buffered,
}

impl IoMode {
    /// The mode asked for: O_DIRECT unless `IRONIC_AGENT_IMAGE_IO=buffered`.
    pub fn preferred() -> IoMode {
        match std::env::var("IRONIC_AGENT_IMAGE_IO").as_deref() {
            Ok("buffered") => IoMode::Buffered,
            _ => IoMode::Direct,
        }
    }
}

/// Open `path` (the device `dev` inside the agent's root) for writing an
/// image: exclusively when it is a block device (O_EXCL makes the kernel
/// refuse while a partition is mounted, used as swap or held by md, LVM or
/// device-mapper, and keeps anyone from mounting it meanwhile), with
/// O_DIRECT when allowed. Returns the file and the mode obtained.
pub fn open_for_image(path: &Path, dev: &str, want: IoMode) -> Result<(File, IoMode)> {
    let is_blk = std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .map_err(|e| {
            AgentError::io(
                Kind::DeviceNotFound,
                format!("opening the install device {dev}"),
                e,
            )
        })?;
    let excl = if is_blk { libc::O_EXCL } else { 0 };
    let open = |flags: i32| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags | excl)
            .open(path)
    };
    let busy = |e: io::Error| {
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            " (a partition of it is mounted, used as swap, or held by md, LVM or device-mapper)"
        } else {
            ""
        };
        AgentError::new(
            Kind::ImageWriteError,
            format!("opening {dev} for writing: {e}{hint}"),
        )
    };
    if want == IoMode::Direct {
        match open(libc::O_DIRECT) {
            Ok(f) => return Ok((f, IoMode::Direct)),
            // tmpfs, overlayfs and some drivers refuse O_DIRECT
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                crate::util::log_at!(
                    Info,
                    "{dev} does not accept O_DIRECT; writing through the page cache"
                );
            }
            Err(e) => return Err(busy(e)),
        }
    }
    open(0).map(|f| (f, IoMode::Buffered)).map_err(busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers() {
        for len in [0, 1, 4096, 1 << 20] {
            let b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            assert!(b.iter().all(|x| *x == 0));
        }
    }

    #[test]
    fn file_disk_io() {
        let dir = std::env::temp_dir().join(format!("diskio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("disk");
        std::fs::write(&p, vec![0xa5u8; 10_000]).unwrap();
        let d = Disk::open(&p, "/dev/sdx", Access::Write, 0).unwrap();
        assert!(!d.block);
        assert_eq!((d.size, d.sector), (10_000, 512));
        assert_eq!(d.align_out(100, 10), (0, 512));
        assert_eq!(d.align_out(9_990, 100), (9_728, 272));
        let z = AlignedBuf::zeroed(4096);
        assert_eq!(d.zero(600, 5000, &z).unwrap(), 5120);
        let back = d.read_at(0, 10_000).unwrap();
        assert!(back[..512].iter().all(|b| *b == 0xa5));
        assert!(back[512..5632].iter().all(|b| *b == 0));
        assert!(back[5632..].iter().all(|b| *b == 0xa5));
        assert_eq!(d.read_at(9_999, 10).unwrap().len(), 1);
        assert!(d.reread_partitions().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
