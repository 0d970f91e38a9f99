//! SMBIOS/DMI tables from /sys/firmware/dmi. STUB: to be implemented.

use crate::root::Root;
use serde_json::Value;

/// The `dmi-decode` inspection collector: `{bios, cpu, memory}` decoded
/// from /sys/firmware/dmi/tables.
pub fn dmi_decode(root: &Root) -> Value {
    let _ = root;
    serde_json::json!({"bios": {}, "cpu": [], "memory": {}})
}
