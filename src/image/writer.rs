//! The target side of an image write: a disk (or, for partition images, the
//! root partition's byte range on it) written with large aligned buffers,
//! with its first MiB held back until the image has verified.
//!
//! The order of operations is coreos-installer's (`download.rs:
//! image_copy_default`, `install.rs: write_disk`/`reset_partition_table`)
//! with verification moved *before* the head is written:
//!
//! 1. [`Target::prepare`]: zero the first MiB (and, for a whole disk, the
//!    last MiB, where the backup GPT lives: 33 sectors at 512 bytes, 5 at
//!    4096; md 1.0 and ZFS labels sit there too) and sync;
//! 2. stream everything through [`Target::write_at`] / [`Target::zero_range`]:
//!    bytes for the first MiB, and for a whole disk the last MiB, are kept
//!    in memory instead of being written, so a backup GPT at the very end of
//!    a disk-sized image cannot make a half-written disk bootable either;
//! 3. the caller verifies the checksum after EOF;
//! 4. [`Target::commit`]: sync, write the held-back ranges, sync again;
//! 5. on any failure [`Target::wipe`] zeroes those ranges again and syncs.
//!
//! Writes use O_DIRECT where the device accepts it (no page cache: in a
//! RAM-only ramdisk every cached page of a multi-GiB image competes with
//! the agent for memory), with a buffered fallback that starts writeback
//! every 32 MiB and drops the written pages (`sync_file_range` +
//! `POSIX_FADV_DONTNEED`). `IRONIC_AGENT_IMAGE_IO=buffered` forces the
//! fallback (benches/image-write.sh compares both).
//!
//! Ranges that must read as zeroes (qcow2 holes) are zeroed only where the
//! target does not already read zeroes: `fallocate(PUNCH_HOLE)`, which on a
//! block device is a zero-out that fails rather than falls back to writing
//! (so it is never gigabytes of redundant I/O), and where the device cannot
//! do that, a read of the range and a write of zeroes only for the MiB
//! pieces that are not zero already. Reading is chosen over tracking "this
//! disk was zeroed" because nothing zeroes a whole disk before a deploy
//! (IPA's `destroy_disk_metadata` only wipes signatures).

use crate::error::{AgentError, Kind, Result};
use crate::util::chan;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub use crate::disk::device::{AlignedBuf, IoMode, ALIGN as MEM_ALIGN};
pub use crate::disk::MIB;
/// Buffered mode: start writeback after this many bytes.
const WRITEBACK_WINDOW: u64 = 32 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZeroMode {
    Punch,
    ReadCheck,
}

/// A byte range of the device held in memory until [`Target::commit`].
struct Held {
    /// Region-relative start.
    start: u64,
    buf: AlignedBuf,
    touched: bool,
}

pub struct Target {
    file: File,
    /// The device path as the operator knows it ("/dev/sda").
    pub dev: String,
    image_id: String,
    /// Byte offset of the region on the device, and its length.
    pub base: u64,
    pub len: u64,
    disk_size: u64,
    sector: u64,
    mode: IoMode,
    zero_mode: ZeroMode,
    head: Held,
    /// Whole-disk targets: the device's last MiB.
    tail: Option<Held>,
    bounce: AlignedBuf,
    /// Buffered mode: the window being written back and the one before.
    window: Option<(u64, u64)>,
    previous: Option<(u64, u64)>,
    /// Bytes sent to the device (data and zeroes), for progress.
    pub written: u64,
}

