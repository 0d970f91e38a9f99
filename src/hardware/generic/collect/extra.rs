//! The `extra-hardware` inspection collector: what IPA gets by running
//! `hardware-detect` (the `hardware` library, redhat-cip/hardware), a list
//! of `[category, item, key, value]`, here read from /sys, /proc and the
//! SMBIOS table instead of lshw, lscpu, dmidecode and friends. Ironic's
//! `extra-hardware` hook turns it into `plugin_data.extra[category][item]
//! [key]` for inspection rules.
//!
//! Rows in `hardware-detect`'s order, with its names and value types
//! (strings, except lscpu's numbers: ints, and MHz as floats):
//! * `disk` (diskinfo.py): `logical/count`, then per disk (sd*, hd*, vd*,
//!   nvme*, size > 0) `size` (decimal GB, truncated), `vendor`, `model`,
//!   `rev` (or `revision` from the device's parent, as its fallback
//!   reads), `optimal_io_size`, `physical_block_size`, `rotational`,
//!   `nr_requests`, `scheduler`, the SCSI cache flags (`Write Cache
//!   Enable`, `Read Cache Disable`) and `id`/`wwn-id`/`scsi-id` from
//!   /dev/disk/by-id;
//! * `system`/`firmware`/`memory`/`network` (system.py, from lshw's
//!   DMI-based nodes): `system/product` serial, name (with the SKU in
//!   brackets, as lshw), vendor, version, uuid; `system/motherboard`;
//!   `firmware/bios` version, date, vendor; `memory/total/size` and the
//!   banks (`bank:N`, `bank:A:N` with several arrays, none for a lone
//!   bank, which lshw calls `bank`) with size, clock, description,
//!   vendor, product, serial, slot, then `memory/banks/count`; per
//!   interface (physical NICs, VLANs, bonds) businfo, size, ipv4 (+
//!   netmask, cidr, network), link, driver, duplex, speed, latency,
//!   serial; the quirk fix of `0123456789` system serials;
//! * `cpu` and `numa` (lscpu's summary): `physical/number`, `smt`, per
//!   socket vendor, product, cores, threads, family, model, stepping,
//!   architecture, caches ("32 KiB (2 instances)"), min/max/current MHz,
//!   flags, threads_per_core; `logical/number` and governors; NUMA node
//!   count, per node cpu_count and cpu_mask;
//! * `system/os` (vendor, version from /etc/os-release where lsb_release
//!   would answer) and `system/kernel` (version, arch, cmdline).
//!
//! Not produced (each needs a tool or an ioctl the ramdisk does not
//! carry): lshw's PCI names of NICs (`vendor`, `product`: pci.ids), NIC
//! `firmware` and `autonegotiation` and the `ethtool -a/-k` rows, SMART,
//! the RAID controllers' CLIs (hpssacli, megacli, cli64), `ipmi` (ipmitool
//! lan print, sdr), infiniband, sensors, `rtc`, `hw/auxv`, the `ahci`
//! dmesg flags, HP BIOS settings, benchmarks, and `lldp` rows from
//! lldptool (this agent's own LLDP is in the inventory and `lldp_raw`).

use super::{cpu, dmi, net};
use crate::root::Root;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// The rows, in order.
struct Rows(Vec<Value>);

impl Rows {
    // one copy of the row building, not one per value type (binary size)
    #[inline(never)]
    fn row(&mut self, cat: &str, item: &str, key: &str, value: Value) {
        self.0.push(json!([cat, item, key, value]));
    }

    fn add(&mut self, cat: &str, item: &str, key: &str, value: impl Into<Value>) {
        self.row(cat, item, key, value.into());
    }

    /// A string row, left out when empty (lshw omits empty fields).
    fn add_str(&mut self, cat: &str, item: &str, key: &str, value: Option<String>) {
        if let Some(v) = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            self.add(cat, item, key, v);
        }
    }
}

