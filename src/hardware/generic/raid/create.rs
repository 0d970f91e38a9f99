//! `create_configuration` and `apply_configuration`'s second half: IPA's
//! `_do_create_configuration`, natively.
//!
//! 1. the software logical disks, validated (`validate_configuration`);
//! 2. with RAID volume names in `skip_block_devices`: the volumes that
//!    exist and are kept are not built again (`_create_raid_ignore_list`);
//! 3. holder disks: every disk, or those `physical_disks` names
//!    (`get_block_devices_for_raid`); none may carry partitions ("Partitions
//!    detected on devices ...") or be in use;
//! 4. the whole layout (partitions and md geometry) computed before the
//!    first write ([`super::layout`]);
//! 5. per holder, while no one else can open it (`O_EXCL`): the new
//!    table, old md superblocks in the new partitions cleared (mdadm's
//!    `Kill`), each member's v1.2 superblock written (what `mdadm --create
//!    --metadata=1 --force --run` writes), then the kernel re-reads the
//!    table;
//! 6. the arrays started through the md ioctls as `/dev/md<index>` (IPA's
//!    `create_raid_device`), `/dev/md/<volume_name>` linked; the kernel
//!    resyncs redundant levels in the background, as after mdadm.
//!
//! If anything fails after step 5 began (a member gone, the kernel
//! refusing), the arrays started are stopped, the superblocks written are
//! cleared and the tables written are wiped again: no half-built array
//! stays behind.
//!
//! Differences from IPA, all refusing what would destroy data: md arrays
//! and disks the skip list names are never holders (IPA also offered the
//! arrays themselves as holders), and a holder carrying a running array's
//! members is refused (IPA re-labelled such disks when the skip list kept
//! an array on them).

use super::layout::{self, HolderPlan, Members, Volume};
use super::skip::{self, Action};
use super::validate::{raid_error, truthy, validate_configuration};
use super::RaidState;
use crate::config::Env;
use crate::disk::md::array::{self, Kernel, NewMember};
use crate::disk::md::Version;
use crate::disk::table::{self, partition_path};
use crate::disk::{BlockDevice, Geometry};
use crate::error::Result;
use crate::hardware::hints;
use crate::root::Root;
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The disks a volume may be built on: every disk the inventory lists,
/// except md arrays and what `skip_block_devices` names.
fn holder_candidates(root: &Root, node: &Value) -> Result<Vec<BlockDevice>> {
    let skip = hints::skip_list_hints(node)?;
    let mut all = crate::disk::list::list_block_devices(root, false)?;
    // taken out in order by reference (no retain)
    let mut out = vec![];
    for d in all.iter_mut() {
        if !array::is_md(root, &d.kname) && !hints::matches_any(d, &skip) {
            out.push(std::mem::take(d));
        }
    }
    Ok(out)
}

/// IPA's `_create_raid_ignore_list`: drop from `lds` the logical disks
/// not to build because their volumes exist and the skip list keeps them
/// (or they share disks with one it keeps). Returns whether any was.
fn ignore_list(root: &Root, lds: &mut Vec<&Value>, skip: &[&str]) -> Result<bool> {
    let decisions = skip::decide(root, array::list(root), skip);
    let mut names: Vec<&str> = vec![];
    for d in &decisions {
        match d.name.as_deref() {
            Some(n) if !n.is_empty() => names.push(n),
            _ => {
                return Err(raid_error(
                    "A Software RAID device detected that does not have a volume name. This \
                     is not allowed because there is a volume_name hint in the property \
                     'skip_block_devices'.",
                ))
            }
        }
    }
    let before = lds.len();
    let mut bad = false;
    let mut i = 0;
    while i < lds.len() {
        let vn = lds[i].get("volume_name").and_then(Value::as_str);
        let Some(pos) = names.iter().position(|n| Some(*n) == vn) else {
            i += 1;
            continue;
        };
        // an existing volume not kept itself must be a kept one's neighbour
        let d = &decisions[decisions
            .iter()
            .position(|d| d.name.as_deref() == vn)
            .unwrap_or(0)];
        let kept = skip.iter().any(|s| Some(*s) == vn);
        let neighbour = d.action == Action::Wipe && d.cause.is_some();
        bad |= !(kept || neighbour);
        names.remove(pos);
        lds.remove(i);
    }
    let esp_kept = decisions
        .iter()
        .any(|d| d.name.as_deref() == Some("esp") && d.action == Action::Keep);
    // any existing volume left over, but a kept ESP mirror
    let left = names.iter().any(|n| !(esp_kept && *n == "esp"));
    if bad || left {
        return Err(raid_error(
            "Existing Software RAID device detected that should not",
        ));
    }
    Ok(lds.len() != before)
}

