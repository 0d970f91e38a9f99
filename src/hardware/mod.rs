//! Hardware managers as variants of one enum, dispatched with IPA's rules
//! (`ironic_python_agent/hardware.py`, protocol §5.1–5.3).
//!
//! IPA loads managers as Python plugins. Here every manager is a variant of
//! [`Manager`], registered in [`Managers::evaluate`] at compile time. Each
//! variant reports a support level; managers with support 0 are dropped,
//! the rest are sorted by support (highest first, ties keep registration
//! order). Then:
//!
//! * [`Managers::dispatch`] tries managers in order; a manager that does not
//!   implement the method (`None`) or answers `IncompatibleHardwareMethodError`
//!   passes to the next; the first other answer wins; nobody →
//!   `HardwareManagerMethodNotFound`.
//! * [`Managers::dispatch_all`] asks every manager, skipping incompatible
//!   ones; nobody → `HardwareManagerMethodNotFound`.
//! * [`merge_steps`] deduplicates steps by name: highest manager support,
//!   then highest step priority, then alphabetically smallest class name.
//!
//! ## Adding a vendor manager
//!
//! `example.rs` is a complete, tested vendor manager (a BIOS-flashing clean
//! and service step) whose module documentation is the how-to. In short:
//!
//! 1. Write a struct: detect the hardware once from sysfs in
//!    `evaluate_hardware_support` (SERVICE_PROVIDER or higher when present,
//!    NONE otherwise so that it is dropped), list steps per kind in
//!    `get_steps`, run them in `execute_step` (`None` for names that are not
//!    yours; `AgentError::incompatible` when this machine lacks what the step
//!    needs, so dispatch moves on).
//! 2. Add a variant to [`Manager`] and one arm to each `match` below that
//!    your manager implements; return `None` from the others. Give it a
//!    name and a version, and bump the version when its steps change.
//! 3. Register it in [`Managers::evaluate`].
//!
//! Steps that need no Rust can instead be executables with a JSON manifest
//! in the steps directory (`script.rs`, the [`Manager::Script`] variant).

pub mod example;
pub mod generic;
pub mod hints;
pub mod inventory;
pub mod script;

use crate::config::Env;
use crate::error::{AgentError, Kind, Result};
use crate::image::Written;
use inventory::{BlockDevice, Inventory};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// IPA's `HardwareSupport` levels; third parties may use higher values.
pub mod support {
    pub const NONE: u32 = 0;
    pub const GENERIC: u32 = 1;
    pub const MAINLINE: u32 = 2;
    pub const SERVICE_PROVIDER: u32 = 3;
}

/// Which step family a call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Clean,
    Deploy,
    Service,
}

impl StepKind {
    /// "clean", "deploy", "service": the prefix of IPA's keys
    /// (`clean_steps`, `clean_result`, `clean_step`, `clean_version`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Clean => "clean",
            StepKind::Deploy => "deploy",
            StepKind::Service => "service",
        }
    }

    /// The error class for unexpected failures of this kind of step.
    pub fn error_kind(self) -> Kind {
        match self {
            StepKind::Clean => Kind::CleaningError,
            StepKind::Deploy => Kind::DeploymentError,
            StepKind::Service => Kind::ServicingError,
        }
    }
}

/// One step as IPA lists it. `abortable` is absent from deploy steps;
/// `argsinfo` only where a step takes arguments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Step {
    pub step: String,
    pub priority: i64,
    pub interface: String,
    pub reboot_requested: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub abortable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub argsinfo: Option<Value>,
}

impl Step {
    pub fn new(step: &str, priority: i64, interface: &str) -> Step {
        Step {
            step: step.into(),
            priority,
            interface: interface.into(),
            reboot_requested: false,
            abortable: None,
            argsinfo: None,
        }
    }

    pub fn abortable(mut self, a: bool) -> Step {
        self.abortable = Some(a);
        self
    }

    pub fn argsinfo(mut self, v: Value) -> Step {
        self.argsinfo = Some(v);
        self
    }
}

/// What a hardware manager's methods see of the agent: the options, root
/// and lookup settings ([`Env`]), the managers themselves (a step that
/// needs the install device asks all of them, as IPA's
/// `dispatch_to_managers` does), and the last image written.
#[derive(Clone)]
pub struct Host<'a> {
    pub env: Env<'a>,
    pub managers: &'a Managers,
    pub written: &'a Written,
}

