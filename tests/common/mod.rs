//! Shared harness of the Rust tests (ripgrep's `tests/util.rs` pattern):
//! a per-test directory under the system temp dir (no tempfile crate), the
//! real `ironic-agent` binary started on 127.0.0.1:0, its bound port read
//! back from its log, and the process killed on drop; fixture roots. The
//! submodules hold the rest, once for every test file.
#![allow(dead_code)]

/// Loop devices over sparse files, presented in a fixture root.
pub mod blockdev;
/// A fake Ironic and the agent run against it (tests/ironic.rs, tests/tls.rs).
pub mod ironic;
/// Image servers, a CONNECT proxy, and the HTTP request parser.
pub mod servers;
/// Host tools (`need`, `run`, `must`) and the skip policy (`precondition`).
pub mod tools;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Remove the directories of test processes that have exited. Directories
/// of this run are kept for post-mortems until the next run; disk images
/// in them can be large, so they must not pile up across runs.
fn remove_stale_dirs(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // <name>-<pid>-<n>
        let mut parts = name.rsplitn(3, '-');
        let (_, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh, empty directory for one test: `<tmp>/ironic-agent-tests/<name>-<pid>-<n>`.
pub fn test_dir(name: &str) -> PathBuf {
    static CLEANUP: std::sync::Once = std::sync::Once::new();
    let base = std::env::temp_dir().join("ironic-agent-tests");
    CLEANUP.call_once(|| remove_stale_dirs(&base));
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = base.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a test dir");
    d
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ironic-agent"))
}

/// A `Command` that runs the binary under test. When the tests themselves
/// run under qemu-user (`cargo test --target aarch64-unknown-linux-musl`
/// on x86_64, whose runner is qemu-aarch64-static), the host kernel cannot
/// exec the agent (no binfmt_misc registration is assumed), so it goes
/// through the same emulator. qemu-user fakes uname(2), not
/// /proc/sys/kernel/arch, which names the host's machine.
pub fn agent_command() -> Command {
    let host = std::fs::read_to_string("/proc/sys/kernel/arch").unwrap_or_default();
    let arch = std::env::consts::ARCH;
    if !host.trim().is_empty() && host.trim() != arch {
        let mut c = Command::new(format!("qemu-{arch}-static"));
        c.arg(bin());
        c
    } else {
        Command::new(bin())
    }
}

/// A running agent. Killed (and reaped) when dropped.
pub struct Agent {
    child: Child,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub base: String,
    pub port: u16,
    pub token: String,
    /// The served certificate (auto-TLS), when https.
    pub cert: Option<PathBuf>,
}

/// Start options; `args` are appended after the defaults.
pub struct Opts<'a> {
    pub root: Option<&'a Path>,
    pub token: &'a str,
    pub tls: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            root: None,
            token: "678123-test-token",
            tls: false,
            args: vec![],
            env: vec![],
        }
    }
}

impl Agent {
    /// Start `ironic-agent --standalone` on 127.0.0.1:0 and wait until it
    /// listens. Panics with the log when it does not come up in 10 s.
    pub fn start(dir: &Path, o: Opts) -> Agent {
        let log = dir.join("agent.log");
        let mut cmd = agent_command();
        cmd.args([
            "--standalone",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
        ])
        .args(["--agent-token", o.token])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
        if !o.tls {
            cmd.arg("--enable-auto-tls=false");
        }
        // An empty cmdline by default: never read the host's /proc/cmdline.
        let cmdline = dir.join("cmdline");
        if !o.args.iter().any(|a| a.starts_with("--cmdline")) {
            std::fs::write(&cmdline, "").expect("cmdline");
            cmd.arg("--cmdline").arg(&cmdline);
        }
        if let Some(r) = o.root {
            cmd.arg("--root").arg(r);
        }
        cmd.args(&o.args);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawning ironic-agent");
        let mut agent = Agent {
            child,
            log,
            base: String::new(),
            port: 0,
            token: o.token.into(),
            cert: None,
        };
        agent.wait_listening(Duration::from_secs(10));
        agent
    }

