//! Logging: one line per record on stderr (the console on a ramdisk), and a
//! copy of the most recent lines in memory so `log.collect_system_logs` can
//! ship the agent's own log without a log file.
//!
//! Level contract (as ureq documents its own): ERROR = a command or the
//! Ironic conversation failed; WARN = an operator configuration problem or a
//! retried fault; INFO = state changes an operator follows on the console
//! (lookup, heartbeats that change something, commands started/finished);
//! DEBUG = requests and decisions. Tokens are never logged at any level; the
//! HTTP libraries' own wire logging is capped at INFO for that reason.

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

/// UTC "YYYY-MM-DD hh:mm:ss.mmm" without a date crate.
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = crate::util::civil_utc(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}",
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
                r.args()
            )
        });
    // A second init (unit tests) is harmless.
    let _ = b.try_init();
    buf
}

/// Replace the value of `agent_token` (and anything that looks like a
/// credential) in a URL or query string with `***`.
pub fn redact_query(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _))
                if k.contains("token") || k.contains("password") || k.contains("secret") =>
            {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", q.join("&"))
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
    fn redacts() {
        assert_eq!(
            redact_query("/v1/commands/?wait=true&agent_token=abc"),
            "/v1/commands/?wait=true&agent_token=***"
        );
        assert_eq!(redact_query("/v1/status"), "/v1/status");
    }
}
