//! qcow2 → raw, natively, while the image streams past (qemu's
//! `docs/interop/qcow2.txt`; what qemu-img convert -O raw produces).
//!
//! The image is read front to back exactly once (that pass is also what is
//! hashed). Everything the conversion needs is an *event* at a host offset
//! of the file: the L1 table, each L2 table, each data cluster. Events wait
//! in a min-heap keyed by host offset; as each chunk of the stream arrives
//! the events inside it are handled: tables add new events, data clusters
//! are written to their guest offset, compressed clusters are inflated
//! (raw deflate, qemu's `qcow2_zlib_decompress`) and written. Guest ranges
//! that are unallocated or zero clusters are zeroed on the target (see
//! `writer.rs` for how: only where the target does not read zeroes).
//!
//! qemu-img writes the header, refcounts and L1 first and each L2 table
//! just before the clusters it maps, so this "forward" mode holds only the
//! clusters of the current L2 table in memory. When a table turns out to
//! map data that has already gone past (metadata after data: a resized or
//! hand-built image), the converter reports [`ConvError::Backward`] and the
//! caller restarts in "prefetched" mode (the stream module chooses it
//! upfront when a look at the tables shows that layout, as `qemu-img
//! convert -c` produces): the L1 and all L2 tables are read first with HTTP
//! Range requests, for their digests and the first cluster each maps; then
//! the image is streamed and each L2 table is read again and loaded just
//! before the stream reaches its first cluster, so only the tables in play
//! hold events. The image is never staged in RAM or on disk.
//!
//! Memory is bounded whatever the image: one inflate buffer and one write
//! buffer (at most 2 MiB each), compressed clusters straddling a chunk
//! boundary (capped), and at most [`MAX_EVENTS`] waiting events (16 bytes
//! of payload each). Every value read from the image is checked before it
//! is used as an offset, size or count; hostile headers fail with a reason,
//! never a panic or a large allocation.
//!
//! Refused, with the reason: version 1, backing files, encryption
//! (`crypt_method` or a LUKS header extension), external data files,
//! zstd compression, extended L2 entries (subclusters), images marked
//! corrupt, unknown incompatible features, cluster sizes outside 512 B–2 MiB,
//! refcount orders above 6, L1 tables beyond qemu's own 32 MiB limit.

use super::writer::{AlignedBuf, Behind, Target};
use crate::error::{AgentError, Kind as ErrorKind};
use crate::util::bytes::{be32, be64};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// qemu's `QCOW_MAX_L1_SIZE`.
const MAX_L1_BYTES: u64 = 32 << 20;
/// Waiting clusters and tables (16-byte events: at most ~6 MiB of heap).
pub const MAX_EVENTS: usize = 256 * 1024;
/// Compressed bytes carried across chunk boundaries.
const MAX_CARRY: usize = 8 << 20;
/// Write-combining buffer for guest-contiguous clusters (two of them take
/// turns: one fills while the other is written; 2 MiB each for 2 MiB
/// clusters).
const COMBINE: usize = 1 << 20;
/// Most helper threads inflating compressed clusters: with more, the
/// SHA-256 of the stream (one serial chain) or the disk sets the pace.
const MAX_INFLATE_THREADS: usize = 4;
/// Prefetched mode: L2 tables are loaded this far ahead of the stream
/// (adjacent ones due together share a request; with 512-byte clusters
/// this much stream is 16 Ki clusters waiting).
const LOAD_AHEAD: u64 = 8 << 20;
/// Prefetched mode: adjacent tables are read in requests of at most this.
const RANGE_GROUP: u64 = 8 << 20;

const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_STD_RESERVED: u64 = 0x3f00_0000_0000_01fe;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

/// Incompatible feature bits (qcow2.txt, header bytes 72-79).
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// Header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_CRYPTO: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// The fields of a qcow2 header this converter uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u64,
    pub l1_offset: u64,
    pub dirty: bool,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }
    /// Guest bytes one L2 table maps.
    pub fn l2_coverage(&self) -> u64 {
        self.l2_entries() * self.cluster_size()
    }
}

/// Parse and vet the header in `buf` (the start of the image; the whole
/// first cluster when the image has one).
/// A malformed or unsupported image: `InvalidImage` with the reason.
fn bad(reason: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidImage, reason)
}

pub fn parse_header(buf: &[u8]) -> Result<Header, AgentError> {
    if buf.len() < 72 {
        return Err(bad("the qcow2 header is truncated"));
    }
    if &buf[..4] != b"QFI\xfb" {
        return Err(bad("not a qcow2 image"));
    }
    let version = be32(buf, 4);
    match version {
        2 | 3 => {}
        1 => return Err(bad("qcow (version 1) images are not supported")),
        v => return Err(bad(format!("unsupported qcow2 version {v}"))),
    }
    let backing_offset = be64(buf, 8);
    let backing_size = be32(buf, 16) as usize;
    if backing_offset != 0 {
        let name = usize::try_from(backing_offset)
            .ok()
            .and_then(|o| buf.get(o..o.checked_add(backing_size.min(1023))?))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        return Err(bad(format!(
            "the image has a backing file ({name:?}); only self-contained images can be \
             deployed (qemu-img convert it first)"
        )));
    }
    let cluster_bits = be32(buf, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(format!(
            "cluster_bits {cluster_bits} is outside 9..21 (512 B to 2 MiB clusters)"
        )));
    }
    let cluster = 1u64 << cluster_bits;
    let size = be64(buf, 24);
    if size > 1 << 56 {
        return Err(bad(format!("virtual size {size} is not plausible")));
    }
    let crypt = be32(buf, 32);
    if crypt != 0 {
        return Err(bad(format!(
            "the image is encrypted (crypt_method {crypt}); encrypted images cannot be deployed"
        )));
    }
    let l1_size = u64::from(be32(buf, 36));
    let l1_offset = be64(buf, 40);
    let coverage = (cluster / 8) * cluster;
    let l1_needed = size.div_ceil(coverage);
    if l1_size < l1_needed {
        return Err(bad(format!(
            "the L1 table has {l1_size} entries but the virtual size needs {l1_needed}"
        )));
    }
    if l1_size * 8 > MAX_L1_BYTES {
        return Err(bad(format!(
            "the L1 table is too big ({} bytes; qemu's limit is {MAX_L1_BYTES})",
            l1_size * 8
        )));
    }
    if l1_size > 0 && (l1_offset < cluster || l1_offset % cluster != 0) {
        return Err(bad(format!(
            "the L1 table offset {l1_offset} is not a cluster boundary after the header"
        )));
    }
    let refcount_table_offset = be64(buf, 48);
    if refcount_table_offset % cluster != 0 {
        return Err(bad(format!(
            "the refcount table offset {refcount_table_offset} is not cluster aligned"
        )));
    }
    let mut dirty = false;
    let mut ext_start = 72usize;
    if version == 3 {
        if buf.len() < 104 {
            return Err(bad("the qcow2 version 3 header is truncated"));
        }
        let incompat = be64(buf, 72);
        let refcount_order = be32(buf, 96);
        let header_length = be32(buf, 100) as usize;
        if refcount_order > 6 {
            return Err(bad(format!("refcount_order {refcount_order} is above 6")));
        }
        if header_length < 104 || header_length % 8 != 0 || header_length as u64 > cluster {
            return Err(bad(format!("invalid header length {header_length}")));
        }
        if incompat & INCOMPAT_CORRUPT != 0 {
            return Err(bad(
                "the image is marked corrupt (run qemu-img check -r all on it)",
            ));
        }
        if incompat & INCOMPAT_DATA_FILE != 0 {
            return Err(bad("the image keeps its data in an external data file"));
        }
        if incompat & INCOMPAT_EXTL2 != 0 {
            return Err(bad("extended L2 entries (subclusters) are not supported"));
        }
        let unknown = incompat
            & !(INCOMPAT_DIRTY
                | INCOMPAT_CORRUPT
                | INCOMPAT_DATA_FILE
                | INCOMPAT_COMPRESSION
                | INCOMPAT_EXTL2);
        if unknown != 0 {
            return Err(bad(format!("unknown incompatible features {unknown:#x}")));
        }
        let ctype = if header_length > 104 {
            *buf.get(104)
                .ok_or_else(|| bad("the qcow2 header is truncated"))?
        } else {
            0
        };
        if incompat & INCOMPAT_COMPRESSION != 0 || ctype != 0 {
            return Err(bad(match ctype {
                1 => "zstd-compressed clusters are not supported (recompress with \
                      qemu-img convert -c -o compression_type=zlib)"
                    .into(),
                t => format!("unknown compression type {t}"),
            }));
        }
        dirty = incompat & INCOMPAT_DIRTY != 0;
        ext_start = header_length;
    }
    check_extensions(buf, ext_start, cluster)?;
    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_offset,
        dirty,
    })
}

