//! One pass over the image: download → hash → (qcow2 conversion) → write.
//!
//! A fetch thread reads the body into a few large aligned buffers, a hash
//! thread digests each one, and the calling thread writes them (raw) or
//! converts them (qcow2): network, SHA-256 and disk overlap. Memory:
//! [`in_flight`] bytes of buffers plus the target's held-back MiB and the
//! qcow2 converter's bounded state, whatever the image size.
//!
//! Verification comes after EOF, explicitly, with the stream drained to
//! its end (coreos-installer's CVE-2021-20319 lesson: a check tied to a
//! reader's EOF may never run), and before the first MiB is written.
//! A failed attempt wipes the head again; download errors and checksum
//! mismatches are retried from the start as IPA does
//! (`_stream_raw_image_onto_device`: retries × interval), out-of-space,
//! 4xx, timeouts, invalid images and write errors are not.

use super::checksum::{Expected, Hasher};
use super::download::{open_first, Client, Fail, ImageStream};
use super::format::{self, Format, Policy};
use super::qcow2::{self, ConvError, Converter};
use super::writer::{AlignedBuf, Behind, Target, MIB};
use crate::error::{AgentError, Kind, Result};
use crate::util::chan::{self as mpsc, Receiver, Sender};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per read buffer (one O_DIRECT write of a raw image), unless the
/// image is a qcow2 with larger clusters: see [`chunk_size`].
pub const CHUNK: usize = 1 << 20;
/// The largest chunk: qcow2's largest cluster.
pub const MAX_CHUNK: usize = 2 << 20;
/// Bytes of buffers between the fetch thread and the writer on a small
/// machine: 6 buffers of 1 MiB (3 of 2 MiB for 2 MiB clusters). At the
/// same memory, 6 × 1 MiB beat 3 × 2 MiB by 10–15 % in interleaved A/B
/// runs (2 GiB raw, qcow2 and compressed qcow2, cold source, 2026-12-05):
/// the receive, hash and write stages hand over smaller pieces more often,
/// so none of them waits for a whole 2 MiB buffer to come free.
pub const IN_FLIGHT_SMALL: usize = 6 << 20;
/// The same with [`ROOMY`] RAM or more: 10 MiB. With 6, the writers'
/// [`WRITE_DEPTH`] buffers in flight (and the one waiting for room) left
/// receive and hash two, so all three stages stalled together whenever
/// the device was slow for a moment. Interleaved A/B against 6 MiB
/// (benches/image-write.sh FLOOR_ONLY, 2 GiB, best of 3 each, 5 rounds:
/// 3 RAM-backed, 2 disk-backed, 2026-12-07 12:44–13:47 UTC): mean raw
/// 2.65 → 2.26 s, qcow2 2.83 → 2.58 s, raw SHA-512 4.58 → 4.38 s, each
/// faster in 3 of the 5 rounds (the machine's noise is ±20 %); peak RSS
/// 10 → 14 MiB, within issue 19's 16.
pub const IN_FLIGHT_ROOMY: usize = 10 << 20;
/// RAM from which a machine gets [`IN_FLIGHT_ROOMY`]: the 128 MiB ramdisk
/// floors (README) keep the smaller footprint they were measured with.
pub const ROOMY: u64 = 1 << 30;
/// Raw chunks written at once (`writer::Behind`): a queue for the device,
/// where one write at a time left it idle between writes.
const WRITE_DEPTH: usize = 3;
/// Buffers each hand-over (receive → hash → write) may hold.
const QUEUE: usize = 3;
/// Buffers the fetch thread may make before the writer has seen what the
/// image is: [`IN_FLIGHT_SMALL`]'s. A compressed qcow2 never needs more
/// (inflating is its slowest stage), and the fetch thread fills every
/// buffer it may while the writer reads the qcow2 tables ahead, which
/// set the peak RSS before the first cluster was inflated (17.6 MiB).
const KEEP_FIRST: usize = IN_FLIGHT_SMALL / CHUNK;

/// Bytes of buffers for this machine: [`IN_FLIGHT_ROOMY`] with [`ROOMY`]
/// RAM or more, else [`IN_FLIGHT_SMALL`].
pub fn in_flight() -> usize {
    if crate::sys::ram_total() >= ROOMY {
        IN_FLIGHT_ROOMY
    } else {
        IN_FLIGHT_SMALL
    }
}

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// qcow2 L1 tables beyond this offset are fetched with a Range request
/// before streaming (qemu-img puts them in the first clusters).
const FAR_L1: u64 = 16 << 20;

