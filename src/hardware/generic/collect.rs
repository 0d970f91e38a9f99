//! Inventory collection from /sys, /proc and /dev: IPA's
//! `GenericHardwareManager.list_hardware_info` (protocol §5.4) without
//! lshw, lscpu, lsblk, dmidecode, ipmitool or biosdevname, LLDP from live
//! NICs ([`lldp`]), and the data of the inspection collectors beyond
//! `default` (§6): `pci-devices`, `numa-topology`, `dmi-decode` ([`dmi`]),
//! `extra-hardware` ([`extra`]), `lldp` and `usb-devices`.
//!
//! Every file is read once per inventory; the BMC answer is cached per
//! root, as IPA caches it (`_bmc_cache`), because a BMC takes a few
//! round trips per channel.

mod bmc;
mod cpu;
pub mod dmi;
pub mod extra;
pub mod lldp;
mod net;
mod usb;

use crate::config::Env;
use crate::error::{AgentError, Result};
use crate::hardware::inventory::{BootInfo, Firmware, Inventory, Memory, SystemVendor};
use crate::root::Root;
use crate::util::lock;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;

pub use bmc::BmcInfo;
pub use usb::usb_devices;

pub fn list_hardware_info(env: &Env) -> Result<Inventory> {
    let root = env.root;
    let tables = net::AddressTables::read(root);
    let names = net::interface_names(root);
    let mut interfaces: Vec<_> = names
        .iter()
        .filter_map(|n| net::interface(root, &tables, n))
        .collect();
    if env.config.collect_lldp {
        // IPA: `list_network_interfaces` with `collect_lldp` on
        let heard = lldp::lldp_data(&names, lldp_timeout(env));
        for i in &mut interfaces {
            i.lldp = lldp::get(&heard, &i.name).cloned();
        }
    }
    let disks = crate::disk::list::list_block_devices(root, false)?;
    let total = cpu::mem_total(root);
    let dmi_bytes = dmi::memory_device_bytes(root);
    let physical_mb = cpu::physical_mb(dmi_bytes, total, || cpu::hotplug_memory(root));
    let (bmc_address, bmc_v6address, bmc_mac) = if env.lookup.clone().agent_skip_bmc_detect {
        crate::util::log_at!(Info, "Skipping BMC detection as requested by Ironic");
        (None, None, None)
    } else {
        match bmc_info(root) {
            Some(b) => (Some(b.address), Some(b.v6address), b.mac),
            None => (None, None, None),
        }
    };
    Ok(Inventory {
        interfaces,
        cpu: cpu::cpu(root),
        disks,
        memory: Memory {
            total: total.unwrap_or(0),
            physical_mb,
        },
        bmc_address,
        bmc_v6address,
        bmc_mac,
        system_vendor: system_vendor(root),
        boot: BootInfo {
            current_boot_mode: boot_mode(root).into(),
            pxe_interface: env.config.bootif.clone(),
        },
        hostname: root
            .read_nonempty("/proc/sys/kernel/hostname")
            .unwrap_or_default(),
    })
}

/// `lldp_timeout` as a duration (a float of seconds, as IPA's).
pub fn lldp_timeout(env: &Env) -> std::time::Duration {
    std::time::Duration::from_secs_f64(env.config.lldp_timeout.clamp(0.0, 86_400.0))
}

/// The `lldp` inspection collector (IPA's `collect_lldp`, key
/// `lldp_raw`): `{interface: [[type, hex], ...]}` for every interface of
/// `list_interfaces` (physical NICs, VLANs, bonds); one that could not be
/// listened on is absent, one that heard nothing has `[]`.
pub fn lldp_raw(env: &Env) -> Value {
    let names = net::interface_names(env.root);
    let mut m = serde_json::Map::new();
    for (name, tlvs) in lldp::lldp_data(&names, lldp_timeout(env)) {
        m.insert(name, json!(tlvs));
    }
    Value::Object(m)
}

/// IPA's `get_boot_info`: "uefi" when /sys/firmware/efi exists.
pub fn boot_mode(root: &Root) -> &'static str {
    if root.path("/sys/firmware/efi").is_dir() {
        "uefi"
    } else {
        "bios"
    }
}

