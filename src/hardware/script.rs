//! Script steps: clean, deploy and service steps a ramdisk builder adds
//! without recompiling the agent.
//!
//! Every executable `NAME` in the steps directory (`--steps-dir`, default
//! /etc/ironic-agent/steps.d, read through the root prefix) that has a
//! manifest `NAME.json` next to it becomes a step:
//!
//! ```json
//! {"step": "burnin_example_nic", "interface": "deploy", "priority": 0,
//!  "reboot_requested": false, "abortable": true,
//!  "argsinfo": {"seconds": {"description": "How long", "required": false}},
//!  "kind": ["clean", "service"], "timeout": 600}
//! ```
//!
//! Only `step` is required: `interface` defaults to "deploy", `priority`
//! to 0 (run only when asked for), the flags to false, `kind` to "clean"
//! (a kind or a list of kinds), `timeout` to 3600 seconds. Unknown keys,
//! bad types, a bad step name or a missing executable make the manifest
//! invalid: it is logged and skipped, and the other steps still load.
//!
//! The manager reports MAINLINE support when at least one manifest is
//! valid, so a script step wins over a generic step of the same name
//! (IPA's merge: support first), which is how a ramdisk can replace, say,
//! `erase_devices` with a vendor tool. Its version is "1.0-" followed by a
//! hash of the manifests, so that Ironic restarts cleaning if a different
//! set of steps appears mid-way (IPA's `clean_version` check).
//!
//! Running a step: the executable starts in the steps directory, in its
//! own process group, with `{"step", "kind", "node", "ports", "args"}` as
//! one line of JSON on stdin and `IRONIC_AGENT_STEP`/`IRONIC_AGENT_STEP_KIND`
//! in its environment. Exit status 0: stdout is the step's result, parsed
//! as JSON when it is JSON, else the trimmed text (empty: null). Any other
//! exit: the step fails with the kind's error class (CleaningError,
//! DeploymentError, ServicingError) and the end of stderr in the details.
//! When the timeout passes, the whole process group is killed and the step
//! fails. Processes the script leaves behind are killed when it exits.