/// The chunk size for a stream that starts with `first` (its first
/// [`CHUNK`] bytes): [`CHUNK`], or the cluster size of a qcow2 image with
/// larger clusters. Every chunk boundary is then a multiple of the cluster
/// size, so the qcow2 converter never sees a data cluster or an L2 table
/// cut in two (except by the end of the file). A header this misreads is
/// refused later by `qcow2::parse_header`; here it only sizes buffers.
pub fn chunk_size(first: &[u8]) -> usize {
    if first.len() < 24 || first[..4] != *b"QFI\xfb" {
        return CHUNK;
    }
    let bits = u32::from_be_bytes([first[20], first[21], first[22], first[23]]);
    match 1usize.checked_shl(bits) {
        Some(cs) if cs > CHUNK && cs <= MAX_CHUNK => cs,
        _ => CHUNK,
    }
}

/// Seconds on one of the stage timers: an `f64` with the cargo feature
/// `stage-times`, nothing (a zero-sized value) without it, so the shipped
/// binary's messages and state do not grow by the timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Secs(#[cfg(feature = "stage-times")] pub f64);

/// Where one thread of the stream spent its time. Measured only with the
/// cargo feature `stage-times` (benches/image-write.sh's profile), which
/// also logs the three stages after each image; without it the struct is
/// empty and the timers compile to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stage {
    /// Seconds doing the stage's work (receiving, hashing, writing).
    pub busy: Secs,
    /// Seconds waiting for input: a free buffer (receive), data (hash, write).
    pub wait_in: Secs,
    /// Seconds waiting to hand a buffer on (the next queue was full).
    pub wait_out: Secs,
    /// The thread's CPU seconds, user and system (getrusage).
    pub user: Secs,
    pub sys: Secs,
}

impl Stage {
    /// With the thread's CPU time since `since` (from [`cpu_now`]).
    #[inline(always)]
    fn with_cpu(self, since: Cpu) -> Stage {
        #[cfg(feature = "stage-times")]
        {
            let (u, s) = crate::sys::thread_cpu();
            Stage {
                user: Secs(u - since.0 .0),
                sys: Secs(s - since.1 .0),
                ..self
            }
        }
        #[cfg(not(feature = "stage-times"))]
        {
            let _ = since;
            self
        }
    }
}

/// The calling thread's CPU seconds (user, system) so far.
type Cpu = (Secs, Secs);

#[inline(always)]
fn cpu_now() -> Cpu {
    #[cfg(feature = "stage-times")]
    {
        let (u, s) = crate::sys::thread_cpu();
        (Secs(u), Secs(s))
    }
    #[cfg(not(feature = "stage-times"))]
    (Secs(), Secs())
}

