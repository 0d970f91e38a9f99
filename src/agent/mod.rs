//! The state every thread shares: configuration, the root prefix, hardware
//! managers, command results ([`results`]), the agent token, what the
//! lookup told us and the last image written.
//!
//! One `Arc<Agent>` is created in `main` and handed to the API loop, the
//! heartbeat thread and the command worker. Mutable parts sit behind small
//! mutexes that are never held across I/O.

pub mod results;

use crate::config::{Config, Env, LookupSettings};
use crate::hardware::Managers;
use crate::image::Written;
use crate::logbuf::LogBuffer;
use crate::root::Root;
use crate::util::lock;
use results::{Store, Worker};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct State {
    pub token: Option<String>,
    pub node: Option<Value>,
    pub lookup: LookupSettings,
}

/// Wakes the heartbeat thread early (an async command finished, or the
/// process is stopping).
#[derive(Default)]
pub struct Events {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Events {
    pub fn notify(&self) {
        *lock(&self.pending) = true;
        self.cv.notify_all();
    }

    /// Wait up to `timeout` for a notification; true when one arrived.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.pending);
        let (mut g, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |p| !*p)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *g)
    }
}

pub struct Agent {
    pub config: Config,
    pub root: Root,
    /// Epoch seconds when the process started (`/v1/status` `started_at`).
    pub started_at: f64,
    pub managers: Managers,
    pub commands: Store,
    pub worker: Worker,
    pub events: Events,
    pub log: LogBuffer,
    /// The last image written (`get_partition_uuids`, `install_bootloader`).
    pub written: Written,
    /// Cleared by `rescue.finalize_rescue` and `system.lockdown`.
    serving: AtomicBool,
    state: Mutex<State>,
}

impl Agent {
    pub fn new(config: Config, log: LogBuffer) -> Agent {
        let root = Root::new(&config.root);
        let lookup = LookupSettings::from_config(&config);
        let token = config.agent_token.clone();
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut agent = Agent {
            root,
            started_at,
            managers: Managers::default(),
            commands: Store::new(1000),
            worker: Worker::start(),
            events: Events::default(),
            log,
            written: Written::default(),
            serving: AtomicBool::new(true),
            state: Mutex::new(State {
                token,
                node: None,
                lookup,
            }),
            config,
        };
        agent.managers = Managers::evaluate(&agent.env());
        agent
    }

    /// What the layers below see of the agent for one call: options, root,
    /// the lookup's settings (a snapshot).
    pub fn env(&self) -> Env<'_> {
        let state = self.state();
        Env {
            config: &self.config,
            root: &self.root,
            lookup: state.lookup.clone(),
            node: state.node.clone(),
        }
    }

    /// What lookup returned, parsed: IPA's `process_lookup_data`.
    pub fn apply_lookup_data(&self, content: &Map<String, Value>) -> crate::error::Result<()> {
        let node = content
            .get("node")
            .filter(|n| n.get("uuid").and_then(Value::as_str).is_some())
            .ok_or_else(|| {
                crate::error::AgentError::new(
                    crate::error::Kind::LookupNodeError,
                    "lookup data has no node.uuid",
                )
            })?;
        let mut config = content
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(t) = content.get("heartbeat_timeout") {
            config.entry("heartbeat_timeout").or_insert(t.clone());
        }
        self.cache_node(node);
        let mut state = self.state();
        state.lookup.apply(&config);
        match config.get("agent_token").and_then(Value::as_str) {
            Some(t) if t.len() >= 32 => {
                crate::util::log_at!(Debug, "agent token recorded as designated by Ironic");
                state.token = Some(t.to_string());
            }
            Some("******") => {
                if state.token.is_none() {
                    return Err(crate::error::AgentError::new(
                        crate::error::Kind::LookupNodeError,
                        "Ironic returned a masked agent token (******): the token was already handed \
                         out and this agent has none (no ipa-agent-token on the command line). The \
                         agent was probably restarted outside Ironic's process; Ironic will not \
                         accept this agent until the node is rebooted. This is FATAL.",
                    ));
                }
                crate::util::log_at!(
                    Warn,
                    "the agent token was already retrieved; keeping the one this agent has"
                );
            }
            Some(_) => crate::util::log_at!(
                Warn,
                "an invalid (short) agent token was received and ignored"
            ),
            None => {}
        }
        Ok(())
    }

    /// The hardware inventory, from the first manager that lists one
    /// (IPA's `dispatch_to_managers('list_hardware_info')`).
    pub fn inventory(&self) -> crate::error::Result<crate::hardware::inventory::Inventory> {
        let env = self.env();
        self.managers
            .dispatch("list_hardware_info", |m| m.list_hardware_info(&env))
    }

    /// What a hardware manager's step sees: [`Agent::env`], the managers
    /// (to find the install device) and the last image written.
    pub fn host(&self) -> crate::hardware::Host<'_> {
        crate::hardware::Host {
            env: self.env(),
            managers: &self.managers,
            written: &self.written,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn token(&self) -> Option<String> {
        self.state().token.clone()
    }

    pub fn set_token(&self, token: Option<String>) {
        self.state().token = token;
    }

    /// IPA's `validate_agent_token`: valid iff both tokens exist, are
    /// non-empty and equal. Compared in constant time.
    pub fn check_token(&self, given: Option<&str>) -> bool {
        let state = self.state();
        match (state.token.as_deref(), given) {
            (Some(known), Some(given)) if !known.is_empty() && !given.is_empty() => {
                constant_time_eq(known.as_bytes(), given.as_bytes())
            }
            _ => false,
        }
    }

    pub fn node(&self) -> Option<Value> {
        self.state().node.clone()
    }

    /// Cache the node Ironic sent with a command or lookup (IPA's
    /// `hardware.cache_node`). Root-device hints and erase flags come from it.
    pub fn cache_node(&self, node: &Value) {
        if node.is_object() {
            self.state().node = Some(node.clone());
        }
    }

    pub fn lookup_settings(&self) -> LookupSettings {
        self.state().lookup.clone()
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Stop serving after the current response (rescue, lockdown).
    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.events.notify();
    }
}

/// Compare two byte strings without an early exit on the first difference,
/// so response timing does not reveal how much of a guessed token matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early exit
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn events_wake() {
        let e = Events::default();
        assert!(!e.wait(Duration::from_millis(1)));
        e.notify();
        assert!(e.wait(Duration::from_millis(1)));
        assert!(!e.wait(Duration::from_millis(1)));
    }
}
