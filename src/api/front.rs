//! The API's network front: every client connection, plain or TLS, is
//! accepted here and relayed to the tiny_http loop over a private Unix
//! socket, so HTTP and HTTPS share one code path and tiny_http never faces
//! the network directly.
//!
//! What the front adds, because tiny_http 0.12 has none of it:
//! * request filtering ([`super::guard`]): bounded request heads, a
//!   Content-Length within the body cap (else 413 from the front, before
//!   tiny_http would allocate a drain buffer of the client's size);
//! * time limits: the TLS handshake under a wall-clock deadline, a request
//!   that stalls mid-head or mid-body for [`STALL`] or takes longer than
//!   [`REQUEST`] in all is cut (its connection closed, so the single API
//!   thread reading its body sees EOF instead of waiting), an idle
//!   keep-alive connection is closed after [`IDLE`];
//! * at most [`MAX_CONNECTIONS`] connections, one thread each, and at most
//!   [`MAX_PER_PEER`] from one address.
//!
//! tiny_http's own `ssl-rustls` feature is deliberately not used: it pins
//! rustls 0.20.9, which carries RUSTSEC-2024-0336 (a peer can make a
//! blocking server loop forever in `complete_io`), and a second `ring`.

use super::guard::Guard;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 64;
/// Connections from one address at a time: one client (or attacker)
/// cannot take every slot from Ironic's conductor.
pub const MAX_PER_PEER: usize = 16;
const HANDSHAKE: Duration = Duration::from_secs(10);
/// A request that makes no progress this long, mid-head or mid-body, is
/// cut. Ironic sends each request in one go.
pub const STALL: Duration = Duration::from_secs(10);
/// A whole request (head and body) must arrive within this: a client that
/// drips a byte every few seconds makes progress, but must not hold the
/// API thread reading its body for longer. Ample for a 64 MiB configdrive.
pub const REQUEST: Duration = Duration::from_secs(120);
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A closing connection keeps reading, and discarding, what the client
/// still sends for this long (and at most [`LINGER_BYTES`]). Closing a
/// socket with unread data makes the kernel send a reset (RFC 1122
/// 4.2.2.13), which can destroy an answer the client has not read yet:
/// the 411 or 413 of a request refused before its body arrived. Apache's
/// and nginx's "lingering close" do the same.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static PER_PEER: std::sync::Mutex<Vec<(std::net::IpAddr, usize)>> =
    std::sync::Mutex::new(Vec::new());

/// Take a slot for `ip`; false when it already has [`MAX_PER_PEER`].
fn take_peer_slot(ip: std::net::IpAddr) -> bool {
    let mut v = PER_PEER.lock().unwrap_or_else(|e| e.into_inner());
    match v.iter_mut().find(|(a, _)| *a == ip) {
        Some((_, n)) if *n >= MAX_PER_PEER => false,
        Some((_, n)) => {
            *n += 1;
            true
        }
        None => {
            v.push((ip, 1));
            true
        }
    }
}

fn release_peer_slot(ip: std::net::IpAddr) {
    let mut v = PER_PEER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = v.iter().position(|(a, _)| *a == ip) {
        v[i].1 -= 1;
        if v[i].1 == 0 {
            v.swap_remove(i);
        }
    }
}

