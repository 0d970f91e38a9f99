//! `poll.get_hardware_info` over HTTP from the real binary, against the
//! fixture roots in tests/fixtures: IPA's keys and JSON types (checked
//! against a real IPA answer, tests/fixtures/ipa-inventory-sample.json)
//! and the values each fixture stands for.

mod common;

use common::{fixture_root, test_dir, Agent, Opts};
use serde_json::{json, Value};
use std::path::Path;

/// The JSON type of a value, as the schema below names them.
fn ty(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// IPA's inventory types (hardware.py serializable_fields; nullable where
/// IPA's code can produce None). Keys are paths; "[]" is any list item.
const SCHEMA: &[(&str, &str)] = &[
    ("interfaces", "list"),
    ("interfaces[]", "dict"),
    ("interfaces[].name", "str"),
    ("interfaces[].mac_address", "str"),
    ("interfaces[].ipv4_address", "str|null"),
    ("interfaces[].ipv6_address", "str|null"),
    ("interfaces[].has_carrier", "bool"),
    ("interfaces[].lldp", "list|null"),
    ("interfaces[].vendor", "str|null"),
    ("interfaces[].product", "str|null"),
    ("interfaces[].client_id", "str|null"),
    ("interfaces[].biosdevname", "str|null"),
    ("interfaces[].speed_mbps", "int|null"),
    ("interfaces[].pci_address", "str|null"),
    ("interfaces[].driver", "str|null"),
    ("cpu", "dict"),
    ("cpu.model_name", "str"),
    ("cpu.frequency", "str"),
    ("cpu.count", "int"),
    ("cpu.architecture", "str"),
    ("cpu.flags", "list"),
    ("cpu.flags[]", "str"),
    ("cpu.socket_count", "int"),
    ("disks", "list"),
    ("disks[]", "dict"),
    ("disks[].name", "str"),
    ("disks[].model", "str|null"),
    ("disks[].size", "int"),
    ("disks[].rotational", "bool"),
    ("disks[].wwn", "str|null"),
    ("disks[].serial", "str|null"),
    ("disks[].vendor", "str|null"),
    ("disks[].wwn_with_extension", "str|null"),
    ("disks[].wwn_vendor_extension", "str|null"),
    ("disks[].hctl", "str|null"),
    ("disks[].by_path", "str|null"),
    ("disks[].logical_sectors", "int|null"),
    ("disks[].physical_sectors", "int|null"),
    ("disks[].tran", "str|null"),
    ("memory", "dict"),
    ("memory.total", "int"),
    ("memory.physical_mb", "int|null"),
    ("bmc_address", "str|null"),
    ("bmc_v6address", "str|null"),
    // only present when a BMC MAC was found
    ("bmc_mac?", "str"),
    ("system_vendor", "dict"),
    ("system_vendor.product_name", "str"),
    ("system_vendor.serial_number", "str"),
    ("system_vendor.manufacturer", "str"),
    ("system_vendor.firmware", "dict"),
    ("system_vendor.firmware.vendor", "str"),
    ("system_vendor.firmware.version", "str"),
    ("system_vendor.firmware.build_date", "str"),
    ("boot", "dict"),
    ("boot.current_boot_mode", "str"),
    ("boot.pxe_interface", "str|null"),
    ("hostname", "str"),
];

/// Every (path, value) of a JSON document, lists as "[]".
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    if !prefix.is_empty() {
        out.push((prefix.to_string(), v.clone()));
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                flatten(&format!("{prefix}[]"), x, out);
            }
        }
        _ => {}
    }
}

/// Check an inventory against the schema: no unknown keys, no missing
/// keys in any object, every value of an allowed type.
fn check_schema(inv: &Value) {
    let mut flat = vec![];
    flatten("", inv, &mut flat);
    for (path, v) in &flat {
        let want = SCHEMA
            .iter()
            .find(|(p, _)| p.trim_end_matches('?') == path)
            .unwrap_or_else(|| panic!("unexpected key {path} in {inv}"))
            .1;
        assert!(
            want.split('|').any(|t| t == ty(v)),
            "{path}: {} is {}, IPA has {want}",
            v,
            ty(v)
        );
    }
    // required keys: every schema key whose parent object is present
    for (p, _) in SCHEMA
        .iter()
        .filter(|(p, _)| !p.ends_with('?') && !p.ends_with("[]"))
    {
        let (parent, _) = p.rsplit_once('.').unwrap_or(("", p));
        let parent_present = parent.is_empty() || flat.iter().any(|(q, _)| q == parent);
        let parent_is_empty_list = parent.ends_with("[]") && !flat.iter().any(|(q, _)| q == parent);
        if parent_present && !parent_is_empty_list {
            let n_parents = if parent.is_empty() {
                1
            } else {
                flat.iter().filter(|(q, _)| q == parent).count()
            };
            let n = flat.iter().filter(|(q, _)| q == p).count();
            assert_eq!(n, n_parents, "missing key {p} in {inv}");
        }
    }
}

