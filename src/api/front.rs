//! The API's network front: every client connection, plain or TLS, is
//! accepted here, and only whole, canonical requests are relayed to the
//! tiny_http loop over a private Unix socket, so HTTP and HTTPS share one
//! code path and tiny_http never faces the network.
//!
//! The rule that keeps one client from freezing the API: **the API thread
//! never waits on a client's socket.** For each request the front
//! * reads the whole head and the whole body itself (a chunked body it
//!   decodes), within [`super::guard`]'s checks and the body cap, and
//!   answers what it refuses itself (400, 401, 408, 413, 417, 431, 501,
//!   503, 505);
//! * then hands tiny_http the canonical HTTP/1.1 head and the body with
//!   its exact Content-Length, one request at a time per client, over one
//!   of a few pooled Unix connections, and reads the answer in full as
//!   tiny_http writes it (no write of the API thread waits on a client
//!   that does not read);
//! * then writes the answer to the client, under its own deadline.
//!
//! Every connection has a slot, and every slot a deadline that matches what
//! it is doing ([`Limits`]): the TLS handshake, waiting for a request,
//! reading a head, reading a body, waiting for the API (for a `wait=true`
//! request up to the API's wait limit), writing the answer, a lingering
//! close. There are [`MAX_SLOTS`] slots, at most [`MAX_PER_GROUP`] per
//! address (per /64 for IPv6). When they are all taken, a new connection
//! takes the slot of one that is not in the middle of an API call or an
//! authenticated upload, preferring the group that holds the most slots,
//! then idle connections, then the oldest ([`pick_victim`]): a flood of
//! connections from a few addresses cannot lock others out.
//!
//! Bodies over [`SMALL_BODY`] are read only for a request carrying the
//! valid agent token (else 401 at once, as IPA answers on the command
//! routes), and one at a time ([`LARGE_BUSY`]), so unauthenticated clients
//! can make the front hold at most [`MAX_SLOTS`] × ([`guard::MAX_HEAD`] +
//! [`SMALL_BODY`]). A body is kept in [`SPOOL_CHUNK`] pieces (of
//! [`SPOOL_BIG`] past its first MiB) and each is freed once tiny_http has
//! it, while the API parses it ([`super::body`]) into strings held once, so
//! a configdrive is not held twice. An answer is read whole, its body
//! handed on without a copy.
//!
//! After `system.lockdown` (or a finished rescue) the listener is closed,
//! as IPA stops its server: new connections are refused, open ones are
//! closed once their answer is out.
//!
//! tiny_http's own `ssl-rustls` feature is deliberately not used: it pins
//! rustls 0.20.9, which carries RUSTSEC-2024-0336 (a peer can make a
//! blocking server loop forever in `complete_io`), and a second `ring`.

use super::guard::{self, Chunked, Framing, Head, HeadScanner, Refusal, ResponseHead};
use crate::agent::Agent;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections served at once (one thread each).
pub const MAX_SLOTS: usize = 64;
/// Connections from one address (IPv4) or /64 prefix (IPv6) at once.
pub const MAX_PER_GROUP: usize = 16;
/// Bodies up to this size are read for anyone; bigger ones only for a
/// request with the valid agent token. Ironic's command bodies are a few
/// KiB; only an inline configdrive is bigger.
pub const SMALL_BODY: u64 = 64 * 1024;
/// Request bodies are held in pieces of this size, and past the first
/// MiB in pieces of [`SPOOL_BIG`] (each its own mapping, which the
/// allocator gives back the moment it is freed, where 64 KiB pieces would
/// cost about 6% more in partly used pages).
const SPOOL_CHUNK: usize = 64 * 1024;
const SPOOL_BIG: usize = 1 << 20;
/// Longest answer the front takes from the API (the agent's own output:
/// a command list with log bundles in it is the biggest).
const MAX_ANSWER: usize = 256 * 1024 * 1024;
/// Closing a socket with unread data makes the kernel send a reset (RFC
/// 1122 4.2.2.13), which can destroy an answer the client has not read
/// yet: the 413 of a request refused before its body arrived. So a closing
/// connection keeps reading, and discarding, what the client still sends,
/// at most this much (Apache's and nginx's "lingering close").
const LINGER_BYTES: usize = 1 << 20;

/// Every deadline of the front. The defaults are the documented ones;
/// `IRONIC_AGENT_API_DEADLINE=N` sets every deadline that a client's pace
/// bounds (not the API's answer, nor a `wait=true` one) to N seconds, for
/// tests that must not wait the real times.
#[derive(Clone)]
pub struct Limits {
    /// The whole TLS handshake.
    pub handshake: Duration,
    /// From accepting a connection (or its handshake) to the first byte of
    /// its first request.
    pub first: Duration,
    /// A keep-alive connection between requests (cheroot's 10 s, which IPA
    /// serves with).
    pub idle: Duration,
    /// From a head's first byte to its end; a body up to [`SMALL_BODY`]
    /// gets the same again.
    pub head: Duration,
    /// A body over [`SMALL_BODY`] (authenticated): in all, and without
    /// progress.
    pub body: Duration,
    pub stall: Duration,
    /// The API's answer to a request without `wait=true` (a synchronous
    /// command runs before it answers).
    pub answer: Duration,
    /// The API's answer to a `wait=true` request: the API's own wait limit
    /// and a margin. (IPA waits without limit; Ironic's client waits
    /// `[agent]command_timeout`, 60 s by default, and operators raise it.)
    pub wait: Duration,
    /// Writing an answer to the client, in all (each write also stalls at
    /// most `stall`).
    pub write: Duration,
    /// A lingering close.
    pub linger: Duration,
    /// After the API stopped: how long an exchange already in flight may
    /// still take.
    pub stop_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let s = Duration::from_secs;
        Limits {
            handshake: s(10),
            first: s(10),
            idle: s(10),
            head: s(10),
            body: s(120),
            stall: s(10),
            answer: s(300),
            wait: super::WAIT_LIMIT + s(10),
            write: s(60),
            linger: s(2),
            stop_grace: s(2),
        }
    }
}

