//! The state every thread shares: configuration, the root prefix, hardware
//! managers, command results, the agent token and what the lookup told us.
//!
//! One `Arc<Agent>` is created in `main` and handed to the API loop, the
//! heartbeat thread and the command worker. Mutable parts sit behind small
//! mutexes that are never held across I/O.

use crate::commands::{Store, Worker};
use crate::config::Config;
use crate::hardware::Managers;
use crate::logbuf::LogBuffer;
use crate::root::Root;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings Ironic sends in the lookup response's `config` that override
/// local defaults (protocol §2.3).
#[derive(Clone, Debug)]
pub struct LookupSettings {
    pub heartbeat_timeout: u64,
    pub md5_enabled: bool,
    pub permitted_image_formats: Vec<String>,
    pub disable_deep_image_inspection: bool,
    pub agent_skip_bmc_detect: bool,
    pub enable_bios_bootloader_install: bool,
}

impl LookupSettings {
    fn from_config(c: &Config) -> Self {
        LookupSettings {
            heartbeat_timeout: 300,
            md5_enabled: c.md5_enabled,
            permitted_image_formats: vec!["raw".into(), "gpt".into(), "qcow2".into()],
            disable_deep_image_inspection: false,
            agent_skip_bmc_detect: false,
            enable_bios_bootloader_install: false,
        }
    }

    /// Apply a lookup response's `config` object; unknown or mistyped keys
    /// are ignored (Ironic adds keys over time).
    pub fn apply(&mut self, cfg: &Map<String, Value>) {
        if let Some(t) = cfg.get("heartbeat_timeout").and_then(as_u64_lenient) {
            if t > 0 {
                self.heartbeat_timeout = t;
            }
        }
        if let Some(b) = cfg
            .get("agent_md5_checksum_enable")
            .and_then(Value::as_bool)
        {
            self.md5_enabled = b;
        }
        if let Some(list) = cfg.get("permitted_image_formats").and_then(Value::as_array) {
            self.permitted_image_formats = list
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
        }
        if let Some(b) = cfg
            .get("disable_deep_image_inspection")
            .and_then(Value::as_bool)
        {
            self.disable_deep_image_inspection = b;
        }
        if let Some(b) = cfg.get("agent_skip_bmc_detect").and_then(Value::as_bool) {
            self.agent_skip_bmc_detect = b;
        }
        if let Some(b) = cfg
            .get("enable_bios_bootloader_install")
            .and_then(Value::as_bool)
        {
            self.enable_bios_bootloader_install = b;
        }
    }
}

/// Numbers that Ironic may send as strings in older releases.
pub fn as_u64_lenient(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What the last image write left behind, for `standby.get_partition_uuids`
/// and `image.install_bootloader`.
#[derive(Clone, Debug, Default)]
pub struct WrittenImage {
    pub image_id: String,
    pub device: String,
    /// The `get_partition_uuids` answer (keys contain spaces, as IPA's).
    pub partition_uuids: Map<String, Value>,
}

#[derive(Debug)]
pub struct State {
    pub token: Option<String>,
    pub node: Option<Value>,
    pub lookup: LookupSettings,
    pub written_image: Option<WrittenImage>,
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

/// Lock a mutex, recovering the data if a panicking thread poisoned it: a
/// bug in one command must not take the API down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            serving: AtomicBool::new(true),
            state: Mutex::new(State {
                token,
                node: None,
                lookup,
                written_image: None,
            }),
            config,
        };
        agent.managers = Managers::evaluate(&agent);
        agent
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
    fn lookup_settings_apply() {
        let mut s = LookupSettings::from_config(&Config::default());
        let cfg = serde_json::json!({
            "heartbeat_timeout": "60", "agent_md5_checksum_enable": false,
            "permitted_image_formats": ["raw", "qcow2"], "unknown": 1,
            "agent_skip_bmc_detect": true
        });
        s.apply(cfg.as_object().unwrap());
        assert_eq!(s.heartbeat_timeout, 60);
        assert!(!s.md5_enabled && s.agent_skip_bmc_detect);
        assert_eq!(s.permitted_image_formats, vec!["raw", "qcow2"]);
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
