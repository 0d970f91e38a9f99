//! Erasing through the block layer, and checking afterwards that the
//! device reads back what the erase method promised.
//!
//! The methods, in the order the erase steps (`super`) try them once no
//! device-level secure erase applies:
//!
//! 1. **BLKSECDISCARD**: a discard the device must make unrecoverable. Only
//!    eMMC/SD (secure trim/erase) implement it today; everything else says
//!    EOPNOTSUPP, which is "unsupported", not "failed".
//! 2. **BLKZEROOUT with a hardware offload** (non-zero
//!    `queue/write_zeroes_max_bytes`), on non-rotational devices: the "discard that reads back as
//!    zeroes". Linux no longer reports whether a plain discard zeroes
//!    blocks: `discard_zeroes_data` was removed (kernel commits
//!    98262f2762f0 and 48920ff2a5a9, cited by coreos-installer for the same
//!    reason), and at every layer discard is advisory (SCSI UNMAP may be
//!    ignored in part, ATA TRIM's "read zeroes after trim" was trusted only
//!    for whitelisted drives, NVMe Deallocate is a hint). What the kernel
//!    does guarantee is REQ_OP_WRITE_ZEROES: BLKZEROOUT returns success only
//!    when the range reads back as zeroes, and drivers offload it to an
//!    unmap only where the device promises zeroes (NVMe Write Zeroes with
//!    DEAC when DLFEAT says so, SCSI WRITE SAME(16) with UNMAP when LBPRZ,
//!    libata's TRIM only for drives whitelisted as zeroing). So this agent
//!    never uses BLKDISCARD as an erase; it uses BLKZEROOUT where the device
//!    offloads it, and verifies zeroes. Without an offload the kernel would
//!    write zero pages itself (userspace cannot pass
//!    BLKDEV_ZERO_NOFALLBACK), which is just a slower overwrite.
//!    Rotational disks skip this step so that the operator's overwrite
//!    passes run on them as with IPA's shred.
//! 3. **Overwrite**: `agent_erase_devices_iterations` passes of
//!    pseudo-random data, then a pass of zeroes when
//!    `agent_erase_devices_zeroize` (IPA's `shred --iterations N [--zero]`),
//!    in large O_DIRECT writes. The random data is wyrand (fastrand),
//!    reseeded for every 4 KiB block from a per-pass seed from getrandom(2),
//!    so any sampled block can be recomputed and checked afterwards.
//!    Unpredictability is not the point of these passes; overwriting is.
//!
//! Verification reads, with O_DIRECT, the first and last MiB and 256
//! randomly placed 4 KiB blocks. A method that promises zeroes must read
//! back all zero; the last random pass must read back exactly; a method
//! that promises only "no longer the old data" (crypto erase, block erase,
//! enhanced ATA erase) must have changed every sampled block that held
//! non-zero data before, and is reported `verified: false` when the device
//! held no data to compare.

use crate::disk::{AlignedBuf, Disk};
use crate::error::AgentError;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io;
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;
/// Bytes per write in the overwrite passes (dd's `bs=4M`).
pub const CHUNK: usize = 4 << 20;
/// Unit of the random pattern and of sampled blocks.
const BLOCK: u64 = 4096;
/// Randomly placed blocks read back by the verification.
pub const SAMPLE_BLOCKS: usize = 256;

/// What a device reads back after an erase method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promise {
    /// Every byte zero.
    Zeroes,
    /// The pattern of the last random pass, with this seed.
    Pattern(u64),
    /// Not the old data (content unspecified).
    Changed,
}

/// How one erase method ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done(Promise),
    /// The device or the kernel does not offer the method: try the next.
    Unsupported(String),
    /// The method exists and went wrong.
    Failed(String),
}

/// One method tried on a device, for the step result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub method: &'static str,
    pub outcome: Outcome,
}

