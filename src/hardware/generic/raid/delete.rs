//! `delete_configuration`: IPA's `delete_configuration` and
//! `_delete_config_pass`, natively. Every software RAID device is
//! deleted, not only those of `target_raid_config` (IPA: "if that config
//! has been lost, the cleanup may become difficult").
//!
//! A pass, per array (after assembling whatever the disks carry, as
//! IPA's `mdadm --assemble --scan`):
//! * delete: the signatures inside the array wiped (`wipefs -af`), the
//!   array stopped, the md superblock of every component cleared
//!   (`mdadm --zero-superblock`);
//! * kept by the skip list: untouched; its neighbours on the same disks
//!   wiped but kept ([`super::skip`]).
//!
//! Then stale superblocks on any other disk or partition are cleared, and
//! the holder disks wiped (their partition tables with them), except those
//! holding a kept array, where only the deleted arrays' partitions are
//! removed (`parted rm`). Two passes at most; arrays still running after
//! the second fail the step with IPA's "Unable to clean all softraid
//! correctly. Remaining [...]".

use super::assemble::md_scan_and_assemble;
use super::skip::{self, Action, Decision};
use super::validate::raid_error;
use crate::config::Env;
use crate::disk::md::array::{self, Array, Kernel};
use crate::disk::{table, BlockDevice};
use crate::error::Result;
use crate::hardware::generic::erase::{metadata, targets};
use crate::hardware::hints;
use crate::root::Root;
use serde_json::Value;

/// Log a failure IPA only warns about (its details name the device).
fn warn_on(r: Result<()>) {
    if let Err(e) = r {
        crate::util::log_at!(Warn, "{}", e.details);
    }
}

/// Assemble what the disks carry, then list the arrays (IPA's
/// `_scan_raids`).
fn scan(root: &Root, kernel: &dyn Kernel) -> Vec<Array> {
    md_scan_and_assemble(root, kernel);
    array::list(root)
}

/// `wipefs -af` of a device: its signatures and partition tables zeroed
/// (the erase steps' metadata wipe, which covers what wipefs finds).
fn wipe(env: &Env, kname: &str) -> Result<()> {
    // the survey takes the kernel name from the device's name
    let dev = BlockDevice {
        name: format!("/dev/{kname}"),
        ..Default::default()
    };
    let t = targets::survey(env, dev, &[])?;
    metadata::destroy_disk_metadata(&t)?;
    Ok(())
}

/// Remove partitions from a disk ("/dev/vda") that keeps others in use:
/// the table edited, and each partition dropped from the kernel with
/// BLKPG (the disk cannot be re-read while a kept array holds its other
/// partitions).
fn remove_partitions(root: &Root, name: &str, numbers: &[u32]) -> Result<()> {
    let f = array::open_rw(root, name, false)
        .map_err(|e| array::io_err(format_args!("opening {name}"), e))?;
    let geom = crate::disk::geometry(root, std::path::Path::new(name), &f)?;
    if let Err(e) = table::remove_partitions(&mut &f, geom, numbers) {
        return Err(array::raid_fmt(format_args!("{name}: {}", e.details)));
    }
    let _ = f.sync_all();
    if crate::sys::is_block_device(&f) {
        for &n in numbers {
            if let Err(e) = crate::sys::blkpg_partition(&f, false, n, 0, 0) {
                crate::util::log_at!(
                    Warn,
                    "dropping partition {n} of {name} from the kernel: {e}"
                );
            }
        }
    }
    crate::util::log_at!(Info, "removed partitions {numbers:?} from {name}");
    Ok(())
}

/// Is `s` one of `v`? (One non-generic copy for the `&str` lists below.)
fn has(v: &[&str], s: &str) -> bool {
    v.contains(&s)
}

