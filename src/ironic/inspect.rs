//! Inspection (protocol §6, IPA's `inspector.py`): run the collectors, POST
//! their JSON to the inspection callback URL(s) before lookup, and use the
//! node UUID Ironic answers with for the lookup.
//!
//! As IPA: collector failures are accumulated into `error` and the data is
//! posted anyway (inspection runs on unknown nodes, so partial data is
//! better than none), after which the agent looks up without the node
//! UUID Ironic answered with; a collector name that is not one of IPA's
//! runs no collector at all and posts only that error.

use crate::agent::Agent;
use crate::hardware::generic::collect::{self, dmi};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

const RETRY_ATTEMPTS: u32 = 5;
const RETRY_WAIT: f64 = 5.0;
const RETRY_WAIT_MAX: f64 = 30.0;

/// IPA's `INSPECTION_DEFAULT_COLLECTORS`.
const DEFAULT_COLLECTORS: [&str; 2] = ["default", "logs"];

/// Whether to inspect before lookup (IPA's `inspector.inspect`): with a
/// callback URL, or with collectors given explicitly and an API URL.
pub fn enabled(agent: &Agent) -> bool {
    let c = &agent.config;
    c.inspection_callback_url.is_some()
        || (!c.inspection_collectors.is_empty() && !c.api_urls.is_empty())
}

/// The collectors to run: as configured, else `default,logs`.
pub fn collector_names(agent: &Agent) -> Vec<String> {
    if agent.config.inspection_collectors.is_empty() {
        DEFAULT_COLLECTORS.iter().map(|s| s.to_string()).collect()
    } else {
        agent.config.inspection_collectors.clone()
    }
}

