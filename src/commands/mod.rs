//! The command engine: `ext.cmd` dispatch, the result store and the one
//! worker thread that runs asynchronous commands.
//!
//! Semantics follow IPA's `extensions/base.py` (`ExecuteCommandMixin`):
//! submissions are serialised (the API loop is single-threaded, which gives
//! IPA's global command lock for free); a POST while the *last* result is
//! RUNNING is refused with 409; validators of async commands and every sync
//! command run inside the request; async commands run one at a time on the
//! worker so the API keeps answering while a disk is written; when an async
//! command ends, a heartbeat is forced so Ironic notices promptly.

pub mod flow;
pub mod image;
pub mod log_ext;
pub mod poll;
pub mod rescue;
pub mod standby;
pub mod steps;
pub mod system;

use crate::agent::{lock, Agent};
use crate::error::{AgentError, Kind, Result};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Keyword arguments of a command (the request's `params` object).
pub type Params = Map<String, Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    /// IPA keeps this historical text for every step kind (base.py).
    VersionMismatch,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::VersionMismatch => "CLEAN_VERSION_MISMATCH",
        }
    }
}

#[derive(Clone, Debug)]
struct Outcome {
    status: Status,
    error: Option<Value>,
    result: Option<Value>,
}

/// One command result, shared by the store, the worker and waiters.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    /// The short name ("execute_clean_step"), as Ironic compares it.
    pub name: String,
    outcome: Mutex<Outcome>,
    done: Condvar,
}

impl Entry {
    fn new(name: &str) -> Entry {
        Entry {
            id: new_uuid(),
            name: name.to_string(),
            outcome: Mutex::new(Outcome {
                status: Status::Running,
                error: None,
                result: None,
            }),
            done: Condvar::new(),
        }
    }

    pub fn status(&self) -> Status {
        lock(&self.outcome).status
    }

    /// `{id, command_name, command_status, command_error, command_result}`.
    pub fn to_json(&self) -> Value {
        let o = lock(&self.outcome);
        json!({
            "id": self.id,
            "command_name": self.name,
            "command_status": o.status.as_str(),
            "command_error": o.error,
            "command_result": o.result,
        })
    }

    /// Block until the command is no longer RUNNING, or `timeout` passes.
    /// True when it is done.
    pub fn wait(&self, timeout: Duration) -> bool {
        let g = lock(&self.outcome);
        let (g, _) = self
            .done
            .wait_timeout_while(g, timeout, |o| o.status == Status::Running)
            .unwrap_or_else(|e| e.into_inner());
        g.status != Status::Running
    }

    /// Record the outcome. `asynchronous` selects IPA's string wrapping:
    /// `{"result": "<name>: <s>"}` for async, `{"result": "<s>"}` for sync.
    fn finish(&self, r: &Result<Value>, asynchronous: bool) {
        let mut o = lock(&self.outcome);
        match r {
            Ok(Value::String(s)) if asynchronous => {
                o.result = Some(json!({"result": format!("{}: {s}", self.name)}));
                o.status = Status::Succeeded;
            }
            Ok(Value::String(s)) => {
                o.result = Some(json!({"result": s}));
                o.status = Status::Succeeded;
            }
            Ok(Value::Null) => {
                o.result = None;
                o.status = Status::Succeeded;
            }
            Ok(v) => {
                o.result = Some(v.clone());
                o.status = Status::Succeeded;
            }
            Err(e) => {
                o.error = Some(e.to_json());
                o.result = None;
                o.status = if e.is(Kind::VersionMismatch) {
                    Status::VersionMismatch
                } else {
                    Status::Failed
                };
            }
        }
        drop(o);
        self.done.notify_all();
    }
}

/// Results in submission order; the oldest are dropped past `cap` (IPA
/// never prunes; Ironic only reads the last few).
pub struct Store {
    entries: Mutex<VecDeque<Arc<Entry>>>,
    cap: usize,
}

