//! The `rescue` extension: store the (hashed) rescue password and stop
//! serving, so the ramdisk's rescue mode takes over (IPA writes
//! `/etc/ipa-rescue-config/ipa-rescue-password` and `/etc/.rescued`).

use super::{param, Params};
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use serde_json::Value;
use std::sync::Arc;

pub fn finalize_rescue(agent: &Arc<Agent>, p: &Params) -> Result<Value> {
    let password = param::str(p, "rescue_password").unwrap_or("");
    let hashed = param::bool(p, "hashed").unwrap_or(false);
    let hash = if hashed {
        password.to_string()
    } else {
        crate::util::sha256_crypt(password.as_bytes(), &crate::util::random_salt(16))
    };
    let dir = agent.root.path("/etc/ipa-rescue-config");
    let io = |what: &str, e: std::io::Error| {
        AgentError::new(Kind::CommandExecutionError, format!("{what}: {e}"))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("creating /etc/ipa-rescue-config", e))?;
    std::fs::write(dir.join("ipa-rescue-password"), format!("{hash}\n"))
        .map_err(|e| io("writing the rescue password", e))?;
    std::fs::write(agent.root.path("/etc/.rescued"), "")
        .map_err(|e| io("writing /etc/.rescued", e))?;
    crate::util::log_at!(
        Info,
        "rescue password stored; stopping the API and heartbeats"
    );
    agent.stop_serving();
    Ok(Value::Null)
}