    fn wait_listening(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.log_text();
            if let Some(pos) = text.find("API listening on ") {
                let rest = &text[pos + "API listening on ".len()..];
                let url = rest
                    .split(|c: char| c == ';' || c.is_whitespace())
                    .next()
                    .unwrap_or("");
                self.base = url.to_string();
                self.port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                if let Some(c) = text.find("TLS certificate: ") {
                    let p = text[c + 17..].lines().next().unwrap_or("").trim();
                    self.cert = Some(PathBuf::from(p));
                }
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ironic-agent exited with {status} before listening; log:\n{text}");
            }
            if Instant::now() > deadline {
                panic!("ironic-agent did not listen within {limit:?}; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process to exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `<base><path>` with `agent_token` appended to the query.
    pub fn url_with_token(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}agent_token={}", self.base, self.token)
    }

    /// POST a command with `wait=true`; returns (status, body).
    pub fn command(&self, name: &str, params: serde_json::Value) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"name": name, "params": params});
        post(
            &self.url_with_token("/v1/commands/?wait=true"),
            &body.to_string(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ureq agent that reports HTTP errors as statuses, with a timeout.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, serde_json::Value) {
    let mut r = r.expect("HTTP request");
    let status = r.status().as_u16();
    let mut s = String::new();
    let _ = r.body_mut().as_reader().read_to_string(&mut s);
    let v = serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s));
    (status, v)
}

pub fn get(url: &str) -> (u16, serde_json::Value) {
    finish(http().get(url).call())
}

pub fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    finish(
        http()
            .post(url)
            .header("Content-Type", "application/json")
            .send(body),
    )
}

/// Poll `f` until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A committed fixture root (tests/fixtures/<name>), read-only.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A private, writable copy of fixture `name` under `dir` (symlinks kept
/// as symlinks), with a sparse regular file at /dev/<kname> for every
/// disk and partition in its /sys/block, sized as sysfs says. Deploy and
/// erase tests write to these "disks" without touching the committed tree.
pub fn fixture_root(name: &str, dir: &Path) -> PathBuf {
    let root = dir.join(name);
    copy_tree(&fixture(name), &root);
    let sectors = |p: &Path| -> u64 {
        std::fs::read_to_string(p.join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let block = root.join("sys/block");
    std::fs::create_dir_all(root.join("dev")).expect("mkdir dev");
    for e in std::fs::read_dir(&block).into_iter().flatten().flatten() {
        let disk = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let mut nodes = vec![(name, sectors(&disk))];
        for p in std::fs::read_dir(&disk).into_iter().flatten().flatten() {
            if p.path().join("partition").exists() {
                let pn = p.file_name().to_string_lossy().into_owned();
                nodes.push((pn, sectors(&p.path())));
            }
        }
        for (n, s) in nodes {
            let f = std::fs::File::create(root.join("dev").join(n)).expect("dev node");
            f.set_len(s * 512).expect("sparse size");
        }
    }
    root
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("fixture dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().expect("file type");
        if ty.is_symlink() {
            let target = std::fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else if ty.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the source address `src`
/// (every 127.0.0.0/8 address is local on Linux without configuration):
/// how the front's tests play clients on several hosts.
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: socket(2) returns a new descriptor that the TcpStream owns
    // (and closes) from here on.
    let s = unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        std::net::TcpStream::from_raw_fd(fd)
    };
    use std::os::fd::AsRawFd;
    let (from, to) = (
        sockaddr(src, 0),
        sockaddr(std::net::Ipv4Addr::LOCALHOST, port),
    );
    // SAFETY: `from` and `to` are initialised sockaddr_in structs that
    // outlive the calls, and `len` is their size.
    unsafe {
        check(libc::bind(
            s.as_raw_fd(),
            (&from as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        check(libc::connect(
            s.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            len,
        ))?;
    }
    Ok(s)
}

/// A field of /proc/<pid>/status as a number ("Threads", "VmRSS" in kB).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A partition image's image_info from a test's fields (id, urls and a
/// checksum added), parsed as the command boundary parses it.
pub fn partition_image_info(
    ii: &serde_json::Map<String, serde_json::Value>,
) -> ironic_agent::image::ImageInfo {
    use serde_json::json;
    let mut m = ii.clone();
    m.entry("id").or_insert(json!("img"));
    m.entry("urls").or_insert(json!(["http://127.0.0.1:1/img"]));
    m.entry("checksum").or_insert(json!("0".repeat(64)));
    m.entry("image_type").or_insert(json!("partition"));
    ironic_agent::image::ImageInfo::parse(&m, true).unwrap()
}
