//! The TLS front: terminate TLS with rustls 0.23 and hand the plaintext to
//! the same tiny_http loop over a private Unix socket, so HTTP and HTTPS
//! share one code path.
//!
//! tiny_http's own `ssl-rustls` feature is deliberately not used: it pins
//! rustls 0.20.9, which carries RUSTSEC-2024-0336 (a peer can make a
//! blocking server loop forever in `complete_io`), and a second `ring`.
//!
//! One thread accepts; each connection gets a thread (at most
//! [`MAX_CONNECTIONS`]) that completes the handshake under a deadline, then
//! relays records both ways with poll(2) until either side closes or the
//! connection idles for [`IDLE`].

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 64;
const HANDSHAKE: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Start accepting TLS connections on `listener`, relaying to `backend`.
pub fn start(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    backend: PathBuf,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("tls-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let tcp = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("accepting a TLS connection: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                if ACTIVE.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    log::warn!("refusing a TLS connection: {MAX_CONNECTIONS} already open");
                    continue;
                }
                let (cfg, backend) = (config.clone(), backend.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("tls-conn".into())
                        .spawn(move || {
                            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                            if let Err(e) = relay(tcp, cfg, &backend) {
                                log::debug!("TLS connection from {peer}: {e}");
                            }
                            ACTIVE.fetch_sub(1, Ordering::SeqCst);
                        });
                if let Err(e) = spawned {
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    log::error!("spawning a TLS connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

fn flush_tls(conn: &mut rustls::ServerConnection, tcp: &mut std::net::TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

/// Move every decrypted byte rustls holds to the API socket.
fn drain_plaintext(
    conn: &mut rustls::ServerConnection,
    unix: &mut UnixStream,
    buf: &mut [u8],
) -> io::Result<()> {
    loop {
        match conn.reader().read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => unix.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn relay(
    mut tcp: std::net::TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    backend: &PathBuf,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
    // Handshake under a wall-clock deadline: a peer that drips bytes or
    // goes silent cannot hold the thread.
    let deadline = Instant::now() + HANDSHAKE;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
        tcp.set_read_timeout(Some(left))?;
        conn.complete_io(&mut tcp)?;
    }
    tcp.set_read_timeout(None)?;
    let mut unix = UnixStream::connect(backend)?;
    unix.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = vec![0u8; 16 * 1024];
    // The client's first request often arrives in the same read as its
    // Finished message, so rustls may already hold plaintext that poll(2)
    // will never announce: relay it before waiting.
    drain_plaintext(&mut conn, &mut unix, &mut buf)?;
    loop {
        flush_tls(&mut conn, &mut tcp)?;
        let [from_client, from_api] = crate::sys::poll_readable(
            [tcp.as_raw_fd(), unix.as_raw_fd()],
            IDLE.as_millis() as i32,
        )?;
        if !from_client && !from_api {
            log::debug!("closing an idle TLS connection");
            conn.send_close_notify();
            let _ = flush_tls(&mut conn, &mut tcp);
            return Ok(());
        }
        if from_client {
            match conn.read_tls(&mut tcp) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let state = match conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // send the alert rustls queued, then give up
                    let _ = flush_tls(&mut conn, &mut tcp);
                    return Err(io::Error::other(e));
                }
            };
            drain_plaintext(&mut conn, &mut unix, &mut buf)?;
            if state.peer_has_closed() {
                return Ok(());
            }
        }
        if from_api {
            let n = unix.read(&mut buf)?;
            if n == 0 {
                conn.send_close_notify();
                flush_tls(&mut conn, &mut tcp)?;
                return Ok(());
            }
            let mut off = 0;
            while off < n {
                off += conn.writer().write(&buf[off..n])?;
                flush_tls(&mut conn, &mut tcp)?;
            }
        }
    }
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