/// Open a holder to write its table: exclusively when asked and it is a
/// block device (the kernel then refuses while a partition is mounted or
/// held), never with O_DIRECT (small table writes).
#[inline(never)]
fn open_holder(root: &Root, name: &str, excl: bool) -> Result<File> {
    array::open_rw(root, name, excl).map_err(|e| {
        array::raid_fmt(format_args!(
            "opening {name} to partition it: {e} (EBUSY: mounted, or held by md, LVM or \
             dm; delete_configuration first?)"
        ))
    })
}

/// Undo a failed creation: stop what started, clear the superblocks and
/// the tables written. Best effort; failures are logged.
fn roll_back(
    root: &Root,
    kernel: &dyn Kernel,
    plans: &[HolderPlan],
    holders: usize,
    started: &[String],
) {
    for md in started.iter().rev() {
        if let Err(e) = kernel.stop(md) {
            crate::util::log_at!(Error, "rolling back: {}", e.details);
        }
        array::unlink_names(root, md);
    }
    for p in &plans[..holders] {
        let r = open_holder(root, p.name, false).and_then(|f| {
            for part in &p.parts {
                let name = partition_path(p.name, part.number);
                array::zero_superblocks_in(&f, part.offset(p.sector), part.len(p.sector), &name)?;
            }
            clear_tables(&f, p.size)
                .and_then(|_| f.sync_all())
                .map_err(|e| raid_error(e.to_string()))?;
            let _ = crate::disk::device::reread(&f);
            Ok(())
        });
        if let Err(e) = r {
            crate::util::log_at!(Error, "rolling back {}: {}", p.name, e.details);
        }
    }
    crate::util::log_at!(
        Info,
        "rolled back: {} started arrays, {holders} partition tables",
        started.len()
    );
}

/// IPA's `_do_create_configuration`: build `raid_config` on this node.
/// Returns the configuration as given (what IPA returns and Ironic
/// records), `{}` when it has no software RAID logical disk.
pub fn do_create(
    env: &Env,
    node: &Value,
    raid_config: &Value,
    kernel: &dyn Kernel,
    state: &RaidState,
) -> Result<Value> {
    let root = env.root;
    let mut lds: Vec<&Value> = vec![];
    if let Some(all) = raid_config.get("logical_disks").and_then(Value::as_array) {
        for ld in all {
            lds.push(ld);
        }
    }
    if !lds
        .iter()
        .any(|ld| ld.get("controller").and_then(Value::as_str) == Some("software"))
    {
        crate::util::log_at!(Debug, "No Software RAID config found");
        return Ok(json!({}));
    }
    crate::util::log_at!(Info, "Creating Software RAID");
    validate_configuration(raid_config, node, &mut || {
        Ok(crate::disk::list::list_block_devices(root, false)?.len())
    })?;
    let skip = hints::skip_list_volume_names(node);
    let none_removed = skip.is_empty() || !ignore_list(root, &mut lds, &skip)?;
    drop(skip);
    create(env, node, &lds, none_removed, kernel, state)?;
    Ok(raid_config.clone())
}

