//! Logging: one line per record on stderr (the console on a ramdisk), and a
//! copy of the most recent lines in memory so `log.collect_system_logs` can
//! ship the agent's own log without a log file.
//!
//! Level contract (as ureq documents its own): ERROR = a command or the
//! Ironic conversation failed; WARN = an operator configuration problem or a
//! retried fault; INFO = state changes an operator follows on the console
//! (lookup, heartbeats that change something, commands started/finished);
//! DEBUG = requests and decisions. Tokens are never logged at any level: a
//! request target is logged through [`redact_url`] (no query value but
//! `wait`'s, however the query spells its keys), every record is scrubbed
//! of the known token by value ([`add_secret`]), and the HTTP libraries'
//! own wire logging is capped at WARN.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared ring buffer holding the tail of the agent's log.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<VecDeque<u8>>>,
    cap: usize,
}

impl LogBuffer {
    pub fn new(cap: usize) -> Self {
        LogBuffer {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(cap.min(64 * 1024)))),
            cap,
        }
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let g = crate::util::lock(&self.inner);
        let (a, b) = g.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        v
    }

    fn push(&self, bytes: &[u8]) {
        let mut g = crate::util::lock(&self.inner);
        let bytes = if bytes.len() > self.cap {
            &bytes[bytes.len() - self.cap..]
        } else {
            bytes
        };
        let overflow = (g.len() + bytes.len()).saturating_sub(self.cap);
        g.drain(..overflow);
        g.extend(bytes);
    }
}

/// UTC "YYYY-MM-DD hh:mm:ss.mmm" without a date crate.
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = crate::util::civil_utc(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}",
        d.subsec_millis()
    )
}

/// Which records pass: `RUST_LOG` directives as env_logger (which this
/// replaced: its filter, builder and formatter cost 17,632 bytes of the static
/// binary, 2026-12-06) reads them: `[target][=level]` separated by commas,
/// a bare level for every target, optionally `/text` that a message must
/// contain. The directive with the longest target that is a prefix of the
/// record's target decides.
#[derive(Debug, Default)]
struct Filter {
    /// (target prefix, "" for all; most verbose level let through)
    directives: Vec<(String, log::LevelFilter)>,
    contains: Option<String>,
}

impl Filter {
    /// Add a directive, or replace the one for the same target.
    fn set(&mut self, target: &str, level: log::LevelFilter) {
        match self.directives.iter_mut().find(|d| d.0 == target) {
            Some(d) => d.1 = level,
            None => self.directives.push((target.to_string(), level)),
        }
    }

    /// Apply a `RUST_LOG` value; bad directives are reported on stderr and
    /// skipped, as env_logger does.
    fn parse(&mut self, spec: &str) {
        let mut parts = spec.split('/');
        let (mods, text) = (parts.next().unwrap_or(""), parts.next());
        if parts.next().is_some() {
            eprintln!("warning: invalid logging spec '{spec}' (too many '/'s), ignoring it");
            return;
        }
        for d in mods.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let mut kv = d.split('=');
            match (kv.next(), kv.next().map(str::trim), kv.next()) {
                (Some(t), None, None) => match t.parse() {
                    Ok(level) => self.set("", level),
                    Err(_) => self.set(t, log::LevelFilter::max()),
                },
                (Some(t), Some(""), None) => self.set(t, log::LevelFilter::max()),
                (Some(t), Some(level), None) => match level.parse() {
                    Ok(level) => self.set(t, level),
                    Err(_) => eprintln!("warning: invalid logging spec '{level}', ignoring it"),
                },
                _ => eprintln!("warning: invalid logging spec '{d}', ignoring it"),
            }
        }
        self.contains = text.map(str::to_string);
    }

    fn level(&self, target: &str) -> log::LevelFilter {
        self.directives
            .iter()
            .filter(|(t, _)| target.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len())
            .map_or(log::LevelFilter::Off, |d| d.1)
    }

    fn max_level(&self) -> log::LevelFilter {
        let levels = self.directives.iter().map(|d| d.1);
        levels.max().unwrap_or(log::LevelFilter::Off)
    }
}

