//! IPA's `GenericHardwareManager.validate_configuration`: its rules, in
//! its order, with its messages word for word. Errors are collected and
//! joined with "; " into one `SoftwareRAIDError`; an empty configuration
//! is not an error (`False`, logged), a configuration without logical
//! disks is, at once.

use crate::error::{AgentError, Kind, Result};
use crate::hardware::hints;
use serde_json::Value;

/// `SUPPORTED_SOFTWARE_RAID_LEVELS`.
pub const SUPPORTED_LEVELS: [&str; 5] = ["0", "1", "1+0", "5", "6"];

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cold]
#[inline(never)]
pub fn raid_error(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::SoftwareRAIDError, details)
}

/// Validate `raid_config` for `node`. `block_devices` counts what IPA's
/// `list_block_devices()` returns (asked only for a second logical disk of
/// level 5 or 6). `Ok(false)`: nothing to validate (an empty config).
pub fn validate_configuration(
    raid_config: &Value,
    node: &Value,
    block_devices: &mut dyn FnMut() -> Result<usize>,
) -> Result<bool> {
    crate::util::log_at!(Debug, "Validating Software RAID config: {raid_config}");
    if !truthy(raid_config) {
        crate::util::log_at!(Error, "No RAID config passed");
        return Ok(false);
    }
    let logical_disks = raid_config
        .get("logical_disks")
        .filter(|v| truthy(v))
        .ok_or_else(|| raid_error("RAID config contains no logical disks"))?;
    // a list, as Ironic's schema makes it; anything else is "one item"
    let lds: &[Value] = match logical_disks {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    };
    // IPA's errors, "; "-joined as they come
    let mut errors = String::new();
    if !(1..=2).contains(&lds.len()) {
        error(
            &mut errors,
            format_args!("Software RAID configuration requires one or two logical disks"),
        );
    }
    let skip = hints::skip_list_volume_names(node);
    let mut names: Vec<String> = vec![];
    let mut root_selected = false;
    for ld in lds {
        if ld.get("controller").and_then(Value::as_str) != Some("software") {
            error(
                &mut errors,
                format_args!(
                    "Software RAID configuration requires all logical disks to have \
                     'controller'='software'"
                ),
            );
        }
        match ld.get("volume_name").filter(|v| !v.is_null()) {
            None => {
                if !skip.is_empty() {
                    error(
                        &mut errors,
                        format_args!(
                            "All logical disks are required to have a volume name specified \
                             as a volume name is mentioned in the property skip block devices."
                        ),
                    );
                }
            }
            Some(v) => {
                let name = hints::py_str(v);
                if names.contains(&name) {
                    error(
                        &mut errors,
                        format_args!("Duplicate software RAID device name {name} detected"),
                    );
                } else {
                    names.push(name);
                }
            }
        }
        if ld.get("is_root_volume").is_some_and(truthy) {
            if root_selected {
                error(
                    &mut errors,
                    format_args!(
                        "Software RAID configuration allows only one logical disk to be \
                         marked as is_root_volume"
                    ),
                );
            } else {
                root_selected = true;
            }
        }
        if let Some(pd) = ld.get("physical_disks").filter(|v| !v.is_null()) {
            if pd.as_array().is_none_or(|a| a.len() < 2) {
                error(
                    &mut errors,
                    format_args!(
                        "The physical_disks parameter for software RAID must be a list with \
                         at least 2 items, each specifying a disk in the device hints format"
                    ),
                );
            }
            // Python iterates a string character by character: never dicts
            let not_dicts = match pd {
                Value::Array(a) => a.iter().any(|i| !i.is_object()),
                Value::String(s) => !s.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => false,
            };
            if not_dicts {
                error(
                    &mut errors,
                    format_args!(
                        "The physical_disks parameter for software RAID must be a list of \
                         device hints (dictionaries)"
                    ),
                );
            }
        }
    }
    drop(names);
    drop(skip);
    // IPA indexes ['raid_level'] (a KeyError when missing): a missing
    // level is not RAID-1 either
    let first_level = lds.first().and_then(|l| l.get("raid_level"));
    if first_level.and_then(Value::as_str) != Some("1") {
        error(
            &mut errors,
            format_args!("Software RAID Configuration requires RAID-1 for the first logical disk"),
        );
    }
    if lds.len() == 2 {
        let size = |i: usize| lds[i].get("size_gb").and_then(Value::as_str) == Some("MAX");
        if size(0) && size(1) {
            error(
                &mut errors,
                format_args!("Software RAID can have only one RAID device with size 'MAX'"),
            );
        }
        let level = lds[1].get("raid_level").unwrap_or(&Value::Null);
        let level_s = level.as_str().unwrap_or("");
        if !level.is_string() || !SUPPORTED_LEVELS.contains(&level_s) {
            error(
                &mut errors,
                format_args!(
                    "Software RAID configuration does not support RAID level {}",
                    PyStr(level)
                ),
            );
        }
        if level_s == "5" || level_s == "6" {
            let count = block_devices()?;
            let need = if level_s == "5" { 3 } else { 4 };
            if count < need {
                error(
                    &mut errors,
                    format_args!(
                        "Software RAID configuration is not possible for RAID level {level_s} \
                         with only {count} block devices found."
                    ),
                );
            }
        }
    }
    if !errors.is_empty() {
        let uuid = node.get("uuid").unwrap_or(&Value::Null);
        return Err(crate::disk::md::array::raid_fmt(format_args!(
            "Could not validate Software RAID config for {}: {errors}",
            PyStr(uuid)
        )));
    }
    Ok(true)
}

/// One of IPA's errors, after a "; " when others came before.
#[inline(never)]
fn error(errors: &mut String, e: std::fmt::Arguments<'_>) {
    use std::fmt::Write;
    if !errors.is_empty() {
        errors.push_str("; ");
    }
    let _ = errors.write_fmt(e);
}