impl Host<'_> {
    /// IPA's `get_os_install_device` over every manager.
    pub fn os_install_device(&self, node: Option<&Value>) -> Result<BlockDevice> {
        self.managers.dispatch("get_os_install_device", |m| {
            m.get_os_install_device(&self.env, node)
        })
    }

    /// The device the last image went to, else the managers' choice (what
    /// `install_bootloader` and `inject_files` work on).
    pub fn install_device(&self) -> Result<String> {
        match self.written.device() {
            Some(d) => Ok(d),
            None => self.os_install_device(None).map(|d| d.name),
        }
    }
}

/// The arguments of a step method: `(node, ports, **kwargs)` in IPA.
pub struct StepCall<'a> {
    pub kind: StepKind,
    pub step: &'a str,
    pub node: &'a Value,
    pub ports: &'a Value,
    /// `step.args` merged over any extra command parameters.
    pub args: Args<'a>,
}

/// A step's keyword arguments, IPA's `kwargs`: the command's parameters
/// other than `step`, `node`, `ports` and the version, updated with
/// `step.args`; read where they are, never copied (an inline configdrive
/// or inject_files' contents are tens of MiB).
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    step: Option<&'a Map<String, Value>>,
    params: &'a Map<String, Value>,
    /// Parameters that are not keyword arguments.
    skip: [&'a str; 4],
}

impl<'a> Args<'a> {
    /// `step_args` over `params` without the keys in `skip`.
    pub fn new(
        params: &'a Map<String, Value>,
        skip: [&'a str; 4],
        step_args: Option<&'a Map<String, Value>>,
    ) -> Args<'a> {
        Args {
            step: step_args,
            params,
            skip,
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        if let Some(v) = self.step.and_then(|a| a.get(key)) {
            return Some(v);
        }
        if self.skip.contains(&key) {
            return None;
        }
        self.params.get(key)
    }

    /// Every argument, each once.
    pub fn iter(&self) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        let (step, skip) = (self.step, self.skip);
        let params = self.params.iter().filter(move |(k, _)| {
            !skip.contains(&k.as_str()) && !step.is_some_and(|a| a.contains_key(*k))
        });
        step.into_iter().flat_map(|a| a.iter()).chain(params)
    }

    /// A copy of every argument (for a script step's input).
    pub fn to_map(&self) -> Map<String, Value> {
        crate::util::collect_map(self.iter().map(|(k, v)| (k.clone(), v.clone())))
    }
}

impl<'a> From<&'a Map<String, Value>> for Args<'a> {
    /// Arguments given as they are.
    fn from(m: &'a Map<String, Value>) -> Args<'a> {
        Args::new(m, [""; 4], None)
    }
}

/// Every hardware manager compiled into the agent.
pub enum Manager {
    Generic(generic::GenericHardwareManager),
    /// Executables in `--steps-dir` with a JSON manifest become steps.
    Script(script::ScriptHardwareManager),
    /// The documented vendor example (BIOS flashing).
    ExampleBios(example::ExampleBiosHardwareManager),
    /// A second manager for the dispatch-rule tests.
    #[cfg(test)]
    Test(tests::TestManager),
}