/// Walk the header extensions (all inside the first cluster).
fn check_extensions(buf: &[u8], start: usize, cluster: u64) -> Result<(), AgentError> {
    let limit = buf.len().min(cluster as usize);
    let mut off = start;
    loop {
        if off + 8 > limit {
            // the end marker is missing only in truncated images
            return if buf.len() as u64 >= cluster {
                Err(bad("the header extensions run past the first cluster"))
            } else {
                Ok(())
            };
        }
        let ty = be32(buf, off);
        let len = be32(buf, off + 4) as usize;
        if ty == EXT_END {
            return Ok(());
        }
        let next = off + 8 + len.div_ceil(8) * 8;
        if next > limit {
            return Err(bad(format!(
                "header extension {ty:#x} runs past the first cluster"
            )));
        }
        match ty {
            EXT_CRYPTO => return Err(bad("the image is encrypted (LUKS header extension)")),
            EXT_DATA_FILE => {
                return Err(bad(
                    "the image names an external data file, which is not supported",
                ))
            }
            EXT_BACKING_FORMAT | EXT_FEATURE_TABLE | EXT_BITMAPS => {}
            _ => {}
        }
        off = next;
    }
}

/// What an L2 entry says about one guest cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cluster {
    Unallocated,
    Zero,
    Data(u64),
    Compressed { host: u64, len: u64 },
}

pub fn decode_l2(h: &Header, e: u64) -> Result<Cluster, AgentError> {
    if e & L2_COMPRESSED != 0 {
        let bits = h.cluster_bits - 8;
        let x = 62 - bits;
        let host = e & ((1u64 << x) - 1);
        let sectors = ((e >> x) & ((1u64 << bits) - 1)) + 1;
        let len = sectors * 512 - (host & 511);
        return Ok(Cluster::Compressed { host, len });
    }
    if e & L2_STD_RESERVED != 0 {
        return Err(bad(format!("L2 entry {e:#018x} has reserved bits set")));
    }
    if e & L2_ZERO != 0 {
        if h.version < 3 {
            return Err(bad(format!(
                "L2 entry {e:#018x} uses the zero flag, which version 2 images do not have"
            )));
        }
        return Ok(Cluster::Zero);
    }
    let host = e & L2_OFFSET_MASK;
    if host == 0 {
        return Ok(Cluster::Unallocated);
    }
    if host % h.cluster_size() != 0 {
        return Err(bad(format!(
            "data cluster offset {host:#x} is not cluster aligned"
        )));
    }
    Ok(Cluster::Data(host))
}

/// Why a conversion stopped.
#[derive(Debug)]
pub enum ConvError {
    /// Metadata points at bytes the stream has already passed: restart
    /// with the tables prefetched.
    Backward { host: u64, at: u64 },
    /// The image is malformed or hostile (an `InvalidImage` naming why).
    Invalid(AgentError),
    /// Writing the target failed.
    Write(AgentError),
}

impl From<AgentError> for ConvError {
    fn from(e: AgentError) -> Self {
        ConvError::Write(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    L1 { index: u64 },
    L2 { l1_index: u64 },
    Data { guest: u64 },
    Compressed { guest: u64, len: u64 },
}

/// A waiting event in 16 bytes: the host offset, and a tag holding the
/// kind (2 bits), a compressed cluster's sector count (13 bits) and an
/// index (47 bits: an L1 index, or a guest cluster number, which is below
/// 2^56 / 2^9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    host: u64,
    tag: u64,
}

const TAG_INDEX: u64 = (1 << 47) - 1;

impl Event {
    fn new(host: u64, kind: Kind, cluster_bits: u32) -> Event {
        let tag = match kind {
            Kind::L1 { index } => index,
            Kind::L2 { l1_index } => (1 << 62) | l1_index,
            Kind::Data { guest } => (2 << 62) | (guest >> cluster_bits),
            Kind::Compressed { guest, len } => {
                // len = sectors * 512 - (host & 511), sectors in 1..=2^13
                let sectors = (len + (host & 511)) / 512;
                (3 << 62) | ((sectors - 1) << 47) | (guest >> cluster_bits)
            }
        };
        Event { host, tag }
    }

    fn kind(self, cluster_bits: u32) -> Kind {
        let index = self.tag & TAG_INDEX;
        match self.tag >> 62 {
            0 => Kind::L1 { index },
            1 => Kind::L2 { l1_index: index },
            2 => Kind::Data {
                guest: index << cluster_bits,
            },
            _ => {
                let sectors = ((self.tag >> 47) & 0x1fff) + 1;
                Kind::Compressed {
                    guest: index << cluster_bits,
                    len: sectors * 512 - (self.host & 511),
                }
            }
        }
    }
}

/// A compressed cluster whose bytes straddle a chunk boundary.
/// A table read ahead of the stream: where, how long, its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TableCheck {
    host: u64,
    len: u64,
    digest: [u8; 32],
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

struct Carry {
    guest: u64,
    host: u64,
    end: u64,
    bytes: Vec<u8>,
}

/// Guest-contiguous data gathered into one large write. Full buffers are
/// written on `writer::Behind`'s threads, up to [`WRITE_BEHIND`] bytes at
/// once, while the converter inflates the next clusters (qemu-img overlaps
/// them too, with its coroutines). Each guest cluster is written once and
/// the held-back head and tail never there (`Target::direct_slot`); every
/// write is waited for before the converter finishes, so the head is
/// committed after them.
struct Combiner {
    buf: AlignedBuf,
    start: u64,
    behind: Option<Behind>,
    /// Writes in flight at most ([`WRITE_BEHIND`]'s, fewer once inflating).
    depth: usize,
    /// Buffers back from finished writes.
    spare: Vec<AlignedBuf>,
}

/// Bytes of combined writes in flight: three 1 MiB writes (one of 2 MiB
/// for 2 MiB clusters), as the raw path's depth.
const WRITE_BEHIND: usize = 3 << 20;
/// Combined writes in flight once compressed clusters are met: inflating
/// (~160 MB/s a core) leaves the device idle between writes anyway.
/// Against three (a 3 GiB root filesystem and a 512 MiB half-compressible
/// image, `qemu-img convert -c`, two rounds each, 2026-12-08): as fast
/// (5.37/5.51 s against 5.50/5.81 s), peak RSS 16.3 -> 14.1 MiB.
const INFLATING_WRITES: usize = 1;

impl Combiner {
    fn put(&mut self, t: &mut Target, guest: u64, data: &[u8]) -> Result<(), AgentError> {
        let len = self.buf.len;
        if len > 0 && (self.start + len as u64 != guest || len + data.len() > self.buf.capacity()) {
            self.flush(t)?;
        }
        if self.buf.len == 0 {
            self.start = guest;
        }
        let l = self.buf.len;
        self.buf.space()[l..l + data.len()].copy_from_slice(data);
        self.buf.len += data.len();
        Ok(())
    }

