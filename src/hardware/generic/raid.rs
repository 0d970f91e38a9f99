//! The `raid` interface steps of IPA's generic manager. IPA builds Linux
//! software RAID with `mdadm`; this agent has no mdadm and does not write
//! md superblocks itself, so it does the honest subset: nothing to do is a
//! success, anything else is a clear `SoftwareRAIDError`, never a fake
//! success.

use crate::config::Env;
use crate::error::{AgentError, Kind, Result};
use crate::hardware::StepCall;
use serde_json::{json, Value};

/// md arrays the kernel currently runs (`/proc/mdstat` lines "mdN : ...").
pub fn active_md_arrays(env: &Env) -> Vec<String> {
    env.root
        .read("/proc/mdstat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(" : ").map(|(n, _)| n.trim().to_string()))
        .filter(|n| n.starts_with("md"))
        .collect()
}

fn unsupported(what: &str) -> AgentError {
    AgentError::new(
        Kind::SoftwareRAIDError,
        format!("{what}: software RAID needs mdadm, which this agent does not carry"),
    )
}

fn logical_disks(raid_config: Option<&Value>) -> usize {
    raid_config
        .and_then(|c| c.get("logical_disks"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

pub fn delete_configuration(env: &Env, _call: &StepCall) -> Result<Value> {
    let arrays = active_md_arrays(env);
    if arrays.is_empty() {
        log::info!("delete_configuration: no software RAID devices found");
        return Ok(Value::Null);
    }
    Err(unsupported(&format!(
        "deleting software RAID devices {}",
        arrays.join(", ")
    )))
}

pub fn create_configuration(_env: &Env, call: &StepCall) -> Result<Value> {
    if logical_disks(call.node.get("target_raid_config")) == 0 {
        log::debug!("create_configuration: no target_raid_config");
        return Ok(json!({}));
    }
    Err(unsupported("creating the target RAID configuration"))
}

pub fn apply_configuration(env: &Env, call: &StepCall) -> Result<Value> {
    let Some(cfg) = call.args.get("raid_config") else {
        return Err(AgentError::invalid_params("raid_config is required"));
    };
    let delete_existing = call
        .args
        .get("delete_existing")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if delete_existing {
        delete_configuration(env, call)?;
    }
    if logical_disks(Some(cfg)) == 0 {
        return Ok(json!({}));
    }
    Err(unsupported("applying the RAID configuration"))
}