/// The callback URLs: `ipa-inspection-callback-url`, else each API URL +
/// `/v1/continue_inspection` when collectors are configured.
pub fn callback_urls(agent: &Agent) -> Vec<String> {
    let c = &agent.config;
    if let Some(u) = &c.inspection_callback_url {
        return u
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    c.api_urls
        .iter()
        .map(|u| format!("{}/v1/continue_inspection", u.trim_end_matches('/')))
        .collect()
}

/// Wait for DHCP: the PXE NIC (BOOTIF), or every NIC, has an IPv4 address.
fn wait_for_dhcp(agent: &Agent) {
    let c = &agent.config;
    if c.inspection_dhcp_wait_timeout == 0 {
        return;
    }
    let bootif = c.bootif.as_deref().map(normalize_bootif);
    let deadline = Instant::now() + Duration::from_secs(c.inspection_dhcp_wait_timeout);
    loop {
        let inv = agent.inventory();
        let ready = inv.map(|inv| {
            let relevant: Vec<_> = inv
                .interfaces
                .iter()
                .filter(|i| {
                    c.inspection_dhcp_all_interfaces
                        || bootif.is_none()
                        || i.mac_address.as_deref() == bootif.as_deref()
                })
                .collect();
            if c.inspection_dhcp_all_interfaces || bootif.is_some() {
                !relevant.is_empty() && relevant.iter().all(|i| i.ipv4_address.is_some())
            } else {
                relevant.iter().any(|i| i.ipv4_address.is_some())
            }
        });
        if ready.unwrap_or(false) {
            return;
        }
        if Instant::now() >= deadline {
            crate::util::log_at!(
                Warn,
                "not all network interfaces have an IPv4 address after {} s",
                c.inspection_dhcp_wait_timeout
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// BOOTIF is `01-aa-bb-cc-dd-ee-ff` (pxelinux) or `aa:bb:...` (iPXE).
pub fn normalize_bootif(b: &str) -> String {
    let b = b.trim().to_ascii_lowercase();
    let b = if b.len() == 20 && b.starts_with("01-") {
        b[3..].to_string()
    } else {
        b
    };
    b.replace('-', ":")
}

/// IPA's collectors, the `ironic_python_agent.inspector.collectors`
/// entry points of its pyproject.toml, and the keys they add.
pub const COLLECTORS: [&str; 8] = [
    "default",        // inventory, root_disk, boot_interface, configuration
    "logs",           // logs
    "extra-hardware", // data
    "pci-devices",    // pci_devices
    "numa-topology",  // numa_topology
    "dmi-decode",     // dmi
    "lldp",           // lldp_raw
    "usb-devices",    // usb_devices
];

/// Python's `repr()` of a string: IPA prints the names it could not load
/// as a Python set.
fn py_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// IPA's error for collector names that are not collectors (stevedore's
/// missing entry points, `_extension_manager_err_callback`): `Failed to
/// load collector {'foo', 'bar'}`, the names as a Python set (here in the
/// order given; Python's order depends on the hash seed).
pub fn unknown_collectors(names: &[String]) -> Option<String> {
    let mut unknown: Vec<&str> = vec![];
    for n in names {
        if !COLLECTORS.contains(&n.as_str()) && !unknown.contains(&n.as_str()) {
            unknown.push(n);
        }
    }
    if unknown.is_empty() {
        return None;
    }
    let set: Vec<String> = unknown.iter().map(|n| py_repr(n)).collect();
    Some(format!("Failed to load collector {{{}}}", set.join(", ")))
}

/// Run the collectors in the order given (a name given twice runs twice,
/// as stevedore's `name_order` does). Returns the data and the
/// accumulated errors. A name that is not a collector stops everything
/// before any collector runs: the data is empty and the one error is
/// IPA's (see [`unknown_collectors`]).
pub fn collect_data(agent: &Agent) -> (Map<String, Value>, Vec<String>) {
    let mut data = Map::new();
    let mut errors: Vec<String> = vec![];
    let names = collector_names(agent);
    if let Some(e) = unknown_collectors(&names) {
        crate::util::log_at!(Error, "{e}");
        return (data, vec![e]);
    }
    for name in &names {
        run_collector(agent, name, &names, &mut data, &mut errors);
    }
    (data, errors)
}

/// One collector (IPA's `inspector.collect_*`), adding its keys to `data`
/// and its failures to `errors` with IPA's wording.
fn run_collector(
    agent: &Agent,
    name: &str,
    names: &[String],
    data: &mut Map<String, Value>,
    errors: &mut Vec<String>,
) {
    let env = agent.env();
    match name {
        "default" => {
            wait_for_dhcp(agent);
            match agent.inventory() {
                Ok(inv) => {
                    data.insert("inventory".into(), json!(inv));
                    match crate::hardware::hints::select_root_device(&inv.disks, None) {
                        Ok(d) => {
                            data.insert("root_disk".into(), json!(d));
                        }
                        Err(_) => crate::util::log_at!(Warn, "no suitable root device detected"),
                    }
                }
                Err(e) => errors.push(format!("collector default failed: {e}")),
            }
            data.insert("boot_interface".into(), json!(agent.config.bootif));
            let managers: Vec<Value> = agent
                .managers
                .iter()
                .map(|(m, _)| {
                    let (n, v) = m.version();
                    json!({"name": n, "version": v})
                })
                .collect();
            data.insert(
                "configuration".into(),
                json!({"collectors": names, "managers": managers}),
            );
        }
        // IPA's logs collector "does not report failures": a warning only
        "logs" => match crate::commands::log_ext::bundle_base64(agent) {
            Ok(b) => {
                data.insert("logs".into(), Value::String(b));
            }
            Err(e) => crate::util::log_at!(Warn, "failed to get system journal: {e}"),
        },
        "extra-hardware" => {
            data.insert("data".into(), json!(collect::extra::detect(&agent.root)));
        }
        "pci-devices" => match collect::pci_devices(&agent.root) {
            Ok(v) => {
                data.insert("pci_devices".into(), v);
            }
            Err(e) => errors.push(e.into_details()),
        },
        "numa-topology" => match collect::numa_topology(&agent.root) {
            Ok(v) => {
                data.insert("numa_topology".into(), v);
            }
            // IPA's numa_inspector only warns when the kernel exposes
            // no NUMA nodes (or an unexpected format) and adds nothing.
            Err(e) => crate::util::log_at!(Warn, "Failed to get some NUMA information ({e})"),
        },
        "dmi-decode" => {
            data.insert("dmi".into(), dmi::dmi_decode(&agent.root));
        }
        "lldp" => {
            data.insert("lldp_raw".into(), collect::lldp_raw(&env));
        }
        "usb-devices" => {
            data.insert("usb_devices".into(), collect::usb_devices(&agent.root));
        }
        other => unreachable!("{other} is checked against COLLECTORS first"),
    }
}

/// Run inspection. Returns the node UUID Ironic answered with, if any.
pub fn inspect(agent: &Agent, client_tls: ureq::tls::TlsConfig) -> Option<String> {
    let urls = callback_urls(agent);
    if urls.is_empty() {
        return None;
    }
    crate::util::log_at!(
        Info,
        "inspection is enabled with collectors {:?}",
        collector_names(agent)
    );
    let (mut data, errors) = collect_data(agent);
    let error = (!errors.is_empty()).then(|| {
        format!(
            "The following errors were encountered:\n{}",
            errors
                .iter()
                .map(|e| format!("* {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    data.insert("error".into(), json!(error));
    let body = Value::Object(data).to_string();
    let http: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(client_tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(agent.config.http_request_timeout)))
        .proxy(None)
        .build()
        .into();
    let mut wait = RETRY_WAIT;
    for attempt in 1..=RETRY_ATTEMPTS {
        let mut outcome: Option<(u16, String)> = None;
        for url in &urls {
            crate::util::log_at!(Info, "posting collected data to {url}");
            let mut req = http
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json");
            if let Some(id) = &agent.config.global_request_id {
                req = req.header("X-OpenStack-Request-ID", id);
            }
            match req.send(body.as_bytes()) {
                Ok(mut r) => {
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    outcome = Some((r.status().as_u16(), text));
                    break;
                }
                Err(e) => crate::util::log_at!(
                    Warn,
                    "connection error posting inspection data to {url}: {}",
                    super::describe(&e)
                ),
            }
        }
        match outcome {
            Some((status, text)) if status < 500 && status != 409 => {
                if status >= 400 {
                    crate::util::log_at!(
                        Error,
                        "inspection callback returned {status}: {text}; proceeding with lookup"
                    );
                }
                if let Some(e) = &error {
                    // IPA: `failures.raise_if_needed()` after posting; the
                    // agent logs it and looks up without the node UUID
                    crate::util::log_at!(Error, "Failed to perform inspection: {e}");
                    return None;
                }
                if status >= 400 {
                    return None;
                }
                crate::util::log_at!(Info, "inspection finished successfully");
                return serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                    v.get("uuid")
                        .or_else(|| v.pointer("/node/uuid"))
                        .and_then(Value::as_str)
                        .map(String::from)
                });
            }
            Some((status, text)) => {
                crate::util::log_at!(Warn, "inspection callback returned {status}: {text}")
            }
            None => {}
        }
        if attempt < RETRY_ATTEMPTS {
            std::thread::sleep(Duration::from_secs_f64(wait));
            wait = (wait * 1.5).min(RETRY_WAIT_MAX);
        }
    }
    crate::util::log_at!(
        Error,
        "giving up posting inspection data; proceeding with lookup"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_collectors_worded_as_ipa() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(unknown_collectors(&n(&COLLECTORS)), None);
        assert_eq!(
            unknown_collectors(&n(&["default", "foo", "logs"])).as_deref(),
            Some("Failed to load collector {'foo'}")
        );
        assert_eq!(
            unknown_collectors(&n(&["bar", "default", "foo", "bar"])).as_deref(),
            Some("Failed to load collector {'bar', 'foo'}")
        );
        // Python's repr of odd names
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("t\tn\\"), "'t\\tn\\\\'");
        assert_eq!(py_repr("\u{1}é"), "'\\x01é'");
    }

    #[test]
    fn bootif_forms() {
        assert_eq!(
            normalize_bootif("01-52-54-00-12-34-56"),
            "52:54:00:12:34:56"
        );
        assert_eq!(normalize_bootif("52:54:00:12:34:56"), "52:54:00:12:34:56");
        assert_eq!(normalize_bootif("52-54-00-12-34-56"), "52:54:00:12:34:56");
    }
}
