//! The `poll` extension: a fresh inventory, and node data in standalone
//! mode.

use super::Params;
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use serde_json::Value;
use std::sync::Arc;

pub fn get_hardware_info(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    let inv = agent.inventory()?;
    serde_json::to_value(inv)
        .map_err(|e| AgentError::execution(format!("serialising inventory: {e}")))
}

/// IPA's `set_node_info`: accept a lookup-shaped document, only standalone.
pub fn set_node_info(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    if !agent.config.standalone {
        return Err(AgentError::new(
            Kind::InvalidCommandError,
            "Node lookup data can only be set when the Ironic Python Agent is running in \
             standalone mode.",
        ));
    }
    let info = p
        .get("node_info")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            AgentError::invalid_params("node_info must be a lookup document with node and config")
        })?;
    agent.apply_lookup_data(info)?;
    Ok(Value::Null)
}