impl Limits {
    /// The defaults with `IRONIC_AGENT_API_DEADLINE` applied.
    pub fn from_env() -> Limits {
        let l = Limits::default();
        let Some(secs) = std::env::var("IRONIC_AGENT_API_DEADLINE")
            .ok()
            .and_then(|v| v.parse().ok())
        else {
            return l;
        };
        crate::util::log_at!(
            Warn,
            "API front deadlines set to {secs} s by IRONIC_AGENT_API_DEADLINE"
        );
        let d = Duration::from_secs(secs);
        Limits {
            handshake: d,
            first: d,
            idle: d,
            head: d,
            body: d,
            stall: d,
            write: d,
            linger: d,
            ..l
        }
    }
}

/// What a connection is doing, for eviction and deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    // evictable, in the order victims are preferred
    Idle = 0,
    /// A lingering close after the answer.
    Closing,
    Waiting,
    Handshake,
    Head,
    Body,
    Answer,
    // not evictable
    /// Reading a body for a request with the valid token.
    TrustedBody,
    /// The request is with the API.
    Api,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        use Phase::*;
        [
            Idle,
            Closing,
            Waiting,
            Handshake,
            Head,
            Body,
            Answer,
            TrustedBody,
            Api,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Api)
    }

    pub fn evictable(self) -> bool {
        self < Phase::TrustedBody
    }
}

/// The address group limits count by: an IPv4 address, or an IPv6 /64
/// (one host usually has a whole /64; IPv4-mapped addresses are IPv4).
pub fn group_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One slot as the admission policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct SlotView {
    pub group: IpAddr,
    pub phase: Phase,
    /// When it entered its phase (any monotonic unit; smaller is older).
    pub since: u64,
}

/// Admission: `Ok(None)` take a free slot, `Ok(Some(i))` take slot `i`'s
/// place (close it), `Err(())` refuse the newcomer. Pure, for tests.
///
/// A group at its limit can only replace one of its own connections. When
/// every slot is taken, the victim is an evictable slot of the group
/// holding the most slots, preferring idle connections, then the oldest.
#[allow(clippy::result_unit_err)]
pub fn pick_victim(slots: &[SlotView], group: IpAddr) -> Result<Option<usize>, ()> {
    let count = |g: IpAddr| slots.iter().filter(|s| s.group == g).count();
    let best = |only: Option<IpAddr>| {
        slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase.evictable() && only.is_none_or(|g| s.group == g))
            .min_by_key(|(_, s)| (std::cmp::Reverse(count(s.group)), s.phase, s.since))
            .map(|(i, _)| Some(i))
            .ok_or(())
    };
    if count(group) >= MAX_PER_GROUP {
        return best(Some(group));
    }
    if slots.len() < MAX_SLOTS {
        return Ok(None);
    }
    best(None)
}

struct SlotState {
    phase: AtomicU8,
    since: AtomicU64,
}

impl SlotState {
    fn set(&self, p: Phase) {
        if self.phase.swap(p as u8, Ordering::Relaxed) != p as u8 {
            self.since.store(clock_ms(), Ordering::Relaxed);
        }
    }
}

struct Slot {
    id: u64,
    group: IpAddr,
    /// A second handle on the socket: shutting it down wakes the
    /// connection's thread wherever it waits.
    tcp: TcpStream,
    state: Arc<SlotState>,
}

static SLOTS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Set once the API stopped serving (lockdown, rescue).
static STOPPED: AtomicBool = AtomicBool::new(false);
static STOPPED_AT: AtomicU64 = AtomicU64::new(0);
/// A body over [`SMALL_BODY`] is being read.
static LARGE_BUSY: AtomicBool = AtomicBool::new(false);

fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn slots() -> std::sync::MutexGuard<'static, Vec<Slot>> {
    SLOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Take a slot for a new connection, closing another one if the policy
