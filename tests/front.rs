//! The API front (src/api/front.rs, src/api/guard.rs) against the attacks
//! of issue 21, each run against the real binary from its own source
//! addresses (127.0.0.2 and up), with a legitimate client on 127.0.0.1
//! asking `GET /v1/status` meanwhile: it must get its answer, promptly.
//! `IRONIC_AGENT_API_DEADLINE` shortens the front's client deadlines where
//! a test would otherwise wait the real ones.

mod common;

use common::{connect_from, proc_status, test_dir, Agent, Opts};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "678123-front-test-token-5f1e2d3c4b";

/// `deadline`: IRONIC_AGENT_API_DEADLINE (seconds), "" for the real ones.
fn start(name: &str, deadline: &str, tls: bool, args: &[&str]) -> Agent {
    start_in(&test_dir(name), None, deadline, tls, args)
}

fn start_in(
    dir: &std::path::Path,
    root: Option<&std::path::Path>,
    deadline: &str,
    tls: bool,
    args: &[&str],
) -> Agent {
    let mut env = vec![];
    if !deadline.is_empty() {
        env.push((
            "IRONIC_AGENT_API_DEADLINE".to_string(),
            deadline.to_string(),
        ));
    }
    Agent::start(
        dir,
        Opts {
            root,
            token: TOKEN,
            tls,
            args: args.iter().map(|s| s.to_string()).collect(),
            env,
        },
    )
}

