//! The `raid` interface of IPA's generic manager: Linux software RAID
//! built through the kernel, with no mdadm in the ramdisk.
//!
//! Steps, as IPA lists them (`generic/mod.rs`): clean steps
//! `delete_configuration` and `create_configuration` (priority 0,
//! abortable), deploy step `apply_configuration` (`raid_config`,
//! `delete_existing`), and all three as service steps.
//!
//! * [`validate`]: `validate_configuration`, IPA's rules and messages;
//! * [`layout`]: holder disks and their partitions, computed before any
//!   write;
//! * [`create`]: tables, md v1.2 superblocks, arrays started
//!   (`/dev/md<index>`, `/dev/md/<volume_name>`), rolled back on failure;
//! * [`delete`]: every array stopped, superblocks and holder tables
//!   cleared, the skip list's volumes kept ([`skip`]);
//! * [`assemble`]: `_md_scan_and_assemble`, run when the generic manager
//!   is evaluated at start-up (as IPA's `GenericHardwareManager.initialize`)
//!   and around each `delete_configuration` pass.
//!
//! The md mechanics (superblock format, the kernel's ioctls and sysfs)
//! live in `crate::disk::md`, below the image layer, which builds the ESP
//! mirror with them at `install_bootloader` time.

pub mod assemble;
pub mod create;
pub mod delete;
pub mod layout;
pub mod skip;
pub mod validate;

use crate::config::Env;
use crate::disk::md::array::Sysfs;
use crate::error::{AgentError, Result};
use crate::hardware::StepCall;
use crate::util::lock;
use serde_json::{json, Value};
use std::sync::Mutex;

/// IPA's `_raid_root_device_mapping`: md device → `is_root_volume`, for
/// the arrays this process created, in creation order. Lost when the
/// agent restarts, as IPA's.
#[derive(Default, Debug)]
pub struct RaidState {
    root_mapping: Mutex<Vec<(String, bool)>>,
}

impl RaidState {
    /// `md` ("/dev/md0") maps to `is_root`, in place of an earlier entry
    /// (there is at most one per device: every entry comes through here).
    pub fn record(&self, md: String, is_root: bool) {
        let mut m = lock(&self.root_mapping);
        if let Some(i) = m.iter().position(|(d, _)| *d == md) {
            m.remove(i);
        }
        m.push((md, is_root));
    }

    pub fn root_mapping(&self) -> Vec<(String, bool)> {
        lock(&self.root_mapping).clone()
    }
}

/// The `create_configuration` step: the node's `target_raid_config`.
pub fn create_configuration(env: &Env, call: &StepCall, state: &RaidState) -> Result<Value> {
    let cfg = call.node.get("target_raid_config").unwrap_or(&Value::Null);
    if !validate::truthy(cfg) {
        crate::util::log_at!(Debug, "No target_raid_config found");
        return Ok(json!({}));
    }
    create::do_create(env, call.node, cfg, &Sysfs(env.root), state)
}

/// The `delete_configuration` step (IPA returns None).
pub fn delete_configuration(env: &Env, call: &StepCall) -> Result<Value> {
    delete::delete(env, call.node, &Sysfs(env.root))?;
    Ok(Value::Null)
}

/// The `apply_configuration` deploy and service step: validate the given
/// `raid_config`, delete the existing arrays unless `delete_existing` is
/// false, build the new ones.
pub fn apply_configuration(env: &Env, call: &StepCall, state: &RaidState) -> Result<Value> {
    let Some(cfg) = call.args.get("raid_config") else {
        return Err(AgentError::invalid_params(
            "apply_configuration() missing 1 required positional argument: 'raid_config'",
        ));
    };
    let count = &mut || Ok(crate::disk::list::list_block_devices(env.root, false)?.len());
    validate::validate_configuration(cfg, call.node, count)?;
    if create::delete_existing(call.args.get("delete_existing")) {
        delete::delete(env, call.node, &Sysfs(env.root))?;
    }
    if !validate::truthy(cfg) {
        return Ok(json!({}));
    }
    create::do_create(env, call.node, cfg, &Sysfs(env.root), state)
}

/// Start-up: assemble the arrays the disks carry (IPA's
/// `_md_scan_and_assemble` in `GenericHardwareManager.initialize`).
pub fn initialize(env: &Env) {
    if assemble::md_scan_and_assemble(env.root, &Sysfs(env.root)).is_empty() {
        crate::util::log_at!(Info, "No new RAID devices assembled during start-up");
    }
}