/// Start accepting connections on `listener` (TLS when `tls` is given),
/// relaying to the tiny_http loop listening on `backend`.
pub fn start(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: PathBuf,
    max_body: u64,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("api-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let tcp = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("accepting an API connection: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let Ok(peer) = tcp.peer_addr() else { continue };
                if !take_peer_slot(peer.ip()) {
                    log::warn!(
                        "refusing an API connection from {}: {MAX_PER_PEER} already open",
                        peer.ip()
                    );
                    continue;
                }
                if ACTIVE.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    release_peer_slot(peer.ip());
                    log::warn!("refusing an API connection: {MAX_CONNECTIONS} already open");
                    continue;
                }
                let (cfg, backend) = (tls.clone(), backend.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("api-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(tcp, cfg, &backend, max_body) {
                                log::debug!("API connection from {peer}: {e}");
                            }
                            ACTIVE.fetch_sub(1, Ordering::SeqCst);
                            release_peer_slot(peer.ip());
                        });
                if let Err(e) = spawned {
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    release_peer_slot(peer.ip());
                    log::error!("spawning an API connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

/// The client side of one connection.
enum Client {
    Plain(TcpStream),
    Tls(Box<rustls::ServerConnection>, TcpStream),
}

impl Client {
    fn tcp(&self) -> &TcpStream {
        match self {
            Client::Plain(t) | Client::Tls(_, t) => t,
        }
    }

    /// Read what the client sent (decrypted) into `out`; false when it
    /// closed the connection.
    fn recv(&mut self, buf: &mut [u8], out: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Client::Plain(tcp) => match tcp.read(buf) {
                Ok(0) => Ok(false),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
                Err(e) => Err(e),
            },
            Client::Tls(conn, tcp) => {
                match conn.read_tls(tcp) {
                    Ok(0) => return Ok(false),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let state = match conn.process_new_packets() {
                    Ok(s) => s,
                    Err(e) => {
                        // send the alert rustls queued, then give up
                        let _ = flush_tls(conn, tcp);
                        return Err(io::Error::other(e));
                    }
                };
                take_plaintext(conn, buf, out)?;
                Ok(!state.peer_has_closed())
            }
        }
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Client::Plain(tcp) => tcp.write_all(data),
            Client::Tls(conn, tcp) => {
                let mut off = 0;
                while off < data.len() {
                    off += conn.writer().write(&data[off..])?;
                    flush_tls(conn, tcp)?;
                }
                Ok(())
            }
        }
    }

    /// Say goodbye (TLS close_notify, FIN), then linger: drain what the
    /// client is still sending until it closes too or [`LINGER`] passes.
    fn close(&mut self) {
        if let Client::Tls(conn, tcp) = self {
            conn.send_close_notify();
            let _ = flush_tls(conn, tcp);
        }
        let mut tcp = self.tcp();
        if tcp.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let (mut buf, mut drained) = ([0u8; 4096], 0);
        while drained < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

fn flush_tls(conn: &mut rustls::ServerConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

/// Every decrypted byte rustls holds.
fn take_plaintext(
    conn: &mut rustls::ServerConnection,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        match conn.reader().read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The TLS handshake, one record at a time, each read bounded by what is
/// left of the deadline. (rustls' `complete_io` keeps reading inside one
/// call until the handshake completes, so a deadline checked between calls
/// does not bound a peer that drips a record one byte at a time.)
fn handshake(conn: &mut rustls::ServerConnection, tcp: &mut TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + HANDSHAKE;
    while conn.is_handshaking() {
        flush_tls(conn, tcp)?;
        if !conn.wants_read() {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
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
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
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

fn serve(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: &PathBuf,
    max_body: u64,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut client = match tls {
        None => Client::Plain(tcp),
        Some(cfg) => {
            let mut tcp = tcp;
            let mut conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
            handshake(&mut conn, &mut tcp)?;
            Client::Tls(Box::new(conn), tcp)
        }
    };
    let mut unix = UnixStream::connect(backend)?;
    unix.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut guard = Guard::new(max_body);
    let (mut got, mut pass) = (Vec::new(), Vec::new());
    let mut started: Option<Instant> = None;
    // The client's first request often arrives in the same read as its
    // Finished message, so rustls may already hold plaintext that poll(2)
    // will never announce: take it before waiting.
    if let Client::Tls(conn, _) = &mut client {
        take_plaintext(conn, &mut buf, &mut got)?;
    }
    loop {
        if !got.is_empty() {
            if let Err(refusal) = guard.feed(&got, &mut pass) {
                log::warn!(
                    "refusing a request from {}: {}",
                    client
                        .tcp()
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    refusal.status
                );
                // Let tiny_http answer what it already has (it sees EOF),
                // then answer the refused request and close.
                unix.write_all(&pass)?;
                let _ = unix.shutdown(Shutdown::Write);
                relay_rest(&mut unix, &mut client, &mut buf, STALL)?;
                client.send(&refusal.response())?;
                client.close();
                return Ok(());
            }
            unix.write_all(&pass)?;
            got.clear();
            pass.clear();
        }
        let wait = match (guard.mid_request(), started) {
            (false, _) => {
                started = None;
                IDLE
            }
            (true, None) => {
                started = Some(Instant::now());
                STALL
            }
            (true, Some(t)) => STALL.min(REQUEST.saturating_sub(t.elapsed())),
        };
        let [from_client, from_api] = crate::sys::poll_readable(
            [client.tcp().as_raw_fd(), unix.as_raw_fd()],
            wait.as_millis() as i32,
        )?;
        if started.is_some_and(|t| t.elapsed() >= REQUEST) {
            log::warn!(
                "closing an API connection whose request took over {} s to arrive",
                REQUEST.as_secs()
            );
            client.close();
            return Ok(());
        }
        if !from_client && !from_api {
            if guard.mid_request() {
                log::warn!(
                    "closing an API connection whose request stalled for {} s",
                    STALL.as_secs()
                );
            } else {
                log::debug!("closing an idle API connection");
            }
            client.close();
            return Ok(());
        }
        if from_client && !client.recv(&mut buf, &mut got)? {
            // the client is done sending: tiny_http answers what it has
            if !got.is_empty() {
                continue;
            }
            let _ = unix.shutdown(Shutdown::Write);
            // a `wait=true` answer may take long (the API caps it at 1 h)
            relay_rest(&mut unix, &mut client, &mut buf, Duration::from_secs(3600))?;
            client.close();
            return Ok(());
        }
        if from_api {
            let n = unix.read(&mut buf)?;
            if n == 0 {
                client.close();
                return Ok(());
            }
            client.send(&buf[..n])?;
            // Answered before its body arrived (a 401 or 413 for a big
            // body): tiny_http would now drain the rest on the API thread
            // at the client's pace. Relay the rest of the answer and close
            // instead. ("100 Continue" is tiny_http asking for the body.)
            if guard.streaming_body() && !buf[..n].starts_with(b"HTTP/1.1 100 ") {
                relay_rest(&mut unix, &mut client, &mut buf, Duration::from_millis(200))?;
                client.close();
                return Ok(());
            }
        }
    }
}

/// Relay what the API still sends until it closes or stays silent for
/// `quiet`.
fn relay_rest(
    unix: &mut UnixStream,
    client: &mut Client,
    buf: &mut [u8],
    quiet: Duration,
) -> io::Result<()> {
    unix.set_read_timeout(Some(quiet))?;
    while let Ok(n) = unix.read(buf) {
        if n == 0 {
            break;
        }
        client.send(&buf[..n])?;
    }
    Ok(())
}

/// A private directory for the API's Unix socket (mode 0700).
pub fn private_socket_path() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "ironic-agent-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir.join("api.sock"))
}