/// `system_vendor` from the kernel's DMI identification
/// (/sys/class/dmi/id, the same SMBIOS type 0/1 strings lshw reports);
/// empty strings where the firmware provides none, as IPA reports them.
/// On a machine the kernel knows through a device tree (arm64 boards and
/// BMC SoCs booted by u-boot, qemu's `virt` without UEFI, where there is
/// usually no DMI at all), lshw's `scan_device_tree`, which runs after its
/// DMI scan, takes the tree's `model` as the product, its `serial-number`
/// (else `system-id`) as the serial and its `copyright` as the vendor
/// wherever those properties exist.
fn system_vendor(root: &Root) -> SystemVendor {
    let id = |k: &str| {
        root.read(format!("/sys/class/dmi/id/{k}"))
            .unwrap_or_default()
    };
    let serial = device_tree_string(root, "serial-number")
        .filter(|s| !s.is_empty())
        .or_else(|| device_tree_string(root, "system-id"))
        .unwrap_or_else(|| id("product_serial"));
    SystemVendor {
        product_name: device_tree_string(root, "model").unwrap_or_else(|| id("product_name")),
        serial_number: serial,
        manufacturer: device_tree_string(root, "copyright").unwrap_or_else(|| id("sys_vendor")),
        firmware: Firmware {
            vendor: id("bios_vendor"),
            version: id("bios_version"),
            build_date: id("bios_date"),
        },
    }
}

/// A string property of the device tree's root node (/proc/device-tree,
/// a link to /sys/firmware/devicetree/base): NUL-terminated bytes, cut
/// at the first NUL and trimmed as lshw's `hw::strip`. `None` when the
/// machine has no device tree or the node no such property.
fn device_tree_string(root: &Root, prop: &str) -> Option<String> {
    let b = std::fs::read(root.path(format!("/sys/firmware/devicetree/base/{prop}"))).ok()?;
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    Some(String::from_utf8_lossy(b).trim().to_string())
}

/// BMC answers per root (IPA: `self._bmc_cache`). Only successful device
/// conversations are cached; no device means no entry.
static BMC_CACHE: Mutex<Vec<(PathBuf, BmcInfo)>> = Mutex::new(Vec::new());

/// `None` when there is no IPMI device node (IPA's
/// `any_ipmi_device_exists`), else what the BMC says.
fn bmc_info(root: &Root) -> Option<BmcInfo> {
    let dev = bmc::device_path(root)?;
    if let Some((_, b)) = lock(&BMC_CACHE).iter().find(|(p, _)| *p == dev) {
        return Some(b.clone());
    }
    let info = match bmc::Device::open(&dev) {
        Ok(mut d) => bmc::query(&mut d),
        Err(e) => {
            crate::util::log_at!(
                Warn,
                "Cannot get BMC address: opening {}: {e}",
                dev.display()
            );
            bmc::query(&mut Unreachable)
        }
    };
    lock(&BMC_CACHE).push((dev, info.clone()));
    Some(info)
}

/// A BMC device that could not be opened answers nothing.
struct Unreachable;

impl bmc::LanParams for Unreachable {
    fn get(&mut self, _: u8, _: u8, _: u8) -> std::io::Result<Option<Vec<u8>>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no IPMI device",
        ))
    }
}

/// The `pci-devices` inspection collector (IPA's
/// `collect_pci_devices_info`): `[{vendor_id, product_id, class,
/// revision, bus, numa_node_id}]` from /sys/bus/pci/devices, ids as hex
/// without "0x", `revision` null when unreadable, `numa_node_id` the raw
/// string ("-1" without NUMA).
pub fn pci_devices(root: &Root) -> Result<Value> {
    let dir = "/sys/bus/pci/devices";
    if !root.path(dir).is_dir() {
        return Err(AgentError::execution(format!(
            "Failed to get list of PCI devices: {dir} does not exist"
        )));
    }
    let after_x = |s: String| s.split_once('x').map(|(_, h)| h.to_string());
    let mut out = vec![];
    for bus in root.list(dir) {
        let d = format!("{dir}/{bus}");
        if !root.path(&d).is_dir() {
            continue;
        }
        let ids = (
            root.read(format!("{d}/vendor")).and_then(after_x),
            root.read(format!("{d}/device")).and_then(after_x),
            root.read(format!("{d}/class")).and_then(after_x),
        );
        let (Some(vendor), Some(device), Some(class)) = ids else {
            crate::util::log_at!(
                Warn,
                "Failed to gather vendor id, product id or pci class from PCI device {bus}"
            );
            continue;
        };
        out.push(json!({
            "vendor_id": vendor,
            "product_id": device,
            "class": class,
            "revision": root.read(format!("{d}/revision")).and_then(after_x),
            "bus": bus,
            "numa_node_id": root.read(format!("{d}/numa_node")),
        }));
    }
    Ok(Value::Array(out))
}