impl Store {
    pub fn new(cap: usize) -> Store {
        Store {
            entries: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    fn push(&self, e: Arc<Entry>) {
        let mut v = lock(&self.entries);
        if v.len() >= self.cap {
            v.pop_front();
        }
        v.push_back(e);
    }

    pub fn list_json(&self) -> Value {
        let v = lock(&self.entries);
        Value::Array(v.iter().map(|e| e.to_json()).collect())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).iter().find(|e| e.id == id).cloned()
    }

    pub fn last(&self) -> Option<Arc<Entry>> {
        lock(&self.entries).back().cloned()
    }

    /// Drop every finished result; a running command stays (it still
    /// holds the agent busy).
    pub fn forget_finished(&self) {
        lock(&self.entries).retain(|e| e.status() == Status::Running);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The one thread that runs asynchronous commands.
pub struct Worker {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Worker {
    pub fn start() -> Worker {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("command-worker".into())
            .spawn(move || {
                for job in rx {
                    // The job catches its own panics; this is a last line.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .expect("spawning the command worker thread");
        Worker { tx: Mutex::new(tx) }
    }

    fn submit(&self, job: Job) -> Result<()> {
        lock(&self.tx)
            .send(job)
            .map_err(|_| AgentError::execution("the command worker thread is gone"))
    }
}

pub type Handler = fn(&Arc<Agent>, &Params) -> Result<Value>;
pub type Validator = fn(&Agent, &Params) -> Result<()>;

/// A registered command.
#[derive(Debug)]
pub struct CommandDef {
    pub ext: &'static str,
    pub name: &'static str,
    pub asynchronous: bool,
    pub validate: Option<Validator>,
    pub run: Handler,
}

const fn sync(ext: &'static str, name: &'static str, run: Handler) -> CommandDef {
    CommandDef {
        ext,
        name,
        asynchronous: false,
        validate: None,
        run,
    }
}

const fn asynch(
    ext: &'static str,
    name: &'static str,
    validate: Option<Validator>,
    run: Handler,
) -> CommandDef {
    CommandDef {
        ext,
        name,
        asynchronous: true,
        validate,
        run,
    }
}

/// IPA's extensions (its `pyproject.toml` entry points).
pub const EXTENSIONS: &[&str] = &[
    "clean", "deploy", "flow", "image", "log", "poll", "rescue", "service", "standby", "system",
];

/// Every command of protocol §3.1.
pub static COMMANDS: &[CommandDef] = &[
    sync("clean", "get_clean_steps", steps::get_clean_steps),
    asynch(
        "clean",
        "execute_clean_step",
        None,
        steps::execute_clean_step,
    ),
    sync("deploy", "get_deploy_steps", steps::get_deploy_steps),
    asynch(
        "deploy",
        "execute_deploy_step",
        None,
        steps::execute_deploy_step,
    ),
    sync("service", "get_service_steps", steps::get_service_steps),
    asynch(
        "service",
        "execute_service_step",
        None,
        steps::execute_service_step,
    ),
    asynch(
        "standby",
        "prepare_image",
        Some(standby::validate_prepare_image),
        standby::prepare_image,
    ),
    sync(
        "standby",
        "get_partition_uuids",
        standby::get_partition_uuids,
    ),
    asynch("standby", "power_off", None, standby::power_off),
    asynch("standby", "run_image", None, standby::run_image),
    sync("standby", "sync", standby::sync),
    asynch(
        "standby",
        "execute_bootc_install",
        None,
        standby::execute_bootc_install,
    ),
    asynch(
        "image",
        "install_bootloader",
        None,
        image::install_bootloader,
    ),
    sync("log", "collect_system_logs", log_ext::collect_system_logs),
    sync("poll", "get_hardware_info", poll::get_hardware_info),
    sync("poll", "set_node_info", poll::set_node_info),
    sync("rescue", "finalize_rescue", rescue::finalize_rescue),
    sync("system", "lockdown", system::lockdown),
    asynch(
        "flow",
        "start_flow",
        Some(flow::validate_start_flow),
        flow::start_flow,
    ),
];

/// An HTTP-level refusal of a submission (not a command result).
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub faultstring: String,
}

impl Refusal {
    fn from_error(e: &AgentError) -> Refusal {
        Refusal {
            status: e.code(),
            faultstring: e.to_string(),
        }
    }
}

/// Find a command by its dotted name, with IPA's errors.
pub fn find(full_name: &str) -> std::result::Result<&'static CommandDef, AgentError> {
    let (ext, cmd) = full_name.split_once('.').ok_or_else(|| {
        AgentError::new(
            Kind::InvalidCommandError,
            "Command name must be of the form <extension>.<name>",
        )
    })?;
    if !EXTENSIONS.contains(&ext) {
        return Err(AgentError::new(
            Kind::RequestedObjectNotFoundError,
            format!("Extension with id {ext} not found."),
        ));
    }
    COMMANDS
        .iter()
        .find(|c| c.ext == ext && c.name == cmd)
        .ok_or_else(|| {
            AgentError::new(Kind::InvalidCommandError, format!("Unknown command: {cmd}"))
        })
}

/// Errors that IPA returns as HTTP 400 when raised synchronously
/// (`InvalidContentError` and its subclasses).
fn is_invalid_content(e: &AgentError) -> bool {
    matches!(
        e.kind,
        Kind::InvalidContentError | Kind::InvalidCommandError | Kind::InvalidCommandParamsError
    )
}

fn run_guarded(agent: &Arc<Agent>, def: &CommandDef, params: &Params) -> Result<Value> {
    catch_unwind(AssertUnwindSafe(|| (def.run)(agent, params))).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        log::error!("command {}.{} panicked: {what}", def.ext, def.name);
        Err(AgentError::execution(format!(
            "internal error (panic): {what}"
        )))
    })
}

/// Submit a command: IPA's `execute_command`. Returns the recorded result,
/// or the HTTP refusal (400/404/409) when nothing was recorded.
pub fn execute(
    agent: &Arc<Agent>,
    full_name: &str,
    params: Params,
) -> std::result::Result<Arc<Entry>, Refusal> {
    // IPA splits the name before the busy check, then resolves the extension.
    if !full_name.contains('.') {
        if let Err(e) = find(full_name) {
            return Err(Refusal::from_error(&e));
        }
    }
    if let Some(last) = agent.commands.last() {
        if last.status() == Status::Running {
            log::warn!("refusing {full_name}: still executing {}", last.name);
            return Err(Refusal {
                status: 409,
                faultstring: format!("Agent is busy: executing command {}", last.name),
            });
        }
    }
    let def = find(full_name).map_err(|e| Refusal::from_error(&e))?;
    if let Some(v) = def.validate {
        if let Err(e) = v(agent, &params) {
            log::warn!("{full_name}: {e}");
            return Err(Refusal::from_error(&e));
        }
    }
    let entry = Arc::new(Entry::new(def.name));
    if !def.asynchronous {
        let r = run_guarded(agent, def, &params);
        if let Err(e) = &r {
            if is_invalid_content(e) {
                return Err(Refusal::from_error(e));
            }
            log::error!("command {full_name} failed: {e}");
        } else {
            log::debug!("command {full_name} completed");
        }
        entry.finish(&r, false);
        agent.commands.push(entry.clone());
        return Ok(entry);
    }
    agent.commands.push(entry.clone());
    log::info!("asynchronous command {full_name} started ({})", entry.id);
    let (a, e) = (agent.clone(), entry.clone());
    let job: Job = Box::new(move || {
        let r = run_guarded(&a, def, &params);
        match &r {
            Ok(_) => log::info!("asynchronous command {}.{} completed", def.ext, def.name),
            Err(err) => log::error!(
                "asynchronous command {}.{} failed: {err}",
                def.ext,
                def.name
            ),
        }
        e.finish(&r, true);
        a.events.notify();
    });
    if let Err(err) = agent.worker.submit(job) {
        entry.finish(&Err(err), true);
    }
    Ok(entry)
}

/// Run a command to completion on the current thread (used by
/// `flow.start_flow`, which runs its commands "through its own executor").
pub fn run_inline(agent: &Arc<Agent>, full_name: &str, params: Params) -> Result<Value> {
    let def = find(full_name)?;
    if let Some(v) = def.validate {
        v(agent, &params)?;
    }
    run_guarded(agent, def, &params)
}

/// A random UUID4 string for command ids.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Helpers for reading typed parameters with IPA-style errors.
pub mod param {
    use super::Params;
    use crate::error::{AgentError, Result};
    use serde_json::Value;

    pub fn object<'a>(p: &'a Params, key: &str) -> Option<&'a serde_json::Map<String, Value>> {
        p.get(key).and_then(Value::as_object)
    }

    pub fn str<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
        p.get(key).and_then(Value::as_str)
    }

