//! An example vendor hardware manager: the Rust form of IPA's
//! `examples/vendor-device/example_device.py`, with a BIOS-flashing step.
//!
//! # How to write a vendor manager
//!
//! IPA loads vendor managers as Python plugins (stevedore entry points).
//! This agent is one static binary, so a vendor manager is compiled in as a
//! variant of [`crate::hardware::Manager`]. Copy this file and:
//!
//! 1. **Detect your hardware once**, in `evaluate_hardware_support`, from
//!    sysfs through `env.root` (DMI ids in /sys/class/dmi/id, PCI ids in
//!    /sys/bus/pci/devices/*/{vendor,device}, ...), never by running tools.
//!    Return [`support::SERVICE_PROVIDER`] (3, or higher) when it is there:
//!    higher than the generic manager's 1 and any MAINLINE (2) manager, so
//!    your steps win the merge and your methods are asked first. Return
//!    [`support::NONE`] otherwise: the manager is then dropped at start and
//!    costs nothing on other machines.
//! 2. **List your steps** in `get_steps` per kind (clean, deploy, service):
//!    unique names (`update_bios_firmware`, not `update`), a priority (0 =
//!    only when an operator asks for it, which is right for anything that
//!    flashes firmware), `reboot_requested` when Ironic must reboot the node
//!    afterwards, `abortable` only when stopping half-way is safe, and
//!    `argsinfo` for the arguments.
//! 3. **Implement the steps** in `execute_step`: return `None` for names that
//!    are not yours, so dispatch moves on. Inside a step, if this machine
//!    turns out not to have what the step needs, return
//!    [`AgentError::incompatible`]: dispatch then tries the next manager, as
//!    IPA's `IncompatibleHardwareMethod` does. Any other error fails the
//!    step (use the step kind's error class, `step_error`).
//! 4. **Register it**: a variant in `Manager`, one arm in each of its
//!    `match`es (`class_name`, `version`, `evaluate_hardware_support`,
//!    `get_steps`, `execute_step`), and the constructor in
//!    `Managers::evaluate`. Bump the version string whenever the steps
//!    change: Ironic restarts cleaning when the versions it cached differ
//!    (`clean_version`).
//!
//! Steps that need no Rust at all can also be shipped as scripts with a JSON
//! manifest in the steps directory (see `script.rs`).
//!
//! # This example
//!
//! "Example Corp" servers (DMI `sys_vendor`) keep their BIOS in an SPI
//! flash the kernel exposes as an MTD partition named `bios`
//! (/sys/class/mtd/mtdN/name, /dev/mtdN). The clean and service step
//! `update_bios_firmware` (priority 0, reboot requested, not abortable)
//! takes `image` (a path on the ramdisk), `sha256` and `version`:
//!
//! * when DMI `bios_version` already equals `version`, it does nothing;
//! * when the flash partition is absent it raises IncompatibleHardwareMethod;
//! * otherwise it checks the image's size and SHA-256, writes it to the
//!   partition and reads it back.
//!
//! A real manager would erase the NOR sectors first (MTD `MEMERASE`) or,
//! more likely, call its vendor's flashing interface; the example keeps to
//! plain writes so that it runs against fixture roots, where /dev/mtdN is a
//! regular file.

use crate::config::Env;
use crate::error::{AgentError, Context, Result};
use crate::hardware::generic::step_error;
use crate::hardware::{support, Step, StepCall, StepKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};

/// DMI `sys_vendor` of the machines this manager supports.
pub const VENDOR: &str = "Example Corp";
/// Name of the MTD partition holding the BIOS.
pub const MTD_NAME: &str = "bios";

pub struct ExampleBiosHardwareManager;

fn argsinfo() -> Value {
    json!({
        "image": {"description": "Path of the BIOS image on the ramdisk.", "required": true},
        "sha256": {"description": "SHA-256 of the image, hex.", "required": true},
        "version": {"description": "BIOS version the image contains; the step does \
                                    nothing when DMI bios_version already equals it.",
                    "required": true}
    })
}

impl ExampleBiosHardwareManager {
    /// SERVICE_PROVIDER on Example Corp machines, NONE elsewhere.
    pub fn evaluate_hardware_support(&self, env: &Env) -> u32 {
        match env.root.read("/sys/class/dmi/id/sys_vendor") {
            Some(v) if v == VENDOR => {
                crate::util::log_at!(Info, "{VENDOR} machine: the example BIOS manager is active");
                support::SERVICE_PROVIDER
            }
            _ => support::NONE,
        }
    }

