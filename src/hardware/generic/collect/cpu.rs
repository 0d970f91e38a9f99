//! CPU and memory facts IPA takes from `lscpu`, psutil and `lshw`, read
//! from the same kernel files those tools read.

use crate::hardware::inventory::Cpu;
use crate::root::Root;
use std::collections::BTreeSet;

/// A CPU list as sysfs prints it ("0-3,8,10-11") → the CPU numbers.
/// Malformed pieces are skipped; ranges are capped so a hostile file
/// cannot make us allocate without bound.
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    const MAX: u32 = 1 << 16;
    let mut out = vec![];
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if a <= b && b < MAX {
                        out.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(a) = part.parse::<u32>() {
                    if a < MAX {
                        out.push(a);
                    }
                }
            }
        }
    }
    out
}

/// The first processor block of /proc/cpuinfo as key → value, keys
/// lower-cased (IPA's `create_cpu_info_dict`), plus the number of
/// `processor` entries and the distinct `physical id`s.
pub struct CpuInfo {
    first: Vec<(String, String)>,
    pub processors: u64,
    pub physical_ids: BTreeSet<String>,
}

impl CpuInfo {
    pub fn parse(text: &str) -> CpuInfo {
        let mut first = vec![];
        let mut processors = 0;
        let mut physical_ids = BTreeSet::new();
        let mut in_first = true;
        for line in text.lines() {
            if line.trim().is_empty() {
                if !first.is_empty() {
                    in_first = false;
                }
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            if k == "processor" {
                processors += 1;
            }
            if k == "physical id" {
                physical_ids.insert(v.clone());
            }
            if in_first {
                first.push((k, v));
            }
        }
        CpuInfo {
            first,
            processors,
            physical_ids,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.first
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// lscpu's "Architecture" is `uname -m`, which /proc/sys/kernel/arch
/// also holds (Linux ≥ 5.x); without it, the architecture this binary was
/// built for.
pub fn architecture(root: &Root) -> String {
    root.read_nonempty("/proc/sys/kernel/arch")
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// IPA's `get_cpus` without lscpu: model name, the maximum frequency as
/// lscpu formats `CPU max MHz` ("3700.0000", else "" as lscpu ≥ 2.38
/// reports when cpufreq is absent), `CPU(s)` (present CPUs), `Socket(s)`
/// (distinct physical packages), architecture and flags.
pub fn cpu(root: &Root) -> Cpu {
    let info = CpuInfo::parse(&root.read("/proc/cpuinfo").unwrap_or_default());
    let sys = "/sys/devices/system/cpu";
    let present = root
        .read(format!("{sys}/present"))
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    let count = if present.is_empty() {
        info.processors
    } else {
        present.len() as u64
    };
    let mut max_khz: Option<u64> = None;
    let mut packages = BTreeSet::new();
    for n in &present {
        if let Some(f) = root.read_u64(format!("{sys}/cpu{n}/cpufreq/cpuinfo_max_freq")) {
            max_khz = Some(max_khz.map_or(f, |m| m.max(f)));
        }
        if let Some(p) = root
            .read(format!("{sys}/cpu{n}/topology/physical_package_id"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|p| *p >= 0)
        {
            packages.insert(p);
        }
    }
    let socket_count = if !packages.is_empty() {
        packages.len() as u64
    } else if !info.physical_ids.is_empty() {
        info.physical_ids.len() as u64
    } else {
        u64::from(count > 0)
    };
    let flags = info
        .get("flags")
        .or_else(|| info.get("features"))
        .unwrap_or("");
    // IPA drops a flags line that looks malformed (upper case, symbols).
    let flags: Vec<String> = if flags
        .bytes()
        .any(|b| b.is_ascii_uppercase() || b"!@#$%^&*()+{}|:\"<>?".contains(&b))
    {
        crate::util::log_at!(Warn, "Malformed CPU flags information: {flags}");
        vec![]
    } else {
        flags.split_whitespace().map(String::from).collect()
    };
    Cpu {
        model_name: info
            .get("model name")
            .or_else(|| info.get("cpu model"))
            .or_else(|| info.get("model"))
            .or_else(|| arm_model_name(&info))
            .unwrap_or("")
            .to_string(),
        frequency: max_khz
            .map(|k| format!("{:.4}", k as f64 / 1000.0))
            .unwrap_or_default(),
        count,
        architecture: architecture(root),
        flags,
        socket_count,
    }
}

/// ARM cores by (implementer, part): the 64-bit entries of lscpu's
/// lscpu-arm.c, with its spelling, which IPA reports as lscpu's "Model
/// name". Only in aarch64 builds (and tests): an x86_64 machine's cpuinfo
/// always has "model name", and the static x86_64 binary has no room to
/// spare under its size budget; an x86_64 agent pointed at an arm64
/// fixture root (`--root`) leaves the core unnamed.
#[cfg(any(target_arch = "aarch64", test))]
const ARM_PARTS: &[(u32, u32, &str)] = &[
    (0x41, 0xd02, "Cortex-A34"),
    (0x41, 0xd03, "Cortex-A53"),
    (0x41, 0xd04, "Cortex-A35"),
    (0x41, 0xd05, "Cortex-A55"),
    (0x41, 0xd06, "Cortex-A65"),
    (0x41, 0xd07, "Cortex-A57"),
    (0x41, 0xd08, "Cortex-A72"),
    (0x41, 0xd09, "Cortex-A73"),
    (0x41, 0xd0a, "Cortex-A75"),
    (0x41, 0xd0b, "Cortex-A76"),
    (0x41, 0xd0c, "Neoverse-N1"),
    (0x41, 0xd0d, "Cortex-A77"),
    (0x41, 0xd0e, "Cortex-A76AE"),
    (0x41, 0xd40, "Neoverse-V1"),
    (0x41, 0xd41, "Cortex-A78"),
    (0x41, 0xd42, "Cortex-A78AE"),
    (0x41, 0xd43, "Cortex-A65AE"),
    (0x41, 0xd44, "Cortex-X1"),
    (0x41, 0xd46, "Cortex-A510"),
    (0x41, 0xd47, "Cortex-A710"),
    (0x41, 0xd48, "Cortex-X2"),
    (0x41, 0xd49, "Neoverse-N2"),
    (0x41, 0xd4a, "Neoverse-E1"),
    (0x41, 0xd4b, "Cortex-A78C"),
    (0x41, 0xd4c, "Cortex-X1C"),
    (0x41, 0xd4d, "Cortex-A715"),
    (0x41, 0xd4e, "Cortex-X3"),
    (0x41, 0xd4f, "Neoverse-V2"),
    (0x42, 0x516, "ThunderX2"),
    (0x43, 0x0a0, "ThunderX"),
    (0x43, 0x0a1, "ThunderX-88XX"),
    (0x43, 0x0a2, "ThunderX-81XX"),
    (0x43, 0x0a3, "ThunderX-83XX"),
    (0x43, 0x0af, "ThunderX2-99xx"),
    (0x43, 0x0b0, "OcteonTX2"),
    (0x43, 0x0b8, "ThunderX3-T110"),
    (0x46, 0x001, "A64FX"),
    (0x48, 0xd01, "Kunpeng-920"),
    (0x48, 0xd40, "Cortex-A76"),
    (0x4e, 0x000, "Denver"),
    (0x4e, 0x003, "Denver 2"),
    (0x4e, 0x004, "Carmel"),
    (0x50, 0x000, "X-Gene"),
    (0x51, 0x800, "Falkor-V1/Kryo"),
    (0x51, 0xc00, "Falkor"),
    (0x51, 0xc01, "Saphira"),
    (0x61, 0x022, "Icestorm-M1"),
    (0x61, 0x023, "Firestorm-M1"),
    (0x70, 0x662, "FTC662"),
    (0x70, 0x663, "FTC663"),
    (0xc0, 0xac3, "Ampere-1"),
    (0xc0, 0xac4, "Ampere-1a"),
];

/// arm64's /proc/cpuinfo has no "model name", only the MIDR fields "CPU
/// implementer" and "CPU part" (hex): lscpu names the core from them
/// (`arm_ids_decode`), and leaves it unnamed when either is 0 or unknown
/// (qemu's `-cpu max` is implementer 0, "reserved for software use").
#[cfg(any(target_arch = "aarch64", test))]
fn arm_model_name(info: &CpuInfo) -> Option<&'static str> {
    let hex = |k: &str| {
        info.get(k)
            .and_then(|v| v.strip_prefix("0x"))
            .and_then(|v| u32::from_str_radix(v, 16).ok())
            .filter(|v| *v > 0)
    };
    let (implementer, part) = (hex("cpu implementer")?, hex("cpu part")?);
    ARM_PARTS
        .iter()
        .find(|(i, p, _)| *i == implementer && *p == part)
        .map(|(_, _, name)| *name)
}

#[cfg(not(any(target_arch = "aarch64", test)))]
fn arm_model_name(_: &CpuInfo) -> Option<&'static str> {
    None
}

/// `/proc/meminfo` MemTotal in bytes (psutil's `virtual_memory().total`).
pub fn mem_total(root: &Root) -> Option<u64> {
    let text = root.read("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Online memory in hot-pluggable blocks (lshw's `get_hotplug_size`):
/// /sys/devices/system/memory/block_size_bytes (hex) times the memoryN
/// blocks whose `online` is 1.
pub fn hotplug_memory(root: &Root) -> Option<u64> {
    let dir = "/sys/devices/system/memory";
    let block =
        u64::from_str_radix(&root.read_nonempty(format!("{dir}/block_size_bytes"))?, 16).ok()?;
    let online = root
        .list(dir)
        .into_iter()
        .filter(|n| {
            n.strip_prefix("memory")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|n| root.read(format!("{dir}/{n}/online")).as_deref() == Some("1"))
        .count() as u64;
    (online > 0).then(|| online.saturating_mul(block))
}

/// `physical_mb` as IPA gets it from lshw's memory node: the DMI memory
/// devices when they add up to more than the kernel's usable memory,
/// else the larger of the usable memory and the online hot-plug blocks
/// (lshw `scan_memory`), in MiB.
/// `hotplug` is only consulted (it reads one file per memory block) when
/// DMI does not settle it.
pub fn physical_mb(
    dmi_bytes: Option<u64>,
    total: Option<u64>,
    hotplug: impl FnOnce() -> Option<u64>,
) -> Option<u64> {
    let logical = total.unwrap_or(0);
    if let Some(d) = dmi_bytes.filter(|d| *d > logical) {
        return Some(d >> 20);
    }
    let size = logical.max(hotplug().unwrap_or(0));
    (size > 0).then_some(size >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("3-1,x,4-"), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("0-4294967295"), Vec::<u32>::new());
    }

    #[test]
    fn cpuinfo_blocks() {
        let t = "processor\t: 0\nmodel name\t: AMD EPYC\nphysical id\t: 0\nflags\t\t: fpu vme\n\n\
                 processor\t: 1\nmodel name\t: AMD EPYC\nphysical id\t: 1\nflags\t\t: fpu vme\n\n";
        let i = CpuInfo::parse(t);
        assert_eq!(i.processors, 2);
        assert_eq!(i.get("model name"), Some("AMD EPYC"));
        assert_eq!(i.get("flags"), Some("fpu vme"));
        assert_eq!(i.physical_ids.len(), 2);
        let arm = CpuInfo::parse(
            "processor : 0\nBogoMIPS : 50.00\nFeatures : fp asimd\nCPU part : 0xd0c\n",
        );
        assert_eq!(arm.get("features"), Some("fp asimd"));
    }

    /// /proc/cpuinfo of an arm64 kernel (6.1): no "model name", no
    /// "physical id", the flags as "Features", the core as MIDR fields.
    const NEOVERSE_N1: &str = "processor\t: 0\nBogoMIPS\t: 50.00\n\
        Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid \
        asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\n\
        CPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n\
        processor\t: 1\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n\
        CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n";

    #[test]
    fn arm64_cpuinfo_names_the_core_as_lscpu() {
        let i = CpuInfo::parse(NEOVERSE_N1);
        assert_eq!(i.processors, 2);
        assert!(i.physical_ids.is_empty());
        assert_eq!(arm_model_name(&i), Some("Neoverse-N1"));
        let name = |imp: &str, part: &str| {
            arm_model_name(&CpuInfo::parse(&format!(
                "processor : 0\nCPU implementer : {imp}\nCPU part : {part}\n"
            )))
        };
        assert_eq!(name("0xc0", "0xac3"), Some("Ampere-1"));
        assert_eq!(name("0x48", "0xd01"), Some("Kunpeng-920"));
        assert_eq!(name("0x41", "0xd4f"), Some("Neoverse-V2"));
        // qemu -cpu max (implementer 0), an unknown part, garbage: unnamed
        assert_eq!(name("0x00", "0x051"), None);
        assert_eq!(name("0x41", "0xfff"), None);
        assert_eq!(name("0x41", "d0c"), None);
        assert_eq!(arm_model_name(&CpuInfo::parse("processor : 0\n")), None);
    }

    #[test]
    fn arm64_cpu_without_topology_or_cpufreq() {
        let dir = std::env::temp_dir().join(format!("cpu-arm64-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(dir.join("sys/devices/system/cpu/cpu0/topology")).unwrap();
        std::fs::create_dir_all(dir.join("sys/devices/system/cpu/cpu1/topology")).unwrap();
        std::fs::write(dir.join("proc/cpuinfo"), NEOVERSE_N1).unwrap();
        std::fs::write(dir.join("proc/sys/kernel/arch"), "aarch64\n").unwrap();
        std::fs::write(dir.join("sys/devices/system/cpu/present"), "0-1\n").unwrap();
        // a device tree without cpu-map sockets: no package id
        for n in 0..2 {
            std::fs::write(
                dir.join(format!(
                    "sys/devices/system/cpu/cpu{n}/topology/physical_package_id"
                )),
                "-1\n",
            )
            .unwrap();
        }
        let c = cpu(&Root::new(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.model_name, "Neoverse-N1");
        assert_eq!(c.architecture, "aarch64");
        assert_eq!((c.count, c.socket_count), (2, 1));
        assert_eq!(c.frequency, "");
        assert_eq!(c.flags.first().map(String::as_str), Some("fp"));
        assert!(c.flags.iter().any(|f| f == "asimd"));
    }

    #[test]
    fn physical_memory_like_lshw() {
        // the sample VM: no DMI, 192 online 128 MiB blocks beat MemTotal
        assert_eq!(
            physical_mb(None, Some(25276510208), || Some(192 << 27)),
            Some(24576)
        );
        // DMI banks win when they exceed the usable memory
        assert_eq!(
            physical_mb(Some(64 << 30), Some(63 << 30), || None),
            Some(65536)
        );
        // implausible DMI (less than the kernel sees) is ignored
        assert_eq!(
            physical_mb(Some(1 << 30), Some(8 << 30), || None),
            Some(8192)
        );
        assert_eq!(physical_mb(None, None, || None), None);
    }
}
