//! The `flow` extension: run `[{"ext.cmd": {params}}, ...]` in order on
//! the worker, failing on the first failure. Like IPA, the sub-commands
//! run through their own executor and are not added to the result list.

use super::Params;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use serde_json::Value;
use std::sync::Arc;

/// The flow's tasks as (command name, params), each name checked; a
/// flow naming `flow.start_flow` is refused. Pure: the fuzz target's entry
/// point.
pub fn tasks(p: &Params) -> Result<Vec<(String, Params)>> {
    let flow = p.get("flow").and_then(Value::as_array).ok_or_else(|| {
        AgentError::invalid_params("flow must be a list of {\"ext.cmd\": {params}}")
    })?;
    let mut out = vec![];
    for task in flow {
        let obj = task.as_object().ok_or_else(|| {
            AgentError::invalid_params(format!("flow task {task} is not an object"))
        })?;
        for (name, params) in obj {
            let params = match params {
                Value::Object(m) => m.clone(),
                Value::Null => Params::new(),
                other => {
                    return Err(AgentError::invalid_params(format!(
                        "parameters of {name} must be an object, not {other}"
                    )))
                }
            };
            super::find(name).map_err(|e| AgentError::invalid_params(e.to_string()))?;
            if name == "flow.start_flow" {
                return Err(AgentError::invalid_params("a flow cannot start a flow"));
            }
            out.push((name.clone(), params));
        }
    }
    Ok(out)
}

pub fn validate_start_flow(_agent: &Agent, p: &Params) -> Result<()> {
    tasks(p).map(|_| ())
}

pub fn start_flow(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    for (name, params) in tasks(p)? {
        crate::util::log_at!(Info, "flow: running {name}");
        if let Err(e) = super::run_inline(agent, &name, params) {
            return Err(AgentError::execution(format!("{name} failed: {e}")));
        }
    }
    Ok(Value::Null)
}
