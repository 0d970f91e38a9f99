//! Which devices an erase step may touch, surveyed before anything is
//! written, and the safety rules applied to them (IPA's
//! `_list_erasable_devices`, `list_block_devices_check_skip_list`,
//! `_is_virtual_media_device`, `_is_linux_raid_member`,
//! `_is_read_only_device` and `safety_check_block_device` in hardware.py).
//!
//! Every disk is surveyed read-only first: its own signatures, its
//! partitions (those the kernel registered, from sysfs, and those its
//! partition table lists, which a busy or partscan-less device may not have
//! registered) and their signatures. All refusals (in use, protected
//! shared-cluster file system) happen before the first byte is written on
//! any disk, so a refused step leaves every disk as it was.
//!
//! Deliberate differences from IPA, all in the direction of wiping less by
//! mistake or leaking less data:
//! * the partitions of a disk the skip list protects are protected too
//!   (IPA matches hints per device, so `{"name": "/dev/sda"}` left /dev/sda1
//!   to be wiped), and `erase_devices` leaves alone a disk one of whose
//!   partitions the skip list protects (IPA matches its hints against
//!   disks only there, and overwrote the partition with the disk);
//! * a RAID member is a disk (or a disk with a partition) held by an
//!   *active* md array; IPA's `lsblk --fs` check also skipped disks that
//!   merely carry a stale md superblock, leaving a previous tenant's data
//!   on them. Stale superblocks are wiped here like any other signature;
//! * the shared-cluster check looks at every partition of a disk and at
//!   OCFS2 and VMFS signatures too, not only at the device's own lsblk IDs;
//! * a mounted, swapped-on or dm-held disk is refused rather than written.

use crate::config::Env;
use crate::disk::device::Access;
use crate::disk::signatures::{self as probe, Probe, Region};
use crate::disk::Disk;
use crate::error::{AgentError, Context, Kind, Result};
use crate::hardware::hints;
use crate::hardware::inventory::BlockDevice;
use crate::root::Root;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// What the step will do with the disks: decides the read-only rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `erase_devices_metadata` / `erase_devices_express`: read-only disks
    /// are skipped (IPA's `_list_erasable_devices`).
    Metadata,
    /// `erase_devices`: a read-only disk fails the step unless
    /// `agent_erase_skip_read_only` (IPA's `erase_block_device`).
    Erase,
}

/// A partition region of a disk.
#[derive(Debug)]
pub struct Part {
    /// "/dev/sda1", or "/dev/sda@1048576" for a partition only the table
    /// knows.
    pub name: String,
    /// Offset and length on the disk, bytes.
    pub start: u64,
    pub size: u64,
    /// Type from the partition table (GPT GUID or "0xNN").
    pub part_type: Option<String>,
    pub probe: Probe,
    /// Protected by the skip list on its own.
    pub skip: bool,
}

/// A disk the step will work on, surveyed.
#[derive(Debug)]
pub struct Target {
    pub dev: BlockDevice,
    /// The root-mapped path to open.
    pub path: PathBuf,
    /// The device number at survey (0 for a fixture's regular file): the
    /// disk opened later to erase must be the one surveyed and checked.
    pub rdev: u64,
    pub size: u64,
    pub sector: u32,
    pub probe: Probe,
    pub parts: Vec<Part>,
}

/// A disk left alone, and why (for the log and the step result).
#[derive(Debug, Clone)]
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// `driver_internal_info.<key>` as a bool; Ironic sends JSON booleans, old
/// conductors and hand-edited nodes sometimes strings or numbers.
pub fn di_bool(node: &Value, key: &str) -> Option<bool> {
    match node.get("driver_internal_info")?.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `driver_internal_info.<key>` as a non-negative integer.
pub fn di_u64(node: &Value, key: &str) -> Option<u64> {
    node.get("driver_internal_info")?
        .get(key)
        .and_then(crate::util::as_u64_lenient)
}

fn kname_of(d: &BlockDevice) -> String {
    if d.kname.is_empty() {
        d.name.trim_start_matches("/dev/").to_string()
    } else {
        d.kname.clone()
    }
}

/// Disks and partitions, from the inventory's lister (IPA's
/// `list_block_devices(include_partitions=True)`).
fn list_devices(root: &Root) -> Result<(Vec<BlockDevice>, Vec<BlockDevice>)> {
    let all = crate::disk::list::list_block_devices(root, true)?;
    let (parts, disks): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| d.dev_type == "part");
    Ok((disks, parts))
}