    fn flush(&mut self, t: &mut Target) -> Result<(), AgentError> {
        if self.buf.len == 0 {
            return Ok(());
        }
        if let Some(abs) = t.direct_slot(self.start, self.buf.len as u64)? {
            let cap = self.buf.capacity();
            if self.behind.is_none() {
                self.behind = Behind::start(t, (WRITE_BEHIND / cap).clamp(1, self.depth));
            }
            if let Some(wb) = self.behind.as_mut() {
                while let Some(b) = wb.room(t)? {
                    self.spare.push(b);
                }
                // the buffers of writes sent before the depth was cut
                // (`INFLATING_WRITES`) are not kept
                self.spare.truncate(self.depth);
                let mut free = self.spare.pop().unwrap_or_else(|| AlignedBuf::new(cap));
                free.len = 0;
                let full = std::mem::replace(&mut self.buf, free);
                return wb.send(t, full, abs);
            }
            // no threads: the slot is already counted, write it here
            return t
                .write_slot(abs, self.buf.data())
                .map(|()| self.buf.len = 0);
        }
        t.write_at(self.start, self.buf.data())?;
        self.buf.len = 0;
        Ok(())
    }

    /// Flush, and wait for the writes in flight.
    fn settle(&mut self, t: &mut Target) -> Result<(), AgentError> {
        self.flush(t)?;
        if let Some(wb) = self.behind.as_mut() {
            while let Some(b) = wb.reap(t, true)? {
                self.spare.push(b);
            }
        }
        Ok(())
    }
}

pub struct Converter {
    pub h: Header,
    cs: u64,
    prefetched: bool,
    /// Prefetched mode: the SHA-256 of every table read with a Range
    /// request, sorted by host offset, checked against the same bytes of
    /// the hashed stream (`check_tables`): only the stream is covered by the
    /// image checksum, and the tables decide where every byte goes.
    tables: Vec<TableCheck>,
    /// The next entry of `tables` to meet in the stream, and the running
    /// digest of one that spans chunks.
    next_table: usize,
    table_hash: Option<sha2::Sha256>,
    /// Prefetched mode: L2 tables not loaded yet, as (first use, host
    /// offset, L1 index), the next one to load last. A table is loaded
    /// (read again, checked against its first read) only when the stream
    /// comes within [`LOAD_AHEAD`] of its first cluster, so the heap holds
    /// the clusters of the tables in play, not of the whole image.
    due: Vec<(u64, u64, u64)>,
    heap: BinaryHeap<Reverse<Event>>,
    carries: Vec<Carry>,
    inflater: flate2::Decompress,
    /// The inline inflater's output (made with the first compressed
    /// cluster, when there are no helpers).
    out: AlignedBuf,
    /// Compressed clusters inflated on helper threads (made with the first
    /// compressed cluster; `None`: inline).
    pool: Option<super::inflate::Pool>,
    /// Helper threads to inflate with: one per CPU, at most four, unless
    /// set (`with_inflate_threads`).
    inflate_threads: Option<usize>,
    comb: Combiner,
    zero_start: u64,
    zero_len: u64,
    /// Bytes of the stream already handled.
    pos: u64,
    /// Where a data cluster or an L2 table was cut short (a data cluster is
    /// read as zeroes past it, as qemu does at the end of the file): any
    /// byte after it means a chunk cut a cluster mid-stream, which must
    /// fail rather than write zeroes.
    cut: Option<u64>,
    pub data_bytes: u64,
    pub zero_bytes: u64,
}

fn invalid(m: impl Into<String>) -> ConvError {
    ConvError::Invalid(AgentError::new(ErrorKind::InvalidImage, m))
}

fn not_inflating(guest: u64, host: u64, why: &AgentError) -> ConvError {
    let why = if why.details.is_empty() {
        String::new()
    } else {
        format!(": {}", why.details)
    };
    invalid(format!(
        "the compressed cluster at host offset {host:#x} (guest {guest:#x}) does not inflate \
         to a full cluster{why}"
    ))
}

impl Converter {
    /// Forward mode: the tables are found in the stream.
    pub fn new(h: Header) -> Converter {
        let cs = h.cluster_size();
        let mut c = Converter {
            cs,
            prefetched: false,
            tables: vec![],
            next_table: 0,
            table_hash: None,
            due: vec![],
            heap: BinaryHeap::new(),
            carries: vec![],
            inflater: flate2::Decompress::new(false),
            out: AlignedBuf::new(0),
            pool: None,
            inflate_threads: None,
            comb: Combiner {
                spare: Vec::new(),
                buf: AlignedBuf::new(COMBINE.max(cs as usize)),
                start: 0,
                behind: None,
                depth: usize::MAX,
            },
            zero_start: 0,
            zero_len: 0,
            pos: 0,
            cut: None,
            data_bytes: 0,
            zero_bytes: 0,
            h,
        };
        if c.h.l1_size > 0 {
            let ev = Event::new(c.h.l1_offset, Kind::L1 { index: 0 }, c.h.cluster_bits);
            c.heap.push(Reverse(ev));
        } else {
            c.zero_len = c.h.size;
        }
        c
    }

    /// Inflate compressed clusters on `n` helper threads (fewer than two:
    /// inline), instead of one per CPU.
    pub fn with_inflate_threads(mut self, n: usize) -> Converter {
        self.inflate_threads = Some(n);
        self
    }

    /// True once a compressed cluster was met (the inflate helpers, or
    /// the inline inflate buffer, exist).
    pub fn inflating(&self) -> bool {
        self.pool.is_some() || self.out.capacity() > 0
    }

    /// Clusters and tables still waiting for their bytes.
    pub fn waiting(&self) -> usize {
        self.heap.len()
    }

    fn push(&mut self, ev: Event, at: u64) -> Result<(), ConvError> {
        if !self.prefetched && ev.host < at {
            return Err(ConvError::Backward { host: ev.host, at });
        }
        if self.heap.len() >= MAX_EVENTS {
            return Err(invalid(format!(
                "more than {MAX_EVENTS} clusters wait for their data at once (metadata far \
                 ahead of the data); this image cannot be converted in bounded memory, \
                 qemu-img convert it to a fresh qcow2 first"
            )));
        }
        self.heap.push(Reverse(ev));
        Ok(())
    }

    fn zero(&mut self, t: &mut Target, guest: u64, len: u64) -> Result<(), ConvError> {
        let len = len.min(self.h.size.saturating_sub(guest));
        if len == 0 {
            return Ok(());
        }
        if self.zero_len > 0 && self.zero_start + self.zero_len == guest {
            self.zero_len += len;
            return Ok(());
        }
        self.flush_zero(t)?;
        self.zero_start = guest;
        self.zero_len = len;
        Ok(())
    }

    fn flush_zero(&mut self, t: &mut Target) -> Result<(), ConvError> {
        if self.zero_len > 0 {
            t.zero_range(self.zero_start, self.zero_len)?;
            self.zero_bytes += self.zero_len;
            self.zero_len = 0;
        }
        Ok(())
    }

    /// One L1 entry.
    fn l1_entry(&mut self, t: &mut Target, index: u64, e: u64, at: u64) -> Result<(), ConvError> {
        let guest = index * self.h.l2_coverage();
        if guest >= self.h.size {
            return Ok(());
        }
        if e & L1_RESERVED != 0 {
            return Err(invalid(format!(
                "L1 entry {index} ({e:#018x}) has reserved bits set"
            )));
        }
        let off = e & L1_OFFSET_MASK;
        if off == 0 {
            return self.zero(t, guest, self.h.l2_coverage());
        }
        if off % self.cs != 0 || off < self.cs {
            return Err(invalid(format!(
                "L1 entry {index} points at {off:#x}, not a cluster after the header"
            )));
        }
        self.push(
            Event::new(off, Kind::L2 { l1_index: index }, self.h.cluster_bits),
            at,
        )
    }