    pub fn get_steps(&self, kind: StepKind) -> Option<Result<Vec<Step>>> {
        let step = || {
            let mut s = Step::new("update_bios_firmware", 0, "deploy").argsinfo(argsinfo());
            s.reboot_requested = true;
            s
        };
        Some(Ok(match kind {
            StepKind::Clean | StepKind::Service => vec![step().abortable(false)],
            StepKind::Deploy => vec![],
        }))
    }

    pub fn execute_step(&self, env: &Env, call: &StepCall) -> Option<Result<Value>> {
        match call.step {
            "update_bios_firmware" => Some(update_bios_firmware(env, call)),
            _ => None,
        }
    }
}

/// The MTD partition named [`MTD_NAME`]: (device path, size in bytes).
fn bios_flash(env: &Env) -> Option<(String, u64)> {
    env.root.list("/sys/class/mtd").into_iter().find_map(|m| {
        let name = env.root.read(format!("/sys/class/mtd/{m}/name"))?;
        (name == MTD_NAME && !m.ends_with("ro")).then(|| {
            let size = env
                .root
                .read_u64(format!("/sys/class/mtd/{m}/size"))
                .unwrap_or(0);
            (format!("/dev/{m}"), size)
        })
    })
}

fn arg<'a>(call: &'a StepCall, name: &str) -> Result<&'a str> {
    call.args
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::invalid_params(format!("update_bios_firmware needs '{name}'")))
}

