//! Talking to Ironic (protocol §2): the HTTP client with IPA's URL
//! rotation and version negotiation, lookup data processing, and the
//! advertised callback URL. `lookup`, `heartbeat` and `inspect` build on it.

pub mod heartbeat;
pub mod inspect;
pub mod lookup;

use crate::agent::Agent;
use crate::config::Config;
use crate::error::{AgentError, Kind, Result};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

/// Ironic API versions that gate heartbeat fields (IPA's
/// `ironic_api_client.py`).
pub const MIN_IRONIC_VERSION: (u32, u32) = (1, 31);
pub const RAMDISK_ENDPOINTS_VERSION: (u32, u32) = (1, 22);
pub const AGENT_VERSION_IRONIC_VERSION: (u32, u32) = (1, 36);
pub const AGENT_TOKEN_IRONIC_VERSION: (u32, u32) = (1, 62);
pub const AGENT_VERIFY_CA_IRONIC_VERSION: (u32, u32) = (1, 68);

/// The version the agent reports as `agent_version`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A response: status and body text (bodies from Ironic are small JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// IPA's `_error_from_response`: "Error <code>: <faultstring>", unwrapping
/// Ironic's double-encoded `error_message`.
pub fn error_text(r: &Reply) -> String {
    let text = match r.json() {
        Some(v) => {
            let inner = v.get("error_message").cloned().unwrap_or(v.clone());
            let inner = match inner {
                Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                other => other,
            };
            inner
                .get("faultstring")
                .or_else(|| inner.get("title"))
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| r.body.clone())
        }
        None => r.body.clone(),
    };
    format!("Error {}: {}", r.status, text.trim())
}

/// The Ironic API client. Cheap to share: every field is behind a mutex
/// or immutable.
pub struct Client {
    http: ureq::Agent,
    urls: Mutex<Vec<String>>,
    version: Mutex<Option<(u32, u32)>>,
    forced_version: Option<(u32, u32)>,
    request_id: Option<String>,
}

