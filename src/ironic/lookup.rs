//! Lookup (protocol §2.3): find our node by MAC addresses (and the UUID
//! inspection returned), with IPA's randomised exponential retry, the extra
//! pauses on 409, and the Kilo-era vendor_passthru lookup for an Ironic
//! older than API 1.22 (§2.7).

use super::{error_text, Client, AGENT_TOKEN_IRONIC_VERSION, RAMDISK_ENDPOINTS_VERSION};
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// A successful lookup.
pub struct Found {
    pub content: Map<String, Value>,
    /// The node was found through the old vendor_passthru API; heartbeats
    /// must go there too.
    pub passthru: bool,
}

/// One attempt's outcome.
enum Attempt {
    Found(Found),
    /// Retry after the normal back-off (plus `pause` for 409s).
    Retry {
        why: String,
        pause: Duration,
    },
}

/// MACs for `addresses=`: every inventory interface that has one (IPA
/// filters `fa:` MACs and non-physical NICs while building the inventory).
pub fn lookup_macs(agent: &Agent) -> Result<Vec<String>> {
    let inv = agent.inventory()?;
    Ok(inv
        .interfaces
        .iter()
        .filter_map(|i| i.mac_address.clone())
        .collect())
}

fn validate(content: Value) -> Result<Map<String, Value>> {
    let Value::Object(mut m) = content else {
        return Err(AgentError::msg("the answer is not a JSON object"));
    };
    if m.get("node")
        .and_then(|n| n.get("uuid"))
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(AgentError::msg("the answer has no node.uuid"));
    }
    if !m.contains_key("config") {
        // Old API: heartbeat_timeout at the top level.
        let Some(t) = m.remove("heartbeat_timeout") else {
            return Err(AgentError::msg(
                "the answer has neither config nor heartbeat_timeout",
            ));
        };
        m.insert("config".into(), json!({"heartbeat_timeout": t}));
    }
    if m["config"].get("heartbeat_timeout").is_none() {
        return Err(AgentError::msg(
            "the answer's config has no heartbeat_timeout",
        ));
    }
    Ok(m)
}

struct Lookup<'a> {
    agent: &'a Agent,
    client: &'a Client,
    node_uuid: Option<&'a str>,
    lock_pause: u64,
}

impl Lookup<'_> {
    fn attempt(&mut self) -> Attempt {
        let macs = match lookup_macs(self.agent) {
            Ok(m) => m.join(","),
            Err(e) => {
                return Attempt::Retry {
                    why: format!("listing NICs: {e}"),
                    pause: Duration::ZERO,
                }
            }
        };
        let version = self.client.api_version();
        let mut query = vec![("addresses", macs.as_str())];
        if let Some(u) = self.node_uuid {
            query.push(("node_uuid", u));
        }
        crate::util::log_at!(
            Debug,
            "looking up node with addresses {macs} and UUID {}",
            self.node_uuid.unwrap_or("(none)")
        );
        let header = version.min(AGENT_TOKEN_IRONIC_VERSION);
        let r = match self
            .client
            .request("GET", "/v1/lookup", &query, None, Some(header))
        {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    why: e.into_details(),
                    pause: Duration::ZERO,
                }
            }
        };
        match r.status {
            200 => match r
                .json()
                .ok_or_else(|| AgentError::msg("the answer is not JSON"))
                .and_then(validate)
            {
                Ok(content) => {
                    self.lock_pause = 0;
                    Attempt::Found(Found {
                        content,
                        passthru: false,
                    })
                }
                Err(why) => Attempt::Retry {
                    why: format!("invalid lookup answer: {}", why.details),
                    pause: Duration::ZERO,
                },
            },
            409 => {
                self.lock_pause = match self.lock_pause {
                    0 => 5,
                    5 => 10,
                    _ => 30,
                };
                Attempt::Retry {
                    why: format!(
                        "node locked, pausing {} s: {}",
                        self.lock_pause,
                        error_text(&r)
                    ),
                    pause: Duration::from_secs(self.lock_pause),
                }
            }
            404 if version < RAMDISK_ENDPOINTS_VERSION => self.passthru(),
            _ => Attempt::Retry {
                why: format!(
                    "failed looking up node with addresses {macs} (has inspection completed?): {}",
                    error_text(&r)
                ),
                pause: Duration::ZERO,
            },
        }
    }

    /// Kilo–Mitaka: `POST /v1/drivers/<driver>/vendor_passthru/lookup`
    /// with the version-2 inventory body.
    fn passthru(&mut self) -> Attempt {
        let inv = match self.agent.inventory() {
            Ok(i) => i,
            Err(e) => {
                return Attempt::Retry {
                    why: format!("inventory: {e}"),
                    pause: Duration::ZERO,
                }
            }
        };
        let mut body = json!({"version": "2", "inventory": inv});
        if let Some(u) = self.node_uuid {
            body["node_uuid"] = json!(u);
        }
        let path = format!(
            "/v1/drivers/{}/vendor_passthru/lookup",
            self.agent.config.driver_name
        );
        crate::util::log_at!(
            Info,
            "Ironic predates /v1/lookup; trying the vendor_passthru lookup at {path}"
        );
        match self.client.request("POST", &path, &[], Some(&body), None) {
            Ok(r) if r.status == 200 => match r
                .json()
                .ok_or_else(|| AgentError::msg("not JSON"))
                .and_then(validate)
            {
                Ok(content) => Attempt::Found(Found {
                    content,
                    passthru: true,
                }),
                Err(why) => Attempt::Retry {
                    why: format!("invalid passthru lookup answer: {}", why.details),
                    pause: Duration::ZERO,
                },
            },
            Ok(r) => Attempt::Retry {
                why: format!("passthru lookup: {}", error_text(&r)),
                pause: Duration::ZERO,
            },
            Err(e) => Attempt::Retry {
                why: e.into_details(),
                pause: Duration::ZERO,
            },
        }
    }
}

