//! Root-device hints: IPA's `device_hints.py` over oslo.utils'
//! `specs_matcher` (protocol §5.7).
//!
//! A hint set is the node's JSON object (`{"size": ">= 100", "model":
//! "<in> samsung"}`). Before matching, IPA parses it (`parse_root_device_
//! hints`): unknown keys are rejected; string hints are lower-cased and
//! URL-quoted value by value ("foo bar" → "foo%20bar") and get `s==` when
//! they have no operator; `size` must be a positive integer (GiB) and gets
//! `==`; `rotational` becomes a boolean. Device values are normalised the
//! same way and compared with `specs_matcher.match`. Two deliberate
//! departures, both where IPA's code contradicts its own validation:
//!
//! * `size` with `<or>` compares numerically (IPA validates each
//!   alternative as an integer, then compares the float GiB value with the
//!   strings, which can never be equal);
//! * `size` accepts `<range-in> [ 10 100 )` (the bounds as positive
//!   integers; IPA's validation rejects the bracket tokens).

use crate::error::{AgentError, Result};
use crate::hardware::inventory::BlockDevice;
use crate::util::specs::{parse_spec, spec_match, Val};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Hints as the node carries them: key → expression.
pub type Hints = Map<String, Value>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HintType {
    Int,
    Str,
    Bool,
}

/// `VALID_ROOT_DEVICE_HINTS`, in IPA's order (its error message lists them).
const VALID: [(&str, HintType); 12] = [
    ("size", HintType::Int),
    ("model", HintType::Str),
    ("wwn", HintType::Str),
    ("serial", HintType::Str),
    ("vendor", HintType::Str),
    ("wwn_with_extension", HintType::Str),
    ("wwn_vendor_extension", HintType::Str),
    ("name", HintType::Str),
    ("rotational", HintType::Bool),
    ("hctl", HintType::Str),
    ("by_path", HintType::Str),
    ("tran", HintType::Str),
];

fn hint_type(name: &str) -> Option<HintType> {
    VALID.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A parsed hint: the normalised expression with its operator, or a bool.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// `size`: "== 100", ">= 50", "<or> 100 <or> 200", ...
    Int(String),
    /// String hints: "s== foo%20model", "<in> samsung", ...
    Str(String),
    Bool(bool),
}

// ---------------------------------------------------------------------
// Parsing and normalising hints (device_hints.py)
// ---------------------------------------------------------------------

/// Python's `str(value)` for JSON values (also the volume names and RAID
/// levels the RAID steps interpolate).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => py_repr(v),
    }
}

/// Python's `repr` for JSON values, for messages that show the hints.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `urllib.parse.quote(s)`: everything but ALPHA DIGIT `_.-~/` becomes
/// %XX (upper-case hex) per UTF-8 byte.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `_extract_hint_operator_and_values`: (operator or "", values).
fn extract(expression: &str, name: &str) -> Result<(String, Vec<String>)> {
    let expr = expression.trim().to_lowercase();
    if expr.is_empty() {
        return Err(AgentError::msg(format!(
            "Root device hint {name} expression is empty"
        )));
    }
    let ast = parse_spec(&expr).ok_or_else(|| {
        AgentError::msg(format!(
            "Root device hint {name} expression \"{expr}\" cannot be parsed"
        ))
    })?;
    if ast.len() <= 1 {
        return Ok((String::new(), vec![expr]));
    }
    let op = ast[0].clone();
    // re.split(op, expression) keeping the non-empty pieces, stripped
    let values = expr
        .split(op.as_str())
        .filter(|v| !v.is_empty())
        .map(|v| v.trim().to_string())
        .collect();
    Ok((op, values))
}

/// `_normalize_hint_expression`: lower-case and URL-quote every value,
/// keep the operator: "<or> foo <or> foo bar" → "<or> foo <or> foo%20bar".
fn normalize(expression: &str, name: &str) -> Result<String> {
    let (op, values) = extract(expression, name)?;
    let joined = values
        .iter()
        .map(|v| format!(" {} ", quote(v)))
        .collect::<Vec<_>>()
        .join(&op);
    Ok(format!("{op}{joined}").trim().to_string())
}