impl Client {
    pub fn new(config: &Config, urls: &[String]) -> Result<Client> {
        let tls = crate::tls::client_tls(config)?;
        let cfg = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(config.http_request_timeout)))
            .max_idle_connections_per_host(2)
            .user_agent(format!("ironic-agent/{AGENT_VERSION}"))
            // proxies are for image downloads (image_info.proxies), not Ironic
            .proxy(None)
            .build();
        Ok(Client {
            http: ureq::Agent::new_with_config(cfg),
            urls: Mutex::new(
                urls.iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
            ),
            version: Mutex::new(None),
            forced_version: config.ironic_api_version,
            request_id: config.global_request_id.clone(),
        })
    }

    /// The API URLs, the one that last worked first.
    pub fn urls(&self) -> Vec<String> {
        crate::util::lock(&self.urls).clone()
    }

    /// One request to each URL in turn until one answers at the HTTP level
    /// (IPA's `_request`); the URL that answered moves to the front.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        version: Option<(u32, u32)>,
    ) -> Result<Reply> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err(AgentError::msg("no Ironic API URL configured"));
        }
        let mut last_err = String::new();
        for (idx, base) in urls.iter().enumerate() {
            let url = format!("{base}{path}");
            match self.send(method, &url, query, body, version) {
                Ok(r) => {
                    if idx > 0 {
                        let mut u = crate::util::lock(&self.urls);
                        u.rotate_left(idx);
                    }
                    return Ok(r);
                }
                Err(e) => {
                    let e = describe(&e);
                    if idx + 1 < urls.len() {
                        crate::util::log_at!(
                            Warn,
                            "connection error when accessing {url}, trying the next URL: {e}"
                        );
                    }
                    last_err = format!("{url}: {e}");
                }
            }
        }
        Err(AgentError::msg(last_err))
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        version: Option<(u32, u32)>,
    ) -> std::result::Result<Reply, ureq::Error> {
        let mut headers: Vec<(&str, String)> = vec![("Accept", "application/json".into())];
        if let Some(v) = version {
            headers.push(("X-OpenStack-Ironic-API-Version", format!("{}.{}", v.0, v.1)));
        }
        if let Some(id) = &self.request_id {
            headers.push(("X-OpenStack-Request-ID", id.clone()));
        }
        let mut resp = match method {
            "GET" => {
                let mut r = self.http.get(url);
                for (k, v) in &headers {
                    r = r.header(*k, v);
                }
                for (k, v) in query {
                    r = r.query(*k, *v);
                }
                r.call()?
            }
            _ => {
                let mut r = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/json");
                for (k, v) in &headers {
                    r = r.header(*k, v);
                }
                for (k, v) in query {
                    r = r.query(*k, *v);
                }
                let data = body.map(|b| b.to_string()).unwrap_or_default();
                r.send(data.as_bytes())?
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok(Reply { status, body })
    }

    /// The Ironic API version: `ipa-ironic-api-version`, else the cached
    /// detection from `GET /`, else (detection failed) 1.31 uncached, as IPA.
    pub fn api_version(&self) -> (u32, u32) {
        if let Some(v) = self.forced_version {
            return v;
        }
        if let Some(v) = *crate::util::lock(&self.version) {
            return v;
        }
        match self.request("GET", "/", &[], None, None) {
            Ok(r) if r.status == 200 => {
                let v = r.json().and_then(|j| {
                    let s = j.pointer("/default_version/version")?.as_str()?.to_string();
                    let (a, b) = s.split_once('.')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                });
                if let Some(v) = v {
                    crate::util::log_at!(Info, "Ironic API version {}.{} detected", v.0, v.1);
                    *crate::util::lock(&self.version) = Some(v);
                    return v;
                }
                crate::util::log_at!(
                    Warn,
                    "Ironic's root document has no default_version.version; assuming 1.31"
                );
            }
            Ok(r) => crate::util::log_at!(
                Warn,
                "detecting the Ironic API version: {}; assuming 1.31",
                error_text(&r)
            ),
            Err(e) => {
                crate::util::log_at!(Warn, "detecting the Ironic API version: {e}; assuming 1.31")
            }
        }
        MIN_IRONIC_VERSION
    }

    /// The Ironic host names to compute the advertised address against.
    pub fn hosts(&self) -> Vec<(String, u16)> {
        self.urls().iter().filter_map(|u| host_port(u)).collect()
    }
}

/// A transport error as an operator reads it: certificate failures say
/// which knobs exist (IPA's `ipa-cafile` / `ipa-insecure`).
pub fn describe(e: &ureq::Error) -> String {
    let text = e.to_string();
    if text.contains("certificate") {
        format!(
            "{text} (Ironic's TLS certificate was not verified: give its CA with \
             ipa-cafile/--cafile, or set ipa-insecure=1 to skip verification)"
        )
    } else {
        text
    }
}

/// Host and port of an http(s) URL (IPv6 brackets removed).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default = if scheme == "https" { 443 } else { 80 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']')?;
        let port = rest
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// The source address the kernel picks toward `host:port`: connect a UDP
/// socket (no packet is sent) and read its local address. This replaces
/// IPA's `ip route get`.
pub fn route_source(host: &str, port: u16) -> Option<IpAddr> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    for addr in addrs {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        if sock.connect(addr).is_err() {
            continue;
        }
        let Ok(local) = sock.local_addr() else {
            continue;
        };
        let ip = local.ip();
        let link_local = match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            IpAddr::V4(v4) => v4.is_link_local(),
        };
        if !ip.is_unspecified() && !link_local {
            return Some(ip);
        }
    }
    None
}

