//! The `log` extension: `collect_system_logs` returns a base64 tar.gz of the
//! agent's own log, the kernel log and listings of mounts, RAID, block
//! devices and network, all read from /proc, /sys and /dev and archived
//! in-process (IPA runs journalctl, dmesg, lsblk, ip, ... instead). Ironic
//! stores it when a deploy or clean fails.

use super::Params;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Keep each file's tail under this size so the bundle stays small enough
/// for Ironic's API (and our RAM).
const MAX_FILE: usize = 2 << 20;

/// A minimal ustar writer (POSIX.1-1988): one 512-byte header per regular
/// file, data padded to 512, two zero blocks at the end.
struct Tar<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> Tar<W> {
    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        // the token can be anywhere: a process's command line, the kernel
        // command line in dmesg, the console log
        let data = &crate::logbuf::scrub_bytes(data);
        let mut h = [0u8; 512];
        let name = name.as_bytes();
        h[..name.len().min(99)].copy_from_slice(&name[..name.len().min(99)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", self.mtime).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        let pad = (512 - data.len() % 512) % 512;
        self.out.write_all(&vec![0u8; pad])
    }

    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

fn tail(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() > MAX_FILE {
        data.drain(..data.len() - MAX_FILE);
    }
    data
}

/// The last [`MAX_FILE`] bytes of a file, read without holding more than
/// twice that (a console log grows with every boot; /proc files have no
/// size to seek by).
fn read_tail(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_FILE as u64 {
        f.seek(SeekFrom::Start(len - MAX_FILE as u64))?;
    }
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(tail(data)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        data.extend_from_slice(&buf[..n]);
        if data.len() > 2 * MAX_FILE {
            data = tail(data);
        }
    }
}

/// The kernel log from /dev/kmsg (non-blocking read of every record), as
/// "[seconds.micros] message" lines.
fn dmesg(agent: &Agent) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(agent.root.path("/dev/kmsg"))
        .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // "prio,seq,usec,flags;message\n"
                let rec = String::from_utf8_lossy(&buf[..n]);
                let (meta, msg) = rec.split_once(';').unwrap_or(("", &rec));
                let usec: u64 = meta
                    .split(',')
                    .nth(2)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let msg = msg.lines().next().unwrap_or("");
                out.extend_from_slice(
                    format!("[{:5}.{:06}] {msg}\n", usec / 1_000_000, usec % 1_000_000).as_bytes(),
                );
            }
            // EPIPE: a record was overwritten while reading; keep going
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
        if out.len() > 4 * MAX_FILE {
            break;
        }
    }
    Some(tail(out))
}

fn processes(agent: &Agent) -> Vec<u8> {
    let mut out = String::from("  PID STATE COMMAND\n");
    for pid in agent
        .root
        .list("/proc")
        .into_iter()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        let cmd = std::fs::read(agent.root.path(format!("/proc/{pid}/cmdline")))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let stat = agent
            .root
            .read(format!("/proc/{pid}/stat"))
            .unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .map(|(_, r)| r.chars().next().unwrap_or('?'))
            .unwrap_or('?');
        out += &format!("{pid:>5} {state}     {cmd}\n");
    }
    out.into_bytes()
}

/// The tar.gz as base64 text, encoded as it is compressed (the bundle is
/// never in memory as bytes and as text at once).
pub fn bundle_base64(agent: &Agent) -> io::Result<String> {
    bundle_into(agent, crate::util::Base64Writer::default()).map(|w| w.finish())
}

/// Write the tar.gz to `out`.
fn bundle_into<W: Write>(agent: &Agent, out: W) -> io::Result<W> {
    if let Some(t) = agent.token() {
        crate::logbuf::add_secret(&t);
    }
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let gz = crate::util::gzip::Encoder::new(out, flate2::Compression::default())?;
    let mut tar = Tar { out: gz, mtime };
    tar.append("ironic-agent.log", &tail(agent.log.snapshot()))?;
    // The ramdisk's /init keeps the console output of every agent run here.
    if let Ok(b) = read_tail(&agent.root.path("/run/ironic-agent/console.log")) {
        tar.append("console.log", &b)?;
    }
    if let Some(d) = dmesg(agent) {
        tar.append("dmesg", &d)?;
    }
    for (name, path) in [
        ("mount", "/proc/mounts"),
        ("mdstat", "/proc/mdstat"),
        ("partitions", "/proc/partitions"),
        ("meminfo", "/proc/meminfo"),
        ("net_dev", "/proc/net/dev"),
        ("net_route", "/proc/net/route"),
        ("net_if_inet6", "/proc/net/if_inet6"),
    ] {
        if let Ok(b) = read_tail(&agent.root.path(path)) {
            tar.append(name, &b)?;
        }
    }
    // The cmdline may carry ipa-agent-token: never ship it.
    if let Some(c) = agent.root.read("/proc/cmdline") {
        let redacted: Vec<String> = c
            .split_whitespace()
            .map(|w| {
                if w.starts_with("ipa-agent-token=") {
                    "ipa-agent-token=***".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        tar.append("cmdline", format!("{}\n", redacted.join(" ")).as_bytes())?;
    }
    let disks = crate::disk::list::list_block_devices(&agent.root, true)
        .map(|d| serde_json::to_vec_pretty(&d).unwrap_or_default())
        .unwrap_or_else(|e| format!("listing block devices: {e}\n").into_bytes());
    tar.append("lsblk.json", &disks)?;
    let nics = crate::hardware::generic::collect::list_hardware_info(&agent.env())
        .map(|i| {
            serde_json::to_vec_pretty(&json!({"interfaces": i.interfaces})).unwrap_or_default()
        })
        .unwrap_or_else(|e| format!("listing interfaces: {e}\n").into_bytes());
    tar.append("ip_addr.json", &nics)?;
    tar.append("ps", &processes(agent))?;
    tar.finish()?.finish()
}

pub fn collect_system_logs(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    let text = bundle_base64(agent)
        .map_err(|e| AgentError::execution(format!("building the log bundle: {e}")))?;
    crate::util::log_at!(
        Info,
        "collected system logs: {} bytes compressed",
        text.len() / 4 * 3
    );
    Ok(json!({"system_logs": text}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_s_tail_is_read() {
        let dir = std::env::temp_dir().join(format!("ia-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("console.log");
        let data: Vec<u8> = (0..(5 * MAX_FILE as u32 + 7)).map(|i| i as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert_eq!(read_tail(&p).unwrap(), data[data.len() - MAX_FILE..]);
        std::fs::write(&p, b"short").unwrap();
        assert_eq!(read_tail(&p).unwrap(), b"short");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tar_layout() {
        let mut t = Tar {
            out: Vec::new(),
            mtime: 0,
        };
        t.append("a.txt", b"hello").unwrap();
        let v = t.finish().unwrap();
        assert_eq!(v.len(), 512 + 512 + 1024);
        assert_eq!(&v[..5], b"a.txt");
        assert_eq!(&v[257..262], b"ustar");
        assert_eq!(&v[512..517], b"hello");
        // checksum field is six octal digits, NUL, space
        let sum: u32 = v[..512]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        assert_eq!(
            std::str::from_utf8(&v[148..154]).unwrap(),
            format!("{sum:06o}")
        );
    }
}
