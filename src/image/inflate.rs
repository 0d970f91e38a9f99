//! qcow2 compressed clusters inflated on helper threads.
//!
//! Every compressed cluster is its own raw deflate stream, so clusters
//! inflate independently, and inflating is what bounds a real compressed
//! image: miniz_oxide inflates a root filesystem (binaries, libraries,
//! text) at ~160 MB/s per core here, where SHA-256 of the compressed stream
//! runs at ~1.3 GB/s and the disk takes ~1 GB/s. qemu-img spreads the work
//! too (QEMU ≥ 4.1 decompresses qcow2 clusters on its thread pool).
//!
//! The converter batches consecutive compressed clusters into jobs of up to
//! [`BATCH_OUT`] bytes and gives them out round robin to the workers, each
//! with its own pair of channels, so jobs come back in the order they were
//! given out and the converter writes them through its write-combining
//! buffer exactly as it writes clusters it inflates itself.
//!
//! Memory is bounded: at most workers + 2 jobs exist, each holding its
//! compressed input and at most [`BATCH_OUT`] bytes of output. Clusters
//! over [`BATCH_OUT`] (qemu-img's `cluster_size` up to 2 MiB) inflate
//! inline, one at a time, as before.

use super::writer::AlignedBuf;
use crate::error::{AgentError, Kind};
use crate::util::chan::{self as mpsc, Receiver, Sender};
use std::collections::VecDeque;
use std::thread::JoinHandle;

/// Output bytes per job: two clusters of 64 KiB (qemu-img's default).
/// Measured against 256 KiB (a root filesystem compressed by qemu-img, two
/// workers, 2026-12-05): as fast, and 1 MiB less peak RSS.
pub const BATCH_OUT: usize = 128 << 10;

/// One compressed cluster of a job: where it goes and where its bytes are.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub guest: u64,
    pub host: u64,
    start: usize,
    len: usize,
}

/// A batch of compressed clusters and, once inflated, their bytes.
pub struct Job {
    input: Vec<u8>,
    pub items: Vec<Item>,
    out: AlignedBuf,
    /// The first cluster that failed to inflate, with the inflater's reason.
    pub failed: Option<(Item, AgentError)>,
}

impl Job {
    fn new(cap: usize) -> Job {
        Job {
            input: Vec::new(),
            items: Vec::new(),
            out: AlignedBuf::new(cap),
            failed: None,
        }
    }

    /// The inflated bytes of item `i` (a whole cluster).
    pub fn output(&self, i: usize, cs: usize) -> &[u8] {
        &self.out.data()[i * cs..(i + 1) * cs]
    }

    fn clear(&mut self) {
        self.input.clear();
        self.items.clear();
        self.out.len = 0;
        self.failed = None;
    }

    /// Inflate every item, stopping at the first cluster that is not a
    /// complete deflate stream of exactly `cs` bytes.
    fn run(&mut self, inflater: &mut flate2::Decompress, cs: usize) {
        let out = self.out.space();
        let mut done = 0;
        for (i, it) in self.items.iter().enumerate() {
            let dst = &mut out[i * cs..(i + 1) * cs];
            let src = &self.input[it.start..it.start + it.len];
            if let Err(why) = inflate_cluster(inflater, src, dst) {
                self.failed = Some((*it, why));
                break;
            }
            done = i + 1;
        }
        self.out.len = done * cs;
    }
}

/// Inflate one compressed cluster (a raw deflate stream) into `out`, which
/// it must fill exactly, for the workers and the converter's inline path
/// alike. The error's details are the inflater's reason, empty when the
/// stream came short.
pub fn inflate_cluster(
    inflater: &mut flate2::Decompress,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), AgentError> {
    inflater.reset(false);
    let r = inflater.decompress(input, out, flate2::FlushDecompress::Finish);
    if r.is_err() || inflater.total_out() != out.len() as u64 {
        let why = r.err().map(|e| e.to_string()).unwrap_or_default();
        return Err(AgentError::new(Kind::InvalidImage, why));
    }
    Ok(())
}

struct Worker {
    to: Option<Sender<Job>>,
    from: Receiver<Job>,
    thread: Option<JoinHandle<()>>,
}

/// The workers, the jobs in flight (oldest first) and the batch being
/// filled.
pub struct Pool {
    cs: usize,
    per_job: usize,
    jobs: usize,
    made: usize,
    workers: Vec<Worker>,
    in_flight: VecDeque<usize>,
    next: usize,
    spare: Vec<Job>,
    filling: Option<Job>,
}

impl Pool {
    /// A pool of `workers` threads for clusters of `cs` bytes, or `None`
    /// for fewer than two (the converter then inflates inline: one helper
    /// would only move the work to another thread) or clusters over
    /// [`BATCH_OUT`].
    pub fn new(cs: usize, workers: usize) -> Option<Pool> {
        if workers < 2 || cs == 0 || cs > BATCH_OUT {
            return None;
        }
        let per_job = BATCH_OUT / cs;
        // one job per worker inflating, and two more being filled or
        // written, so no worker waits for the converter
        let jobs = workers + 2;
        let mut pool = Pool {
            cs,
            per_job,
            jobs,
            made: 0,
            workers: Vec::new(),
            in_flight: VecDeque::new(),
            next: 0,
            spare: Vec::new(),
            filling: None,
        };
        for _ in 0..workers {
            let (to, rx) = mpsc::channel::<Job>();
            let (tx, from) = mpsc::channel::<Job>();
            let thread = std::thread::Builder::new()
                .name("image-inflate".into())
                .spawn(move || {
                    let mut inflater = flate2::Decompress::new(false);
                    for mut job in rx {
                        job.run(&mut inflater, cs);
                        if tx.send(job).is_err() {
                            return;
                        }
                    }
                })
                .ok()?;
            pool.workers.push(Worker {
                to: Some(to),
                from,
                thread: Some(thread),
            });
        }
        Some(pool)
    }