#[test]
fn schema_matches_a_real_ipa_inventory() {
    let text =
        std::fs::read_to_string(common::fixture("ipa-inventory-sample.json")).expect("sample");
    let sample: Value = serde_json::from_str(&text).unwrap();
    check_schema(&sample["command_result"]);
}

fn hardware_info(root: &Path, dir: &Path, extra: &[&str]) -> (Agent, Value) {
    let a = Agent::start(
        dir,
        Opts {
            root: Some(root),
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    let (status, body) = a.command("poll.get_hardware_info", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["command_status"], "SUCCEEDED", "{body}");
    assert_eq!(body["command_name"], "get_hardware_info");
    let inv = body["command_result"].clone();
    check_schema(&inv);
    (a, inv)
}

fn disk<'a>(inv: &'a Value, name: &str) -> &'a Value {
    inv["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no disk {name} in {}", inv["disks"]))
}

fn nic<'a>(inv: &'a Value, name: &str) -> &'a Value {
    inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no interface {name} in {}", inv["interfaces"]))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect()
}

#[test]
fn vm_virtio_matches_ipa_on_the_same_vm() {
    let dir = test_dir("inv-vm-virtio");
    let root = fixture_root("vm-virtio", &dir);
    let (_a, inv) = hardware_info(&root, &dir, &[]);
    // The IPA sample was taken on this VM type; compare what is not
    // anonymised in it.
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("ipa-inventory-sample.json")).unwrap(),
    )
    .unwrap();
    let ipa = &sample["command_result"];
    for k in [
        "model_name",
        "frequency",
        "count",
        "architecture",
        "socket_count",
    ] {
        assert_eq!(inv["cpu"][k], ipa["cpu"][k], "cpu.{k}");
    }
    assert_eq!(inv["memory"]["physical_mb"], ipa["memory"]["physical_mb"]);
    for k in [
        "system_vendor",
        "boot",
        "hostname",
        "bmc_address",
        "bmc_v6address",
    ] {
        assert_eq!(inv[k], ipa[k], "{k}");
    }
    assert!(inv.get("bmc_mac").is_none());
    let (vda, ipa_vda) = (disk(&inv, "/dev/vda"), &ipa["disks"][0]);
    for k in [
        "name",
        "model",
        "size",
        "rotational",
        "wwn",
        "vendor",
        "hctl",
        "by_path",
        "logical_sectors",
        "physical_sectors",
        "tran",
    ] {
        assert_eq!(vda[k], ipa_vda[k], "disks[0].{k}");
    }
    // IPA's sample came from a udev-less lsblk; with udev (any IPA
    // ramdisk) the virtio serial attribute is reported, as here.
    assert_eq!(vda["serial"], "overlayblk");
    assert_eq!(names(&inv["interfaces"]), vec!["eth0"]);
    let (eth0, ipa_eth0) = (nic(&inv, "eth0"), &ipa["interfaces"][0]);
    for k in [
        "has_carrier",
        "lldp",
        "vendor",
        "product",
        "client_id",
        "biosdevname",
        "speed_mbps",
        "pci_address",
        "driver",
    ] {
        assert_eq!(eth0[k], ipa_eth0[k], "interfaces[0].{k}");
    }
    assert_eq!(eth0["mac_address"], "02:fc:00:00:00:01");
    assert_eq!(eth0["ipv4_address"], "192.0.2.2");
    assert_eq!(eth0["ipv6_address"], "fd00::2");
    assert_eq!(inv["memory"]["total"], 24684092u64 * 1024);
}