impl Attempt {
    pub fn to_json(&self) -> serde_json::Value {
        let (o, detail) = match &self.outcome {
            Outcome::Done(_) => ("done", None),
            Outcome::Unsupported(w) => ("unsupported", Some(w.as_str())),
            Outcome::Failed(w) => ("failed", Some(w.as_str())),
        };
        let mut v = serde_json::json!({"method": self.method, "outcome": o});
        if let Some(d) = detail {
            v["detail"] = d.into();
        }
        v
    }
}

/// The pattern bytes of a random pass for `[off, off + buf.len())`: each
/// 4 KiB block of the device is seeded from the pass seed and its index.
pub fn fill_pattern(buf: &mut [u8], seed: u64, off: u64) {
    let mut pos = 0usize;
    let mut block_buf = [0u8; BLOCK as usize];
    while pos < buf.len() {
        let abs = off + pos as u64;
        let idx = abs / BLOCK;
        let within = (abs % BLOCK) as usize;
        let n = (BLOCK as usize - within).min(buf.len() - pos);
        let mut rng = fastrand::Rng::with_seed(seed ^ idx.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if within == 0 && n == BLOCK as usize {
            rng.fill(&mut buf[pos..pos + n]);
        } else {
            rng.fill(&mut block_buf);
            buf[pos..pos + n].copy_from_slice(&block_buf[within..within + n]);
        }
        pos += n;
    }
}

/// A random seed from the kernel (fastrand's own if getrandom fails).
pub fn new_seed() -> u64 {
    let mut b = [0u8; 8];
    if crate::sys::getrandom(&mut b).is_err() {
        return fastrand::u64(..);
    }
    u64::from_ne_bytes(b)
}

/// Logs progress at most every 10 s: long erases must show they are alive.
pub struct Progress {
    name: String,
    what: String,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(name: &str, what: String, total: u64) -> Progress {
        crate::util::log_at!(Info, "erasing {name}: {what} started ({total} bytes)");
        let now = Instant::now();
        Progress {
            name: name.to_string(),
            what,
            total,
            started: now,
            last: now,
        }
    }

    pub fn update(&mut self, done: u64) {
        if self.last.elapsed() >= Duration::from_secs(10) {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            crate::util::log_at!(
                Info,
                "erasing {}: {} {:.1}% ({:.0} MiB/s)",
                self.name,
                self.what,
                done as f64 * 100.0 / self.total.max(1) as f64,
                done as f64 / secs / MIB as f64
            );
        }
    }

    pub fn finish(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        crate::util::log_at!(
            Info,
            "erasing {}: {} done in {secs:.1} s ({:.0} MiB/s)",
            self.name,
            self.what,
            self.total as f64 / secs / MIB as f64
        );
    }
}

/// One ioctl over the whole device in 1 GiB steps (for progress, and so
/// that an unsupported operation is found out on the first step).
fn ranged_ioctl(disk: &Disk, req: u32, what: &str) -> io::Result<()> {
    let step = 1 << 30;
    let first = step.min(disk.size);
    // The first step tells whether the device takes the request at all;
    // only then is it worth a "started" line.
    crate::sys::block_range(disk.file(), req, 0, first)?;
    let mut p = Progress::new(&disk.name, what.to_string(), disk.size);
    let mut off = first;
    while off < disk.size {
        let len = step.min(disk.size - off);
        crate::sys::block_range(disk.file(), req, off, len)?;
        off += len;
        p.update(off);
    }
    p.finish();
    Ok(())
}

fn unsupported_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL)
    )
}

/// BLKSECDISCARD over the whole device.
pub fn secure_discard(disk: &Disk) -> Outcome {
    if !disk.block {
        return Outcome::Unsupported("not a block device".into());
    }
    match ranged_ioctl(disk, crate::sys::BLKSECDISCARD, "secure discard") {
        Ok(()) => Outcome::Done(Promise::Changed),
        Err(e) if unsupported_errno(&e) => Outcome::Unsupported(format!("BLKSECDISCARD: {e}")),
        Err(e) => Outcome::Failed(format!("BLKSECDISCARD: {e}")),
    }
}

