//! UEFI NVRAM handling (src/efi, src/image/bootloader.rs,
//! src/hardware/generic/nvram.rs) on fixture roots whose
//! `sys/firmware/efi/efivars` is a directory of plain files: never the
//! host's NVRAM. The clean step and install_bootloader's BIOS/partition
//! paths run through the real binary over HTTP; the UEFI loader discovery
//! runs in-process with the written device recorded in the agent's state,
//! because the device listing that `get_os_install_device` uses belongs to
//! another part of the agent. Disks are sparse files with a GPT and an ESP
//! made by the agent's own code and filled by mtools (the oracle), so the
//! FAT reader meets a filesystem it did not write.

mod common;

use common::tools::{must, need};
use ironic_agent::agent::Agent as Core;
use ironic_agent::config::Config;
use ironic_agent::image::{partition, WrittenImage};
use ironic_agent::{disk, efi};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

fn efivars(root: &Path) -> PathBuf {
    let d = root.join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Boot#### file with a HD()+File() path (built by the agent's own
/// encoder, checked against a hand-written expectation in the unit tests).
fn boot_var(desc: &str, file: &str, gpt: bool) -> Vec<u8> {
    let table = disk::Table {
        label: if gpt {
            disk::Label::Gpt
        } else {
            disk::Label::Msdos
        },
        disk_guid: None,
        mbr_signature: 0x1234,
        partitions: vec![],
    };
    let part = disk::Partition {
        number: 1,
        offset: 1 << 20,
        len: 1 << 20,
        start_lba: 2048,
        sectors: 2048,
        gpt_type: None,
        gpt_uuid: Some(ironic_agent::disk::Guid::random().unwrap()),
        gpt_name: String::new(),
        mbr_type: None,
        bootable: false,
    };
    efi::build_load_option(desc, &efi::hd_file_path(&table, &part, file))
}

/// A PXE entry: PciRoot(0x0)/Pci(0x3,0x0)/MAC(...).
fn pxe_var(desc: &str) -> Vec<u8> {
    let mut p = vec![0x02, 0x01, 12, 0];
    p.extend_from_slice(&0x0a03_41d0u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&[0x01, 0x01, 6, 0, 0, 3]);
    let mut mac = vec![0x03, 0x0b, 37, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
    mac.resize(36, 0);
    mac.push(1);
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    efi::build_load_option(desc, &p)
}

fn write_var(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(format!("{name}-{GUID}")), bytes).unwrap();
}

fn boot_order(dir: &Path) -> Vec<u16> {
    let b = std::fs::read(dir.join(format!("BootOrder-{GUID}"))).unwrap();
    assert_eq!(&b[..4], &[7, 0, 0, 0]);
    b[4..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn order_bytes(o: &[u16]) -> Vec<u8> {
    let mut b = vec![7, 0, 0, 0];
    for n in o {
        b.extend_from_slice(&n.to_le_bytes());
    }
    b
}

#[test]
fn clean_uefi_nvram_step_over_http() {
    let dir = common::test_dir("clean-nvram");
    let root = dir.join("root");
    let vars = efivars(&root);
    write_var(&vars, "Boot0000", &pxe_var("UEFI PXEv4"));
    write_var(
        &vars,
        "Boot0001",
        &boot_var("ubuntu", r"\EFI\ubuntu\shimx64.efi", true),
    );
    write_var(
        &vars,
        "Boot0002",
        &boot_var("old", r"\EFI\centos\grubx64.efi", false),
    );
    write_var(&vars, "Boot000A", &pxe_var("UEFI HTTPv4"));
    write_var(&vars, "BootOrder", &order_bytes(&[1, 0, 2, 10]));
    let a = common::Agent::start(
        &dir,
        common::Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    // default patterns: every HD() entry goes, PXE stays
    let (s, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": "clean_uefi_nvram", "interface": "deploy", "args": {}},
               "node": {"uuid": "n1"}, "ports": [], "clean_version": null}),
    );
    assert_eq!(s, 200, "{v}");
    let v = common::wait_for(std::time::Duration::from_secs(20), || {
        let (_, l) = common::get(&a.url_with_token("/v1/commands/"));
        let last = l["commands"].as_array()?.last()?.clone();
        (last["command_status"] != "RUNNING").then_some(last)
    })
    .unwrap();
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let left: Vec<String> = std::fs::read_dir(&vars)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Boot0"))
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        vec![format!("Boot0000-{GUID}"), format!("Boot000A-{GUID}")]
    );
    assert_eq!(boot_order(&vars), vec![0, 10]);
    // a pattern that backtracks exponentially fails the step, naming it,
    // before anything is deleted (never a silent "no match")
    a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": "clean_uefi_nvram", "interface": "deploy",
                        "args": {"match_patterns": ["(.|.)*#"]}},
               "node": {"uuid": "n1"}, "ports": [], "clean_version": null}),
    );
    let v = last_result(&a);
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(v["command_error"]["type"], "CleaningError", "{v}");
    let details = v["command_error"]["details"].as_str().unwrap_or("");
    assert!(
        details.contains(r#""(.|.)*#""#) && details.contains("backtracking steps"),
        "{v}"
    );
    assert_eq!(boot_order(&vars), vec![0, 10]);
    assert!(vars.join(format!("Boot000A-{GUID}")).exists());
    // a custom pattern (matched against the device path, as IPA does, not
    // the description); and a bad one is IPA's InvalidCommandParamsError
    let (_, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": "clean_uefi_nvram", "interface": "deploy",
                        "args": {"match_patterns": ["^pciroot\\(.*/mac\\(5254"]}},
               "node": {"uuid": "n1"}, "ports": [], "clean_version": null}),
    );
    let _ = v;
    common::wait_for(std::time::Duration::from_secs(20), || {
        let (_, l) = common::get(&a.url_with_token("/v1/commands/"));
        let last = l["commands"].as_array()?.last()?.clone();
        (last["command_status"] != "RUNNING").then_some(())
    })
    .unwrap();
    assert!(boot_order(&vars).is_empty());
    let (_, v) = a.command(
        "clean.execute_clean_step",
        json!({"step": {"step": "clean_uefi_nvram", "interface": "deploy",
                        "args": {"match_patterns": "notalist"}},
               "node": {"uuid": "n1"}, "ports": [], "clean_version": null}),
    );
    let v = common::wait_for(std::time::Duration::from_secs(20), || {
        let (_, l) = common::get(&a.url_with_token("/v1/commands/"));
        let last = l["commands"].as_array()?.last()?.clone();
        (last["command_status"] != "RUNNING").then_some(last)
    })
    .unwrap_or(v);
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert!(
        v["command_error"]["details"]
            .as_str()
            .unwrap_or("")
            .contains("The match_patterns must be a list of strings"),
        "{v}"
    );
}