/// Registered partitions of a disk: (kname, start, size) in bytes, from
/// /sys/block/<disk>/<part>/{start,size} (always 512-byte units).
fn sysfs_partitions(root: &Root, disk: &str) -> Vec<(String, u64, u64)> {
    root.list(format!("/sys/block/{disk}"))
        .into_iter()
        .filter(|e| root.exists(format!("/sys/block/{disk}/{e}/partition")))
        .filter_map(|e| {
            let start = root.read_u64(format!("/sys/block/{disk}/{e}/start"))?;
            let size = root.read_u64(format!("/sys/block/{disk}/{e}/size"))?;
            Some((e, start * 512, size * 512))
        })
        .collect()
}

/// How a disk is used by the running system.
#[derive(Debug, PartialEq, Eq)]
pub enum Usage {
    Free,
    /// Held by an active md array (IPA skips RAID members).
    RaidMember(String),
    /// Mounted, swapped on, or held by a dm device: not to be written.
    InUse(String),
}

/// How `dev` is used: a member of an active md array (any md holder of
/// the disk or of one of its partitions), else whatever the inventory's
/// `check_not_in_use` finds (mounts by name and by major:minor, swaps,
/// other holders).
pub fn usage(root: &Root, dev: &BlockDevice) -> Usage {
    let disk = kname_of(dev);
    let mut dirs = vec![(disk.clone(), format!("/sys/block/{disk}"))];
    for (p, _, _) in sysfs_partitions(root, &disk) {
        dirs.push((p.clone(), format!("/sys/block/{disk}/{p}")));
    }
    for (k, sys) in &dirs {
        if let Some(md) = root
            .list(format!("{sys}/holders"))
            .into_iter()
            .find(|h| h.starts_with("md"))
        {
            return Usage::RaidMember(format!("/dev/{k} is a member of /dev/{md}"));
        }
    }
    match crate::disk::usage::check_not_in_use(root, dev) {
        Ok(()) => Usage::Free,
        Err(e) => Usage::InUse(e.into_details()),
    }
}

/// Labels whose device must never be erased: IPA's virtual-media floppy
/// (`_is_virtual_media_device`), and, when the ramdisk was booted from
/// virtual media (`boot_method=vmedia`), the ISO it booted from or the
/// configuration drive the BMC attached (IPA's `_check_vmedia_device`
/// accepts only small USB disks and optical devices for those).
fn is_virtual_media(env: &Env, dev: &BlockDevice, labels: &[&str]) -> Option<String> {
    let by_label = env.root.path("/dev/disk/by-label/ir-vfd-dev");
    if let Ok(t) = std::fs::canonicalize(&by_label) {
        let me = std::fs::canonicalize(env.root.path(&dev.name)).ok();
        let target = env.root.unmap(&t);
        if Some(&t) == me.as_ref() || target.starts_with(&dev.name) {
            return Some("ir-vfd-dev".into());
        }
    }
    let booted_vmedia = env.config.boot_method.as_deref() == Some("vmedia");
    let small_usb = dev.tran.as_deref() == Some("usb") && dev.size < 4 * crate::disk::GIB;
    for l in labels {
        let up = l.to_ascii_uppercase();
        if up == "IR-VFD-DEV"
            || (booted_vmedia && small_usb && (up == "CONFIG-2" || up == "VMEDIA_BOOT_ISO"))
        {
            return Some(l.to_string());
        }
    }
    None
}

/// With RAID `volume_name`s in `skip_block_devices`: why `dev` must be
/// kept, if it must. An md array is kept when its name (read from a
/// member's superblock) is one of them, or when its name cannot be read;
/// a disk is kept when it or one of its partitions carries an md
/// superblock of a kept volume (arrays that are not assembled leave their
/// members looking like plain disks). IPA resolves names with mdadm.
fn kept_raid(root: &Root, dev: &BlockDevice, keep: &[&str]) -> Option<String> {
    use crate::disk::md::array;
    let kname = kname_of(dev);
    if let Some(a) = array::read(root, &kname) {
        return match array::volume_name(root, &a) {
            Some(n) if keep.contains(&n.as_str()) => Some(format!(
                "RAID volume {n} is kept by properties.skip_block_devices"
            )),
            Some(_) => None,
            None => Some(
                "a RAID volume whose name cannot be read, while \
                 properties.skip_block_devices keeps RAID volumes by name"
                    .into(),
            ),
        };
    }
    let mut devs = vec![kname.clone()];
    devs.extend(crate::disk::list::partition_names(root, &kname));
    // plain loops: no FlatMap and its drop glue
    for k in &devs {
        for f in &array::superblocks(root, k) {
            let n = f.sb.name();
            if keep.contains(&n.as_str()) {
                return Some(format!(
                    "a member of RAID volume {n}, kept by properties.skip_block_devices"
                ));
            }
        }
    }
    None
}