/// Python's `int(str)`.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// `strutils.bool_from_string(v, strict=True)`.
fn py_bool(v: &Value) -> Option<bool> {
    if let Value::Bool(b) = v {
        return Some(*b);
    }
    match py_str(v).trim().to_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// IPA's `parse_root_device_hints`: validate and normalise. `Ok(None)`
/// for an empty hint set; `Err` carries IPA's ValueError text.
pub fn parse_hints(hints: &Hints) -> Result<Option<BTreeMap<String, Parsed>>> {
    if hints.is_empty() {
        return Ok(None);
    }
    let mut invalid: Vec<&str> = hints
        .keys()
        .map(String::as_str)
        .filter(|k| hint_type(k).is_none())
        .collect();
    if !invalid.is_empty() {
        crate::util::sort_small(&mut invalid);
        let valid: Vec<&str> = VALID.iter().map(|(n, _)| *n).collect();
        return Err(AgentError::msg(format!(
            "The hints \"{}\" are invalid. Valid hints are: \"{}\"",
            invalid.join(", "),
            valid.join(", ")
        )));
    }
    let mut out = BTreeMap::new();
    for (name, v) in hints {
        let parsed = match hint_type(name) {
            Some(HintType::Str) => {
                let Value::String(s) = v else {
                    return Err(AgentError::msg(format!(
                        "Root device hint \"{name}\" is not a string value. Hint expression: {}",
                        py_str(v)
                    )));
                };
                let n = normalize(s, name)?;
                Parsed::Str(with_default_op(n, "s=="))
            }
            Some(HintType::Int) => {
                let expr = py_str(v);
                let (op, values) = extract(&expr, name)?;
                let values = if op == "<range-in>" {
                    range_bounds(&expr)
                        .ok_or_else(|| AgentError::msg(not_int(name, &expr)))?
                        .to_vec()
                } else {
                    values
                };
                for val in &values {
                    let i = py_int(val).ok_or_else(|| AgentError::msg(not_int(name, &expr)))?;
                    if i <= 0 {
                        return Err(AgentError::msg(format!(
                            "Root device hint \"{name}\" should be a positive integer. \
                             Current value: {expr}"
                        )));
                    }
                }
                Parsed::Int(with_default_op(expr, "=="))
            }
            Some(HintType::Bool) => Parsed::Bool(py_bool(v).ok_or_else(|| {
                AgentError::msg(format!(
                    "Root device hint \"{name}\" is not a Boolean value. Current value: {}",
                    py_str(v)
                ))
            })?),
            None => unreachable!("checked above"),
        };
        out.insert(name.clone(), parsed);
    }
    Ok(Some(out))
}

fn not_int(name: &str, expr: &str) -> String {
    format!("Root device hint \"{name}\" is not an integer value. Current value: {expr}")
}

/// The two bounds of "<range-in> [ 10 100 )".
fn range_bounds(expr: &str) -> Option<[String; 2]> {
    let t = parse_spec(&expr.trim().to_lowercase())?;
    (t.len() == 5 && t[0] == "<range-in>").then(|| [t[2].clone(), t[3].clone()])
}

/// `_append_operator_to_hints`: an expression without operator gets the
/// equality operator of its type.
fn with_default_op(expr: String, op: &str) -> String {
    match parse_spec(&expr) {
        Some(t) if t.len() > 1 => expr,
        _ => format!("{op} {expr}"),
    }
}

/// The device's value for a hint, as IPA's serialised device dict has it.
/// `serial` and `wwn` are lists (every value the device answers to, IPA's
/// `all_serial_and_wwn=True`).
enum DevVal {
    One(Option<String>),
    Many(Vec<String>),
    Size(u64),
    Bool(bool),
}

fn device_value(dev: &BlockDevice, hint: &str) -> DevVal {
    let many = |all: &Vec<String>, one: &Option<String>| {
        if all.is_empty() {
            DevVal::Many(one.iter().cloned().collect())
        } else {
            DevVal::Many(all.clone())
        }
    };
    match hint {
        "size" => DevVal::Size(dev.size),
        "rotational" => DevVal::Bool(dev.rotational),
        "serial" => many(&dev.all_serials, &dev.serial),
        "wwn" => many(&dev.all_wwns, &dev.wwn),
        "name" => DevVal::One(Some(dev.name.clone())),
        "model" => DevVal::One(dev.model.clone()),
        "vendor" => DevVal::One(dev.vendor.clone()),
        "wwn_with_extension" => DevVal::One(dev.wwn_with_extension.clone()),
        "wwn_vendor_extension" => DevVal::One(dev.wwn_vendor_extension.clone()),
        "hctl" => DevVal::One(dev.hctl.clone()),
        "by_path" => DevVal::One(dev.by_path.clone()),
        "tran" => DevVal::One(dev.tran.clone()),
        _ => DevVal::One(None),
    }
}

/// IPA's `find_devices_by_hints` for one device: all hints must match.
/// `Err` where IPA raises (an operator that cannot apply to the value).
fn device_matches(dev: &BlockDevice, parsed: &BTreeMap<String, Parsed>) -> Result<bool> {
    for (name, hint) in parsed {
        let ok = match (hint, device_value(dev, name)) {
            (Parsed::Bool(want), DevVal::Bool(have)) => *want == have,
            (Parsed::Int(spec), DevVal::Size(bytes)) => {
                spec_match(&Val::Num(bytes as f64 / (1u64 << 30) as f64), spec)?
            }
            (Parsed::Str(spec), DevVal::Many(values)) => {
                // Any one value matching is enough; values that cannot be
                // normalised or compared are skipped, as IPA does.
                values.iter().any(|v| {
                    normalize(v, name)
                        .and_then(|n| spec_match(&Val::Str(n), spec))
                        .unwrap_or(false)
                })
            }
            (Parsed::Str(spec), DevVal::One(v)) => {
                // Python's str(None) is "None": a missing value is matched
                // as the string "none", exactly as IPA does.
                let raw = v.unwrap_or_else(|| "None".into());
                match normalize(&raw, name) {
                    Ok(n) => spec_match(&Val::Str(n), spec)?,
                    // "has an empty value. Skipping device."
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------
// The agent's entry points
// ---------------------------------------------------------------------

/// Keys the Kilo-era `root_device=` kernel parameter supported.
const KILO_KEYS: [&str; 8] = [
    "model",
    "wwn",
    "serial",
    "vendor",
    "size",
    "name",
    "wwn_with_extension",
    "wwn_vendor_extension",
];

/// The node's root-device hints: `instance_info.root_device` wins over
/// `properties.root_device` (an empty object counts as unset, as Python's
/// `or` does); else the Kilo-era `root_device=` cmdline hints, which were
/// exact matches: strings compare equal, `size` is the whole GiB count.
pub fn root_device_hints(
    node: Option<&Value>,
    cmdline: Option<&BTreeMap<String, String>>,
) -> Result<Option<Hints>> {
    let from_node = node.and_then(|n| {
        let pick = |section: &str| {
            n.get(section)
                .and_then(|s| s.get("root_device"))
                .filter(|v| !is_falsy(v))
        };
        pick("instance_info")
            .or_else(|| pick("properties"))
            .cloned()
    });
    if let Some(v) = from_node {
        return match v {
            Value::Object(m) => Ok(Some(m)),
            other => Err(AgentError::device_not_found(format!(
                "No devices could be found using the root device hints {} because they \
                 failed to validate. Error: root_device must be a dictionary",
                py_repr(&other)
            ))),
        };
    }
    let Some(kv) = cmdline.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let mut hints = Hints::new();
    for (k, v) in kv {
        if !KILO_KEYS.contains(&k.as_str()) {
            return Err(AgentError::device_not_found(format!(
                "No device can be found because of the following invalid root device \
                 hints: {k}. Supported hints are: {}",
                KILO_KEYS.join(", ")
            )));
        }
        let v = crate::util::percent_decode(v);
        let expr = if k == "size" {
            let gib: u64 = v.trim().parse().map_err(|_| {
                AgentError::device_not_found(format!(
                    "Root device hint \"size\" is not an integer value. Current value: {v}"
                ))
            })?;
            format!("<range-in> [ {gib} {} )", gib + 1)
        } else {
            format!("s== {v}")
        };
        hints.insert(k.clone(), Value::String(expr));
    }
    Ok(Some(hints))
}

fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// The RAID `volume_name`s `properties.skip_block_devices` keeps (IPA's
/// `get_skip_list_from_node_for_raids`).
pub fn skip_list_volume_names(node: &Value) -> Vec<&str> {
    // borrowed from the node: no copies
    let mut out = vec![];
    if let Some(items) = node
        .get("properties")
        .and_then(|p| p.get("skip_block_devices"))
        .and_then(Value::as_array)
    {
        for i in items {
            if let Some(n) = i.get("volume_name").and_then(Value::as_str) {
                out.push(n);
            }
        }
    }
    out
}

/// `properties.skip_block_devices` as a list of hint sets, validated.
/// Entries naming a RAID `volume_name` are left out here, as IPA's
/// `get_skip_list_from_node_for_disks` does; [`skip_list_volume_names`]
/// has them.
pub fn skip_list_hints(node: &Value) -> Result<Vec<Hints>> {
    let Some(list) = node
        .get("properties")
        .and_then(|p| p.get("skip_block_devices"))
        .filter(|v| !is_falsy(v))
    else {
        return Ok(vec![]);
    };
    let Value::Array(items) = list else {
        return Err(AgentError::invalid_params(format!(
            "properties.skip_block_devices must be a list, not {}",
            py_repr(list)
        )));
    };
    let mut out = vec![];
    for item in items {
        let Value::Object(h) = item else {
            return Err(AgentError::invalid_params(format!(
                "properties.skip_block_devices entries must be dictionaries, not {}",
                py_repr(item)
            )));
        };
        if h.contains_key("volume_name") {
            continue;
        }
        parse_hints(h).map_err(|e| {
            AgentError::invalid_params(format!(
                "Invalid skip_block_devices hint {}: {}",
                py_repr(item),
                e.details
            ))
        })?;
        out.push(h.clone());
    }
    Ok(out)
}

/// True when the device matches any of the hint sets (a skip list).
/// Hint sets that fail to parse or apply match nothing (they were
/// validated by [`skip_list_hints`]).
pub fn matches_any(dev: &BlockDevice, hint_sets: &[Hints]) -> bool {
    hint_sets.iter().any(|h| match parse_hints(h) {
        Ok(Some(p)) => device_matches(dev, &p).unwrap_or(false),
        _ => false,
    })
}

/// Every device matching the hints, in inventory order (IPA's
/// `find_devices_by_hints`).
pub fn find_devices<'a>(devices: &'a [BlockDevice], hints: &Hints) -> Result<Vec<&'a BlockDevice>> {
    let invalid = |e: AgentError| {
        AgentError::device_not_found(format!(
            "No devices could be found using the root device hints {} because they failed \
             to validate. Error: {}",
            py_repr(&Value::Object(hints.clone())),
            e.details
        ))
    };
    let Some(parsed) = parse_hints(hints).map_err(invalid)? else {
        return Ok(devices.iter().collect());
    };
    let mut out = vec![];
    for d in devices {
        if device_matches(d, &parsed).map_err(invalid)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Pick the install device (IPA's `get_os_install_device`): with hints the
/// first device, in inventory order, matching all of them; without, the
/// smallest disk of at least 4 GiB, ties broken by name
/// (`utils.guess_root_disk`).
pub fn select_root_device(devices: &[BlockDevice], hints: Option<&Hints>) -> Result<BlockDevice> {
    if let Some(h) = hints.filter(|h| !h.is_empty()) {
        return find_devices(devices, h)?
            .first()
            .map(|d| (*d).clone())
            .ok_or_else(|| {
                AgentError::device_not_found(format!(
                    "No suitable device was found for deployment using these hints {}",
                    py_repr(&Value::Object(h.clone()))
                ))
            });
    }
    const MIN: u64 = 4 << 30;
    let mut v: Vec<&BlockDevice> = devices.iter().collect();
    crate::util::sort_small_by(&mut v, |a, b| (a.size, &a.name).cmp(&(b.size, &b.name)));
    v.into_iter()
        .find(|d| d.size >= MIN)
        .cloned()
        .ok_or_else(|| {
            AgentError::device_not_found(format!(
                "No suitable device was found for deployment - root device hints were not \
                 provided and all found block devices are smaller than {MIN}B."
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hints(v: Value) -> Hints {
        v.as_object().unwrap().clone()
    }

    fn parsed(v: Value) -> BTreeMap<String, Parsed> {
        parse_hints(&hints(v)).unwrap().unwrap()
    }

    fn s(x: &str) -> Parsed {
        Parsed::Str(x.into())
    }

    fn i(x: &str) -> Parsed {
        Parsed::Int(x.into())
    }

    // --- IPA tests/unit/test_device_hints.py: ParseRootDeviceTestCase ---

    #[test]
    fn parse_without_operators() {
        let p = parsed(json!({
            "wwn": "123456", "model": "FOO model", "size": 12345,
            "serial": "foo-serial", "vendor": "foo VENDOR with space",
            "name": "/dev/sda", "wwn_with_extension": "123456111",
            "wwn_vendor_extension": "111", "rotational": true,
            "hctl": "1:0:0:0", "by_path": "/dev/disk/by-path/1:0:0:0"}));
        assert_eq!(p["wwn"], s("s== 123456"));
        assert_eq!(p["model"], s("s== foo%20model"));
        assert_eq!(p["size"], i("== 12345"));
        assert_eq!(p["serial"], s("s== foo-serial"));
        assert_eq!(p["vendor"], s("s== foo%20vendor%20with%20space"));
        assert_eq!(p["name"], s("s== /dev/sda"));
        assert_eq!(p["wwn_with_extension"], s("s== 123456111"));
        assert_eq!(p["wwn_vendor_extension"], s("s== 111"));
        assert_eq!(p["rotational"], Parsed::Bool(true));
        assert_eq!(p["hctl"], s("s== 1%3A0%3A0%3A0"));
        assert_eq!(p["by_path"], s("s== /dev/disk/by-path/1%3A0%3A0%3A0"));
    }

    #[test]
    fn parse_with_operators() {
        let p = parsed(json!({
            "wwn": "s== 123456", "model": "s== foo MODEL", "size": ">= 12345",
            "serial": "s!= foo-serial", "vendor": "s== foo VENDOR with space",
            "name": "<or> /dev/sda <or> /dev/sdb",
            "wwn_with_extension": "s!= 123456111",
            "wwn_vendor_extension": "s== 111", "rotational": true,
            "hctl": "s== 1:0:0:0", "by_path": "s== /dev/disk/by-path/1:0:0:0"}));
        assert_eq!(p["wwn"], s("s== 123456"));
        assert_eq!(p["model"], s("s== foo%20model"));
        assert_eq!(p["size"], i(">= 12345"));
        assert_eq!(p["serial"], s("s!= foo-serial"));
        assert_eq!(p["vendor"], s("s== foo%20vendor%20with%20space"));
        assert_eq!(p["name"], s("<or> /dev/sda <or> /dev/sdb"));
        assert_eq!(p["wwn_with_extension"], s("s!= 123456111"));
        assert_eq!(p["hctl"], s("s== 1%3A0%3A0%3A0"));
        assert_eq!(p["by_path"], s("s== /dev/disk/by-path/1%3A0%3A0%3A0"));
        assert_eq!(
            parsed(json!({"name": "s== /dev/sdb"}))["name"],
            s("s== /dev/sdb")
        );
    }

    #[test]
    fn parse_no_hints_and_sizes() {
        assert_eq!(parse_hints(&Hints::new()), Ok(None));
        for size in [json!(12345), json!("12345")] {
            assert_eq!(parsed(json!({ "size": size }))["size"], i("== 12345"));
        }
        for bad in [
            json!("not-int"),
            json!(-123),
            json!(0),
            json!(1.5),
            json!(null),
        ] {
            assert!(
                parse_hints(&hints(json!({ "size": bad }))).is_err(),
                "{bad}"
            );
        }
        let expr = "<or> 123 <or> 456 <or> 789";
        assert_eq!(parsed(json!({ "size": expr }))["size"], i(expr));
        assert!(parse_hints(&hints(json!({"size": "<or> 123 <or> non-int <or> 789"}))).is_err());
        assert_eq!(
            parsed(json!({"model": "<or> foo <or> foo bar <or> bar"}))["model"],
            s("<or> foo <or> foo%20bar <or> bar")
        );
    }

    #[test]
    fn parse_rotational() {
        for v in [
            json!(true),
            json!("true"),
            json!("on"),
            json!("y"),
            json!("yes"),
        ] {
            assert_eq!(
                parsed(json!({ "rotational": v }))["rotational"],
                Parsed::Bool(true)
            );
        }
        for v in [
            json!(false),
            json!("false"),
            json!("off"),
            json!("n"),
            json!("no"),
        ] {
            assert_eq!(
                parsed(json!({ "rotational": v }))["rotational"],
                Parsed::Bool(false)
            );
        }
        let e = parse_hints(&hints(json!({"rotational": "not-bool"}))).unwrap_err();
        assert_eq!(
            e.details,
            "Root device hint \"rotational\" is not a Boolean value. Current value: not-bool"
        );
    }

    #[test]
    fn parse_rejects_non_strings_and_unknown_keys() {
        for k in [
            "wwn",
            "wwn_with_extension",
            "wwn_vendor_extension",
            "model",
            "serial",
            "vendor",
            "name",
            "hctl",
            "by_path",
            "tran",
        ] {
            let e = parse_hints(&hints(json!({ k: 123 }))).unwrap_err();
            assert_eq!(
                e.details,
                format!("Root device hint \"{k}\" is not a string value. Hint expression: 123")
            );
        }
        let e = parse_hints(&hints(json!({"non-existent": "foo"}))).unwrap_err();
        assert!(
            e.details.starts_with(
                "The hints \"non-existent\" are invalid. Valid hints are: \"size, model"
            ),
            "{e}"
        );
    }

    #[test]
    fn extract_operator_and_values() {
        assert_eq!(
            extract(">= 123", "size").unwrap(),
            (">=".into(), vec!["123".into()])
        );
        assert_eq!(
            extract("<or> 123 <or> 456 <or> 789", "size").unwrap(),
            (
                "<or>".into(),
                vec!["123".into(), "456".into(), "789".into()]
            )
        );
        assert_eq!(
            extract("<or> foo <or> foo bar <or> bar", "model").unwrap(),
            (
                "<or>".into(),
                vec!["foo".into(), "foo bar".into(), "bar".into()]
            )
        );
        assert_eq!(
            extract("123", "size").unwrap(),
            (String::new(), vec!["123".into()])
        );
        assert!(extract("", "size").is_err());
        assert!(extract("   ", "size").is_err());
        assert!(extract("s==", "model").is_err());
    }

    #[test]
    fn append_operator() {
        let p = parsed(json!({"serial": "foo", "size": 12345, "model": "foo model",
                              "rotational": true}));
        assert_eq!(p["serial"], s("s== foo"));
        assert_eq!(p["size"], i("== 12345"));
        assert_eq!(p["model"], s("s== foo%20model"));
        assert_eq!(p["rotational"], Parsed::Bool(true));
    }

    #[test]
    fn normalize_expressions() {
        for (expr, want) in [
            (
                "<or> foo <or> foo bar <or> bar",
                "<or> foo <or> foo%20bar <or> bar",
            ),
            (
                "<in> foo <in> foo bar <in> bar",
                "<in> foo <in> foo%20bar <in> bar",
            ),
            (
                "s== test string with space",
                "s== test%20string%20with%20space",
            ),
            ("s!= SpongeBob", "s!= spongebob"),
            ("no operators", "no%20operators"),
            ("NoSpace", "nospace"),
            ("s==big model", "s== big%20model"),
        ] {
            assert_eq!(normalize(expr, "model").unwrap(), want, "{expr}");
        }
        assert!(normalize("", "size").is_err());
    }

    // --- MatchRootDeviceTestCase ---

    fn devices() -> Vec<BlockDevice> {
        vec![
            // IPA's sda has no "rotational" key, so a rotational hint
            // skips it; a BlockDevice always has one: make it rotational.
            BlockDevice {
                name: "/dev/sda".into(),
                rotational: true,
                size: 64424509440,
                model: Some("ok model".into()),
                serial: Some("fakeserial".into()),
                wwn: Some("wwn_1".into()),
                ..Default::default()
            },
            BlockDevice {
                name: "/dev/sdb".into(),
                size: 128849018880,
                model: Some("big model".into()),
                serial: Some("veryfakeserial".into()),
                all_serials: vec!["veryfakeserial".into(), "alsoveryfakeserial".into()],
                rotational: true,
                wwn: Some("wwn_2".into()),
                all_wwns: vec!["wwn_2".into(), "wwn_2_ext".into()],
                ..Default::default()
            },
            BlockDevice {
                name: "/dev/sdc".into(),
                size: 10737418240,
                model: Some("small model".into()),
                serial: Some("veryveryfakeserial".into()),
                rotational: false,
                wwn: Some("wwn_3".into()),
                ..Default::default()
            },
        ]
    }

    fn pick(h: Value) -> Option<String> {
        select_root_device(&devices(), Some(&hints(h)))
            .ok()
            .map(|d| d.name)
    }

    fn all(h: Value) -> Vec<String> {
        find_devices(&devices(), &hints(h))
            .unwrap()
            .into_iter()
            .map(|d| d.name.clone())
            .collect()
    }

    #[test]
    fn match_root_device_hints() {
        assert_eq!(pick(json!({"size": ">= 70"})).as_deref(), Some("/dev/sdb"));
        assert_eq!(
            pick(json!({"rotational": false})).as_deref(),
            Some("/dev/sdc")
        );
        assert_eq!(
            pick(json!({"size": ">=100", "rotational": true})).as_deref(),
            Some("/dev/sdb")
        );
        assert_eq!(
            pick(json!({"size": ">= 50", "model": "s==big model", "serial": "s==veryfakeserial"}))
                .as_deref(),
            Some("/dev/sdb")
        );
        assert_eq!(
            pick(json!({"size": "<= 20",
                        "model": "<or> model 5 <or> foomodel <or> small model <or>",
                        "serial": "s== veryveryfakeserial"}))
            .as_deref(),
            Some("/dev/sdc")
        );
        assert_eq!(
            pick(json!({"rotational": false, "model": "<in> small"})).as_deref(),
            Some("/dev/sdc")
        );
        assert_eq!(
            pick(json!({"wwn": "wwn_2_ext"})).as_deref(),
            Some("/dev/sdb")
        );
        assert_eq!(
            pick(json!({"size": "120", "model": "big model", "serial": "veryfakeserial"}))
                .as_deref(),
            Some("/dev/sdb")
        );
        assert_eq!(pick(json!({"size": ">=50", "model": "s==foo"})), None);
        let empty = vec![BlockDevice {
            name: "/dev/sda".into(),
            model: Some(" ".into()),
            ..Default::default()
        }];
        assert!(select_root_device(&empty, Some(&hints(json!({"model": "foo"})))).is_err());
    }

    #[test]
    fn find_devices_cases() {
        assert_eq!(
            all(json!({"size": ">= 10"})),
            vec!["/dev/sda", "/dev/sdb", "/dev/sdc"]
        );
        assert!(all(json!({"size": ">= 100500"})).is_empty());
        assert_eq!(all(json!({"name": "s== /dev/sda"})), vec!["/dev/sda"]);
        assert_eq!(all(json!({"serial": "s== fakeserial"})), vec!["/dev/sda"]);
        assert_eq!(
            all(json!({"serial": "s== alsoveryfakeserial"})),
            vec!["/dev/sdb"]
        );
        assert_eq!(all(json!({"wwn": "s== wwn_1"})), vec!["/dev/sda"]);
        assert_eq!(all(json!({"wwn": "s== wwn_2"})), vec!["/dev/sdb"]);
    }

    // --- specs_matcher, every operator (oslo's test_specs_matcher cases) ---

    #[test]
    fn spec_match_operators() {
        let st = |x: &str| Val::Str(x.into());
        let t = |v: Val, spec: &str| spec_match(&v, spec).unwrap();
        assert!(t(st("1"), "= 1"));
        assert!(t(st("2"), "= 1")); // '=' means >=
        assert!(!t(st("0"), "= 1"));
        assert!(t(st("1.0"), "== 1"));
        assert!(!t(st("2"), "== 1"));
        assert!(t(st("2"), "!= 1"));
        assert!(t(st("1"), "<= 1") && t(st("0.5"), "<= 1") && !t(st("2"), "<= 1"));
        assert!(t(st("0"), "< 1") && !t(st("1"), "< 1"));
        assert!(t(st("1"), ">= 1") && !t(st("0"), ">= 1"));
        assert!(t(st("2"), "> 1") && !t(st("1"), "> 1"));
        assert!(t(st("abc"), "s== abc") && !t(st("abd"), "s== abc"));
        assert!(t(st("abd"), "s!= abc") && !t(st("abc"), "s!= abc"));
        assert!(t(st("abc"), "s< abd") && !t(st("abd"), "s< abd"));
        assert!(t(st("abd"), "s<= abd") && !t(st("abe"), "s<= abd"));
        assert!(t(st("abe"), "s> abd") && !t(st("abd"), "s> abd"));
        assert!(t(st("abd"), "s>= abd") && !t(st("abc"), "s>= abd"));
        assert!(t(st("gcc 4.8"), "<in> gcc") && !t(st("clang"), "<in> gcc"));
        assert!(t(st("b"), "<or> a <or> b") && !t(st("c"), "<or> a <or> b"));
        assert!(t(st("['aes', 'mmx', 'sse']"), "<all-in> aes mmx"));
        assert!(!t(st("['aes', 'sse']"), "<all-in> aes mmx"));
        assert!(spec_match(&st("aes mmx"), "<all-in> aes").is_err());
        assert!(t(st("10"), "<range-in> [ 10 20 ]"));
        assert!(!t(st("10"), "<range-in> ( 10 20 ]"));
        assert!(t(st("20"), "<range-in> ( 10 20 ]"));
        assert!(!t(st("20"), "<range-in> ( 10 20 )"));
        assert!(spec_match(&st("15"), "<range-in> [ 20 10 ]").is_err());
        assert!(spec_match(&st("15"), "<range-in> { 10 20 ]").is_err());
        assert!(spec_match(&st("abc"), "== 1").is_err());
        // no operator: string equality
        assert!(t(st("foo"), "foo") && !t(st("foo"), "bar"));
        // numbers
        assert!(t(Val::Num(120.0), "== 120"));
        assert!(t(Val::Num(120.0), "<or> 100 <or> 120"));
        assert!(t(Val::Num(10.5), "<range-in> [ 10 11 )"));
        assert!(spec_match(&Val::Num(1.0), "<in> 1").is_err());
    }

    #[test]
    fn grammar_prefix_parse() {
        assert_eq!(
            parse_spec("s==foo bar"),
            Some(vec!["s==".into(), "foo".into()])
        );
        assert_eq!(parse_spec(">=100"), Some(vec![">=".into(), "100".into()]));
        assert_eq!(parse_spec("<foo"), Some(vec!["<".into(), "foo".into()]));
        assert_eq!(parse_spec("<in>"), None);
        assert_eq!(parse_spec("== s== x"), None);
        assert_eq!(parse_spec("plain words"), Some(vec!["plain".into()]));
        assert_eq!(
            parse_spec("<range-in> [ 1 2 ]"),
            Some(vec![
                "<range-in>".into(),
                "[".into(),
                "1".into(),
                "2".into(),
                "]".into()
            ])
        );
        // the range needs four atoms ("[10" "100)" are two), so pyparsing
        // falls through to the unary "<" followed by the atom "range-in>"
        assert_eq!(
            parse_spec("<range-in> [10 100)"),
            Some(vec!["<".into(), "range-in>".into()])
        );
        assert!(parse_hints(&hints(json!({"size": "<range-in> [10 100)"}))).is_err());
    }

    #[test]
    fn size_range_and_or_hints() {
        assert_eq!(
            all(json!({"size": "<or> 60 <or> 10"})),
            vec!["/dev/sda", "/dev/sdc"]
        );
        assert_eq!(
            all(json!({"size": "<range-in> [ 10 61 )"})),
            vec!["/dev/sda", "/dev/sdc"]
        );
        assert!(parse_hints(&hints(json!({"size": "<range-in> [ 0 61 )"}))).is_err());
        assert!(parse_hints(&hints(json!({"size": "<range-in> [ a 61 )"}))).is_err());
    }

    #[test]
    fn missing_values_and_errors() {
        // Python's str(None) == "None": IPA matches a missing model as "none"
        let d = vec![BlockDevice {
            name: "/dev/sdx".into(),
            size: 8 << 30,
            ..Default::default()
        }];
        assert!(select_root_device(&d, Some(&hints(json!({"model": "None"})))).is_ok());
        // no serial at all never matches a serial hint
        assert!(select_root_device(&d, Some(&hints(json!({"serial": "none"})))).is_err());
        // a numeric operator on a string hint fails validation
        let e = select_root_device(&devices(), Some(&hints(json!({"model": ">= 5"})))).unwrap_err();
        assert!(e.details.contains("failed to validate"), "{}", e.details);
        let e =
            select_root_device(&devices(), Some(&hints(json!({"size": ">= 5000"})))).unwrap_err();
        assert_eq!(
            e.details,
            "No suitable device was found for deployment using these hints {'size': '>= 5000'}"
        );
        assert!(e.is(crate::error::Kind::DeviceNotFound));
    }

    #[test]
    fn selection_without_hints() {
        let mk = |n: &str, gib: u64| BlockDevice {
            name: n.into(),
            size: gib << 30,
            ..Default::default()
        };
        let d = vec![
            mk("/dev/sdb", 10),
            mk("/dev/sda", 10),
            mk("/dev/sdc", 3),
            mk("/dev/sdd", 100),
        ];
        assert_eq!(select_root_device(&d, None).unwrap().name, "/dev/sda");
        assert_eq!(
            select_root_device(&d, Some(&Hints::new())).unwrap().name,
            "/dev/sda"
        );
        let e = select_root_device(&[mk("/dev/sdc", 3)], None).unwrap_err();
        assert_eq!(
            e.details,
            "No suitable device was found for deployment - root device hints were not \
             provided and all found block devices are smaller than 4294967296B."
        );
        assert!(select_root_device(&[], None).is_err());
    }

    #[test]
    fn hints_from_node_and_cmdline() {
        let node = json!({"instance_info": {"root_device": {"name": "/dev/sdb"}},
                          "properties": {"root_device": {"size": 10}}});
        assert_eq!(
            root_device_hints(Some(&node), None).unwrap().unwrap(),
            hints(json!({"name": "/dev/sdb"}))
        );
        let node = json!({"instance_info": {"root_device": {}},
                          "properties": {"root_device": {"size": 10}}});
        assert_eq!(
            root_device_hints(Some(&node), None).unwrap().unwrap(),
            hints(json!({"size": 10}))
        );
        let node = json!({"instance_info": {}, "properties": {}});
        assert_eq!(root_device_hints(Some(&node), None).unwrap(), None);
        assert!(
            root_device_hints(Some(&json!({"properties": {"root_device": "sda"}})), None).is_err()
        );

        let mut kilo = BTreeMap::new();
        kilo.insert("size".to_string(), "60".to_string());
        kilo.insert("model".to_string(), "ok%20model".to_string());
        let h = root_device_hints(None, Some(&kilo)).unwrap().unwrap();
        assert_eq!(pick(Value::Object(h)).as_deref(), Some("/dev/sda"));
        // node hints win over the cmdline
        let node = json!({"properties": {"root_device": {"name": "/dev/sdc"}}});
        let h = root_device_hints(Some(&node), Some(&kilo))
            .unwrap()
            .unwrap();
        assert_eq!(pick(Value::Object(h)).as_deref(), Some("/dev/sdc"));
        kilo.insert("hctl".to_string(), "1:0:0:0".to_string());
        assert!(root_device_hints(None, Some(&kilo)).is_err());
    }

    #[test]
    fn skip_lists() {
        let node = json!({"properties": {"skip_block_devices": [
            {"name": "/dev/sda"}, {"volume_name": "large"}, {"size": ">= 100"}]}});
        let skip = skip_list_hints(&node).unwrap();
        assert_eq!(skip.len(), 2);
        let kept: Vec<String> = devices()
            .into_iter()
            .filter(|d| !matches_any(d, &skip))
            .map(|d| d.name)
            .collect();
        assert_eq!(kept, vec!["/dev/sdc"]);
        assert!(
            skip_list_hints(&json!({"properties": {"skip_block_devices": [{"bogus": 1}]}}))
                .is_err()
        );
        assert!(skip_list_hints(&json!({"properties": {"skip_block_devices": "sda"}})).is_err());
        assert!(skip_list_hints(&json!({"properties": {}}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn quoting_and_repr() {
        assert_eq!(quote("a b:c/d~e_f.g-h%"), "a%20b%3Ac/d~e_f.g-h%25");
        assert_eq!(quote("é"), "%C3%A9");
        assert_eq!(
            py_repr(&json!({"a": [1, true, null, "x'y"]})),
            "{'a': [1, True, None, 'x\\'y']}"
        );
    }

    #[test]
    fn hostile_expressions_never_panic() {
        for e in [
            "<",
            "<or>",
            "<or> <or>",
            "<all-in>",
            "<range-in> [",
            "s",
            "==",
            "\u{1F600} <in>",
            "<range-in> [ 1 2 ] extra",
            "=\u{e9}",
            "<or>\u{e9}",
        ] {
            let _ = parse_spec(e);
            let _ = normalize(e, "model");
            let _ = spec_match(&Val::Str("x".into()), e);
            let _ = parse_hints(&hints(json!({ "model": e, "size": e })));
        }
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::root::Root;

    fn fixture(name: &str) -> Root {
        Root::fixture(name)
    }

    #[test]
    fn root_device_on_fixtures() {
        let hints = |v: serde_json::Value| -> Hints { v.as_object().unwrap().clone() };
        let server = crate::disk::list::list_block_devices(&fixture("server"), false).unwrap();
        assert_eq!(select_root_device(&server, None).unwrap().name, "/dev/sda");
        for (h, want) in [
            (
                serde_json::json!({"serial": "z0n0a02etz1a"}),
                "/dev/nvme0n1",
            ),
            (serde_json::json!({"wwn": "0x5000C500A1B2C3D4"}), "/dev/sdb"),
            (serde_json::json!({"rotational": true}), "/dev/sdb"),
            (serde_json::json!({"size": ">= 1000"}), "/dev/nvme0n1"),
            (serde_json::json!({"hctl": "1:0:0:0"}), "/dev/sdb"),
            (serde_json::json!({"tran": "nvme"}), "/dev/nvme0n1"),
            (
                serde_json::json!({"vendor": "ata", "size": "<= 1000"}),
                "/dev/sda",
            ),
            (serde_json::json!({"model": "<in> samsung"}), "/dev/sda"),
            (
                serde_json::json!({"by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-2"}),
                "/dev/sdb",
            ),
            (serde_json::json!({"name": "/dev/sdb"}), "/dev/sdb"),
            (
                serde_json::json!({"serial": "SAMSUNG_MZ7LH480_S45NNE0M123456"}),
                "/dev/sda",
            ),
        ] {
            assert_eq!(
                select_root_device(&server, Some(&hints(h.clone())))
                    .unwrap()
                    .name,
                want,
                "{h}"
            );
        }
        let odd = crate::disk::list::list_block_devices(&fixture("odd"), false).unwrap();
        // smallest disk of at least 4 GiB
        assert_eq!(select_root_device(&odd, None).unwrap().name, "/dev/nvme0n1");
        assert_eq!(
            select_root_device(
                &odd,
                Some(&hints(
                    serde_json::json!({"wwn_vendor_extension": "0x6f7a8b9c0d1e2f30"})
                ))
            )
            .unwrap()
            .name,
            "/dev/sdb"
        );
    }
}
