//! Host tools the tests run (set-up and oracles only; the agent itself
//! runs none), and the one skip policy of the Rust tests.
//!
//! - A tool a test needs is in tests/host-tools.txt with its Debian
//!   package; scripts/test-all's setup() installs them all. A test calls
//!   [`need`] for its tools up front, and [`run`]/[`must`] check again:
//!   a missing tool PANICS naming the package and the install step. A
//!   tool is never optional: no test passes vacuously because an oracle
//!   was absent.
//! - What no install step gives (root for loop devices, an IPv6 loopback)
//!   goes through [`precondition`]: it fails the test too, unless
//!   `IRONIC_AGENT_TESTS_ALLOW_SKIP=1` is set, which turns it into an
//!   explicit, printed SKIP. CI (scripts/test-all, as root) never sets
//!   it, so the loop-device tests (the real ioctls and O_DIRECT paths)
//!   cannot silently stop running there; a developer without root sets it
//!   on purpose and sees what was skipped.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The environment variable that lets [`precondition`] skip.
pub const ALLOW_SKIP: &str = "IRONIC_AGENT_TESTS_ALLOW_SKIP";

const HOST_TOOLS: &str = include_str!("../host-tools.txt");

/// Every (tool, Debian package) of tests/host-tools.txt.
pub fn host_tools() -> Vec<(&'static str, &'static str)> {
    HOST_TOOLS
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect()
}

/// The Debian package of `tool`, from tests/host-tools.txt.
pub fn package(tool: &str) -> Option<&'static str> {
    host_tools()
        .into_iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, p)| p)
}

/// Whether `tool` is on PATH.
pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn missing(tool: &str) -> String {
    match package(tool) {
        Some(p) => format!(
            "this test needs `{tool}`, which is not installed: it is in Debian package {p}, \
             which scripts/test-all installs in its setup (run scripts/test-all, or \
             apt-get install {p})"
        ),
        None => format!(
            "this test needs `{tool}`, which tests/host-tools.txt does not list: add it there \
             with its Debian package, so that scripts/test-all installs it"
        ),
    }
}

/// Fail the test unless every one of `tools` is installed (and listed in
/// tests/host-tools.txt, so that scripts/test-all installs it).
pub fn need(tools: &[&str]) {
    for t in tools {
        if package(t).is_none() || !which(t) {
            panic!("{}", missing(t));
        }
    }
}

/// `ok`, or else: a panic naming `what` this machine lacks, or, with
/// `IRONIC_AGENT_TESTS_ALLOW_SKIP=1`, a printed SKIP and `false` (the
/// test returns). Only for what no install step gives; a missing tool is
/// [`need`]'s, and always fails.
#[must_use]
pub fn precondition(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var(ALLOW_SKIP).as_deref() == Ok("1") {
        eprintln!("SKIP: this test needs {what} ({ALLOW_SKIP}=1)");
        return false;
    }
    panic!(
        "this test needs {what}, which this machine does not give it; run the tests as root \
         as scripts/test-all and CI do, or set {ALLOW_SKIP}=1 to skip such tests explicitly"
    );
}

/// Root and loop devices (/dev/loop-control): see [`precondition`].
#[must_use]
pub fn need_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    precondition(
        root && std::path::Path::new("/dev/loop-control").exists(),
        "root and loop devices (/dev/loop-control)",
    )
}

fn spawn(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match c.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{}", missing(args[0])),
        Err(e) => panic!("running {args:?}: {e}"),
    };
    if let Some(data) = input {
        let _ = child.stdin.take().unwrap().write_all(data);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Run a host tool: (success, stdout followed by stderr). A missing tool
/// panics as [`need`] does.
pub fn run(args: &[&str]) -> (bool, String) {
    combined(spawn(args, None))
}

/// [`run`] with `input` on stdin.
pub fn run_input(args: &[&str], input: &[u8]) -> (bool, String) {
    combined(spawn(args, Some(input)))
}

fn combined(o: Output) -> (bool, String) {
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), s)
}

/// Run a host tool that must succeed; its stdout. Panics with both
/// outputs when it fails.
pub fn must(args: &[&str]) -> String {
    succeeded(args, spawn(args, None))
}

/// [`must`] with `input` on stdin.
pub fn must_input(args: &[&str], input: &[u8]) -> String {
    succeeded(args, spawn(args, Some(input)))
}

fn succeeded(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "{args:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