/// Open and survey one disk read-only: its probe and its partitions'.
/// `skip_parts` are partition names the skip list protects.
pub fn survey(env: &Env, mut dev: BlockDevice, skip_parts: &[String]) -> Result<Target> {
    let path = env.root.path(&dev.name);
    let kname = kname_of(&dev);
    dev.kname = kname.clone();
    let hint = env
        .root
        .read_u64(format!("/sys/block/{kname}/queue/logical_block_size"))
        .unwrap_or(512) as u32;
    let disk = Disk::open(&path, &dev.name, Access::Read, hint)
        .ctx(Kind::BlockDeviceEraseError, || {
            format!("opening {}", dev.name)
        })?;
    let read = |off: u64, len: usize| disk.read_at(off, len);
    let region = |base: u64, size: u64| Region {
        base,
        size,
        sector: disk.sector,
        read: &read,
    };
    let ctx = |what: &str| format!("reading {} to find its {what}", dev.name);
    let probe = probe::probe(&region(0, disk.size), true)
        .ctx(Kind::BlockDeviceEraseError, || ctx("signatures"))?;
    let mut regions: Vec<(String, u64, u64, Option<String>, bool)> = vec![];
    for (k, start, size) in sysfs_partitions(env.root, &kname) {
        let name = format!("/dev/{k}");
        let ty = probe
            .table
            .iter()
            .find(|e| e.start == start)
            .map(|e| e.part_type.clone());
        let skip = skip_parts.contains(&name);
        regions.push((name, start, size, ty, skip));
    }
    for e in &probe.table {
        if !regions.iter().any(|r| r.1 == e.start) {
            let name = format!("{}@{}", dev.name, e.start);
            regions.push((name, e.start, e.size, Some(e.part_type.clone()), false));
        }
    }
    let mut out = vec![];
    for (name, start, size, part_type, skip) in regions {
        let size = size.min(disk.size.saturating_sub(start));
        let p = probe::probe(&region(start, size), false)
            .ctx(Kind::BlockDeviceEraseError, || {
                ctx("partitions' signatures")
            })?;
        out.push(Part {
            name,
            start,
            size,
            part_type,
            probe: p,
            skip,
        });
    }
    let rdev = disk.file().metadata().map(|m| m.rdev()).unwrap_or(0);
    Ok(Target {
        size: disk.size,
        sector: disk.sector,
        rdev,
        path,
        dev,
        probe,
        parts: out,
    })
}

/// The disk opened to erase `t` is still the one surveyed: same device
/// number and size. Jobs past the concurrency start later, and a name can
/// be reused meanwhile (a disk dropped off and the BMC's virtual media
/// attached in its place); that device went through none of the checks.
pub fn check_identity(t: &Target, disk: &Disk) -> Result<()> {
    let rdev = disk.file().metadata().map(|m| m.rdev()).unwrap_or(0);
    if rdev != t.rdev || disk.size != t.size {
        return Err(AgentError::erase(format!(
            "{} is not the device surveyed for erasing any more (device {:#x} of {} bytes, \
             was {:#x} of {} bytes); not touching it",
            t.dev.name, rdev, disk.size, t.rdev, t.size
        )));
    }
    Ok(())
}

