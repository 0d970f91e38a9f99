//! The `usb-devices` inspection collector: IPA's `get_usb_devices`, a list
//! of `{product, vendor, handle}` for the USB devices lshw finds, here
//! from /sys/bus/usb/devices: every device (not interface) that is not a
//! hub, `product` and `vendor` its product and manufacturer strings ("" if
//! none), `handle` lshw's `USB:<bus>:<device number>`.
//!
//! IPA keeps only lshw nodes of class "generic" whose id is exactly "usb"
//! (a device lshw could not classify and that is alone under its hub), so
//! on most machines it reports `[]`; this lists every non-hub device.

use crate::root::Root;
use serde_json::{json, Value};

/// bDeviceClass of a hub (USB 2.0 §11.23.1).
const HUB: &str = "09";

pub fn usb_devices(root: &Root) -> Value {
    let dir = "/sys/bus/usb/devices";
    let mut out = vec![];
    for dev in root.list(dir) {
        // interfaces are "<bus>-<port>:<config>.<interface>"
        if dev.contains(':') {
            continue;
        }
        let d = format!("{dir}/{dev}");
        if root.read(format!("{d}/bDeviceClass")).as_deref() == Some(HUB) {
            continue;
        }
        let (Some(bus), Some(num)) = (
            root.read_u64(format!("{d}/busnum")),
            root.read_u64(format!("{d}/devnum")),
        ) else {
            continue;
        };
        out.push(json!({
            "product": root.read(format!("{d}/product")).unwrap_or_default(),
            "vendor": root.read(format!("{d}/manufacturer")).unwrap_or_default(),
            "handle": format!("USB:{bus}:{num}"),
        }));
    }
    Value::Array(out)
}