fn from(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A client connection, plain or TLS (trusting the agent's certificate).
enum Wire {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Wire {
    fn open(a: &Agent, src: Ipv4Addr) -> std::io::Result<Wire> {
        let tcp = connect_from(src, a.port)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(match &a.cert {
            None => Wire::Plain(tcp),
            Some(cert) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(tls_config(cert), name).unwrap();
                Wire::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        })
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(t) => t,
            Wire::Tls(s) => &s.sock,
        }
    }

    /// Everything until the agent closes (or 5 s of silence).
    fn read_all(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match self.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One response framed by its Content-Length: (head, body).
    fn response(&mut self) -> Option<(String, Vec<u8>)> {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match self.read(&mut b) {
                Ok(1) => got.push(b[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&got).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.read_exact(&mut body).ok()?;
        Some((head, body))
    }

    /// True once the agent closed the connection (EOF or reset) within `limit`.
    fn closed_within(&mut self, limit: Duration) -> bool {
        let t0 = Instant::now();
        let mut b = [0u8; 4096];
        while t0.elapsed() < limit {
            let _ = self
                .tcp()
                .set_read_timeout(Some(Duration::from_millis(200)));
            match self.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(t) => t.read(b),
            Wire::Tls(s) => s.read(b),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(t) => t.write(b),
            Wire::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Wire::Plain(t) => t.flush(),
            Wire::Tls(s) => s.flush(),
        }
    }
}

fn tls_config(cert: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Send `bytes` from `src` and read the answer until the agent closes.
fn exchange(a: &Agent, src: Ipv4Addr, bytes: &[u8]) -> String {
    let mut w = Wire::open(a, src).unwrap();
    let _ = w.write_all(bytes);
    w.read_all()
}

/// The legitimate client: `GET /v1/status` on a new connection from
/// 127.0.0.1. Err when refused or unanswered; else how long it took.
fn status(a: &Agent) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut w = Wire::open(a, Ipv4Addr::LOCALHOST).map_err(|e| format!("connect: {e}"))?;
    w.write_all(b"GET /v1/status HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let r = w.read_all();
    if r.starts_with("HTTP/1.1 200") && r.contains("\"started_at\"") {
        Ok(t0.elapsed())
    } else {
        Err(format!("no answer after {:?}: {r:?}", t0.elapsed()))
    }
}

/// The legitimate client gets its answer within `limit`, `n` times.
fn status_ok(a: &Agent, n: usize, limit: Duration) {
    for i in 0..n {
        match status(a) {
            Ok(d) => assert!(d <= limit, "status #{i} took {d:?}"),
            Err(e) => panic!("status #{i}: {e}\n{}", a.log_text()),
        }
    }
}

fn threads(a: &Agent) -> u64 {
    proc_status(a.pid(), "Threads")
}

/// Wait until the agent runs at most `n` threads; how many it ran last.
fn threads_settle(a: &Agent, n: u64, limit: Duration) -> u64 {
    common::wait_for(limit, || (threads(a) <= n).then_some(())).map_or_else(|| threads(a), |_| n)
}

/// Finding 1: a request line above HTTP/1.1 deadlocked a tiny_http
/// connection thread for good, leaked it and held the front's slot for an
/// hour: 64 of them from 4 addresses locked everyone out. The front now
/// answers 505 itself; nothing is held.
#[test]
fn request_lines_above_http_1_1_get_505_and_hold_nothing() {
    for tls in [false, true] {
        let a = start("http2", "", tls, &[]);
        status_ok(&a, 1, Duration::from_secs(2));
        let idle = threads(&a);
        let mut conns: Vec<Wire> = (0..64)
            .map(|i| {
                let mut w = Wire::open(&a, from(2 + i % 4)).unwrap();
                w.write_all(b"GET / HTTP/2.0\r\n\r\n").unwrap();
                w
            })
            .collect();
        for (i, w) in conns.iter_mut().enumerate() {
            let r = w.read_all();
            assert!(
                r.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"),
                "tls={tls} #{i}: {r:?}"
            );
            assert!(r.contains("\"faultcode\":\"Server\""), "{r}");
        }
        status_ok(&a, 3, Duration::from_secs(1));
        for line in [
            &b"GET /v1/status HTTP/3.0\r\nHost: x\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let r = exchange(&a, from(6), line);
            assert!(r.starts_with("HTTP/1.1 505"), "{r:?}");
        }
        drop(conns);
        let left = threads_settle(&a, idle + 1, Duration::from_secs(10));
        assert!(
            left <= idle + 1,
            "tls={tls}: {left} threads after the attack, {idle} before"
        );
        status_ok(&a, 1, Duration::from_secs(1));
    }
}

/// Finding 2: a connection that pipelines requests with big answers and
/// never reads them froze the API thread (it blocked writing to the
/// front, the front to the client) for 60 s at a time. Now the front
/// reads each answer whole before writing it, and a client that does not
/// read is cut by the write deadline.
#[test]
fn a_client_that_never_reads_its_answers_cannot_freeze_the_api() {
    let a = start("no-read", "2", false, &[]);
    let req = format!("GET /v1/ HTTP/1.1\r\nHost: {}\r\n\r\n", "a".repeat(16_000));
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = [2u8, 3]
        .into_iter()
        .map(|n| {
            let (req, stop, port) = (req.clone(), stop.clone(), a.port);
            std::thread::spawn(move || {
                let mut s = connect_from(from(n), port).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    match s.write_all(req.as_bytes()) {
                        Ok(()) => sent += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                (s, sent)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        status_ok(&a, 1, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(200));
    }
    // their connections are cut (write deadline) while they still hold them
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        let (s, sent) = t.join().unwrap();
        assert!(sent > 10, "the attack did not get going: {sent} requests");
        let mut w = Wire::Plain(s);
        assert!(
            w.closed_within(Duration::from_secs(10)),
            "a client that never reads still holds its connection"
        );
    }
    status_ok(&a, 2, Duration::from_secs(1));
}

/// Finding 3: 64 idle connections (16 from each of 4 addresses) refused
/// everyone else for 60 s, renewable forever. Now a newcomer takes the
/// slot of an idle connection of the address holding the most, and an
/// address at its limit replaces its own oldest connection.
#[test]
fn idle_connections_cannot_lock_others_out() {
    let a = start("idle", "", false, &[]);
    let mut held: Vec<(u8, Wire)> = vec![];
    for n in 2..=6u8 {
        for _ in 0..16 {
            held.push((n, Wire::open(&a, from(n)).unwrap()));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    status_ok(&a, 10, Duration::from_secs(1));
    // a 17th connection from address .2 is served...
    let r = exchange(
        &a,
        from(2),
        b"GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    // ...in the place of one of its own
    let closed = held
        .iter_mut()
        .filter(|(n, _)| *n == 2)
        .filter(|(_, w)| {
            let _ = w.tcp().set_nonblocking(true);
            let mut b = [0u8; 1];
            let gone = matches!(w.tcp().peek(&mut b), Ok(0));
            let _ = w.tcp().set_nonblocking(false);
            gone
        })
        .count();
    assert!(closed >= 1, "no connection of address .2 was closed");
    assert!(
        a.log_text().contains("slots (or 16 for one address) taken"),
        "{}",
        a.log_text()
    );
}

/// Finding 4: requests that announced a body of 256 KiB – 64 MiB and never
/// sent it made tiny_http drain it on the API thread, at the client's
/// pace. Now the front reads every body whole before the API sees the
/// request: without the token, bodies over 64 KiB get 401 at once; with
/// it, one large body at a time is read; each under its deadline.
#[test]
fn bodies_announced_and_never_sent_never_reach_the_api() {
    let a = start("unsent", "3", false, &[]);
    for (i, len) in [256 * 1024 + 1, 1 << 20, 16 << 20, (64 << 20) - 1]
        .iter()
        .enumerate()
    {
        for n in 2..=5u8 {
            let t0 = Instant::now();
            let r = exchange(
                &a,
                from(n),
                format!("POST /v1/commands/ HTTP/1.1\r\nContent-Length: {len}\r\n\r\n{{\"na")
                    .as_bytes(),
            );
            assert!(r.starts_with("HTTP/1.1 401"), "#{i}: {r:?}");
            assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        }
    }
    // small bodies announced and held back: the front holds them, not the API
    let held: Vec<Wire> = (0..24u8)
        .map(|i| {
            let mut w = Wire::open(&a, from(6 + i % 2)).unwrap();
            write!(
                w,
                "POST /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nContent-Length: 60000\r\n\r\n{{"
            )
            .unwrap();
            w
        })
        .collect();
    // a large body with the token takes the one large-body permit
    let mut large = Wire::open(&a, from(8)).unwrap();
    write!(
        large,
        "POST /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n{{"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // none of them keeps the API waiting
    status_ok(&a, 5, Duration::from_secs(1));
    // a second large body meanwhile is turned away
    let r = exchange(
        &a,
        from(9),
        format!(
            "POST /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 503"), "{r:?}");
    // each is cut at its deadline, with a 408
    let r = held.into_iter().next().unwrap().read_all();
    assert!(r.starts_with("HTTP/1.1 408"), "{r:?}");
    let r = large.read_all();
    assert!(r.starts_with("HTTP/1.1 408"), "{r:?}");
    // the permit is back: a large command body goes through
    let node =
        json!({"uuid": "1", "properties": {}, "instance_info": {"pad": "y".repeat(300_000)}});
    let (s, v) = a.command("clean.get_clean_steps", json!({"node": node, "ports": []}));
    assert_eq!(
        (s, v["command_status"].as_str()),
        (200, Some("SUCCEEDED")),
        "{v}"
    );
}

/// Finding 5: `Transfer-Encoding: identity` (framed by Content-Length for
/// the front, decoded as chunked by tiny_http) and `Connection: upgrade`
/// with a body left the request unanswered. Now the front decodes chunked
/// itself, refuses every other coding (501) or a coding beside a
/// Content-Length (400), and hands tiny_http neither header.
#[test]
fn transfer_codings_are_decoded_or_refused_by_the_front() {
    let a = start("te", "", false, &[]);
    let body = json!({"name": "clean.get_clean_steps",
                      "params": {"node": {"uuid": "1", "properties": {}, "instance_info": {}},
                                 "ports": []}})
    .to_string();
    let post = format!("POST /v1/commands/?agent_token={TOKEN} HTTP/1.1\r\nHost: x\r\n");
    let r = exchange(
        &a,
        from(2),
        format!(
            "{post}Transfer-Encoding: identity\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    for te in ["identity", "gzip, chunked", "chunked, identity"] {
        let r = exchange(
            &a,
            from(2),
            format!("{post}Transfer-Encoding: {te}\r\n\r\n0\r\n\r\n").as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 501 Not Implemented"), "{te}: {r:?}");
    }
    // chunked, decoded by the front: the command runs
    let (x, y) = body.split_at(body.len() / 2);
    let r = exchange(
        &a,
        from(3),
        format!(
            "{post}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{x}\r\n{:x};ext=1\r\n{y}\r\n0\r\nX-Trailer: 1\r\n\r\n",
            x.len(),
            y.len()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    assert!(r.contains("\"command_status\":\"SUCCEEDED\""), "{r}");
    // Connection: upgrade with a body is an ordinary request, and the
    // connection goes on
    let r = exchange(
        &a,
        from(4),
        format!(
            "{post}Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n{body}\
             GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "{r:?}");
    status_ok(&a, 2, Duration::from_secs(1));
}

/// Finding 6: bare-LF request lines and non-ASCII bytes in a path or a
/// header got no answer. The front answers 400 itself.
#[test]
fn malformed_heads_get_400_from_the_front() {
    let a = start("malformed", "", false, &[]);
    for bad in [
        &b"GET /v1/status HTTP/1.1\n\n"[..],
        b"GET /v1/status HTTP/1.1\nHost: x\n\n",
        b"GET /v1/status HTTP/1.1\r\nHost: x\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nX: \xff\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /v1/status\r\n\r\n",
        b"\x00\x01\x02 garbage\r\n\r\n",
    ] {
        let t0 = Instant::now();
        let r = exchange(&a, from(2), bad);
        assert!(
            r.starts_with("HTTP/1.1 400 Bad Request\r\n") && r.contains("\"faultcode\":\"Client\""),
            "{:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
    status_ok(&a, 2, Duration::from_secs(1));
}

/// Finding 6: after `system.lockdown` the listener kept accepting
/// connections it never answered. IPA stops its server: the port refuses
/// connections (Ironic waits for exactly that), open ones are closed.
#[test]
fn after_lockdown_the_port_refuses_connections() {
    let dir = test_dir("lockdown");
    // a fixture root: lockdown leaves the host's NICs alone
    let root = common::fixture("vm-virtio");
    let a = start_in(&dir, Some(&root), "", false, &[]);
    let mut keep = Wire::open(&a, from(2)).unwrap();
    keep.write_all(b"GET /v1/status HTTP/1.1\r\n\r\n").unwrap();
    let (head, _) = keep.response().expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (s, v) = a.command("system.lockdown", json!({}));
    assert_eq!(
        (s, v["command_status"].as_str()),
        (200, Some("SUCCEEDED")),
        "{v}"
    );
    let refused = common::wait_for(Duration::from_secs(3), || {
        match TcpStream::connect(("127.0.0.1", a.port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    assert!(refused.is_some(), "the port still accepts connections");
    assert!(keep.closed_within(Duration::from_secs(3)));
    assert!(a.log_text().contains("API listener closed"));
}

/// A one-request HTTP server that holds the request until told to answer
/// (404): a stand-in image server for a command that runs on demand.
fn stalling_server() -> (u16, std::sync::mpsc::Sender<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let _ = rx.recv_timeout(Duration::from_secs(300));
            let _ = req.respond(tiny_http::Response::empty(404));
        }
    });
    (port, tx)
}

/// Finding 7: a `wait=true` answer was cut at the front's idle time (60 s;
/// Ironic waits `[agent]command_timeout`, which operators raise). Now a
/// request with the API has the API's wait limit, whatever the other
/// deadlines; here they are all 1 s and the command takes 4.
#[test]
fn wait_true_is_answered_past_every_other_deadline() {
    let dir = test_dir("wait-true");
    let root = common::fixture_root("vm-virtio", &dir);
    std::fs::write(root.join("proc/mounts"), "rootfs / rootfs rw 0 0\n").unwrap();
    let _ = std::fs::remove_file(root.join("proc/self/mountinfo"));
    let a = start_in(&dir, Some(&root), "1", false, &[]);
    let (port, release) = stalling_server();
    let info = json!({"id": "img", "urls": [format!("http://127.0.0.1:{port}/img")],
                      "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64),
                      "disk_format": "raw"});
    let url = a.url_with_token("/v1/commands/?wait=true");
    let body = json!({"name": "standby.prepare_image", "params": {"image_info": info}});
    let waiter = std::thread::spawn(move || common::post(&url, &body.to_string()));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!waiter.is_finished(), "answered before the command ended");
    status_ok(&a, 2, Duration::from_secs(1));
    release.send(()).unwrap();
    let (s, v) = waiter.join().unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(v["command_error"]["type"], "ImageDownloadFatalError", "{v}");
}

/// Finding 7 as it was found, with the real deadlines: the old front cut
/// a `wait=true` answer after 60 s. Ignored by default (it takes 65 s):
/// `cargo test --test front -- --ignored`.
#[test]
#[ignore]
fn wait_true_outlasts_the_old_60_s_cut() {
    let dir = test_dir("wait-65");
    let root = common::fixture_root("vm-virtio", &dir);
    std::fs::write(root.join("proc/mounts"), "rootfs / rootfs rw 0 0\n").unwrap();
    let _ = std::fs::remove_file(root.join("proc/self/mountinfo"));
    // the image server may take its time: no download timeout first
    let a = start_in(
        &dir,
        Some(&root),
        "",
        false,
        &["--image-download-connection-timeout", "200"],
    );
    let (port, release) = stalling_server();
    let info = json!({"id": "img", "urls": [format!("http://127.0.0.1:{port}/img")],
                      "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64),
                      "disk_format": "raw"});
    let url = a.url_with_token("/v1/commands/?wait=true");
    let body = json!({"name": "standby.prepare_image", "params": {"image_info": info}});
    let client = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build();
    let client: ureq::Agent = client.into();
    let waiter = std::thread::spawn(move || {
        let mut r = client
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("an answer, not a cut connection");
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (r.status().as_u16(), text)
    });
    std::thread::sleep(Duration::from_secs(65));
    assert!(!waiter.is_finished(), "answered before the command ended");
    release.send(()).unwrap();
    let (s, text) = waiter.join().unwrap();
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("ImageDownloadFatalError"), "{text}");
}

fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Finding 9: the token reached the debug log (and so the log bundle)
/// when the query spelled its key otherwise; the debug log said "tls" for
/// plain requests and never named the client.
#[test]
fn the_token_never_reaches_a_log_however_the_query_spells_it() {
    for tls in [false, true] {
        let a = start("token-log", "", tls, &["--debug"]);
        let enc = percent_encode_all(TOKEN);
        for target in [
            format!("/v1/commands/?AGENT_TOKEN={TOKEN}"),
            format!("/v1/commands/?agent_%74oken={TOKEN}"),
            format!("/v1/commands/?wait=false;agent_token={TOKEN}"),
            format!("/v1/commands/%3Fagent_token={TOKEN}"),
            format!("/v1/commands/?x=1%3Fagent_token={TOKEN}"),
            format!("/v1/commands/?{TOKEN}"),
            format!("/v1/commands/{TOKEN}"),
            format!("/v1/commands/?agent_token={enc}"),
            format!("/v1/commands/?Agent_Token={enc}&wait=true"),
            format!("/v1/commands/?agent_token={TOKEN}"),
        ] {
            let r = exchange(
                &a,
                from(2),
                format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            assert!(r.starts_with("HTTP/1.1 "), "{target}: {r:?}");
        }
        // the log bundle Ironic stores
        let (s, v) = if tls {
            let client = common::ironic::client_trusting(
                &std::fs::read_to_string(a.cert.as_ref().unwrap()).unwrap(),
            );
            common::ironic::post_json(
                &client,
                &a.url_with_token("/v1/commands/?wait=true"),
                &json!({"name": "log.collect_system_logs", "params": {}}),
            )
        } else {
            a.command("log.collect_system_logs", json!({}))
        };
        assert_eq!(s, 200, "{v}");
        let b64 = v["command_result"]["system_logs"]
            .as_str()
            .expect("system_logs");
        let gz = ironic_agent::util::base64_decode(b64).expect("base64");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        let bundle = String::from_utf8_lossy(&tar);
        let log = a.log_text();
        for text in [&log, &bundle.to_string()] {
            assert!(!text.contains(TOKEN), "the token in a log:\n{text}");
            assert!(!text.contains(&enc), "the encoded token in a log:\n{text}");
        }
        let scheme = if tls { "https" } else { "http" };
        assert!(
            log.contains("GET /v1/commands/?agent_token=*** from 127.0.0.2:")
                && log.contains(&format!(" over {scheme}: 200 in ")),
            "the debug log names the client and the scheme:\n{log}"
        );
        assert!(bundle.contains(" from 127.0.0.2:"), "{bundle}");
    }
}

/// Every attack class at once from eight addresses (bounded, a few
/// seconds): the legitimate client is never refused and answered within
/// a second; afterwards the agent returns to its idle thread count. (The
/// figures under a longer run are benches/api-attack.py's.)
#[test]
fn every_attack_at_once_from_eight_addresses_leaves_status_answering() {
    let a = start("all-attacks", "2", false, &[]);
    status_ok(&a, 1, Duration::from_secs(2));
    let idle = threads(&a);
    let stop = Arc::new(AtomicBool::new(false));
    let port = a.port;
    let attackers: Vec<_> = (2..=9u8)
        .map(|n| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held: Vec<TcpStream> = vec![];
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let Ok(mut s) = connect_from(from(n), port) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                    let bytes: Vec<u8> = match round % 6 {
                        0 => b"GET / HTTP/2.0\r\n\r\n".to_vec(),
                        1 => vec![],
                        2 => format!("GET /v1/ HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(15000))
                            .repeat(20)
                            .into_bytes(),
                        3 => b"POST /v1/commands/ HTTP/1.1\r\nContent-Length: 60000\r\n\r\n{"
                            .to_vec(),
                        4 => b"GET /v1/status HTTP/1.1\r\nX-Slow: ".to_vec(),
                        _ => b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n".to_vec(),
                    };
                    let _ = s.write_all(&bytes);
                    held.push(s);
                    if held.len() > 24 {
                        held.remove(0);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut times = vec![];
    while t0.elapsed() < Duration::from_secs(6) {
        match status(&a) {
            Ok(d) => times.push(d),
            Err(e) => panic!("refused under attack: {e}\n{}", a.log_text()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        t.join().unwrap();
    }
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    assert!(
        p99 <= Duration::from_secs(1),
        "p99 {p99:?} of {}",
        times.len()
    );
    let left = threads_settle(&a, idle + 1, Duration::from_secs(15));
    assert!(left <= idle + 1, "{left} threads after, {idle} before");
    status_ok(&a, 1, Duration::from_secs(1));
}
