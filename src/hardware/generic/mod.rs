//! IPA's `GenericHardwareManager`: inventory from /sys, /proc and /dev,
//! root-disk selection, and the generic clean, deploy and service steps
//! (protocol §5.4–5.5).

pub mod collect;
pub mod erase;
pub mod inject;
pub mod nvram;
pub mod raid;

use super::inventory::{BlockDevice, Inventory};
use super::{hints, Host, Step, StepCall, StepKind};
use crate::config::Env;
use crate::error::{AgentError, Result};
use serde_json::{json, Value};

#[derive(Default)]
pub struct GenericHardwareManager {
    /// The arrays `create_configuration` made and which is the root.
    pub raid: raid::RaidState,
}

/// A step's `argsinfo` from (argument, description, required): one
/// builder for every table below instead of a `json!` expansion each.
#[inline(never)]
fn argsinfo(args: &[(&str, &str, bool)]) -> Value {
    let mut m = serde_json::Map::new();
    for &(name, description, required) in args {
        let mut a = serde_json::Map::new();
        a.insert("description".into(), description.into());
        a.insert("required".into(), required.into());
        m.insert(name.into(), Value::Object(a));
    }
    Value::Object(m)
}

/// `DEPLOY_CLEAN_UEFI_NVRAM_ARGSINFO` in IPA's hardware.py.
fn clean_uefi_nvram_argsinfo() -> Value {
    argsinfo(&[(
        "match_patterns",
        "A list of regular expressions to match the UEFI NVRAM entries \
         to be deleted. Default: [\"^HD\\\\(\", \"shim.*\\\\.efi\", \
         \"grub.*\\\\.efi\"]",
        false,
    )])
}

fn raid_apply_argsinfo() -> Value {
    argsinfo(&[
        ("raid_config", "The RAID configuration to apply.", true),
        (
            "delete_existing",
            "Setting this to 'True' indicates to delete existing RAID \
             configuration prior to creating the new configuration. \
             Default value is 'True'.",
            false,
        ),
    ])
}

fn write_image_argsinfo() -> Value {
    argsinfo(&[
        (
            "image_info",
            "Image information (urls, checksum, format).",
            true,
        ),
        (
            "configdrive",
            "Config drive: a URL or base64 gzipped ISO.",
            false,
        ),
    ])
}

/// `inject_files.ARGSINFO` in IPA.
fn inject_files_argsinfo() -> Value {
    argsinfo(&[
        (
            "files",
            "Files to inject, a list of file structures with keys: 'path' \
             (path to the file), 'partition' (partition specifier), 'content' \
             (base64 encoded string), 'mode' (new file mode) and 'dirmode' \
             (mode for the leaf directory, if created). Merged with the values \
             from node.properties[inject_files].",
            false,
        ),
        (
            "verify_ca",
            "Whether to verify TLS certificates. Global agent options are \
             used by default.",
            false,
        ),
    ])
}

impl GenericHardwareManager {
    pub fn get_steps(&self, env: &Env, kind: StepKind) -> Vec<Step> {
        let inject_prio = env.config.inject_files_priority as i64;
        match kind {
            StepKind::Clean => vec![
                Step::new("erase_devices", 10, "deploy").abortable(true),
                Step::new("erase_devices_metadata", 99, "deploy").abortable(true),
                Step::new("erase_devices_express", 0, "deploy").abortable(true),
                Step::new("erase_pstore", 0, "deploy").abortable(true),
                Step::new("clean_uefi_nvram", 0, "deploy")
                    .abortable(true)
                    .argsinfo(clean_uefi_nvram_argsinfo()),
                Step::new("delete_configuration", 0, "raid").abortable(true),
                Step::new("create_configuration", 0, "raid").abortable(true),
            ],
            StepKind::Deploy => vec![
                Step::new("erase_devices_metadata", 0, "deploy"),
                Step::new("apply_configuration", 0, "raid").argsinfo(raid_apply_argsinfo()),
                Step::new("clean_uefi_nvram", 0, "deploy").argsinfo(clean_uefi_nvram_argsinfo()),
                Step::new("write_image", 0, "deploy").argsinfo(write_image_argsinfo()),
                Step::new("inject_files", inject_prio, "deploy").argsinfo(inject_files_argsinfo()),
            ],
            StepKind::Service => vec![
                Step::new("delete_configuration", 0, "raid").abortable(true),
                Step::new("apply_configuration", 0, "raid").argsinfo(raid_apply_argsinfo()),
                Step::new("create_configuration", 0, "raid").abortable(true),
                Step::new("write_image", 0, "deploy").argsinfo(write_image_argsinfo()),
                Step::new("inject_files", inject_prio, "deploy").argsinfo(inject_files_argsinfo()),
            ],
        }
    }

