//! The `system` extension: `lockdown` stops the API and heartbeats and
//! takes every network interface down, for nodes whose BMC cannot power
//! them off (`disable_power_off`).

use super::Params;
use crate::agent::Agent;
use crate::error::Result;
use serde_json::Value;
use std::sync::Arc;

pub fn lockdown(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    crate::util::log_at!(Warn, "lockdown requested: stopping the API and heartbeats");
    agent.stop_serving();
    let a = agent.clone();
    std::thread::spawn(move || {
        // after the response has gone out
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !a.root.is_real() {
            crate::util::log_at!(
                Warn,
                "lockdown with a fixture root: leaving the host's NICs alone"
            );
            return;
        }
        for nic in a.root.list("/sys/class/net") {
            if nic == "lo" {
                continue;
            }
            match crate::sys::set_link_down(&nic) {
                Ok(()) => crate::util::log_at!(Info, "lockdown: {nic} down"),
                Err(e) => crate::util::log_at!(Error, "lockdown: taking {nic} down: {e}"),
            }
        }
    });
    Ok(Value::Null)
}