/// A point in time for the stage timers (nothing without `stage-times`).
#[derive(Clone, Copy)]
struct Mark(#[cfg(feature = "stage-times")] Instant);

impl Mark {
    #[inline(always)]
    fn now() -> Mark {
        Mark(
            #[cfg(feature = "stage-times")]
            Instant::now(),
        )
    }

    /// Add the seconds since this mark to `acc`; the next mark.
    #[inline(always)]
    fn lap(self, acc: &mut Secs) -> Mark {
        #[cfg(feature = "stage-times")]
        {
            let now = Instant::now();
            acc.0 += (now - self.0).as_secs_f64();
            Mark(now)
        }
        #[cfg(not(feature = "stage-times"))]
        {
            let _ = acc;
            self
        }
    }
}

enum Msg {
    Chunk(AlignedBuf, u64),
    End {
        digest: String,
        bytes: u64,
        resumes: u64,
        receive: Stage,
        hash: Stage,
    },
    Failed(AgentError),
}

/// The fetch thread's end of the pipeline, seen from the writer.
pub struct Fetch {
    rx: Receiver<Msg>,
    back: Sender<AlignedBuf>,
    pub url: String,
    pub total: Option<u64>,
    pub accepts_ranges: bool,
    pub validator: Option<super::download::Validator>,
    done: Option<(String, u64, u64)>,
    /// Bytes of buffers the fetch thread makes ([`in_flight`]).
    in_flight: usize,
    /// Buffers the fetch thread made and [`Fetch::recycle`] did not drop,
    /// and how many it may have: [`KEEP_FIRST`] until the writer knows
    /// what it writes ([`Fetch::grow`], [`Fetch::shrink`]).
    made: Arc<AtomicUsize>,
    keep: Arc<AtomicUsize>,
    shrunk: bool,
    /// Stage timers: receive and hash (from their threads, at the end), and
    /// write (waits here; the writer adds its busy time).
    pub stages: [Stage; 3],
}

impl Fetch {
    /// Start the receive and hash threads: one thread reads the body into
    /// the buffers, a second hashes each buffer and hands it on, so the
    /// (sequential) digest overlaps both the network and the disk.
    pub fn start(mut stream: ImageStream, mut hasher: Hasher, id: &str) -> Fetch {
        // Each hand-over holds at most 3 buffers, so no stage runs the
        // whole pool ahead of the next: measured faster than queues as long
        // as the pool (compressed qcow2, 4 interleaved rounds: median 3.36
        // against 3.86 s, 2026-12-05).
        let in_flight = in_flight();
        let (raw_tx, raw_rx): (Sender<Msg>, Receiver<Msg>) = mpsc::sync_channel(QUEUE);
        let (tx, rx): (Sender<Msg>, _) = mpsc::sync_channel(QUEUE);
        let (back, pool): (Sender<AlignedBuf>, Receiver<AlignedBuf>) = mpsc::channel();
        let info = (
            stream.url.clone(),
            stream.total,
            stream.accepts_ranges,
            stream.validator.clone(),
        );
        let id = id.to_string();
        let made = Arc::new(AtomicUsize::new(0));
        let keep = Arc::new(AtomicUsize::new(KEEP_FIRST));
        let (made2, keep2) = (made.clone(), keep.clone());
        std::thread::Builder::new()
            .name("image-fetch".into())
            .spawn(move || {
                let (made, keep) = (made2, keep2);
                let mut off = 0u64;
                let mut chunk = CHUNK;
                let (cpu0, mut st) = (cpu_now(), Stage::default());
                loop {
                    let m = Mark::now();
                    let n = made.load(Relaxed);
                    let mut buf = if n == 0 {
                        // room for a first chunk of the largest size; with
                        // 1 MiB chunks its second MiB is never written, so
                        // never resident (calloc'd pages stay untouched)
                        made.fetch_add(1, Relaxed);
                        AlignedBuf::new(MAX_CHUNK)
                    } else if n < (in_flight / chunk).min(keep.load(Relaxed)) {
                        made.fetch_add(1, Relaxed);
                        AlignedBuf::new(chunk)
                    } else {
                        match pool.recv() {
                            Ok(b) => b,
                            Err(_) => return, // the writer gave up
                        }
                    };
                    let m = m.lap(&mut st.wait_in);
                    let mut read = stream.read_full(&mut buf.space()[..chunk]);
                    if off == 0 && matches!(read, Ok(n) if n == chunk) {
                        chunk = chunk_size(&buf.space()[..CHUNK]);
                        if chunk > CHUNK {
                            read = stream
                                .read_full(&mut buf.space()[CHUNK..chunk])
                                .map(|n| CHUNK + n);
                        }
                    }
                    let n = match read {
                        Ok(n) => n,
                        Err(f) => {
                            let _ = raw_tx.send(Msg::Failed(f.into_error(&id)));
                            return;
                        }
                    };
                    let m = m.lap(&mut st.busy);
                    if n > 0 {
                        buf.len = n;
                        if raw_tx.send(Msg::Chunk(buf, off)).is_err() {
                            return;
                        }
                        m.lap(&mut st.wait_out);
                        off += n as u64;
                    }
                    if n < chunk {
                        let _ = raw_tx.send(Msg::End {
                            digest: String::new(),
                            bytes: off,
                            resumes: stream.resumes,
                            receive: st.with_cpu(cpu0),
                            hash: Stage::default(),
                        });
                        return;
                    }
                }
            })
            .expect("spawning the image fetch thread");
        std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || {
                // The digest is the deploy's one serial chain: nothing
                // else on its CPU may preempt it while it has a buffer
                // (it blocks between buffers, so everything else still
                // runs). A/B on 2 CPUs, 2026-12-07: preempted 0.04-0.13 s
                // of a 2 GiB image on a quiet machine and 0.27-0.54 s under
                // load before, ~0 after (benches/RESULTS.md). Without
                // CAP_SYS_NICE the thread stays an ordinary one.
                if let Err(e) = crate::sys::sched_fifo(1) {
                    crate::util::log_at!(Debug, "image hash thread stays SCHED_OTHER: {e}");
                }
                let (cpu0, mut st) = (cpu_now(), Stage::default());
                let mut m = Mark::now();
                for msg in raw_rx {
                    m = m.lap(&mut st.wait_in);
                    let msg = match msg {
                        Msg::Chunk(buf, off) => {
                            hasher.update(buf.data());
                            m = m.lap(&mut st.busy);
                            Msg::Chunk(buf, off)
                        }
                        Msg::End {
                            bytes,
                            resumes,
                            receive,
                            ..
                        } => Msg::End {
                            digest: hasher.clone().hexdigest(),
                            bytes,
                            resumes,
                            receive,
                            hash: st.with_cpu(cpu0),
                        },
                        failed => failed,
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                    m = m.lap(&mut st.wait_out);
                }
            })
            .expect("spawning the image hash thread");
        Fetch {
            rx,
            back,
            url: info.0,
            total: info.1,
            accepts_ranges: info.2,
            validator: info.3,
            done: None,
            in_flight,
            made,
            keep,
            shrunk: false,
            stages: [Stage::default(); 3],
        }
    }

    /// The next buffer and its offset in the image; `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<(AlignedBuf, u64)>> {
        if self.done.is_some() {
            return Ok(None);
        }
        let m = Mark::now();
        let msg = self.rx.recv();
        m.lap(&mut self.stages[2].wait_in);
        match msg {
            Ok(Msg::Chunk(b, off)) => Ok(Some((b, off))),
            Ok(Msg::End {
                digest,
                bytes,
                resumes,
                receive,
                hash,
            }) => {
                self.done = Some((digest, bytes, resumes));
                self.stages[0] = receive;
                self.stages[1] = hash;
                Ok(None)
            }
            Ok(Msg::Failed(e)) => Err(e),
            Err(_) => Err(AgentError::new(
                Kind::ImageDownloadError,
                "the image download thread stopped unexpectedly",
            )),
        }
    }

    /// Hand a buffer back to the fetch thread, or drop it while more
    /// buffers exist than [`Fetch::shrink`] keeps.
    pub fn recycle(&self, b: AlignedBuf) {
        if self.made.load(Relaxed) > self.keep.load(Relaxed) {
            self.made.fetch_sub(1, Relaxed);
            return;
        }
        let _ = self.back.send(b);
    }

    /// Let the fetch thread make all of [`in_flight`]: the writer keeps
    /// pace with the network and the hash (raw images, qcow2 data runs).
    /// Not after [`Fetch::shrink`].
    fn grow(&mut self) {
        if !self.shrunk {
            self.keep.store(usize::MAX, Relaxed);
        }
    }

    /// Keep at most `buffers` buffers from now on: the ones over it are
    /// dropped as they come back. For a writer that turns out to be the
    /// slowest stage (inflating compressed qcow2 clusters), where more
    /// buffers would only sit full in the queues.
    fn shrink(&mut self, buffers: usize) {
        self.shrunk = true;
        self.keep.fetch_min(buffers.max(1), Relaxed);
    }

    /// Buffers of `chunk` bytes the fetch thread may have now.
    fn buffers(&self, chunk: usize) -> usize {
        (self.in_flight / chunk).min(self.keep.load(Relaxed))
    }

    /// Read to the end of the image (what the writer did not need), and
    /// return (hex digest, bytes, resumes).
    pub fn drain(&mut self) -> Result<(String, u64, u64)> {
        while let Some((b, _)) = self.next_chunk()? {
            self.recycle(b);
        }
        Ok(self.done.clone().unwrap_or_default())
    }
}