    /// The step methods this manager implements. Like IPA, a method can be
    /// run whatever kind of step asked for it (Ironic only asks for listed
    /// ones).
    pub fn execute_step(&self, host: &Host, call: &StepCall) -> Option<Result<Value>> {
        let env = &host.env;
        let r = match call.step {
            "erase_devices" => erase::erase_devices(env, call),
            "erase_devices_metadata" => erase::erase_devices_metadata(env, call),
            "erase_devices_express" => erase::erase_devices_express(env, call),
            "erase_pstore" => erase::erase_pstore(env, call),
            "clean_uefi_nvram" => nvram::clean_uefi_nvram(env.root, call),
            "delete_configuration" => raid::delete_configuration(env, call),
            "create_configuration" => raid::create_configuration(env, call, &self.raid),
            "apply_configuration" => raid::apply_configuration(env, call, &self.raid),
            "write_image" => write_image(host, call),
            "inject_files" => inject::inject_files(host, call),
            _ => return None,
        };
        Some(r)
    }

    pub fn list_hardware_info(&self, env: &Env) -> Result<Inventory> {
        collect::list_hardware_info(env)
    }

    /// IPA's `GenericHardwareManager.initialize`: assemble the software
    /// RAID devices the disks carry (`_md_scan_and_assemble`), so that the
    /// inventory, the root device choice and `delete_configuration` see
    /// them after a reboot.
    pub fn initialize(&self, env: &Env) {
        raid::initialize(env);
    }

    /// IPA's `get_os_install_device`: root-device hints from the node
    /// (`instance_info.root_device` over `properties.root_device`, or the
    /// Kilo-era `root_device=` kernel parameter), minus the
    /// `skip_block_devices`; without hints the smallest disk ≥ 4 GiB. A
    /// software RAID volume created with `is_root_volume: true` wins over
    /// both; one created with `is_root_volume: false` is never chosen, nor
    /// are its holder disks and members.
    pub fn get_os_install_device(&self, env: &Env, node: Option<&Value>) -> Result<BlockDevice> {
        let devices = crate::disk::list::list_block_devices(env.root, false)?;
        let node = node.cloned().or_else(|| env.node.clone());
        let hints = hints::root_device_hints(node.as_ref(), env.config.root_device_hints.as_ref())?;
        let skip = node
            .as_ref()
            .map(hints::skip_list_hints)
            .transpose()?
            .unwrap_or_default();
        let mut candidates: Vec<BlockDevice> = devices
            .into_iter()
            .filter(|d| !hints::matches_any(d, &skip))
            .collect();
        for (md, is_root) in &self.raid.root_mapping() {
            if *is_root {
                if let Some(d) = candidates.iter().find(|d| d.name == *md) {
                    if hints.as_ref().is_some_and(|h| !h.is_empty()) {
                        crate::util::log_at!(
                            Warn,
                            "Both root device hints ({}) and a root volume from the target \
                             RAID configuration are defined. The RAID root volume will be used.",
                            hints::py_repr(&Value::Object(hints.clone().unwrap_or_default()))
                        );
                    }
                    return Ok(d.clone());
                }
                continue;
            }
            // the array and its holder disks (its members are partitions,
            // which are not candidates)
            let gone = match crate::disk::md::array::read(env.root, md.trim_start_matches("/dev/"))
            {
                Some(a) => crate::disk::md::array::holders(env.root, &a),
                None => vec![],
            };
            candidates.retain(|d| d.name != *md && !gone.contains(&d.name));
        }
        hints::select_root_device(&candidates, hints.as_ref())
    }
}

/// The `write_image` deploy/service step: IPA's
/// `GenericHardwareManager.write_image` runs `standby.prepare_image` and
/// returns its command result, `{"result": "prepare_image: ..."}`.
fn write_image(host: &Host, call: &StepCall) -> Result<Value> {
    let info = call
        .args
        .get("image_info")
        .and_then(Value::as_object)
        .ok_or_else(|| AgentError::invalid_params("image_info is required"))?;
    let configdrive = crate::image::configdrive_of(call.args.get("configdrive"), info);
    let info = crate::image::parse_image_info(&host.env, info)?;
    let node = host.env.node.as_ref();
    let dev = host.os_install_device(node)?;
    let msg = crate::image::prepare_image(&host.env, host.written, &dev, node, &info, configdrive)?;
    Ok(json!({ "result": format!("prepare_image: {msg}") }))
}

/// IPA's `full_sync`: sync(2), then flush every disk's buffer cache
/// (`blockdev --flushbufs`, i.e. BLKFLSBUF) so a power cut right after
/// cannot lose what was written.
pub fn full_sync(root: &crate::root::Root) -> Result<()> {
    crate::sys::sync_all_filesystems();
    let devices = crate::disk::list::list_block_devices(root, false)?;
    for d in devices {
        let path = root.path(&d.name);
        match std::fs::OpenOptions::new().read(true).open(&path) {
            Ok(f) => {
                if let Err(e) = crate::sys::flush_buffers(&f) {
                    // Regular files (fixture roots) cannot answer BLKFLSBUF.
                    let _ = f.sync_all();
                    crate::util::log_at!(Debug, "flushing {}: {e}", d.name);
                }
            }
            Err(e) => crate::util::log_at!(Warn, "opening {} to flush it: {e}", d.name),
        }
    }
    Ok(())
}

/// Convenience for steps: a failure as the step kind's error class.
pub fn step_error(call: &StepCall, details: impl Into<String>) -> AgentError {
    AgentError::new(call.kind.error_kind(), details)
}
