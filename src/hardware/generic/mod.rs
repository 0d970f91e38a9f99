//! IPA's `GenericHardwareManager`: inventory from /sys, /proc and /dev,
//! root-disk selection, and the generic clean, deploy and service steps
//! (protocol §5.4–5.5).

pub mod ata;
pub mod blkerase;
pub mod collect;
pub mod diskio;
pub mod disks;
pub mod dmi;
pub mod erase;
pub mod nvme;
pub mod probe;
pub mod raid;
pub mod scsi;
pub mod targets;
pub mod wipe;

use super::inventory::{BlockDevice, Inventory};
use super::{hints, Step, StepCall, StepKind};
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use serde_json::{json, Value};

pub struct GenericHardwareManager;

/// `DEPLOY_CLEAN_UEFI_NVRAM_ARGSINFO` in IPA's hardware.py.
fn clean_uefi_nvram_argsinfo() -> Value {
    json!({
        "match_patterns": {
            "description": "A list of regular expressions to match the UEFI NVRAM entries \
                            to be deleted. Default: [\"^HD\\\\(\", \"shim.*\\\\.efi\", \
                            \"grub.*\\\\.efi\"]",
            "required": false
        }
    })
}

fn raid_apply_argsinfo() -> Value {
    json!({
        "raid_config": {"description": "The RAID configuration to apply.", "required": true},
        "delete_existing": {
            "description": "Setting this to 'True' indicates to delete existing RAID \
                            configuration prior to creating the new configuration. \
                            Default value is 'True'.",
            "required": false
        }
    })
}

fn write_image_argsinfo() -> Value {
    json!({
        "image_info": {"description": "Image information (urls, checksum, format).", "required": true},
        "configdrive": {"description": "Config drive: a URL or base64 gzipped ISO.", "required": false}
    })
}

/// `inject_files.ARGSINFO` in IPA.
fn inject_files_argsinfo() -> Value {
    json!({
        "files": {
            "description": "Files to inject, a list of file structures with keys: 'path' \
                            (path to the file), 'partition' (partition specifier), 'content' \
                            (base64 encoded string), 'mode' (new file mode) and 'dirmode' \
                            (mode for the leaf directory, if created). Merged with the values \
                            from node.properties[inject_files].",
            "required": false
        },
        "verify_ca": {
            "description": "Whether to verify TLS certificates. Global agent options are \
                            used by default.",
            "required": false
        }
    })
}

impl GenericHardwareManager {
    pub fn get_steps(&self, agent: &Agent, kind: StepKind) -> Vec<Step> {
        let inject_prio = agent.config.inject_files_priority as i64;
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
    pub fn execute_step(&self, agent: &Agent, call: &StepCall) -> Option<Result<Value>> {
        let r = match call.step {
            "erase_devices" => erase::erase_devices(agent, call),
            "erase_devices_metadata" => erase::erase_devices_metadata(agent, call),
            "erase_devices_express" => erase::erase_devices_express(agent, call),
            "erase_pstore" => erase::erase_pstore(agent, call),
            "clean_uefi_nvram" => crate::image::efi::clean_uefi_nvram(agent, call),
            "delete_configuration" => raid::delete_configuration(agent, call),
            "create_configuration" => raid::create_configuration(agent, call),
            "apply_configuration" => raid::apply_configuration(agent, call),
            "write_image" => crate::image::write_image_step(agent, call),
            "inject_files" => crate::image::inject::inject_files(agent, call),
            _ => return None,
        };
        Some(r)
    }

    pub fn list_hardware_info(&self, agent: &Agent) -> Result<Inventory> {
        collect::list_hardware_info(agent)
    }

    /// IPA's `get_os_install_device`: root-device hints from the node
    /// (`instance_info.root_device` over `properties.root_device`, or the
    /// Kilo-era `root_device=` kernel parameter), minus the
    /// `skip_block_devices`; without hints the smallest disk ≥ 4 GiB.
    pub fn get_os_install_device(
        &self,
        agent: &Agent,
        node: Option<&Value>,
    ) -> Result<BlockDevice> {
        let devices = disks::list_block_devices(&agent.root, false)?;
        let node = node.cloned().or_else(|| agent.node());
        let hints =
            hints::root_device_hints(node.as_ref(), agent.config.root_device_hints.as_ref())?;
        let skip = node
            .as_ref()
            .map(hints::skip_list_hints)
            .transpose()?
            .unwrap_or_default();
        let candidates: Vec<BlockDevice> = devices
            .into_iter()
            .filter(|d| !hints::matches_any(d, &skip))
            .collect();
        hints::select_root_device(&candidates, hints.as_ref())
    }
}

/// IPA's `full_sync`: sync(2), then flush every disk's buffer cache
/// (`blockdev --flushbufs`, i.e. BLKFLSBUF) so a power cut right after
/// cannot lose what was written.
pub fn full_sync(agent: &Agent) -> Result<()> {
    crate::sys::sync_all_filesystems();
    let devices = disks::list_block_devices(&agent.root, false)?;
    for d in devices {
        let path = agent.root.path(&d.name);
        match std::fs::OpenOptions::new().read(true).open(&path) {
            Ok(f) => {
                if let Err(e) = crate::sys::flush_buffers(&f) {
                    // Regular files (fixture roots) cannot answer BLKFLSBUF.
                    let _ = f.sync_all();
                    log::debug!("flushing {}: {e}", d.name);
                }
            }
            Err(e) => log::warn!("opening {} to flush it: {e}", d.name),
        }
    }
    Ok(())
}

/// Convenience for steps: a failure as the step kind's error class.
pub fn step_error(call: &StepCall, details: impl Into<String>) -> AgentError {
    AgentError::new(call.kind.error_kind(), details)
}