/// Progress lines, at most every [`PROGRESS_EVERY`].
struct Progress {
    id: String,
    dev: String,
    start: Instant,
    last: Instant,
    total: Option<u64>,
}

impl Progress {
    fn new(id: &str, dev: &str, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            id: id.into(),
            dev: dev.into(),
            start: now,
            last: now,
            total,
        }
    }

    fn tick(&mut self, read: u64, written: u64) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let of = self
            .total
            .map(|t| format!(" of {:.1}", t as f64 / MIB as f64))
            .unwrap_or_default();
        crate::util::log_at!(
            Info,
            "image {}: {:.1}{of} MiB downloaded, {:.1} MiB written to {} ({:.1} MiB/s)",
            self.id,
            read as f64 / MIB as f64,
            written as f64 / MIB as f64,
            self.dev,
            read as f64 / MIB as f64 / secs
        );
    }
}

/// What a successful write did.
#[derive(Debug, Default)]
pub struct Summary {
    pub format: Option<Format>,
    pub bytes: u64,
    pub written: u64,
    pub resumes: u64,
    pub seconds: f64,
}

/// Everything one image write needs.
pub struct Job<'a> {
    pub id: &'a str,
    pub urls: Vec<String>,
    pub client: Arc<Client>,
    pub expected: Expected,
    pub policy: Policy<'a>,
    /// A partition image: size errors use IPA's root-partition message.
    pub partition: bool,
}

fn retryable(e: &AgentError) -> bool {
    e.is(Kind::ImageDownloadError) || e.is(Kind::ImageChecksumError)
}

/// Write the image to `target`, retrying as IPA does; on failure the
/// target's head is wiped.
pub fn write_image(job: &Job, target: &mut Target) -> Result<Summary> {
    let retries = job.client.retries;
    let mut attempt = 0;
    loop {
        match write_once(job, target) {
            Ok(s) => return Ok(s),
            Err(e) => {
                target.wipe();
                if !retryable(&e) || attempt >= retries {
                    return Err(e);
                }
                attempt += 1;
                crate::util::log_at!(Warn, "Image download failed, {attempt} of {retries}: {e}");
                std::thread::sleep(job.client.retry_interval);
            }
        }
    }
}

