//! Support for the Ironic-facing tests (tests/ironic.rs, tests/tls.rs):
//! a small fake Ironic on 127.0.0.1:0 that records every request and answers
//! from a closure, the real `ironic-agent` binary started against it with a
//! fixture root, and TLS helpers.
//!
//! The fake exists for what the real Ironic (tests/e2e) cannot be made to
//! do on demand: answer 409/5xx, hand out broken lookup answers, speak an
//! old API version, or wipe a token at a chosen moment.

use super::servers::read_request;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When it arrived, relative to the fake's start.
    pub at: Duration,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn is(&self, method: &str, path_prefix: &str) -> bool {
        self.method == method && self.path.starts_with(path_prefix)
    }
}

/// What the fake answers: status and body text.
pub type Answer = (u16, String);
pub type Handler = dyn FnMut(&Req) -> Answer + Send;

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn decode(s: &str) -> String {
    ironic_agent::util::percent_decode(s)
}

/// A fake Ironic API. Stopped when dropped.
///
/// A plain one-request-per-connection HTTP/1.1 server on std's
/// TcpListener (`Connection: close` on every answer): stopping it closes
/// the listener at once, so a stopped fake refuses connections the way a
/// stopped Ironic does (tiny_http keeps accepted keep-alive connections
/// alive after its server is dropped, which would hang the client).
pub struct FakeIronic {
    pub port: u16,
    started: Instant,
    requests: Arc<Mutex<Vec<Req>>>,
    handler: Arc<Mutex<Box<Handler>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    server: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

impl FakeIronic {
    pub fn start(handler: impl FnMut(&Req) -> Answer + Send + 'static) -> FakeIronic {
        Self::start_inner(handler, None)
    }

    /// The same over TLS with `config` (for outbound verification tests).
    pub fn start_tls(
        handler: impl FnMut(&Req) -> Answer + Send + 'static,
        config: Arc<rustls::ServerConfig>,
    ) -> FakeIronic {
        Self::start_inner(handler, Some(config))
    }

    fn start_inner(
        handler: impl FnMut(&Req) -> Answer + Send + 'static,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> FakeIronic {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake Ironic");
        let port = listener.local_addr().unwrap().port();
        let mut f = FakeIronic {
            port,
            started: Instant::now(),
            requests: Arc::default(),
            handler: Arc::new(Mutex::new(Box::new(handler))),
            tls,
            server: None,
        };
        f.serve(listener);
        f
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (st, reqs, h, t0, tls) = (
            stop.clone(),
            self.requests.clone(),
            self.handler.clone(),
            self.started,
            self.tls.clone(),
        );
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return; // the listener closes as the thread ends
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let mut stream: Box<dyn ReadWrite> = match &tls {
                    None => Box::new(tcp),
                    Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                        Ok(c) => Box::new(rustls::StreamOwned::new(c, tcp)),
                        Err(_) => continue,
                    },
                };
                let Some(raw) = read_request(&mut stream) else {
                    continue;
                };
                let (path, q) = raw.target.split_once('?').unwrap_or((&raw.target, ""));
                let query = q
                    .split('&')
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (decode(k), decode(v))
                    })
                    .collect();
                let req = Req {
                    method: raw.method.clone(),
                    path: decode(path),
                    query,
                    headers: raw.headers,
                    body: raw.body,
                    at: t0.elapsed(),
                };
                let (status, text) = (h.lock().unwrap())(&req);
                reqs.lock().unwrap().push(req);
                let resp = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    reason(status),
                    text.len()
                );
                let _ = stream.write_all(resp.as_bytes());
                let _ = stream.flush();
            }
        });
        self.server = Some((stop, thread));
    }

    /// Time since the fake started, on the same clock as [`Req::at`].
    pub fn started_elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests matching `method` and a path prefix.
    pub fn matching(&self, method: &str, prefix: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.is(method, prefix))
            .collect()
    }

    /// Wait until at least `n` requests match; panics after `limit`.
    pub fn wait_for(&self, method: &str, prefix: &str, n: usize, limit: Duration) -> Vec<Req> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.matching(method, prefix);
            if m.len() >= n {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "only {} of {n} {method} {prefix}* requests within {limit:?}; got {:#?}",
                    m.len(),
                    self.requests()
                        .iter()
                        .map(|r| format!("{} {} -> at {:?}", r.method, r.path, r.at))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop listening: connections are refused until [`FakeIronic::restart`].
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.server.take() {
            stop.store(true, Ordering::SeqCst);
            // wake the blocking accept()
            let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
            let _ = thread.join();
        }
    }

    /// Listen again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("rebinding {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        self.serve(listener);
    }
}