    /// A boolean that may arrive as a JSON bool or an IPA-style string.
    pub fn bool(p: &Params, key: &str) -> Option<bool> {
        match p.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => crate::config::parse_bool(s),
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            _ => None,
        }
    }

    pub fn require_object<'a>(
        p: &'a Params,
        key: &str,
    ) -> Result<&'a serde_json::Map<String, Value>> {
        object(p, key).ok_or_else(|| {
            AgentError::invalid_params(format!("Parameter {key} is required and must be an object"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uuid(), u);
    }

    #[test]
    fn find_errors_match_ipa() {
        let e = find("nodot").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid command: Command name must be of the form <extension>.<name>"
        );
        assert_eq!(e.code(), 400);
        let e = find("bad_extension.fake_command").unwrap_err();
        assert_eq!(e.code(), 404);
        assert_eq!(
            e.to_string(),
            "Not found: Extension with id bad_extension not found."
        );
        let e = find("clean.nope").unwrap_err();
        assert_eq!(e.to_string(), "Invalid command: Unknown command: nope");
        assert_eq!(e.code(), 400);
        assert!(find("clean.get_clean_steps").is_ok());
    }

    #[test]
    fn every_extension_has_commands() {
        for ext in EXTENSIONS {
            assert!(COMMANDS.iter().any(|c| c.ext == *ext), "{ext}");
        }
    }

    #[test]
    fn result_wrapping() {
        let e = Entry::new("prepare_image");
        e.finish(&Ok(json!("done")), true);
        assert_eq!(
            e.to_json()["command_result"],
            json!({"result": "prepare_image: done"})
        );
        let e = Entry::new("sync");
        e.finish(&Ok(Value::Null), false);
        assert_eq!(e.to_json()["command_result"], Value::Null);
        assert_eq!(e.to_json()["command_status"], "SUCCEEDED");
        let e = Entry::new("execute_clean_step");
        e.finish(&Err(AgentError::new(Kind::VersionMismatch, "x")), true);
        assert_eq!(e.to_json()["command_status"], "CLEAN_VERSION_MISMATCH");
        assert_eq!(e.to_json()["command_error"]["type"], "VersionMismatch");
    }

    #[test]
    fn store_is_bounded_and_ordered() {
        let s = Store::new(3);
        for i in 0..5 {
            s.push(Arc::new(Entry::new(&format!("c{i}"))));
        }
        let names: Vec<String> = s
            .list_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["command_name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["c2", "c3", "c4"]);
    }

    #[test]
    fn forget_finished_keeps_the_running_command() {
        let s = Store::new(10);
        let done = Arc::new(Entry::new("done"));
        done.finish(&Ok(Value::Null), false);
        let failed = Arc::new(Entry::new("failed"));
        failed.finish(&Err(AgentError::execution("x")), true);
        s.push(done);
        s.push(Arc::new(Entry::new("running")));
        s.push(failed);
        s.forget_finished();
        let v = s.list_json();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["command_name"], "running");
        assert_eq!(v[0]["command_status"], "RUNNING");
    }
}