impl Manager {
    /// The Python class name IPA groups steps under.
    pub fn class_name(&self) -> &'static str {
        match self {
            Manager::Generic(_) => "GenericHardwareManager",
            Manager::Script(_) => "ScriptHardwareManager",
            Manager::ExampleBios(_) => "ExampleBiosHardwareManager",
            #[cfg(test)]
            Manager::Test(_) => "TestManager",
        }
    }

    /// `HARDWARE_MANAGER_NAME` and `HARDWARE_MANAGER_VERSION`.
    pub fn version(&self) -> (String, String) {
        match self {
            Manager::Generic(_) => ("generic_hardware_manager".into(), "1.2".into()),
            Manager::Script(s) => ("script_hardware_manager".into(), s.version()),
            Manager::ExampleBios(_) => ("example_bios_hardware_manager".into(), "1.0".into()),
            #[cfg(test)]
            Manager::Test(t) => ("test_manager".into(), t.version.clone()),
        }
    }

    pub fn evaluate_hardware_support(&self, env: &Env) -> u32 {
        match self {
            Manager::Generic(_) => support::GENERIC,
            Manager::Script(s) => s.evaluate_hardware_support(),
            Manager::ExampleBios(e) => e.evaluate_hardware_support(env),
            #[cfg(test)]
            Manager::Test(t) => t.support,
        }
    }

    pub fn get_steps(&self, env: &Env, kind: StepKind) -> Option<Result<Vec<Step>>> {
        match self {
            Manager::Generic(g) => Some(Ok(g.get_steps(env, kind))),
            Manager::Script(s) => Some(Ok(s.get_steps(kind))),
            Manager::ExampleBios(e) => e.get_steps(kind),
            #[cfg(test)]
            Manager::Test(t) => t.get_steps(kind),
        }
    }

    /// Run a step method; `None` when this manager has no method of that
    /// name.
    pub fn execute_step(&self, host: &Host, call: &StepCall) -> Option<Result<Value>> {
        match self {
            Manager::Generic(g) => g.execute_step(host, call),
            Manager::Script(s) => s.execute_step(&host.env, call),
            Manager::ExampleBios(e) => e.execute_step(&host.env, call),
            #[cfg(test)]
            Manager::Test(t) => t.execute_step(call),
        }
    }

    pub fn list_hardware_info(&self, env: &Env) -> Option<Result<Inventory>> {
        match self {
            Manager::Generic(g) => Some(g.list_hardware_info(env)),
            _ => None,
        }
    }

    pub fn list_block_devices(
        &self,
        env: &Env,
        partitions: bool,
    ) -> Option<Result<Vec<BlockDevice>>> {
        match self {
            Manager::Generic(_) => {
                Some(crate::disk::list::list_block_devices(env.root, partitions))
            }
            _ => None,
        }
    }

    pub fn get_os_install_device(
        &self,
        env: &Env,
        node: Option<&Value>,
    ) -> Option<Result<BlockDevice>> {
        match self {
            Manager::Generic(g) => Some(g.get_os_install_device(env, node)),
            _ => None,
        }
    }

    /// sync(2) and flush every disk's buffers.
    pub fn full_sync(&self, env: &Env) -> Option<Result<()>> {
        match self {
            Manager::Generic(_) => Some(generic::full_sync(env.root)),
            _ => None,
        }
    }
}

/// The evaluated managers, highest support first.
#[derive(Default)]
pub struct Managers {
    list: Vec<(Manager, u32)>,
}

impl Managers {
    /// Build every compiled-in manager, keep those that support this
    /// hardware, sort by support (stable: ties keep this order).
    pub fn evaluate(env: &Env) -> Managers {
        let generic = generic::GenericHardwareManager::default();
        generic.initialize(env);
        let candidates = vec![
            Manager::Generic(generic),
            Manager::Script(script::ScriptHardwareManager::load(env)),
            Manager::ExampleBios(example::ExampleBiosHardwareManager),
        ];
        Self::from_candidates(env, candidates)
    }

    pub fn from_candidates(env: &Env, candidates: Vec<Manager>) -> Managers {
        let mut list: Vec<(Manager, u32)> = candidates
            .into_iter()
            .map(|m| {
                let s = m.evaluate_hardware_support(env);
                (m, s)
            })
            .filter(|(m, s)| {
                if *s > support::NONE {
                    crate::util::log_at!(
                        Info,
                        "hardware manager found: {} (support {s})",
                        m.class_name()
                    );
                }
                *s > support::NONE
            })
            .collect();
        // stable: equal support keeps registration order, as IPA's sorted()
        crate::util::sort_small_by(&mut list, |a, b| b.1.cmp(&a.1));
        Managers { list }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Manager, u32)> {
        self.list.iter().map(|(m, s)| (m, *s))
    }

    /// IPA's `dispatch_to_managers`.
    pub fn dispatch<T>(
        &self,
        method: &str,
        mut f: impl FnMut(&Manager) -> Option<Result<T>>,
    ) -> Result<T> {
        for (m, _) in &self.list {
            match f(m) {
                None => {
                    crate::util::log_at!(Debug, "{} does not have method {method}", m.class_name())
                }
                Some(Err(e)) if e.is(Kind::IncompatibleHardwareMethodError) => {
                    crate::util::log_at!(
                        Debug,
                        "{} is not compatible with {method}: {}",
                        m.class_name(),
                        e.details
                    )
                }
                Some(r) => return r,
            }
        }
        Err(AgentError::method_not_found(method))
    }

    /// IPA's `dispatch_to_all_managers`: results keyed by manager.
    pub fn dispatch_all<T>(
        &self,
        method: &str,
        mut f: impl FnMut(&Manager) -> Option<Result<T>>,
    ) -> Result<Vec<(&Manager, u32, T)>> {
        let mut out = vec![];
        for (m, s) in &self.list {
            match f(m) {
                None => {}
                Some(Err(e)) if e.is(Kind::IncompatibleHardwareMethodError) => {}
                Some(Err(e)) => return Err(e),
                Some(Ok(v)) => out.push((m, *s, v)),
            }
        }
        if out.is_empty() {
            return Err(AgentError::method_not_found(method));
        }
        Ok(out)
    }