/// BLKZEROOUT over the whole device, only where the device offloads it
/// (`write_zeroes_max_bytes`, from sysfs) and is not rotational.
pub fn offloaded_zeroout(disk: &Disk, write_zeroes_max: u64, rotational: bool) -> Outcome {
    if !disk.block {
        return Outcome::Unsupported("not a block device".into());
    }
    if write_zeroes_max == 0 {
        return Outcome::Unsupported(
            "the device does not offload write-zeroes (queue/write_zeroes_max_bytes is 0)".into(),
        );
    }
    if rotational {
        return Outcome::Unsupported("rotational disk: the overwrite passes run instead".into());
    }
    match ranged_ioctl(disk, crate::sys::BLKZEROOUT, "BLKZEROOUT (offloaded)") {
        Ok(()) => Outcome::Done(Promise::Zeroes),
        Err(e) if unsupported_errno(&e) => Outcome::Unsupported(format!("BLKZEROOUT: {e}")),
        Err(e) => Outcome::Failed(format!("BLKZEROOUT: {e}")),
    }
}

/// A pass of zeroes over the whole device in `CHUNK`-sized direct writes.
fn zero_pass(disk: &Disk, buf: &mut AlignedBuf, what: String) -> io::Result<()> {
    let mut p = Progress::new(&disk.name, what, disk.size);
    buf.fill(0);
    let mut off = 0u64;
    while off < disk.size {
        let n = (buf.len() as u64).min(disk.size - off) as usize;
        disk.write_all_at(off, &buf[..n])?;
        off += n as u64;
        p.update(off);
    }
    disk.sync()?;
    p.finish();
    Ok(())
}

/// A pass of the random pattern of `seed`. A generator thread fills one
/// buffer while the previous one is being written, so the pass runs at the
/// slower of the two (the PRNG, about 2 GB/s on one core, or the device)
/// instead of their sum.
fn random_pass(disk: &Disk, seed: u64, bufs: [AlignedBuf; 2], what: String) -> io::Result<()> {
    use crate::util::chan::sync_channel;
    let mut p = Progress::new(&disk.name, what, disk.size);
    let size = disk.size;
    let (full_tx, full_rx) = sync_channel::<(u64, usize, AlignedBuf)>(1);
    let (empty_tx, empty_rx) = sync_channel::<AlignedBuf>(2);
    for b in bufs {
        empty_tx.send(b).expect("the receiver is alive");
    }
    let p = std::thread::scope(move |s| {
        s.spawn(move || {
            let mut off = 0u64;
            while off < size {
                let Ok(mut b) = empty_rx.recv() else { return };
                let n = (b.len() as u64).min(size - off) as usize;
                fill_pattern(&mut b[..n], seed, off);
                if full_tx.send((off, n, b)).is_err() {
                    return;
                }
                off += n as u64;
            }
        });
        // The writer. On a write error, both of its channel ends must go
        // before the scope joins: the generator may be waiting for an empty
        // buffer (`empty_tx`) or to hand over a full one (`full_rx`), and
        // only their drop wakes it.
        let r = (|| {
            for (off, n, b) in full_rx.iter() {
                disk.write_all_at(off, &b[..n])?;
                p.update(off + n as u64);
                let _ = empty_tx.send(b);
            }
            Ok::<(), io::Error>(())
        })();
        drop(full_rx);
        drop(empty_tx);
        r.map(|()| p)
    })?;
    disk.sync()?;
    p.finish();
    Ok(())
}

/// The overwrite fallback: `iterations` random passes, then zeroes when
/// `zeroize` (IPA's shred defaults: 1 and true). At least one pass always
/// runs: iterations 0 without zeroize would leave the data in place, so a
/// zero pass is done instead.
pub fn overwrite(disk: &Disk, iterations: u64, zeroize: bool) -> Outcome {
    let zeroize = zeroize || iterations == 0;
    let passes = iterations + u64::from(zeroize);
    let mut last = Promise::Zeroes;
    for i in 0..iterations {
        let seed = new_seed();
        let what = format!("random pass {}/{passes}", i + 1);
        let bufs = [AlignedBuf::zeroed(CHUNK), AlignedBuf::zeroed(CHUNK)];
        if let Err(e) = random_pass(disk, seed, bufs, what) {
            return Outcome::Failed(format!("writing {}: {e}", disk.name));
        }
        last = Promise::Pattern(seed);
    }
    if zeroize {
        let mut buf = AlignedBuf::zeroed(CHUNK);
        if let Err(e) = zero_pass(disk, &mut buf, format!("zero pass {passes}/{passes}")) {
            return Outcome::Failed(format!("writing {}: {e}", disk.name));
        }
        last = Promise::Zeroes;
    }
    Outcome::Done(last)
}