#[test]
fn server_inventory() {
    let dir = test_dir("inv-server");
    let root = fixture_root("server", &dir);
    std::fs::write(dir.join("bootif-cmdline"), "BOOTIF=01-3c-ec-ef-10-00-01\n").unwrap();
    let cmdline = format!("--cmdline={}", dir.join("bootif-cmdline").display());
    let (a, inv) = hardware_info(&root, &dir, &[&cmdline]);
    assert_eq!(
        inv["boot"],
        json!({"current_boot_mode": "uefi", "pxe_interface": "01-3c-ec-ef-10-00-01"})
    );
    assert_eq!(inv["hostname"], "server-01");
    assert_eq!(
        inv["system_vendor"],
        json!({"product_name": "PowerEdge R640", "serial_number": "ABC1234",
               "manufacturer": "Dell Inc.",
               "firmware": {"vendor": "Dell Inc.", "version": "2.11.2",
                            "build_date": "06/24/2021"}})
    );
    assert_eq!(
        inv["cpu"]["model_name"],
        "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"
    );
    assert_eq!(inv["cpu"]["frequency"], "3700.0000");
    assert_eq!(
        (
            inv["cpu"]["count"].as_u64(),
            inv["cpu"]["socket_count"].as_u64()
        ),
        (Some(8), Some(2))
    );
    assert_eq!(
        inv["memory"],
        json!({"total": 65536000u64 * 1024, "physical_mb": 65536})
    );
    // a BMC device node that does not answer: IPA's "nothing configured"
    assert_eq!(inv["bmc_address"], "0.0.0.0");
    assert_eq!(inv["bmc_v6address"], "::/0");
    assert!(inv.get("bmc_mac").is_none());

    assert_eq!(
        names(&inv["disks"]),
        vec!["/dev/nvme0n1", "/dev/sda", "/dev/sdb"]
    );
    assert_eq!(
        disk(&inv, "/dev/sda"),
        &json!({"name": "/dev/sda", "model": "SAMSUNG MZ7LH480", "size": 480103981056u64,
                "rotational": false, "wwn": "0x5002538e4055b5a2",
                "serial": "S45NNE0M123456", "vendor": "ATA",
                "wwn_with_extension": "0x5002538e4055b5a2",
                "wwn_vendor_extension": null, "hctl": "0:0:0:0",
                "by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-1",
                "logical_sectors": 512, "physical_sectors": 4096, "tran": "sata"})
    );
    let nvme = disk(&inv, "/dev/nvme0n1");
    assert_eq!(nvme["wwn"], "eui.36344630528003960025384500000001");
    assert_eq!(nvme["tran"], "nvme");
    assert_eq!(nvme["hctl"], Value::Null);
    assert_eq!(disk(&inv, "/dev/sdb")["rotational"], true);

    assert_eq!(names(&inv["interfaces"]), vec!["bond0", "eno1", "eno2"]);
    assert_eq!(
        nic(&inv, "eno1"),
        &json!({"name": "eno1", "mac_address": "3c:ec:ef:10:00:01",
                "ipv4_address": "10.0.0.5", "ipv6_address": "2001:db8:1::5",
                "has_carrier": true, "lldp": null, "vendor": "0x8086",
                "product": "0x1521", "client_id": null, "biosdevname": null,
                "speed_mbps": 1000, "pci_address": "0000:18:00.0", "driver": "igb"})
    );
    // enslaved to bond0: the permanent MAC, not the bond's
    assert_eq!(nic(&inv, "eno2")["mac_address"], "3c:ec:ef:10:00:02");
    let bond = nic(&inv, "bond0");
    assert_eq!(bond["mac_address"], "3c:ec:ef:10:00:0a");
    assert_eq!(bond["ipv4_address"], "10.0.1.5");
    assert_eq!(bond["ipv6_address"], "fe80::3eec:efff:fe10:a%bond0");
    assert_eq!(bond["pci_address"], Value::Null);

    // Ironic says the BMC is managed out of band: no BMC detection
    let (status, body) = a.command(
        "poll.set_node_info",
        json!({"node_info": {"node": {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"},
                             "config": {"heartbeat_timeout": 300,
                                        "agent_skip_bmc_detect": true}}}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = a.command("poll.get_hardware_info", json!({}));
    let inv = &body["command_result"];
    assert_eq!(
        (&inv["bmc_address"], &inv["bmc_v6address"]),
        (&Value::Null, &Value::Null)
    );
    assert!(inv.get("bmc_mac").is_none());
}

#[test]
fn odd_inventory() {
    let dir = test_dir("inv-odd");
    let root = fixture_root("odd", &dir);
    let (_a, inv) = hardware_info(&root, &dir, &[]);
    // missing DMI ids, hostname, cpufreq, topology and flags
    assert_eq!(inv["system_vendor"]["product_name"], "");
    assert_eq!(inv["system_vendor"]["firmware"]["build_date"], "");
    assert_eq!(inv["hostname"], "");
    assert_eq!(inv["cpu"]["frequency"], "");
    assert_eq!(inv["cpu"]["flags"], json!([]));
    assert_eq!(
        (
            inv["cpu"]["count"].as_u64(),
            inv["cpu"]["socket_count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(inv["boot"]["current_boot_mode"], "bios");
    // no IPMI device: null, and no bmc_mac key
    assert_eq!(
        (&inv["bmc_address"], &inv["bmc_v6address"]),
        (&Value::Null, &Value::Null)
    );
    // a corrupt SMBIOS table: physical memory falls back to MemTotal
    assert_eq!(
        inv["memory"],
        json!({"total": 2035260u64 * 1024, "physical_mb": 1987})
    );

    assert_eq!(
        names(&inv["disks"]),
        vec![
            "/dev/dm-0",
            "/dev/nvme0n1",
            "/dev/sda",
            "/dev/sdb",
            "/dev/sde"
        ]
    );
    let sda = disk(&inv, "/dev/sda");
    assert_eq!(
        (&sda["model"], &sda["serial"]),
        (&Value::Null, &Value::Null)
    );
    let sdb = disk(&inv, "/dev/sdb");
    assert_eq!(
        (
            sdb["logical_sectors"].as_u64(),
            sdb["physical_sectors"].as_u64()
        ),
        (Some(4096), Some(4096))
    );
    assert_eq!(sdb["wwn_vendor_extension"], "0x6f7a8b9c0d1e2f30");
    let nvme = disk(&inv, "/dev/nvme0n1");
    assert_eq!(
        (
            &nvme["logical_sectors"],
            &nvme["physical_sectors"],
            &nvme["serial"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(disk(&inv, "/dev/sde")["tran"], "usb");

    // enp0s7 (fa: MAC), usb0 (no MAC), virbr0 and lo are not reported
    assert_eq!(names(&inv["interfaces"]), vec!["enp0s6", "enp0s6.100"]);
    let e = nic(&inv, "enp0s6");
    assert_eq!(
        (&e["has_carrier"], &e["speed_mbps"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(e["driver"], "e1000e");
    let vlan = nic(&inv, "enp0s6.100");
    assert_eq!(
        (&vlan["has_carrier"], &vlan["pci_address"]),
        (&json!(false), &Value::Null)
    );
}

#[test]
fn fixture_roots_get_sparse_disks() {
    let dir = test_dir("inv-sparse");
    let root = fixture_root("server", &dir);
    let md = std::fs::metadata(root.join("dev/sdb")).unwrap();
    assert_eq!(md.len(), 4000787030016);
    assert_eq!(
        std::fs::metadata(root.join("dev/sda1")).unwrap().len(),
        1 << 30
    );
    // sparse: nothing allocated
    use std::os::unix::fs::MetadataExt;
    assert!(md.blocks() < 8);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real arm64 kernel's sysfs (tests/vm/capture-fixture.sh --arch arm64:
/// qemu's `virt` machine, 2 Neoverse N1 vCPUs, no firmware): a device
/// tree and no DMI, arm64's /proc/cpuinfo, no /sys/firmware/efi.
#[test]
fn arm64_virt_without_firmware() {
    let dir = test_dir("inv-arm64-virt");
    let root = fixture_root("captured-vm-arm64-virt", &dir);
    let (_a, inv) = hardware_info(&root, &dir, &[]);
    let cpu = &inv["cpu"];
    assert_eq!(cpu["architecture"], "aarch64");
    // no "model name" in arm64's cpuinfo: named from implementer/part by
    // the aarch64 build (unit-arm64); the x86_64 one has no such table
    let model = if cfg!(target_arch = "aarch64") {
        "Neoverse-N1"
    } else {
        ""
    };
    assert_eq!(cpu["model_name"], model);
    assert_eq!(
        (cpu["count"].as_u64(), cpu["socket_count"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(cpu["frequency"], "");
    let flags: Vec<&str> = cpu["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"asimd") && flags.contains(&"atomics"),
        "{flags:?}"
    );
    // lshw's device-tree model where there is no DMI
    assert_eq!(
        inv["system_vendor"],
        json!({"product_name": "linux,dummy-virt", "serial_number": "", "manufacturer": "",
               "firmware": {"vendor": "", "version": "", "build_date": ""}})
    );
    assert_eq!(inv["boot"]["current_boot_mode"], "bios");
    for (name, serial) in [
        ("/dev/vda", "CAPTURE-VIRTIO-0"),
        ("/dev/nvme0n1", "CAPTURE-NVME-0"),
        ("/dev/sda", "CAPTURE-SCSI-0"),
    ] {
        assert_eq!(disk(&inv, name)["serial"], serial, "{}", disk(&inv, name));
    }
    assert_eq!(nic(&inv, "eth0")["mac_address"], "52:54:00:fc:00:41");
}