    /// `hardware_manager_version`: `{name: version}` of every active manager.
    pub fn versions(&self) -> Map<String, Value> {
        crate::util::collect_map(self.list.iter().map(|(m, _)| {
            let (n, v) = m.version();
            (n, Value::String(v))
        }))
    }

    /// IPA's `check_versions`: `None` means "first run", accept.
    pub fn check_versions(&self, provided: Option<&Value>) -> Result<()> {
        let Some(provided) = provided.filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let current = Value::Object(self.versions());
        if *provided != current {
            crate::util::log_at!(
                Warn,
                "hardware manager versions changed: agent {current}, ironic {provided}"
            );
            return Err(AgentError::new(
                Kind::VersionMismatch,
                format!("Current versions: {current}, versions used by ironic: {provided}"),
            ));
        }
        Ok(())
    }

    /// Every manager's steps of `kind`, deduplicated: `{ClassName: [steps]}`.
    pub fn get_steps(&self, env: &Env, kind: StepKind) -> Result<Map<String, Value>> {
        let all = self.dispatch_all(&format!("get_{}_steps", kind.as_str()), |m| {
            m.get_steps(env, kind)
        })?;
        let candidates: Vec<(&str, u32, Vec<Step>)> = all
            .into_iter()
            .map(|(m, s, steps)| (m.class_name(), s, steps))
            .collect();
        Ok(merge_steps(&candidates))
    }
}