    /// One L2 table (`table` holds a whole cluster).
    fn l2_table(
        &mut self,
        t: &mut Target,
        l1_index: u64,
        table: &[u8],
        at: u64,
    ) -> Result<(), ConvError> {
        let base = l1_index * self.h.l2_coverage();
        for (j, raw) in table.chunks_exact(8).enumerate() {
            let guest = base + j as u64 * self.cs;
            if guest >= self.h.size {
                break;
            }
            let e = u64::from_be_bytes(raw.try_into().unwrap_or_default());
            match decode_l2(&self.h, e).map_err(ConvError::Invalid)? {
                Cluster::Unallocated | Cluster::Zero => self.zero(t, guest, self.cs)?,
                Cluster::Data(host) => {
                    let ev = Event::new(host, Kind::Data { guest }, self.h.cluster_bits);
                    self.push(ev, at)?
                }
                Cluster::Compressed { host, len } => {
                    let ev = Event::new(host, Kind::Compressed { guest, len }, self.h.cluster_bits);
                    self.push(ev, at)?
                }
            }
        }
        Ok(())
    }

    fn data(&mut self, t: &mut Target, guest: u64, bytes: &[u8]) -> Result<(), ConvError> {
        let n = (self.h.size - guest).min(bytes.len() as u64) as usize;
        self.comb.put(t, guest, &bytes[..n])?;
        self.data_bytes += n as u64;
        Ok(())
    }

    fn inflate(
        &mut self,
        t: &mut Target,
        guest: u64,
        host: u64,
        input: &[u8],
    ) -> Result<(), ConvError> {
        if self.pool.is_none() && self.out.capacity() == 0 {
            // the first compressed cluster: start the helpers, or inflate
            // here (one CPU)
            let threads = self
                .inflate_threads
                .unwrap_or_else(|| crate::sys::cpus_allowed().min(MAX_INFLATE_THREADS));
            self.pool = super::inflate::Pool::new(self.cs as usize, threads);
            self.comb.depth = INFLATING_WRITES;
            if let Some(b) = self.comb.behind.as_mut() {
                b.limit(INFLATING_WRITES);
            }
            if self.pool.is_none() {
                self.out = AlignedBuf::new(self.cs as usize);
            }
            crate::util::log_at!(
                Debug,
                "qcow2: compressed clusters inflate on {} helper threads (0: inline)",
                self.pool.as_ref().map_or(0, |_| threads)
            );
        }
        if let Some(pool) = self.pool.as_mut() {
            if pool.add(guest, host, input).map_err(ConvError::Invalid)? {
                return self.send_batch(t);
            }
            return Ok(());
        }
        let cs = self.cs as usize;
        self.out.len = 0;
        let out = &mut self.out.space()[..cs];
        if let Err(why) = super::inflate::inflate_cluster(&mut self.inflater, input, out) {
            return Err(not_inflating(guest, host, &why));
        }
        let n = (self.h.size - guest).min(self.cs) as usize;
        self.out.len = n;
        // the inflate buffer is reused for the next cluster: copy it into
        // the write-combining buffer
        self.comb.put(t, guest, self.out.data())?;
        self.data_bytes += n as u64;
        Ok(())
    }

    /// Send the batch of compressed clusters to a helper; write the oldest
    /// job if it came back.
    fn send_batch(&mut self, t: &mut Target) -> Result<(), ConvError> {
        let Some(pool) = self.pool.as_mut() else {
            return Ok(());
        };
        match pool.send().map_err(ConvError::Invalid)? {
            Some(job) => self.finish_job(t, job),
            None => Ok(()),
        }
    }

    /// A job back from a helper: check it, and write what the helper did
    /// not (through the write-combining buffer, in the order met).
    fn finish_job(&mut self, t: &mut Target, job: super::inflate::Job) -> Result<(), ConvError> {
        let cs = self.cs as usize;
        let mut r = Ok(());
        if let Some((f, why)) = &job.failed {
            r = Err(not_inflating(f.guest, f.host, why));
        } else {
            for (i, it) in job.items.iter().enumerate() {
                let n = (self.h.size - it.guest).min(self.cs) as usize;
                if let Err(e) = self.comb.put(t, it.guest, &job.output(i, cs)[..n]) {
                    r = Err(e.into());
                    break;
                }
                self.data_bytes += n as u64;
            }
        }
        if let Some(pool) = self.pool.as_mut() {
            pool.recycle(job);
        }
        r
    }

    /// Every compressed cluster handed to the helpers, done.
    fn drain_inflated(&mut self, t: &mut Target) -> Result<(), ConvError> {
        self.send_batch(t)?;
        loop {
            let job = match self.pool.as_mut() {
                Some(p) => p.collect().map_err(ConvError::Invalid)?,
                None => None,
            };
            match job {
                Some(job) => self.finish_job(t, job)?,
                None => return Ok(()),
            }
        }
    }

    /// The next `data.len()` bytes of the image, starting at host offset
    /// `c0` (chunks arrive in order, without gaps).
    pub fn feed(&mut self, t: &mut Target, c0: u64, data: &[u8]) -> Result<(), ConvError> {
        let c1 = c0 + data.len() as u64;
        if let Some(at) = self.cut.filter(|_| !data.is_empty()) {
            return Err(invalid(format!(
                "a cluster was cut at byte {at}, but the stream goes on (chunks must be \
                 multiples of the cluster size)"
            )));
        }
        if self.prefetched {
            self.check_tables(c0, data)?;
        }
        // compressed clusters begun in earlier chunks
        let mut i = 0;
        while i < self.carries.len() {
            let c = &mut self.carries[i];
            let take = (c.end.min(c1) - c0) as usize;
            c.bytes.extend_from_slice(&data[..take]);
            if c.end <= c1 {
                let c = self.carries.swap_remove(i);
                self.inflate(t, c.guest, c.host, &c.bytes)?;
            } else {
                i += 1;
            }
        }
        while let Some(&Reverse(ev)) = self.heap.peek() {
            if ev.host >= c1 {
                break;
            }
            self.heap.pop();
            if ev.host < c0 {
                return Err(ConvError::Backward {
                    host: ev.host,
                    at: c0,
                });
            }
            let off = (ev.host - c0) as usize;
            match ev.kind(self.h.cluster_bits) {
                Kind::L1 { index } => {
                    let end = self.h.l1_offset + self.h.l1_size * 8;
                    let stop = end.min(c1);
                    let mut idx = index;
                    let mut p = ev.host;
                    while p + 8 <= stop {
                        let o = (p - c0) as usize;
                        let e = be64(data, o);
                        self.l1_entry(t, idx, e, p + 8)?;
                        idx += 1;
                        p += 8;
                    }
                    if p < end {
                        self.heap.push(Reverse(Event::new(
                            p,
                            Kind::L1 { index: idx },
                            self.h.cluster_bits,
                        )));
                        if p < c1 {
                            // an entry split across chunks cannot happen with
                            // cluster-aligned chunks; a short final chunk is
                            // reported at the end
                            break;
                        }
                    }
                }
                Kind::L2 { l1_index } => {
                    if self.prefetched {
                        continue;
                    }
                    let end = off + self.cs as usize;
                    if end > data.len() {
                        // only a short final chunk can cut a table
                        self.cut = Some(c1);
                        self.heap.push(Reverse(ev));
                        break;
                    }
                    self.l2_table(t, l1_index, &data[off..end], ev.host + self.cs)?;
                }
                Kind::Data { guest } => {
                    // qemu-img lays data out in guest order: take the run of
                    // clusters contiguous on both sides and write it straight
                    // from the stream buffer (no copy, one large write; a
                    // chunk that is one run and nothing else went to the
                    // writer threads instead, through `take_run`).
                    let mut n = 1u64;
                    while let Some(&Reverse(next)) = self.heap.peek() {
                        let follows = next.host == ev.host + n * self.cs
                            && next.kind(self.h.cluster_bits)
                                == (Kind::Data {
                                    guest: guest + n * self.cs,
                                })
                            && next.host + self.cs <= c1;
                        if !follows {
                            break;
                        }
                        self.heap.pop();
                        n += 1;
                    }
                    // Chunks are multiples of the cluster size, so only the
                    // end of the file can cut a data cluster: qemu reads the
                    // missing bytes as zeroes (`cut` fails any later byte).
                    let end = (off + (n * self.cs) as usize).min(data.len());
                    let bytes = &data[off..end];
                    if n > 1 {
                        self.comb.flush(t)?;
                        let len = (self.h.size - guest).min(bytes.len() as u64) as usize;
                        t.write_at(guest, &bytes[..len])?;
                        self.data_bytes += len as u64;
                    } else {
                        self.data(t, guest, bytes)?;
                    }
                    let got = bytes.len() as u64;
                    if got < n * self.cs {
                        self.cut = Some(ev.host + got);
                        self.zero(t, guest + got, n * self.cs - got)?;
                    }
                }
                Kind::Compressed { guest, len } => {
                    let end = ev.host + len;
                    if end <= c1 {
                        let s = &data[off..off + len as usize];
                        self.inflate(t, guest, ev.host, s)?;
                    } else {
                        let carried: usize = self.carries.iter().map(|c| c.bytes.capacity()).sum();
                        if carried + len as usize > MAX_CARRY {
                            return Err(invalid(format!(
                                "too many overlapping compressed clusters at host offset \
                                 {:#x}",
                                ev.host
                            )));
                        }
                        let mut bytes = Vec::with_capacity(len as usize);
                        bytes.extend_from_slice(&data[off..]);
                        self.carries.push(Carry {
                            guest,
                            host: ev.host,
                            end,
                            bytes,
                        });
                    }
                }
            }
        }
        self.pos = c1;
        Ok(())
    }

