//! Inventory collection from /sys, /proc and /dev (IPA's
//! `list_hardware_info`). STUB: to be implemented.

use crate::agent::Agent;
use crate::error::Result;
use crate::hardware::inventory::Inventory;

pub fn list_hardware_info(agent: &Agent) -> Result<Inventory> {
    let _ = agent;
    Ok(Inventory::default())
}

/// The `pci-devices` inspection collector: `[{vendor_id, product_id,
/// class, revision, bus, numa_node_id}]` from /sys/bus/pci/devices.
pub fn pci_devices(root: &crate::root::Root) -> Result<serde_json::Value> {
    let _ = root;
    Ok(serde_json::json!([]))
}

/// The `numa-topology` inspection collector: `{ram, cpus, nics}`.
pub fn numa_topology(root: &crate::root::Root) -> Result<serde_json::Value> {
    let _ = root;
    Err(crate::error::AgentError::execution("no NUMA information"))
}