/// IPA's `deduplicate_steps`: for each step name keep the one with the
/// highest manager support, then the highest priority, then the
/// alphabetically smallest manager class name; group by that manager.
pub fn merge_steps(candidates: &[(&str, u32, Vec<Step>)]) -> Map<String, Value> {
    let mut by_name: Vec<(&str, u32, &Step)> = vec![];
    for (class, support, steps) in candidates {
        for s in steps {
            by_name.push((class, *support, s));
        }
    }
    let mut winners: Vec<(&str, &Step)> = vec![];
    let mut seen: Vec<&str> = vec![];
    for (_, _, s) in &by_name {
        if seen.contains(&s.step.as_str()) {
            continue;
        }
        seen.push(&s.step);
        let best = by_name
            .iter()
            .filter(|(_, _, t)| t.step == s.step)
            .min_by(|a, b| {
                (std::cmp::Reverse(a.1), std::cmp::Reverse(a.2.priority), a.0).cmp(&(
                    std::cmp::Reverse(b.1),
                    std::cmp::Reverse(b.2.priority),
                    b.0,
                ))
            })
            .expect("at least the step itself");
        winners.push((best.0, best.2));
    }
    let mut out = Map::new();
    for (class, step) in winners {
        let v = serde_json::to_value(step).expect("steps serialise");
        out.entry(class.to_string())
            .or_insert_with(|| Value::Array(vec![]))
            .as_array_mut()
            .expect("array")
            .push(v);
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// A second manager compiled into the tests only. It overrides one
    /// generic step (`erase_devices_metadata`, at a higher support level), adds
    /// one (`test_only_step`), and raises IncompatibleHardwareMethod for a
    /// third (`erase_devices`), so the generic manager must take it.
    pub struct TestManager {
        pub support: u32,
        pub version: String,
    }

    impl TestManager {
        pub fn get_steps(&self, kind: StepKind) -> Option<Result<Vec<Step>>> {
            (kind == StepKind::Clean).then(|| {
                Ok(vec![
                    Step::new("erase_devices_metadata", 50, "deploy").abortable(true),
                    Step::new("test_only_step", 0, "deploy").abortable(true),
                    Step::new("erase_devices", 10, "deploy").abortable(true),
                ])
            })
        }

        pub fn execute_step(&self, call: &StepCall) -> Option<Result<Value>> {
            match call.step {
                "erase_devices_metadata" => Some(Ok(json!("test manager wiped metadata"))),
                "test_only_step" => Some(Ok(json!({"args": call.args.to_map()}))),
                "erase_devices" => Some(Err(AgentError::incompatible("no test disks here"))),
                _ => None,
            }
        }
    }

    fn test_agent() -> crate::config::OwnedEnv {
        crate::config::OwnedEnv::new(crate::config::Config {
            root: std::env::temp_dir().join("ironic-agent-no-such-root"),
            steps_dir: std::env::temp_dir().join("ironic-agent-no-such-steps"),
            standalone: true,
            ..Default::default()
        })
    }

    fn managers(env: &crate::config::OwnedEnv, test_support: u32) -> Managers {
        Managers::from_candidates(
            &env.env(),
            vec![
                Manager::Generic(generic::GenericHardwareManager::default()),
                Manager::Test(TestManager {
                    support: test_support,
                    version: "7".into(),
                }),
            ],
        )
    }

    #[test]
    fn sorted_by_support_and_none_dropped() {
        let a = test_agent();
        let m = managers(&a, support::SERVICE_PROVIDER);
        let names: Vec<_> = m.iter().map(|(m, s)| (m.class_name(), s)).collect();
        assert_eq!(
            names,
            vec![("TestManager", 3), ("GenericHardwareManager", 1)]
        );
        let m = managers(&a, support::NONE);
        assert_eq!(m.iter().count(), 1);
    }

    #[test]
    fn dispatch_rules() {
        let a = test_agent();
        let m = managers(&a, support::MAINLINE);
        let written = Written::default();
        let host = Host {
            env: a.env(),
            managers: &m,
            written: &written,
        };
        let node = json!({});
        let ports = json!([]);
        let args = Map::new();
        let call = |step: &'static str| StepCall {
            kind: StepKind::Clean,
            step,
            node: &node,
            ports: &ports,
            args: (&args).into(),
        };
        // overridden: the higher-support manager answers
        let r = m.dispatch("erase_devices_metadata", |x| {
            x.execute_step(&host, &call("erase_devices_metadata"))
        });
        assert_eq!(r.unwrap(), json!("test manager wiped metadata"));
        // added: only the test manager has it
        assert!(m
            .dispatch("test_only_step", |x| x
                .execute_step(&host, &call("test_only_step")))
            .is_ok());
        // incompatible: passes to the generic manager, whose real step runs
        // (on an empty root it finds no disks and succeeds)
        let r = m.dispatch("erase_devices", |x| {
            x.execute_step(&host, &call("erase_devices"))
        });
        assert!(
            !matches!(&r, Err(e) if e.is(Kind::IncompatibleHardwareMethodError)),
            "{r:?}"
        );
        // nobody
        let e = m
            .dispatch("no_such_step", |x| {
                x.execute_step(&host, &call("no_such_step"))
            })
            .unwrap_err();
        assert!(e.is(Kind::HardwareManagerMethodNotFound));
        assert_eq!(e.details, "Could not find method: no_such_step");
    }

    #[test]
    fn merged_steps_follow_ipa() {
        let a = test_agent();
        let m = managers(&a, support::MAINLINE);
        let steps = m.get_steps(&a.env(), StepKind::Clean).unwrap();
        let test_steps: Vec<&str> = steps["TestManager"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        // support beats priority: the test manager wins all three names
        assert_eq!(
            test_steps,
            vec!["erase_devices_metadata", "test_only_step", "erase_devices"]
        );
        let generic: Vec<&str> = steps["GenericHardwareManager"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert!(!generic.contains(&"erase_devices_metadata"));
        assert!(generic.contains(&"erase_pstore"));
    }

    #[test]
    fn merge_tie_breaks() {
        let s = |n: &str, p| Step::new(n, p, "deploy");
        // same support: higher priority wins
        let m = merge_steps(&[("B", 1, vec![s("x", 10)]), ("A", 1, vec![s("x", 5)])]);
        assert_eq!(m["B"][0]["priority"], 10);
        assert!(!m.contains_key("A"));
        // same support and priority: alphabetical class name wins
        let m = merge_steps(&[("B", 1, vec![s("x", 5)]), ("A", 1, vec![s("x", 5)])]);
        assert!(m.contains_key("A") && !m.contains_key("B"));
    }

    #[test]
    fn versions_and_mismatch() {
        let a = test_agent();
        let m = managers(&a, support::MAINLINE);
        let v = Value::Object(m.versions());
        assert_eq!(
            v,
            json!({"test_manager": "7", "generic_hardware_manager": "1.2"})
        );
        assert!(m.check_versions(None).is_ok());
        assert!(m.check_versions(Some(&v)).is_ok());
        let e = m
            .check_versions(Some(&json!({"generic_hardware_manager": "1.1"})))
            .unwrap_err();
        assert!(e.is(Kind::VersionMismatch));
        assert_eq!(e.code(), 409);
    }
}