fn delete_pass(
    env: &Env,
    arrays: Vec<Array>,
    skip: &[&str],
    kernel: &dyn Kernel,
) -> Result<Vec<Decision>> {
    let root = env.root;
    let decisions = skip::decide(root, arrays, skip);
    // borrowed from the decisions: nothing cloned
    let mut holders: Vec<&str> = vec![];
    let mut keep: Vec<&str> = vec![];
    for d in &decisions {
        let md = d.array.kname.as_str();
        if d.array.members.is_empty() {
            crate::util::log_at!(
                Info,
                "Software RAID cleaning is skipping partition /dev/{md}"
            );
            continue;
        }
        for h in &d.holders {
            if !has(&holders, h) {
                holders.push(h);
            }
        }
        if d.action != Action::Delete {
            for m in &d.array.members {
                keep.push(&m.kname);
            }
            crate::util::log_at!(
                Warn,
                "Software RAID device /dev/{md} is not going to be deleted: the skip list keeps \
                 {} ({d})",
                d.cause.as_deref().or(d.name.as_deref()).unwrap_or("None"),
            );
            if d.action == Action::Wipe {
                warn_on(wipe(env, md));
            }
            continue;
        }
        crate::util::log_at!(Info, "Deleting Software RAID device /dev/{md}");
        warn_on(wipe(env, md));
        warn_on(kernel.stop(md));
        array::unlink_names(root, md);
    }
    // every md superblock no kept array uses goes (the deleted arrays'
    // members, stale ones); on a disk that keeps an array, the partitions
    // that carried one are removed from its table instead of the whole
    // table being wiped. Disks by kernel name ("vda"): a device's name is
    // "/dev/" and its kernel name.
    let mut keep_disks: Vec<String> = vec![];
    for k in &keep {
        keep_disks.push(array::parent_disk(root, k));
    }
    let keeps = |disk: &str| keep_disks.iter().position(|k| k == disk);
    // (index in keep_disks, partition number)
    let mut drop_parts: Vec<(usize, u32)> = vec![];
    for d in &crate::disk::list::list_block_devices(root, true)? {
        let kname = d.kname.as_str();
        if array::is_md(root, kname)
            || has(&keep, kname)
            || keeps(kname).is_some()
            || array::superblocks(root, kname).is_empty()
        {
            continue;
        }
        crate::util::log_at!(Info, "clearing the md superblock of {}", d.name);
        warn_on(array::zero_superblocks(root, kname).map(drop));
        // a partition of a disk that keeps an array (a kept whole disk
        // was skipped above)
        let disk = array::parent_disk(root, kname);
        if let Some(k) = keeps(&disk) {
            let n = array::sys_u64(root, format_args!("/sys/block/{disk}/{kname}/partition"));
            if let Some(n) = n {
                drop_parts.push((k, n as u32));
            }
        }
    }
    for h in &holders {
        let disk = &h[5..];
        if let Some(k) = keeps(disk) {
            let mut numbers: Vec<u32> = vec![];
            for &(d, n) in &drop_parts {
                if d == k {
                    numbers.push(n);
                }
            }
            if !numbers.is_empty() {
                remove_partitions(root, h, &numbers)?;
            }
        } else {
            warn_on(wipe(env, disk));
        }
    }
    Ok(decisions)
}

/// `delete_configuration`.
pub fn delete(env: &Env, node: &Value, kernel: &dyn Kernel) -> Result<()> {
    let root = env.root;
    let mut arrays = scan(root, kernel);
    let skip = hints::skip_list_volume_names(node);
    for _ in 0..2 {
        let decisions = delete_pass(env, arrays, &skip, kernel)?;
        arrays = scan(root, kernel);
        if !skip.is_empty() {
            arrays.retain(|a| {
                decisions
                    .iter()
                    .find(|d| d.array.kname == a.kname)
                    .is_none_or(|d| d.action == Action::Delete)
            });
        }
        if arrays.is_empty() {
            return Ok(());
        }
    }
    let mut msg = String::from("Unable to clean all softraid correctly. Remaining [");
    for (i, a) in arrays.iter().enumerate() {
        if i > 0 {
            msg.push_str(", ");
        }
        msg.push_str("'/dev/");
        msg.push_str(&a.kname);
        msg.push('\'');
    }
    msg.push(']');
    Err(raid_error(msg))
}