fn too_big(job: &Job, target: &Target, size: u64, what: &str) -> AgentError {
    if job.partition {
        return AgentError::invalid_params(format!(
            "Root partition is too small for requested image. Image virtual size: {} MB, \
             Root size: {} MB",
            size.div_ceil(MIB),
            target.len / MIB
        ));
    }
    AgentError::new(
        Kind::ImageDownloadOutofSpaceError,
        format!(
            "Download of image {} failed: Unable to write image to {}. Error: the image's {what} \
             ({size} bytes) is larger than the device ({} bytes)",
            job.id, target.dev, target.len
        ),
    )
}

fn write_once(job: &Job, target: &mut Target) -> Result<Summary> {
    let started = Instant::now();
    let cpu0 = cpu_now();
    target.prepare()?;
    let stream = open_first(&job.client, &job.urls, job.id)?;
    let mut fetch = Fetch::start(stream, job.expected.algo.hasher(), job.id);
    let Some((first, _)) = fetch.next_chunk()? else {
        return Err(AgentError::download(job.id, "the image is empty"));
    };
    let head = &first.data()[..first.len.min(format::SNIFF_LEN.max(4096))];
    let fmt = format::check(head, &job.policy)?;
    crate::util::log_at!(
        Info,
        "image {}: detected format {} ({} bytes announced by {})",
        job.id,
        fmt.name(),
        fetch
            .total
            .map(|t| t.to_string())
            .unwrap_or_else(|| "no size".into()),
        fetch.url
    );
    let mut progress = Progress::new(job.id, &target.dev, fetch.total);
    let (digest, bytes, resumes, stages) = if fmt == Format::Qcow2 {
        write_qcow2(job, target, fetch, first, &mut progress)?
    } else {
        if let Some(total) = fetch.total.filter(|&t| t > target.len) {
            return Err(too_big(job, target, total, "size"));
        }
        write_raw(target, &mut fetch, first, &mut progress)?;
        let (d, b, r) = fetch.drain()?;
        (d, b, r, fetch.stages)
    };
    #[cfg(feature = "stage-times")]
    log_stages(job.id, started, stages, cpu0);
    #[cfg(not(feature = "stage-times"))]
    let _ = (stages, cpu0);
    // explicit verification, after EOF, before the head is written
    if !job.expected.matches(&digest) {
        crate::util::log_at!(
            Error,
            "Image failed to verify against checksum. location: {}; image ID: {}; image \
             checksum: {}; verification checksum: {digest}",
            target.dev,
            job.id,
            job.expected.value
        );
        return Err(AgentError::checksum(
            job.id,
            &target.dev,
            &job.expected.value,
            &digest,
        ));
    }
    crate::util::log_at!(
        Info,
        "image {}: {} checksum verified ({bytes} bytes{})",
        job.id,
        job.expected.algo.name(),
        if resumes > 0 {
            format!(", {resumes} resumed connections")
        } else {
            String::new()
        }
    );
    target.commit()?;
    Ok(Summary {
        format: Some(fmt),
        bytes,
        written: target.written,
        resumes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The stage timers' log line (key=value, read by benches/image-write.sh).
#[cfg(feature = "stage-times")]
fn log_stages(id: &str, started: Instant, mut s: [Stage; 3], cpu0: Cpu) {
    s[2] = s[2].with_cpu(cpu0);
    let one = |st: &Stage| {
        format!(
            "busy:{:.3},user:{:.3},sys:{:.3},wait_in:{:.3},wait_out:{:.3}",
            st.busy.0, st.user.0, st.sys.0, st.wait_in.0, st.wait_out.0
        )
    };
    crate::util::log_at!(
        Info,
        "image {id} stage-times: wall={:.3} receive={} hash={} write={}",
        started.elapsed().as_secs_f64(),
        one(&s[0]),
        one(&s[1]),
        one(&s[2])
    );
}

/// Whole stream buffers written at their device offset: on `Behind`'s
/// threads, up to [`ahead_depth`] at once, when the chunk is an aligned
/// slot clear of the held-back ranges; otherwise here. Each buffer goes
/// back to the fetch thread when its write is done.
struct Ahead {
    behind: Option<Behind>,
    depth: usize,
    /// The stream's chunk size ([`chunk_size`]).
    chunk: usize,
}

/// Stream buffers on the writer threads at once: [`WRITE_DEPTH`], but at
/// least two fewer than the fetch thread has for `chunk`-sized chunks
/// (`in_flight / chunk`). With all of them out, the fetch thread would
/// wait for a free buffer while the writer waits for its next chunk, and
/// neither would move: 2 MiB qcow2 clusters on a machine below [`ROOMY`]
/// get three buffers, so one write at a time.
fn ahead_depth(in_flight: usize, chunk: usize) -> usize {
    WRITE_DEPTH
        .min((in_flight / chunk).saturating_sub(2))
        .max(1)
}

/// Stream buffers kept once the writer inflates: [`IN_FLIGHT_SMALL`]'s,
/// and never fewer than two more than [`Ahead`] may have on its threads
/// (`depth`).
fn inflating_keep(chunk: usize, depth: usize) -> usize {
    (IN_FLIGHT_SMALL / chunk).max(depth + 2)
}

impl Ahead {
    /// For `fetch`'s stream, whose first chunk is `first`.
    fn new(fetch: &Fetch, first: &[u8]) -> Ahead {
        let chunk = chunk_size(first);
        Ahead {
            behind: None,
            depth: ahead_depth(fetch.buffers(chunk) * chunk, chunk),
            chunk,
        }
    }

    fn write(
        &mut self,
        target: &mut Target,
        fetch: &Fetch,
        buf: AlignedBuf,
        at: u64,
    ) -> Result<()> {
        let Some(abs) = target.direct_slot(at, buf.len as u64)? else {
            target.write_at(at, buf.data())?;
            fetch.recycle(buf);
            return Ok(());
        };
        if self.behind.is_none() {
            self.behind = Behind::start(target, self.depth);
        }
        match self.behind.as_mut() {
            Some(b) => {
                while let Some(done) = b.room(target)? {
                    fetch.recycle(done);
                }
                b.send(target, buf, abs)
            }
            // no threads: the slot is counted, write it here
            None => {
                target.write_slot(abs, buf.data())?;
                fetch.recycle(buf);
                Ok(())
            }
        }
    }

    /// Return the buffers of finished writes; `wait`: of every write.
    fn reap(&mut self, target: &Target, fetch: &Fetch, wait: bool) -> Result<()> {
        if let Some(b) = self.behind.as_mut() {
            while let Some(done) = b.reap(target, wait)? {
                fetch.recycle(done);
            }
        }
        Ok(())
    }
}

fn write_raw(
    target: &mut Target,
    fetch: &mut Fetch,
    first: AlignedBuf,
    progress: &mut Progress,
) -> Result<()> {
    fetch.grow();
    let mut ahead = Ahead::new(fetch, first.data());
    let mut next = Some((first, 0u64));
    while let Some((buf, off)) = next {
        let m = Mark::now();
        let read = off + buf.len as u64;
        ahead.write(target, fetch, buf, off)?;
        ahead.reap(target, fetch, false)?;
        m.lap(&mut fetch.stages[2].busy);
        progress.tick(read, target.written);
        next = fetch.next_chunk()?;
    }
    ahead.reap(target, fetch, true)
}

fn qcow2_error(e: ConvError) -> AgentError {
    match e {
        ConvError::Write(e) => e,
        ConvError::Invalid(m) => {
            crate::util::log_at!(Error, "qcow2: {}", m.details);
            AgentError::new(Kind::InvalidImage, format!("qcow2 image: {}", m.details))
        }
        ConvError::Backward { host, at } => AgentError::new(
            Kind::InvalidImage,
            format!("qcow2 image: metadata points back to byte {host} from byte {at}"),
        ),
    }
}

/// qcow2: forward mode; when the metadata turns out to follow the data,
/// once more with the tables prefetched by Range requests.
fn write_qcow2(
    job: &Job,
    target: &mut Target,
    fetch: Fetch,
    first: AlignedBuf,
    progress: &mut Progress,
) -> Result<(String, u64, u64, [Stage; 3])> {
    let h = qcow2::parse_header(first.data()).map_err(|m| qcow2_error(ConvError::Invalid(m)))?;
    if h.size > target.len {
        return Err(too_big(job, target, h.size, "virtual size"));
    }
    if h.dirty {
        crate::util::log_at!(
            Warn,
            "image {}: the qcow2 image is marked dirty (not closed cleanly); its refcounts may \
             be stale, its cluster mapping is used as is",
            job.id
        );
    }
    crate::util::log_at!(
        Info,
        "image {}: qcow2 version {}, {} bytes virtual, {} KiB clusters, L1 at {}",
        job.id,
        h.version,
        h.size,
        h.cluster_size() >> 10,
        h.l1_offset
    );
    let stream_url = fetch.url.clone();
    let prefetch_first = h.l1_offset >= FAR_L1 && fetch.accepts_ranges;
    if !prefetch_first && fetch.accepts_ranges {
        // Tables behind their data (qemu-img convert -c) would make the
        // forward pass stop at the first such table and start over: look at
        // the tables first. A failed look is no failure: forward mode still
        // works, and still falls back.
        let mut read_range = range_reader(job, &stream_url, fetch.validator.clone());
        match qcow2::tables_trail_data(&h, first.data(), &mut *read_range) {
            Ok(true) => {
                crate::util::log_at!(
                    Info,
                    "image {}: an L2 table of the qcow2 image follows data it maps (as \
                     qemu-img convert -c lays them out); reading the tables with Range \
                     requests first",
                    job.id
                );
                // The same stream goes on: only its first chunk was taken
                // (hashed, and fed below), so the header that lays out the
                // tables is the checksummed one.
                return convert_prefetched(h, target, fetch, first, progress, &mut *read_range);
            }
            Ok(false) => {}
            Err(e) => crate::util::log_at!(
                Warn,
                "image {}: could not read the qcow2 tables ahead ({}); converting as they come",
                job.id,
                qcow2_error(e)
            ),
        }
    }
    if !prefetch_first {
        let mut conv = Converter::new(h.clone());
        match convert(&mut conv, target, fetch, first, progress, None) {
            Ok(r) => return Ok(r),
            Err(ConvError::Backward { host, at }) => {
                crate::util::log_at!(Info,
                "image {}: qcow2 metadata at byte {at} points back to byte {host}; reading the \
                 tables with Range requests and streaming the image again",
                job.id
            )
            }
            Err(e) => return Err(qcow2_error(e)),
        }
    } else {
        // the first pass's stream and its first buffer are not needed again
        drop((fetch, first));
        crate::util::log_at!(
            Info,
            "image {}: the qcow2 L1 table sits at byte {}; reading the tables with Range \
             requests first",
            job.id,
            h.l1_offset
        );
    }
    // Prefetched mode: a fresh stream (and hash) from byte 0; the tables
    // are read from the same file (If-Range with its validator).
    let stream =
        ImageStream::open(job.client.clone(), &stream_url).map_err(|f| f.into_error(job.id))?;
    let mut fetch = Fetch::start(stream, job.expected.algo.hasher(), job.id);
    let mut read_range = range_reader(job, &fetch.url, fetch.validator.clone());
    let Some((first, _)) = fetch.next_chunk()? else {
        return Err(AgentError::download(job.id, "the image is empty"));
    };
    // The header that laid out the tables came from the first, unhashed
    // request: the checksummed stream must carry the same one.
    if qcow2::parse_header(first.data()).as_ref() != Ok(&h) {
        return Err(qcow2_error(ConvError::Invalid(AgentError::new(
            Kind::InvalidImage,
            "the qcow2 header differs between the first request and the checksummed stream \
             (the image changed on the server, or the server is not consistent)",
        ))));
    }
    convert_prefetched(h, target, fetch, first, progress, &mut *read_range)
}

/// Prefetched mode: the tables first (Range requests), then the stream,
/// loading each table as the stream nears its clusters.
fn convert_prefetched(
    h: qcow2::Header,
    target: &mut Target,
    fetch: Fetch,
    first: AlignedBuf,
    progress: &mut Progress,
    read_range: &mut qcow2::RangeReader,
) -> Result<(String, u64, u64, [Stage; 3])> {
    let mut conv = Converter::new(h);
    conv.prefetch(target, read_range).map_err(qcow2_error)?;
    convert(&mut conv, target, fetch, first, progress, Some(read_range)).map_err(qcow2_error)
}

/// Reads byte ranges of the image at `url` with HTTP Range requests
/// (If-Range with the stream's validator), for the qcow2 tables.
fn range_reader<'a>(
    job: &'a Job,
    url: &str,
    validator: Option<super::download::Validator>,
) -> Box<qcow2::RangeReader<'a>> {
    let client = job.client.clone();
    let url = url.to_string();
    Box::new(
        move |start: u64,
              len: u64,
              sink: &mut dyn FnMut(&[u8]) -> std::result::Result<(), ConvError>| {
            let mut r = client
                .range(&url, start, len, validator.as_ref())
                .map_err(|f| {
                    // No Range support is permanent: not worth a retry.
                    let e = match f {
                        Fail::NoResume(m) => AgentError::new(
                            Kind::ImageDownloadFatalError,
                            format!(
                                "Download of image {} failed: {m} (a qcow2 image whose \
                             metadata follows its data needs an image server that \
                             answers HTTP Range requests)",
                                job.id
                            ),
                        ),
                        f => f.into_error(job.id),
                    };
                    ConvError::Write(e)
                })?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = std::io::Read::read(&mut r, &mut buf[..want]).map_err(|e| {
                    ConvError::Write(AgentError::download(
                        job.id,
                        format!("reading bytes {start}+{len} of {url}: {e}"),
                    ))
                })?;
                if n == 0 {
                    break;
                }
                sink(&buf[..n])?;
                left -= n as u64;
            }
            // Read to the end of the body (no bytes are left: the
            // Content-Range was checked), so the connection goes back to
            // the pool: qcow2 images with small clusters have thousands of
            // tables, and a connection per table cost more than the tables.
            let _ = std::io::Read::read(&mut r, &mut buf[..1]);
            Ok(())
        },
    )
}

