//! A disk opened for erase work, with positional direct I/O.
//!
//! Block devices are opened with `O_DIRECT`, so what is read back is what
//! the device returns and not the page cache, and writes reach the device
//! without filling the cache with gigabytes of zeroes. Writers also open
//! with `O_EXCL`: for a block device the kernel then refuses with EBUSY
//! when a file system is mounted on it or on one of its partitions, or an
//! md/dm device holds it (`bd_prepare_to_claim`), a last guard beneath our
//! own in-use checks.
//!
//! Fixture roots stand in for disks with regular (sparse) files: those get
//! plain buffered I/O and `fsync`, and no ioctls.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Buffer alignment for `O_DIRECT`: the largest logical block size in use
/// (4Kn disks), which also satisfies 512-byte devices.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is `ALIGN`-aligned, without `unsafe`: a
/// `Vec` over-allocated by `ALIGN` bytes and used from the first aligned
/// byte.
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        assert!(off < ALIGN, "u8 pointers can always be aligned");
        AlignedBuf { raw, off, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

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
    /// Open `path` (standing for `name`). `write` adds `O_EXCL` on block
    /// devices. `sector_hint` is used for regular files (sysfs
    /// `queue/logical_block_size` of the fixture, else 512).
    pub fn open(path: &Path, name: &str, write: bool, sector_hint: u32) -> io::Result<Disk> {
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

    /// BLKRRPART, retrying EBUSY for up to 2 s as coreos-installer does
    /// (`src/blockdev.rs: reread_partition_table`): udev or a just-closed
    /// partition may still hold the disk for a moment. Regular files and
    /// devices that cannot be partitioned (EINVAL: loop devices without
    /// partscan, md) are not an error.
    pub fn reread_partitions(&self) -> io::Result<()> {
        if !self.block {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            match crate::sys::reread_partitions(&self.file) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }
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
        let d = Disk::open(&p, "/dev/sdx", true, 0).unwrap();
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
