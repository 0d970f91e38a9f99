//! The on-disk side of deploying (src/image/{gpt,mbr,disk,configdrive,
//! partition,fat}.rs) checked against the standard tools as oracles:
//! sgdisk (gdisk), sfdisk (fdisk), blkid, fsck.fat and mtools
//! (dosfstools/mtools), genisoimage. The agent never runs them; only these
//! tests do. A test whose oracle is missing fails naming its package
//! (scripts/test-all installs them; tests/common/tools.rs). Disks are
//! sparse files in a per-test directory; the loop-device tests need root
//! (`need_root`).

mod common;

use common::blockdev::{Loop, Mounted};
use common::tools::{must, must_input, need, need_root};
use ironic_agent::config::{Config, OwnedEnv as Agent};
use ironic_agent::disk::{self, Found, Geometry};
use ironic_agent::fs::fat;
use ironic_agent::image::{configdrive, finish, partition};
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sparse(path: &Path, size: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    f
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// Opened as the streaming writer opens a disk: O_DIRECT, where the
/// filesystem allows it. The table code must cope (it turns O_DIRECT off
/// for its own I/O and back on after).
fn open_direct(path: &Path) -> File {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap_or_else(|_| open_rw(path))
}

/// Whether O_DIRECT is set, read from /proc/self/fdinfo (octal flags).
fn is_direct(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| i64::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    flags & i64::from(libc::O_DIRECT) != 0
}

/// An agent whose root is `dir` (no threads of its own beyond the worker).
fn agent(dir: &Path) -> Agent {
    agent_with(Config {
        root: dir.to_path_buf(),
        ..Config::default()
    })
}

fn agent_with(config: Config) -> Agent {
    Agent::new(config)
}

/// What the hardware managers' steps see of an agent with root `a`.
fn inject_files(
    a: &Agent,
    call: &ironic_agent::hardware::StepCall,
) -> ironic_agent::error::Result<Value> {
    let managers = ironic_agent::hardware::Managers::evaluate(&a.env());
    let written = ironic_agent::image::Written::default();
    let host = ironic_agent::hardware::Host {
        env: a.env(),
        managers: &managers,
        written: &written,
    };
    ironic_agent::hardware::generic::inject::inject_files(&host, call)
}

/// What prepare_image does for a whole-disk image: load (fetch, decode,
/// measure) the drive before the image, write it after.
fn write_cd(a: &Agent, dev: &str, f: &mut File, v: &Value) -> ironic_agent::error::Result<()> {
    let d = configdrive::Drive::load(&a.env(), v, configdrive::Limit::Ipa)?;
    configdrive::write_configdrive(&a.env(), Path::new(dev), f, &d)
}

fn geom(f: &File) -> Geometry {
    Geometry {
        sector: 512,
        size: f.metadata().unwrap().len(),
    }
}

/// `sgdisk -v` must find nothing to complain about.
fn sgdisk_clean(path: &Path) {
    let out = must(&["sgdisk", "-v", path.to_str().unwrap()]);
    assert!(out.contains("No problems found"), "sgdisk -v:\n{out}");
}

#[test]
fn backup_gpt_moved_like_sgdisk_e() {
    need(&["sgdisk"]);
    let dir = common::test_dir("gpt-move");
    let img = dir.join("img");
    sparse(&img, 64 << 20);
    let p = img.to_str().unwrap();
    must(&[
        "sgdisk",
        "-n",
        "1:2048:+16M",
        "-t",
        "1:ef00",
        "-n",
        "2:0:0",
        p,
    ]);
    let image = std::fs::read(&img).unwrap();
    // our relocation on one 256 MiB copy, sgdisk -e on another
    let ours = dir.join("ours");
    let theirs = dir.join("theirs");
    for t in [&ours, &theirs] {
        let f = sparse(t, 256 << 20);
        std::os::unix::fs::FileExt::write_all_at(&f, &image, 0).unwrap();
    }
    let a = agent(&dir);
    // the streaming writer hands over an O_DIRECT file: small unaligned
    // table I/O must still work (where the filesystem allows O_DIRECT)
    let mut f = open_direct(&ours);
    let direct = is_direct(&f);
    finish::after_whole_disk_write(&a.root, Path::new("/dev/sdx"), &mut f).unwrap();
    assert_eq!(is_direct(&f), direct, "O_DIRECT restored for the writer");
    drop(f);
    must(&["sgdisk", "-e", theirs.to_str().unwrap()]);
    sgdisk_clean(&ours);
    // same primary header fields, same backup header fields and entries
    let o = std::fs::read(&ours).unwrap();
    let t = std::fs::read(&theirs).unwrap();
    let hdr = |b: &[u8], lba: usize| b[lba * 512..lba * 512 + 92].to_vec();
    let last = (256 << 20) / 512 - 1;
    assert_eq!(
        hdr(&o, 1),
        hdr(&t, 1),
        "primary header differs from sgdisk -e"
    );
    assert_eq!(hdr(&o, last), hdr(&t, last), "backup header differs");
    assert_eq!(
        o[(last - 32) * 512..last * 512],
        t[(last - 32) * 512..last * 512]
    );
    // the protective MBR covers the whole disk again, as sgdisk writes it
    // (LBA fields only: sgdisk writes real CHS values, we write the
    // "use LBA" markers)
    assert_eq!(o[446 + 4], t[446 + 4]);
    assert_eq!(o[446 + 8..462], t[446 + 8..462]);
    let listing = must(&["sgdisk", "-p", ours.to_str().unwrap()]);
    assert!(listing.contains("EF00"), "{listing}");
}

#[test]
fn no_partitions_is_ipas_error() {
    need(&["sgdisk"]);
    let dir = common::test_dir("no-parts");
    let a = agent(&dir);
    let img = dir.join("disk");
    let mut f = sparse(&img, 8 << 20);
    let e = finish::after_whole_disk_write(&a.root, Path::new("/dev/sdx"), &mut f).unwrap_err();
    assert_eq!(e.type_name(), "DeploymentError");
    assert!(e.details.contains("Unable to find a valid partition table"));
    must(&["sgdisk", "-o", img.to_str().unwrap()]);
    let mut f = open_rw(&img);
    let e = finish::after_whole_disk_write(&a.root, Path::new("/dev/sdx"), &mut f).unwrap_err();
    assert_eq!(
        e.details,
        "No partitions found on the device /dev/sdx after writing the image."
    );
}

#[test]
fn mbr_tables_read_like_sfdisk() {
    need(&["sfdisk"]);
    let dir = common::test_dir("mbr-read");
    let img = dir.join("disk");
    sparse(&img, 64 << 20);
    let script = "label: dos\nlabel-id: 0x1a2b3c4d\n,8M,83,*\n,8M,82\n,,5\n,4M,83\n,4M,83\n";
    must_input(&["sfdisk", img.to_str().unwrap()], script.as_bytes());
    let f = File::open(&img).unwrap();
    let t = match disk::read_table(&f, geom(&f)) {
        Found::Table(t) => t,
        other => panic!("{other:?}"),
    };
    let json: Value =
        serde_json::from_str(&must(&["sfdisk", "--json", img.to_str().unwrap()])).unwrap();
    let theirs = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(t.partitions.len(), theirs.len());
    for (ours, th) in t.partitions.iter().zip(theirs) {
        assert_eq!(ours.start_lba, th["start"].as_u64().unwrap());
        assert_eq!(ours.sectors, th["size"].as_u64().unwrap());
        let ty = u8::from_str_radix(th["type"].as_str().unwrap(), 16).unwrap();
        assert_eq!(ours.mbr_type, Some(ty));
        assert_eq!(ours.bootable, th["bootable"].as_bool().unwrap_or(false));
    }
    let uuids = finish::whole_disk_uuids(&f).unwrap();
    assert_eq!(uuids["root uuid"], "0x1a2b3c4d");
}

fn iso(dir: &Path, label: &str) -> Vec<u8> {
    need(&["genisoimage"]);
    let src = dir.join("cd");
    std::fs::create_dir_all(src.join("openstack/latest")).unwrap();
    std::fs::write(
        src.join("openstack/latest/meta_data.json"),
        r#"{"uuid": "x"}"#,
    )
    .unwrap();
    let out = dir.join("cd.iso");
    must(&[
        "genisoimage",
        "-quiet",
        "-J",
        "-r",
        "-V",
        label,
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    std::fs::read(out).unwrap()
}

fn gz_b64(data: &[u8]) -> String {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    ironic_agent::util::base64_encode(&e.finish().unwrap())
}

#[test]
fn configdrive_new_gpt_partition() {
    need(&["sgdisk", "blkid"]);
    let dir = common::test_dir("cd-gpt");
    let iso = iso(&dir, "config-2");
    let img = dir.join("disk");
    sparse(&img, 64 << 20);
    must(&["sgdisk", "-n", "1:2048:+16M", img.to_str().unwrap()]);
    // the image was smaller than the 256 MiB disk
    let image = std::fs::read(&img).unwrap();
    let disk_path = dir.join("sda");
    let f = sparse(&disk_path, 256 << 20);
    std::os::unix::fs::FileExt::write_all_at(&f, &image, 0).unwrap();
    drop(f);
    let a = agent(&dir);
    let mut f = open_direct(&disk_path);
    finish::after_whole_disk_write(&a.root, Path::new("/dev/sda"), &mut f).unwrap();
    write_cd(&a, "/dev/sda", &mut f, &json!(gz_b64(&iso))).unwrap();
    drop(f);
    sgdisk_clean(&disk_path);
    let info = must(&["sgdisk", "-i", "2", disk_path.to_str().unwrap()]);
    assert!(
        info.contains("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        "{info}"
    );
    let last = (256u64 << 20) / 512 - 34;
    assert!(info.contains(&format!("Last sector: {last} ")), "{info}");
    // sgdisk -n 0:-64MB:0 on the same disk gives 391168..524254 (checked
    // by hand): 64 MiB back from the end, aligned down to 1 MiB.
    let first = (last + 1 - (64 << 11)) / 2048 * 2048;
    assert_eq!(first, 391168);
    assert!(info.contains(&format!("First sector: {first} ")), "{info}");
    let data = std::fs::read(&disk_path).unwrap();
    let off = (first * 512) as usize;
    assert_eq!(&data[off..off + iso.len()], &iso[..]);
    // blkid sees the label on the partition's bytes
    let part = dir.join("part");
    std::fs::write(&part, &data[off..off + (64 << 20)]).unwrap();
    let label = must(&[
        "blkid",
        "-p",
        "-o",
        "value",
        "-s",
        "LABEL",
        part.to_str().unwrap(),
    ]);
    assert_eq!(label.trim(), "config-2");
    // a second run reuses the partition instead of adding one
    let mut f = open_rw(&disk_path);
    write_cd(&a, "/dev/sda", &mut f, &json!(gz_b64(&iso))).unwrap();
    drop(f);
    let listing = must(&["sgdisk", "-p", disk_path.to_str().unwrap()]);
    assert!(!listing.contains("\n   3 "), "{listing}");
}

/// A disk of 256 MiB with a GPT "image" and the offset its configdrive
/// partition gets (as configdrive_new_gpt_partition checks).
fn gpt_disk(dir: &Path) -> (PathBuf, usize) {
    let disk_path = dir.join("sda");
    drop(sparse(&disk_path, 256 << 20));
    must(&["sgdisk", "-n", "1:2048:+16M", disk_path.to_str().unwrap()]);
    (disk_path, 391168 * 512)
}

/// A configdrive URL: the body is base64 of the gzipped ISO, or the ISO
/// itself; each pass downloads it again (streamed, never held whole), and
/// the download's failures keep IPA's messages.
#[test]
fn configdrive_from_a_url() {
    need(&["sgdisk"]);
    let dir = common::test_dir("cd-url");
    let iso = iso(&dir, "config-2");
    let srv = common::servers::ImageServer::start();
    let a = agent(&dir);
    for (path, body) in [
        ("/cd.b64", gz_b64(&iso).into_bytes()),
        ("/cd.iso", iso.clone()),
    ] {
        let url = srv.put(path, body);
        let (disk_path, off) = gpt_disk(&dir);
        let mut f = open_rw(&disk_path);
        write_cd(&a, "/dev/sda", &mut f, &json!(url)).unwrap();
        drop(f);
        let data = std::fs::read(&disk_path).unwrap();
        assert_eq!(&data[off..off + iso.len()], &iso[..], "{path}");
        // measured once, written once
        assert_eq!(srv.log(path).len(), 2, "{path}");
    }
    let (disk_path, _) = gpt_disk(&dir);
    let mut f = open_rw(&disk_path);
    let mut cd = |url: &str| {
        write_cd(&a, "/dev/sda", &mut f, &json!(url))
            .unwrap_err()
            .into_details()
    };
    let url = srv.put("/gone", b"nothing here".to_vec());
    srv.fault("/gone", common::servers::Fault::Status(404));
    let e = cd(&url);
    assert!(
        e.starts_with(&format!(
            "Can't download the configdrive content for node local from '{url}'. Got status \
             code 404"
        )),
        "{e}"
    );
    let url = srv.put("/cut", gz_b64(&iso).into_bytes());
    srv.fault("/cut", common::servers::Fault::DropAfter(1000));
    let e = cd(&url);
    assert!(
        e.starts_with(&format!(
            "Can't download the configdrive content for node local from '{url}'. Reason: "
        )),
        "{e}"
    );
    // base64, but not of gzip
    let e = cd(&srv.put("/notgz", b"Zm9vYmFy".to_vec()));
    assert!(
        e.starts_with("Encountered error while decompressing and writing config drive"),
        "{e}"
    );
    // not base64: the drive itself, over IPA's 64 MiB
    let e = cd(&srv.put("/big", vec![0u8; (64 << 20) + 1]));
    assert_eq!(
        e,
        "Config drive size exceeds maximum limit of 64MiB. Size of the given config drive is \
         65 MiB for node local."
    );
    // changed between the check and the write
    let url = srv.put("/moving", gz_b64(&iso).into_bytes());
    let v = json!(url);
    let d = configdrive::Drive::load(&a.env(), &v, configdrive::Limit::Ipa).unwrap();
    let mut bigger = iso.clone();
    bigger.extend_from_slice(&[0u8; 4096]);
    srv.put("/moving", gz_b64(&bigger).into_bytes());
    let e = configdrive::write_configdrive(&a.env(), Path::new("/dev/sda"), &mut f, &d)
        .unwrap_err()
        .into_details();
    assert!(
        e.starts_with("Config drive for node local changed since it was checked"),
        "{e}"
    );
}

#[test]
fn configdrive_new_mbr_partition_and_limits() {
    need(&["sfdisk"]);
    let dir = common::test_dir("cd-mbr");
    let iso = iso(&dir, "config-2");
    let img = dir.join("sdb");
    sparse(&img, 128 << 20);
    must_input(
        &["sfdisk", img.to_str().unwrap()],
        b"label: dos\n,16M,83,*\n",
    );
    let a = agent(&dir);
    let mut f = open_rw(&img);
    write_cd(&a, "/dev/sdb", &mut f, &json!(gz_b64(&iso))).unwrap();
    drop(f);
    let json: Value =
        serde_json::from_str(&must(&["sfdisk", "--json", img.to_str().unwrap()])).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1]["start"], (128 - 64) * 2048);
    assert_eq!(parts[1]["size"], 64 * 2048);
    assert_eq!(parts[1]["type"], "c");
    // not base64 → IPA's message
    let mut f = open_rw(&img);
    let e = write_cd(&a, "/dev/sdb", &mut f, &json!("%%%")).unwrap_err();
    assert!(e.details.contains("is not base64 encoded"), "{}", e.details);
    // too large (65 MiB of zeroes compress to ~64 KiB)
    let e = write_cd(&a, "/dev/sdb", &mut f, &json!(gz_b64(&vec![0u8; 65 << 20]))).unwrap_err();
    assert!(
        e.details
            .starts_with("Config drive size exceeds maximum limit of 64MiB"),
        "{}",
        e.details
    );
}

#[test]
fn configdrive_refused_with_four_primaries() {
    need(&["sfdisk"]);
    let dir = common::test_dir("cd-four");
    let img = dir.join("sdc");
    sparse(&img, 128 << 20);
    must_input(
        &["sfdisk", img.to_str().unwrap()],
        b"label: dos\n,8M\n,8M\n,8M\n,8M\n",
    );
    let a = agent(&dir);
    let mut f = open_rw(&img);
    let e = write_cd(&a, "/dev/sdc", &mut f, &json!(gz_b64(b"x"))).unwrap_err();
    assert_eq!(
        e.details,
        "Config drive cannot be created for node local. Disk (/dev/sdc) uses MBR partitioning \
         and already has 4 primary partitions."
    );
}

#[test]
fn filesystem_uuids_match_blkid() {
    need(&["blkid", "mkfs.ext4", "mkfs.vfat", "mkswap", "mkfs.xfs"]);
    let dir = common::test_dir("fs-uuid");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("mkfs.ext4", vec!["-q", "-F", "-L", "root"]),
        ("mkfs.vfat", vec!["-n", "EFI"]),
        ("mkswap", vec!["-L", "swap1"]),
        ("mkfs.xfs", vec!["-q", "-f", "-L", "x"]),
    ];
    for (tool, args) in cases {
        let p = dir.join(tool);
        sparse(&p, 300 << 20);
        let mut a: Vec<&str> = vec![tool];
        a.extend_from_slice(&args);
        a.push(p.to_str().unwrap());
        must(&a);
        let f = File::open(&p).unwrap();
        let info = ironic_agent::fs::blkid::probe_fs(&f, 0, 300 << 20)
            .unwrap_or_else(|| panic!("{tool}: no fs"));
        let uuid = must(&[
            "blkid",
            "-p",
            "-o",
            "value",
            "-s",
            "UUID",
            p.to_str().unwrap(),
        ]);
        let ty = must(&[
            "blkid",
            "-p",
            "-o",
            "value",
            "-s",
            "TYPE",
            p.to_str().unwrap(),
        ]);
        assert_eq!(info.uuid.as_deref(), Some(uuid.trim()), "{tool}");
        assert_eq!(info.fstype, ty.trim(), "{tool}");
    }
}

#[test]
fn fat32_formatter_passes_fsck_and_mtools() {
    need(&["fsck.fat", "mmd", "mcopy", "blkid"]);
    let dir = common::test_dir("fat32");
    for sector in [512u64, 4096] {
        let p = dir.join(format!("esp{sector}"));
        let mut f = sparse(&p, 550 << 20);
        let vol = fat::Volume {
            offset: 0,
            len: 550 << 20,
            sector,
            label: "efi-part",
            volume_id: 0xabcd1234,
            hidden: 2048,
        };
        fat::format_fat32(&mut f, &vol).unwrap();
        drop(f);
        let ps = p.to_str().unwrap();
        must(&["fsck.fat", "-n", ps]);
        let info = must(&["blkid", "-p", "-o", "export", ps]);
        assert!(info.contains("TYPE=vfat"), "{info}");
        assert!(info.contains("UUID=ABCD-1234"), "{info}");
        assert!(info.contains("LABEL=efi-part"), "{info}");
        if sector == 512 {
            // mtools can write into it, and we read back what it wrote
            let src = dir.join("shim.csv");
            std::fs::write(&src, b"x").unwrap();
            must(&["mmd", "-i", ps, "::EFI", "::EFI/ubuntu"]);
            must(&[
                "mcopy",
                "-i",
                ps,
                src.to_str().unwrap(),
                "::EFI/ubuntu/BOOTX64.CSV",
            ]);
            must(&["fsck.fat", "-n", ps]);
            let f = File::open(&p).unwrap();
            let fs = fat::Fat::open(&f, 0, 550 << 20).unwrap();
            let names: Vec<String> = fs.walk().unwrap().into_iter().map(|(n, _)| n).collect();
            assert!(
                names.contains(&"EFI/ubuntu/BOOTX64.CSV".to_string()),
                "{names:?}"
            );
        }
    }
}

fn node(boot_mode: &str, label: Option<&str>) -> Value {
    let mut caps = format!("boot_mode:{boot_mode}");
    if let Some(l) = label {
        caps.push_str(&format!(",disk_label:{l}"));
    }
    json!({"uuid": "n1", "properties": {"capabilities": caps}, "instance_info": {}})
}

fn info(root_mb: u64, swap_mb: u64, eph_mb: u64, cd: Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("root_mb".into(), json!(root_mb));
    m.insert("swap_mb".into(), json!(swap_mb));
    m.insert("ephemeral_mb".into(), json!(eph_mb));
    m.insert("ephemeral_format".into(), json!("ext4"));
    m.insert("preserve_ephemeral".into(), json!(false));
    if let Some(c) = cd {
        m.insert("configdrive".into(), json!(c));
    }
    m
}

#[test]
fn partition_image_uefi_gpt_layout() {
    need(&["sgdisk", "blkid", "genisoimage", "mkfs.ext4", "fsck.fat"]);
    let dir = common::test_dir("part-uefi");
    let a = agent(&dir);
    let disk_path = dir.join("vda");
    drop(sparse(&disk_path, 1 << 30));
    let mut f = open_direct(&disk_path);
    let n = node("uefi", None);
    let iso_bytes = iso(&dir, "config-2");
    let ii = info(200, 64, 0, Some(gz_b64(&iso_bytes)));
    let layout = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/vda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    assert_eq!(layout.label, "gpt");
    let c = layout.configdrive.as_ref().unwrap();
    // IPA's configdrive_mb: the drive's size rounded up to whole MiB
    assert_eq!(c.len, (iso_bytes.len() as u64).div_ceil(1 << 20) << 20);
    assert_eq!(layout.efi.as_ref().unwrap().path, "/dev/vda1");
    assert_eq!(layout.swap.as_ref().unwrap().path, "/dev/vda2");
    // ESP, swap, configdrive, root
    assert_eq!(layout.root.path, "/dev/vda4");
    // "the image": an ext4 filesystem made elsewhere, copied into root
    let fs = dir.join("rootfs");
    sparse(&fs, 200 << 20);
    must(&["mkfs.ext4", "-q", "-F", fs.to_str().unwrap()]);
    let bytes = std::fs::read(&fs).unwrap();
    // (through a buffered handle: `f` is O_DIRECT again, as the
    // streaming writer expects, and this Vec is not aligned)
    std::os::unix::fs::FileExt::write_all_at(&open_rw(&disk_path), &bytes, layout.root.offset)
        .unwrap();
    let uuids = partition::finish(&a.env(), Path::new("/dev/vda"), &mut f, &layout).unwrap();
    drop(f);
    let dp = disk_path.to_str().unwrap();
    sgdisk_clean(&disk_path);
    let esp = must(&["sgdisk", "-i", "1", dp]);
    assert!(
        esp.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{esp}"
    );
    assert!(esp.contains("First sector: 2048 "), "{esp}");
    assert!(esp.contains("Last sector: 1128447 "), "{esp}");
    assert!(esp.contains("Partition name: 'primary'"), "{esp}");
    let swap = must(&["sgdisk", "-i", "2", dp]);
    assert!(
        swap.contains("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
        "{swap}"
    );
    // ESP and swap as blkid sees them
    let data = std::fs::read(&disk_path).unwrap();
    let esp_r = layout.efi.as_ref().unwrap();
    let espf = dir.join("esp.img");
    std::fs::write(
        &espf,
        &data[esp_r.offset as usize..(esp_r.offset + esp_r.len) as usize],
    )
    .unwrap();
    let e = must(&["blkid", "-p", "-o", "export", espf.to_str().unwrap()]);
    assert!(
        e.contains("TYPE=vfat") && e.contains("LABEL=efi-part"),
        "{e}"
    );
    must(&["fsck.fat", "-n", espf.to_str().unwrap()]);
    let espuuid = uuids["efi system partition uuid"].as_str().unwrap();
    assert!(e.contains(&format!("UUID={espuuid}")), "{e} vs {espuuid}");
    let sw = layout.swap.as_ref().unwrap();
    let swf = dir.join("swap.img");
    std::fs::write(
        &swf,
        &data[sw.offset as usize..(sw.offset + sw.len) as usize],
    )
    .unwrap();
    let s = must(&["blkid", "-p", "-o", "export", swf.to_str().unwrap()]);
    assert!(s.contains("TYPE=swap") && s.contains("LABEL=swap1"), "{s}");
    assert_eq!(uuids["partitions"]["root"], "/dev/vda4");
    assert_eq!(uuids["partitions"]["efi system partition"], "/dev/vda1");
    let rf = dir.join("rootfs");
    let u = must(&[
        "blkid",
        "-p",
        "-o",
        "value",
        "-s",
        "UUID",
        rf.to_str().unwrap(),
    ]);
    assert_eq!(uuids["root uuid"], u.trim());
    let c = layout.configdrive.as_ref().unwrap();
    assert_eq!(
        &data[c.offset as usize + 32769..c.offset as usize + 32774],
        b"CD001"
    );
}

/// `--efi-system-partition-size` / `--bios-boot-partition-size` (IPA's
/// `[disk_utils]` options): the partitions take the configured sizes, and
/// an ESP too small for FAT32 is FAT16, as mkfs.vfat would make it.
#[test]
fn configured_esp_and_bios_boot_sizes() {
    need(&["sgdisk", "blkid", "fsck.fat"]);
    let dir = common::test_dir("part-sizes");
    let a = agent_with(Config {
        root: dir.clone(),
        efi_system_partition_size: 32,
        bios_boot_partition_size: 2,
        ..Config::default()
    });
    let disk_path = dir.join("vda");
    drop(sparse(&disk_path, 256 << 20));
    for (mode, first_mib) in [("uefi", 32u64), ("bios", 2)] {
        let mut f = open_direct(&disk_path);
        let ii = info(64, 0, 0, None);
        let n = node(mode, Some("gpt"));
        let layout = partition::prepare_layout(
            &a.env(),
            Path::new("/dev/vda"),
            &mut f,
            &common::partition_image_info(&ii),
            ii.get("configdrive"),
            Some(&n),
        )
        .unwrap();
        partition::finish(&a.env(), Path::new("/dev/vda"), &mut f, &layout).unwrap();
        drop(f);
        sgdisk_clean(&disk_path);
        let p1 = must(&["sgdisk", "-i", "1", disk_path.to_str().unwrap()]);
        let last = 2048 + first_mib * 2048 - 1;
        assert!(
            p1.contains(&format!("Last sector: {last} ")),
            "{mode}: {p1}"
        );
        if mode == "uefi" {
            let esp = layout.efi.as_ref().unwrap();
            assert_eq!(esp.len, 32 << 20);
            let data = std::fs::read(&disk_path).unwrap();
            let espf = dir.join("esp.img");
            let bytes = &data[esp.offset as usize..(esp.offset + esp.len) as usize];
            std::fs::write(&espf, bytes).unwrap();
            let e = must(&["blkid", "-p", "-o", "export", espf.to_str().unwrap()]);
            assert!(
                e.contains("TYPE=vfat")
                    && e.contains("LABEL=efi-part")
                    && e.contains("VERSION=FAT16"),
                "{e}"
            );
            must(&["fsck.fat", "-n", espf.to_str().unwrap()]);
        } else {
            assert!(p1.contains("21686148-6449-6E6F-744E-656564454649"), "{p1}");
        }
    }
}

#[test]
fn partition_image_bios_msdos_layout() {
    need(&["sfdisk", "sgdisk"]);
    let dir = common::test_dir("part-bios");
    let a = agent(&dir);
    let disk_path = dir.join("sda");
    let mut f = sparse(&disk_path, 1 << 30);
    let n = node("bios", None);
    let ii = info(300, 32, 100, None);
    let layout = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    assert_eq!(layout.label, "msdos");
    assert!(layout.efi.is_none() && layout.bios_boot.is_none());
    let json: Value =
        serde_json::from_str(&must(&["sfdisk", "--json", disk_path.to_str().unwrap()])).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    // ephemeral, swap, root (boot flag), from 1 MiB, in MiB steps
    let want = [
        (2048, 100 * 2048, "83", false),
        (101 * 2048, 32 * 2048, "82", false),
        (133 * 2048, 300 * 2048, "83", true),
    ];
    assert_eq!(parts.len(), 3);
    for (p, (start, size, ty, boot)) in parts.iter().zip(want) {
        assert_eq!(p["start"], start);
        assert_eq!(p["size"], size);
        assert_eq!(p["type"], ty);
        assert_eq!(p["bootable"].as_bool().unwrap_or(false), boot);
    }
    // no filesystem in root yet: its "root uuid" is the PARTUUID, which on
    // msdos is the disk id and the partition number (IPA's block_uuid,
    // blkid's PARTUUID)
    let id = json["partitiontable"]["id"].as_str().unwrap();
    let u = partition::uuids(&f, &layout).unwrap();
    assert_eq!(
        u["root uuid"],
        format!("{}-03", id.trim_start_matches("0x"))
    );
    // ephemeral needs a block device for mkfs: a sparse file is refused clearly
    let e = partition::finish(&a.env(), Path::new("/dev/sda"), &mut f, &layout).unwrap_err();
    assert!(e.details.contains("ephemeral"), "{}", e.details);
    // BIOS + gpt capability: a 1 MiB BIOS boot partition first
    let ii = info(300, 0, 0, None);
    let n = node("bios", Some("gpt"));
    let layout = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    assert_eq!(layout.label, "gpt");
    let bb = layout.bios_boot.as_ref().unwrap();
    assert_eq!((bb.offset, bb.len), (1 << 20, 1 << 20));
    drop(f);
    let i = must(&["sgdisk", "-i", "1", disk_path.to_str().unwrap()]);
    assert!(i.contains("21686148-6449-6E6F-744E-656564454649"), "{i}");
}

/// The files of a drive as Nova and Ironic build it
/// (nova/virt/configdrive.py), and the ISO genisoimage makes of them.
#[allow(clippy::type_complexity)]
fn nova_drive(dir: &Path) -> (Vec<(&'static str, Vec<u8>)>, Vec<u8>) {
    need(&["genisoimage"]);
    let src = dir.join("cd");
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "openstack/latest/meta_data.json",
            br#"{"uuid": "x"}"#.to_vec(),
        ),
        ("openstack/latest/network_data.json", b"{}".to_vec()),
        (
            "openstack/latest/user_data",
            (0..50_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        (
            "openstack/2018-08-27/vendor_data2.json",
            b"{\"a\": 1}".to_vec(),
        ),
        ("ec2/2009-04-04/meta-data.json", b"{\"b\": 2}".to_vec()),
    ];
    for (p, b) in &files {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
    let iso_path = dir.join("cd.iso");
    must(&[
        "genisoimage",
        "-o",
        iso_path.to_str().unwrap(),
        "-ldots",
        "-allow-lowercase",
        "-allow-multidot",
        "-l",
        "-publisher",
        "test",
        "-quiet",
        "-J",
        "-r",
        "-V",
        "config-2",
        src.to_str().unwrap(),
    ]);
    let iso = std::fs::read(&iso_path).unwrap();
    // the ISO reader sees what genisoimage put in
    let mut listed =
        ironic_agent::fs::iso9660::list(&File::open(&iso_path).unwrap(), 0, iso.len() as u64)
            .unwrap()
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| e.path)
            .collect::<Vec<_>>();
    listed.sort();
    let mut want: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    (files, iso)
}

/// `part` (a configdrive partition's bytes, saved as `img`) is a FAT of
/// `kind` labelled CONFIG-2 with `sector`-byte sectors holding every file:
/// checked with this crate's FAT reader, blkid, fsck.fat and mtools (the
/// host kernel here has no vfat to mount it with; VM phase k mounts one).
fn check_config2(img: &Path, part: &[u8], sector: u64, kind: fat::Kind, files: &[(&str, Vec<u8>)]) {
    need(&["blkid", "fsck.fat", "mcopy"]);
    std::fs::write(img, part).unwrap();
    let pf = File::open(img).unwrap();
    let fs = fat::Fat::open(&pf, 0, part.len() as u64).unwrap();
    assert_eq!(fs.kind, kind);
    assert_eq!(fs.sector_size(), sector);
    assert_eq!(fs.volume_label().as_deref(), Some("CONFIG-2"));
    let all = fs.walk().unwrap();
    for (p, b) in files {
        let (_, e) = all
            .iter()
            .find(|(q, _)| q == p)
            .unwrap_or_else(|| panic!("{p}: {all:?}"));
        assert!(fs.read_file(e, 64 << 20).unwrap() == *b, "{p}");
    }
    let b = must(&["blkid", "-p", "-o", "export", img.to_str().unwrap()]);
    assert!(
        b.contains("TYPE=vfat") && b.contains("LABEL=CONFIG-2"),
        "{b}"
    );
    must(&["fsck.fat", "-n", img.to_str().unwrap()]);
    for (p, want) in files {
        let got = Command::new("mcopy")
            .args(["-n", "-i", img.to_str().unwrap(), &format!("::{p}"), "-"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(got.stdout == *want, "{p}");
    }
}

/// A whole-disk image's configdrive on a 4 KiB-sector disk: isofs cannot
/// read 4 KiB blocks, so the ISO is rebuilt as FAT16 labelled CONFIG-2 with
/// the same files (IPA's `_try_build_fat32_config_drive`).
#[test]
fn configdrive_on_4k_sectors_is_rebuilt_as_vfat() {
    if !need_root() {
        return;
    }
    need(&["losetup", "sgdisk", "blkid"]);
    let dir = common::test_dir("cd-4k");
    let (files, iso) = nova_drive(&dir);
    let backing = dir.join("backing");
    sparse(&backing, 256 << 20);
    let guard = Loop::attach(&backing, &["--sector-size", "4096"]);
    let dev = PathBuf::from(&guard.dev);
    let d = dev.to_str().unwrap().to_string();
    // "the image": a GPT with one partition, in 4 KiB LBAs
    must(&["sgdisk", "-n", "1:0:+16M", &d]);
    let a = agent(Path::new("/"));
    let mut f = open_rw(&dev);
    write_cd(&a, &d, &mut f, &json!(gz_b64(&iso))).unwrap();
    drop(f);
    let i = must(&["sgdisk", "-i", "2", &d]);
    let sector = |key: &str| -> u64 {
        let l = i.lines().find(|l| l.starts_with(key)).unwrap();
        l[key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, last) = (sector("First sector:"), sector("Last sector:"));
    let data = std::fs::read(&dev).unwrap();
    let part = &data[(first * 4096) as usize..((last + 1) * 4096) as usize];
    check_config2(&dir.join("part.img"), part, 4096, fat::Kind::Fat16, &files);
}

/// A partition image's configdrive on a 4 KiB-sector disk: IPA copies the
/// ISO as it is (`work_on_disk`), which the instance cannot mount there;
/// the agent sizes the partition for a FAT and rebuilds it (FAT12 at this
/// size, as mkfs.vfat picks under 16 MiB with 4 KiB sectors).
#[test]
fn partition_image_configdrive_on_4k_sectors_is_vfat() {
    if !need_root() {
        return;
    }
    need(&["losetup", "blkid"]);
    let dir = common::test_dir("pcd-4k");
    let (files, iso) = nova_drive(&dir);
    let backing = dir.join("backing");
    sparse(&backing, 256 << 20);
    let guard = Loop::attach(&backing, &["--sector-size", "4096"]);
    let dev = PathBuf::from(&guard.dev);
    let a = agent(Path::new("/"));
    let mut f = open_rw(&dev);
    let ii = info(64, 0, 0, Some(gz_b64(&iso)));
    let layout = partition::prepare_layout(
        &a.env(),
        &dev,
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&node("bios", Some("gpt"))),
    )
    .unwrap();
    drop(f);
    let cd = layout.configdrive.unwrap();
    assert!(
        cd.len >= iso.len() as u64 && cd.len % (1 << 20) == 0,
        "{cd:?}"
    );
    let data = std::fs::read(&dev).unwrap();
    let part = &data[cd.offset as usize..(cd.offset + cd.len) as usize];
    check_config2(&dir.join("part.img"), part, 4096, fat::Kind::Fat12, &files);
}

/// `--config-drive-rebuild` (IPA's `config_drive_rebuild`): the drive of a
/// whole-disk image is FAT on a 512-byte-sector disk too.
#[test]
fn config_drive_rebuild_makes_vfat_on_512_byte_sectors() {
    need(&["sgdisk", "blkid"]);
    let dir = common::test_dir("cd-rebuild");
    let (files, iso) = nova_drive(&dir);
    let disk_path = dir.join("sda");
    drop(sparse(&disk_path, 256 << 20));
    must(&["sgdisk", "-n", "1:2048:+16M", disk_path.to_str().unwrap()]);
    let a = agent_with(Config {
        root: dir.clone(),
        config_drive_rebuild: true,
        ..Config::default()
    });
    let mut f = open_rw(&disk_path);
    write_cd(&a, "/dev/sda", &mut f, &json!(gz_b64(&iso))).unwrap();
    drop(f);
    let f = File::open(&disk_path).unwrap();
    let Found::Table(t) = disk::read_table(&f, geom(&f)) else {
        panic!("no table")
    };
    let cd = t.partitions.iter().find(|q| q.number == 2).unwrap();
    let data = std::fs::read(&disk_path).unwrap();
    let part = &data[cd.offset as usize..(cd.offset + cd.len) as usize];
    check_config2(&dir.join("part.img"), part, 512, fat::Kind::Fat16, &files);
}

/// A FAT rebuild copies the files from another pass over the drive's
/// stream (here a URL, downloaded again), in the order of their extents:
/// files larger than the copy buffer, empty files, and hard links that
/// share one extent (genisoimage writes a hard-linked file once).
#[test]
fn config_drive_rebuild_from_a_url_with_shared_extents() {
    need(&["sgdisk", "blkid", "genisoimage"]);
    let dir = common::test_dir("cd-rebuild-url");
    let src = dir.join("cd");
    let big: Vec<u8> = (0..(3u32 << 20) + 77)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "openstack/latest/meta_data.json",
            br#"{"uuid": "x"}"#.to_vec(),
        ),
        ("openstack/latest/user_data", big.clone()),
        ("openstack/2018-08-27/user_data", big.clone()),
        ("openstack/latest/empty", Vec::new()),
        ("ec2/latest/meta-data.json", b"{}".to_vec()),
    ];
    for (p, b) in &files {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if !p.ends_with("2018-08-27/user_data") {
            std::fs::write(p, b).unwrap();
        }
    }
    std::fs::hard_link(
        src.join("openstack/latest/user_data"),
        src.join("openstack/2018-08-27/user_data"),
    )
    .unwrap();
    let iso_path = dir.join("cd.iso");
    must(&[
        "genisoimage",
        "-quiet",
        "-J",
        "-r",
        "-V",
        "config-2",
        "-o",
        iso_path.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let iso = std::fs::read(&iso_path).unwrap();
    let listed =
        ironic_agent::fs::iso9660::list(&File::open(&iso_path).unwrap(), 0, iso.len() as u64)
            .unwrap();
    let at = |p: &str| listed.iter().find(|e| e.path == p).unwrap().offset;
    assert_eq!(
        at("openstack/latest/user_data"),
        at("openstack/2018-08-27/user_data"),
        "genisoimage shares a hard link's extent"
    );
    let srv = common::servers::ImageServer::start();
    let url = srv.put("/cd", gz_b64(&iso).into_bytes());
    let (disk_path, _) = gpt_disk(&dir);
    let a = agent_with(Config {
        root: dir.clone(),
        config_drive_rebuild: true,
        ..Config::default()
    });
    let mut f = open_rw(&disk_path);
    write_cd(&a, "/dev/sda", &mut f, &json!(url)).unwrap();
    drop(f);
    // measured, written as ISO, files copied into the FAT
    assert_eq!(srv.log("/cd").len(), 3);
    let f = File::open(&disk_path).unwrap();
    let Found::Table(t) = disk::read_table(&f, geom(&f)) else {
        panic!("no table")
    };
    let cd = t.partitions.iter().find(|q| q.number == 2).unwrap();
    let data = std::fs::read(&disk_path).unwrap();
    let part = &data[cd.offset as usize..(cd.offset + cd.len) as usize];
    check_config2(&dir.join("part.img"), part, 512, fat::Kind::Fat16, &files);
}

/// A 4 KiB-sector loop device: geometry from BLKSSZGET, tables in 4 KiB
/// LBAs, BLKRRPART re-read; sgdisk reads the device as the oracle.
#[test]
fn loop_device_4k_sectors() {
    if !need_root() {
        return;
    }
    need(&["losetup", "sgdisk"]);
    let dir = common::test_dir("loop4k");
    let backing = dir.join("backing");
    sparse(&backing, 1 << 30);
    let guard = Loop::attach(&backing, &["-P", "--sector-size", "4096"]);
    let dev = PathBuf::from(&guard.dev);
    let a = agent(Path::new("/"));
    let mut f = open_rw(&dev);
    let n = node("uefi", None);
    let ii = info(64, 16, 0, None);
    let layout = partition::prepare_layout(
        &a.env(),
        &dev,
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    assert_eq!(layout.sector, 4096);
    let uuids = partition::finish(&a.env(), &dev, &mut f, &layout).unwrap();
    drop(f);
    let d = dev.to_str().unwrap();
    let v = must(&["sgdisk", "-v", d]);
    assert!(v.contains("No problems found"), "{v}");
    let i = must(&["sgdisk", "-i", "1", d]);
    assert!(i.contains("First sector: 256 "), "{i}"); // 1 MiB in 4 KiB sectors
                                                      // BLKRRPART succeeded (finish() would have failed otherwise). Whether
                                                      // the kernel then lists the partitions in sysfs depends on the
                                                      // sandbox: some (this CI's among them) accept the ioctl but expose no
                                                      // partitions even after `blockdev --rereadpt`, so it is reported, not
                                                      // asserted.
    let k = dev.file_name().unwrap().to_string_lossy().to_string();
    if !Path::new(&format!("/sys/block/{k}/{k}p1")).exists() {
        eprintln!("NOTE: this kernel exposes no partitions of {k} in sysfs");
    }
    assert!(uuids["efi system partition uuid"].as_str().unwrap().len() == 9);
}

/// inject_files into a real ext4 filesystem on a loop device, mounted
/// with mount(2) by the agent (partition given as a device path, as IPA
/// allows), then checked with debugfs-free means: we mount it again
/// ourselves.
#[test]
fn inject_files_into_loop_ext4() {
    if !need_root() {
        return;
    }
    need(&["losetup", "mkfs.ext4", "mount", "umount"]);
    let dir = common::test_dir("inject-loop");
    let backing = dir.join("fs");
    sparse(&backing, 64 << 20);
    must(&["mkfs.ext4", "-q", "-F", backing.to_str().unwrap()]);
    let guard = Loop::attach(&backing, &[]);
    let dev = guard.dev.clone();
    let a = agent(Path::new("/"));
    let node = json!({"uuid": "n1", "properties": {}});
    let ports = json!([]);
    let args = json!({"files": [
        {"path": "/etc/sysctl.d/99-x.conf", "partition": dev, "content": "aGVsbG8K",
         "mode": 0o600, "dirmode": 0o750},
    ]});
    let call = ironic_agent::hardware::StepCall {
        kind: ironic_agent::hardware::StepKind::Deploy,
        step: "inject_files",
        node: &node,
        ports: &ports,
        args: args.as_object().unwrap().into(),
    };
    inject_files(&a, &call).unwrap();
    // look with our own mount
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Mounted::new(&["-t", "ext4", &dev], &mnt);
    let f = mnt.join("etc/sysctl.d/99-x.conf");
    let content = std::fs::read(&f);
    let mode = std::fs::metadata(&f).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    let dmode = std::fs::metadata(mnt.join("etc/sysctl.d")).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    drop(mounted);
    assert_eq!(content.unwrap(), b"hello\n");
    assert_eq!(mode.unwrap(), 0o600);
    assert_eq!(dmode.unwrap(), 0o750);
}

#[test]
fn inject_files_on_a_fixture_root_fails_clearly() {
    let dir = common::test_dir("inject-fixture");
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    sparse(&dir.join("dev/sda"), 8 << 20);
    let a = agent(&dir);
    let node = json!({"uuid": "n1", "properties": {}});
    let ports = json!([]);
    let args = json!({"files": [{"path": "/etc/x", "partition": "/dev/sda", "content": "eA=="}]});
    let call = ironic_agent::hardware::StepCall {
        kind: ironic_agent::hardware::StepKind::Deploy,
        step: "inject_files",
        node: &node,
        ports: &ports,
        args: args.as_object().unwrap().into(),
    };
    let e = inject_files(&a, &call).unwrap_err();
    assert!(
        e.details
            .starts_with("Unable to mount /dev/sda: not a block device"),
        "{}",
        e.details
    );
}

/// An MBR disk over 2 TiB (a 3 TiB sparse file): the configdrive goes just
/// below the 2 TiB limit, as IPA's parted call places it.
#[test]
fn configdrive_mbr_above_2tib() {
    need(&["sfdisk"]);
    let dir = common::test_dir("cd-3t");
    let img = dir.join("sdd");
    sparse(&img, 3 << 40);
    must_input(
        &["sfdisk", img.to_str().unwrap()],
        b"label: dos\n,16M,83,*\n",
    );
    let a = agent(&dir);
    let mut f = open_rw(&img);
    write_cd(&a, "/dev/sdd", &mut f, &json!(gz_b64(b"drive"))).unwrap();
    drop(f);
    let json: Value =
        serde_json::from_str(&must(&["sfdisk", "--json", img.to_str().unwrap()])).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    // MAX_DISK_SIZE_MB_SUPPORTED_BY_MBR - 64 - 1 .. - 1 MiB
    assert_eq!(parts[1]["start"], (2_097_152u64 - 65) * 2048);
    assert_eq!(parts[1]["size"], 64 * 2048);
}

#[test]
fn preserve_ephemeral_keeps_the_table_and_data() {
    need(&["sfdisk"]);
    let dir = common::test_dir("preserve");
    let a = agent(&dir);
    let disk_path = dir.join("sda");
    let mut f = sparse(&disk_path, 1 << 30);
    let n = node("bios", None);
    let ii = info(300, 0, 100, Some(gz_b64(b"first drive")));
    let first = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    let eph = first.ephemeral.clone().unwrap();
    let cd = first.configdrive.clone().unwrap();
    assert_eq!((eph.number, cd.number, first.root.number), (1, 2, 3));
    assert_eq!(cd.len, 1 << 20);
    std::os::unix::fs::FileExt::write_all_at(&f, b"tenant data", eph.offset + 4096).unwrap();
    let read = |f: &File, off: u64, n: usize| {
        let mut buf = vec![0u8; n];
        std::os::unix::fs::FileExt::read_exact_at(f, &mut buf, off).unwrap();
        buf
    };
    // A rebuild: the disk's partitions are used as IPA uses them (by
    // number), though root_mb no longer matches the root partition (as
    // after cloud-init's growpart); the new drive is larger than the old.
    let mut keep = ii.clone();
    keep.insert("preserve_ephemeral".into(), json!(true));
    keep.insert("root_mb".into(), json!(500));
    keep.insert("configdrive".into(), json!(gz_b64(&[7u8; 1 << 19])));
    let second = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&keep),
        keep.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    assert_eq!(second.root, first.root);
    assert_eq!(second.configdrive, first.configdrive);
    assert_eq!(read(&f, eph.offset + 4096, 11), b"tenant data");
    // the new drive is in, over the old one; a drive that does not fit the
    // partition on the disk fails clearly, the ephemeral data untouched
    assert_eq!(read(&f, cd.offset, 4), [7u8; 4]);
    keep.insert("configdrive".into(), json!(gz_b64(&[7u8; 3 << 20])));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&keep),
        keep.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(
        e.details.contains("does not fit into partition"),
        "{}",
        e.details
    );
    assert_eq!(read(&f, eph.offset + 4096, 11), b"tenant data");
    // a different layout is refused rather than silently repartitioned
    let mut other = ii.clone();
    other.insert("preserve_ephemeral".into(), json!(true));
    other.insert("ephemeral_mb".into(), json!(200));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&other),
        other.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(
        e.details.contains("does not match the ephemeral partition"),
        "{}",
        e.details
    );
    // as is one that numbers the parts differently (a swap partition now:
    // root would be partition 4, which the disk does not have)
    let mut other = ii.clone();
    other.insert("preserve_ephemeral".into(), json!(true));
    other.insert("swap_mb".into(), json!(64));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&other),
        other.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(
        e.details.contains("/dev/sda4 of /dev/sda does not exist"),
        "{}",
        e.details
    );
    assert_eq!(read(&f, eph.offset + 4096, 11), b"tenant data");
    drop(f);
    // an msdos extended container is never taken for a partition to write
    // into: the ephemeral as planned, then an extended #2 holding #5
    must_input(
        &["sfdisk", disk_path.to_str().unwrap()],
        b"label: dos\nstart=2048, size=204800, type=83\n\
          start=206848, size=409600, type=5\nstart=208896, size=100000, type=83\n",
    );
    let mut f = open_rw(&disk_path);
    let mut plain = info(300, 0, 100, None);
    plain.insert("preserve_ephemeral".into(), json!(true));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&plain),
        plain.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(
        e.details
            .contains("/dev/sda2 of /dev/sda does not exist as a data partition"),
        "{}",
        e.details
    );
}

#[test]
fn partition_image_configdrive_is_checked_before_anything_is_written() {
    let dir = common::test_dir("cd-early");
    let a = agent(&dir);
    let mut f = sparse(&dir.join("sda"), 1 << 30);
    let old = [0xabu8; 4096];
    std::os::unix::fs::FileExt::write_all_at(&f, &old, 0).unwrap();
    let n = node("bios", None);
    let ii = info(300, 0, 0, Some("%%%".into()));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(e.details.contains("is not base64 encoded"), "{}", e.details);
    let mut head = [0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).unwrap();
    assert_eq!(
        head, old,
        "a table was written before the drive was checked"
    );
}

#[test]
fn partition_image_configdrive_over_64_mib_as_ipa() {
    // IPA caps only a whole-disk image's drive at 64 MiB; a partition
    // image's drive gets a partition of its size
    let dir = common::test_dir("cd-big");
    let a = agent(&dir);
    let mut f = sparse(&dir.join("sda"), 256 << 20);
    let mut drive = vec![0u8; 65 << 20];
    drive[(65 << 20) - 4..].copy_from_slice(b"END!");
    let n = node("bios", None);
    let ii = info(100, 0, 0, Some(gz_b64(&drive)));
    let layout = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap();
    let cd = layout.configdrive.unwrap();
    assert_eq!(cd.len, 65 << 20);
    let mut end = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut end, cd.offset + (65 << 20) - 4).unwrap();
    assert_eq!(&end, b"END!");
    // a drive larger than the disk is refused before anything is written
    let ii = info(100, 0, 0, Some(gz_b64(&vec![0u8; (256 << 20) + 1])));
    let e = partition::prepare_layout(
        &a.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&n),
    )
    .unwrap_err();
    assert!(
        e.details
            .contains("is too large: 257 MiB uncompressed, more than the 256 MiB"),
        "{}",
        e.details
    );
}
