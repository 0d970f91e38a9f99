//! What the fuzz targets share: a disk made of the fuzzer's bytes, an image
//! target in memory, and ways to cut one input into several.

use ironic_agent::disk::Io;
use ironic_agent::image::writer::{IoMode, Target};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

const BLOCK: u64 = 4096;

/// A disk of `size` bytes that starts with the fuzzer's bytes and reads
/// zeroes after them (a small image on a larger disk, as a deploy writes
/// it), so that seeds can be stored without their trailing zeroes. Writes
/// land in an overlay of 4 KiB blocks: a parser that writes (the backup
/// GPT moved to the end, a FAT written) costs what it writes, not the
/// disk's size.
pub struct SparseDisk<'a> {
    pub data: &'a [u8],
    /// Where the data starts on the disk (zeroes before it).
    pub at: u64,
    pub size: u64,
    overlay: HashMap<u64, Box<[u8; BLOCK as usize]>>,
}

impl<'a> SparseDisk<'a> {
    pub fn new(data: &'a [u8], size: u64) -> SparseDisk<'a> {
        SparseDisk {
            data,
            at: 0,
            size,
            overlay: HashMap::new(),
        }
    }

    /// The data at byte `at` of a disk that ends with it, rounded up to
    /// whole `sector`s: an image whose first `at` bytes are zeroes, stored
    /// without them (ISO 9660's 32 KiB system area).
    pub fn after_gap(data: &'a [u8], at: u64, sector: u64) -> SparseDisk<'a> {
        let size = (at + data.len() as u64).div_ceil(sector).max(1) * sector;
        SparseDisk {
            at,
            ..SparseDisk::new(data, size)
        }
    }

    /// The data's length rounded up to whole `sector`s (at least one).
    pub fn fitted(data: &'a [u8], sector: u64) -> SparseDisk<'a> {
        let size = (data.len() as u64).div_ceil(sector).max(1) * sector;
        SparseDisk::new(data, size)
    }

    fn base_byte(&self, off: u64) -> u8 {
        off.checked_sub(self.at)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| self.data.get(o).copied())
            .unwrap_or(0)
    }

    fn check(&self, len: usize, off: u64) -> io::Result<()> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl Io for SparseDisk<'_> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.check(buf.len(), off)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let (blk, within) = (pos / BLOCK, (pos % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.overlay.get(&blk) {
                Some(b) => dst.copy_from_slice(&b[within..within + n]),
                None if pos >= self.at => {
                    let start = usize::try_from(pos - self.at).unwrap_or(usize::MAX);
                    let have = self.data.len().saturating_sub(start).min(n);
                    if have > 0 {
                        dst[..have].copy_from_slice(&self.data[start..start + have]);
                    }
                    dst[have..].fill(0);
                }
                None => {
                    for (i, x) in dst.iter_mut().enumerate() {
                        *x = self.base_byte(pos + i as u64);
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.check(buf.len(), off)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let (blk, within) = (pos / BLOCK, (pos % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(buf.len() - done);
            if !self.overlay.contains_key(&blk) {
                let mut b = Box::new([0u8; BLOCK as usize]);
                for (i, x) in b.iter_mut().enumerate() {
                    *x = self.base_byte(blk * BLOCK + i as u64);
                }
                self.overlay.insert(blk, b);
            }
            let b = self.overlay.get_mut(&blk).expect("just inserted");
            b[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// `data` cut at its first `sep`: (before, after); all of it and nothing
/// when there is none.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The input as a JSON object, the way the API decodes a request body.
pub fn json_object(data: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// A memory-backed file (memfd), reused by every run of a target: the
/// image writer's target device.
pub fn memfd() -> File {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the fd it
    // returns is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"fuzz-target".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: a fresh fd that nothing else owns.
    unsafe { File::from_raw_fd(fd) }
}

/// An image target of `len` bytes on `file`, emptied first: a whole disk,
/// buffered I/O (no O_DIRECT on a memfd), 512-byte sectors.
pub fn image_target(file: &File, len: u64) -> Target {
    file.set_len(0).expect("truncate the memfd");
    file.set_len(len).expect("size the memfd");
    let f = file.try_clone().expect("dup the memfd");
    Target::new(
        f,
        "/dev/fuzz",
        "fuzz-image",
        IoMode::Buffered,
        512,
        len,
        0,
        len,
        true,
    )
}
