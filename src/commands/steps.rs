//! The `clean`, `deploy` and `service` extensions (IPA's
//! `extensions/{clean,deploy,service}.py`, protocol §3.2): list the merged
//! steps of every hardware manager, and execute one step through
//! `dispatch_to_managers`.

use super::Params;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::hardware::{Args, StepCall, StepKind};
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
            crate::util::elided_map(step)
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
    // IPA: kwargs are the extra command parameters, updated with step.args
    // (read in place: an inline configdrive is not copied).
    let version = format!("{k}_version");
    let args = Args::new(
        params,
        ["step", "node", "ports", &version],
        step.get("args").and_then(Value::as_object),
    );
    let ports = params.get("ports").unwrap_or(&null);
    crate::util::log_at!(Info, "executing {k} step {name}");
    let call = StepCall {
        kind,
        step: name,
        node,
        ports,
        args,
    };
    let host = agent.host();
    let result = agent
        .managers
        .dispatch(name, |m| m.execute_step(&host, &call))?;
    crate::util::log_at!(Info, "{k} step {name} completed");
    // The step as IPA echoes it (Ironic compares it by interface and
    // name), without its long strings (an inline configdrive, twice in
    // Ironic's write_image step; inject_files' contents): a result is kept
    // as long as the agent runs and copied into every GET /v1/commands.
    Ok(json!({
        format!("{k}_result"): result,
        format!("{k}_step"): crate::util::elided_map(step),
    }))
}

/// Ironic 39's write_image step sends an inline configdrive twice, as
/// `step.args.configdrive` and inside `step.args.image_info` (its FIXME,
/// kept for IPAs from before 2021). When both are the same text, the copy
/// in image_info goes before the step runs: write_image reads it only when
/// the other is missing, and the drive, up to half the request, is then
/// held once while the image streams. (The step echoed in the result
/// shows image_info without it.)
pub fn keep_one_configdrive(params: &mut Params) {
    let Some(Value::Object(args)) = params
        .get_mut("step")
        .and_then(|s| s.as_object_mut())
        .filter(|s| s.get("step").and_then(Value::as_str) == Some("write_image"))
        .and_then(|s| s.get_mut("args"))
    else {
        return;
    };
    let inner = args.get("image_info").and_then(|i| i.get("configdrive"));
    if inner.is_some_and(|c| c.is_string() && args.get("configdrive") == Some(c)) {
        if let Some(Value::Object(info)) = args.get_mut("image_info") {
            info.remove("configdrive");
        }
    }
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

    #[test]
    fn long_strings_are_not_echoed() {
        use crate::util::{elided as echo, ECHO_MAX};
        let cd = "H4sI".repeat(ECHO_MAX);
        let step = json!({"step": "write_image", "interface": "deploy", "priority": 80,
                          "args": {"configdrive": cd, "image_info": {"id": "i", "configdrive": cd},
                                   "short": "x".repeat(ECHO_MAX)}});
        let e = echo(&step);
        let note = format!("<{} bytes, not echoed>", cd.len());
        assert_eq!(e["args"]["configdrive"], json!(note));
        assert_eq!(
            e["args"]["image_info"],
            json!({"id": "i", "configdrive": note})
        );
        assert_eq!(e["args"]["short"], step["args"]["short"]);
        assert_eq!(e["step"], "write_image");
        assert_eq!(e["priority"], 80);
    }

    #[test]
    fn write_image_keeps_one_configdrive() {
        let p = |inner: &str| -> Params {
            serde_json::from_value(json!({"step": {"step": "write_image", "args": {
                "configdrive": "H4sI", "image_info": {"id": "i", "configdrive": inner}}}}))
            .unwrap()
        };
        let mut same = p("H4sI");
        keep_one_configdrive(&mut same);
        assert_eq!(same["step"]["args"]["image_info"], json!({"id": "i"}));
        assert_eq!(same["step"]["args"]["configdrive"], "H4sI");
        let mut other = p("http://x/cd");
        keep_one_configdrive(&mut other);
        assert_eq!(other, p("http://x/cd"));
        let mut step: Params =
            serde_json::from_value(json!({"step": {"step": "inject_files", "args": {
                "configdrive": "a", "image_info": {"configdrive": "a"}}}}))
            .unwrap();
        let before = step.clone();
        keep_one_configdrive(&mut step);
        assert_eq!(step, before);
    }

    #[test]
    fn step_args_over_the_other_params() {
        let params = json!({"step": {}, "node": {}, "ports": [], "deploy_version": "1",
                            "a": 1, "b": 2});
        let params = params.as_object().unwrap();
        let step_args = json!({"b": 3, "c": 4});
        let args = Args::new(
            params,
            ["step", "node", "ports", "deploy_version"],
            step_args.as_object(),
        );
        assert_eq!(args.get("a"), Some(&json!(1)));
        assert_eq!(args.get("b"), Some(&json!(3)));
        assert_eq!(args.get("c"), Some(&json!(4)));
        assert_eq!(args.get("node"), None);
        assert_eq!(args.get("deploy_version"), None);
        assert_eq!(
            Value::Object(args.to_map()),
            json!({"a": 1, "b": 3, "c": 4})
        );
        assert_eq!(args.iter().count(), 3);
    }
}