/// The holders' sizes and sector sizes; refused when one carries
/// partitions and the skip list kept nothing.
fn probe<'a>(
    root: &Root,
    holders: &[&'a str],
    none_removed: bool,
) -> Result<Vec<(&'a str, u64, u64)>> {
    let mut hs = vec![];
    let mut with_parts = String::new();
    for &h in holders {
        let f =
            File::open(root.path(h)).map_err(|e| array::io_err(format_args!("opening {h}"), e))?;
        let g = crate::disk::geometry(root, std::path::Path::new(h), &f)?;
        if matches!(table::read_table(&f, g), table::Found::Table(t) if !t.partitions.is_empty()) {
            if !with_parts.is_empty() {
                with_parts.push_str(", ");
            }
            with_parts.push_str(h);
        }
        hs.push((h, g.size, g.sector));
    }
    if none_removed && !with_parts.is_empty() {
        return Err(array::raid_fmt(format_args!(
            "Partitions detected on devices {with_parts} during RAID config"
        )));
    }
    Ok(hs)
}

/// The logical disks `lds` laid out, written and started (rolled back on
/// failure).
fn create(
    env: &Env,
    node: &Value,
    lds: &[&Value],
    none_removed: bool,
    kernel: &dyn Kernel,
    state: &RaidState,
) -> Result<()> {
    let root = env.root;
    let devices = holder_candidates(root, node)?;
    let mut vols = layout::parse_volumes(lds)?;
    let holders = layout::select_holders(&devices, &mut vols)?;
    let hs = probe(root, &holders, none_removed)?;
    drop(holders);
    if hs.is_empty() || vols.is_empty() {
        return Ok(());
    }
    let label = crate::image::partition::disk_label(env, Some(node));
    let uefi = crate::image::partition::node_boot_mode(env, Some(node)) == "uefi";
    let vols = layout::reorder(vols);
    let (plans, members) = layout::partition(&hs, &vols, label, uefi)?;
    drop(hs);
    let mut written = 0;
    let mut started = vec![];
    if let Err(e) = build(
        root,
        kernel,
        &vols,
        &plans,
        &members,
        &mut written,
        &mut started,
    ) {
        crate::util::log_at!(
            Error,
            "creating the software RAID failed: {}; rolling back",
            e.details
        );
        roll_back(root, kernel, &plans, written, &started);
        return Err(e);
    }
    for (v, md) in vols.iter().zip(&started) {
        if let Some(is_root) = v.is_root {
            state.record(format!("/dev/{md}"), is_root);
        }
    }
    crate::util::log_at!(Info, "Successfully created Software RAID");
    Ok(())
}