/// `hardware-detect`'s list for this machine.
pub fn detect(root: &Root) -> Vec<Value> {
    let mut r = Rows(vec![]);
    disks(root, &mut r);
    system(root, &mut r);
    memory(root, &mut r);
    network(root, &mut r);
    fix_bad_serial(&mut r);
    cpus(root, &mut r);
    os(root, &mut r);
    r.0
}

// ---------------------------------------------------------------- disk

fn disks(root: &Root, r: &mut Rows) {
    let names: Vec<String> = root
        .list("/sys/block")
        .into_iter()
        .filter(|n| {
            let b = n.as_bytes();
            (b.len() > 1 && b[1] == b'd' && b"shv".contains(&b[0])) || n.starts_with("nvme")
        })
        .collect();
    let sized: Vec<(String, u64)> = names
        .into_iter()
        .map(|n| {
            let sectors = root.read_u64(format!("/sys/block/{n}/size")).unwrap_or(0);
            let gb = (u128::from(sectors) * 512 / 1_000_000_000) as u64;
            (n, gb)
        })
        .filter(|(_, gb)| *gb > 0)
        .collect();
    r.add("disk", "logical", "count", sized.len().to_string());
    let by_id = disk_ids(root);
    for (name, gb) in &sized {
        let base = format!("/sys/block/{name}");
        r.add("disk", name, "size", gb.to_string());
        for info in [
            "device/vendor",
            "device/model",
            "device/rev",
            "queue/optimal_io_size",
            "queue/physical_block_size",
            "queue/rotational",
            "queue/nr_requests",
        ] {
            // diskinfo.py: a missing device/rev is looked for as
            // device/device/revision; anything missing, under device/
            let mut path = format!("{base}/{info}");
            let mut key = info.split('/').nth(1).unwrap_or(info);
            if !root.exists(&path) {
                if info == "device/rev" {
                    key = "revision";
                    path = format!("{base}/device/device/revision");
                } else {
                    path = format!("{base}/device/{info}");
                }
            }
            if let Some(v) = root.read(&path) {
                let first = v.lines().next().unwrap_or("").trim().to_string();
                r.add("disk", name, key, first);
            }
        }
        if let Some(s) = root.read(format!("{base}/queue/scheduler")) {
            if let Some(sched) = s.split('[').nth(1).and_then(|x| x.split(']').next()) {
                r.add("disk", name, "scheduler", sched.to_string());
            }
        }
        if !name.starts_with("nvme") {
            if let Some(addr) = root.link_name(format!("{base}/device")) {
                let p = format!("{base}/device/scsi_disk/{addr}/cache_type");
                if let Some(t) = root.read(p) {
                    let (wce, rcd) = match t.trim() {
                        "write through" => ("0", "0"),
                        "none" => ("0", "1"),
                        t if t.contains("daft") => ("1", "1"),
                        _ => ("1", "0"),
                    };
                    r.add("disk", name, "Write Cache Enable", wce);
                    r.add("disk", name, "Read Cache Disable", rcd);
                }
            }
        }
        for (_, entry) in by_id.iter().filter(|(dev, _)| dev == name) {
            let key = if entry.starts_with("wwn") {
                "wwn-id"
            } else if entry.starts_with("scsi") {
                "scsi-id"
            } else {
                "id"
            };
            r.add("disk", name, key, entry.clone());
        }
    }
}

/// /dev/disk/by-id: (device name, link name), in link name order.
fn disk_ids(root: &Root) -> Vec<(String, String)> {
    root.list("/dev/disk/by-id")
        .into_iter()
        .filter_map(|e| Some((root.link_name(format!("/dev/disk/by-id/{e}"))?, e)))
        .collect()
}

// ---------------------------------------------------------------- system