    /// When the next chunk, `data` at host offset `c0`, is one run of data
    /// clusters and nothing else (qemu-img lays uncompressed data out in
    /// guest order, so nearly every chunk is), take it: its clusters are
    /// done, and the guest offset the caller writes the whole chunk at is
    /// returned, so the stream buffer itself goes to the writer threads
    /// (no copy, several writes in flight). `None`: feed the chunk.
    pub fn take_run(&mut self, c0: u64, data: &[u8]) -> Result<Option<u64>, ConvError> {
        let len = data.len() as u64;
        if len == 0 || len % self.cs != 0 || self.cut.is_some() || !self.carries.is_empty() {
            return Ok(None);
        }
        let Some(&Reverse(first)) = self.heap.peek() else {
            return Ok(None);
        };
        let Kind::Data { guest } = first.kind(self.h.cluster_bits) else {
            return Ok(None);
        };
        if first.host != c0 || guest + len > self.h.size {
            return Ok(None);
        }
        let (cs, bits) = (self.cs, self.h.cluster_bits);
        let n = len / cs;
        let at = |i: u64| {
            Event::new(
                c0 + i * cs,
                Kind::Data {
                    guest: guest + i * cs,
                },
                bits,
            )
        };
        let mut k = 0;
        while k < n && self.heap.peek() == Some(&Reverse(at(k))) {
            self.heap.pop();
            k += 1;
        }
        // the clusters of a data run are one event each; a chunk holding
        // less of the run (a table, a cluster mapped twice) is fed instead
        if k < n || self.heap.peek().is_some_and(|r| r.0.host < c0 + len) {
            self.heap.extend((0..k).map(|i| Reverse(at(i))));
            return Ok(None);
        }
        if self.prefetched {
            self.check_tables(c0, data)?;
        }
        self.data_bytes += len;
        self.pos = c0 + len;
        Ok(Some(guest))
    }

    /// Prefetched mode: the tables' bytes as the hashed stream carries them
    /// must be the bytes the Range requests returned.
    fn check_tables(&mut self, c0: u64, data: &[u8]) -> Result<(), ConvError> {
        use sha2::Digest;
        let c1 = c0 + data.len() as u64;
        while let Some(tc) = self.tables.get(self.next_table) {
            if tc.host >= c1 {
                break;
            }
            let end = tc.host + tc.len;
            let from = (tc.host.max(c0) - c0) as usize;
            let to = (end.min(c1) - c0) as usize;
            self.table_hash
                .get_or_insert_with(sha2::Sha256::new)
                .update(&data[from..to]);
            if end > c1 {
                break;
            }
            let got: [u8; 32] = self.table_hash.take().unwrap_or_default().finalize().into();
            if got != tc.digest {
                return Err(invalid(format!(
                    "the qcow2 table at byte {} differs between the Range request and the \
                     checksummed stream (the image changed on the server, or the server is \
                     not consistent)",
                    tc.host
                )));
            }
            self.next_table += 1;
        }
        Ok(())
    }

    /// The stream ended at `self.pos`: everything must have been found.
    pub fn finish(&mut self, t: &mut Target) -> Result<(), ConvError> {
        if let Some(&(first, host, _)) = self.due.last() {
            return Err(invalid(format!(
                "the image ends at byte {} but the L2 table at byte {host} maps byte {first}",
                self.pos
            )));
        }
        if let Some(tc) = self.tables.get(self.next_table) {
            return Err(invalid(format!(
                "the image ends at byte {} but its table at byte {} was read there with a \
                 Range request",
                self.pos, tc.host
            )));
        }
        // A compressed cluster's length is rounded up to whole sectors and
        // may run past the end of the file (qemu reads zeroes there); the
        // deflate stream itself must be complete.
        for c in std::mem::take(&mut self.carries) {
            self.inflate(t, c.guest, c.host, &c.bytes)?;
        }
        self.drain_inflated(t)?;
        if let Some(Reverse(ev)) = self.heap.pop() {
            return Err(invalid(format!(
                "the image ends at byte {} but its metadata points at byte {} ({:?})",
                self.pos,
                ev.host,
                ev.kind(self.h.cluster_bits)
            )));
        }
        self.comb.settle(t)?;
        self.flush_zero(t)?;
        Ok(())
    }