fn last_result(a: &common::Agent) -> Value {
    common::wait_for(std::time::Duration::from_secs(20), || {
        let (_, l) = common::get(&a.url_with_token("/v1/commands/"));
        let last = l["commands"].as_array()?.last()?.clone();
        (last["command_status"] != "RUNNING").then_some(last)
    })
    .expect("command finished")
}

#[test]
fn install_bootloader_bios_paths_over_http() {
    let dir = common::test_dir("bootloader-bios");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sys/block")).unwrap();
    let a = common::Agent::start(
        &dir,
        common::Opts {
            root: Some(&root),
            ..Default::default()
        },
    );
    // whole-disk image in BIOS mode: nothing to do
    a.command(
        "image.install_bootloader",
        json!({"root_uuid": "0x00000000", "efi_system_part_uuid": null,
               "prep_boot_part_uuid": null, "target_boot_mode": "bios"}),
    );
    let v = last_result(&a);
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    // a partition image needing grub: IPA's InvalidImage text
    a.command(
        "image.install_bootloader",
        json!({"root_uuid": "9b3c8e6e-1111-2222-3333-444455556666",
               "target_boot_mode": "bios"}),
    );
    let v = last_result(&a);
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(v["command_error"]["type"], "InvalidImage");
    assert_eq!(
        v["command_error"]["details"],
        "Install of legacy BIOS bootloaders disabled by CONF.enable_bios_bootloader_install as \
         part of CVE-2026-43003 mitigation."
    );
    // unless told to ignore it
    a.command(
        "image.install_bootloader",
        json!({"root_uuid": "9b3c8e6e-1111-2222-3333-444455556666",
               "ignore_bootloader_failure": true}),
    );
    assert_eq!(last_result(&a)["command_status"], "SUCCEEDED");
}