/// Randomised exponential back-off (tenacity's `wait_random_exponential`):
/// a uniform wait between `min` and `min(max, min·2^n)`.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let min_s = min.as_secs_f64().max(0.05);
    let high = (min_s * 2f64.powi(attempt.min(30) as i32))
        .min(max.as_secs_f64())
        .max(min_s);
    Duration::from_secs_f64(min_s + fastrand::f64() * (high - min_s))
}

/// Look the node up, retrying until `timeout` (None: forever, as the
/// heartbeat thread does after Ironic wiped the token). `keep_going` is
/// polled between attempts so a stopping agent does not wait.
pub fn lookup_node(
    agent: &Agent,
    client: &Client,
    node_uuid: Option<&str>,
    timeout: Option<Duration>,
    keep_going: &dyn Fn() -> bool,
) -> Result<Found> {
    let start = Instant::now();
    let interval = Duration::from_secs(agent.config.lookup_interval.max(1));
    let mut l = Lookup {
        agent,
        client,
        node_uuid,
        lock_pause: 0,
    };
    let mut attempt = 0u32;
    loop {
        match l.attempt() {
            Attempt::Found(f) => {
                let uuid = f.content["node"]["uuid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                crate::util::log_at!(Info, "lookup succeeded, node UUID is {uuid}");
                return Ok(f);
            }
            Attempt::Retry { why, pause } => {
                let mut wait = backoff(interval, Duration::from_secs(60), attempt) + pause;
                attempt += 1;
                let elapsed = start.elapsed();
                if let Some(t) = timeout {
                    // tenacity's stop_after_delay: give up once the time is
                    // spent, after one last attempt at the deadline
                    if elapsed >= t {
                        return Err(AgentError::new(
                            Kind::LookupNodeError,
                            format!(
                                "Could not look up node info at {} after {} s: {why}",
                                client.urls().join(","),
                                elapsed.as_secs()
                            ),
                        ));
                    }
                    wait = wait.min(t - elapsed);
                }
                crate::util::log_at!(
                    Warn,
                    "lookup: {why}; retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if !keep_going() {
                        return Err(AgentError::new(Kind::LookupNodeError, "agent stopping"));
                    }
                    std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds() {
        for n in 0..20 {
            let w = backoff(Duration::from_secs(1), Duration::from_secs(60), n);
            assert!(
                w >= Duration::from_secs(1) && w <= Duration::from_secs(60),
                "{n}: {w:?}"
            );
        }
        let w = backoff(Duration::from_secs(1), Duration::from_secs(60), 0);
        assert!(w <= Duration::from_secs(1) + Duration::from_millis(1));
    }

    #[test]
    fn validates_answers() {
        assert!(validate(json!({"node": {}})).is_err());
        assert!(validate(json!([])).is_err());
        let old = validate(json!({"node": {"uuid": "u"}, "heartbeat_timeout": 300})).unwrap();
        assert_eq!(old["config"]["heartbeat_timeout"], 300);
        assert!(validate(json!({"node": {"uuid": "u"}, "config": {}})).is_err());
        assert!(
            validate(json!({"node": {"uuid": "u"}, "config": {"heartbeat_timeout": 30}})).is_ok()
        );
    }
}