/// says so; `None`: refused.
fn admit(tcp: &TcpStream, peer: SocketAddr) -> Option<(u64, Arc<SlotState>)> {
    let group = group_of(peer.ip());
    let handle = tcp.try_clone().ok()?;
    let mut v = slots();
    let views: Vec<SlotView> = v
        .iter()
        .map(|s| SlotView {
            group: s.group,
            phase: Phase::from_u8(s.state.phase.load(Ordering::Relaxed)),
            since: s.state.since.load(Ordering::Relaxed),
        })
        .collect();
    match pick_victim(&views, group) {
        Err(()) => {
            drop(v);
            note_pressure(false);
            return None;
        }
        Ok(Some(i)) => {
            let victim = v.swap_remove(i);
            let _ = victim.tcp.shutdown(Shutdown::Both);
            drop(v);
            note_pressure(true);
            v = slots();
        }
        Ok(None) => {}
    }
    let state = Arc::new(SlotState {
        phase: AtomicU8::new(Phase::Handshake as u8),
        since: AtomicU64::new(clock_ms()),
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    v.push(Slot {
        id,
        group,
        tcp: handle,
        state: state.clone(),
    });
    Some((id, state))
}

fn release(id: u64) {
    let mut v = slots();
    if let Some(i) = v.iter().position(|s| s.id == id) {
        v.swap_remove(i);
    }
}

/// True at most once per 10 s per `last`: floods are logged in summary,
/// so they do not flush the log buffer.
fn now_and_then(last: &AtomicU64) -> bool {
    let (now, prev) = (clock_ms() + 10_000, last.load(Ordering::Relaxed));
    now >= prev + 10_000
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Connections closed or refused because the slots were taken.
fn note_pressure(evicted: bool) {
    static EVICTED: AtomicU64 = AtomicU64::new(0);
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    static LAST: AtomicU64 = AtomicU64::new(0);
    if evicted { &EVICTED } else { &REFUSED }.fetch_add(1, Ordering::Relaxed);
    if now_and_then(&LAST) {
        crate::util::log_at!(
            Warn,
            "API connections: all {MAX_SLOTS} slots (or {MAX_PER_GROUP} for one address) taken; \
             {} closed to make room, {} refused",
            EVICTED.swap(0, Ordering::Relaxed),
            REFUSED.swap(0, Ordering::Relaxed)
        );
    }
}

/// A refused request: one warning per 10 s, every one at debug level.
fn note_refusal(peer: SocketAddr, r: &Refusal) {
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    static LAST: AtomicU64 = AtomicU64::new(0);
    if now_and_then(&LAST) {
        crate::util::log_at!(
            Warn,
            "refusing a request from {peer}: {} ({} more refused since the last such line)",
            r.status,
            SUPPRESSED.swap(0, Ordering::Relaxed)
        );
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        crate::util::log_at!(Debug, "refusing a request from {peer}: {}", r.status);
    }
}

fn stopping() -> bool {
    STOPPED.load(Ordering::Relaxed)
}

/// What every connection thread shares.
struct Shared {
    agent: Arc<Agent>,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: PathBuf,
    limits: Limits,
}

/// Start accepting connections on `listener` (TLS when `tls` is given),
/// relaying to the tiny_http loop listening on `backend`, until the agent
/// stops serving.
pub fn start(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: PathBuf,
    agent: Arc<Agent>,
) -> io::Result<()> {
    if let Some(t) = agent.token() {
        crate::logbuf::add_secret(&t);
    }
    let shared = Arc::new(Shared {
        agent,
        tls,
        backend,
        limits: Limits::from_env(),
    });
    std::thread::Builder::new()
        .name("api-accept".into())
        .spawn(move || accept_loop(listener, shared))?;
    Ok(())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        if !shared.agent.is_serving() {
            break;
        }
        match crate::sys::poll([(listener.as_raw_fd(), libc::POLLIN)], 250) {
            Ok([0]) => continue,
            Ok(_) => {}
            Err(e) => {
                crate::util::log_at!(Warn, "waiting for API connections: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let (tcp, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                crate::util::log_at!(Warn, "accepting an API connection: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some((id, state)) = admit(&tcp, peer) else {
            continue;
        };
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                if let Err(e) = serve(tcp, peer, state, &sh) {
                    crate::util::log_at!(Debug, "API connection from {peer}: {e}");
                }
                release(id);
            });
        if let Err(e) = spawned {
            release(id);
            crate::util::log_at!(Error, "spawning an API connection thread: {e}");
        }
    }
    // IPA stops its server: the port refuses connections from now on
    drop(listener);
    STOPPED_AT.store(clock_ms(), Ordering::Relaxed);
    STOPPED.store(true, Ordering::SeqCst);
    crate::util::log_at!(Info, "API listener closed");
    for s in slots().iter() {
        let p = Phase::from_u8(s.state.phase.load(Ordering::Relaxed));
        if p.evictable() && p != Phase::Answer {
            let _ = s.tcp.shutdown(Shutdown::Both);
        }
    }
}

/// The client side of one connection: TCP, and TLS over it unless plain.
struct Client {
    tcp: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    /// The socket's send timeout as last set (one system call saved per
    /// answer).
    sndtimeo: Duration,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Client {
    /// Read what the client sends (decrypted) into `out`, waiting at most
    /// until `deadline`. Ok(0): the client closed its side.
    fn read_some(&mut self, out: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
        loop {
            if let Some(conn) = &mut self.tls {
                let n = take_plaintext(conn, out)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out("reading the request"));
            }
            // slices: notice a stopped API while a client dawdles
            let wait = left.min(Duration::from_millis(500));
            let [ready] = crate::sys::poll([(self.tcp.as_raw_fd(), libc::POLLIN)], ms(wait))?;
            if stopping() {
                return Err(io::Error::other("the API stopped"));
            }
            if ready == 0 {
                continue;
            }
            let Some(conn) = &mut self.tls else {
                let mut buf = [0u8; 16 * 1024];
                match self.tcp.read(&mut buf) {
                    Ok(n) => {
                        out.extend_from_slice(&buf[..n]);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if conn.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            let state = conn.process_new_packets().map_err(|e| {
                // send the alert rustls queued, then give up
                let _ = flush_tls(conn, &mut self.tcp);
                io::Error::other(e)
            })?;
            // a key update or an alert to answer
            flush_tls(conn, &mut self.tcp)?;
            let n = take_plaintext(conn, out)?;
            if n > 0 || state.peer_has_closed() {
                return Ok(n);
            }
        }
    }

    /// Write all of `data`, by `deadline`, each write stalling at most
    /// `stall`.
    fn send(&mut self, data: &[u8], deadline: Instant, stall: Duration) -> io::Result<()> {
        let mut off = 0;
        loop {
            if let Some(conn) = &mut self.tls {
                if off < data.len() {
                    off += conn.writer().write(&data[off..])?;
                }
                if !conn.wants_write() && off == data.len() {
                    return Ok(());
                }
            } else if off == data.len() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out("writing the answer"));
            }
            if left.min(stall) != self.sndtimeo {
                self.sndtimeo = left.min(stall);
                self.tcp.set_write_timeout(Some(self.sndtimeo))?;
            }
            match &mut self.tls {
                Some(conn) => flush_tls(conn, &mut self.tcp)?,
                None => match self.tcp.write(&data[off..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => off += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// Say goodbye (TLS close_notify, FIN), then linger: drain what the
    /// client is still sending until it closes too or `linger` passes.
    fn close(&mut self, linger: Duration) {
        if let Some(conn) = &mut self.tls {
            conn.send_close_notify();
            let _ = self.tcp.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = flush_tls(conn, &mut self.tcp);
        }
        if self.tcp.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + linger;
        let (mut buf, mut drained) = ([0u8; 4096], 0);
        while drained < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.tcp.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.tcp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

fn flush_tls(conn: &mut rustls::ServerConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

/// Every decrypted byte rustls holds; how many.
fn take_plaintext(conn: &mut rustls::ServerConnection, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            // a TCP close without close_notify: what was received stands
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
            Err(e) => return Err(e),
        }
    }
}

/// The TLS handshake, one record at a time, each read bounded by what is
/// left of the deadline. (rustls' `complete_io` keeps reading inside one
/// call until the handshake completes, so a deadline checked between calls
/// does not bound a peer that drips a record one byte at a time.)
fn handshake(
    conn: &mut rustls::ServerConnection,
    tcp: &mut TcpStream,
    limit: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    tcp.set_write_timeout(Some(limit))?;
    while conn.is_handshaking() {
        flush_tls(conn, tcp)?;
        if !conn.wants_read() {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("TLS handshake"));
        }
        tcp.set_read_timeout(Some(left))?;
        match conn.read_tls(tcp) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(timed_out("TLS handshake"))
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = conn.process_new_packets() {
            let _ = flush_tls(conn, tcp);
            return Err(io::Error::other(e));
        }
    }
    flush_tls(conn, tcp)?;
    tcp.set_read_timeout(None)
}

/// A request body held in pieces, freed piece by piece as tiny_http takes
/// them.
#[derive(Default)]
struct Spool {
    chunks: Vec<Vec<u8>>,
    /// Pieces already sent (freed), and bytes of the next one sent.
    done: usize,
    sent: usize,
    len: u64,
}

impl Spool {
    fn push(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let held = self.len - data.len() as u64;
            let size = |c: &Vec<u8>| {
                if c.capacity() >= SPOOL_BIG {
                    SPOOL_BIG
                } else {
                    SPOOL_CHUNK
                }
            };
            match self.chunks.last_mut() {
                Some(c) if c.len() < size(c) => {
                    let n = (size(c) - c.len()).min(data.len());
                    c.extend_from_slice(&data[..n]);
                    data = &data[n..];
                }
                _ if held >= SPOOL_BIG as u64 => self.chunks.push(Vec::with_capacity(SPOOL_BIG)),
                _ => self
                    .chunks
                    .push(Vec::with_capacity(SPOOL_CHUNK.min(data.len()))),
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.done == self.chunks.len()
    }

    /// Write what `w` takes without blocking.
    fn write_to(&mut self, w: &mut impl Write) -> io::Result<()> {
        while let Some(c) = self.chunks.get_mut(self.done) {
            match w.write(&c[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    if self.sent == c.len() {
                        *c = Vec::new();
                        self.done += 1;
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads one answer from tiny_http as it arrives: a head, then the body
/// its Content-Length announces.
#[derive(Default)]
struct AnswerReader {
    buf: Vec<u8>,
    to_head: bool,
    /// The parsed head and where it ends in `buf`.
    head: Option<(usize, ResponseHead)>,
}

impl AnswerReader {
    /// Take `data`; true once the answer is complete.
    fn push(&mut self, data: &[u8]) -> io::Result<bool> {
        if self.buf.len() + data.len() > MAX_ANSWER {
            return Err(io::Error::other("the API's answer is too large"));
        }
        self.buf.extend_from_slice(data);
        loop {
            if let Some((end, head)) = &self.head {
                return Ok((self.buf.len() - end) as u64 >= head.length);
            }
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(false);
            };
            let head = guard::parse_response_head(&self.buf[..end + 4], self.to_head)?;
            if (100..200).contains(&head.status) {
                // an interim answer: the front already said 100 Continue
                self.buf.drain(..end + 4);
                continue;
            }
            self.head = Some((end + 4, head));
        }
    }

    /// The answer for the client: (status, head without its final empty
    /// line, body).
    fn finish(mut self) -> (u16, Vec<u8>, Vec<u8>) {
        let (end, head) = self.head.take().unwrap_or_default();
        // the body moved to the front of the buffer, not copied out of it
        // (an answer can be tens of MiB)
        let mut body = self.buf;
        body.drain(..end);
        body.truncate(head.length as usize);
        (head.status, head.head, body)
    }
}

/// One client connection.
struct Conn<'a> {
    client: Client,
    peer: SocketAddr,
    state: Arc<SlotState>,
    shared: &'a Shared,
    /// Bytes from the client not consumed yet (a pipelined next request).
    input: Vec<u8>,
}

/// How a request ends the exchange.
enum Next {
    KeepAlive,
    Close,
}

fn serve(tcp: TcpStream, peer: SocketAddr, state: Arc<SlotState>, sh: &Shared) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut client = Client {
        tcp,
        tls: None,
        sndtimeo: Duration::ZERO,
    };
    if let Some(cfg) = &sh.tls {
        let mut conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
        handshake(&mut conn, &mut client.tcp, sh.limits.handshake)?;
        // the handshake set it
        client.sndtimeo = sh.limits.handshake;
        client.tls = Some(Box::new(conn));
    }
    let mut c = Conn {
        client,
        peer,
        state,
        shared: sh,
        input: Vec::new(),
    };
    let mut first = true;
    loop {
        match c.one_request(first) {
            Ok(Next::KeepAlive) => first = false,
            Ok(Next::Close) => {
                c.state.set(Phase::Closing);
                c.client.close(sh.limits.linger);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

impl Conn<'_> {
    fn scheme(&self) -> &'static str {
        if self.client.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// A request for the log: method, target (redacted), client, scheme.
    fn describe(&self, head: &Head) -> String {
        format!(
            "{} {} from {} over {}",
            head.method,
            crate::logbuf::redact_url(&head.target),
            self.peer,
            self.scheme()
        )
    }

    /// Answer a request the front refuses, then close.
    fn refuse(&mut self, r: Refusal) -> io::Result<Next> {
        note_refusal(self.peer, &r);
        self.state.set(Phase::Closing);
        let l = &self.shared.limits;
        self.client
            .send(&r.response(), Instant::now() + l.stall, l.stall)?;
        Ok(Next::Close)
    }

    /// Serve one request: read it, pass it to the API, write the answer.
    fn one_request(&mut self, first: bool) -> io::Result<Next> {
        let l = self.shared.limits.clone();
        // the head
        let mut scanner = HeadScanner::new();
        let wait_until = Instant::now() + if first { l.first } else { l.idle };
        let mut head_until: Option<Instant> = None;
        let (start, end) = loop {
            match scanner.scan(&self.input) {
                Err(r) => return self.refuse(r),
                Ok(Some(span)) => break span,
                Ok(None) => {}
            }
            let deadline = if self.input.is_empty() {
                self.state
                    .set(if first { Phase::Waiting } else { Phase::Idle });
                wait_until
            } else {
                self.state.set(Phase::Head);
                *head_until.get_or_insert_with(|| Instant::now() + l.head)
            };
            match self.client.read_some(&mut self.input, deadline) {
                Ok(0) => return Ok(Next::Close),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && self.input.is_empty() => {
                    crate::util::log_at!(
                        Debug,
                        "closing an idle API connection from {}",
                        self.peer
                    );
                    return Ok(Next::Close);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return self.refuse(Refusal::new(
                        "408 Request Timeout",
                        "the request head did not arrive in time",
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        let head = match guard::parse_head(&self.input[start..end]) {
            Ok(h) => h,
            Err(r) => return self.refuse(r),
        };
        self.input.drain(..end);
        // the query is parsed (as the API parses it) only when it matters
        let target = || super::Target::parse(&head.target);

        // what body may come, and from whom
        let shared = self.shared;
        let max_body = shared.agent.config.max_request_body;
        let trusted = || shared.agent.check_token(target().get("agent_token"));
        let (cap, large) = match head.framing {
            Framing::None => (0, false),
            Framing::Length(n) if n > max_body => {
                return self.refuse(Refusal::new(
                    "413 Request Entity Too Large",
                    "The data value transmitted exceeds the capacity limit.",
                ))
            }
            Framing::Length(n) if n <= SMALL_BODY => (n, false),
            Framing::Chunked if !trusted() => (SMALL_BODY.min(max_body), false),
            Framing::Length(_) if !trusted() => {
                return self.refuse(Refusal::new("401 Unauthorized", "Token invalid."))
            }
            Framing::Length(n) => (n, true),
            Framing::Chunked => (max_body, true),
        };
        let _large = if large {
            match LargeBody::take() {
                Some(g) => Some(g),
                None => {
                    return self.refuse(Refusal::new(
                        "503 Service Unavailable",
                        "another large request is being received; try again",
                    ))
                }
            }
        } else {
            None
        };
        if head.expect_continue {
            let until = Instant::now() + l.stall;
            self.client
                .send(b"HTTP/1.1 100 Continue\r\n\r\n", until, l.stall)?;
        }
        let body = match self.read_body(&head, cap, max_body, large) {
            Ok(b) => b,
            Err(Ok(r)) => return self.refuse(r),
            Err(Err(e)) => return Err(e),
        };
        drop(_large);

        self.state.set(Phase::Api);
        let t0 = Instant::now();
        let canonical = head.canonical(body.len);
        let wait = head.target.contains("wait") && target().wait();
        let (status, mut out, body) = match self.exchange(canonical, body, head.is_head(), wait) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                crate::util::log_at!(Debug, "{}: {e}", self.describe(&head));
                return Ok(Next::Close);
            }
            Err(e) => {
                crate::util::log_at!(
                    Warn,
                    "{}: no answer from the API: {e}",
                    self.describe(&head)
                );
                let r = if e.kind() == io::ErrorKind::TimedOut {
                    Refusal::new("504 Gateway Timeout", "the agent did not answer in time")
                } else {
                    Refusal::new("500 Internal Server Error", "the agent did not answer")
                };
                return self.refuse(r);
            }
        };
        if log::log_enabled!(log::Level::Debug) {
            crate::util::log_at!(
                Debug,
                "{}: {status} in {:.1?}",
                self.describe(&head),
                t0.elapsed()
            );
        }

        // the answer
        self.state.set(Phase::Answer);
        let keep = head.keep_alive && !stopping();
        if !head.is_head() {
            out.extend_from_slice(format!("\r\nContent-Length: {}", body.len()).as_bytes());
        }
        if !keep {
            out.extend_from_slice(b"\r\nConnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        let until = Instant::now() + l.write;
        if body.len() <= 64 * 1024 {
            // one write for a small answer
            out.extend_from_slice(&body);
        } else {
            self.client.send(&out, until, l.stall)?;
            out = body;
        }
        self.client.send(&out, until, l.stall)?;
        Ok(if keep { Next::KeepAlive } else { Next::Close })
    }

    /// Read the body `head` announces (at most `cap` bytes; chunked is
    /// decoded) by its deadline. `Err(Ok(refusal))`: answer and close.
    fn read_body(
        &mut self,
        head: &Head,
        cap: u64,
        max_body: u64,
        trusted: bool,
    ) -> Result<Spool, Result<Refusal, io::Error>> {
        let l = &self.shared.limits;
        let mut spool = Spool::default();
        let (mut left, mut chunked) = match head.framing {
            Framing::Length(n) => (n, None),
            Framing::Chunked => (u64::MAX, Some(Chunked::new())),
            _ => return Ok(spool),
        };
        self.state.set(if trusted {
            Phase::TrustedBody
        } else {
            Phase::Body
        });
        let start = Instant::now();
        let until = start + if trusted { l.body } else { l.head };
        loop {
            // use what is buffered
            let used = match &mut chunked {
                None => {
                    let n = left.min(self.input.len() as u64) as usize;
                    spool.push(&self.input[..n]);
                    left -= n as u64;
                    n
                }
                Some(dec) => {
                    let used = dec
                        .feed(&self.input, cap, &mut |d| spool.push(d))
                        .map_err(|r| {
                            if r.status.starts_with("413") && dec.total <= max_body {
                                // over the unauthenticated cap only
                                Refusal::new("401 Unauthorized", "Token invalid.")
                            } else {
                                r
                            }
                        })
                        .map_err(Ok)?;
                    if dec.done() {
                        left = 0;
                    }
                    used
                }
            };
            self.input.drain(..used);
            if left == 0 {
                return Ok(spool);
            }
            let deadline = until.min(Instant::now() + l.stall);
            match self.client.read_some(&mut self.input, deadline) {
                Ok(0) => {
                    return Err(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed mid-body",
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Ok(Refusal::new(
                        "408 Request Timeout",
                        "the request body did not arrive in time",
                    )))
                }
                Err(e) => return Err(Err(e)),
            }
        }
    }

    /// Hand one request to tiny_http and read its whole answer, writing and
    /// reading at once (tiny_http may answer before it has read the body),
    /// by the answer's deadline (`wait`: a `wait=true` request's). Gives up
    /// early when the API stopped, or when a `wait=true` client hangs up
    /// (Ironic gave up; the waiter's slot is free again).
    fn exchange(
        &mut self,
        head: Vec<u8>,
        mut body: Spool,
        to_head: bool,
        wait: bool,
    ) -> io::Result<(u16, Vec<u8>, Vec<u8>)> {
        let l = &self.shared.limits;
        let deadline = Instant::now() + if wait { l.wait } else { l.answer };
        let mut api = api_connection(&self.shared.backend)?;
        let mut out = Spool::default();
        out.chunks.push(head);
        out.chunks.append(&mut body.chunks);
        let mut reader = AnswerReader {
            buf: Vec::with_capacity(4096),
            to_head,
            ..AnswerReader::default()
        };
        let mut buf = [0u8; 16 * 1024];
        // a client that closes its side right after its request (HTTP/1.0
        // style) still gets a quick answer; only a waiter is watched
        let client_fd = if wait {
            self.client.tcp.as_raw_fd()
        } else {
            -1
        };
        loop {
            if !out.is_empty() {
                if let Err(e) = out.write_to(&mut api) {
                    // tiny_http answered and closed without the body: the
                    // answer is still to be read
                    crate::util::log_at!(Debug, "writing a request to the API: {e}");
                    out = Spool::default();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out("waiting for the API"));
            }
            if stopping()
                && clock_ms().saturating_sub(STOPPED_AT.load(Ordering::Relaxed))
                    > l.stop_grace.as_millis() as u64
            {
                return Err(io::Error::other("the API stopped"));
            }
            let events = libc::POLLIN | if out.is_empty() { 0 } else { libc::POLLOUT };
            let [from_api, from_client] = crate::sys::poll(
                [(api.as_raw_fd(), events), (client_fd, libc::POLLRDHUP)],
                ms(left.min(Duration::from_millis(500))),
            )?;
            if from_client != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the client hung up before the answer came",
                ));
            }
            if from_api & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
                continue;
            }
            let (n, eof) = match api.read(&mut buf) {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if reader.push(&buf[..n])? {
                // a request whose body tiny_http never read leaves the
                // connection out of step: not used again
                if !eof && out.is_empty() {
                    api_release(api);
                }
                return Ok(reader.finish());
            }
            if eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the API closed before answering",
                ));
            }
        }
    }
}

/// Idle connections to tiny_http, shared by every client connection.
/// tiny_http runs a thread per connection of its own, so handing a few
/// round keeps its threads to the requests in flight, not the clients
/// connected, and lets the idle ones expire after a burst.
static API_POOL: Mutex<Vec<UnixStream>> = Mutex::new(Vec::new());
/// tiny_http keeps 4 threads whatever happens: as many connections.
const API_POOL_MAX: usize = 4;

/// A connection to tiny_http: an idle one, else a new one.
fn api_connection(backend: &std::path::Path) -> io::Result<UnixStream> {
    // (tiny_http closes a connection only after an error answer of its
    // own, which a canonical request does not get; a connection is handed
    // back only after an answer read whole)
    if let Some(s) = API_POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return Ok(s);
    }
    let s = UnixStream::connect(backend)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Hand back a connection whose last answer was read whole.
fn api_release(s: UnixStream) {
    let mut pool = API_POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < API_POOL_MAX {
        pool.push(s);
    }
}

/// The one large body being read ([`LARGE_BUSY`]), released on drop.
struct LargeBody;

impl LargeBody {
    fn take() -> Option<LargeBody> {
        (!LARGE_BUSY.swap(true, Ordering::SeqCst)).then_some(LargeBody)
    }
}

impl Drop for LargeBody {
    fn drop(&mut self) {
        LARGE_BUSY.store(false, Ordering::SeqCst);
    }
}

/// A private directory for the API's Unix socket (mode 0700); the run
/// directories that agents which are gone left behind are removed first
/// ([`sweep_run_dirs`]).
pub fn private_socket_path() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let tmp = std::env::temp_dir();
    let dir = tmp.join(format!(
        "ironic-agent-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    sweep_run_dirs(&tmp, &dir);
    Ok(dir.join("api.sock"))
}

/// What an agent puts in its run directory: the API socket, the TLS
/// certificate and, standalone, the generated token (a secret).
const RUN_FILES: [&str; 3] = ["api.sock", "agent.crt", "agent-token"];

/// The pid in a run directory's name, `ironic-agent-<pid>-<8 hex digits>`.
fn run_dir_pid(name: &str) -> Option<u32> {
    let (pid, tag) = name.strip_prefix("ironic-agent-")?.split_once('-')?;
    let hex = tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then(|| pid.parse().ok()).flatten()
}

/// Remove the run directories in `tmp` whose agent no longer runs: an
/// agent that is killed (SIGKILL, a test's `Child::kill`, a bench's
/// `kill`) cannot remove its own, and on a host, as opposed to the
/// ramdisk's tmpfs, they piled up (320 on the test machine, 2026-12-08),
/// standalone ones with their token. Only directories of the same owner
/// as `ours`, whose pid has no /proc entry and whose socket does not
/// answer, holding nothing but [`RUN_FILES`]; without /proc nothing is
/// removed.
fn sweep_run_dirs(tmp: &std::path::Path, ours: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(ours).map(|m| m.uid()) else {
        return;
    };
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(run_dir_pid) else {
            continue;
        };
        let dir = e.path();
        let owned = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !owned || dir == ours || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // an agent in another pid namespace sharing this directory still
        // answers on its socket
        if UnixStream::connect(dir.join("api.sock")).is_ok() {
            continue;
        }
        let Ok(inside) = std::fs::read_dir(&dir) else {
            continue;
        };
        let names: Vec<_> = inside.flatten().map(|f| f.file_name()).collect();
        if names.iter().all(|n| RUN_FILES.iter().any(|k| n == *k)) {
            for n in names {
                let _ = std::fs::remove_file(dir.join(n));
            }
            if std::fs::remove_dir(&dir).is_ok() {
                crate::util::log_at!(
                    Debug,
                    "removed {}, left by an agent that is gone",
                    dir.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_of_agents_that_are_gone_are_swept() {
        assert_eq!(run_dir_pid("ironic-agent-123-0a1b2c3d"), Some(123));
        for other in [
            "ironic-agent-tests",
            "ironic-agent-writer-123-held",
            "ironic-agent-123-0a1b2c3",
            "ironic-agent--0a1b2c3d",
            "ironic-agent-12x-0a1b2c3d",
            "ironic-agent-123-0a1b2c3g",
        ] {
            assert_eq!(run_dir_pid(other), None, "{other}");
        }
        let scratch = crate::util::Scratch::new("sweep");
        let tmp = &scratch.0;
        let make = |name: &str, files: &[&str]| {
            let d = tmp.join(name);
            std::fs::create_dir(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), b"x").unwrap();
            }
            d
        };
        // above the kernel's largest pid_max (2^22): never a live process
        let gone = make("ironic-agent-4194999-0000abcd", &RUN_FILES);
        let empty = make("ironic-agent-4194998-0000abcd", &[]);
        let foreign = make("ironic-agent-4194997-0000abcd", &["api.sock", "notes.txt"]);
        let live = make(
            &format!("ironic-agent-{}-0000abcd", std::process::id()),
            &RUN_FILES,
        );
        let other = make("ironic-agent-tests", &[]);
        let elsewhere = make("ironic-agent-4194995-0000abcd", &[]);
        let _listening =
            std::os::unix::net::UnixListener::bind(elsewhere.join("api.sock")).unwrap();
        let ours = make("ironic-agent-4194996-ffffffff", &["api.sock"]);
        sweep_run_dirs(tmp, &ours);
        assert!(!gone.exists() && !empty.exists());
        assert!(foreign.join("api.sock").exists() && foreign.join("notes.txt").exists());
        assert!(live.exists() && other.exists() && ours.exists());
        assert!(
            elsewhere.join("api.sock").exists(),
            "a socket that answers is kept"
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn view(g: &str, phase: Phase, since: u64) -> SlotView {
        SlotView {
            group: group_of(ip(g)),
            phase,
            since,
        }
    }

    #[test]
    fn groups() {
        assert_eq!(group_of(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(group_of(ip("2001:db8:1:2:a:b:c:d")), ip("2001:db8:1:2::"));
        assert_eq!(
            group_of(ip("2001:db8:1:2:ffff::1")),
            group_of(ip("2001:db8:1:2::7"))
        );
        assert_ne!(group_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(group_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn free_slots_are_taken() {
        assert_eq!(pick_victim(&[], ip("10.0.0.1")), Ok(None));
        let some: Vec<_> = (0..10).map(|i| view("10.0.0.2", Phase::Api, i)).collect();
        assert_eq!(pick_victim(&some, ip("10.0.0.1")), Ok(None));
    }

    #[test]
    fn a_full_group_replaces_its_own_idle_connection_or_is_refused() {
        let mut v: Vec<_> = (0..MAX_PER_GROUP as u64)
            .map(|i| view("2001:db8::1", Phase::Api, i))
            .collect();
        // another host in the same /64
        assert_eq!(pick_victim(&v, group_of(ip("2001:db8::2"))), Err(()));
        // another /64 is another group
        assert_eq!(pick_victim(&v, group_of(ip("2001:db8:0:1::2"))), Ok(None));
        v[3].phase = Phase::Head;
        v[5].phase = Phase::Idle;
        v[5].since = 100;
        assert_eq!(pick_victim(&v, group_of(ip("2001:db8::2"))), Ok(Some(5)));
    }

    #[test]
    fn when_full_the_biggest_group_yields_its_idlest_oldest_slot() {
        let mut v = vec![];
        for a in 2..=9 {
            for i in 0..8 {
                let p = if i % 2 == 0 { Phase::Head } else { Phase::Api };
                v.push(view(&format!("127.0.0.{a}"), p, 1000 - i));
            }
        }
        assert_eq!(v.len(), MAX_SLOTS);
        // equal groups: the oldest head-reading slot of any
        let i = pick_victim(&v, ip("127.0.0.1")).unwrap().unwrap();
        assert_eq!(v[i].phase, Phase::Head);
        assert_eq!(v[i].since, 1000 - 6);
        // one group holds more: it yields, idle first
        v[0] = view("127.0.0.9", Phase::Answer, 5);
        v[1] = view("127.0.0.9", Phase::Idle, 999);
        let i = pick_victim(&v, ip("127.0.0.1")).unwrap().unwrap();
        assert_eq!(i, 1);
        // nothing evictable: refused
        for s in &mut v {
            s.phase = if s.since % 2 == 0 {
                Phase::Api
            } else {
                Phase::TrustedBody
            };
        }
        assert_eq!(pick_victim(&v, ip("127.0.0.1")), Err(()));
    }

    #[test]
    fn spool_frees_what_was_sent() {
        let mut s = Spool::default();
        s.push(&vec![1u8; SPOOL_CHUNK + 10]);
        s.push(&[2u8; 5]);
        assert_eq!((s.chunks.len(), s.len), (2, SPOOL_CHUNK as u64 + 15));
        let mut out = vec![];
        s.write_to(&mut out).unwrap();
        assert!(s.is_empty());
        assert_eq!(out.len(), SPOOL_CHUNK + 15);
        // past the first MiB, pieces of a MiB
        let mut s = Spool::default();
        let data: Vec<u8> = (0..(3 << 20) + 100).map(|i| i as u8).collect();
        for piece in data.chunks(16 * 1024) {
            s.push(piece);
        }
        let sizes: Vec<usize> = s.chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes.len(), SPOOL_BIG / SPOOL_CHUNK + 3, "{sizes:?}");
        assert!(sizes[..16].iter().all(|&n| n == SPOOL_CHUNK));
        assert_eq!(sizes[16..], [SPOOL_BIG, SPOOL_BIG, 100]);
        let mut out = vec![];
        s.write_to(&mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn answers_are_read_whole() {
        let reader = |to_head| AnswerReader {
            to_head,
            ..AnswerReader::default()
        };
        let mut r = reader(false);
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\n\r\nhello";
        for (i, b) in resp.iter().enumerate() {
            assert_eq!(r.push(&[*b]).unwrap(), i == resp.len() - 1, "at {i}");
        }
        let (status, head, body) = r.finish();
        assert_eq!(
            (status, head.as_slice(), body.as_slice()),
            (200, &b"HTTP/1.1 200 OK\r\nServer: t"[..], &b"hello"[..])
        );
        let mut r = reader(true);
        assert!(r
            .push(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
            .unwrap());
        let (_, head, body) = r.finish();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nContent-Length: 9");
        assert!(body.is_empty());
        assert!(reader(false)
            .push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .is_err());
    }
}