/// A UEFI partition-image disk laid out by the agent (ESP 550 MiB at
/// /dev/sda1), with loaders copied in by mtools.
fn uefi_disk(dir: &Path, root: &Path, csv: bool) -> (Arc<Core>, Map<String, Value>) {
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::create_dir_all(root.join("sys/firmware/efi")).unwrap();
    let core = Core::new(
        Config {
            root: root.to_path_buf(),
            ..Config::default()
        },
        ironic_agent::logbuf::LogBuffer::new(1 << 16),
    );
    let disk_path = root.join("dev/sda");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&disk_path)
        .unwrap();
    f.set_len(1 << 30).unwrap();
    let mut f = f;
    let node = json!({"uuid": "n1", "instance_info": {"deploy_boot_mode": "uefi"}});
    let mut ii = Map::new();
    ii.insert("root_mb".into(), json!(100));
    let layout = partition::prepare_layout(
        &core.env(),
        Path::new("/dev/sda"),
        &mut f,
        &common::partition_image_info(&ii),
        ii.get("configdrive"),
        Some(&node),
    )
    .unwrap();
    let uuids = partition::finish(&core.env(), Path::new("/dev/sda"), &mut f, &layout).unwrap();
    drop(f);
    let esp = layout.efi.as_ref().unwrap();
    let spec = format!("{}@@{}", disk_path.display(), esp.offset);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("bin"), b"MZ").unwrap();
    must(&["mmd", "-i", &spec, "::EFI", "::EFI/BOOT", "::EFI/ubuntu"]);
    let bin = files.join("bin");
    let bin = bin.to_str().unwrap();
    must(&["mcopy", "-i", &spec, bin, "::EFI/BOOT/BOOTX64.EFI"]);
    must(&["mcopy", "-i", &spec, bin, "::EFI/ubuntu/shimx64.efi"]);
    must(&["mcopy", "-i", &spec, bin, "::EFI/ubuntu/grubx64.efi"]);
    if csv {
        let mut b = vec![0xff, 0xfe];
        for u in "shimx64.efi,ubuntu,,This is the boot entry for ubuntu\r\n".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        let c = files.join("csv");
        std::fs::write(&c, b).unwrap();
        must(&[
            "mcopy",
            "-i",
            &spec,
            c.to_str().unwrap(),
            "::EFI/ubuntu/BOOTX64.CSV",
        ]);
    }
    core.written.set(Some(WrittenImage {
        image_id: "img".into(),
        device: "/dev/sda".into(),
        partition_uuids: uuids.clone(),
    }));
    (Arc::new(core), uuids)
}

/// `image.install_bootloader`, run in-process as the command worker runs
/// it.
fn install_bootloader(core: &Arc<Core>, params: &Value) {
    let p = params.as_object().unwrap().clone();
    ironic_agent::commands::run_inline(core, "image.install_bootloader", p).unwrap();
}

fn entries(vars: &Path) -> Vec<(u16, String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(vars).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(h) = n.strip_prefix("Boot").and_then(|r| r.get(..4)) {
            if let Ok(num) = u16::from_str_radix(h, 16) {
                if n.len() == 4 + 4 + 1 + GUID.len() {
                    let b = efi::parse_boot_entry(num, &std::fs::read(e.path()).unwrap()).unwrap();
                    v.push((num, b.description, b.path_text));
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn install_bootloader_uefi_csv_creates_then_reuses_entry() {
    need(&["mmd", "mcopy"]);
    let dir = common::test_dir("bootloader-uefi");
    let root = dir.join("root");
    let vars = efivars(&root);
    write_var(&vars, "Boot0000", &pxe_var("UEFI PXEv4"));
    write_var(
        &vars,
        "Boot0001",
        &boot_var("ubuntu", r"\EFI\ubuntu\old.efi", true),
    );
    write_var(&vars, "BootOrder", &order_bytes(&[0, 1]));
    let (core, uuids) = uefi_disk(&dir, &root, true);
    let params = json!({"root_uuid": uuids["root uuid"],
                        "efi_system_part_uuid": uuids["efi system partition uuid"],
                        "target_boot_mode": "uefi"});
    install_bootloader(&core, &params);
    let e = entries(&vars);
    assert_eq!(e.len(), 2, "{e:?}");
    // the existing "ubuntu" entry is reused (number 1) and now points at
    // shim through HD(1,GPT,<ESP PARTUUID>,0x800,0x113000)
    assert_eq!(e[1].0, 1);
    assert_eq!(e[1].1, "ubuntu");
    assert!(e[1].2.starts_with("HD(1,GPT,"), "{}", e[1].2);
    assert!(
        e[1].2
            .ends_with(r",0x800,0x113000)/File(\EFI\ubuntu\shimx64.efi)"),
        "{}",
        e[1].2
    );
    assert_eq!(boot_order(&vars), vec![1, 0]);
    // again: no duplicate
    install_bootloader(&core, &params);
    assert_eq!(entries(&vars).len(), 2);
    assert_eq!(boot_order(&vars), vec![1, 0]);
}

#[test]
fn install_bootloader_uefi_without_csv_uses_bootx64() {
    need(&["mmd", "mcopy"]);
    let dir = common::test_dir("bootloader-uefi-nocsv");
    let root = dir.join("root");
    let vars = efivars(&root);
    let (core, uuids) = uefi_disk(&dir, &root, false);
    let params = json!({"root_uuid": uuids["root uuid"], "target_boot_mode": "uefi"});
    install_bootloader(&core, &params);
    let e = entries(&vars);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].1, "ironic1");
    assert!(
        e[0].2.ends_with(r"File(\EFI\BOOT\BOOTX64.EFI)"),
        "{}",
        e[0].2
    );
    assert_eq!(boot_order(&vars), vec![0]);
}