/// Blocks read before an erase, to be read again after it.
pub struct Sample {
    /// (offset, length, hash of the content, content was non-zero)
    blocks: Vec<(u64, usize, u64, bool)>,
}

/// The verdict of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub verified: bool,
    /// "zeroes", "pattern", "changed", "nothing to compare".
    pub how: &'static str,
    pub blocks: usize,
}

fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

/// Why walking the sample stopped.
enum RunError {
    Io(u64, io::Error),
    Judged(AgentError),
}

impl From<AgentError> for RunError {
    fn from(e: AgentError) -> RunError {
        RunError::Judged(e)
    }
}

impl From<RunError> for io::Error {
    fn from(e: RunError) -> io::Error {
        match e {
            RunError::Io(_, e) => e,
            RunError::Judged(w) => io::Error::other(w.into_details()),
        }
    }
}

/// Read sorted `(offset, len)` blocks, coalescing adjacent ones into reads
/// of up to 1 MiB (the first and last MiB are one read each, not 256), with
/// up to 16 reads in flight (random 4 KiB reads are latency-bound; in
/// flight together they cost one device round trip, not 256), and hand
/// each block to `f` in order.
fn read_runs(
    disk: &Disk,
    blocks: &[(u64, usize)],
    mut f: impl FnMut(u64, &[u8]) -> Result<(), AgentError>,
) -> Result<(), RunError> {
    // runs: (first block index, end block index, start offset, length)
    let mut runs = vec![];
    let mut i = 0;
    while i < blocks.len() {
        let start = blocks[i].0;
        let mut end = start + blocks[i].1 as u64;
        let mut j = i + 1;
        while j < blocks.len() && blocks[j].0 == end && end - start < MIB {
            end += blocks[j].1 as u64;
            j += 1;
        }
        runs.push((i, j, start, (end - start) as usize));
        i = j;
    }
    let threads = runs.len().clamp(1, 16);
    let per = runs.len().div_ceil(threads);
    let bufs: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .chunks(per.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(_, _, start, len)| disk.read_at(start, len))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if bufs.len() != runs.len() {
        return Err(RunError::Judged(AgentError::erase(format!(
            "reading {} failed",
            disk.name
        ))));
    }
    for (&(i, j, start, _), buf) in runs.iter().zip(bufs) {
        let buf = buf.map_err(|e| RunError::Io(start, e))?;
        for &(off, len) in &blocks[i..j] {
            let s = (off - start) as usize;
            let piece = buf.get(s..(s + len).min(buf.len())).unwrap_or(&[]);
            f(off, piece)?;
        }
    }
    Ok(())
}

