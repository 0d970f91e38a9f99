//! The `inject_files` deploy/service step (IPA's `inject_files.py`): write,
//! replace or delete files inside a partition of the install disk. The
//! partition is mounted with mount(2) (the kernel does the filesystem
//! work; the type is probed from the superblock), which needs a real block
//! device: on a fixture root whose disks are regular files the step fails
//! with a clear message instead of pretending.

use crate::disk::{self, Found};
use crate::error::{AgentError, Kind, Result};
use crate::hardware::Host;
use crate::hardware::StepCall;
use serde_json::{Map, Value};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const KNOWN: [&str; 8] = [
    "path",
    "partition",
    "content",
    "deleted",
    "mode",
    "dirmode",
    "owner",
    "group",
];

/// IPA's `_validate_files`, with its messages (a file is shown as IPA
/// shows it, its long strings elided: [`crate::util::elided`]). The files
/// are read in place: their contents can be tens of MiB.
pub fn validate_files<'a>(
    from_properties: &'a Value,
    from_args: &'a Value,
) -> Result<Vec<&'a Map<String, Value>>> {
    let type_name = |v: &Value| match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    let props: &[Value] = match from_properties {
        Value::Null => &[],
        Value::Array(a) => a,
        other => {
            return Err(AgentError::invalid_params(format!(
                "The `inject_files` node property must be a list, got {}",
                type_name(other)
            )))
        }
    };
    let args: &[Value] = match from_args {
        Value::Null => &[],
        Value::Array(a) => a,
        other => {
            return Err(AgentError::invalid_params(format!(
                "The `files` argument must be a list, got {}",
                type_name(other)
            )))
        }
    };
    let mut failures = Vec::new();
    let mut files = Vec::new();
    for v in props.iter().chain(args) {
        let Value::Object(fl) = v else {
            failures.push(format!("expected a dict, got {}", crate::util::elided(v)));
            continue;
        };
        let shown = || shown(fl);
        let unknown: Vec<&str> = fl
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN.contains(k))
            .collect();
        if !unknown.is_empty() {
            failures.push(format!(
                "unexpected fields in {}: {}",
                shown(),
                unknown.join(", ")
            ));
        }
        let path = fl.get("path").and_then(Value::as_str).unwrap_or("");
        let has_partition = fl.get("partition").is_some_and(truthy);
        if path.is_empty() {
            failures.push(format!("expected a path in {}", shown()));
        } else if parent(path) == "/" && !has_partition {
            failures.push(format!(
                "{} in root directory requires \"partition\"",
                shown()
            ));
        } else if path.ends_with('/') {
            failures.push(format!("directories not supported for {}", shown()));
        }
        if fl.get("content").is_some_and(truthy) && fl.get("deleted").is_some_and(truthy) {
            failures.push(format!(
                "content cannot be used with deleted in {}",
                shown()
            ));
        }
        for field in ["owner", "group", "mode", "dirmode"] {
            if let Some(v) = fl.get(field) {
                if !(v.is_i64() || v.is_u64()) {
                    failures.push(format!("{field} must be a number in {}", shown()));
                }
            }
        }
        files.push(fl);
    }
    if !failures.is_empty() {
        return Err(AgentError::invalid_params(format!(
            "Validation of files failed: {}",
            failures.join("; ")
        )));
    }
    Ok(files)
}

