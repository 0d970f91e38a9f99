//! The `clean`, `deploy` and `service` extensions (IPA's
//! `extensions/{clean,deploy,service}.py`, protocol §3.2): list the merged
//! steps of every hardware manager, and execute one step through
//! `dispatch_to_managers`.

use super::Params;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::hardware::{StepCall, StepKind};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn get_steps(agent: &Arc<Agent>, params: &Params, kind: StepKind) -> Result<Value> {
    if let Some(node) = params.get("node") {
        agent.cache_node(node);
    }
    let steps = agent.managers.get_steps(&agent.env(), kind)?;
    let mut out = Map::new();
    out.insert(format!("{}_steps", kind.as_str()), Value::Object(steps));
    out.insert(
        "hardware_manager_version".into(),
        Value::Object(agent.managers.versions()),
    );
    Ok(Value::Object(out))
}

fn execute_step(agent: &Arc<Agent>, params: &Params, kind: StepKind) -> Result<Value> {
    let k = kind.as_str();
    let null = Value::Null;
    let node = params.get("node").unwrap_or(&null);
    agent.cache_node(node);
    agent
        .managers
        .check_versions(params.get(&format!("{k}_version")))?;
    let step = params
        .get("step")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            AgentError::execution(format!(
                "execute_{k}_step() missing required argument: 'step'"
            ))
        })?;
    let Some(name) = step.get("step").and_then(Value::as_str) else {
        return Err(AgentError::execution(format!(
            "Malformed {k}_step, no \"step\" key: {}",
            Value::Object(step.clone())
        )));
    };
    // A clean step may erase the disk an earlier deploy wrote (a failed
    // deploy is cleaned by the same process under fast track): forget the
    // written image, so that deploying the same image id again writes it
    // instead of trusting a disk that no longer holds it. (IPA keeps its
    // cached_image_id across cleaning; a rewrite costs time, a skipped one
    // an unbootable node.)
    if kind == StepKind::Clean {
        agent.written.set(None);
    }
    // IPA: kwargs are the extra command parameters, updated with step.args.
    let mut args: Map<String, Value> = crate::util::collect_map(
        params
            .iter()
            .filter(|(key, _)| {
                !["step", "node", "ports"].contains(&key.as_str())
                    && **key != format!("{k}_version")
            })
            .map(|(key, v)| (key.clone(), v.clone())),
    );
    if let Some(a) = step.get("args").and_then(Value::as_object) {
        args.extend(a.iter().map(|(key, v)| (key.clone(), v.clone())));
    }
    let ports = params.get("ports").unwrap_or(&null);
    log::info!("executing {k} step {name}");
    let call = StepCall {
        kind,
        step: name,
        node,
        ports,
        args: &args,
    };
    let host = agent.host();
    let result = agent
        .managers
        .dispatch(name, |m| m.execute_step(&host, &call))?;
    log::info!("{k} step {name} completed");
    Ok(json!({
        format!("{k}_result"): result,
        format!("{k}_step"): Value::Object(step.clone()),
    }))
}

pub fn get_clean_steps(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    get_steps(agent, p, StepKind::Clean)
}
pub fn execute_clean_step(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    execute_step(agent, p, StepKind::Clean)
}
pub fn get_deploy_steps(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    get_steps(agent, p, StepKind::Deploy)
}
pub fn execute_deploy_step(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    execute_step(agent, p, StepKind::Deploy)
}
pub fn get_service_steps(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    get_steps(agent, p, StepKind::Service)
}
pub fn execute_service_step(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    execute_step(agent, p, StepKind::Service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::WrittenImage;

    #[test]
    fn a_clean_step_forgets_the_written_image() {
        let cfg = crate::config::Config {
            root: std::env::temp_dir().join("ironic-agent-no-such-root"),
            steps_dir: std::env::temp_dir().join("ironic-agent-no-such-steps"),
            standalone: true,
            ..Default::default()
        };
        let agent = Arc::new(Agent::new(cfg, crate::logbuf::LogBuffer::new(64)));
        let written = || WrittenImage {
            image_id: "img".into(),
            device: "/dev/sda".into(),
            partition_uuids: Map::new(),
        };
        let params = |step: &str| -> Params {
            serde_json::from_value(json!({"step": {"step": step, "interface": "deploy"}})).unwrap()
        };
        agent.written.set(Some(written()));
        let _ = execute_deploy_step(&agent, &params("no_such_step"));
        assert!(agent.written.get().is_some(), "deploy steps keep it");
        let _ = execute_clean_step(&agent, &params("no_such_step"));
        assert!(agent.written.get().is_none());
    }
}