/// IPA's `safety_check_block_device`: refuse disks carrying shared-cluster
/// file systems unless the agent (`[DEFAULT]guard_special_filesystems`)
/// or the node (`driver_internal_info.wipe_special_filesystems: false`)
/// says not to guard them. IPA matches lsblk's PARTTYPE against the GPFS
/// and VMFS partition types and FSTYPE against gfs2; the signatures read
/// here add gfs, OCFS2 and the VMFS volume and file-system headers.
pub fn safety_check(env: &Env, node: &Value, t: &Target) -> Result<()> {
    if !env.config.guard_special_filesystems
        || di_bool(node, "wipe_special_filesystems") == Some(false)
    {
        return Ok(());
    }
    let check = |name: &str, p: &Probe, ty: Option<&str>| -> Result<()> {
        if let Some(ty) = ty {
            let what = match ty.to_ascii_uppercase().as_str() {
                "37AFFC90-EF7D-4E96-91C3-2D7AE055B174" => Some("IBM GPFS Partition"),
                "AA31E02A-400F-11DB-9590-000C2911D1B8" => Some("VMware VMFS Partition (GPT)"),
                "0XFB" => Some("VMware VMFS Partition (MBR)"),
                _ => None,
            };
            if let Some(what) = what {
                return Err(AgentError::protected_device(name, what));
            }
        }
        for s in &p.signatures {
            let what = match s.kind {
                "gfs2" => "Red Hat Global File System 2",
                "gfs" => "Red Hat Global File System",
                "ocfs2" | "ocfs" => "Oracle Cluster File System",
                "VMFS" => "VMware VMFS File System",
                "VMFS_volume_member" => "VMware VMFS Volume",
                _ => continue,
            };
            return Err(AgentError::protected_device(name, what));
        }
        Ok(())
    };
    check(&t.dev.name, &t.probe, None)?;
    for p in &t.parts {
        check(&p.name, &p.probe, p.part_type.as_deref())?;
    }
    Ok(())
}