/// A file as IPA's messages show it (its dict), long strings elided.
fn shown(fl: &Map<String, Value>) -> String {
    crate::util::elided_map(fl).to_string()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `os.path.dirname`.
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

/// Python's `str.format(node=node, ports=ports)` for the forms a deploy
/// template uses: `{node[uuid]}`, `{node[properties][x]}`,
/// `{ports[0][address]}`; `{{` and `}}` are literal braces.
pub fn format_url(url: &str, node: &Value, ports: &Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if rest[i + 1..].starts_with(c as char) {
            out.push(c as char);
            rest = &rest[i + 2..];
            continue;
        }
        if c == b'}' {
            return Err(AgentError::execution(format!(
                "Single '}}' encountered in format string {url}"
            )));
        }
        let end = rest[i..]
            .find('}')
            .ok_or_else(|| AgentError::execution(format!("unmatched '{{' in {url}")))?;
        let field = &rest[i + 1..i + end];
        let (base, keys) = field.split_once('[').unwrap_or((field, ""));
        let mut v = match base {
            "node" => node,
            "ports" => ports,
            _ => {
                return Err(AgentError::execution(format!(
                    "unknown field {base:?} in {url}"
                )))
            }
        };
        let keys = if keys.is_empty() {
            String::new()
        } else {
            format!("[{keys}")
        };
        for k in keys.split('[').filter(|k| !k.is_empty()) {
            let k = k.trim_end_matches(']');
            v = match v {
                Value::Array(a) => k.parse::<usize>().ok().and_then(|n| a.get(n)),
                Value::Object(o) => o.get(k),
                _ => None,
            }
            .ok_or_else(|| AgentError::execution(format!("{field} not found for {url}")))?;
        }
        match v {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

static MOUNTS: AtomicUsize = AtomicUsize::new(0);

/// A partition mounted on a temporary directory; unmounted on drop.
struct Mounted {
    dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        crate::sys::sync_all_filesystems();
        if let Err(e) = crate::sys::umount(&self.dir) {
            crate::util::log_at!(Error, "unmounting {}: {e}", self.dir.display());
        } else {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// IPA's `utils.mounted`: mount `dev` (a machine path such as /dev/sda2)
/// with the type read from its superblock.
fn mount(host: &Host, dev: &str) -> Result<Mounted> {
    let path = host.env.root.path(dev);
    let fail = |why: String| {
        AgentError::new(
            Kind::CommandExecutionError,
            format!("Unable to mount {dev}: {why}"),
        )
    };
    let f = File::open(&path).map_err(|e| fail(e.to_string()))?;
    if !crate::sys::is_block_device(&f) {
        return Err(fail(
            "not a block device (a fixture root's disks are regular files, which cannot be \
             mounted without a loop device)"
                .into(),
        ));
    }
    let size = crate::sys::block_device_size(&f).map_err(|e| fail(e.to_string()))?;
    let info = crate::fs::blkid::probe_fs(&f, 0, size).ok_or_else(|| {
        fail("no filesystem this agent recognises (ext2/3/4, xfs, btrfs, vfat, iso9660)".into())
    })?;
    let fstype = match info.fstype {
        "ext2" | "ext3" | "ext4" => "ext4",
        "swap" => return Err(fail("it is a swap area".into())),
        t => t,
    };
    let n = MOUNTS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ironic-agent-mnt-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    if let Err(e) = crate::sys::mount(&path, &dir, fstype) {
        let _ = fs::remove_dir(&dir);
        return Err(fail(format!("mount -t {fstype}: {e}")));
    }
    Ok(Mounted { dir })
}

/// IPA's `_find_and_mount_path`: the mount and the file's full path in it.
fn find_and_mount(
    host: &Host,
    path: &str,
    partition: Option<&Value>,
) -> Result<(Mounted, PathBuf)> {
    let rel = path.trim_matches('/');
    match partition.filter(|p| truthy(p)) {
        Some(p) => {
            let number = match p {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            let dev = match number {
                Some(n) => {
                    let root = host.install_device()?;
                    // IPA's template: "p" only for NVMe names
                    if root.contains("nvme") {
                        format!("{root}p{n}")
                    } else {
                        format!("{root}{n}")
                    }
                }
                None => p.as_str().unwrap_or_default().to_string(),
            };
            let m = mount(host, &dev)?;
            let full = m.dir.join(rel);
            Ok((m, full))
        }
        None => {
            let (detect, rest) = rel.split_once('/').ok_or_else(|| {
                AgentError::invalid_params(format!(
                    "Invalid path {rel}, must be an absolute path to a file"
                ))
            })?;
            let root = host.install_device()?;
            let file = File::open(host.env.root.path(&root)).map_err(|e| {
                AgentError::io(Kind::CommandExecutionError, format!("opening {root}"), e)
            })?;
            let geom = disk::geometry(host.env.root, Path::new(&root), &file)?;
            let parts = match disk::read_table(&file, geom) {
                Found::Table(t) => t.partitions,
                _ => vec![],
            };
            let mut scanned = Vec::new();
            for p in &parts {
                let dev = if root.contains("nvme") {
                    format!("{root}p{}", p.number)
                } else {
                    format!("{root}{}", p.number)
                };
                scanned.push(dev.clone());
                match mount(host, &dev) {
                    Ok(m) => {
                        if m.dir.join(detect).is_dir() {
                            crate::util::log_at!(
                                Info,
                                "Path {detect} has been found on partition {dev}"
                            );
                            let full = m.dir.join(detect).join(rest);
                            return Ok((m, full));
                        }
                    }
                    Err(e) => {
                        crate::util::log_at!(Warn, "Failure when inspecting partition {dev}: {e}")
                    }
                }
            }
            Err(AgentError::device_not_found(format!(
                "No partition found with path {detect}, scanned: {scanned:?}"
            )))
        }
    }
}

/// The largest file content fetched from a URL.
const MAX_URL_CONTENT: u64 = 256 << 20;

/// Write `content` into `full`, as IPA's `open(path, 'wb')` then a write
/// of the base64-decoded content or of the URL's body, chunk by chunk:
/// both streamed, never whole in memory. Base64 is checked before the file
/// is opened (IPA opens it first, leaving it empty on bad base64).
fn write_content(host: &Host, call: &StepCall, full: &Path, content: &str) -> Result<()> {
    let io_err = |e: std::io::Error| AgentError::execution(format!("OSError: {e}"));
    if !content.contains("://") {
        if !crate::util::base64_valid(content.as_bytes()) {
            return Err(AgentError::execution("content is not valid base64"));
        }
        let mut f = File::create(full).map_err(io_err)?;
        let mut r = crate::util::Base64Reader::new(content.as_bytes());
        std::io::copy(&mut r, &mut f).map_err(io_err)?;
        return Ok(());
    }
    let url = format_url(content, call.node, call.ports)?;
    let mut config = host.env.config.clone();
    if call.args.get("verify_ca") == Some(&Value::Bool(false)) {
        config.insecure = true;
    }
    let tls = crate::tls::client_tls(&config)?;
    let http = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(
                host.env.config.image_download_connection_timeout.max(1) * 5,
            )))
            .build(),
    );
    let resp = http
        .get(&url)
        .call()
        .map_err(|e| AgentError::execution(format!("downloading {url}: {e}")))?;
    let mut body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_URL_CONTENT)
        .reader();
    let mut f = File::create(full).map_err(io_err)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(AgentError::execution(format!("downloading {url}: {e}"))),
        };
        f.write_all(&buf[..n]).map_err(io_err)?;
    }
}

