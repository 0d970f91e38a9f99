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

struct Tee(LogBuffer);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        // The console may be gone (serial unplugged); the in-memory copy
        // must not fail because of it.
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// UTC "YYYY-MM-DD hh:mm:ss.mmm" without a date crate (Howard Hinnant's
/// days-to-civil algorithm).
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Install the logger. `RUST_LOG` refines the level when set.
pub fn init(debug: bool) -> LogBuffer {
    let buf = LogBuffer::new(512 * 1024);
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(level)
        // wire-level logs of the HTTP/TLS stacks may carry tokens
        .filter_module("ureq", log::LevelFilter::Warn)
        .filter_module("ureq_proto", log::LevelFilter::Warn)
        .filter_module("rustls", log::LevelFilter::Warn)
        .parse_env("RUST_LOG")
        .filter_module("ureq_proto", log::LevelFilter::Warn)
        .target(env_logger::Target::Pipe(Box::new(Tee(buf.clone()))))
        .format(|f, r| {
            writeln!(
                f,
                "{} {:<5} {}: {}",
                utc_timestamp(SystemTime::now()),
                r.level(),
                r.target().trim_start_matches("ironic_agent::"),
                scrub(r.args().to_string())
            )
        });
    // A second init (unit tests) is harmless.
    let _ = b.try_init();
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