fn dmi_id(root: &Root, key: &str) -> Option<String> {
    root.read(format!("/sys/class/dmi/id/{key}"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn system(root: &Root, r: &mut Rows) {
    let p = "product";
    r.add_str("system", p, "serial", dmi_id(root, "product_serial"));
    let name = dmi_id(root, "product_name").map(|n| match dmi_id(root, "product_sku") {
        Some(sku) => format!("{n} ({sku})"),
        None => n,
    });
    r.add_str("system", p, "name", name);
    r.add_str("system", p, "vendor", dmi_id(root, "sys_vendor"));
    r.add_str("system", p, "version", dmi_id(root, "product_version"));
    // dmidecode prints the UUID upper-case, and "Not Settable"/"Not
    // Present" (first word "Not", dropped) for all-zero/all-one ones
    if let Some(u) = dmi_id(root, "product_uuid") {
        let hex: String = u.chars().filter(|c| *c != '-').collect();
        if !hex.chars().all(|c| c == '0') && !hex.chars().all(|c| c == 'f' || c == 'F') {
            r.add("system", p, "uuid", u.to_ascii_uppercase());
        }
    }
    for (key, file) in [
        ("name", "board_name"),
        ("vendor", "board_vendor"),
        ("version", "board_version"),
        ("serial", "board_serial"),
    ] {
        r.add_str("system", "motherboard", key, dmi_id(root, file));
    }
    for (key, file) in [
        ("version", "bios_version"),
        ("date", "bios_date"),
        ("vendor", "bios_vendor"),
    ] {
        r.add_str("firmware", "bios", key, dmi_id(root, file));
    }
}

/// `detect_utils.fix_bad_serial`: a placeholder system serial is
/// replaced by the UUID, else the board serial, else the first NIC's MAC.
fn fix_bad_serial(r: &mut Rows) {
    let get = |r: &Rows, c: &str, i: &str, k: &str| {
        r.0.iter()
            .find(|v| v[0] == c && v[1] == i && v[2] == k)
            .and_then(|v| v[3].as_str().map(String::from))
    };
    let Some(pos) =
        r.0.iter()
            .position(|v| v[0] == "system" && v[1] == "product" && v[2] == "serial")
    else {
        return;
    };
    if !matches!(r.0[pos][3].as_str(), Some("0123456789" | "0000000000")) {
        return;
    }
    let nic =
        r.0.iter()
            .find(|v| v[0] == "network" && v[2] == "serial")
            .and_then(|v| v[3].as_str().map(|m| m.replace(':', "")));
    let new = get(r, "system", "product", "uuid")
        .or_else(|| get(r, "system", "motherboard", "serial"))
        .or(nic)
        .filter(|s| !s.is_empty());
    if let Some(new) = new {
        r.0.remove(pos);
        r.add("system", "product", "serial", new);
    }
}

// ---------------------------------------------------------------- memory

/// lshw's description of a bank: form factor, type, details, speed.
fn bank_description(f: &serde_json::Map<String, Value>, empty: bool) -> String {
    let field = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
    let mut words: Vec<String> = vec![];
    for k in ["Form Factor", "Type", "Type Detail"] {
        let v = field(k);
        if !v.is_empty() && !["Unknown", "Other", "None", "<OUT OF SPEC>"].contains(&v) {
            words.push(v.to_string());
        }
    }
    if let Some(mhz) = speed_mhz(field("Speed")) {
        words.push(format!("{mhz} MHz ({:.1} ns)", 1000.0 / mhz as f64));
    }
    if empty {
        words.push("[empty]".into());
    }
    words.join(" ")
}

fn speed_mhz(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok().filter(|v| *v > 0)
}

fn memory(root: &Root, r: &mut Rows) {
    let arrays = dmi::memory_arrays(root);
    if arrays.is_empty() {
        // no SMBIOS: lshw sizes its memory node from the kernel
        let total = cpu::physical_mb(None, cpu::mem_total(root), || cpu::hotplug_memory(root));
        if let Some(mb) = total {
            r.add("memory", "total", "size", (mb << 20).to_string());
        }
        return;
    }
    let several = arrays.len() > 1;
    let mut banks = 0;
    for (a, (_, devices)) in arrays.iter().enumerate() {
        let total: u64 = devices.iter().filter_map(|(s, _)| *s).sum();
        if total > 0 {
            r.add("memory", "total", "size", total.to_string());
        }
        if devices.len() < 2 {
            continue; // lshw names a lone bank "bank": no rows
        }
        for (i, (size, f)) in devices.iter().enumerate() {
            banks += 1;
            let id = if several {
                format!("bank:{a}:{i}")
            } else {
                format!("bank:{i}")
            };
            let field = |k: &str| {
                f.get(k)
                    .and_then(Value::as_str)
                    .filter(|v| !["Not Specified", "Unknown", "<BAD INDEX>"].contains(v))
                    .map(String::from)
            };
            if let Some(s) = size {
                r.add("memory", &id, "size", s.to_string());
            }
            if let Some(mhz) = field("Speed").as_deref().and_then(speed_mhz) {
                r.add("memory", &id, "clock", (mhz * 1_000_000).to_string());
            }
            r.add(
                "memory",
                &id,
                "description",
                bank_description(f, size.is_none()),
            );
            r.add_str("memory", &id, "vendor", field("Manufacturer"));
            r.add_str("memory", &id, "product", field("Part Number"));
            r.add_str("memory", &id, "serial", field("Serial Number"));
            r.add_str("memory", &id, "slot", field("Locator"));
        }
    }
    if banks > 0 {
        r.add("memory", "banks", "count", banks.to_string());
    }
}

// ---------------------------------------------------------------- network

/// lshw's bus info of a NIC: `pci@0000:18:00.0`, `virtio@2`, `usb@…`.
fn businfo(root: &Root, name: &str) -> Option<String> {
    let dev = root.link_name(format!("/sys/class/net/{name}/device"))?;
    if let Some(n) = dev.strip_prefix("virtio") {
        return Some(format!("virtio@{n}"));
    }
    if dev.len() == 12 && dev.as_bytes()[4] == b':' && dev.as_bytes()[7] == b':' {
        return Some(format!("pci@{dev}"));
    }
    None
}

/// lshw's speed setting: "100Mbit/s", "1Gbit/s", "25Gbit/s".
fn speed_text(mbps: u64) -> String {
    if mbps >= 1000 && mbps % 1000 == 0 {
        format!("{}Gbit/s", mbps / 1000)
    } else {
        format!("{mbps}Mbit/s")
    }
}

fn network(root: &Root, r: &mut Rows) {
    let tables = net::AddressTables::read(root);
    let route = root.read("/proc/net/route").unwrap_or_default();
    for name in net::interface_names(root) {
        let base = format!("/sys/class/net/{name}");
        let n = name.as_str();
        r.add_str("network", n, "businfo", businfo(root, n));
        let speed = root
            .read(format!("{base}/speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .map(|s| s as u64);
        if let Some(s) = speed {
            r.add("network", n, "size", (s * 1_000_000).to_string());
        }
        if let Some(ip) = tables.ipv4(n) {
            r.add("network", n, "ipv4", ip.clone());
            let mask = ip
                .parse::<Ipv4Addr>()
                .ok()
                .and_then(|a| Some((a, net::ipv4_netmask(&route, n, a)?)));
            if let Some((a, m)) = mask {
                let bits = u32::from(m).count_ones();
                r.add("network", n, "ipv4-netmask", m.to_string());
                r.add("network", n, "ipv4-cidr", bits.to_string());
                let netw = Ipv4Addr::from(u32::from(a) & u32::from(m));
                r.add("network", n, "ipv4-network", netw.to_string());
            }
        }
        let carrier = root.read(format!("{base}/carrier"));
        let link = if carrier.as_deref() == Some("1") {
            "yes"
        } else {
            "no"
        };
        r.add("network", n, "link", link);
        r.add_str(
            "network",
            n,
            "driver",
            root.link_name(format!("{base}/device/driver")),
        );
        let duplex = root
            .read(format!("{base}/duplex"))
            .filter(|d| d != "unknown");
        r.add_str("network", n, "duplex", duplex);
        if let Some(s) = speed {
            r.add("network", n, "speed", speed_text(s));
        }
        // the PCI latency timer: byte 0x0d of the configuration space
        if businfo(root, n).is_some_and(|b| b.starts_with("pci@")) {
            if let Ok(cfg) = std::fs::read(root.path(format!("{base}/device/config"))) {
                if let Some(l) = cfg.get(0x0d) {
                    r.add("network", n, "latency", l.to_string());
                }
            }
        }
        let mac = root.read_nonempty(format!("{base}/address"));
        r.add_str("network", n, "serial", mac.map(|m| m.to_ascii_lowercase()));
    }
}

// ---------------------------------------------------------------- cpu

/// A byte count as lscpu prints cache sizes ("32 KiB", "1.5 MiB").
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    let mut v = bytes as f64;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    let rounded = (v * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{} {}", rounded as u64, units[i])
    } else {
        format!("{rounded:.1} {}", units[i])
    }
}

/// sysfs cache sizes ("32K", "1024K", "16M") in bytes.
fn cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1024),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// lscpu's cache lines: (name, "total (N instances)"), from every CPU's
/// cache/index* (an instance is one distinct shared_cpu_list).
fn caches(root: &Root, cpus: &[u32]) -> Vec<(String, String)> {
    let sys = "/sys/devices/system/cpu";
    // (name, size of one instance, distinct sharing sets)
    let mut seen: Vec<(String, u64, Vec<String>)> = vec![];
    for c in cpus {
        let dir = format!("{sys}/cpu{c}/cache");
        for idx in root
            .list(&dir)
            .into_iter()
            .filter(|i| i.starts_with("index"))
        {
            let d = format!("{dir}/{idx}");
            let (Some(level), Some(ty), Some(size)) = (
                root.read(format!("{d}/level")),
                root.read(format!("{d}/type")),
                root.read(format!("{d}/size")).and_then(|s| cache_size(&s)),
            ) else {
                continue;
            };
            let name = match (level.as_str(), ty.as_str()) {
                ("1", "Data") => "l1d cache".to_string(),
                ("1", "Instruction") => "l1i cache".to_string(),
                (l, _) => format!("l{l} cache"),
            };
            let shared = root
                .read(format!("{d}/shared_cpu_list"))
                .unwrap_or_else(|| c.to_string());
            match seen.iter_mut().find(|e| e.0 == name) {
                Some(e) if !e.2.contains(&shared) => e.2.push(shared),
                Some(_) => {}
                None => seen.push((name, size, vec![shared])),
            }
        }
    }
    seen.into_iter()
        .map(|(name, size, sets)| {
            let n = sets.len() as u64;
            let plural = if n == 1 { "instance" } else { "instances" };
            (name, format!("{} ({n} {plural})", human(size * n)))
        })
        .collect()
}

/// A CPU list as lscpu -x prints a mask: "0x3".
fn cpu_mask(cpus: &[u32]) -> String {
    let Some(max) = cpus.iter().max() else {
        return "0x0".into();
    };
    let mut nibbles = vec![0u8; *max as usize / 4 + 1];
    for c in cpus {
        nibbles[*c as usize / 4] |= 1 << (c % 4);
    }
    let hex: String = nibbles
        .iter()
        .rev()
        .map(|n| char::from_digit(u32::from(*n), 16).unwrap_or('0'))
        .collect();
    format!("0x{}", hex.trim_start_matches('0'))
}

/// lscpu's `_maybe_int`: decimal, or hex when it has an "x".
fn maybe_int(v: &str) -> Value {
    let parsed = match v.split_once('x') {
        Some((_, h)) => i64::from_str_radix(h, 16).ok(),
        None => v.parse::<i64>().ok(),
    };
    parsed.map_or_else(|| json!(v), |n| json!(n))
}

fn cpus(root: &Root, r: &mut Rows) {
    let sys = "/sys/devices/system/cpu";
    let info = cpu::CpuInfo::parse(&root.read("/proc/cpuinfo").unwrap_or_default());
    let summary = cpu::cpu(root);
    let mut present = root
        .read(format!("{sys}/present"))
        .map(|s| cpu::parse_cpu_list(&s))
        .unwrap_or_default();
    if present.is_empty() {
        present = (0..summary.count as u32).collect();
    }
    // sockets, cores and threads from the topology, as lscpu counts them
    let mut cores: Vec<(String, String)> = vec![];
    let mut packages: Vec<String> = vec![];
    for c in &present {
        let t = format!("{sys}/cpu{c}/topology");
        let pkg = root.read(format!("{t}/physical_package_id"));
        let core = root.read(format!("{t}/core_id"));
        if let (Some(p), Some(k)) = (pkg, core) {
            if !packages.contains(&p) {
                packages.push(p.clone());
            }
            if !cores.contains(&(p.clone(), k.clone())) {
                cores.push((p, k));
            }
        }
    }
    let sockets = summary.socket_count.max(1);
    let (cores_per_socket, threads_per_core) = if cores.is_empty() {
        (present.len() as u64 / sockets, 1)
    } else {
        let n = cores.len() as u64;
        (
            (n / packages.len().max(1) as u64).max(1),
            (present.len() as u64 / n).max(1),
        )
    };
    r.add("cpu", "physical", "number", sockets);
    if let Some(smt) = root.read(format!("{sys}/smt/control")) {
        r.add("cpu", "physical", "smt", smt);
    }
    let boost = root.read(format!("{sys}/cpufreq/boost")).map(|b| {
        if b == "1" {
            "enabled"
        } else {
            "disabled"
        }
    });
    let caches = caches(root, &present);
    let (mut min_khz, mut max_khz): (Option<u64>, Option<u64>) = (None, None);
    for c in &present {
        let f = format!("{sys}/cpu{c}/cpufreq");
        if let Some(v) = root.read_u64(format!("{f}/cpuinfo_max_freq")) {
            max_khz = Some(max_khz.map_or(v, |m| m.max(v)));
        }
        if let Some(v) = root.read_u64(format!("{f}/cpuinfo_min_freq")) {
            min_khz = Some(min_khz.map_or(v, |m| m.min(v)));
        }
    }
    let mhz = |khz: u64| json!(khz as f64 / 1000.0);
    for socket in 0..sockets {
        let tag = format!("physical_{socket}");
        let t = tag.as_str();
        if let Some(b) = boost {
            r.add("cpu", t, "boost", b);
        }
        if let Some(v) = info.get("vendor_id") {
            r.add("cpu", t, "vendor", v);
        }
        if !summary.model_name.is_empty() {
            r.add("cpu", t, "product", summary.model_name.clone());
        }
        r.add("cpu", t, "cores", cores_per_socket);
        r.add("cpu", t, "threads", threads_per_core * cores_per_socket);
        if let Some(f) = info.get("cpu family").and_then(|f| f.parse::<i64>().ok()) {
            r.add("cpu", t, "family", f);
        }
        if let Some(m) = info.get("model") {
            r.add("cpu", t, "model", maybe_int(m));
        }
        if let Some(s) = info.get("stepping") {
            r.add("cpu", t, "stepping", maybe_int(s));
        }
        r.add("cpu", t, "architecture", summary.architecture.clone());
        for name in ["l1d cache", "l1i cache", "l2 cache", "l3 cache"] {
            if let Some((_, v)) = caches.iter().find(|(n, _)| n == name) {
                r.add("cpu", t, name, v.clone());
            }
        }
        if let Some(k) = min_khz {
            r.add("cpu", t, "min_Mhz", mhz(k));
        }
        if let Some(k) = max_khz {
            r.add("cpu", t, "max_Mhz", mhz(k));
        }
        if let Some(m) = info.get("cpu mhz").and_then(|m| m.parse::<f64>().ok()) {
            r.add("cpu", t, "current_Mhz", m);
        }
        if !summary.flags.is_empty() {
            r.add("cpu", t, "flags", summary.flags.join(" "));
        }
        r.add("cpu", t, "threads_per_core", threads_per_core);
    }
    r.add("cpu", "logical", "number", summary.count);
    for c in 0..summary.count {
        let gov = root
            .read(format!("{sys}/cpufreq/policy{c}/scaling_governor"))
            .or_else(|| root.read(format!("{sys}/cpu{c}/cpufreq/scaling_governor")));
        if let Some(g) = gov {
            r.add("cpu", &format!("logical_{c}"), "governor", g);
        }
    }
    let node_dir = "/sys/devices/system/node";
    let mut nodes: Vec<(u32, Vec<u32>)> = root
        .list(node_dir)
        .into_iter()
        .filter_map(|n| {
            let id = n.strip_prefix("node")?.parse::<u32>().ok()?;
            let list = root
                .read(format!("{node_dir}/{n}/cpulist"))
                .unwrap_or_default();
            Some((id, cpu::parse_cpu_list(&list)))
        })
        .collect();
    if !nodes.is_empty() {
        crate::util::sort_small_by(&mut nodes, |a, b| a.0.cmp(&b.0));
        r.add("numa", "nodes", "count", nodes.len() as u64);
        for (id, list) in nodes {
            let tag = format!("node_{id}");
            r.add("numa", &tag, "cpu_count", list.len() as u64);
            r.add("numa", &tag, "cpu_mask", cpu_mask(&list));
        }
    }
}

// ---------------------------------------------------------------- os

/// `lsb_release -is` / `-ds` where the ramdisk has an os-release, then
/// `uname -r`, `uname -i` and /proc/cmdline.
fn os(root: &Root, r: &mut Rows) {
    let rel = root
        .read("/etc/os-release")
        .or_else(|| root.read("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |k: &str| {
        rel.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(name) = field("NAME") {
        let vendor = name.split_whitespace().next().unwrap_or("").to_string();
        r.add("system", "os", "vendor", vendor);
        r.add_str("system", "os", "version", field("PRETTY_NAME"));
    }
    r.add_str(
        "system",
        "kernel",
        "version",
        root.read("/proc/sys/kernel/osrelease"),
    );
    r.add("system", "kernel", "arch", cpu::architecture(root));
    r.add_str("system", "kernel", "cmdline", root.read("/proc/cmdline"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(1536 << 10), "1.5 MiB");
        assert_eq!(human(22 << 20), "22 MiB");
        assert_eq!(cache_size("32K"), Some(32 << 10));
        assert_eq!(cache_size("16M"), Some(16 << 20));
        assert_eq!(cache_size("x"), None);
        assert_eq!(cpu_mask(&[0, 1]), "0x3");
        assert_eq!(cpu_mask(&[4, 5, 6, 7]), "0xf0");
        assert_eq!(cpu_mask(&[]), "0x0");
        assert_eq!(cpu_mask(&[0, 64]), "0x10000000000000001");
        assert_eq!(speed_text(1000), "1Gbit/s");
        assert_eq!(speed_text(2500), "2500Mbit/s");
        assert_eq!(speed_text(100), "100Mbit/s");
        assert_eq!(maybe_int("85"), json!(85));
        assert_eq!(maybe_int("0x1"), json!(1));
        assert_eq!(maybe_int("r1p2"), json!("r1p2"));
    }
}
