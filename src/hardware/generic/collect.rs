//! Inventory collection from /sys, /proc and /dev: IPA's
//! `GenericHardwareManager.list_hardware_info` (protocol §5.4) without
//! lshw, lscpu, lsblk, dmidecode, ipmitool or biosdevname, plus the
//! `pci-devices` and `numa-topology` inspection collectors (§6).
//!
//! Every file is read once per inventory; the BMC answer is cached per
//! root, as IPA caches it (`_bmc_cache`), because a BMC takes a few
//! round trips per channel.

mod bmc;
mod cpu;
pub mod dmi;
mod net;

use crate::config::Env;
use crate::error::{AgentError, Result};
use crate::hardware::inventory::{BootInfo, Firmware, Inventory, Memory, SystemVendor};
use crate::root::Root;
use crate::util::lock;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;

pub use bmc::BmcInfo;

pub fn list_hardware_info(env: &Env) -> Result<Inventory> {
    let root = env.root;
    let tables = net::AddressTables::read(root);
    let interfaces = net::interface_names(root)
        .iter()
        .filter_map(|n| net::interface(root, &tables, n))
        .collect();
    let disks = crate::disk::list::list_block_devices(root, false)?;
    let total = cpu::mem_total(root);
    let dmi_bytes = dmi::memory_device_bytes(root);
    let physical_mb = cpu::physical_mb(dmi_bytes, total, || cpu::hotplug_memory(root));
    let (bmc_address, bmc_v6address, bmc_mac) = if env.lookup.clone().agent_skip_bmc_detect {
        log::info!("Skipping BMC detection as requested by Ironic");
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
fn system_vendor(root: &Root) -> SystemVendor {
    let id = |k: &str| {
        root.read(format!("/sys/class/dmi/id/{k}"))
            .unwrap_or_default()
    };
    SystemVendor {
        product_name: id("product_name"),
        serial_number: id("product_serial"),
        manufacturer: id("sys_vendor"),
        firmware: Firmware {
            vendor: id("bios_vendor"),
            version: id("bios_version"),
            build_date: id("bios_date"),
        },
    }
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
            log::warn!("Cannot get BMC address: opening {}: {e}", dev.display());
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
            log::warn!("Failed to gather vendor id, product id or pci class from PCI device {bus}");
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
        Root::new(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
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
        assert_eq!(v.as_array().unwrap().len(), 5);
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