/// Feed the stream to the converter; `tables` (prefetched mode) loads the
/// L2 tables as the stream nears their clusters.
fn convert(
    conv: &mut Converter,
    target: &mut Target,
    mut fetch: Fetch,
    first: AlignedBuf,
    progress: &mut Progress,
    mut tables: Option<&mut qcow2::RangeReader>,
) -> std::result::Result<(String, u64, u64, [Stage; 3]), ConvError> {
    // chunks that are one run of data clusters (nearly all of an
    // uncompressed image) are written as the raw path writes them
    let mut ahead = Ahead::new(&fetch, first.data());
    let mut next = Some((first, 0u64));
    while let Some((buf, off)) = next {
        if let Some(read_range) = tables.as_mut() {
            let end = off + buf.len as u64;
            if let Err(e) = conv.load_due(target, end, &mut **read_range) {
                fetch.recycle(buf);
                return Err(e);
            }
        }
        let m = Mark::now();
        let read = off + buf.len as u64;
        match conv.take_run(off, buf.data()) {
            Ok(Some(guest)) => {
                fetch.grow();
                ahead.write(target, &fetch, buf, guest)?
            }
            Ok(None) => {
                let r = conv.feed(target, off, buf.data());
                fetch.recycle(buf);
                r?;
                if !fetch.shrunk && conv.inflating() {
                    // Inflating is the slowest stage from here on (~160 MB/s
                    // a core, against ~1 GB/s for the rest): the small
                    // machine's buffers keep it busy, more would only
                    // raise the peak RSS. Never below what the direct
                    // writes of data runs need (`ahead_depth`).
                    fetch.shrink(inflating_keep(ahead.chunk, ahead.depth));
                }
            }
            Err(e) => {
                fetch.recycle(buf);
                return Err(e);
            }
        }
        ahead.reap(target, &fetch, false)?;
        m.lap(&mut fetch.stages[2].busy);
        progress.tick(read, target.written);
        next = fetch.next_chunk()?;
    }
    ahead.reap(target, &fetch, true)?;
    conv.finish(target)?;
    let (d, b, r) = fetch.drain()?;
    Ok((d, b, r, fetch.stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_head(bits: u32) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[20..24].copy_from_slice(&bits.to_be_bytes());
        h
    }

    #[test]
    fn the_writer_threads_never_hold_every_buffer() {
        for in_flight in [IN_FLIGHT_SMALL, IN_FLIGHT_ROOMY] {
            for chunk in [CHUNK, MAX_CHUNK] {
                let buffers = in_flight / chunk;
                let depth = ahead_depth(in_flight, chunk);
                assert!((1..=WRITE_DEPTH).contains(&depth));
                assert!(
                    depth + 2 <= buffers,
                    "{in_flight} / {chunk}: {depth} of {buffers}"
                );
            }
        }
        assert_eq!(ahead_depth(IN_FLIGHT_SMALL, MAX_CHUNK), 1);
        assert_eq!(ahead_depth(IN_FLIGHT_ROOMY, MAX_CHUNK), WRITE_DEPTH);
        assert_eq!(ahead_depth(IN_FLIGHT_SMALL, CHUNK), WRITE_DEPTH);
    }

    #[test]
    fn the_first_and_the_inflating_budgets_leave_the_writers_room() {
        for in_flight in [IN_FLIGHT_SMALL, IN_FLIGHT_ROOMY] {
            for chunk in [CHUNK, MAX_CHUNK] {
                // as `Ahead::new` sees the fetch thread before `grow`
                let first = (in_flight / chunk).min(KEEP_FIRST);
                let depth = ahead_depth(first * chunk, chunk);
                assert!(depth + 2 <= first, "{in_flight} / {chunk}");
                let keep = inflating_keep(chunk, depth);
                assert!(depth + 2 <= keep && keep <= KEEP_FIRST.max(depth + 2));
            }
        }
        // the depth a roomy machine's writers get is not cut by the first budget
        assert_eq!(
            ahead_depth(KEEP_FIRST * CHUNK, CHUNK),
            ahead_depth(IN_FLIGHT_ROOMY, CHUNK)
        );
    }

    #[test]
    fn chunks_grow_only_for_2_mib_clusters() {
        assert_eq!(chunk_size(&[0u8; 4096]), CHUNK);
        assert_eq!(chunk_size(b"QFI"), CHUNK);
        assert_eq!(chunk_size(&qcow2_head(16)), CHUNK);
        assert_eq!(chunk_size(&qcow2_head(20)), CHUNK);
        assert_eq!(chunk_size(&qcow2_head(21)), MAX_CHUNK);
        // out of range (refused later by the header check): no large buffer
        for bits in [22, 40, 64, 200, u32::MAX] {
            assert_eq!(chunk_size(&qcow2_head(bits)), CHUNK, "{bits}");
        }
    }
}