    /// Add a compressed cluster to the batch being filled; true when the
    /// batch is full and must be sent ([`Pool::send`]).
    pub fn add(&mut self, guest: u64, host: u64, input: &[u8]) -> Result<bool, AgentError> {
        let job = match self.filling.take().or_else(|| self.spare.pop()) {
            Some(j) => j,
            None if self.made < self.jobs => {
                self.made += 1;
                Job::new(self.per_job * self.cs)
            }
            None => {
                return Err(AgentError::new(
                    Kind::InvalidImage,
                    "no inflate job is free (a job was not recycled)",
                ))
            }
        };
        let job = self.filling.insert(job);
        let start = job.input.len();
        job.input.extend_from_slice(input);
        job.items.push(Item {
            guest,
            host,
            start,
            len: input.len(),
        });
        Ok(job.items.len() >= self.per_job)
    }

    /// Send the batch being filled to the next worker. When every job is
    /// then in flight, the oldest comes back done: the caller writes its
    /// clusters and hands it to [`Pool::recycle`] before the next `add`.
    pub fn send(&mut self) -> Result<Option<Job>, AgentError> {
        let Some(job) = self.filling.take() else {
            return Ok(None);
        };
        if job.items.is_empty() {
            self.spare.push(job);
            return Ok(None);
        }
        let w = self.next;
        self.next = (self.next + 1) % self.workers.len();
        match &self.workers[w].to {
            Some(to) if to.send(job).is_ok() => self.in_flight.push_back(w),
            _ => return Err(AgentError::new(Kind::InvalidImage, STOPPED)),
        }
        if self.spare.is_empty() && self.made >= self.jobs {
            return self.collect();
        }
        Ok(None)
    }

    /// The oldest job in flight, done.
    pub fn collect(&mut self) -> Result<Option<Job>, AgentError> {
        let Some(w) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        self.workers[w]
            .from
            .recv()
            .map(Some)
            .map_err(|_| AgentError::new(Kind::InvalidImage, STOPPED))
    }

    /// Take back a job once the converter is done with it.
    pub fn recycle(&mut self, mut job: Job) {
        job.clear();
        self.spare.push(job);
    }
}

const STOPPED: &str = "an inflate thread stopped unexpectedly";

impl Drop for Pool {
    /// The workers finish the job in hand and stop: no thread outlives
    /// the converter.
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.to = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, flate2::FlushCompress::Finish)
            .unwrap();
        out
    }

    fn cluster(i: u64, cs: usize) -> Vec<u8> {
        (0..cs)
            .map(|j| ((i as usize * 7 + j / 64) % 251) as u8)
            .collect()
    }

    /// Jobs come back in the order given out, whatever worker took them,
    /// each cluster inflated to its bytes; at most workers + 2 jobs exist.
    #[test]
    fn clusters_come_back_in_order() {
        let cs = 16 << 10;
        let mut pool = Pool::new(cs, 3).unwrap();
        let mut seen = Vec::new();
        let check = |job: &Job, seen: &mut Vec<u64>| {
            assert!(job.failed.is_none());
            for (i, it) in job.items.iter().enumerate() {
                assert_eq!(job.output(i, cs), &cluster(it.guest / cs as u64, cs)[..]);
                seen.push(it.guest);
            }
        };
        for i in 0..203u64 {
            let guest = i * cs as u64;
            if pool
                .add(guest, 1000 + i, &deflate(&cluster(i, cs)))
                .unwrap()
            {
                if let Some(job) = pool.send().unwrap() {
                    check(&job, &mut seen);
                    pool.recycle(job);
                }
            }
            assert!(pool.made <= 5);
        }
        if let Some(job) = pool.send().unwrap() {
            check(&job, &mut seen);
        }
        while let Some(job) = pool.collect().unwrap() {
            check(&job, &mut seen);
        }
        let want: Vec<u64> = (0..203).map(|i| i * cs as u64).collect();
        assert_eq!(seen, want);
    }

    /// A cluster that is not a complete deflate stream of a whole cluster
    /// is reported with its offsets, the clusters before it inflated.
    #[test]
    fn a_bad_cluster_is_named() {
        let cs = 64 << 10;
        let mut pool = Pool::new(cs, 2).unwrap();
        assert!(!pool.add(0, 512, &deflate(&cluster(0, cs))).unwrap());
        // a short stream: half a cluster
        assert!(pool
            .add(cs as u64, 4096, &deflate(&cluster(1, cs / 2)))
            .unwrap());
        assert!(pool.send().unwrap().is_none());
        let job = pool.collect().unwrap().unwrap();
        let (item, _) = job.failed.as_ref().unwrap();
        assert_eq!((item.guest, item.host), (cs as u64, 4096));
        assert_eq!(job.output(0, cs), &cluster(0, cs)[..]);
        pool.recycle(job);
        // garbage
        pool.add(0, 8192, b"\xff\xfe not deflate").unwrap();
        pool.send().unwrap();
        let job = pool.collect().unwrap().unwrap();
        assert_eq!(job.failed.as_ref().unwrap().0.host, 8192);
    }

    #[test]
    fn one_thread_or_big_clusters_inflate_inline() {
        assert!(Pool::new(64 << 10, 1).is_none());
        assert!(Pool::new(256 << 10, 4).is_none());
        assert!(Pool::new(2 << 20, 4).is_none());
        assert!(Pool::new(512, 2).is_some());
    }
}