    /// Prefetched mode: read the L1 table and every L2 table through
    /// `read_range(start, len, sink)` (HTTP Range requests) before the
    /// stream starts; the stream then only carries data clusters.
    pub fn prefetch(
        &mut self,
        t: &mut Target,
        read_range: &mut RangeReader,
    ) -> Result<(), ConvError> {
        self.prefetched = true;
        self.heap.clear();
        let (l1_offset, l1_bytes) = (self.h.l1_offset, self.h.l1_size * 8);
        let mut idx = 0u64;
        let mut entry = [0u8; 8];
        let mut have = 0usize;
        let mut l1_hash = <sha2::Sha256 as sha2::Digest>::new();
        {
            let mut sink = |bytes: &[u8]| -> Result<(), ConvError> {
                sha2::Digest::update(&mut l1_hash, bytes);
                for &b in bytes {
                    entry[have] = b;
                    have += 1;
                    if have == 8 {
                        have = 0;
                        let i = idx;
                        idx += 1;
                        self.l1_entry(t, i, u64::from_be_bytes(entry), 0)?;
                    }
                }
                Ok(())
            };
            read_range(l1_offset, l1_bytes, &mut sink)?;
        }
        if idx != self.h.l1_size {
            return Err(invalid("the L1 table lies beyond the end of the image"));
        }
        let mut checks = vec![TableCheck {
            host: l1_offset,
            len: l1_bytes,
            digest: sha2::Digest::finalize(l1_hash).into(),
        }];
        // the heap now holds the L2 tables, in host order
        let mut tables = Vec::with_capacity(self.heap.len());
        while let Some(Reverse(ev)) = self.heap.pop() {
            if let Kind::L2 { l1_index } = ev.kind(self.h.cluster_bits) {
                tables.push((ev.host, l1_index));
            }
        }
        // L2 tables, each once however many L1 entries name it, adjacent
        // ones in one request (at most 8 MiB): read here for their digests
        // and first clusters, loaded later by `load_due`
        crate::util::sort_unstable(&mut tables);
        let mut due = Vec::with_capacity(tables.len());
        let h = &self.h;
        read_tables(h, &tables, read_range, &mut |host, indexes, table| {
            for &l1_index in indexes {
                due.push((first_use(h, l1_index, host, table)?, host, l1_index));
            }
            checks.push(TableCheck {
                host,
                len: h.cluster_size(),
                digest: sha256(table),
            });
            Ok(())
        })?;
        // In host order, each range once (two L1 entries may share an L2
        // table); overlapping tables are refused, as qemu-img check would.
        crate::util::sort_unstable_by(&mut checks, |a, b| (a.host, a.len).cmp(&(b.host, b.len)));
        checks.dedup();
        for w in checks.windows(2) {
            if w[0].host + w[0].len > w[1].host {
                return Err(invalid(format!(
                    "qcow2 tables overlap at byte {} (or one L2 table was read twice with \
                     different bytes)",
                    w[1].host
                )));
            }
        }
        self.tables = checks;
        self.next_table = 0;
        self.table_hash = None;
        crate::util::sort_unstable_by(&mut due, |a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        self.due = due;
        Ok(())
    }

    /// Prefetched mode: load the L2 tables whose first cluster (or the
    /// table itself) lies before `upto` + [`LOAD_AHEAD`], adjacent ones in
    /// one Range request. Call before feeding the chunk that ends at `upto`.
    pub fn load_due(
        &mut self,
        t: &mut Target,
        upto: u64,
        read_range: &mut RangeReader,
    ) -> Result<(), ConvError> {
        let horizon = upto.saturating_add(LOAD_AHEAD);
        let mut now: Vec<(u64, u64)> = vec![];
        while let Some(&(first, host, l1_index)) = self.due.last() {
            if first >= horizon {
                break;
            }
            if first < self.pos {
                // cannot happen: tables are loaded before the stream
                // reaches their first cluster
                return Err(ConvError::Backward {
                    host: first,
                    at: self.pos,
                });
            }
            self.due.pop();
            now.push((host, l1_index));
        }
        crate::util::sort_unstable(&mut now);
        let h = self.h.clone();
        read_tables(&h, &now, read_range, &mut |host, indexes, table| {
            let known = self
                .tables
                .binary_search_by_key(&(host, h.cluster_size()), |c| (c.host, c.len))
                .ok()
                .map(|i| self.tables[i].digest);
            if known != Some(sha256(table)) {
                return Err(invalid(format!(
                    "the qcow2 table at byte {host} differs between two Range requests (the \
                     image changed on the server, or the server is not consistent)"
                )));
            }
            for &l1_index in indexes {
                self.l2_table(t, l1_index, table, 0)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Entries of the L2 table for L1 entry `l1_index` that map guest bytes
/// inside the virtual size (`l2_table` stops there too).
fn entries_in_use(h: &Header, l1_index: u64) -> usize {
    let guest = l1_index.saturating_mul(h.l2_coverage());
    h.size
        .saturating_sub(guest)
        .div_ceil(h.cluster_size())
        .min(h.l2_entries()) as usize
}

/// Where the stream first needs the L2 table at `host` (for L1 entry
/// `l1_index`): the table itself or the lowest cluster it maps, whichever
/// comes first. Checks every entry in use as `l2_table` will.
fn first_use(h: &Header, l1_index: u64, host: u64, table: &[u8]) -> Result<u64, ConvError> {
    let mut first = host;
    for raw in table.chunks_exact(8).take(entries_in_use(h, l1_index)) {
        let e = u64::from_be_bytes(raw.try_into().unwrap_or_default());
        match decode_l2(h, e).map_err(ConvError::Invalid)? {
            Cluster::Data(c) | Cluster::Compressed { host: c, .. } => first = first.min(c),
            Cluster::Unallocated | Cluster::Zero => {}
        }
    }
    Ok(first)
}

/// What [`read_tables`] hands each table to: (host offset, the L1 indexes
/// naming it, its bytes).
type TableSink<'a> = dyn FnMut(u64, &[u64], &[u8]) -> Result<(), ConvError> + 'a;

/// Read the L2 tables of `tables` ((host, L1 index), sorted): each distinct
/// table once, adjacent ones in one Range request of at most
/// [`RANGE_GROUP`]; `each(host, L1 indexes naming it, table)`.
fn read_tables(
    h: &Header,
    tables: &[(u64, u64)],
    read_range: &mut RangeReader,
    each: &mut TableSink,
) -> Result<(), ConvError> {
    let cs = h.cluster_size();
    // (host, its L1 indexes) per distinct table
    let mut distinct: Vec<(u64, Vec<u64>)> = vec![];
    for &(host, l1_index) in tables {
        match distinct.last_mut() {
            Some((last, idx)) if *last == host => idx.push(l1_index),
            _ => distinct.push((host, vec![l1_index])),
        }
    }
    let mut table = vec![0u8; cs as usize];
    let mut k = 0;
    while k < distinct.len() {
        let start = distinct[k].0;
        let mut n = 1;
        while k + n < distinct.len()
            && distinct[k + n].0 == start + n as u64 * cs
            && (n as u64 + 1) * cs <= RANGE_GROUP
        {
            n += 1;
        }
        let group = &distinct[k..k + n];
        let mut filled = 0usize;
        let mut g = 0usize;
        read_range(start, n as u64 * cs, &mut |bytes: &[u8]| {
            let mut rest = bytes;
            while !rest.is_empty() && g < group.len() {
                let m = (cs as usize - filled).min(rest.len());
                table[filled..filled + m].copy_from_slice(&rest[..m]);
                filled += m;
                rest = &rest[m..];
                if filled == cs as usize {
                    filled = 0;
                    each(group[g].0, &group[g].1, &table)?;
                    g += 1;
                }
            }
            Ok(())
        })?;
        if g != n {
            return Err(invalid(format!(
                "the L2 tables at {start:#x} lie beyond the end of the image"
            )));
        }
        k += n;
    }
    Ok(())
}

/// At most this many L2 tables (the first in the file) are read by
/// [`tables_trail_data`]: 32 GiB of guest at 64 KiB clusters.
const MAX_SCANNED_TABLES: usize = 64;
/// [`tables_trail_data`] reads an L1 table outside the first chunk only up
/// to this size (8 Ki entries).
const MAX_SCANNED_L1: u64 = 64 << 10;

/// Whether some L2 table sits after data it maps (or the L1 table after an
/// L2 table), so that forward streaming would only learn where those bytes
/// go once they have passed. `qemu-img
/// convert -c` lays images out that way beyond the first L2 table (its
/// compressed writes run ahead of the table allocation): without this
/// check a compressed image larger than 512 MiB was streamed, hashed and
/// written up to the first such table, then all over again with the
/// tables prefetched. Reads the L1 table (from `first`, the stream's first
/// chunk, when it is there) and every L2 table through `read_range`; the
/// bytes are not trusted for anything but this choice (the conversion
/// itself reads its tables again and checks them against the hashed
/// stream).
pub fn tables_trail_data(
    h: &Header,
    first: &[u8],
    read_range: &mut RangeReader,
) -> Result<bool, ConvError> {
    let cs = h.cluster_size();
    let l1_bytes = h.l1_size.saturating_mul(8);
    let Some(l1_end) = h.l1_offset.checked_add(l1_bytes) else {
        return Ok(false);
    };
    let mut l1 = Vec::new();
    if l1_end <= first.len() as u64 {
        l1.extend_from_slice(&first[h.l1_offset as usize..l1_end as usize]);
    } else {
        if l1_bytes > MAX_SCANNED_L1 {
            return Ok(false);
        }
        read_range(h.l1_offset, l1_bytes, &mut |b| {
            l1.extend_from_slice(b);
            Ok(())
        })?;
    }
    // (host, L1 index) of every table the guest uses
    let mut tables: Vec<(u64, u64)> = l1
        .chunks_exact(8)
        .enumerate()
        .take_while(|(i, _)| (*i as u64).saturating_mul(h.l2_coverage()) < h.size)
        .map(|(i, e)| {
            let off = u64::from_be_bytes(e.try_into().unwrap_or_default()) & L1_OFFSET_MASK;
            (off, i as u64)
        })
        .filter(|&(off, _)| off != 0 && off % cs == 0)
        .collect();
    crate::util::sort_unstable(&mut tables);
    // an L2 table before the end of the L1 table (`qemu-img resize` moves
    // the L1 table behind everything) is met before the entry naming it
    if tables.first().is_some_and(|&(t, _)| t < l1_end) {
        return Ok(true);
    }
    // the first tables in the file only: a trailing layout shows at the
    // second table already (qemu-img convert -c), and an image laid out
    // forward would otherwise cost a request per table before it streams
    let (mut seen, mut last) = (0, None);
    let keep = tables
        .iter()
        .position(|&(host, _)| {
            if last != Some(host) {
                seen += 1;
                last = Some(host);
            }
            seen > MAX_SCANNED_TABLES
        })
        .unwrap_or(tables.len());
    tables.truncate(keep);
    let mut trails = false;
    let r = read_tables(h, &tables, read_range, &mut |host, indexes, table| {
        // the first L1 index naming a table uses the most of its entries
        let used = indexes
            .iter()
            .map(|&i| entries_in_use(h, i))
            .max()
            .unwrap_or(0);
        for raw in table.chunks_exact(8).take(used) {
            let e = u64::from_be_bytes(raw.try_into().unwrap_or_default());
            if let Ok(Cluster::Data(c) | Cluster::Compressed { host: c, .. }) = decode_l2(h, e) {
                if c < host + cs {
                    trails = true;
                    // stop reading: the answer is known
                    return Err(ConvError::Backward {
                        host: c,
                        at: host + cs,
                    });
                }
            }
        }
        Ok(())
    });
    match r {
        Err(ConvError::Backward { .. }) if trails => Ok(true),
        Err(e) => Err(e),
        Ok(()) => Ok(false),
    }
}

/// `read_range(start, len, sink)`: deliver bytes `[start, start+len)` of
/// the image to `sink`, in order.
pub type RangeReader<'a> = dyn FnMut(u64, u64, &mut dyn FnMut(&[u8]) -> Result<(), ConvError>) -> Result<(), ConvError>
    + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid header: version, cluster bits, virtual size, L1 at
    /// cluster 3 with enough entries.
    pub fn header_bytes(version: u32, cluster_bits: u32, size: u64) -> Vec<u8> {
        let cs = 1u64 << cluster_bits;
        let mut b = vec![0u8; cs as usize];
        b[..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&cluster_bits.to_be_bytes());
        b[24..32].copy_from_slice(&size.to_be_bytes());
        let l1 = size.div_ceil((cs / 8) * cs).max(1) as u32;
        b[36..40].copy_from_slice(&l1.to_be_bytes());
        b[40..48].copy_from_slice(&(3 * cs).to_be_bytes());
        b[48..56].copy_from_slice(&cs.to_be_bytes());
        if version == 3 {
            b[96..100].copy_from_slice(&4u32.to_be_bytes());
            b[100..104].copy_from_slice(&104u32.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_valid_headers() {
        for v in [2, 3] {
            let h = parse_header(&header_bytes(v, 16, 1 << 30)).unwrap();
            assert_eq!(h.version, v);
            assert_eq!(h.cluster_size(), 65536);
            assert_eq!(h.l1_size, 2);
            assert_eq!(h.l2_coverage(), 512 << 20);
        }
        let h = parse_header(&header_bytes(3, 9, 1 << 20)).unwrap();
        assert_eq!(h.l2_entries(), 64);
        let h = parse_header(&header_bytes(3, 21, 1 << 40)).unwrap();
        assert_eq!(h.cluster_size(), 2 << 20);
    }

    fn refuse(b: &[u8], needle: &str) {
        let e = parse_header(b).unwrap_err();
        assert!(
            e.details.contains(needle),
            "{e:?} does not contain {needle:?}"
        );
    }

    #[test]
    fn refuses_hostile_and_unsupported_headers() {
        let good = header_bytes(3, 16, 1 << 30);
        refuse(&good[..50], "truncated");
        refuse(&good[..80], "truncated");
        let mut b = good.clone();
        b[0] = b'X';
        refuse(&b, "not a qcow2");
        let mut b = good.clone();
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        refuse(&b, "version 1");
        let mut b = good.clone();
        b[4..8].copy_from_slice(&4u32.to_be_bytes());
        refuse(&b, "version 4");
        let mut b = good.clone();
        b[8..16].copy_from_slice(&512u64.to_be_bytes());
        b[16..20].copy_from_slice(&8u32.to_be_bytes());
        b[512..520].copy_from_slice(b"base.img");
        refuse(&b, "backing file (\"base.img\")");
        // a backing file offset pointing anywhere must not panic
        let mut b = good.clone();
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        refuse(&b, "backing file");
        for bits in [0u32, 8, 22, 63, 64, u32::MAX] {
            let mut b = good.clone();
            b[20..24].copy_from_slice(&bits.to_be_bytes());
            refuse(&b, "cluster_bits");
        }
        let mut b = good.clone();
        b[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        refuse(&b, "virtual size");
        let mut b = good.clone();
        b[32..36].copy_from_slice(&1u32.to_be_bytes());
        refuse(&b, "encrypted");
        let mut b = good.clone();
        b[36..40].copy_from_slice(&1u32.to_be_bytes());
        refuse(&b, "needs 2");
        let mut b = header_bytes(3, 9, 1 << 40);
        b[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        refuse(&b, "too big");
        let mut b = good.clone();
        b[40..48].copy_from_slice(&100u64.to_be_bytes());
        refuse(&b, "L1 table offset");
        let mut b = good.clone();
        b[40..48].copy_from_slice(&0u64.to_be_bytes());
        refuse(&b, "L1 table offset");
        let mut b = good.clone();
        b[48..56].copy_from_slice(&7u64.to_be_bytes());
        refuse(&b, "refcount table");
        let mut b = good.clone();
        b[96..100].copy_from_slice(&7u32.to_be_bytes());
        refuse(&b, "refcount_order");
        for (bit, needle) in [
            (1u64 << 1, "corrupt"),
            (1 << 2, "external data file"),
            (1 << 4, "subclusters"),
            (1 << 9, "unknown incompatible"),
            (1 << 3, "unknown compression type 0"),
        ] {
            let mut b = good.clone();
            b[72..80].copy_from_slice(&bit.to_be_bytes());
            refuse(&b, needle);
        }
        let mut b = good.clone();
        b[72..80].copy_from_slice(&(1u64 << 3).to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b[104] = 1;
        refuse(&b, "zstd");
        for len in [0u32, 100, 105, 1 << 20] {
            let mut b = good.clone();
            b[100..104].copy_from_slice(&len.to_be_bytes());
            refuse(&b, "header length");
        }
        // header extensions
        let mut b = good.clone();
        b[104..108].copy_from_slice(&EXT_CRYPTO.to_be_bytes());
        b[108..112].copy_from_slice(&8u32.to_be_bytes());
        refuse(&b, "LUKS");
        let mut b = good.clone();
        b[104..108].copy_from_slice(&EXT_DATA_FILE.to_be_bytes());
        b[108..112].copy_from_slice(&4u32.to_be_bytes());
        refuse(&b, "external data file");
        let mut b = good.clone();
        b[104..108].copy_from_slice(&EXT_FEATURE_TABLE.to_be_bytes());
        b[108..112].copy_from_slice(&u32::MAX.to_be_bytes());
        refuse(&b, "runs past");
        // dirty is accepted
        let mut b = good;
        b[72..80].copy_from_slice(&1u64.to_be_bytes());
        assert!(parse_header(&b).unwrap().dirty);
    }

    #[test]
    fn combined_writes_keep_no_more_buffers_than_their_depth_once_inflating() {
        use std::os::unix::fs::FileExt;
        const MIB: u64 = 1 << 20;
        let dir = crate::util::Scratch::new("comb");
        let p = dir.0.join("disk");
        let f = std::fs::File::create(&p).unwrap();
        f.write_all_at(&[0], 16 * MIB - 1).unwrap();
        let (f, mode) = crate::disk::device::open_for_image(
            &p,
            "/dev/test",
            crate::disk::device::IoMode::Direct,
        )
        .unwrap();
        if mode != crate::disk::device::IoMode::Direct {
            // a temporary directory without O_DIRECT (tmpfs): no write
            // threads to count
            return;
        }
        let mut t = Target::new(
            f,
            "/dev/test",
            "img",
            mode,
            512,
            16 * MIB,
            0,
            16 * MIB,
            true,
        );
        t.prepare().unwrap();
        let mut c = Combiner {
            buf: AlignedBuf::new(COMBINE),
            start: MIB,
            behind: None,
            spare: vec![],
            depth: usize::MAX,
        };
        let data = vec![7u8; COMBINE];
        // three writes in flight: their buffers come back as spares
        for i in 1..6 {
            c.put(&mut t, i * MIB, &data).unwrap();
        }
        c.settle(&mut t).unwrap();
        assert!(c.spare.len() > INFLATING_WRITES, "{}", c.spare.len());
        // what `Converter::inflate` does at the first compressed cluster
        c.depth = INFLATING_WRITES;
        c.behind.as_mut().unwrap().limit(INFLATING_WRITES);
        for i in 6..12 {
            c.put(&mut t, i * MIB, &data).unwrap();
            if i == 6 {
                continue; // into the empty buffer: no write yet
            }
            let out = c.behind.as_ref().unwrap().in_flight();
            assert!(out <= INFLATING_WRITES);
            assert!(
                c.spare.len() + out <= INFLATING_WRITES,
                "{} + {out}",
                c.spare.len()
            );
        }
        c.settle(&mut t).unwrap();
        let mut back = vec![0u8; 10 * MIB as usize];
        let plain = std::fs::File::open(&p).unwrap();
        plain.read_exact_at(&mut back, MIB).unwrap();
        assert!(back.iter().all(|&b| b == 7));
    }

    #[test]
    fn take_run_takes_only_a_chunk_that_is_one_data_run() {
        const MIB: u64 = 1 << 20;
        let h = parse_header(&header_bytes(3, 16, 8 * MIB)).unwrap();
        let cs = h.cluster_size();
        let chunk = vec![0u8; MIB as usize];
        // the clusters of host [c0, c0 + 1 MiB) mapped to guest `g`, the
        // `at`-th one to `moved` instead when given
        let conv_with = |c0: u64, g: u64, moved: Option<(u64, u64)>| {
            let mut c = Converter::new(h.clone());
            c.heap.clear();
            for i in 0..MIB / cs {
                let guest = match moved {
                    Some((at, to)) if at == i => to,
                    _ => g + i * cs,
                };
                c.heap
                    .push(Reverse(Event::new(c0 + i * cs, Kind::Data { guest }, 16)));
            }
            c
        };
        // one run: taken whole, the clusters done
        let mut c = conv_with(2 * MIB, 5 * MIB, None);
        assert_eq!(c.take_run(2 * MIB, &chunk).ok(), Some(Some(5 * MIB)));
        assert_eq!((c.waiting(), c.data_bytes, c.pos), (0, MIB, 3 * MIB));
        // a jump in guest order, a cluster mapped twice, a table in the
        // chunk, a run past the virtual size, a chunk not starting at the
        // run: fed instead, with every event left in place
        let mut cases = vec![
            conv_with(2 * MIB, 5 * MIB, Some((7, 0))),
            conv_with(2 * MIB, 7 * MIB + cs, None),
            conv_with(2 * MIB + cs, 5 * MIB, None),
        ];
        let mut twice = conv_with(2 * MIB, 5 * MIB, None);
        twice.heap.push(Reverse(Event::new(
            2 * MIB + 3 * cs,
            Kind::Data { guest: 0 },
            16,
        )));
        cases.push(twice);
        let mut table = conv_with(2 * MIB, 5 * MIB, None);
        table.heap.push(Reverse(Event::new(
            3 * MIB - 8,
            Kind::L2 { l1_index: 0 },
            16,
        )));
        cases.push(table);
        for (i, mut c) in cases.into_iter().enumerate() {
            let before = c.waiting();
            assert_eq!(c.take_run(2 * MIB, &chunk).ok(), Some(None), "case {i}");
            assert_eq!((c.waiting(), c.data_bytes), (before, 0), "case {i}");
        }
    }

    #[test]
    fn events_pack_into_16_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<Event>>(), 16);
        for bits in [9u32, 16, 21] {
            let cs = 1u64 << bits;
            let max_guest = ((1u64 << 56) / cs - 1) * cs;
            let max_sectors = 1u64 << (bits - 8);
            for kind in [
                Kind::L1 { index: 4 << 20 },
                Kind::L2 { l1_index: 12345 },
                Kind::Data { guest: max_guest },
                Kind::Compressed {
                    guest: 7 * cs,
                    len: 512 - 0x45,
                },
                Kind::Compressed {
                    guest: max_guest,
                    len: max_sectors * 512 - 0x45,
                },
            ] {
                let ev = Event::new(0xabc_de45, kind, bits);
                assert_eq!(ev.kind(bits), kind);
            }
        }
    }

    #[test]
    fn decodes_l2_entries() {
        let h3 = parse_header(&header_bytes(3, 16, 1 << 30)).unwrap();
        let h2 = parse_header(&header_bytes(2, 16, 1 << 30)).unwrap();
        assert_eq!(decode_l2(&h3, 0), Ok(Cluster::Unallocated));
        assert_eq!(decode_l2(&h3, 1), Ok(Cluster::Zero));
        assert_eq!(decode_l2(&h3, (1 << 63) | 0x50000 | 1), Ok(Cluster::Zero));
        assert!(decode_l2(&h2, 1).is_err());
        assert_eq!(
            decode_l2(&h3, (1 << 63) | 0x50000),
            Ok(Cluster::Data(0x50000))
        );
        assert!(decode_l2(&h3, 0x50200)
            .unwrap_err()
            .details
            .contains("aligned"));
        assert!(decode_l2(&h3, 0x50000 | 2)
            .unwrap_err()
            .details
            .contains("reserved"));
        assert!(decode_l2(&h3, (1 << 57) | 0x50000)
            .unwrap_err()
            .details
            .contains("reserved"));
        // compressed: 64 KiB clusters: x = 62 - 8 = 54 offset bits
        let e = (1u64 << 62) | (3u64 << 54) | 0x12345;
        assert_eq!(
            decode_l2(&h3, e),
            Ok(Cluster::Compressed {
                host: 0x12345,
                len: 4 * 512 - 0x145
            })
        );
        // every value decodes without panicking
        for bits in [9, 16, 21] {
            let h = parse_header(&header_bytes(3, bits, 1 << 30)).unwrap();
            for _ in 0..10_000 {
                let _ = decode_l2(&h, fastrand::u64(..));
            }
        }
    }
}
