//! IPA's `_md_scan_and_assemble` (`mdadm --assemble --scan` at start-up,
//! and before and after each pass of `delete_configuration`): find every
//! md v1.x superblock on the disks and their partitions, group members by
//! array UUID, and start the arrays the kernel does not run yet, whoever
//! made them (this agent, mdadm, an installed OS).
//!
//! Member choice follows mdadm's `Assemble`: the members must agree on
//! what the array is (level, layout, chunk, member count, creation time);
//! a member more than one event behind the freshest is left out (the
//! kernel would kick it); two members claiming one slot: the fresher
//! wins. The freshest member is added last, as mdadm does. Arrays too
//! degraded for their level are not started (logged).
//!
//! Names follow mdadm's too: md127 downwards, and `/dev/md/<name>`.
//! Nothing here fails the caller: like IPA, start-up goes on without the
//! arrays it could not assemble.

use crate::disk::md::array::{self, Kernel};
use crate::disk::md::{level_name, Found, IN_SYNC};
use crate::root::Root;

/// One device's superblock.
struct Candidate {
    kname: String,
    found: Found,
}

/// How many members an array of `level` with `raid_disks` slots needs.
fn enough(level: i32, raid_disks: usize, present: usize, layout: u32) -> bool {
    match level {
        0 | -1 => present == raid_disks,
        1 => present >= 1,
        4 | 5 => present + 1 >= raid_disks,
        6 => present + 2 >= raid_disks,
        // at least one member of each copy set; the kernel checks the
        // exact sets, this only keeps hopeless ones out
        10 => {
            let copies = ((layout & 0xff) * ((layout >> 8) & 0xff)).max(1) as usize;
            present * copies >= raid_disks
        }
        _ => present > 0,
    }
}

/// Block devices that may carry members: disks and their partitions, not
/// md devices, not devices already held (members of running arrays, dm).
#[inline(never)]
fn candidates(root: &Root) -> Vec<Candidate> {
    let mut devices = match crate::disk::list::list_block_devices(root, true) {
        Ok(d) => d,
        Err(e) => {
            crate::util::log_at!(
                Warn,
                "listing block devices to assemble md arrays: {}",
                e.details
            );
            return vec![];
        }
    };
    let mut out = vec![];
    // by reference, the name taken out: no IntoIter and its drop glue
    for d in devices.iter_mut() {
        if d.dev_type != "disk" && d.dev_type != "part" {
            continue;
        }
        if held(root, &d.kname) {
            continue;
        }
        // the first (newest) one, without an IntoIter and its drop
        let mut found = array::superblocks(root, &d.kname);
        if !found.is_empty() {
            out.push(Candidate {
                kname: std::mem::take(&mut d.kname),
                found: found.swap_remove(0),
            });
        }
    }
    out
}

/// Does something hold `kname` (its sysfs `holders` is not empty)?
fn held(root: &Root, kname: &str) -> bool {
    let disk = array::parent_disk(root, kname);
    let holders = if disk == kname {
        format!("/sys/block/{disk}/holders")
    } else {
        format!("/sys/block/{disk}/{kname}/holders")
    };
    !root.list(holders).is_empty()
}

/// Assemble what the disks carry. Returns the md devices started.
pub fn md_scan_and_assemble(root: &Root, kernel: &dyn Kernel) -> Vec<String> {
    if !root.exists("/sys/module/md_mod") {
        crate::util::log_at!(
            Info,
            "the md driver is not loaded: no software RAID devices assembled"
        );
        return vec![];
    }
    let running = array::list(root);
    // grouped by set UUID in place, each group a run of the list: groups
    // in the order first seen, members in the order found
    let mut all = candidates(root);
    let mut started = vec![];
    let mut i = 0;
    while i < all.len() {
        let mut end = i + 1;
        for j in i + 1..all.len() {
            if all[j].found.sb.set_uuid() == all[i].found.sb.set_uuid() {
                // j moves to `end`, the ones between one place on (no
                // rotate_right and its generic copy)
                let mut k = j;
                while k > end {
                    all.swap(k - 1, k);
                    k -= 1;
                }
                end += 1;
            }
        }
        let g = &mut all[i..end];
        i = end;
        let uuid = g[0].found.sb.uuid_sysfs();
        if running.iter().any(|a| a.uuid == uuid) {
            continue;
        }
        if let Some(md) = assemble_one(root, kernel, g) {
            started.push(md);
        }
    }
    started
}

#[inline(never)]
fn assemble_one(root: &Root, kernel: &dyn Kernel, g: &mut [Candidate]) -> Option<String> {
    // the freshest active member describes the array
    crate::util::sort_small_by(g, |a, b| b.found.sb.events().cmp(&a.found.sb.events()));
    let fi = g.iter().position(|c| c.found.sb.slot().is_some())?;
    let (version, sb) = (g[fi].found.version, &g[fi].found.sb);
    let name = sb.name();
    let what = format!(
        "{} \"{name}\" ({})",
        level_name(sb.level()),
        sb.uuid_mdadm()
    );
    // members that agree with it, not stale, one per slot (the freshest
    // claim wins)
    let mut members: Vec<&str> = vec![];
    let mut slots: Vec<u32> = vec![];
    for c in g.iter() {
        let s = &c.found.sb;
        let slot = s.slot();
        if c.found.version == version
            && s.same_array(sb)
            && s.events().saturating_add(1) >= sb.events()
            && !slot.is_some_and(|x| slots.contains(&x))
        {
            if let Some(x) = slot {
                slots.push(x);
            }
            members.push(&c.kname);
        } else {
            crate::util::log_at!(
                Warn,
                "/dev/{} left out of {what}: a different, stale or repeated member",
                c.kname
            );
        }
    }
    // the freshest last, as mdadm adds them
    let last = members.len().saturating_sub(1);
    for i in 0..members.len() / 2 {
        members.swap(i, last - i);
    }
    let n = sb.raid_disks() as usize;
    let dirty_degraded = slots.len() < n && sb.level() >= 4 && sb.resync_offset() != IN_SYNC;
    let md = array::free_name(root, &mut (0..=127).rev())?;
    let err = if !enough(sb.level(), n, slots.len(), sb.layout()) || dirty_degraded {
        Some("too few members (or degraded and not shut down clean)".to_string())
    } else {
        kernel
            .start(&md, version, &members)
            .err()
            .map(|e| e.into_details())
    };
    crate::util::log_at!(
        Info,
        "assembling /dev/{md}: {what} from {} of {n} members ({}): {}",
        slots.len(),
        members.join(" "),
        err.as_deref().unwrap_or("started")
    );
    if err.is_some() {
        return None;
    }
    array::link_name(root, &md, &name);
    Some(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_members() {
        assert!(enough(1, 2, 1, 0));
        assert!(!enough(0, 2, 1, 1));
        assert!(enough(5, 3, 2, 2) && !enough(5, 4, 2, 2));
        assert!(enough(6, 4, 2, 2) && !enough(6, 4, 1, 2));
        assert!(enough(10, 4, 2, 0x102) && !enough(10, 4, 1, 0x102));
    }
}
