//! The erase clean steps of IPA's generic manager (hardware.py:
//! `erase_devices`, `erase_devices_metadata`, `erase_devices_express`,
//! `erase_pstore`; protocol §5.5), with no external tools.
//!
//! Device selection and safety live in `targets.rs`, metadata wiping in
//! `wipe.rs`, signature probing in `probe.rs`.
//!
//! Results: IPA returns `None` from the metadata and pstore steps and
//! `{device: None}` from `erase_devices`. Ironic stores `clean_result`
//! without reading it for these steps, so this agent returns a small
//! record per device instead (what was done, how long it took, and why a
//! device was left alone), which is evidence for the operator.

use super::targets::{self, Purpose, Skipped};
use super::wipe;
use crate::agent::Agent;
use crate::error::{AgentError, Context, Kind, Result};
use crate::hardware::StepCall;
use serde_json::{json, Map, Value};

fn todo(call: &StepCall) -> Result<Value> {
    Err(super::step_error(
        call,
        format!("{} is not implemented in this build yet", call.step),
    ))
}

fn skipped_records(out: &mut Map<String, Value>, skipped: &[Skipped]) {
    for s in skipped {
        out.insert(s.name.clone(), json!({"skipped": s.why}));
    }
}

pub fn erase_devices(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}

/// IPA's `erase_devices_metadata`: for every erasable disk, zero the
/// partition-table and signature areas of each partition and then of the
/// disk, and re-read the partition table. A failure on one disk does not
/// stop the others; the step then fails naming every failed disk, as IPA's
/// `BlockDeviceEraseError` does.
pub fn erase_devices_metadata(agent: &Agent, call: &StepCall) -> Result<Value> {
    let (targets, skipped) = targets::erasable(agent, call.node, Purpose::Metadata)?;
    let mut out = Map::new();
    let mut errors = vec![];
    for t in &targets {
        match wipe::destroy_disk_metadata(t) {
            Ok(rec) => {
                out.insert(t.dev.name.clone(), rec);
            }
            Err(e) => {
                log::error!(
                    "Failed to erase the metadata on device \"{}\". Error: {}",
                    t.dev.name,
                    e.details
                );
                errors.push(format!("\"{}\": {}", t.dev.name, e.details));
            }
        }
    }
    if !errors.is_empty() {
        return Err(AgentError::erase(format!(
            "Failed to erase the metadata on the device(s): {}",
            errors.join("; ")
        )));
    }
    skipped_records(&mut out, &skipped);
    Ok(Value::Object(out))
}

pub fn erase_devices_express(_agent: &Agent, call: &StepCall) -> Result<Value> {
    todo(call)
}

/// The pstore mount point from /proc/mounts (IPA's
/// `_find_pstore_mount_point`: the first mount of type pstore).
fn pstore_mount(agent: &Agent) -> Option<String> {
    let mounts = agent.root.read("/proc/mounts")?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "pstore").then(|| f[1].to_string())
    })
}

/// IPA's `erase_pstore`: delete every record the kernel keeps in the
/// persistent store (crash dumps of the previous tenant's kernel may hold
/// their data). No pstore mounted: nothing to do.
pub fn erase_pstore(agent: &Agent, _call: &StepCall) -> Result<Value> {
    let Some(mnt) = pstore_mount(agent) else {
        log::debug!("No pstore found");
        return Ok(json!({"pstore": null, "deleted": 0}));
    };
    log::info!("Cleaning up pstore in {mnt}");
    let dir = agent.root.path(&mnt);
    let entries =
        std::fs::read_dir(&dir).ctx(Kind::CleaningError, || format!("listing pstore {mnt}"))?;
    let mut deleted = 0;
    for e in entries {
        let e = e.ctx(Kind::CleaningError, || format!("listing pstore {mnt}"))?;
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.ctx(Kind::CleaningError, || {
            format!("deleting {}", agent.root.unmap(&p).display())
        })?;
        deleted += 1;
    }
    Ok(json!({"pstore": mnt, "deleted": deleted}))
}