/// Write every holder's table (counting them in `written`), then make and
/// start each volume's array (recording it in `started`).
fn build(
    root: &Root,
    kernel: &dyn Kernel,
    vols: &[Volume<'_>],
    plans: &[HolderPlan],
    members: &[Members],
    written: &mut usize,
    started: &mut Vec<String>,
) -> Result<()> {
    // every holder opened exclusively before the first write: the kernel
    // refuses one that is mounted or held (by md, LVM, dm)
    let mut files = vec![];
    for p in plans {
        files.push(open_holder(root, p.name, true)?);
    }
    for (p, f) in plans.iter().zip(&files) {
        *written += 1;
        write_table(p, f)?;
    }
    // the superblocks through the holders (not exclusively: md claims the
    // partitions when the array starts)
    files.clear();
    for p in plans {
        files.push(open_holder(root, p.name, false)?);
    }
    for (vi, (v, mem)) in vols.iter().zip(members).enumerate() {
        let md = array::free_name(root, &mut (vi as u32..=127))
            .ok_or_else(|| raid_error("No free md (RAID) devices are left"))?;
        make_array(root, kernel, &md, vi, v, mem, plans, &files)?;
        started.push(md);
    }
    Ok(())
}

/// One holder's new table, synced and re-read by the kernel.
fn write_table(p: &HolderPlan, mut f: &File) -> Result<()> {
    let geom = Geometry {
        sector: p.sector,
        size: p.size,
    };
    let r = table::write_new(&mut f, geom, p.label, &p.parts)
        .and_then(|_| f.sync_all().map_err(|e| raid_error(e.to_string())));
    if let Err(e) = r {
        return Err(array::raid_fmt(format_args!(
            "partitioning {}: {}",
            p.name, e.details
        )));
    }
    crate::disk::device::reread_partitions(std::path::Path::new(&p.name), f)
}

/// Volume `vi`'s array `md` over its members' partitions (`files`: the
/// holders, open).
#[allow(clippy::too_many_arguments)]
fn make_array(
    root: &Root,
    kernel: &dyn Kernel,
    md: &str,
    vi: usize,
    v: &Volume<'_>,
    mem: &Members,
    plans: &[HolderPlan],
    files: &[File],
) -> Result<()> {
    let mut nm: Vec<NewMember> = vec![];
    for &(hi, n) in mem {
        let p = &plans[hi];
        let part = &p.parts[n as usize - 1];
        nm.push(NewMember {
            disk: &files[hi],
            // "sda1": the holder's name is "/dev/sda"
            kname: partition_path(&p.name[5..], n),
            offset: part.offset(p.sector),
            len: part.len(p.sector),
        });
    }
    let fallback;
    let name = match &v.volume_name {
        Some(name) => name,
        None => {
            fallback = format!("md{vi}");
            &fallback
        }
    };
    let r = array::create(root, kernel, md, Version::V1_2, v.level, name, &nm);
    let Err(e) = r else {
        return Ok(());
    };
    let mut msg = format!("Failed to create md device /dev/{md} on ");
    for (i, m) in nm.iter().enumerate() {
        msg.push_str(if i > 0 { " /dev/" } else { "/dev/" });
        msg.push_str(&m.kname);
    }
    msg.push_str(": ");
    msg.push_str(&e.details);
    Err(raid_error(msg))
}

/// `delete_existing`'s default and Python truthiness for `apply_configuration`.
pub fn delete_existing(v: Option<&Value>) -> bool {
    v.map(truthy).unwrap_or(true)
}

/// Zero the first and last MiB of a disk: its partition tables.
pub fn clear_tables(f: &File, size: u64) -> std::io::Result<()> {
    let mib = 1u64 << 20;
    let zero = vec![0u8; mib.min(size) as usize];
    f.write_all_at(&zero, 0)?;
    f.write_all_at(&zero, size - zero.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OwnedEnv};
    use crate::disk::md;
    use crate::disk::table::{read_table, Found};
    use crate::disk::Label;
    use std::cell::RefCell;

    /// A kernel that records what it is asked and fails the `fail_at`th
    /// start (1-based).
    #[derive(Default)]
    struct FakeKernel {
        started: RefCell<Vec<(String, Vec<String>)>>,
        stopped: RefCell<Vec<String>>,
        fail_at: Option<usize>,
    }

    impl Kernel for FakeKernel {
        fn start(&self, md: &str, v: Version, members: &[&str]) -> Result<()> {
            assert_eq!(v, Version::V1_2);
            let n = self.started.borrow().len() + 1;
            if self.fail_at == Some(n) {
                return Err(array::raid_fmt(format_args!(
                    "adding /dev/{} to /dev/{md}: the device is gone",
                    members[1]
                )));
            }
            let members = members.iter().map(|m| m.to_string()).collect();
            self.started.borrow_mut().push((md.into(), members));
            Ok(())
        }
        fn stop(&self, md: &str) -> Result<()> {
            self.stopped.borrow_mut().push(md.into());
            Ok(())
        }
    }

    struct Fixture {
        dir: std::path::PathBuf,
        env: OwnedEnv,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A root with disks sda, sdb, sdc of `gib` GiB (sparse files).
    fn fixture(tag: &str, gib: &[u64]) -> Fixture {
        let dir = std::env::temp_dir().join(format!("raid-create-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (i, g) in gib.iter().enumerate() {
            let k = format!("sd{}", (b'a' + i as u8) as char);
            let sys = dir.join(format!("sys/block/{k}"));
            std::fs::create_dir_all(sys.join("queue")).unwrap();
            std::fs::write(sys.join("size"), (g << 21).to_string()).unwrap();
            std::fs::write(sys.join("queue/logical_block_size"), "512").unwrap();
            std::fs::create_dir_all(dir.join("dev")).unwrap();
            let f = File::create(dir.join(format!("dev/{k}"))).unwrap();
            f.set_len(g << 30).unwrap();
        }
        std::fs::create_dir_all(dir.join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.join("proc/sys/kernel/hostname"), "ramdisk\n").unwrap();
        let env = OwnedEnv::new(Config {
            root: dir.clone(),
            standalone: true,
            ..Default::default()
        });
        Fixture { dir, env }
    }

    fn node(cfg: Value) -> Value {
        json!({"uuid": "n1", "properties": {"capabilities": "boot_mode:uefi"},
               "target_raid_config": cfg})
    }

    fn disk(f: &Fixture, k: &str) -> File {
        File::open(f.dir.join(format!("dev/{k}"))).unwrap()
    }

    fn read_sb(f: &Fixture, k: &str, part_first_lba: u64) -> md::Superblock {
        let mut b = vec![0u8; 4096];
        disk(f, k)
            .read_exact_at(&mut b, part_first_lba * 512 + 4096)
            .unwrap();
        md::Superblock::parse(&b).unwrap()
    }

    #[test]
    fn creates_tables_superblocks_and_arrays() {
        let f = fixture("ok", &[20, 20]);
        // IPA's "MAX first": reordered, so md0 is the 10 GiB RAID-0
        let cfg = json!({"logical_disks": [
            {"size_gb": "MAX", "raid_level": "1", "controller": "software", "volume_name": "root",
             "is_root_volume": true},
            {"size_gb": 10, "raid_level": "0", "controller": "software", "volume_name": "data"}]});
        let k = FakeKernel::default();
        let state = RaidState::default();
        let out = do_create(&f.env.env(), &node(cfg.clone()), &cfg, &k, &state).unwrap();
        assert_eq!(out, cfg, "the configuration as given");
        assert_eq!(
            *k.started.borrow(),
            vec![
                (
                    "md0".to_string(),
                    vec!["sda1".to_string(), "sdb1".to_string()]
                ),
                (
                    "md1".to_string(),
                    vec!["sda2".to_string(), "sdb2".to_string()]
                )
            ]
        );
        assert_eq!(state.root_mapping(), vec![("/dev/md1".to_string(), true)]);
        for (i, d) in ["sda", "sdb"].iter().enumerate() {
            let geom = Geometry {
                sector: 512,
                size: 20 << 30,
            };
            let Found::Table(t) = read_table(&disk(&f, d), geom) else {
                panic!("no table on {d}")
            };
            assert_eq!(t.label, Label::Gpt);
            let lbas: Vec<(u64, u64)> = t
                .partitions
                .iter()
                .map(|p| (p.start_lba, p.start_lba + p.sectors - 1))
                .collect();
            assert_eq!(lbas, vec![(1128448, 20971519), (20971520, 41940991)]);
            let data = read_sb(&f, d, 1128448);
            assert_eq!(
                (data.level(), data.full_name(), data.dev_number()),
                (0, "ramdisk:data".into(), i as u32)
            );
            assert_eq!(data.resync_offset(), md::IN_SYNC);
            let root = read_sb(&f, d, 20971520);
            assert_eq!(
                (root.level(), root.name(), root.resync_offset()),
                (1, "root".into(), 0)
            );
            root.check_place(Version::V1_2, 41940992 - 20971520)
                .unwrap();
        }
        // the two members share the array's identity
        assert_eq!(
            read_sb(&f, "sda", 1128448).set_uuid(),
            read_sb(&f, "sdb", 1128448).set_uuid()
        );
        assert_ne!(
            read_sb(&f, "sda", 1128448).set_uuid(),
            read_sb(&f, "sda", 20971520).set_uuid()
        );
        // a second run refuses: the holders have partitions now
        let e = do_create(&f.env.env(), &node(cfg.clone()), &cfg, &k, &state).unwrap_err();
        assert_eq!(
            e.details,
            "Partitions detected on devices /dev/sda, /dev/sdb during RAID config"
        );
    }

    #[test]
    fn a_failure_rolls_everything_back() {
        let f = fixture("fail", &[20, 20]);
        let cfg = json!({"logical_disks": [
            {"size_gb": 10, "raid_level": "1", "controller": "software"},
            {"size_gb": "MAX", "raid_level": "0", "controller": "software"}]});
        let k = FakeKernel {
            fail_at: Some(2),
            ..Default::default()
        };
        let e = do_create(
            &f.env.env(),
            &node(cfg.clone()),
            &cfg,
            &k,
            &RaidState::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.details,
            "Failed to create md device /dev/md1 on /dev/sda2 /dev/sdb2: adding /dev/sdb2 to \
             /dev/md1: the device is gone"
        );
        assert_eq!(*k.stopped.borrow(), vec!["md0".to_string()]);
        for d in ["sda", "sdb"] {
            let geom = Geometry {
                sector: 512,
                size: 20 << 30,
            };
            assert!(
                matches!(read_table(&disk(&f, d), geom), Found::Nothing),
                "{d} keeps a table"
            );
            let mut b = vec![0u8; 4096];
            for lba in [1128448u64, 20971520] {
                disk(&f, d).read_exact_at(&mut b, lba * 512 + 4096).unwrap();
                assert!(
                    b.iter().all(|x| *x == 0),
                    "{d}: a superblock at {lba} survived"
                );
            }
        }
    }

    #[test]
    fn what_does_not_fit_fails_before_any_write() {
        let f = fixture("fit", &[8, 8, 8]);
        let cfg = json!({"logical_disks": [
            {"size_gb": 6, "raid_level": "1", "controller": "software"},
            {"size_gb": 4, "raid_level": "5", "controller": "software"}]});
        let k = FakeKernel::default();
        let e = do_create(
            &f.env.env(),
            &node(cfg.clone()),
            &cfg,
            &k,
            &RaidState::default(),
        )
        .unwrap_err();
        assert!(e.details.starts_with("The software RAID configuration does not fit on /dev/sda (8589934592 bytes): logical disk 2 (size_gb 4) would span bytes 6442450944 to 10737418240"), "{}", e.details);
        for d in ["sda", "sdb", "sdc"] {
            let mut b = vec![0u8; 1 << 20];
            disk(&f, d).read_exact_at(&mut b, 0).unwrap();
            assert!(b.iter().all(|x| *x == 0), "{d} was written");
        }
        assert!(k.started.borrow().is_empty());
        // physical_disks limits the holders: sdc stays untouched
        let cfg = json!({"logical_disks": [
            {"size_gb": 6, "raid_level": "1", "controller": "software",
             "physical_disks": [{"name": "/dev/sda"}, {"name": "/dev/sdb"}]}]});
        do_create(
            &f.env.env(),
            &node(cfg.clone()),
            &cfg,
            &k,
            &RaidState::default(),
        )
        .unwrap();
        assert_eq!(k.started.borrow()[0].1, vec!["sda1", "sdb1"]);
        let mut b = vec![0u8; 1 << 20];
        disk(&f, "sdc").read_exact_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|x| *x == 0));
    }

    #[test]
    fn no_software_disks_is_an_empty_result() {
        let f = fixture("none", &[8]);
        let cfg = json!({"logical_disks": [{"size_gb": 6, "raid_level": "1", "controller": "hw"}]});
        let k = FakeKernel::default();
        assert_eq!(
            do_create(
                &f.env.env(),
                &node(cfg.clone()),
                &cfg,
                &k,
                &RaidState::default()
            )
            .unwrap(),
            json!({})
        );
        assert!(delete_existing(None) && !delete_existing(Some(&json!(false))));
    }
}