/// [`hints::py_str`] (Python's `str`) as a `Display`, formatted where it is used (no String);
/// JSON null is Python's None.
pub struct PyStr<'a>(pub &'a Value);

impl std::fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::String(s) => f.write_str(s),
            other => f.write_str(&hints::py_repr(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"uuid": "n1", "properties": {}})
    }

    fn check(cfg: Value, node: &Value, devices: usize) -> Result<bool> {
        validate_configuration(&cfg, node, &mut || Ok(devices))
    }

    fn err(cfg: Value, devices: usize) -> String {
        check(cfg, &node(), devices).unwrap_err().into_details()
    }

    const PREFIX: &str = "Could not validate Software RAID config for n1: ";

    #[test]
    fn empty_and_missing() {
        assert!(!check(json!({}), &node(), 2).unwrap());
        assert!(!check(Value::Null, &node(), 2).unwrap());
        let e = check(json!({"logical_disks": []}), &node(), 2).unwrap_err();
        assert_eq!(e.details, "RAID config contains no logical disks");
        assert_eq!(
            e.to_string(),
            "Software RAID caused unknown error: RAID config contains no logical disks"
        );
        // IPA's test passes the node as the config
        assert!(check(json!({"uuid": "x"}), &node(), 2).is_err());
    }

    #[test]
    fn valid_ones() {
        let ok = json!({"logical_disks": [
            {"size_gb": "10", "raid_level": "1", "controller": "software"},
            {"size_gb": "MAX", "raid_level": "0", "controller": "software"}]});
        assert!(check(ok, &node(), 2).unwrap());
        let five = json!({"logical_disks": [
            {"size_gb": 10, "raid_level": "1", "controller": "software",
             "volume_name": "root", "is_root_volume": true},
            {"size_gb": "MAX", "raid_level": "5", "controller": "software",
             "physical_disks": [{"name": "/dev/sda"}, {"size": ">= 10"}, {"name": "/dev/sdc"}]}]});
        assert!(check(five, &node(), 3).unwrap());
    }

    #[test]
    fn messages_word_for_word() {
        let e = err(
            json!({"logical_disks": [
                {"size_gb": "10", "raid_level": "1", "controller": "software"},
                {"size_gb": "10", "raid_level": "1", "controller": "software"},
                {"size_gb": "10", "raid_level": "1", "controller": "software"}]}),
            3,
        );
        assert_eq!(
            e,
            format!("{PREFIX}Software RAID configuration requires one or two logical disks")
        );
        let e = err(
            json!({"logical_disks": [
                {"size_gb": "MAX", "raid_level": "0", "controller": "hardware"},
                {"size_gb": "MAX", "raid_level": "7", "controller": "software"}]}),
            2,
        );
        assert_eq!(
            e,
            format!(
                "{PREFIX}Software RAID configuration requires all logical disks to have \
                 'controller'='software'; Software RAID Configuration requires RAID-1 for the \
                 first logical disk; Software RAID can have only one RAID device with size \
                 'MAX'; Software RAID configuration does not support RAID level 7"
            )
        );
        let e = err(
            json!({"logical_disks": [
                {"size_gb": "10", "raid_level": "1", "controller": "software",
                 "volume_name": "a", "is_root_volume": true, "physical_disks": [{"name": "x"}]},
                {"size_gb": "MAX", "raid_level": "6", "controller": "software",
                 "volume_name": "a", "is_root_volume": true, "physical_disks": "ab"}]}),
            3,
        );
        assert_eq!(
            e,
            format!(
                "{PREFIX}The physical_disks parameter for software RAID must be a list with at \
                 least 2 items, each specifying a disk in the device hints format; Duplicate \
                 software RAID device name a detected; Software RAID configuration allows only \
                 one logical disk to be marked as is_root_volume; The physical_disks parameter \
                 for software RAID must be a list with at least 2 items, each specifying a disk \
                 in the device hints format; The physical_disks parameter for software RAID \
                 must be a list of device hints (dictionaries); Software RAID configuration is \
                 not possible for RAID level 6 with only 3 block devices found."
            )
        );
        let e = err(
            json!({"logical_disks": [
                {"size_gb": "10", "raid_level": "1", "controller": "software"},
                {"size_gb": "MAX", "raid_level": "5", "controller": "software",
                 "physical_disks": [{"name": "x"}, "y"]}]}),
            2,
        );
        assert_eq!(
            e,
            format!(
                "{PREFIX}The physical_disks parameter for software RAID must be a list of \
                 device hints (dictionaries); Software RAID configuration is not possible for \
                 RAID level 5 with only 2 block devices found."
            )
        );
    }

    #[test]
    fn skip_list_needs_volume_names() {
        let n =
            json!({"uuid": "n1", "properties": {"skip_block_devices": [{"volume_name": "data"}]}});
        let e = check(
            json!({"logical_disks": [
                {"size_gb": "10", "raid_level": "1", "controller": "software"}]}),
            &n,
            2,
        )
        .unwrap_err();
        assert_eq!(
            e.details,
            format!(
                "{PREFIX}All logical disks are required to have a volume name specified as a \
                 volume name is mentioned in the property skip block devices."
            )
        );
    }

    #[test]
    fn the_device_count_is_asked_only_when_needed() {
        let mut asked = 0;
        let cfg = json!({"logical_disks": [
            {"size_gb": "10", "raid_level": "1", "controller": "software"},
            {"size_gb": "MAX", "raid_level": "0", "controller": "software"}]});
        validate_configuration(&cfg, &node(), &mut || {
            asked += 1;
            Ok(2)
        })
        .unwrap();
        assert_eq!(asked, 0);
    }
}