fn update_bios_firmware(env: &Env, call: &StepCall) -> Result<Value> {
    let (image, sha, version) = (
        arg(call, "image")?,
        arg(call, "sha256")?,
        arg(call, "version")?,
    );
    let current = env
        .root
        .read("/sys/class/dmi/id/bios_version")
        .unwrap_or_default();
    if current == version {
        crate::util::log_at!(Info, "BIOS {current} is already installed");
        return Ok(json!({"updated": false, "bios_version": current}));
    }
    let Some((dev, size)) = bios_flash(env) else {
        return Err(AgentError::incompatible(format!(
            "no BIOS flash on this machine (no MTD partition named \"{MTD_NAME}\")"
        )));
    };
    let data = std::fs::read(env.root.path(image)).ctx(call.kind.error_kind(), || {
        format!("reading BIOS image {image}")
    })?;
    let got = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    if !got.eq_ignore_ascii_case(sha) {
        return Err(step_error(
            call,
            format!("BIOS image {image} has SHA-256 {got}, expected {sha}"),
        ));
    }
    if data.len() as u64 != size {
        return Err(step_error(
            call,
            format!(
                "BIOS image {image} is {} bytes; the flash partition {dev} is {size}",
                data.len()
            ),
        ));
    }
    crate::util::log_at!(Info, "flashing BIOS {version} (was {current}) to {dev}");
    let kind = call.kind.error_kind();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(env.root.path(&dev))
        .ctx(kind, || format!("opening {dev}"))?;
    f.write_all(&data)
        .and_then(|_| f.sync_all())
        .ctx(kind, || format!("writing {dev}"))?;
    let mut back = Vec::with_capacity(data.len());
    f.rewind()
        .and_then(|_| f.take(size).read_to_end(&mut back))
        .ctx(kind, || format!("reading {dev} back"))?;
    if back != data {
        return Err(step_error(
            call,
            format!("{dev} does not read back the image just written"),
        ));
    }
    Ok(json!({"updated": true, "from": current, "to": version, "device": dev}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::hardware::{Manager, Managers};
    use serde_json::Map;

    fn agent(files: &[(&str, &[u8])]) -> (std::path::PathBuf, crate::config::OwnedEnv) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "example-bios-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (p, c) in files {
            let f = dir.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        let cfg = crate::config::Config {
            root: dir.clone(),
            steps_dir: dir.join("no-steps"),
            standalone: true,
            ..Default::default()
        };
        (dir, crate::config::OwnedEnv::new(cfg))
    }

    fn call<'a>(args: &'a Map<String, Value>, node: &'a Value) -> StepCall<'a> {
        StepCall {
            kind: StepKind::Clean,
            step: "update_bios_firmware",
            node,
            ports: node,
            args: args.into(),
        }
    }

    const IMAGE: &[u8] = b"EXAMPLE-BIOS-2.0\x00\x01\x02\x03 padded to sixty-four bytes......";

    fn args(sha: &str) -> Map<String, Value> {
        json!({"image": "/opt/bios-2.0.bin", "sha256": sha, "version": "2.0"})
            .as_object()
            .unwrap()
            .clone()
    }

    fn sha() -> String {
        Sha256::digest(IMAGE)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn inactive_on_other_machines() {
        let (d, a) = agent(&[("/sys/class/dmi/id/sys_vendor", b"QEMU\n")]);
        assert_eq!(
            ExampleBiosHardwareManager.evaluate_hardware_support(&a.env()),
            support::NONE
        );
        let managers = Managers::evaluate(&a.env());
        let names: Vec<_> = managers.iter().map(|(m, _)| m.class_name()).collect();
        assert!(!names.contains(&"ExampleBiosHardwareManager"), "{names:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn absent_flash_is_incompatible_and_dispatch_moves_on() {
        let (d, a) = agent(&[
            ("/sys/class/dmi/id/sys_vendor", b"Example Corp\n"),
            ("/sys/class/dmi/id/bios_version", b"1.0\n"),
        ]);
        let m = Managers::from_candidates(
            &a.env(),
            vec![
                Manager::Generic(crate::hardware::generic::GenericHardwareManager::default()),
                Manager::ExampleBios(ExampleBiosHardwareManager),
            ],
        );
        assert_eq!(m.iter().next().unwrap().1, support::SERVICE_PROVIDER);
        let steps = m.get_steps(&a.env(), StepKind::Clean).unwrap();
        let ours = &steps["ExampleBiosHardwareManager"][0];
        assert_eq!(ours["step"], "update_bios_firmware");
        assert_eq!(ours["reboot_requested"], true);
        assert_eq!(ours["abortable"], false);
        assert!(!m
            .get_steps(&a.env(), StepKind::Deploy)
            .unwrap()
            .contains_key("ExampleBiosHardwareManager"));
        let node = json!({});
        let args = args(&sha());
        let direct = ExampleBiosHardwareManager
            .execute_step(&a.env(), &call(&args, &node))
            .unwrap()
            .unwrap_err();
        assert!(direct.is(Kind::IncompatibleHardwareMethodError));
        let written = crate::image::Written::default();
        let host = crate::hardware::Host {
            env: a.env(),
            managers: &m,
            written: &written,
        };
        let e = m
            .dispatch("update_bios_firmware", |x| {
                x.execute_step(&host, &call(&args, &node))
            })
            .unwrap_err();
        assert_eq!(e.details, "Could not find method: update_bios_firmware");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn flashes_verifies_and_skips_when_current() {
        let flash = vec![0xffu8; IMAGE.len()];
        let (d, a) = agent(&[
            ("/sys/class/dmi/id/sys_vendor", b"Example Corp\n"),
            ("/sys/class/dmi/id/bios_version", b"1.0\n"),
            ("/sys/class/mtd/mtd0/name", b"spi-nor-config\n"),
            ("/sys/class/mtd/mtd1/name", b"bios\n"),
            (
                "/sys/class/mtd/mtd1/size",
                format!("{}\n", IMAGE.len()).as_bytes(),
            ),
            ("/dev/mtd1", &flash),
            ("/opt/bios-2.0.bin", IMAGE),
        ]);
        let node = json!({});
        let m = ExampleBiosHardwareManager;
        // a wrong checksum fails the step and writes nothing
        let bad = args(&"0".repeat(64));
        let e = m
            .execute_step(&a.env(), &call(&bad, &node))
            .unwrap()
            .unwrap_err();
        assert!(
            e.is(Kind::CleaningError) && e.details.contains("SHA-256"),
            "{e:?}"
        );
        assert_eq!(std::fs::read(d.join("dev/mtd1")).unwrap(), flash);
        let ok = args(&sha());
        let v = m
            .execute_step(&a.env(), &call(&ok, &node))
            .unwrap()
            .unwrap();
        assert_eq!(
            v,
            json!({"updated": true, "from": "1.0", "to": "2.0", "device": "/dev/mtd1"})
        );
        assert_eq!(std::fs::read(d.join("dev/mtd1")).unwrap(), IMAGE);
        // after the reboot DMI says 2.0: nothing to do
        std::fs::write(d.join("sys/class/dmi/id/bios_version"), "2.0\n").unwrap();
        let v = m
            .execute_step(&a.env(), &call(&ok, &node))
            .unwrap()
            .unwrap();
        assert_eq!(v, json!({"updated": false, "bios_version": "2.0"}));
        // missing argument
        let none = Map::new();
        let e = m
            .execute_step(&a.env(), &call(&none, &node))
            .unwrap()
            .unwrap_err();
        assert!(e.is(Kind::InvalidCommandParamsError));
        std::fs::remove_dir_all(d).unwrap();
    }
}