fn inject_one(host: &Host, call: &StepCall, fl: &Map<String, Value>) -> Result<()> {
    let path = fl.get("path").and_then(Value::as_str).unwrap_or_default();
    let (_mounted, full) = find_and_mount(host, path, fl.get("partition"))?;
    if fl.get("deleted").is_some_and(truthy) {
        let _ = fs::remove_file(&full);
        return Ok(());
    }
    let wrap =
        |e: String| AgentError::execution(format!("Failed to process file {}. {e}", shown(fl)));
    let dir = full.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| wrap(format!("OSError: {e}")))?;
        if let Some(m) = fl.get("dirmode").and_then(Value::as_u64) {
            fs::set_permissions(dir, fs::Permissions::from_mode(m as u32))
                .map_err(|e| wrap(format!("OSError: {e}")))?;
        }
    }
    let content = fl.get("content").and_then(Value::as_str).unwrap_or("");
    write_content(host, call, &full, content).map_err(|e| wrap(e.into_details()))?;
    if let Some(m) = fl.get("mode").and_then(Value::as_u64) {
        fs::set_permissions(&full, fs::Permissions::from_mode(m as u32))
            .map_err(|e| wrap(format!("OSError: {e}")))?;
    }
    let id = |k: &str| {
        fl.get(k)
            .and_then(Value::as_i64)
            .filter(|&v| v >= 0)
            .map(|v| v as u32)
    };
    if id("owner").is_some() || id("group").is_some() {
        std::os::unix::fs::chown(&full, id("owner"), id("group"))
            .map_err(|e| wrap(format!("OSError: {e}")))?;
    }
    Ok(())
}

/// The `inject_files` step. Returns null, as IPA.
pub fn inject_files(host: &Host, call: &StepCall) -> Result<Value> {
    let from_props = call
        .node
        .pointer("/properties/inject_files")
        .filter(|v| truthy(v))
        .unwrap_or(&Value::Null);
    let files = validate_files(from_props, call.args.get("files").unwrap_or(&Value::Null))?;
    if files.is_empty() {
        crate::util::log_at!(Info, "No files to inject");
        return Ok(Value::Null);
    }
    for fl in files {
        inject_one(host, call, fl)?;
    }
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_like_ipa() {
        let files = json!([{"path": "/etc/x.conf", "content": "eA=="}]);
        let ok = validate_files(&Value::Null, &files).unwrap();
        assert_eq!(ok.len(), 1);
        // a long content is not repeated in the message
        let long = json!([{"path": "/x", "content": "eA==".repeat(20_000)}]);
        let e = validate_files(&Value::Null, &long).unwrap_err();
        assert!(
            e.details
                .contains(r#""content":"<80000 bytes, not echoed>""#),
            "{}",
            e.details
        );
        let e = validate_files(&json!({}), &Value::Null).unwrap_err();
        assert_eq!(
            e.details,
            "The `inject_files` node property must be a list, got dict"
        );
        let e = validate_files(
            &Value::Null,
            &json!([{"path": "/x", "bogus": 1, "mode": "644"},
                    {"path": "/etc/", "partition": 1},
                    {"content": "x", "deleted": true}]),
        )
        .unwrap_err();
        assert_eq!(e.kind, Kind::InvalidCommandParamsError);
        let d = e.into_details();
        assert!(d.starts_with("Validation of files failed: "), "{d}");
        assert!(d.contains("unexpected fields in"), "{d}");
        assert!(
            d.contains("in root directory requires \"partition\""),
            "{d}"
        );
        assert!(d.contains("mode must be a number"), "{d}");
        assert!(d.contains("directories not supported"), "{d}");
        assert!(d.contains("expected a path"), "{d}");
        assert!(d.contains("content cannot be used with deleted"), "{d}");
    }

    #[test]
    fn url_templates() {
        let node = json!({"uuid": "n1", "properties": {"x": 5}});
        let ports = json!([{"address": "52:54:00:00:00:01"}]);
        assert_eq!(
            format_url(
                "http://s/{node[uuid]}/{ports[0][address]}/{node[properties][x]}/{{}}",
                &node,
                &ports
            )
            .unwrap(),
            "http://s/n1/52:54:00:00:00:01/5/{}"
        );
        assert!(format_url("http://s/{node[nope]}", &node, &ports).is_err());
        assert!(format_url("http://s/{other}", &node, &ports).is_err());
        assert!(format_url("http://s/}", &node, &ports).is_err());
    }
}