impl Drop for FakeIronic {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ironic's root document (`GET /`) announcing `version` as the maximum.
pub fn root_doc(version: &str) -> String {
    json!({
        "name": "OpenStack Ironic API",
        "versions": [{"id": "v1", "status": "CURRENT", "min_version": "1.1",
                      "version": version, "links": []}],
        "default_version": {"id": "v1", "status": "CURRENT", "min_version": "1.1",
                            "version": version, "links": []}
    })
    .to_string()
}

/// A lookup answer as Ironic's `ramdisk.py` builds it.
pub fn lookup_doc(uuid: &str, token: &str, heartbeat_timeout: u64) -> String {
    json!({
        "node": {"uuid": uuid, "properties": {}, "instance_info": {},
                 "driver_internal_info": {"agent_secret_token": "******"}, "links": []},
        "config": {"heartbeat_timeout": heartbeat_timeout, "agent_token": token,
                   "agent_token_required": true, "agent_md5_checksum_enable": false,
                   "tls_min_version": "1.3", "tls_cipher_suites": null}
    })
    .to_string()
}

/// Ironic's error body: `error_message` is JSON inside a JSON string.
pub fn ironic_error(faultstring: &str) -> String {
    json!({"error_message": json!({"faultcode": "Client", "faultstring": faultstring,
                                    "debuginfo": null}).to_string()})
    .to_string()
}

/// A 43-character token like Ironic's `secrets.token_urlsafe()`.
pub fn token(tag: char) -> String {
    std::iter::repeat_n(tag, 11).collect::<String>() + "Zq3-_x9TqPbW8rL2mN4vK7sJdYhG0fA"
}

pub const MAC: &str = "52:54:00:12:34:56";

/// A fixture root shaped like a QEMU guest's sysfs: one virtio NIC with
/// `mac`, no disks, an empty kernel command line.
pub fn make_root(dir: &Path, mac: &str) -> PathBuf {
    let root = dir.join("root");
    let pci = root.join("sys/devices/pci0000:00/0000:00:03.0");
    let nic = pci.join("virtio0/net/eth0");
    std::fs::create_dir_all(&nic).unwrap();
    for (k, v) in [
        ("address", mac),
        ("carrier", "1"),
        ("operstate", "up"),
        ("type", "1"),
    ] {
        std::fs::write(nic.join(k), format!("{v}\n")).unwrap();
    }
    std::os::unix::fs::symlink("../../../virtio0", nic.join("device")).unwrap();
    std::fs::write(pci.join("vendor"), "0x1af4\n").unwrap();
    std::fs::write(pci.join("device"), "0x1000\n").unwrap();
    std::fs::create_dir_all(root.join("sys/class/net")).unwrap();
    std::os::unix::fs::symlink(
        "../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0",
        root.join("sys/class/net/eth0"),
    )
    .unwrap();
    for d in ["proc", "dev", "run", "etc", "sys/block"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("proc/cmdline"), "\n").unwrap();
    root
}

/// The real agent binary, started against an Ironic. Killed when dropped.
pub struct AgentProc {
    child: Child,
    pub log: PathBuf,
    pub dir: PathBuf,
}

/// `--api-url <url>` plus the defaults every Ironic-mode test wants; `extra`
/// is appended (later flags win).
pub fn agent_args(dir: &Path, api_url: &str, extra: &[&str]) -> Vec<String> {
    let root = make_root(dir, MAC);
    let mut a: Vec<String> = [
        "--root",
        root.to_str().unwrap(),
        "--api-url",
        api_url,
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        "0",
        "--advertise-host",
        "127.0.0.1",
        "--debug",
        "--lookup-interval",
        "1",
        "--lookup-timeout",
        "60",
        "--disk-wait-attempts",
        "1",
        "--disk-wait-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

impl AgentProc {
    pub fn start(dir: &Path, args: &[String]) -> AgentProc {
        Self::start_wrapped(dir, &[], args)
    }

    /// The agent run by a wrapper that execs it (`ip netns exec NS`), so
    /// the child's pid is the agent's.
    pub fn start_wrapped(dir: &Path, wrapper: &[&str], args: &[String]) -> AgentProc {
        let log = dir.join("agent.log");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                // the wrapper execs what agent_command() would run
                let inner = super::agent_command();
                let mut c = Command::new(first);
                c.args(rest).arg(inner.get_program()).args(inner.get_args());
                c
            }
            None => super::agent_command(),
        };
        let child = cmd
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning ironic-agent");
        AgentProc {
            child,
            log,
            dir: dir.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle`; panics with the log after `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "{needle:?} not logged within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panic if the log shows a panic, or if a secret appears in it.
    pub fn assert_clean_log(&self, secrets: &[&str]) {
        assert_clean_log(&self.log_text(), secrets);
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panic if `log` shows a panic or contains one of `secrets` (tokens must
/// never reach a log line, not even at --debug).
pub fn assert_clean_log(log: &str, secrets: &[&str]) {
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
    for s in secrets {
        assert!(
            !log.contains(s),
            "secret {:.6}... in the agent's log:\n{log}",
            s
        );
    }
}

/// A ureq client that trusts exactly `ca_pem` (the agent's auto-TLS
/// certificate, as Ironic does with `agent_verify_ca`).
pub fn client_trusting(ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let certs: Vec<_> = parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert!(!certs.is_empty(), "no certificate in {ca_pem}");
    // the agent builds ureq without a provider of its own (Cargo.toml)
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET with `client`; (status, JSON or string).
pub fn get_json(client: &ureq::Agent, url: &str) -> (u16, Value) {
    let mut r = client.get(url).call().expect("GET");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POST JSON with `client`; (status, JSON or string).
pub fn post_json(client: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = client
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A port nobody listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Run the `openssl` command; (success, stdout + stderr).
pub fn openssl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut argv = vec!["openssl"];
    argv.extend_from_slice(args);
    super::tools::run_input(&argv, stdin.unwrap_or("").as_bytes())
}

/// Try a handshake with `openssl s_client` and the given options. Security
/// level 0 lets OpenSSL offer TLS 1.0/1.1 and weak suites, so a refusal is
/// the agent's, not the client's.
pub fn handshake(port: u16, opts: &[&str], cipher: &str) -> (bool, String) {
    let addr = format!("127.0.0.1:{port}");
    let cipher = format!("{cipher}:@SECLEVEL=0");
    let mut args = vec!["s_client", "-connect", &addr, "-brief", "-cipher", &cipher];
    args.extend_from_slice(opts);
    let (ok, text) = openssl(&args, Some(""));
    (ok && text.contains("CONNECTION ESTABLISHED"), text)
}
