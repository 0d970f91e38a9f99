//! Inspection (protocol §6, IPA's `inspector.py`): run the collectors, POST
//! their JSON to the inspection callback URL(s) before lookup, and use the
//! node UUID Ironic answers with for the lookup.
//!
//! Collector failures are accumulated into `error` and the data is posted
//! anyway, as IPA does: inspection runs on unknown nodes, so partial data is
//! better than none.

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
            log::warn!(
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

/// Run the collectors. Returns the data and the accumulated errors.
pub fn collect_data(agent: &Agent) -> (Map<String, Value>, Vec<String>) {
    let mut data = Map::new();
    let mut errors: Vec<String> = vec![];
    let names = collector_names(agent);
    for name in &names {
        match name.as_str() {
            "default" => {
                wait_for_dhcp(agent);
                match agent.inventory() {
                    Ok(inv) => {
                        data.insert("inventory".into(), json!(inv));
                        let root_disk =
                            crate::hardware::hints::select_root_device(&inv.disks, None).ok();
                        data.insert("root_disk".into(), json!(root_disk));
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
            "logs" => {} // added last, below
            "pci-devices" => match collect::pci_devices(&agent.root) {
                Ok(v) => {
                    data.insert("pci_devices".into(), v);
                }
                Err(e) => errors.push(format!("collector pci-devices failed: {e}")),
            },
            "numa-topology" => match collect::numa_topology(&agent.root) {
                Ok(v) => {
                    data.insert("numa_topology".into(), v);
                }
                // IPA's numa_inspector only warns when the kernel exposes
                // no NUMA nodes (or an unexpected format) and adds nothing.
                Err(e) => log::warn!("failed to get NUMA information: {e}"),
            },
            "dmi-decode" => {
                data.insert("dmi".into(), dmi::dmi_decode(&agent.root));
            }
            other => errors.push(format!("Failed to load collector {other}")),
        }
    }
    if names.iter().any(|c| c == "logs") {
        match crate::commands::log_ext::bundle_base64(agent) {
            Ok(b) => {
                data.insert("logs".into(), Value::String(b));
            }
            Err(e) => errors.push(format!("collector logs failed: {e}")),
        }
    }
    (data, errors)
}

/// Run inspection. Returns the node UUID Ironic answered with, if any.
pub fn inspect(agent: &Agent, client_tls: ureq::tls::TlsConfig) -> Option<String> {
    let urls = callback_urls(agent);
    if urls.is_empty() {
        return None;
    }
    log::info!(
        "inspection is enabled with collectors {:?}",
        collector_names(agent)
    );
    let (mut data, errors) = collect_data(agent);
    let error = if errors.is_empty() {
        Value::Null
    } else {
        json!(format!(
            "The following errors were encountered:\n{}",
            errors
                .iter()
                .map(|e| format!("* {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    };
    data.insert("error".into(), error);
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
            log::info!("posting collected data to {url}");
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
                Err(e) => log::warn!(
                    "connection error posting inspection data to {url}: {}",
                    super::describe(&e)
                ),
            }
        }
        match outcome {
            Some((status, text)) if status < 400 => {
                log::info!("inspection finished successfully");
                return serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                    v.get("uuid")
                        .or_else(|| v.pointer("/node/uuid"))
                        .and_then(Value::as_str)
                        .map(String::from)
                });
            }
            Some((status, text)) if status < 500 && status != 409 => {
                log::error!(
                    "inspection callback returned {status}: {text}; proceeding with lookup"
                );
                return None;
            }
            Some((status, text)) => log::warn!("inspection callback returned {status}: {text}"),
            None => {}
        }
        if attempt < RETRY_ATTEMPTS {
            std::thread::sleep(Duration::from_secs_f64(wait));
            wait = (wait * 1.5).min(RETRY_WAIT_MAX);
        }
    }
    log::error!("giving up posting inspection data; proceeding with lookup");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