/// `host` for a URL: IPv6 literals in brackets.
pub fn wrap_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// IPA's `set_agent_advertise_addr`: `ipa-advertise-host`, else the IPv4
/// address of `ipa-network-interface`, else the route source toward each
/// Ironic host, retried `ip_lookup_attempts` times `ip_lookup_sleep` apart.
pub fn advertise_host(agent: &Agent, hosts: &[(String, u16)]) -> Result<String> {
    let c = &agent.config;
    if let Some(h) = &c.advertise_host {
        return Ok(h.clone());
    }
    if let Some(nic) = &c.network_interface {
        let inv = agent.inventory()?;
        return inv
            .interfaces
            .iter()
            .find(|i| &i.name == nic)
            .and_then(|i| i.ipv4_address.clone())
            .ok_or_else(|| {
                AgentError::new(
                    Kind::LookupAgentIPError,
                    format!("Interface {nic} has no IPv4 address"),
                )
            });
    }
    for attempt in 0..c.ip_lookup_attempts.max(1) {
        for (h, p) in hosts {
            if let Some(ip) = route_source(h, *p) {
                return Ok(ip.to_string());
            }
        }
        if attempt + 1 < c.ip_lookup_attempts {
            crate::util::log_at!(
                Warn,
                "no route toward Ironic yet; retrying in {} s",
                c.ip_lookup_sleep
            );
            std::thread::sleep(Duration::from_secs(c.ip_lookup_sleep));
        }
    }
    Err(AgentError::new(
        Kind::LookupAgentIPError,
        "Agent could not find a valid IP address.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn error_text_unwraps_ironic() {
        let r = Reply {
            status: 400,
            body: r#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Invalid or missing agent token received.\", \"debuginfo\": null}"}"#.into(),
        };
        assert_eq!(
            error_text(&r),
            "Error 400: Invalid or missing agent token received."
        );
        let r = Reply {
            status: 502,
            body: "bad gateway".into(),
        };
        assert_eq!(error_text(&r), "Error 502: bad gateway");
    }

    #[test]
    fn urls() {
        assert_eq!(
            host_port("http://10.0.0.1:6385"),
            Some(("10.0.0.1".into(), 6385))
        );
        assert_eq!(
            host_port("https://ironic.example/baremetal"),
            Some(("ironic.example".into(), 443))
        );
        assert_eq!(
            host_port("http://[fd00::1]:6385/x"),
            Some(("fd00::1".into(), 6385))
        );
        assert_eq!(wrap_ipv6("fd00::1"), "[fd00::1]");
        assert_eq!(wrap_ipv6("10.0.0.1"), "10.0.0.1");
    }

    fn agent(token: Option<&str>) -> Agent {
        let config = Config {
            root: std::env::temp_dir().join("ironic-agent-unit-no-root"),
            agent_token: token.map(String::from),
            ..Config::default()
        };
        Agent::new(config, crate::logbuf::LogBuffer::new(1024))
    }

    fn lookup(token: &str) -> Map<String, Value> {
        serde_json::json!({"node": {"uuid": "u-1", "properties": {}},
                           "config": {"heartbeat_timeout": 42, "agent_token": token}})
        .as_object()
        .unwrap()
        .clone()
    }

    /// §1.4: a token of 32+ characters is taken; "******" (already handed
    /// out) is fatal without a pre-shared token and ignored with one; a
    /// short token is ignored.
    #[test]
    fn lookup_token_rules() {
        let long = "Q2xhc3NpY1Rva2VuX3dpdGhfNDNfY2hhcmFjdGVyczAw";
        let a = agent(None);
        a.apply_lookup_data(&lookup(long)).unwrap();
        assert_eq!(a.token().as_deref(), Some(long));
        assert_eq!(a.lookup_settings().heartbeat_timeout, 42);
        assert_eq!(a.node().unwrap()["uuid"], "u-1");

        let a = agent(None);
        let e = a.apply_lookup_data(&lookup("******")).unwrap_err();
        assert_eq!(e.kind, Kind::LookupNodeError);
        assert!(e.to_string().contains("masked agent token"), "{e}");

        let a = agent(Some("pre-shared-token-from-the-cmdline"));
        a.apply_lookup_data(&lookup("******")).unwrap();
        assert_eq!(
            a.token().as_deref(),
            Some("pre-shared-token-from-the-cmdline")
        );

        let a = agent(None);
        a.apply_lookup_data(&lookup("short")).unwrap();
        assert_eq!(a.token(), None);

        let mut no_uuid = lookup(long);
        no_uuid.insert("node".into(), serde_json::json!({}));
        assert!(agent(None).apply_lookup_data(&no_uuid).is_err());
    }

    #[test]
    fn route_source_loopback() {
        assert_eq!(
            route_source("127.0.0.1", 6385),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
