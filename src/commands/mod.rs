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

use crate::agent::results::{Entry, Job, Status};
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use serde_json::{Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Keyword arguments of a command (the request's `params` object).
pub type Params = Map<String, Value>;

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
pub struct Rejection {
    pub status: u16,
    pub faultstring: String,
}

impl Rejection {
    fn from_error(e: &AgentError) -> Rejection {
        Rejection {
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
        crate::util::log_at!(Error, "command {}.{} panicked: {what}", def.ext, def.name);
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
) -> std::result::Result<Arc<Entry>, Rejection> {
    // IPA splits the name before the busy check, then resolves the extension.
    if !full_name.contains('.') {
        if let Err(e) = find(full_name) {
            return Err(Rejection::from_error(&e));
        }
    }
    if let Some(last) = agent.commands.last() {
        if last.status() == Status::Running {
            crate::util::log_at!(Warn, "refusing {full_name}: still executing {}", last.name);
            return Err(Rejection {
                status: 409,
                faultstring: format!("Agent is busy: executing command {}", last.name),
            });
        }
    }
    let def = find(full_name).map_err(|e| Rejection::from_error(&e))?;
    let mut params = params;
    if matches!(def.name, "execute_deploy_step" | "execute_service_step") {
        steps::keep_one_configdrive(&mut params);
    }
    if let Some(v) = def.validate {
        if let Err(e) = v(agent, &params) {
            crate::util::log_at!(Warn, "{full_name}: {e}");
            return Err(Rejection::from_error(&e));
        }
    }
    let entry = Arc::new(Entry::new(def.name));
    if !def.asynchronous {
        let r = run_guarded(agent, def, &params);
        if let Err(e) = &r {
            if is_invalid_content(e) {
                return Err(Rejection::from_error(e));
            }
            crate::util::log_at!(Error, "command {full_name} failed: {e}");
        } else {
            crate::util::log_at!(Debug, "command {full_name} completed");
        }
        entry.finish(r, false);
        agent.commands.push(entry.clone());
        return Ok(entry);
    }
    agent.commands.push(entry.clone());
    crate::util::log_at!(
        Info,
        "asynchronous command {full_name} started ({})",
        entry.id
    );
    let (a, e) = (agent.clone(), entry.clone());
    let job: Job = Box::new(move || {
        let r = run_guarded(&a, def, &params);
        // the parameters (an inline configdrive) go before the result stays
        drop(params);
        match &r {
            Ok(_) => crate::util::log_at!(
                Info,
                "asynchronous command {}.{} completed",
                def.ext,
                def.name
            ),
            Err(err) => crate::util::log_at!(
                Error,
                "asynchronous command {}.{} failed: {err}",
                def.ext,
                def.name
            ),
        }
        e.finish(r, true);
        a.events.notify();
    });
    if let Err(err) = agent.worker.submit(job) {
        entry.finish(Err(err), true);
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
}