/// The disks `purpose` may erase, surveyed and checked, and those skipped.
/// Errors (a read-only disk for a full erase, a disk in use, a protected
/// file system) come before anything is written.
pub fn erasable(env: &Env, node: &Value, purpose: Purpose) -> Result<(Vec<Target>, Vec<Skipped>)> {
    let (disks, parts) = list_devices(env.root)?;
    let skip_hints = hints::skip_list_hints(node)?;
    let skip_parts: Vec<String> = parts
        .iter()
        .filter(|p| hints::matches_any(p, &skip_hints))
        .map(|p| {
            crate::util::log_at!(Warn, "skip_block_devices protects partition {}", p.name);
            p.name.clone()
        })
        .collect();
    let keep_volumes = hints::skip_list_volume_names(node);
    let mut targets = vec![];
    let mut skipped = vec![];
    let mut skip = |name: &str, why: String| {
        crate::util::log_at!(Info, "not erasing {name}: {why}");
        skipped.push(Skipped {
            name: name.to_string(),
            why,
        });
    };
    for dev in disks {
        if hints::matches_any(&dev, &skip_hints) {
            skip(&dev.name, "listed in properties.skip_block_devices".into());
            continue;
        }
        let kname = kname_of(&dev);
        let usage = usage(env.root, &dev);
        if let Usage::RaidMember(why) = &usage {
            skip(&dev.name, format!("RAID member device ({why})"));
            continue;
        }
        // IPA's erase_block_device: virtual media first, then read-only. A
        // BMC's virtual floppy is often read-only; it is skipped, not an
        // error. (The by-label link needs no survey; labels read from the
        // disk are checked after the survey below.)
        if let Some(l) = is_virtual_media(env, &dev, &[]) {
            skip(&dev.name, format!("virtual media device (label {l})"));
            continue;
        }
        let ro = dev.read_only
            || env.root.read(format!("/sys/block/{kname}/ro")).as_deref() == Some("1");
        if ro {
            if purpose == Purpose::Erase
                && di_bool(node, "agent_erase_skip_read_only") != Some(true)
            {
                return Err(AgentError::erase(format!(
                    "Failed to invoke erase of device {} as the device is flagged read-only, \
                     and the conductor has not signaled this is a permitted case.",
                    dev.name
                )));
            }
            skip(&dev.name, "read-only device".into());
            continue;
        }
        if !keep_volumes.is_empty() {
            if let Some(why) = kept_raid(env.root, &dev, &keep_volumes) {
                skip(&dev.name, why);
                continue;
            }
        }
        let t = survey(env, dev, &skip_parts)?;
        if purpose == Purpose::Erase {
            if let Some(p) = t.parts.iter().find(|p| p.skip) {
                skip(
                    &t.dev.name,
                    format!(
                        "its partition {} is listed in properties.skip_block_devices",
                        p.name
                    ),
                );
                continue;
            }
        }
        let mut labels: Vec<&str> = t.probe.label.iter().map(String::as_str).collect();
        labels.extend(t.parts.iter().filter_map(|p| p.probe.label.as_deref()));
        if let Some(l) = is_virtual_media(env, &t.dev, &labels) {
            skip(&t.dev.name, format!("virtual media device (label {l})"));
            continue;
        }
        if let Usage::InUse(why) = usage {
            return Err(AgentError::erase(format!("Refusing to erase {why}")));
        }
        safety_check(env, node, &t)?;
        targets.push(t);
    }
    // IPA sorts by name, reversed; any stable order will do for disks.
    crate::util::sort_small_by(&mut targets, |a, b| b.dev.name.cmp(&a.dev.name));
    Ok((targets, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn driver_internal_info_values() {
        let n =
            json!({"driver_internal_info": {"a": true, "b": "False", "c": 0, "d": "7", "e": 3}});
        assert_eq!(di_bool(&n, "a"), Some(true));
        assert_eq!(di_bool(&n, "b"), Some(false));
        assert_eq!(di_bool(&n, "c"), Some(false));
        assert_eq!(di_bool(&n, "x"), None);
        assert_eq!(di_u64(&n, "d"), Some(7));
        assert_eq!(di_u64(&n, "e"), Some(3));
        assert_eq!(di_bool(&json!({}), "a"), None);
    }

    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn root_with(files: &[(&str, &str)]) -> (PathBuf, Root) {
        let d = std::env::temp_dir().join(format!(
            "targets-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        for (p, c) in files {
            let f = d.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        (d.clone(), Root::new(d))
    }

    #[test]
    fn usage_rules() {
        let (d, r) = root_with(&[
            ("/sys/block/sda/dev", "8:0"),
            ("/sys/block/sda/sda1/partition", "1"),
            ("/sys/block/sda/sda1/start", "2048"),
            ("/sys/block/sda/sda1/size", "2048"),
            ("/sys/block/sda/sda1/dev", "8:1"),
            ("/sys/block/sdb/dev", "8:16"),
            ("/sys/block/sdc/dev", "8:32"),
            ("/sys/block/sdc/holders/md0", ""),
            ("/sys/block/sdd/dev", "8:48"),
            ("/sys/block/sdd/holders/dm-0", ""),
            ("/sys/block/sde/dev", "8:64"),
            ("/sys/block/vda/dev", "254:0"),
            ("/proc/mounts", "/dev/sda1 /mnt ext4 rw 0 0\n"),
            (
                "/proc/swaps",
                "Filename Type Size Used Priority\n/dev/sde partition 1 0 -2\n",
            ),
            (
                "/proc/self/mountinfo",
                "22 1 254:0 / / rw,relatime - ext4 /dev/root rw\n",
            ),
        ]);
        let dev = |k: &str| BlockDevice {
            name: format!("/dev/{k}"),
            kname: k.into(),
            ..Default::default()
        };
        assert_eq!(
            usage(&r, &dev("sda")),
            Usage::InUse("/dev/sda is in use: /dev/sda1 is mounted on /mnt".into())
        );
        assert_eq!(usage(&r, &dev("sdb")), Usage::Free);
        assert!(matches!(usage(&r, &dev("sdc")), Usage::RaidMember(_)));
        assert!(matches!(usage(&r, &dev("sdd")), Usage::InUse(w) if w.contains("dm-0")));
        assert!(matches!(usage(&r, &dev("sde")), Usage::InUse(w) if w.contains("swap")));
        assert!(matches!(usage(&r, &dev("vda")), Usage::InUse(w) if w.contains("mounted on /")));
        std::fs::remove_dir_all(d).unwrap();
    }

    fn agent_at(root: &std::path::Path) -> crate::config::OwnedEnv {
        crate::config::OwnedEnv::at(root)
    }

    fn fixture_writer(d: &std::path::Path) -> impl Fn(&str, &[u8]) + '_ {
        move |p: &str, c: &[u8]| {
            let f = d.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
    }

    /// An md 1.2 member: a valid superblock 4 KiB in, named "host:NAME".
    fn md_member(name: &str, sectors: usize) -> Vec<u8> {
        use crate::disk::md;
        let mut b = vec![0x11u8; sectors * 512];
        let plan = md::plan(md::Version::V1_2, 1, &[sectors as u64; 2]).unwrap();
        let id = md::Identity {
            set_uuid: [7; 16],
            set_name: md::set_name(Some("host"), name),
            ctime: 1,
        };
        b[4096..8192].copy_from_slice(&plan.superblock(&id, 0, [1; 16]).encode());
        b
    }

    /// Found in review: a volume_name in skip_block_devices was dropped,
    /// so the array it names (and, unassembled, its members) were erased.
    #[test]
    fn raid_volumes_kept_by_name_are_not_erased() {
        let d = std::env::temp_dir().join(format!("ironic-agent-md-keep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let w = fixture_writer(&d);
        // md127 "data" over sda+sdb (assembled); sdc a member of "data" not
        // assembled; sdd a member of "scratch"; sde a plain disk
        for (k, n) in [("sda", "8:0"), ("sdb", "8:16")] {
            w(&format!("/sys/block/{k}/size"), b"16384");
            w(&format!("/sys/block/{k}/dev"), n.as_bytes());
            w(&format!("/sys/block/{k}/holders/md127"), b"");
            w(&format!("/sys/block/md127/slaves/{k}"), b"");
            w(&format!("/dev/{k}"), &md_member("data", 16384));
        }
        w("/sys/block/md127/size", b"16000");
        w("/sys/block/md127/dev", b"9:127");
        w("/sys/block/md127/md/level", b"raid1");
        w("/dev/md127", &vec![0x22u8; 16000 * 512]);
        w("/proc/mdstat", b"md127 : active raid1 sdb[1] sda[0]\n");
        for (k, n, name) in [
            ("sdc", "8:32", Some("data")),
            ("sdd", "8:48", Some("scratch")),
            ("sde", "8:64", None),
        ] {
            w(&format!("/sys/block/{k}/size"), b"16384");
            w(&format!("/sys/block/{k}/dev"), n.as_bytes());
            let data = match name {
                Some(n) => md_member(n, 16384),
                None => vec![0x33u8; 16384 * 512],
            };
            w(&format!("/dev/{k}"), &data);
        }
        let agent = agent_at(&d);
        let node = json!({"driver_internal_info": {},
            "properties": {"skip_block_devices": [{"volume_name": "data"}]}});
        let (t, s) = erasable(&agent.env(), &node, Purpose::Erase).unwrap();
        let names: Vec<_> = t.iter().map(|t| t.dev.name.clone()).collect();
        let kept: Vec<_> = s.iter().map(|s| s.name.clone()).collect();
        let _ = std::fs::remove_dir_all(&d);
        assert!(!names.contains(&"/dev/md127".to_string()), "{names:?}");
        assert!(!names.contains(&"/dev/sdc".to_string()), "{names:?}");
        assert!(
            names.contains(&"/dev/sdd".to_string()),
            "{names:?} {kept:?}"
        );
        assert!(
            names.contains(&"/dev/sde".to_string()),
            "{names:?} {kept:?}"
        );
        assert!(kept.contains(&"/dev/md127".to_string()) && kept.contains(&"/dev/sdc".to_string()));
    }

    /// Found in review: a read-only virtual floppy failed erase_devices
    /// instead of being skipped (IPA checks virtual media first).
    #[test]
    fn a_read_only_virtual_floppy_is_skipped() {
        let d = std::env::temp_dir().join(format!("ironic-agent-vfd-ro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let w = fixture_writer(&d);
        w("/sys/block/sda/size", b"8192");
        w("/sys/block/sda/ro", b"0");
        w("/sys/block/sda/dev", b"8:0");
        w("/sys/block/sdb/size", b"2880");
        w("/sys/block/sdb/ro", b"1");
        w("/sys/block/sdb/dev", b"8:16");
        w("/dev/sda", &vec![0x11u8; 8192 * 512]);
        w("/dev/sdb", &vec![0u8; 2880 * 512]);
        std::fs::create_dir_all(d.join("dev/disk/by-label")).unwrap();
        std::os::unix::fs::symlink("../../sdb", d.join("dev/disk/by-label/ir-vfd-dev")).unwrap();
        let agent = agent_at(&d);
        let node = json!({"driver_internal_info": {}, "properties": {}});
        let r = erasable(&agent.env(), &node, Purpose::Erase);
        let _ = std::fs::remove_dir_all(&d);
        let (t, s) = r.expect("erase_devices must not fail on the virtual floppy");
        assert_eq!(
            t.iter().map(|t| t.dev.name.as_str()).collect::<Vec<_>>(),
            ["/dev/sda"]
        );
        assert!(s
            .iter()
            .any(|s| s.name == "/dev/sdb" && s.why.contains("virtual media")));
    }
}
