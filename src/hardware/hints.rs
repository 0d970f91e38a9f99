//! Root-device hints (IPA's `device_hints.py`, protocol §5.7). STUB.

use crate::error::{AgentError, Result};
use crate::hardware::inventory::BlockDevice;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Parsed hints: key → expression (with operator).
pub type Hints = Map<String, Value>;

/// The node's root-device hints: `instance_info.root_device` wins over
/// `properties.root_device`; else the Kilo-era `root_device=` cmdline hints.
pub fn root_device_hints(
    node: Option<&Value>,
    cmdline: Option<&BTreeMap<String, String>>,
) -> Result<Option<Hints>> {
    let _ = (node, cmdline);
    Ok(None)
}

/// `properties.skip_block_devices` as a list of hint sets.
pub fn skip_list_hints(node: &Value) -> Result<Vec<Hints>> {
    let _ = node;
    Ok(vec![])
}

pub fn matches_any(dev: &BlockDevice, hint_sets: &[Hints]) -> bool {
    let _ = (dev, hint_sets);
    false
}

/// Pick the install device: first hint match, or the smallest disk ≥ 4 GiB.
pub fn select_root_device(devices: &[BlockDevice], hints: Option<&Hints>) -> Result<BlockDevice> {
    let _ = hints;
    let mut v: Vec<&BlockDevice> = devices.iter().filter(|d| d.size >= 4 << 30).collect();
    v.sort_by(|a, b| (a.size, &a.name).cmp(&(b.size, &b.name)));
    v.first()
        .map(|d| (*d).clone())
        .ok_or_else(|| AgentError::device_not_found("No suitable device was found for deployment"))
}