/// One line per record, on stderr and into the [`LogBuffer`].
struct Logger {
    filter: Filter,
    buf: LogBuffer,
    /// Keeps a line's two copies in the same order among threads.
    write: Mutex<()>,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.filter.level(m.target())
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Some(text) = &self.filter.contains {
            if !r.args().to_string().contains(text.as_str()) {
                return;
            }
        }
        let line = format!(
            "{} {:<5} {}: {}\n",
            utc_timestamp(SystemTime::now()),
            r.level(),
            r.target().trim_start_matches("ironic_agent::"),
            scrub(r.args().to_string())
        );
        let _order = crate::util::lock(&self.write);
        self.buf.push(line.as_bytes());
        // The console may be gone (serial unplugged); the in-memory copy
        // must not fail because of it.
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The filter `init` installs: INFO (DEBUG with `debug`), the HTTP and TLS
/// stacks at WARN, refined by `rust_log`, ureq-proto at WARN whatever it
/// says.
fn filter(debug: bool, rust_log: Option<&str>) -> Filter {
    use log::LevelFilter::{Debug, Info, Warn};
    let mut f = Filter::default();
    f.set("", if debug { Debug } else { Info });
    // wire-level logs of the HTTP/TLS stacks may carry tokens
    f.set("ureq", Warn);
    f.set("ureq_proto", Warn);
    f.set("rustls", Warn);
    if let Some(spec) = rust_log {
        f.parse(spec);
    }
    f.set("ureq_proto", Warn);
    f
}

/// Install the logger. `RUST_LOG` refines the level when set.
pub fn init(debug: bool) -> LogBuffer {
    let buf = LogBuffer::new(512 * 1024);
    let filter = filter(debug, std::env::var("RUST_LOG").ok().as_deref());
    let max = filter.max_level();
    let logger = Logger {
        filter,
        buf: buf.clone(),
        write: Mutex::new(()),
    };
    // A second init (unit tests) is harmless.
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(max);
    }
    buf
}

/// Secrets (agent tokens) that no log line may contain.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Tokens shorter than this are not scrubbed by value (they would mangle
/// ordinary words); [`redact_url`] still keeps them out of request lines.
const MIN_SECRET: usize = 6;

/// From now on, replace `secret` with `***` wherever it appears in a log
/// record (console and the buffer `collect_system_logs` ships). The last
/// few secrets are kept: a token replaced by a new lookup stays secret.
pub fn add_secret(secret: &str) {
    if secret.len() < MIN_SECRET {
        return;
    }
    let mut v = crate::util::lock(&SECRETS);
    if !v.iter().any(|s| s == secret) {
        if v.len() >= 4 {
            v.remove(0);
        }
        v.push(secret.to_string());
    }
}

/// `msg` with every known secret replaced by `***`.
fn scrub(msg: String) -> String {
    let secrets = crate::util::lock(&SECRETS);
    let mut msg = msg;
    for s in secrets.iter() {
        if msg.contains(s.as_str()) {
            msg = msg.replace(s.as_str(), "***");
        }
    }
    msg
}

/// `data` with every known secret replaced by `***` (the log bundle's
/// files: process command lines, dmesg's kernel command line, ...).
pub fn scrub_bytes(data: &[u8]) -> Vec<u8> {
    let secrets = crate::util::lock(&SECRETS);
    let mut out = data.to_vec();
    for s in secrets.iter().map(|s| s.as_bytes()) {
        let (mut from, mut to) = (0, 0);
        while from < out.len() {
            if out[from..].starts_with(s) {
                out[to..to + 3].copy_from_slice(b"***");
                (from, to) = (from + s.len(), to + 3);
            } else {
                out[to] = out[from];
                (from, to) = (from + 1, to + 1);
            }
        }
        out.truncate(to);
    }
    out
}

