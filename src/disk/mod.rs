//! The disk layer: every block device the agent reads or writes goes
//! through here, whoever asks (erase, deploy, inventory, RAID).
//!
//! * [`device`]: how a disk is opened (read, exclusive write, the image
//!   writer's `O_DIRECT` with its fallback), aligned buffers, geometry,
//!   the partition-table re-read;
//! * [`gpt`], [`mbr`], [`table`]: partition tables, parsed leniently
//!   (probing a disk about to be wiped) or strictly (what the kernel will
//!   read after a deploy), created and relocated;
//! * [`signatures`]: what `wipefs` would list, and where backups live;
//! * [`md`]: Linux software RAID: v1.x superblocks, and arrays as the
//!   kernel runs them ([`md::array`]);
//! * [`list`]: the block devices under /sys/block (IPA's
//!   `list_all_block_devices`), and [`usage`]: whether one is in use.
//!
//! Positioned I/O goes through the [`Io`] trait, implemented for files and
//! for [`MemDisk`], so every parser runs on byte vectors in unit tests and
//! a hostile table can only produce an error, never a panic.

pub mod device;
pub mod gpt;
pub mod list;
pub mod mbr;
pub mod md;
pub mod signatures;
pub mod table;
pub mod usage;

pub use crate::util::guid::Guid;
pub use device::{direct_off, direct_restore, geometry, reread_partitions, AlignedBuf, Disk};
pub use list::BlockDevice;
pub use table::{fix_gpt, partition_path, read_table, Found, Label, Partition, Table};

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Positioned I/O over a disk: a `File` (device or sparse file) or, in
/// tests, a buffer. Readers and writers take `&dyn Io`, not `impl Io`:
/// sector-sized I/O gains nothing from static dispatch, and `File`, `&File`
/// and `MemDisk` instantiated the partition-table, GPT, ISO 9660 and FAT
/// code twice (8,448 bytes of the static binary, 2026-12-06).
pub trait Io {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
}

impl Io for File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, off)
    }
}

impl Io for &File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(*self, buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(*self, buf, off)
    }
}

/// An in-memory disk for unit tests and for building small images.
#[derive(Clone, Debug)]
pub struct MemDisk(pub Vec<u8>);

impl MemDisk {
    pub fn new(len: usize) -> MemDisk {
        MemDisk(vec![0; len])
    }
}

fn range(len: usize, buf: usize, off: u64) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(off).map_err(|_| io::ErrorKind::UnexpectedEof)?;
    let end = start
        .checked_add(buf)
        .filter(|&e| e <= len)
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    Ok(start..end)
}

impl Io for MemDisk {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let r = range(self.0.len(), buf.len(), off)?;
        buf.copy_from_slice(&self.0[r]);
        Ok(())
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let r = range(self.0.len(), buf.len(), off)?;
        self.0[r].copy_from_slice(buf);
        Ok(())
    }
}

/// Size and logical sector size of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub sector: u64,
    pub size: u64,
}

impl Geometry {
    pub fn sectors(&self) -> u64 {
        self.size / self.sector
    }
    /// Sectors per MiB (the alignment unit of parted's `-a optimal` and of
    /// every table written here).
    pub fn mib(&self) -> u64 {
        (1 << 20) / self.sector
    }
}