use crate::config::Env;
use crate::error::{AgentError, Result};
use crate::hardware::{support, Step, StepCall, StepKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of stdout (the result) and stderr (the error) kept.
const OUTPUT_CAP: usize = 1 << 20;
/// Bytes of stderr quoted in an error.
const STDERR_TAIL: usize = 4096;
const DEFAULT_TIMEOUT: u64 = 3600;
const MAX_TIMEOUT: u64 = 7 * 24 * 3600;

/// One step backed by a script.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptStep {
    pub step: Step,
    pub kinds: Vec<StepKind>,
    pub path: PathBuf,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct ScriptHardwareManager {
    steps: Vec<ScriptStep>,
    dir: PathBuf,
    version: String,
}

fn kind_of(s: &str) -> Result<StepKind> {
    match s {
        "clean" => Ok(StepKind::Clean),
        "deploy" => Ok(StepKind::Deploy),
        "service" => Ok(StepKind::Service),
        _ => Err(AgentError::msg(format!(
            "kind must be clean, deploy or service, not {s:?}"
        ))),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Parse one manifest: the step, its kinds and its timeout.
pub fn parse_manifest(text: &str) -> Result<(Step, Vec<StepKind>, Duration)> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| AgentError::msg(format!("not JSON: {e}")))?;
    let m = v
        .as_object()
        .ok_or_else(|| AgentError::msg("not a JSON object"))?;
    const KEYS: [&str; 8] = [
        "step",
        "interface",
        "priority",
        "reboot_requested",
        "abortable",
        "argsinfo",
        "kind",
        "timeout",
    ];
    if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(AgentError::msg(format!("unknown key {k:?}")));
    }
    let name = m
        .get("step")
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::msg("\"step\" (a string) is required"))?;
    if !valid_name(name) {
        return Err(AgentError::msg(format!(
            "step name {name:?} must be lower-case letters, digits and underscores"
        )));
    }
    let interface = match m.get("interface") {
        None => "deploy",
        Some(Value::String(s)) if valid_name(s) => s.as_str(),
        Some(x) => {
            return Err(AgentError::msg(format!(
                "interface must be a name, not {x}"
            )))
        }
    };
    let priority = match m.get("priority") {
        None => 0,
        Some(x) => x.as_i64().filter(|p| *p >= 0).ok_or_else(|| {
            AgentError::msg(format!("priority must be a non-negative integer, not {x}"))
        })?,
    };
    let flag = |k: &str| -> Result<bool> {
        match m.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(x) => Err(AgentError::msg(format!(
                "{k} must be true or false, not {x}"
            ))),
        }
    };
    let mut step = Step::new(name, priority, interface);
    step.reboot_requested = flag("reboot_requested")?;
    let abortable = flag("abortable")?;
    if let Some(a) = m.get("argsinfo").filter(|a| !a.is_null()) {
        let args = a
            .as_object()
            .ok_or_else(|| AgentError::msg("argsinfo must be an object"))?;
        for (arg, info) in args {
            let ok = info.as_object().is_some_and(|i| {
                i.get("description").is_none_or(Value::is_string)
                    && i.get("required").is_none_or(Value::is_boolean)
            });
            if !ok {
                return Err(AgentError::msg(format!(
                    "argsinfo.{arg} must be {{\"description\": string, \"required\": bool}}"
                )));
            }
        }
        step = step.argsinfo(a.clone());
    }
    let kinds = match m.get("kind") {
        None => vec![StepKind::Clean],
        Some(Value::String(s)) => vec![kind_of(s)?],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|k| {
                k.as_str()
                    .ok_or_else(|| AgentError::msg("kind entries must be strings"))
                    .and_then(kind_of)
            })
            .collect::<Result<Vec<_>>>()?,
        Some(x) => {
            return Err(AgentError::msg(format!(
                "kind must be a kind or a list of kinds, not {x}"
            )))
        }
    };
    let timeout = match m.get("timeout") {
        None => DEFAULT_TIMEOUT,
        Some(x) => x
            .as_u64()
            .filter(|t| (1..=MAX_TIMEOUT).contains(t))
            .ok_or_else(|| {
                AgentError::msg(format!(
                    "timeout must be 1 to {MAX_TIMEOUT} seconds, not {x}"
                ))
            })?,
    };
    if abortable {
        step = step.abortable(true);
    }
    Ok((step, kinds, Duration::from_secs(timeout)))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl ScriptHardwareManager {
    pub fn load(env: &Env) -> Self {
        Self::load_dir(&env.root.path(&env.config.steps_dir))
    }

    /// Read every manifest in `dir` (sorted by name; invalid ones are
    /// logged and skipped; a second manifest for a step name already
    /// taken is skipped too).
    pub fn load_dir(dir: &Path) -> Self {
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect(),
            Err(_) => vec![],
        };
        crate::util::sort_small(&mut names);
        let mut steps: Vec<ScriptStep> = vec![];
        let mut hash = Sha256::new();
        for n in names {
            let manifest = dir.join(&n);
            let exe = dir.join(n.trim_end_matches(".json"));
            let loaded = std::fs::read_to_string(&manifest)
                .map_err(|e| AgentError::msg(format!("reading it: {e}")))
                .and_then(|t| {
                    if !is_executable(&exe) {
                        return Err(AgentError::msg(format!(
                            "{} is not an executable file",
                            exe.display()
                        )));
                    }
                    let parsed = parse_manifest(&t)?;
                    hash.update(n.as_bytes());
                    hash.update(t.as_bytes());
                    Ok(parsed)
                });
            match loaded {
                Ok((step, kinds, timeout)) => {
                    if steps.iter().any(|s| s.step.step == step.step) {
                        crate::util::log_at!(
                            Warn,
                            "script step manifest {}: step {} is already defined, skipped",
                            manifest.display(),
                            step.step
                        );
                        continue;
                    }
                    crate::util::log_at!(
                        Info,
                        "script step {} ({:?}) from {}",
                        step.step,
                        kinds,
                        exe.display()
                    );
                    steps.push(ScriptStep {
                        step,
                        kinds,
                        path: exe,
                        timeout,
                    });
                }
                Err(why) => crate::util::log_at!(
                    Warn,
                    "script step manifest {} is invalid, skipped: {}",
                    manifest.display(),
                    why.details
                ),
            }
        }
        let digest = hash.finalize();
        let version = format!(
            "1.0-{}",
            digest[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        ScriptHardwareManager {
            steps,
            dir: dir.to_path_buf(),
            version,
        }
    }

    pub fn version(&self) -> String {
        self.version.clone()
    }

    /// MAINLINE with at least one valid step, NONE without.
    pub fn evaluate_hardware_support(&self) -> u32 {
        if self.steps.is_empty() {
            support::NONE
        } else {
            support::MAINLINE
        }
    }

    pub fn get_steps(&self, kind: StepKind) -> Vec<Step> {
        self.steps
            .iter()
            .filter(|s| s.kinds.contains(&kind))
            .map(|s| {
                let mut step = s.step.clone();
                // IPA's deploy steps carry no "abortable"; clean and service
                // steps always do.
                step.abortable = match kind {
                    StepKind::Deploy => None,
                    _ => Some(step.abortable.unwrap_or(false)),
                };
                step
            })
            .collect()
    }

    pub fn execute_step(&self, _env: &Env, call: &StepCall) -> Option<Result<Value>> {
        let s = self.steps.iter().find(|s| s.step.step == call.step)?;
        Some(run(s, &self.dir, call))
    }
}

/// Read a pipe to the end, keeping at most `OUTPUT_CAP` bytes (the rest is
/// drained so that the script never blocks on a full pipe).
fn drain(mut r: impl Read) -> Vec<u8> {
    let mut kept = vec![];
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let s = s.trim();
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Run one script step (see the module documentation).
fn run(s: &ScriptStep, dir: &Path, call: &StepCall) -> Result<Value> {
    let name = &s.step.step;
    let fail = |why: String| {
        AgentError::new(
            call.kind.error_kind(),
            format!("Script step {name} ({}) {why}", s.path.display()),
        )
    };
    let input = json!({
        "step": call.step,
        "kind": call.kind.as_str(),
        "node": call.node,
        "ports": call.ports,
        "args": Value::Object(call.args.to_map()),
    })
    .to_string();
    crate::util::log_at!(Info, "running script step {name}: {}", s.path.display());
    let mut child = Command::new(&s.path)
        .current_dir(dir)
        .env("IRONIC_AGENT_STEP", name)
        .env("IRONIC_AGENT_STEP_KIND", call.kind.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let pgid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let started = Instant::now();
    let (status, out, err) = std::thread::scope(|sc| {
        // A script that never reads stdin must not block us: write it from
        // a thread and ignore EPIPE.
        sc.spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
        let out = sc.spawn(move || drain(stdout));
        let err = sc.spawn(move || drain(stderr));
        // Watch for the exit without reaping (the exited leader keeps its
        // PID, so its process group ID cannot be reused), kill whatever
        // the script leaves running (which also releases the pipes, so the
        // readers finish), then reap.
        let mut timed_out = false;
        loop {
            match crate::sys::process::child_exited(pgid) {
                Ok(true) => break,
                Ok(false) if started.elapsed() >= s.timeout => {
                    timed_out = true;
                    break;
                }
                Ok(false) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    crate::util::log_at!(Warn, "waiting for script step {name}: {e}");
                    break;
                }
            }
        }
        let _ = crate::sys::process::kill_process_group(pgid);
        let status = Some(child.wait());
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        (status.map(|s| (s, timed_out)), out, err)
    });
    let (status, timed_out) = match status {
        Some((Ok(st), t)) => (st, t),
        Some((Err(e), _)) => return Err(fail(format!("could not be waited for: {e}"))),
        None => unreachable!("the loop ends with a status"),
    };
    let err = String::from_utf8_lossy(&err).into_owned();
    if !err.trim().is_empty() {
        crate::util::log_at!(
            Info,
            "script step {name} stderr: {}",
            tail(&err, STDERR_TAIL)
        );
    }
    if timed_out {
        return Err(fail(format!(
            "timed out after {} s and was killed",
            s.timeout.as_secs()
        )));
    }
    if !status.success() {
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "failed".to_string(),
        };
        let e = tail(&err, STDERR_TAIL);
        return Err(fail(if e.is_empty() {
            how
        } else {
            format!("{how}: {e}")
        }));
    }
    let text = String::from_utf8_lossy(&out);
    let text = text.trim();
    crate::util::log_at!(
        Info,
        "script step {name} succeeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use serde_json::Map;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("script-steps-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(d: &Path, name: &str, body: &str, manifest: &str, exec: bool) {
        let p = d.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if !manifest.is_empty() {
            std::fs::write(d.join(format!("{name}.json")), manifest).unwrap();
        }
    }

    fn call<'a>(
        kind: StepKind,
        step: &'a str,
        node: &'a Value,
        args: &'a Map<String, Value>,
    ) -> StepCall<'a> {
        StepCall {
            kind,
            step,
            node,
            ports: node,
            args: args.into(),
        }
    }

    #[test]
    fn manifests_parse_with_defaults_and_strictness() {
        let (s, k, t) = parse_manifest(r#"{"step": "a_step"}"#).unwrap();
        assert_eq!(
            (s.step.as_str(), s.priority, s.interface.as_str()),
            ("a_step", 0, "deploy")
        );
        assert!(!s.reboot_requested && s.abortable.is_none() && s.argsinfo.is_none());
        assert_eq!((k, t), (vec![StepKind::Clean], Duration::from_secs(3600)));
        let (s, k, t) = parse_manifest(
            r#"{"step": "flash", "interface": "bios", "priority": 90, "reboot_requested": true,
                "abortable": true, "kind": ["clean", "service"], "timeout": 5,
                "argsinfo": {"v": {"description": "d", "required": true}}}"#,
        )
        .unwrap();
        assert_eq!(
            (s.priority, s.reboot_requested, s.abortable),
            (90, true, Some(true))
        );
        assert_eq!(k, vec![StepKind::Clean, StepKind::Service]);
        assert_eq!(t, Duration::from_secs(5));
        for (bad, why) in [
            ("[]", "object"),
            ("{", "JSON"),
            (r#"{"interface": "deploy"}"#, "required"),
            (r#"{"step": "Bad Name"}"#, "lower-case"),
            (r#"{"step": "s", "prority": 1}"#, "unknown key"),
            (r#"{"step": "s", "priority": -1}"#, "non-negative"),
            (
                r#"{"step": "s", "kind": "rescue"}"#,
                "clean, deploy or service",
            ),
            (r#"{"step": "s", "kind": []}"#, "list of kinds"),
            (r#"{"step": "s", "timeout": 0}"#, "timeout"),
            (r#"{"step": "s", "abortable": "yes"}"#, "true or false"),
            (r#"{"step": "s", "argsinfo": {"a": 1}}"#, "argsinfo.a"),
        ] {
            let e = parse_manifest(bad).unwrap_err();
            assert!(e.details.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn loading_skips_invalid_manifests() {
        let d = dir("load");
        script(
            &d,
            "good",
            "echo ok",
            r#"{"step": "good_step", "kind": "clean"}"#,
            true,
        );
        script(
            &d,
            "both",
            "echo ok",
            r#"{"step": "both_step", "kind": ["deploy", "service"], "abortable": true}"#,
            true,
        );
        script(&d, "broken", "echo", "{not json", true);
        script(&d, "noexec", "echo", r#"{"step": "noexec_step"}"#, false);
        script(&d, "dup", "echo", r#"{"step": "good_step"}"#, true);
        script(&d, "nomanifest", "echo", "", true);
        std::fs::write(d.join("orphan.json"), r#"{"step": "orphan"}"#).unwrap();
        let m = ScriptHardwareManager::load_dir(&d);
        let names: Vec<&str> = m.steps.iter().map(|s| s.step.step.as_str()).collect();
        assert_eq!(names, vec!["both_step", "good_step"]);
        assert_eq!(m.evaluate_hardware_support(), support::MAINLINE);
        assert!(m.version().starts_with("1.0-") && m.version().len() == 12);
        let clean = m.get_steps(StepKind::Clean);
        assert_eq!(clean.len(), 1);
        assert_eq!(clean[0].abortable, Some(false));
        let deploy = m.get_steps(StepKind::Deploy);
        assert_eq!(deploy[0].step, "both_step");
        assert_eq!(deploy[0].abortable, None, "deploy steps carry no abortable");
        assert_eq!(m.get_steps(StepKind::Service)[0].abortable, Some(true));
        let empty = ScriptHardwareManager::load_dir(&d.join("none"));
        assert_eq!(empty.evaluate_hardware_support(), support::NONE);
        std::fs::remove_dir_all(d).unwrap();
    }

    fn agent() -> crate::config::OwnedEnv {
        let cfg = crate::config::Config {
            root: std::env::temp_dir().join("script-steps-no-root"),
            standalone: true,
            ..Default::default()
        };
        crate::config::OwnedEnv::new(cfg)
    }

    #[test]
    fn node_ports_and_args_in_result_out() {
        let d = dir("run");
        script(
            &d,
            "echo_json",
            r#"read -r input; printf '{"got": %s, "env": "%s"}\n' "$input" "$IRONIC_AGENT_STEP_KIND""#,
            r#"{"step": "echo_json"}"#,
            true,
        );
        script(
            &d,
            "text",
            "echo '  hello world  '",
            r#"{"step": "text"}"#,
            true,
        );
        script(&d, "quiet", "exit 0", r#"{"step": "quiet"}"#, true);
        let m = ScriptHardwareManager::load_dir(&d);
        let a = agent();
        let node = json!({"uuid": "n-1", "properties": {"x": [1, 2]}});
        let args = json!({"level": 3}).as_object().unwrap().clone();
        let v = m
            .execute_step(
                &a.env(),
                &call(StepKind::Service, "echo_json", &node, &args),
            )
            .unwrap()
            .unwrap();
        assert_eq!(v["got"]["node"], node);
        assert_eq!(v["got"]["args"]["level"], 3);
        assert_eq!(v["got"]["step"], "echo_json");
        assert_eq!(v["env"], "service");
        let v = m
            .execute_step(&a.env(), &call(StepKind::Clean, "text", &node, &args))
            .unwrap()
            .unwrap();
        assert_eq!(v, json!("hello world"));
        let v = m
            .execute_step(&a.env(), &call(StepKind::Clean, "quiet", &node, &args))
            .unwrap()
            .unwrap();
        assert_eq!(v, Value::Null);
        assert!(m
            .execute_step(&a.env(), &call(StepKind::Clean, "not_ours", &node, &args))
            .is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn failures_carry_stderr_and_the_kinds_error_class() {
        let d = dir("fail");
        script(
            &d,
            "fails",
            "echo 'some progress'; echo 'flash tool: device busy' >&2; exit 3",
            r#"{"step": "fails", "kind": ["clean", "deploy"]}"#,
            true,
        );
        let m = ScriptHardwareManager::load_dir(&d);
        let a = agent();
        let node = json!({});
        let args = Map::new();
        let e = m
            .execute_step(&a.env(), &call(StepKind::Clean, "fails", &node, &args))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, Kind::CleaningError);
        assert!(
            e.details
                .ends_with("exited with status 3: flash tool: device busy"),
            "{}",
            e.details
        );
        let e = m
            .execute_step(&a.env(), &call(StepKind::Deploy, "fails", &node, &args))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, Kind::DeploymentError);
        std::fs::remove_dir_all(d).unwrap();
    }

    fn alive(pid: &str) -> bool {
        Path::new(&format!("/proc/{}", pid.trim())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .unwrap_or_default()
                .contains(") Z ")
    }

    /// The kill is sent; the process may take a moment to be reaped.
    fn gone(pid: &str) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let d = dir("timeout");
        script(
            &d,
            "hangs",
            "sleep 60 & echo $! > child.pid; sleep 60",
            r#"{"step": "hangs", "timeout": 3}"#,
            true,
        );
        script(
            &d,
            "leaves_a_child",
            "sleep 60 & echo $! > left.pid; echo done",
            r#"{"step": "leaves_a_child"}"#,
            true,
        );
        let m = ScriptHardwareManager::load_dir(&d);
        let a = agent();
        let node = json!({});
        let args = Map::new();
        let t = Instant::now();
        let e = m
            .execute_step(&a.env(), &call(StepKind::Clean, "hangs", &node, &args))
            .unwrap()
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(
            e.details.ends_with("timed out after 3 s and was killed"),
            "{}",
            e.details
        );
        // (3 s: a loaded machine still starts the child before the kill)
        let pid = std::fs::read_to_string(d.join("child.pid")).unwrap();
        assert!(pid.trim().parse::<u32>().is_ok(), "child.pid: {pid:?}");
        assert!(gone(&pid), "background child {pid} survived");
        // a finished script's leftovers are killed too, and do not hold
        // the step open
        let t = Instant::now();
        let v = m
            .execute_step(
                &a.env(),
                &call(StepKind::Clean, "leaves_a_child", &node, &args),
            )
            .unwrap()
            .unwrap();
        assert_eq!(v, json!("done"));
        assert!(t.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(d.join("left.pid")).unwrap();
        assert!(gone(&pid), "left-over child {pid} survived");
        std::fs::remove_dir_all(d).unwrap();
    }
}