/// A request target as it may be logged: the path percent-decoded up to
/// its first unusual character, then the query with `***` for every value
/// but `wait`'s and `...` for every key but `wait` and `agent_token`.
/// Whatever spelling a client uses for `agent_token` (any case,
/// percent-encoded, after `;` or an encoded `?`, as a bare key), the token
/// is not in the result.
pub fn redact_url(url: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/_.-~".contains(c);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = crate::util::percent_decode(path);
    let mut out: String = path.chars().take_while(|&c| plain(c)).take(200).collect();
    if out.len() < path.len() {
        out.push_str("...");
    }
    let mut sep = '?';
    for part in query.split(['&', ';']).filter(|p| !p.is_empty()) {
        out.push(sep);
        sep = '&';
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        let key = crate::util::percent_decode(k).to_ascii_lowercase();
        if key == "wait" || key == "agent_token" {
            out.push_str(&key);
        } else {
            out.push_str("...");
        }
        match v {
            None => {}
            Some(v) if key == "wait" => {
                let v = crate::util::percent_decode(v);
                if v.len() <= 8 && v.chars().all(|c| c.is_ascii_alphabetic()) {
                    out.push('=');
                    out.push_str(&v);
                } else {
                    out.push_str("=***");
                }
            }
            Some(_) => out.push_str("=***"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ring_keeps_tail() {
        let b = LogBuffer::new(8);
        b.push(b"hello ");
        b.push(b"world");
        assert_eq!(b.snapshot(), b"lo world");
        b.push(b"0123456789");
        assert_eq!(b.snapshot(), b"23456789");
    }

    #[test]
    fn filters_like_env_logger() {
        use log::LevelFilter::*;
        let f = filter(false, None);
        assert_eq!(f.level("ironic_agent::api"), Info);
        assert_eq!(f.level("ureq::unversioned"), Warn);
        assert_eq!(f.level("rustls::conn"), Warn);
        assert_eq!(f.max_level(), Info);
        assert_eq!(filter(true, None).level("ironic_agent"), Debug);
        let f = filter(
            false,
            Some("debug,rustls=error,ironic_agent::api,ureq_proto=trace"),
        );
        assert_eq!(f.level("ironic_agent::disk"), Debug);
        assert_eq!(f.level("ironic_agent::api::front"), Trace);
        assert_eq!(f.level("rustls::conn"), Error);
        assert_eq!(f.level("ureq"), Warn);
        assert_eq!(f.level("ureq_proto::client"), Warn);
        assert_eq!(f.max_level(), Trace);
        assert_eq!(f.contains, None);
        let f = filter(false, Some("OFF,x=bogus,a=b=c,ironic_agent::image=/stream"));
        assert_eq!(f.level("ironic_agent"), Off);
        assert_eq!(f.level("x"), Off);
        assert_eq!(f.level("ironic_agent::image::qcow2"), Trace);
        assert_eq!(f.contains.as_deref(), Some("stream"));
        // too many '/': the whole value is ignored
        let f = filter(false, Some("debug/a/b"));
        assert_eq!(f.level("ironic_agent"), Info);
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_764_057_600_123);
        assert_eq!(utc_timestamp(t), "2025-11-25 08:00:00.123");
    }

    #[test]
    fn redacts_every_spelling_of_a_token() {
        assert_eq!(
            redact_url("/v1/commands/?wait=true&agent_token=abc"),
            "/v1/commands/?wait=true&agent_token=***"
        );
        assert_eq!(redact_url("/v1/status"), "/v1/status");
        for (url, want) in [
            (
                "/v1/commands/?AGENT_TOKEN=s3cr3t",
                "/v1/commands/?agent_token=***",
            ),
            (
                "/v1/commands/?agent_%74oken=s3cr3t",
                "/v1/commands/?agent_token=***",
            ),
            (
                "/v1/commands/?wait=1;agent_token=s3cr3t",
                "/v1/commands/?wait=***&agent_token=***",
            ),
            ("/v1/commands/%3Fagent_token=s3cr3t", "/v1/commands/..."),
            (
                "/v1/commands/?x=1%3Fagent_token=s3cr3t",
                "/v1/commands/?...=***",
            ),
            ("/v1/commands/?s3cr3t", "/v1/commands/?..."),
            ("/v1/commands/?%73%33cr3t%26=1", "/v1/commands/?...=***"),
            ("/v1/commands/?wait=%74rue", "/v1/commands/?wait=true"),
            ("/v1/commands/s3cr3t%0a", "/v1/commands/s3cr3t..."),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn secrets_are_scrubbed_by_value() {
        add_secret("tok");
        add_secret("s3cr3t-value");
        assert_eq!(
            scrub("a s3cr3t-value b s3cr3t-value tok".into()),
            "a *** b *** tok"
        );
        for i in 0..5 {
            add_secret(&format!("another-secret-{i}"));
        }
        // the last four are kept
        assert_eq!(scrub("another-secret-4 another-secret-1".into()), "*** ***");
        assert_eq!(scrub("another-secret-0".into()), "another-secret-0");
        assert_eq!(
            scrub_bytes(b"x another-secret-4another-secret-4 y"),
            b"x ****** y"
        );
    }
}