/// The `numa-topology` inspection collector (IPA's `numa_inspector`):
/// `{ram: [{numa_node, size_kb}], cpus: [{cpu, numa_node,
/// thread_siblings}], nics: [{name, numa_node}]}`. An error (IPA logs a
/// warning and adds nothing) when the machine has no NUMA information.
pub fn numa_topology(root: &Root) -> Result<Value> {
    let dir = "/sys/devices/system/node";
    let fail = |m: String| Err(AgentError::execution(m));
    if !root.path(dir).is_dir() {
        return fail(format!(
            "Failed to get list of NUMA nodes, NUMA node path does not exist: {dir}/"
        ));
    }
    let mut nodes: Vec<(u32, String)> = root
        .list(dir)
        .into_iter()
        .filter(|n| n.starts_with("node") && root.path(format!("{dir}/{n}")).is_dir())
        .filter_map(|n| n[4..].parse().ok().map(|id| (id, n)))
        .collect();
    crate::util::sort_small(&mut nodes);
    let mut ram = vec![];
    let mut cpus: Vec<(u32, u32, Vec<u32>)> = vec![];
    for (id, n) in &nodes {
        let meminfo = root.read(format!("{dir}/{n}/meminfo")).unwrap_or_default();
        let Some(kb) = meminfo
            .lines()
            .find(|l| l.contains("MemTotal"))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, v)| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        else {
            return fail(format!("Memory information is not available for {dir}/{n}"));
        };
        ram.push(json!({"numa_node": id, "size_kb": kb}));
        // a node's threads: its cpuN links, or its cpulist
        let mut threads: Vec<u32> = root
            .list(format!("{dir}/{n}"))
            .iter()
            .filter_map(|e| e.strip_prefix("cpu").and_then(|t| t.parse().ok()))
            .collect();
        if threads.is_empty() {
            threads =
                cpu::parse_cpu_list(&root.read(format!("{dir}/{n}/cpulist")).unwrap_or_default());
        }
        crate::util::sort_unstable(&mut threads);
        for t in threads {
            let Some(core) =
                root.read_u64(format!("/sys/devices/system/cpu/cpu{t}/topology/core_id"))
            else {
                return fail(format!(
                    "Failed to gather cpu_id for thread cpu{t} NUMA node {dir}/{n}"
                ));
            };
            let core = core as u32;
            match cpus
                .iter_mut()
                .find(|(c, node, _)| *c == core && node == id)
            {
                Some((_, _, sib)) => sib.push(t),
                None => cpus.push((core, *id, vec![t])),
            }
        }
    }
    let mut nics = vec![];
    for nic in root.list("/sys/class/net") {
        let p = format!("/sys/class/net/{nic}/device/numa_node");
        if !root.path(&p).is_file() {
            continue;
        }
        let Some(node) = root.read(&p).and_then(|s| s.parse::<i64>().ok()) else {
            return fail(format!("Failed to gather NIC's for NUMA node {nic}"));
        };
        nics.push(json!({"name": nic, "numa_node": node}));
    }
    Ok(json!({
        "ram": ram,
        "cpus": cpus
            .into_iter()
            .map(|(c, n, s)| json!({"cpu": c, "numa_node": n, "thread_siblings": s}))
            .collect::<Vec<_>>(),
        "nics": nics,
    }))
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    fn fixture(name: &str) -> Root {
        Root::fixture(name)
    }

    #[test]
    fn pci_devices_collector() {
        let v = pci_devices(&fixture("server")).unwrap();
        let nvme = v
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["bus"] == "0000:3b:00.0")
            .unwrap();
        assert_eq!(
            nvme,
            &json!({"vendor_id": "144d", "product_id": "a824", "class": "010802",
                    "revision": "01", "bus": "0000:3b:00.0", "numa_node_id": "0"})
        );
        assert_eq!(v.as_array().unwrap().len(), 6);
        // odd: the device without a class is left out
        let v = pci_devices(&fixture("odd")).unwrap();
        assert!(!v
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["bus"] == "0000:00:1f.0"));
        assert!(pci_devices(&Root::new("/nonexistent")).is_err());
    }

    #[test]
    fn numa_topology_collector() {
        let v = numa_topology(&fixture("server")).unwrap();
        assert_eq!(
            v["ram"],
            json!([{"numa_node": 0, "size_kb": 32768000}, {"numa_node": 1, "size_kb": 32768000}])
        );
        // 2 sockets x 2 cores x 2 threads
        assert_eq!(v["cpus"].as_array().unwrap().len(), 4);
        assert_eq!(
            v["cpus"][0],
            json!({"cpu": 0, "numa_node": 0, "thread_siblings": [0, 2]})
        );
        assert_eq!(
            v["nics"],
            json!([{"name": "eno1", "numa_node": 1}, {"name": "eno2", "numa_node": 1}])
        );
        assert!(numa_topology(&fixture("odd")).is_err());
    }

    #[test]
    fn dmi_decode_on_fixtures() {
        let v = dmi::dmi_decode(&fixture("server"));
        assert_eq!(v["bios"]["Vendor"], "Dell Inc.");
        assert_eq!(v["cpu"].as_array().unwrap().len(), 2);
        assert_eq!(v["cpu"][1]["Socket Designation"], "CPU2");
        assert_eq!(v["memory"]["Number Of Devices"], 6);
        assert_eq!(v["memory"]["devices"][2]["Size"], "No Module Installed");
        assert_eq!(dmi::memory_device_bytes(&fixture("server")), Some(64 << 30));
        // a truncated table: what parses is kept, nothing panics
        let v = dmi::dmi_decode(&fixture("odd"));
        assert!(v["memory"]["devices"].is_array());
        let v = dmi::dmi_decode(&fixture("vm-virtio"));
        assert_eq!(v, json!({"bios": {}, "cpu": [], "memory": {"devices": []}}));
    }

    /// The extra-hardware rows of `root` as {(category, item, key): value}.
    fn extra_rows(root: &Root) -> std::collections::BTreeMap<(String, String, String), Value> {
        let rows = extra::detect(root);
        let mut m = std::collections::BTreeMap::new();
        for r in rows {
            let r = r.as_array().unwrap().clone();
            assert_eq!(r.len(), 4, "{r:?}");
            let s = |i: usize| r[i].as_str().unwrap().to_string();
            // hardware-detect never repeats a (category, item, key)
            assert!(
                m.insert((s(0), s(1), s(2)), r[3].clone()).is_none(),
                "{r:?}"
            );
        }
        m
    }

    #[test]
    fn extra_hardware_on_the_server() {
        let m = extra_rows(&fixture("server"));
        let get = |c: &str, i: &str, k: &str| m.get(&(c.into(), i.into(), k.into())).cloned();
        let want = [
            (("disk", "logical", "count"), json!("3")),
            (("disk", "sda", "size"), json!("480")),
            (("disk", "sda", "scheduler"), json!("mq-deadline")),
            (("disk", "sda", "Write Cache Enable"), json!("1")),
            (("disk", "sdb", "Write Cache Enable"), json!("0")),
            (("disk", "sda", "wwn-id"), json!("wwn-0x5002538e4055b5a2")),
            (("disk", "nvme0n1", "nr_requests"), json!("1023")),
            (
                ("system", "product", "uuid"),
                json!("4C4C4544-0042-3510-8052-B4C04F4E3132"),
            ),
            (("system", "motherboard", "name"), json!("0H28RR")),
            (("firmware", "bios", "version"), json!("2.11.2")),
            (("memory", "total", "size"), json!("68719476736")),
            (("memory", "banks", "count"), json!("6")),
            (("memory", "bank:0", "clock"), json!("2666000000")),
            (
                ("memory", "bank:2", "description"),
                json!("DIMM DDR4 Synchronous Registered (Buffered) [empty]"),
            ),
            (("network", "eno1", "businfo"), json!("pci@0000:18:00.0")),
            (("network", "eno1", "ipv4-cidr"), json!("24")),
            (("network", "eno2", "speed"), json!("10Gbit/s")),
            (("cpu", "physical", "number"), json!(2)),
            (("cpu", "physical_1", "cores"), json!(2)),
            (("cpu", "physical_1", "threads"), json!(4)),
            (
                ("cpu", "physical_0", "l3 cache"),
                json!("44 MiB (2 instances)"),
            ),
            (("cpu", "physical_0", "max_Mhz"), json!(3700.0)),
            (("cpu", "logical", "number"), json!(8)),
            (("cpu", "logical_7", "governor"), json!("performance")),
            (("numa", "node_1", "cpu_mask"), json!("0xf0")),
            (("system", "os", "vendor"), json!("Debian")),
            (("system", "kernel", "version"), json!("6.1.0-27-amd64")),
        ];
        for ((c, i, k), v) in want {
            assert_eq!(get(c, i, k), Some(v), "{c}/{i}/{k}");
        }
        // a lone DIMM has no bank rows (lshw calls it "bank")
        let vm = extra_rows(&fixture("captured-vm-q35-uefi"));
        assert!(!vm
            .keys()
            .any(|(c, i, _)| c == "memory" && i.starts_with("bank")));
        assert_eq!(
            vm.get(&("network".into(), "eth1".into(), "businfo".into())),
            Some(&json!("virtio@0"))
        );
        // missing files: fewer rows, never a panic
        let odd = extra_rows(&fixture("odd"));
        assert_eq!(
            odd.get(&("network".into(), "enp0s6".into(), "link".into())),
            Some(&json!("no"))
        );
        assert!(extra::detect(&Root::new("/nonexistent")).len() >= 3);
    }

    #[test]
    fn usb_devices_skip_hubs_and_interfaces() {
        assert_eq!(
            usb_devices(&fixture("server")),
            json!([{"product": "Virtual Keyboard and Mouse",
                    "vendor": "American Megatrends Inc.", "handle": "USB:1:3"}])
        );
        assert_eq!(usb_devices(&fixture("vm-virtio")), json!([]));
    }

    #[test]
    fn system_vendor_from_a_device_tree() {
        let dir = std::env::temp_dir().join(format!("dt-vendor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dt = dir.join("sys/firmware/devicetree/base");
        std::fs::create_dir_all(&dt).unwrap();
        let root = Root::new(&dir);
        // qemu's `virt` machine without firmware: a tree, no DMI
        std::fs::write(dt.join("model"), b"linux,dummy-virt\0").unwrap();
        let v = system_vendor(&root);
        assert_eq!(v.product_name, "linux,dummy-virt");
        assert_eq!(
            (v.serial_number.as_str(), v.manufacturer.as_str()),
            ("", "")
        );
        assert_eq!(v.firmware.vendor, "");
        // a board with a serial; system-id only when serial-number is empty
        std::fs::write(dt.join("model"), b"Raspberry Pi 4 Model B Rev 1.4\0").unwrap();
        std::fs::write(dt.join("serial-number"), b"10000000abcdef01\0").unwrap();
        std::fs::write(dt.join("system-id"), b"SYS-1\0").unwrap();
        let v = system_vendor(&root);
        assert_eq!(v.product_name, "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(v.serial_number, "10000000abcdef01");
        std::fs::write(dt.join("serial-number"), b"\0").unwrap();
        assert_eq!(system_vendor(&root).serial_number, "SYS-1");
        // DMI fills what the tree lacks (u-boot with SMBIOS, EFI on DT)
        let id = dir.join("sys/class/dmi/id");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("sys_vendor"), "QEMU\n").unwrap();
        std::fs::write(id.join("product_name"), "QEMU Virtual Machine\n").unwrap();
        std::fs::write(id.join("bios_vendor"), "EFI Development Kit II / OVMF\n").unwrap();
        let v = system_vendor(&root);
        assert_eq!(v.product_name, "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(v.manufacturer, "QEMU");
        assert_eq!(v.firmware.vendor, "EFI Development Kit II / OVMF");
        // no tree (ACPI boot): DMI alone, as before
        std::fs::remove_dir_all(dir.join("sys/firmware")).unwrap();
        let v = system_vendor(&root);
        assert_eq!(v.product_name, "QEMU Virtual Machine");
        assert_eq!(v.serial_number, "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cpu_and_memory_on_fixtures() {
        let c = cpu::cpu(&fixture("server"));
        assert_eq!((c.count, c.socket_count), (8, 2));
        assert_eq!(c.frequency, "3700.0000");
        assert_eq!(c.architecture, "x86_64");
        let c = cpu::cpu(&fixture("odd"));
        assert_eq!((c.count, c.socket_count, c.frequency.as_str()), (2, 1, ""));
        assert!(c.flags.is_empty());
        assert_eq!(
            cpu::hotplug_memory(&fixture("vm-virtio")),
            Some(24576 << 20)
        );
    }
}
