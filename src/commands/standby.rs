//! The `standby` extension: image writes, partition UUIDs, sync and power.

use super::{param, Params};
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use crate::sys::PowerAction;
use serde_json::Value;
use std::sync::Arc;

pub fn validate_prepare_image(agent: &Agent, p: &Params) -> Result<()> {
    let info = p
        .get("image_info")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            AgentError::invalid_params("image_info is required and must be an object")
        })?;
    crate::image::parse_image_info(&agent.env(), info).map(drop)
}

pub fn prepare_image(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    let host = agent.host();
    let image_info = param::require_object(p, "image_info")?;
    let info = crate::image::parse_image_info(&host.env, image_info)?;
    let configdrive = crate::image::configdrive_of(p.get("configdrive"), image_info);
    let node = host.env.node.clone();
    let dev = host.os_install_device(node.as_ref())?;
    crate::image::prepare_image(
        &host.env,
        host.written,
        &dev,
        node.as_ref(),
        &info,
        configdrive,
    )
    .map(Value::String)
}

/// `{"root uuid": ..., ...}` of the last image written, `{}` before.
pub fn get_partition_uuids(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    Ok(Value::Object(
        agent
            .written
            .get()
            .map(|w| w.partition_uuids)
            .unwrap_or_default(),
    ))
}

/// IPA's `full_sync` on every manager that has one.
pub fn full_sync(agent: &Agent) -> Result<()> {
    agent
        .managers
        .dispatch_all("full_sync", |m| m.full_sync(&agent.env()))
        .map(|_| ())
}

pub fn sync(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    full_sync(agent)?;
    Ok(Value::Null)
}

/// Sync, then power off or reboot. On the real root this is reboot(2); with
/// a fixture root (tests, demos) the "machine" is this process, which exits
/// as a rebooted ramdisk would disappear.
fn power(agent: &Arc<Agent>, action: PowerAction) -> Result<Value> {
    if let Err(e) = full_sync(agent) {
        crate::util::log_at!(Warn, "syncing before {action:?}: {e}");
    }
    // Let the response and a final heartbeat go out first (IPA's command
    // returns, Ironic then polls the BMC).
    let a = agent.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !a.root.is_real() {
            crate::util::log_at!(
                Warn,
                "{action:?} requested with a fixture root: exiting the agent instead"
            );
            std::process::exit(0);
        }
        crate::util::log_at!(Warn, "{action:?} now");
        let err = crate::sys::power(action);
        crate::util::log_at!(
            Error,
            "{action:?} failed: {err}; trying /proc/sysrq-trigger"
        );
        let key = if action == PowerAction::PowerOff {
            "o"
        } else {
            "b"
        };
        if let Err(e) = std::fs::write("/proc/sysrq-trigger", key) {
            crate::util::log_at!(Error, "writing /proc/sysrq-trigger: {e}");
        }
    });
    Ok(Value::Null)
}

pub fn power_off(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    power(agent, PowerAction::PowerOff)
}

pub fn run_image(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    power(agent, PowerAction::Reboot)
}

pub fn execute_bootc_install(_agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    Err(AgentError::new(
        Kind::DeploymentError,
        "bootc installation needs a container runtime, which this agent does not carry",
    ))
}
