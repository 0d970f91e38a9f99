//! The `system` extension: `lockdown` stops the API and heartbeats and
//! takes every network interface down, for nodes whose BMC cannot power
//! them off (`disable_power_off`).

use super::Params;
use crate::agent::Agent;
use crate::error::Result;
use serde_json::Value;
use std::sync::Arc;

pub fn lockdown(agent: &Arc<Agent>, _p: &Params) -> Result<Value> {
    log::warn!("lockdown requested: stopping the API and heartbeats");
    agent.stop_serving();
    let a = agent.clone();
    std::thread::spawn(move || {
        // after the response has gone out
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !a.root.is_real() {
            log::warn!("lockdown with a fixture root: leaving the host's NICs alone");
            return;
        }
        for nic in a.root.list("/sys/class/net") {
            if nic == "lo" {
                continue;
            }
            match crate::sys::set_link_down(&nic) {
                Ok(()) => log::info!("lockdown: {nic} down"),
                Err(e) => log::error!("lockdown: taking {nic} down: {e}"),
            }
        }
    });
    Ok(Value::Null)
}
