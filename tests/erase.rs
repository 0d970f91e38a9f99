//! The erase clean steps against real block devices (loop devices over
//! sparse files, root only) and sparse-file fixture disks, through the real
//! binary's HTTP API. The host's libblkid (`blkid -p`) is the oracle for
//! "no signature left".

mod common;

use common::blockdev::{self, blkid_at, empty_root, present, Loop};
use common::tools::{must, need, need_root};
use common::{test_dir, Agent, Opts};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

fn clean_step(a: &Agent, step: &str, node: Value) -> Value {
    let (s, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": step, "interface": "deploy", "priority": 99,
                        "reboot_requested": false, "abortable": true},
               "node": node, "ports": [], "clean_version": null}),
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn node(di: Value) -> Value {
    json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "driver_internal_info": di,
           "properties": {}})
}

#[test]
fn metadata_wipes_partitions_then_disks_on_loop_devices() {
    if !need_root() {
        return;
    }
    need(&[
        "losetup",
        "sgdisk",
        "partx",
        "mkfs.ext4",
        "mkfs.vfat",
        "mkswap",
        "mkfs.xfs",
        "blkid",
    ]);
    let dir = test_dir("erase-meta-loop");
    let root = empty_root(&dir);
    // sda: GPT with ext4, vfat and swap partitions.
    let a = Loop::new(&dir.join("a.img"), 96 * MIB, true, false);
    must(&[
        "sgdisk",
        "-n",
        "1:2048:+32M",
        "-n",
        "2:0:+16M",
        "-n",
        "3:0:+8M",
        &a.dev,
    ]);
    a.register_partitions();
    must(&["mkfs.ext4", "-q", "-F", &a.part_dev(1)]);
    must(&["mkfs.vfat", &a.part_dev(2)]);
    must(&["mkswap", &a.part_dev(3)]);
    let part_offsets: Vec<u64> = a
        .partitions()
        .iter()
        .map(|p| {
            let s = std::fs::read_to_string(format!("/sys/block/{}/{p}/start", a.kname())).unwrap();
            s.trim().parse::<u64>().unwrap() * 512
        })
        .collect();
    assert_eq!(part_offsets.len(), 3);
    for off in &part_offsets {
        assert!(blkid_at(&a.dev, *off).is_some(), "set-up: no fs at {off}");
    }
    // sdb: a whole-disk file system plus signatures past the first MiB.
    // (mkfs.xfs wants at least 300 MB; the file is sparse.)
    let b_size = 320 * MIB;
    let b = Loop::new(&dir.join("b.img"), b_size, false, false);
    must(&["mkfs.xfs", "-q", "-f", &b.dev]);
    let md090 = (b_size & !(64 * 1024 - 1)) - 64 * 1024;
    b.write_at(md090, &0xa92b_4efcu32.to_le_bytes());
    b.write_at(2 * MIB, b"SKUL\xba\xbe");
    b.write_at(64 * MIB + 0x40, b"_BHRfS_M");
    let xfs_ag1 = {
        let sb = b.read_at(0, 512);
        let bs = u32::from_be_bytes(sb[4..8].try_into().unwrap()) as u64;
        let agblocks = u32::from_be_bytes(sb[84..88].try_into().unwrap()) as u64;
        bs * agblocks
    };
    assert_eq!(
        &b.read_at(xfs_ag1, 4),
        b"XFSB",
        "set-up: xfs secondary superblock"
    );
    // sdc: read-only, must be left alone.
    let c_img = dir.join("c.img");
    std::fs::File::create(&c_img)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    must(&["mkfs.ext4", "-q", "-F", c_img.to_str().unwrap()]);
    let c = Loop::attach(&c_img, &["-r"]);
    present(&root, "sda", &a);
    present(&root, "sdb", &b);
    present(&root, "sdc", &c);

    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices_metadata", node(json!({})));
    assert_eq!(
        v["command_status"],
        "SUCCEEDED",
        "{v}\n{}",
        agent.log_text()
    );
    let r = &v["command_result"]["clean_result"];
    assert_eq!(r["/dev/sda"]["method"], "metadata", "{r}");
    assert_eq!(
        r["/dev/sda"]["partitions"],
        json!(["/dev/sda1", "/dev/sda2", "/dev/sda3"])
    );
    let sigs: Vec<&str> = r["/dev/sda"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in [
        "gpt@/dev/sda",
        "ext4@/dev/sda1",
        "vfat@/dev/sda2",
        "swap@/dev/sda3",
    ] {
        assert!(sigs.contains(&want), "{want} not in {sigs:?}");
    }
    assert!(r["/dev/sdb"]["signatures"]
        .as_array()
        .unwrap()
        .contains(&json!("xfs@/dev/sdb")));
    assert_eq!(r["/dev/sdc"]["skipped"], "read-only device", "{r}");

    // The oracles: nothing left for libblkid, the kernel dropped the
    // partitions (BLKRRPART), and the signatures past the first MiB are gone.
    assert_eq!(blkid_at(&a.dev, 0), None);
    assert!(a.partitions().is_empty(), "{:?}", a.partitions());
    for off in &part_offsets {
        assert_eq!(blkid_at(&a.dev, *off), None, "signature left at {off}");
    }
    assert!(!must(&["sgdisk", "-p", &a.dev]).contains("EFI"));
    assert_eq!(blkid_at(&b.dev, 0), None);
    assert_eq!(b.read_at(md090, 4), vec![0; 4]);
    assert_eq!(b.read_at(2 * MIB, 6), vec![0; 6]);
    assert_eq!(b.read_at(64 * MIB + 0x40, 8), vec![0; 8]);
    assert_eq!(
        b.read_at(xfs_ag1, 4),
        vec![0; 4],
        "xfs secondary superblock left"
    );
    assert!(blkid_at(&c.dev, 0).unwrap().contains("TYPE=ext4"));
}

#[test]
fn protected_partition_stops_the_step_before_any_write() {
    if !need_root() {
        return;
    }
    need(&["losetup", "mkfs.ext4", "sgdisk", "partx", "blkid"]);
    let dir = test_dir("erase-protected");
    let root = empty_root(&dir);
    let a = Loop::new(&dir.join("a.img"), 32 * MIB, false, false);
    must(&["mkfs.ext4", "-q", "-F", &a.dev]);
    let b = Loop::new(&dir.join("b.img"), 32 * MIB, true, false);
    must(&[
        "sgdisk",
        "-n",
        "1:2048:+8M",
        "-t",
        "1:AA31E02A-400F-11DB-9590-000C2911D1B8",
        &b.dev,
    ]);
    b.register_partitions();
    b.part_dev(1);
    present(&root, "sda", &a);
    present(&root, "sdb", &b);
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices_metadata", node(json!({})));
    assert_eq!(v["command_status"], "FAILED", "{v}");
    let e = &v["command_error"];
    assert_eq!(e["type"], "ProtectedDeviceError");
    assert_eq!(
        e["details"],
        "Protected VMware VMFS Partition (GPT) located on device /dev/sdb1. This volume or \
         contents may be a shared block device. Please consult your storage administrator, \
         and restart cleaning after either detaching the volumes, or instructing IPA to not \
         protect contents. See Ironic Python Agent documentation for more information."
    );
    assert_eq!(e["message"], e["details"]);
    // Nothing was written anywhere, including the unprotected disk.
    assert!(blkid_at(&a.dev, 0).unwrap().contains("TYPE=ext4"));
    assert_eq!(b.partitions().len(), 1);

    // The node says not to guard special file systems: both are wiped.
    let v = clean_step(
        &agent,
        "erase_devices_metadata",
        node(json!({"wipe_special_filesystems": false})),
    );
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(blkid_at(&a.dev, 0), None);
    assert_eq!(blkid_at(&b.dev, 0), None);
    assert!(b.partitions().is_empty());
}

/// Sparse regular files stand in for disks (no root needed): the step
/// zeroes the same areas with plain writes and skips the ioctls.
#[test]
fn metadata_on_sparse_file_disks() {
    let dir = test_dir("erase-meta-file");
    let root = empty_root(&dir);
    let disk = root.join("dev/sda");
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    f.set_len(64 * MIB).unwrap();
    use std::os::unix::fs::FileExt;
    // A protective MBR, a GPT header at LBA 1 and its backup at the end,
    // and an ext4 magic in a partition at 1 MiB.
    f.write_all_at(b"\x55\xaa", 510).unwrap();
    f.write_all_at(b"EFI PART", 512).unwrap();
    f.write_all_at(b"EFI PART", 64 * MIB - 512).unwrap();
    f.write_all_at(&0xef53u16.to_le_bytes(), MIB + 1024 + 0x38)
        .unwrap();
    f.write_all_at(b"tenant data", 40 * MIB).unwrap();
    let sys = root.join("sys/block/sda");
    for (p, v) in [
        ("size", "131072"),
        ("ro", "0"),
        ("sda1/partition", "1"),
        ("sda1/start", "2048"),
        ("sda1/size", "65536"),
    ] {
        std::fs::create_dir_all(sys.join(p).parent().unwrap()).unwrap();
        std::fs::write(sys.join(p), v).unwrap();
    }
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices_metadata", node(json!({})));
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let r = &v["command_result"]["clean_result"]["/dev/sda"];
    assert_eq!(r["partitions"], json!(["/dev/sda1"]));
    let mut back = [0u8; 8];
    for off in [510, 512, 64 * MIB - 512, MIB + 1024 + 0x38] {
        f.read_exact_at(&mut back[..2], off).unwrap();
        assert_eq!(&back[..2], &[0, 0], "left at {off}");
    }
    // A metadata wipe is not a data erase: data elsewhere stays.
    let mut data = [0u8; 11];
    f.read_exact_at(&mut data, 40 * MIB).unwrap();
    assert_eq!(&data, b"tenant data");
    assert!(r["zeroed_bytes"].as_u64().unwrap() >= 4 * MIB);
}

/// A whole-disk gfs2 (the shared SAN LUN case IPA guards against).
#[test]
fn gfs2_disk_is_protected() {
    let dir = test_dir("erase-gfs2");
    let root = empty_root(&dir);
    let disk = root.join("dev/sdb");
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    f.set_len(64 * MIB).unwrap();
    use std::os::unix::fs::FileExt;
    let g = 64 * 1024;
    f.write_all_at(&0x0116_1970u32.to_be_bytes(), g).unwrap();
    f.write_all_at(&1801u32.to_be_bytes(), g + 24).unwrap();
    f.write_all_at(&1900u32.to_be_bytes(), g + 28).unwrap();
    std::fs::create_dir_all(root.join("sys/block/sdb")).unwrap();
    std::fs::write(root.join("sys/block/sdb/size"), "131072").unwrap();
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices_metadata", node(json!({})));
    assert_eq!(v["command_error"]["type"], "ProtectedDeviceError", "{v}");
    assert!(v["command_error"]["details"]
        .as_str()
        .unwrap()
        .starts_with("Protected Red Hat Global File System 2 located on device /dev/sdb."));
    let mut m = [0u8; 4];
    f.read_exact_at(&mut m, g).unwrap();
    assert_eq!(m, 0x0116_1970u32.to_be_bytes(), "untouched");
}

/// Fill a loop device with a recognisable non-zero pattern.
fn pattern_fill(lo: &Loop, size: u64) {
    blockdev::fill_pattern(lo, size, 0xa5);
}

fn set_attr(root: &std::path::Path, disk: &str, attr: &str, v: &str) {
    std::fs::write(root.join("sys/block").join(disk).join(attr), v).unwrap();
}

/// Every byte of the device, read with O_DIRECT.
fn all_bytes(lo: &Loop, size: u64) -> Vec<u8> {
    blockdev::read_direct(&lo.dev, 0, size as usize)
}

#[test]
fn erase_devices_on_loop_devices_picks_zeroout_or_overwrite_and_verifies() {
    if !need_root() {
        return;
    }
    need(&["losetup"]);
    let dir = test_dir("erase-full-loop");
    let root = empty_root(&dir);
    let size = 48 * MIB + 512;
    let a = Loop::new(&dir.join("a.img"), size, false, false);
    let b = Loop::new(&dir.join("b.img"), size, false, false);
    pattern_fill(&a, size);
    pattern_fill(&b, size);
    present(&root, "sda", &a);
    present(&root, "sdb", &b);
    // sda: an SSD whose driver offloads write-zeroes; sdb: a spinning disk.
    set_attr(&root, "sda", "queue/rotational", "0");
    set_attr(&root, "sdb", "queue/rotational", "1");
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices", node(json!({})));
    assert_eq!(
        v["command_status"],
        "SUCCEEDED",
        "{v}\n{}",
        agent.log_text()
    );
    let r = &v["command_result"]["clean_result"];
    assert_eq!(r["/dev/sda"]["method"], "blkzeroout", "{r:#}");
    assert_eq!(r["/dev/sdb"]["method"], "overwrite", "{r:#}");
    for d in ["/dev/sda", "/dev/sdb"] {
        assert_eq!(r[d]["verified"], true);
        assert_eq!(r[d]["verification"], "zeroes");
        let outcomes: Vec<(&str, &str)> = r[d]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["method"].as_str().unwrap(),
                    a["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        // no SG_IO on a loop device: secure erase is unsupported, not failed
        assert_eq!(
            outcomes[0],
            ("ata_security_erase", "unsupported"),
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&("blksecdiscard", "unsupported")));
        assert!(!outcomes.iter().any(|o| o.1 == "failed"), "{outcomes:?}");
    }
    assert!(all_bytes(&a, size).iter().all(|x| *x == 0), "sda not zero");
    assert!(all_bytes(&b, size).iter().all(|x| *x == 0), "sdb not zero");

    // Without the zero pass the last random pass is what reads back.
    pattern_fill(&b, size);
    std::fs::remove_file(root.join("dev/sda")).unwrap();
    std::fs::remove_dir_all(root.join("sys/block/sda")).unwrap();
    let v = clean_step(
        &agent,
        "erase_devices",
        node(json!({"agent_erase_devices_iterations": 2, "agent_erase_devices_zeroize": false})),
    );
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let r = &v["command_result"]["clean_result"]["/dev/sdb"];
    assert_eq!(
        (&r["method"], &r["verification"]),
        (&json!("overwrite"), &json!("pattern"))
    );
    let back = all_bytes(&b, size);
    assert!(
        !back.windows(64).any(|w| w.iter().all(|x| *x == 0xa5)),
        "old data left"
    );
    assert!(back.iter().filter(|x| **x == 0).count() < back.len() / 100);
}

#[test]
fn read_only_disks_fail_erase_devices_unless_skipping_is_allowed() {
    if !need_root() {
        return;
    }
    need(&["losetup"]);
    let dir = test_dir("erase-ro");
    let root = empty_root(&dir);
    let a = Loop::new(&dir.join("a.img"), 8 * MIB, false, true);
    present(&root, "sda", &a);
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices", node(json!({})));
    assert_eq!(v["command_error"]["type"], "BlockDeviceEraseError", "{v}");
    assert_eq!(
        v["command_error"]["details"],
        "Failed to invoke erase of device /dev/sda as the device is flagged read-only, and the \
         conductor has not signaled this is a permitted case."
    );
    let v = clean_step(
        &agent,
        "erase_devices",
        node(json!({"agent_erase_skip_read_only": true})),
    );
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(
        v["command_result"]["clean_result"]["/dev/sda"]["skipped"],
        "read-only device"
    );
}

/// Sparse files: the overwrite path with plain writes (no root needed).
#[test]
fn erase_devices_on_sparse_file_disks() {
    let dir = test_dir("erase-full-file");
    let root = empty_root(&dir);
    std::fs::create_dir_all(root.join("dev")).unwrap();
    for (i, disk) in ["sda", "sdb", "sdc"].iter().enumerate() {
        std::fs::write(root.join("dev").join(disk), vec![0x3cu8 + i as u8; 3 << 20]).unwrap();
        std::fs::create_dir_all(root.join("sys/block").join(disk)).unwrap();
        std::fs::write(root.join("sys/block").join(disk).join("size"), "6144").unwrap();
    }
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(
        &agent,
        "erase_devices",
        node(json!({"disk_erasure_concurrency": 2})),
    );
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    for disk in ["sda", "sdb", "sdc"] {
        let r = &v["command_result"]["clean_result"][format!("/dev/{disk}")];
        assert_eq!(r["method"], "overwrite", "{r}");
        assert_eq!(r["verified"], true);
        let back = std::fs::read(root.join("dev").join(disk)).unwrap();
        assert!(back.iter().all(|x| *x == 0));
    }
    assert!(agent.log_text().contains("concurrency 2"));
}

/// `properties.skip_block_devices`: a skipped disk is untouched, partitions
/// included; a skipped partition keeps its areas even where the disk's own
/// areas overlap them.
#[test]
fn skip_list_protects_disks_and_partitions() {
    use std::os::unix::fs::FileExt;
    let dir = test_dir("erase-skip");
    let root = empty_root(&dir);
    std::fs::create_dir_all(root.join("dev")).unwrap();
    for disk in ["sda", "sdb"] {
        std::fs::write(root.join("dev").join(disk), vec![0x5au8; 8 << 20]).unwrap();
        let sys = root.join("sys/block").join(disk);
        for (p, v) in [
            ("size".to_string(), "16384"),
            (format!("{disk}1/partition"), "1"),
            (format!("{disk}1/start"), "34"),
            (format!("{disk}1/size"), "8192"),
        ] {
            std::fs::create_dir_all(sys.join(&p).parent().unwrap()).unwrap();
            std::fs::write(sys.join(&p), v).unwrap();
        }
    }
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let mut n = node(json!({}));
    n["properties"]["skip_block_devices"] = json!([{"name": "/dev/sdb"}, {"name": "/dev/sda1"}]);
    let v = clean_step(&agent, "erase_devices_metadata", n.clone());
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let r = &v["command_result"]["clean_result"];
    assert_eq!(
        r["/dev/sdb"]["skipped"],
        "listed in properties.skip_block_devices"
    );
    assert_eq!(r["/dev/sda"]["partitions"], json!([]));
    let sdb = std::fs::read(root.join("dev/sdb")).unwrap();
    assert!(sdb.iter().all(|b| *b == 0x5a), "sdb written");
    let f = std::fs::File::open(root.join("dev/sda")).unwrap();
    let mut b = [0u8; 512];
    f.read_exact_at(&mut b, 0).unwrap();
    assert!(
        b.iter().all(|x| *x == 0),
        "the disk's first sectors are zeroed"
    );
    // sda1 (sectors 34..8226) keeps its first MiB though the disk's
    // first MiB overlaps it
    f.read_exact_at(&mut b, 34 * 512).unwrap();
    assert!(b.iter().all(|x| *x == 0x5a), "sda1 written");
    f.read_exact_at(&mut b, 33 * 512).unwrap();
    assert!(b.iter().all(|x| *x == 0));
    // erase_devices honours the same list, and does not overwrite a disk
    // to erase around a protected partition
    let v = clean_step(&agent, "erase_devices", n);
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let r = &v["command_result"]["clean_result"];
    assert!(r["/dev/sdb"]["skipped"].is_string());
    assert_eq!(
        r["/dev/sda"]["skipped"],
        "its partition /dev/sda1 is listed in properties.skip_block_devices"
    );
    f.read_exact_at(&mut b, 34 * 512).unwrap();
    assert!(b.iter().all(|x| *x == 0x5a), "sda1 written");
    assert!(std::fs::read(root.join("dev/sdb"))
        .unwrap()
        .iter()
        .all(|b| *b == 0x5a));
}

/// The virtual-media floppy Ironic attaches (vfat label "ir-vfd-dev") is
/// never erased; a "config-2" drive is, unless the ramdisk booted from
/// virtual media and it is a small USB disk (IPA's `_check_vmedia_device`).
#[test]
fn virtual_media_is_left_alone() {
    let dir = test_dir("erase-vmedia");
    let root = empty_root(&dir);
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let vfat = |label: &[u8; 11]| {
        let mut d = vec![0u8; 2 << 20];
        d[0x36..0x3e].copy_from_slice(b"FAT12   ");
        d[0x2b..0x36].copy_from_slice(label);
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    };
    std::fs::write(root.join("dev/sda"), vfat(b"ir-vfd-dev ")).unwrap();
    std::fs::write(root.join("dev/sdb"), vfat(b"config-2   ")).unwrap();
    for disk in ["sda", "sdb"] {
        std::fs::create_dir_all(root.join("sys/block").join(disk)).unwrap();
        std::fs::write(root.join("sys/block").join(disk).join("size"), "4096").unwrap();
    }
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_devices_metadata", node(json!({})));
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let r = &v["command_result"]["clean_result"];
    assert_eq!(
        r["/dev/sda"]["skipped"],
        "virtual media device (label ir-vfd-dev)"
    );
    assert_eq!(r["/dev/sdb"]["method"], "metadata");
    assert_eq!(
        &std::fs::read(root.join("dev/sda")).unwrap()[0x2b..0x35],
        b"ir-vfd-dev"
    );
    assert!(std::fs::read(root.join("dev/sdb")).unwrap()[..512]
        .iter()
        .all(|b| *b == 0));
}

#[test]
fn pstore_and_express() {
    let dir = test_dir("erase-pstore");
    let root = empty_root(&dir);
    std::fs::write(
        root.join("proc/mounts"),
        "sysfs /sys sysfs rw 0 0\npstore /sys/fs/pstore pstore rw,nosuid 0 0\n",
    )
    .unwrap();
    let ps = root.join("sys/fs/pstore");
    std::fs::create_dir_all(ps.join("sub")).unwrap();
    std::fs::write(ps.join("dmesg-efi-1"), "tenant kernel log").unwrap();
    std::fs::write(ps.join("sub/x"), "x").unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev/sda"), vec![0x11u8; 4 << 20]).unwrap();
    std::fs::create_dir_all(root.join("sys/block/sda")).unwrap();
    std::fs::write(root.join("sys/block/sda/size"), "8192").unwrap();
    let agent = Agent::start(
        &dir,
        Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    let v = clean_step(&agent, "erase_pstore", node(json!({})));
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(
        v["command_result"]["clean_result"],
        json!({"pstore": "/sys/fs/pstore", "deleted": 2})
    );
    assert_eq!(std::fs::read_dir(&ps).unwrap().count(), 0);
    // not NVMe: express is the metadata wipe
    let v = clean_step(&agent, "erase_devices_express", node(json!({})));
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(
        v["command_result"]["clean_result"]["/dev/sda"]["method"],
        "metadata"
    );
    let back = std::fs::read(root.join("dev/sda")).unwrap();
    assert!(back[..1 << 20].iter().all(|b| *b == 0) && back[3 << 19] == 0x11);
}