impl Target {
    /// `base`/`len`: the region written (the whole disk, or the root
    /// partition). `whole_disk` also holds back and wipes the last MiB.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: File,
        dev: &str,
        image_id: &str,
        mode: IoMode,
        sector: u64,
        disk_size: u64,
        base: u64,
        len: u64,
        whole_disk: bool,
    ) -> Target {
        let head_len = len.min(MIB) as usize;
        let tail = (whole_disk && len > MIB).then(|| {
            let start = len - MIB.min(len - MIB);
            Held {
                start,
                buf: AlignedBuf::new(0),
                touched: false,
            }
        });
        let mut head = AlignedBuf::new(head_len);
        head.len = head_len;
        Target {
            file,
            dev: dev.to_string(),
            image_id: image_id.to_string(),
            base,
            len,
            disk_size,
            sector: sector.max(512),
            mode,
            zero_mode: ZeroMode::Punch,
            head: Held {
                start: 0,
                buf: head,
                touched: false,
            },
            tail,
            bounce: AlignedBuf::new(MIB as usize),
            window: None,
            previous: None,
            written: 0,
        }
    }

    pub fn mode(&self) -> IoMode {
        self.mode
    }

    pub fn into_file(self) -> File {
        self.file
    }

    fn write_error(&self, what: String, e: io::Error) -> AgentError {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            // IPA's ImageDownloadOutofSpaceError (fail fast, never retried)
            return AgentError::new(
                Kind::ImageDownloadOutofSpaceError,
                format!(
                    "Download of image {} failed: Unable to write image to {}. Error: {e}",
                    self.image_id, self.dev
                ),
            );
        }
        AgentError::new(
            Kind::ImageWriteError,
            format!("Writing image to device {} failed: {what}: {e}", self.dev),
        )
    }

    fn no_space(&self, end: u64) -> AgentError {
        AgentError::new(
            Kind::ImageDownloadOutofSpaceError,
            format!(
                "Download of image {} failed: Unable to write image to {}. Error: the image \
                 needs at least {end} bytes but {} has {} bytes",
                self.image_id,
                self.dev,
                if self.base == 0 {
                    "the device".to_string()
                } else {
                    "the partition".to_string()
                },
                self.len
            ),
        )
    }

    /// Positioned write of `data` at absolute device offset `abs`,
    /// respecting O_DIRECT's alignment rules.
    fn device_write(&mut self, abs: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.mode == IoMode::Buffered {
            self.file.write_all_at(data, abs)?;
            return self.writeback(abs, data.len() as u64);
        }
        let s = self.sector;
        let aligned_io = abs % s == 0 && data.len() as u64 % s == 0;
        if aligned_io && data.as_ptr() as usize % MEM_ALIGN == 0 {
            return self.file.write_all_at(data, abs);
        }
        // Through the bounce buffer: copy, and read-modify-write partial
        // sectors at either end.
        let mut done = 0usize;
        while done < data.len() {
            let pos = abs + done as u64;
            let a0 = pos - pos % s;
            let room = self.bounce.capacity() as u64 - (pos - a0);
            let n = (data.len() - done).min(room as usize);
            let end = pos + n as u64;
            let a1 = end.div_ceil(s) * s;
            let span = (a1 - a0) as usize;
            let buf = &mut self.bounce.space()[..span];
            if a0 < pos {
                read_at_zero_filled(&self.file, &mut buf[..s as usize], a0)?;
            }
            if end < a1 {
                let last = span - s as usize;
                read_at_zero_filled(&self.file, &mut buf[last..], a1 - s)?;
            }
            let off = (pos - a0) as usize;
            buf[off..off + n].copy_from_slice(&data[done..done + n]);
            self.file.write_all_at(buf, a0)?;
            done += n;
        }
        Ok(())
    }

    /// Buffered mode: keep at most two windows of dirty pages, start
    /// writeback of the newest and wait for and drop the previous one.
    fn writeback(&mut self, abs: u64, n: u64) -> io::Result<()> {
        let (lo, hi) = match self.window {
            Some((lo, hi)) => (lo.min(abs), hi.max(abs + n)),
            None => (abs, abs + n),
        };
        self.window = Some((lo, hi));
        if hi - lo < WRITEBACK_WINDOW {
            return Ok(());
        }
        // Errors here are only performance hints; fdatasync reports real
        // write errors.
        let _ = crate::sys::sync_file_range(&self.file, lo, hi - lo, false);
        if let Some((plo, phi)) = self.previous.take() {
            let _ = crate::sys::sync_file_range(&self.file, plo, phi - plo, true);
            let _ = crate::sys::drop_cache(&self.file, plo, phi - plo);
        }
        self.previous = self.window.take();
        Ok(())
    }

    /// Copy the parts of `[off, off+len)` that fall into held ranges; returns
    /// the device range left to write (region-relative).
    fn split_held(&mut self, off: u64, data: Option<&[u8]>, len: u64) -> (u64, u64) {
        let end = off + len;
        let mut lo = off;
        let mut hi = end;
        let head_end = self.head.buf.len as u64;
        if off < head_end {
            let n = (end.min(head_end) - off) as usize;
            let dst = &mut self.head.buf.space()[off as usize..off as usize + n];
            match data {
                Some(d) => dst.copy_from_slice(&d[..n]),
                None => dst.fill(0),
            }
            self.head.touched = true;
            lo = end.min(head_end);
        }
        if let Some(t) = &mut self.tail {
            let t_end = self.len;
            if end > t.start && off < t_end {
                let s = off.max(t.start);
                let e = end.min(t_end);
                if data.is_some() && t.buf.capacity() == 0 {
                    let mut b = AlignedBuf::new((t_end - t.start) as usize);
                    b.len = b.capacity();
                    t.buf = b;
                }
                if t.buf.capacity() > 0 {
                    let dst = &mut t.buf.space()[(s - t.start) as usize..(e - t.start) as usize];
                    match data {
                        Some(d) => dst.copy_from_slice(&d[(s - off) as usize..(e - off) as usize]),
                        None => dst.fill(0),
                    }
                    t.touched = true;
                }
                hi = hi.min(s).max(lo);
            }
        }
        (lo, hi)
    }

    /// Where `len` bytes at region offset `off` can be written straight to
    /// the device by another thread ([`Behind`]): an O_DIRECT target,
    /// whole sectors, clear of the held-back head and tail. The bytes count
    /// as written. `None`: write them with [`Target::write_at`].
    pub fn direct_slot(&mut self, off: u64, len: u64) -> Result<Option<u64>> {
        let end = off + len;
        if end > self.len {
            return Err(self.no_space(end));
        }
        let abs = self.base + off;
        let clear = self.mode == IoMode::Direct
            && len > 0
            && abs % self.sector == 0
            && len % self.sector == 0
            && off >= self.head.buf.len as u64
            && self.tail.as_ref().is_none_or(|t| end <= t.start);
        if !clear {
            return Ok(None);
        }
        self.written += len;
        Ok(Some(abs))
    }

    /// A second handle on the device, for a thread that writes the slots
    /// [`Target::direct_slot`] gives out.
    pub fn clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The error for a failed write of `len` bytes at device offset `abs`
    /// (out of space is IPA's ImageDownloadOutofSpaceError).
    pub fn write_failed(&self, abs: u64, len: usize, e: io::Error) -> AgentError {
        self.write_error(format!("writing {len} bytes at offset {abs}"), e)
    }

    /// Write `data` at device offset `abs` on this thread (a slot
    /// [`Target::direct_slot`] gave out, or the unheld part of `write_at`).
    pub fn write_slot(&mut self, abs: u64, data: &[u8]) -> Result<()> {
        self.device_write(abs, data)
            .map_err(|e| self.write_failed(abs, data.len(), e))
    }

    /// Write image bytes at region offset `off`.
    pub fn write_at(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let end = off + data.len() as u64;
        if end > self.len {
            return Err(self.no_space(end));
        }
        let (lo, hi) = self.split_held(off, Some(data), data.len() as u64);
        if lo < hi {
            let part = &data[(lo - off) as usize..(hi - off) as usize];
            self.write_slot(self.base + lo, part)?;
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Make region range `[off, off+len)` read as zeroes.
    pub fn zero_range(&mut self, off: u64, len: u64) -> Result<()> {
        let end = off + len;
        if end > self.len {
            return Err(self.no_space(end));
        }
        let (lo, hi) = self.split_held(off, None, len);
        if lo < hi {
            let abs = self.base + lo;
            self.device_zero(abs, hi - lo).map_err(|e| {
                self.write_error(format!("zeroing {} bytes at offset {abs}", hi - lo), e)
            })?;
        }
        self.written += len;
        Ok(())
    }

    fn device_zero(&mut self, abs: u64, len: u64) -> io::Result<()> {
        let s = self.sector;
        // unaligned edges are written as explicit zeroes
        let a0 = abs.div_ceil(s) * s;
        let a1 = ((abs + len) / s * s).max(a0);
        if a0 >= abs + len || a1 <= a0 {
            return self.write_zeroes(abs, len);
        }
        self.write_zeroes(abs, a0 - abs)?;
        self.write_zeroes(a1, abs + len - a1)?;
        if self.zero_mode == ZeroMode::Punch {
            match crate::sys::punch_hole(&self.file, a0, a1 - a0) {
                Ok(()) => return Ok(()),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENODEV)
                    ) =>
                {
                    crate::util::log_at!(
                        Info,
                        "{}: the device cannot zero ranges without writing ({e}); reading \
                         holes and writing zeroes only where they are not zero",
                        self.dev
                    );
                    self.zero_mode = ZeroMode::ReadCheck;
                }
                Err(e) => return Err(e),
            }
        }
        // read, and write zeroes only over non-zero MiB pieces
        let mut pos = a0;
        while pos < a1 {
            let n = (a1 - pos).min(self.bounce.capacity() as u64) as usize;
            let buf = &mut self.bounce.space()[..n];
            read_at_zero_filled(&self.file, buf, pos)?;
            if buf.iter().any(|&b| b != 0) {
                buf.fill(0);
                let b = &self.bounce.space()[..n];
                self.file.write_all_at(b, pos)?;
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn write_zeroes(&mut self, abs: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        // A fresh aligned buffer, gone after this call: calloc'd pages are
        // never written, and an aligned range is written without the bounce
        // buffer, which would otherwise stay resident for the whole image
        // once `prepare` had cleared the held ranges through it (1 MiB of
        // the agent's peak RSS).
        let mut zeroes = AlignedBuf::new(len.min(MIB) as usize);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MIB);
            zeroes.len = n as usize;
            self.device_write(abs + done, zeroes.data())?;
            done += n;
        }
        Ok(())
    }

    /// Zero the held-back ranges on the device (and, for a whole disk, the
    /// backup GPT area), then sync.
    fn zero_held_on_device(&mut self) -> io::Result<()> {
        let head_len = self.head.buf.len as u64;
        self.write_zeroes(self.base, head_len)?;
        if let Some(t) = &self.tail {
            let (start, n) = (self.base + t.start, self.len - t.start);
            self.write_zeroes(start, n)?;
        }
        self.file.sync_data()
    }

    /// Step 1: blank the label areas before anything else is written.
    pub fn prepare(&mut self) -> Result<()> {
        self.written = 0;
        // A retried attempt starts from nothing: the held bytes of a failed
        // one (its last MiB above all, which a smaller image never touches
        // again) must not reach the disk at this attempt's commit.
        let head_len = self.len.min(MIB) as usize;
        let mut head = AlignedBuf::new(head_len);
        head.len = head_len;
        self.head.buf = head;
        self.head.touched = false;
        if let Some(t) = &mut self.tail {
            t.buf = AlignedBuf::new(0);
            t.touched = false;
        }
        self.zero_held_on_device()
            .map_err(|e| self.write_error(format!("clearing the first MiB of {}", self.dev), e))?;
        let (disk_size, sector) = (self.disk_size, self.sector);
        crate::util::log_at!(
            Debug,
            "{}: cleared the first MiB{} (disk {disk_size} bytes, {sector}-byte sectors)",
            self.dev,
            if self.tail.is_some() {
                " and the last MiB (backup GPT)"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// Step 4, after the checksum verified: make the write durable, then
    /// write the held-back ranges and make them durable.
    pub fn commit(&mut self) -> Result<()> {
        let sync = |t: &Target| {
            t.file
                .sync_data()
                .map_err(|e| t.write_error(format!("syncing {}", t.dev), e))
        };
        sync(self)?;
        if let Some(mut t) = self.tail.take() {
            if t.touched {
                let abs = self.base + t.start;
                let r = self.device_write(abs, t.buf.data());
                r.map_err(|e| self.write_error(format!("writing the last MiB at {abs}"), e))?;
            }
            t.buf = AlignedBuf::new(0);
            self.tail = Some(t);
        }
        let head = std::mem::replace(&mut self.head.buf, AlignedBuf::new(0));
        let r = self.device_write(self.base, head.data());
        self.head.buf = head;
        r.map_err(|e| self.write_error("writing the first MiB".into(), e))?;
        sync(self)
    }

    /// Step 5, on any failure: make sure what is on the disk cannot boot.
    /// Best effort; the original error is what the caller reports.
    pub fn wipe(&mut self) {
        let head_len = self.len.min(MIB) as usize;
        let mut head = AlignedBuf::new(head_len);
        head.len = head_len;
        self.head.buf = head;
        match self.zero_held_on_device() {
            Ok(()) => crate::util::log_at!(
                Warn,
                "{}: the image write failed; cleared the first MiB{} so nothing half-written \
                 can boot",
                self.dev,
                if self.tail.is_some() {
                    " and the backup GPT"
                } else {
                    ""
                }
            ),
            Err(e) => crate::util::log_at!(
                Error,
                "{}: the image write failed, and clearing the first MiB failed too: {e}",
                self.dev
            ),
        }
    }
}

/// Whole, aligned buffers written on helper threads, up to `depth` at
/// once: the slots [`Target::direct_slot`] gives out, so the device sees a
/// queue as deep as fio's `iodepth` instead of one write at a time. On this
/// machine's loop device, 2 GiB of 1 MiB O_DIRECT writes take 1.09 s 8 deep
/// (fio) and 2.4 s one at a time (2026-12-07, benches/image-write.sh); an
/// NVMe drive wants a queue too. Writes never overlap (each slot is given
/// out once) and the held-back head and tail are never written here; every
/// write is waited for before the caller commits or wipes the target
/// (dropping a `Behind` joins its threads).
pub struct Behind {
    to: Option<chan::Sender<(AlignedBuf, u64)>>,
    from: chan::Receiver<(AlignedBuf, u64, io::Result<()>)>,
    depth: usize,
    in_flight: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Behind {
    /// `depth` writer threads on a second handle of the target's device;
    /// `None` if either cannot be had (then write on the caller's thread).
    pub fn start(t: &Target, depth: usize) -> Option<Behind> {
        // one job queue for every thread (`recv` takes `&self`)
        let (to, jobs) = chan::channel::<(AlignedBuf, u64)>();
        let jobs = std::sync::Arc::new(jobs);
        let (done, from) = chan::channel();
        let mut threads = Vec::new();
        for _ in 0..depth {
            let file = t.clone_file().ok()?;
            let (jobs, done) = (jobs.clone(), done.clone());
            let h = std::thread::Builder::new()
                .name("image-write".into())
                .stack_size(64 << 10)
                .spawn(move || loop {
                    let Ok((buf, abs)) = jobs.recv() else { return };
                    let r = file.write_all_at(buf.data(), abs);
                    if done.send((buf, abs, r)).is_err() {
                        return;
                    }
                })
                .ok()?;
            threads.push(h);
        }
        Some(Behind {
            to: Some(to),
            from,
            depth,
            in_flight: 0,
            threads,
        })
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Buffers of finished writes, one per call, waiting for one only while
    /// `depth` writes are in flight: `while let Some(b) = room(t)?` makes
    /// room for the next [`Behind::send`] and hands back what is done.
    pub fn room(&mut self, t: &Target) -> Result<Option<AlignedBuf>> {
        self.reap(t, self.in_flight >= self.depth)
    }

    /// At most `depth` writes in flight from now on.
    pub fn limit(&mut self, depth: usize) {
        self.depth = self.depth.min(depth.max(1));
    }

    /// Write `buf` at device offset `abs` (a slot of `t`'s).
    pub fn send(&mut self, t: &Target, buf: AlignedBuf, abs: u64) -> Result<()> {
        match &self.to {
            Some(to) if to.send((buf, abs)).is_ok() => {
                self.in_flight += 1;
                Ok(())
            }
            _ => Err(self.stopped(t)),
        }
    }

    /// A finished write's buffer: waiting for one (`wait`) or only if one
    /// is done. `None` when none is in flight (or, not waiting, done).
    pub fn reap(&mut self, t: &Target, wait: bool) -> Result<Option<AlignedBuf>> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        let got = if wait {
            self.from.recv().map_err(|_| self.stopped(t))?
        } else {
            match self.from.try_recv() {
                Ok(Some(g)) => g,
                Ok(None) => return Ok(None),
                Err(_) => return Err(self.stopped(t)),
            }
        };
        self.in_flight -= 1;
        let (buf, abs, r) = got;
        r.map_err(|e| t.write_failed(abs, buf.len, e))?;
        Ok(Some(buf))
    }

    fn stopped(&self, t: &Target) -> AgentError {
        AgentError::new(
            Kind::ImageWriteError,
            format!(
                "Writing image to device {} failed: the write thread stopped",
                t.dev
            ),
        )
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        // the writes in flight complete before the target is wiped or
        // committed
        self.to = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// `read_exact_at` that treats bytes past the end of a regular file as
/// zeroes (fixture disks need not be a whole number of sectors).
fn read_at_zero_filled(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::path::Path;

    use crate::util::Scratch;

    fn scratch(name: &str, size: u64, fill: u8) -> (std::path::PathBuf, File, Scratch) {
        let dir = Scratch::new(&format!("writer-{name}"));
        let p = dir.0.join("disk");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.write_all_at(&vec![fill; size as usize], 0).unwrap();
        (p, f, dir)
    }

    fn target(p: &Path, len: u64, whole: bool, want: IoMode) -> Target {
        let (f, mode) = crate::disk::device::open_for_image(p, "/dev/test", want).unwrap();
        Target::new(f, "/dev/test", "img", mode, 512, len, 0, len, whole)
    }

    #[test]
    fn aligned_buffers() {
        for cap in [0, 1, 4096, 1 << 20] {
            let mut b = AlignedBuf::new(cap);
            assert_eq!(b.space().len(), cap);
            assert_eq!(b.space().as_ptr() as usize % MEM_ALIGN, 0);
        }
    }

    #[test]
    fn head_and_tail_are_held_back_until_commit() {
        for mode in [IoMode::Direct, IoMode::Buffered] {
            let size = 4 * MIB;
            let (p, _, _gone) = scratch(&format!("held-{mode:?}"), size, 0xee);
            let mut t = target(&p, size, true, mode);
            t.prepare().unwrap();
            let disk = std::fs::read(&p).unwrap();
            assert!(disk[..MIB as usize].iter().all(|&b| b == 0));
            assert!(disk[3 * MIB as usize..].iter().all(|&b| b == 0));
            assert!(disk[MIB as usize..3 * MIB as usize]
                .iter()
                .all(|&b| b == 0xee));
            let data = vec![7u8; size as usize];
            t.write_at(0, &data).unwrap();
            let disk = std::fs::read(&p).unwrap();
            assert!(disk[..MIB as usize].iter().all(|&b| b == 0), "{mode:?}");
            assert!(disk[3 * MIB as usize..].iter().all(|&b| b == 0));
            assert!(disk[MIB as usize..3 * MIB as usize].iter().all(|&b| b == 7));
            t.commit().unwrap();
            assert!(std::fs::read(&p).unwrap().iter().all(|&b| b == 7));
            t.wipe();
            let disk = std::fs::read(&p).unwrap();
            assert!(disk[..MIB as usize].iter().all(|&b| b == 0));
            assert!(disk[3 * MIB as usize..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn unaligned_writes_and_bounds() {
        let size = 3 * MIB;
        let (p, _, _gone) = scratch("unaligned", size, 0x11);
        let mut t = target(&p, size, false, IoMode::Direct);
        // misaligned offset, length and memory
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let off = MIB + 777;
        t.write_at(off, &data[1..]).unwrap();
        let disk = std::fs::read(&p).unwrap();
        let o = off as usize;
        assert_eq!(&disk[o..o + data.len() - 1], &data[1..]);
        assert_eq!(disk[o - 1], 0x11);
        assert_eq!(disk[o + data.len() - 1], 0x11);
        let e = t.write_at(size - 10, &[0u8; 11]).unwrap_err();
        assert!(e.is(Kind::ImageDownloadOutofSpaceError), "{e:?}");
        assert!(e.details.contains("needs at least"), "{}", e.details);
    }

    #[test]
    fn zero_ranges_read_as_zero() {
        let size = 4 * MIB;
        let (p, _, _gone) = scratch("zero", size, 0x5a);
        let mut t = target(&p, size, false, IoMode::Direct);
        t.zero_range(MIB + 100, 2 * MIB).unwrap();
        t.zero_range(10, 20).unwrap();
        let disk = std::fs::read(&p).unwrap();
        let m = MIB as usize;
        assert_eq!(disk[m + 99], 0x5a);
        assert!(disk[m + 100..3 * m + 100].iter().all(|&b| b == 0));
        assert_eq!(disk[3 * m + 100], 0x5a);
        // the head range stays held back (on disk: untouched until commit)
        assert_eq!(disk[10], 0x5a);
        // the read-check fallback gives the same result
        t.zero_mode = ZeroMode::ReadCheck;
        t.zero_range(3 * MIB + 200, 300).unwrap();
        let disk = std::fs::read(&p).unwrap();
        assert!(disk[3 * m + 200..3 * m + 500].iter().all(|&b| b == 0));
        assert_eq!(disk[3 * m + 500], 0x5a);
    }

    #[test]
    fn region_targets_hold_their_own_head() {
        let size = 4 * MIB;
        let (p, _, _gone) = scratch("region", size, 0x33);
        let (f, mode) =
            crate::disk::device::open_for_image(&p, "/dev/test", IoMode::Direct).unwrap();
        let mut t = Target::new(f, "/dev/test2", "img", mode, 512, size, MIB, 2 * MIB, false);
        t.prepare().unwrap();
        t.write_at(0, &vec![9u8; 2 * MIB as usize]).unwrap();
        let disk = std::fs::read(&p).unwrap();
        let m = MIB as usize;
        assert!(disk[..m].iter().all(|&b| b == 0x33));
        assert!(disk[m..2 * m].iter().all(|&b| b == 0));
        assert!(disk[2 * m..3 * m].iter().all(|&b| b == 9));
        t.commit().unwrap();
        let disk = std::fs::read(&p).unwrap();
        assert!(disk[m..3 * m].iter().all(|&b| b == 9));
        assert!(disk[3 * m..].iter().all(|&b| b == 0x33));
        assert!(t.write_at(2 * MIB - 1, &[1, 2]).is_err());
    }

    /// A retry after a failed attempt must not commit that attempt's held
    /// Writes on the helper threads, several at once, land where their
    /// slots say; a failed one comes back as the target's write error.
    #[test]
    fn writes_behind_at_depth() {
        let size = 12 * MIB;
        let (p, _, _gone) = scratch("behind", size, 0);
        let mut t = target(&p, size, true, IoMode::Direct);
        t.prepare().unwrap();
        if t.mode() != IoMode::Direct {
            // this file system takes no O_DIRECT: no slots to write behind
            assert!(t.direct_slot(MIB, MIB).unwrap().is_none());
            return;
        }
        let mut b = Behind::start(&t, 3).unwrap();
        let mut spare = vec![];
        for i in 1..11u8 {
            let abs = t.direct_slot(i as u64 * MIB, MIB).unwrap().unwrap();
            let mut buf = AlignedBuf::new(MIB as usize);
            buf.len = MIB as usize;
            buf.space().fill(i);
            if b.in_flight() >= 3 {
                spare.push(b.reap(&t, true).unwrap().unwrap());
            }
            b.send(&t, buf, abs).unwrap();
        }
        while let Some(buf) = b.reap(&t, true).unwrap() {
            spare.push(buf);
        }
        assert_eq!((spare.len(), b.in_flight()), (10, 0));
        // an O_DIRECT write of a length that is not whole sectors fails
        let mut odd = spare.pop().unwrap();
        odd.len = 100;
        b.send(&t, odd, 11 * MIB).unwrap();
        let Err(e) = b.reap(&t, true) else {
            panic!("a 100-byte O_DIRECT write succeeded")
        };
        assert!(e.is(Kind::ImageWriteError), "{e}");
        assert!(
            e.details.contains("writing 100 bytes at offset 11534336"),
            "{e}"
        );
        drop(b);
        let disk = std::fs::read(&p).unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        for i in 1..11usize {
            let m = MIB as usize;
            assert!(
                disk[i * m..(i + 1) * m].iter().all(|&x| x == i as u8),
                "MiB {i}"
            );
        }
    }

    /// last MiB: a disk-sized wrong image, then a smaller right one.
    #[test]
    fn a_failed_attempts_tail_is_not_committed_by_the_retry() {
        let size = 4 * MIB;
        let dir =
            std::env::temp_dir().join(format!("ironic-agent-writer-{}-tail", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("disk");
        std::fs::write(&p, vec![0u8; size as usize]).unwrap();
        let (f, mode) =
            crate::disk::device::open_for_image(&p, "/dev/test", IoMode::Direct).unwrap();
        let mut t = Target::new(f, "/dev/test", "img", mode, 512, size, 0, size, true);
        t.prepare().unwrap();
        t.write_at(0, &vec![0xbbu8; size as usize]).unwrap();
        t.wipe();
        t.prepare().unwrap();
        t.write_at(0, &vec![0x11u8; 2 * MIB as usize]).unwrap();
        t.commit().unwrap();
        let disk = std::fs::read(&p).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(disk[..2 * MIB as usize].iter().all(|&b| b == 0x11));
        // bytes 2..3 MiB keep attempt 1's data (written through, as any
        // bytes past a smaller image do); its held last MiB must not appear
        let tail = &disk[3 * MIB as usize..];
        let stale = tail.iter().filter(|&&b| b == 0xbb).count();
        assert_eq!(
            stale, 0,
            "{stale} bytes of the failed attempt's last MiB were committed"
        );
    }
}