impl Sample {
    /// The block offsets to check on a device of `size` bytes with
    /// `sector`-byte logical blocks: the first and the last MiB in 4 KiB
    /// reads, and `random` 4 KiB blocks anywhere.
    pub fn offsets(size: u64, sector: u32, random: usize, seed: u64) -> Vec<(u64, usize)> {
        let blk = BLOCK.min(size);
        if blk == 0 {
            return vec![];
        }
        let sector = u64::from(sector).max(1);
        let mut v = vec![];
        let head = MIB.min(size);
        let mut o = 0;
        while o + blk <= head {
            v.push((o, blk as usize));
            o += blk;
        }
        let tail_start = size.saturating_sub(MIB).max(head);
        // tail blocks end exactly at the device end, sector-aligned
        let mut end = size;
        while end >= tail_start + blk {
            let start = (end - blk) / sector * sector;
            v.push((start, (end - start) as usize));
            end = start;
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let nblocks = size / BLOCK;
        if nblocks > 0 {
            for _ in 0..random {
                v.push((rng.u64(0..nblocks) * BLOCK, BLOCK as usize));
            }
        }
        crate::util::sort_unstable(&mut v);
        v.dedup();
        v
    }

    /// Read the sample blocks now (before the erase).
    ///
    /// A disk being retired often has unreadable sectors, and erasing it
    /// is still the point: when a read fails, the blocks are read one by
    /// one and those that cannot be read are left out of the sample (and
    /// counted in the log).
    pub fn take(disk: &Disk, random: usize) -> io::Result<Sample> {
        let offsets = Sample::offsets(disk.size, disk.sector, random, new_seed());
        let entry = |off: u64, b: &[u8]| (off, b.len(), hash(b), b.iter().any(|x| *x != 0));
        let mut blocks = vec![];
        let whole = read_runs(disk, &offsets, |off, b| {
            blocks.push(entry(off, b));
            Ok(())
        });
        if let Err(e) = whole {
            let e = io::Error::from(e);
            blocks.clear();
            for &(off, len) in &offsets {
                if let Ok(b) = disk.read_at(off, len) {
                    blocks.push(entry(off, &b));
                }
            }
            crate::util::log_at!(
                Warn,
                "{}: {} of {} sample blocks unreadable before the erase ({e})",
                disk.name,
                offsets.len() - blocks.len(),
                offsets.len()
            );
        }
        Ok(Sample { blocks })
    }

    /// Read the blocks again and judge them against `promise`. `Err` names
    /// the first block that breaks the promise.
    pub fn check(&self, disk: &Disk, promise: Promise) -> Result<Verification, AgentError> {
        let mut had_data = 0;
        let offsets: Vec<(u64, usize)> = self.blocks.iter().map(|b| (b.0, b.1)).collect();
        let mut i = 0;
        read_runs(disk, &offsets, |off, b| {
            let (_, _, before, nonzero) = self.blocks[i];
            i += 1;
            match promise {
                Promise::Zeroes => {
                    if let Some(i) = b.iter().position(|x| *x != 0) {
                        return Err(AgentError::erase(format!(
                            "byte {} of {} is not zero after an erase that promises zeroes",
                            off + i as u64,
                            disk.name
                        )));
                    }
                }
                Promise::Pattern(seed) => {
                    let mut want = vec![0u8; b.len()];
                    fill_pattern(&mut want, seed, off);
                    if b != &want[..] {
                        return Err(AgentError::erase(format!(
                            "{} does not hold the pattern of the last overwrite pass at byte {off}",
                            disk.name
                        )));
                    }
                }
                Promise::Changed => {
                    if nonzero {
                        had_data += 1;
                        if hash(b) == before {
                            return Err(AgentError::erase(format!(
                                "{} still holds its old data at byte {off} after the erase",
                                disk.name
                            )));
                        }
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| match e {
            RunError::Io(off, e) => {
                AgentError::erase(format!("reading {} at byte {off}: {e}", disk.name))
            }
            RunError::Judged(w) => w,
        })?;
        let n = self.blocks.len();
        if n == 0 {
            return Ok(Verification {
                verified: false,
                how: "nothing sampled",
                blocks: 0,
            });
        }
        Ok(match promise {
            Promise::Zeroes => Verification {
                verified: true,
                how: "zeroes",
                blocks: n,
            },
            Promise::Pattern(_) => Verification {
                verified: true,
                how: "pattern",
                blocks: n,
            },
            Promise::Changed if had_data > 0 => Verification {
                verified: true,
                how: "changed",
                blocks: had_data,
            },
            Promise::Changed => Verification {
                verified: false,
                how: "nothing to compare",
                blocks: 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::device::Access;

    fn file_disk(name: &str, size: usize, fill: u8) -> (std::path::PathBuf, Disk) {
        let dir = std::env::temp_dir().join(format!("blkerase-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("disk");
        std::fs::write(&p, vec![fill; size]).unwrap();
        let d = Disk::open(&p, "/dev/sdz", Access::Write, 512).unwrap();
        (dir, d)
    }

    #[test]
    fn pattern_is_positional() {
        let seed = 42;
        let mut whole = vec![0u8; 3 * 4096];
        fill_pattern(&mut whole, seed, 0);
        let mut part = vec![0u8; 5000];
        fill_pattern(&mut part, seed, 3000);
        assert_eq!(&whole[3000..8000], &part[..]);
        let mut other = vec![0u8; 4096];
        fill_pattern(&mut other, seed + 1, 0);
        assert_ne!(&whole[..4096], &other[..]);
        assert!(whole.iter().filter(|b| **b == 0).count() < 200);
    }

    #[test]
    fn sample_offsets_cover_both_ends() {
        let size = 10 * MIB + 512;
        let v = Sample::offsets(size, 512, 16, 1);
        assert_eq!(v[0], (0, 4096));
        assert!(v.iter().any(|(o, l)| o + *l as u64 == size));
        assert!(v.iter().all(|(o, l)| o + *l as u64 <= size && o % 512 == 0));
        assert!(v.len() >= 512 && v.len() <= 512 + 16 + 1);
        // tiny devices
        assert_eq!(Sample::offsets(1024, 512, 4, 1), vec![(0, 1024)]);
        assert!(Sample::offsets(0, 512, 4, 1).is_empty());
    }

    #[test]
    fn overwrite_then_verify() {
        let (dir, d) = file_disk("ow", 3 * 1024 * 1024 + 4096 + 512, 0x5a);
        let s = Sample::take(&d, 64).unwrap();
        // a random pass verifies as its pattern, and as "changed"
        let Outcome::Done(p @ Promise::Pattern(_)) = overwrite(&d, 1, false) else {
            panic!("a random pass")
        };
        assert!(s.check(&d, p).unwrap().verified);
        assert_eq!(s.check(&d, Promise::Changed).unwrap().how, "changed");
        assert!(s.check(&d, Promise::Zeroes).is_err());
        // zeroize ends with zeroes; iterations 0 still writes a zero pass
        assert_eq!(overwrite(&d, 2, true), Outcome::Done(Promise::Zeroes));
        assert!(s.check(&d, Promise::Zeroes).unwrap().verified);
        std::fs::write(&d.path, vec![0x11u8; d.size as usize]).unwrap();
        assert_eq!(overwrite(&d, 0, false), Outcome::Done(Promise::Zeroes));
        assert!(s.check(&d, Promise::Zeroes).is_ok());
        // a blank device cannot show a change
        let blank = Sample::take(&d, 8).unwrap();
        assert_eq!(
            blank.check(&d, Promise::Changed).unwrap(),
            Verification {
                verified: false,
                how: "nothing to compare",
                blocks: 0
            }
        );
        // data left in place fails "changed"
        std::fs::write(&d.path, vec![0x77u8; d.size as usize]).unwrap();
        let kept = Sample::take(&d, 8).unwrap();
        assert!(kept
            .check(&d, Promise::Changed)
            .unwrap_err()
            .details
            .contains("old data"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn block_methods_on_files_are_unsupported() {
        let (dir, d) = file_disk("ioctl", 8192, 1);
        assert!(matches!(secure_discard(&d), Outcome::Unsupported(_)));
        assert!(matches!(
            offloaded_zeroout(&d, 1 << 30, false),
            Outcome::Unsupported(_)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A write error in the random pass fails the pass; it must not leave
    /// the pattern generator waiting for a buffer forever (found in review:
    /// the step stayed RUNNING).
    #[test]
    fn a_write_error_in_the_random_pass_fails_it() {
        let dir =
            std::env::temp_dir().join(format!("ironic-agent-blkerase-{}-eio", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("disk");
        std::fs::write(&p, vec![0x5au8; 16 << 20]).unwrap();
        // opened without write access: every write fails, like EIO
        let d = Disk::open(&p, "/dev/sdz", Access::Read, 512).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(overwrite(&d, 1, false));
        });
        let o = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("overwrite did not return after a write error");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
    }
}
