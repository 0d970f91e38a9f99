//! SMBIOS/DMI tables from /sys/firmware/dmi/tables (the kernel exports
//! the entry point and the raw structure table), decoded for:
//!
//! * the `dmi-decode` inspection collector: IPA runs `dmidecode -t bios -t
//!   processor -t memory` and parses the text (`dmi_inspector.py`) into
//!   `{bios: {...}, cpu: [{...}], memory: {..., devices: [{...}]}}` keyed
//!   by dmidecode's field names ("Vendor", "Max Speed", "Size", ...); this
//!   module produces those same keys and value strings from the binary
//!   table (SMBIOS 3.x spec, DSP0134, types 0, 4, 16 and 17, and
//!   dmidecode's wording of the enumerations);
//! * `memory.physical_mb` in the inventory: the sum of the type 17 memory
//!   device sizes.
//!
//! The table comes from firmware and is not trusted: every read is
//! bounds-checked, a structure that runs off the end stops the walk, and
//! nothing here can panic on any input (see the fuzz test).

use crate::root::Root;
use serde_json::{json, Map, Value};

const OUT_OF_SPEC: &str = "<OUT OF SPEC>";
const BAD_INDEX: &str = "<BAD INDEX>";
/// More structures than any real table has; bounds the walk.
const MAX_STRUCTURES: usize = 8192;

/// One structure of the table.
#[derive(Debug)]
pub struct Structure<'a> {
    pub kind: u8,
    pub handle: u16,
    /// The formatted area, header included (`length` bytes).
    data: &'a [u8],
    strings: Vec<&'a [u8]>,
}

impl<'a> Structure<'a> {
    /// Length of the formatted area (the header's length byte).
    pub fn length(&self) -> usize {
        self.data.len()
    }

    pub fn byte(&self, off: usize) -> Option<u8> {
        self.data.get(off).copied()
    }

    pub fn word(&self, off: usize) -> Option<u16> {
        let b = self.data.get(off..off + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn dword(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn qword(&self, off: usize) -> Option<u64> {
        let b = self.data.get(off..off + 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    /// The string a byte at `off` refers to, as dmidecode prints it:
    /// "Not Specified" for index 0, "<BAD INDEX>" past the last string,
    /// control characters replaced by '.'.
    pub fn string_at(&self, off: usize) -> String {
        match self.byte(off) {
            None => BAD_INDEX.into(),
            Some(0) => "Not Specified".into(),
            Some(i) => match self.strings.get(i as usize - 1) {
                None => BAD_INDEX.into(),
                Some(s) => String::from_utf8_lossy(s)
                    .chars()
                    .map(|c| {
                        if (c as u32) < 32 || c as u32 == 127 {
                            '.'
                        } else {
                            c
                        }
                    })
                    .collect::<String>()
                    .trim()
                    .to_string(),
            },
        }
    }

    /// dmidecode's handle line, which IPA keeps as `Handle`.
    fn handle_line(&self) -> String {
        format!(
            "Handle 0x{:04X}, DMI type {}, {} bytes",
            self.handle,
            self.kind,
            self.length()
        )
    }
}

/// Walk a raw structure table. Stops at the end-of-table structure (type
/// 127), at a structure shorter than its header, or where a structure or
/// its string set would run past the end of the data.
pub fn parse_table(d: &[u8]) -> Vec<Structure<'_>> {
    let mut out = vec![];
    let mut pos = 0usize;
    while out.len() < MAX_STRUCTURES {
        let Some(hdr) = d.get(pos..pos + 4) else {
            break;
        };
        let len = hdr[1] as usize;
        if len < 4 {
            break;
        }
        let Some(data) = d.get(pos..pos + len) else {
            break;
        };
        // the string set ends with two NULs (an empty set is just "\0\0")
        let rest = &d[pos + len..];
        let Some(end) = rest.windows(2).position(|w| w == [0, 0]) else {
            break;
        };
        let strings = if end == 0 {
            vec![]
        } else {
            rest[..end].split(|b| *b == 0).collect()
        };
        let s = Structure {
            kind: hdr[0],
            handle: u16::from_le_bytes([hdr[2], hdr[3]]),
            data,
            strings,
        };
        let last = s.kind == 127;
        out.push(s);
        if last {
            break;
        }
        pos += len + end + 2;
    }
    out
}

/// The SMBIOS version from /sys/firmware/dmi/tables/smbios_entry_point
/// (`_SM3_`: bytes 7–8; `_SM_`: bytes 6–7, with dmidecode's fix-ups for
/// known-bad 2.x values), as 0xMMmm; 0 when unknown.
pub fn smbios_version(ep: &[u8]) -> u16 {
    if ep.starts_with(b"_SM3_") && ep.len() >= 9 {
        return u16::from_be_bytes([ep[7], ep[8]]);
    }
    if ep.starts_with(b"_SM_") && ep.len() >= 8 {
        return match u16::from_be_bytes([ep[6], ep[7]]) {
            0x021F | 0x0221 => 0x0203,
            0x0233 => 0x0206,
            v => v,
        };
    }
    0
}

fn read_table(root: &Root) -> Option<(Vec<u8>, u16)> {
    let table = std::fs::read(root.path("/sys/firmware/dmi/tables/DMI")).ok()?;
    let ep =
        std::fs::read(root.path("/sys/firmware/dmi/tables/smbios_entry_point")).unwrap_or_default();
    Some((table, smbios_version(&ep)))
}

/// Size of one memory device (type 17) in bytes; `None` for an empty
/// slot or an unknown size.
pub fn memory_device_size(s: &Structure) -> Option<u64> {
    let size = s.word(0x0C)?;
    match size {
        0 | 0xFFFF => None,
        0x7FFF if s.length() >= 0x20 => {
            let mb = u64::from(s.dword(0x1C)? & 0x7FFF_FFFF);
            (mb > 0).then_some(mb << 20)
        }
        v if v & 0x8000 != 0 => Some(u64::from(v & 0x7FFF) << 10),
        v => Some(u64::from(v) << 20),
    }
}

/// The sum of all memory device sizes, `None` when the table is missing
/// or lists no sized device.
pub fn memory_device_bytes(root: &Root) -> Option<u64> {
    let (table, _) = read_table(root)?;
    let total: u64 = parse_table(&table)
        .iter()
        .filter(|s| s.kind == 17)
        .filter_map(memory_device_size)
        .fold(0u64, |a, b| a.saturating_add(b));
    (total > 0).then_some(total)
}

/// The memory arrays (type 16, by handle, in table order) with their
/// memory devices (type 17, linked by the array handle at 0x04): each
/// device's size in bytes (`None`: empty slot) and its dmidecode fields.
/// Empty when the machine has no SMBIOS table.
pub type MemoryArrays = Vec<(u16, Vec<(Option<u64>, Map<String, Value>)>)>;

pub fn memory_arrays(root: &Root) -> MemoryArrays {
    let Some((table, _)) = read_table(root) else {
        return vec![];
    };
    let structures = parse_table(&table);
    let mut out: MemoryArrays = structures
        .iter()
        .filter(|s| s.kind == 16)
        .map(|s| (s.handle, vec![]))
        .collect();
    for s in structures.iter().filter(|s| s.kind == 17) {
        let array = s.word(0x04).unwrap_or(0xFFFE);
        if let Some((_, devs)) = out.iter_mut().find(|(h, _)| *h == array) {
            devs.push((memory_device_size(s), decode_memory_device(s)));
        }
    }
    out
}

/// The `dmi-decode` inspection collector.
pub fn dmi_decode(root: &Root) -> Value {
    match read_table(root) {
        Some((table, ver)) => decode(&table, ver),
        None => decode(&[], 0),
    }
}

/// Decode a raw table into IPA's `parse_dmi` shape.
pub fn decode(table: &[u8], ver: u16) -> Value {
    let mut bios = Map::new();
    let mut cpus = vec![];
    let mut arrays = vec![];
    let mut devices = vec![];
    for s in parse_table(table) {
        match s.kind {
            0 => bios = decode_bios(&s),
            4 => cpus.push(Value::Object(decode_processor(&s, ver))),
            16 => arrays.push(decode_array(&s)),
            17 => devices.push(Value::Object(decode_memory_device(&s))),
            _ => {}
        }
    }
    // IPA: the first array, its device count summed over all arrays,
    // without its handle; then the devices.
    let mut memory = Map::new();
    if let Some(first) = arrays.first() {
        let total: u64 = arrays
            .iter()
            .filter_map(|a| a.get("Number Of Devices").and_then(|v| v.as_str()))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        memory = first.clone();
        memory.remove("Handle");
        memory.insert("Number Of Devices".into(), json!(total));
    }
    memory.insert("devices".into(), Value::Array(devices));
    json!({"bios": Value::Object(bios), "cpu": cpus, "memory": Value::Object(memory)})
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<String>) {
    m.insert(k.into(), Value::String(v.into()));
}

fn put_list(m: &mut Map<String, Value>, k: &str, v: Vec<String>) {
    m.insert(
        k.into(),
        if v.is_empty() {
            Value::String("None".into())
        } else {
            json!(v)
        },
    );
}

fn table_name(code: u8, first: u8, names: &[&str]) -> String {
    code.checked_sub(first)
        .and_then(|i| names.get(i as usize))
        .map_or(OUT_OF_SPEC, |v| v)
        .to_string()
}

fn bits(code: u64, first_bit: u32, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter(|(i, n)| !n.is_empty() && code & (1u64 << (first_bit + *i as u32)) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

// ---------------------------------------------------------------- type 0

const BIOS_CHARACTERISTICS: [&str; 28] = [
    "ISA is supported",
    "MCA is supported",
    "EISA is supported",
    "PCI is supported",
    "PC Card (PCMCIA) is supported",
    "PNP is supported",
    "APM is supported",
    "BIOS is upgradeable",
    "BIOS shadowing is allowed",
    "VLB is supported",
    "ESCD support is available",
    "Boot from CD is supported",
    "Selectable boot is supported",
    "BIOS ROM is socketed",
    "Boot from PC Card (PCMCIA) is supported",
    "EDD is supported",
    "Japanese floppy for NEC 9800 1.2 MB is supported (int 13h)",
    "Japanese floppy for Toshiba 1.2 MB is supported (int 13h)",
    "5.25\"/360 kB floppy services are supported (int 13h)",
    "5.25\"/1.2 MB floppy services are supported (int 13h)",
    "3.5\"/720 kB floppy services are supported (int 13h)",
    "3.5\"/2.88 MB floppy services are supported (int 13h)",
    "Print screen service is supported (int 5h)",
    "8042 keyboard services are supported (int 9h)",
    "Serial services are supported (int 14h)",
    "Printer services are supported (int 17h)",
    "CGA/mono video services are supported (int 10h)",
    "NEC PC-98",
];
const BIOS_CHARACTERISTICS_X1: [&str; 8] = [
    "ACPI is supported",
    "USB legacy is supported",
    "AGP is supported",
    "I2O boot is supported",
    "LS-120 boot is supported",
    "ATAPI Zip drive boot is supported",
    "IEEE 1394 boot is supported",
    "Smart battery is supported",
];
const BIOS_CHARACTERISTICS_X2: [&str; 5] = [
    "BIOS boot specification is supported",
    "Function key-initiated network boot is supported",
    "Targeted content distribution is supported",
    "UEFI is supported",
    "System is a virtual machine",
];

fn decode_bios(s: &Structure) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "Handle", s.handle_line());
    if s.length() < 0x12 {
        return m;
    }
    put(&mut m, "Vendor", s.string_at(0x04));
    put(&mut m, "Version", s.string_at(0x05));
    put(&mut m, "Release Date", s.string_at(0x08));
    let segment = s.word(0x06).unwrap_or(0);
    if segment != 0 {
        put(&mut m, "Address", format!("0x{segment:04X}0"));
        let runtime = (0x10000 - u32::from(segment)) << 4;
        put(
            &mut m,
            "Runtime Size",
            if runtime & 0x3FF != 0 {
                format!("{runtime} bytes")
            } else {
                format!("{} kB", runtime >> 10)
            },
        );
    }
    put(
        &mut m,
        "ROM Size",
        format!("{} kB", (u32::from(s.byte(0x09).unwrap_or(0)) + 1) << 6),
    );
    let c = s.qword(0x0A).unwrap_or(0);
    let mut chars = if c & (1 << 3) != 0 {
        vec!["BIOS characteristics not supported".to_string()]
    } else {
        bits(c, 4, &BIOS_CHARACTERISTICS)
    };
    if let Some(x1) = s.byte(0x12).filter(|_| s.length() >= 0x13) {
        chars.extend(bits(x1.into(), 0, &BIOS_CHARACTERISTICS_X1));
    }
    if let Some(x2) = s.byte(0x13).filter(|_| s.length() >= 0x14) {
        chars.extend(bits(x2.into(), 0, &BIOS_CHARACTERISTICS_X2));
    }
    m.insert("Characteristics".into(), json!(chars));
    if s.length() >= 0x18 {
        let (a, b, c, d) = (
            s.byte(0x14).unwrap_or(0xFF),
            s.byte(0x15).unwrap_or(0xFF),
            s.byte(0x16).unwrap_or(0xFF),
            s.byte(0x17).unwrap_or(0xFF),
        );
        if a != 0xFF && b != 0xFF {
            put(&mut m, "BIOS Revision", format!("{a}.{b}"));
        }
        if c != 0xFF && d != 0xFF {
            put(&mut m, "Firmware Revision", format!("{c}.{d}"));
        }
    }
    m
}

// ---------------------------------------------------------------- type 4

const PROCESSOR_TYPE: [&str; 6] = [
    "Other",
    "Unknown",
    "Central Processor",
    "Math Processor",
    "DSP Processor",
    "Video Processor",
];

/// SMBIOS processor family codes (DSP0134 7.5.2).
const FAMILIES: &[(u16, &str)] = &[
    (0x01, "Other"),
    (0x02, "Unknown"),
    (0x03, "8086"),
    (0x04, "80286"),
    (0x05, "80386"),
    (0x06, "80486"),
    (0x07, "8087"),
    (0x08, "80287"),
    (0x09, "80387"),
    (0x0A, "80487"),
    (0x0B, "Pentium"),
    (0x0C, "Pentium Pro"),
    (0x0D, "Pentium II"),
    (0x0E, "Pentium MMX"),
    (0x0F, "Celeron"),
    (0x10, "Pentium II Xeon"),
    (0x11, "Pentium III"),
    (0x12, "M1"),
    (0x13, "M2"),
    (0x14, "Celeron M"),
    (0x15, "Pentium 4 HT"),
    (0x18, "Duron"),
    (0x19, "K5"),
    (0x1A, "K6"),
    (0x1B, "K6-2"),
    (0x1C, "K6-3"),
    (0x1D, "Athlon"),
    (0x1E, "AMD29000"),
    (0x1F, "K6-2+"),
    (0x20, "Power PC"),
    (0x21, "Power PC 601"),
    (0x22, "Power PC 603"),
    (0x23, "Power PC 603+"),
    (0x24, "Power PC 604"),
    (0x25, "Power PC 620"),
    (0x26, "Power PC x704"),
    (0x27, "Power PC 750"),
    (0x28, "Core Duo"),
    (0x29, "Core Duo Mobile"),
    (0x2A, "Core Solo Mobile"),
    (0x2B, "Atom"),
    (0x2C, "Core M"),
    (0x2D, "Core m3"),
    (0x2E, "Core m5"),
    (0x2F, "Core m7"),
    (0x30, "Alpha"),
    (0x31, "Alpha 21064"),
    (0x32, "Alpha 21066"),
    (0x33, "Alpha 21164"),
    (0x34, "Alpha 21164PC"),
    (0x35, "Alpha 21164a"),
    (0x36, "Alpha 21264"),
    (0x37, "Alpha 21364"),
    (0x38, "Turion II Ultra Dual-Core Mobile M"),
    (0x39, "Turion II Dual-Core Mobile M"),
    (0x3A, "Athlon II Dual-Core M"),
    (0x3B, "Opteron 6100"),
    (0x3C, "Opteron 4100"),
    (0x3D, "Opteron 6200"),
    (0x3E, "Opteron 4200"),
    (0x3F, "FX"),
    (0x40, "MIPS"),
    (0x41, "MIPS R4000"),
    (0x42, "MIPS R4200"),
    (0x43, "MIPS R4400"),
    (0x44, "MIPS R4600"),
    (0x45, "MIPS R10000"),
    (0x46, "C-Series"),
    (0x47, "E-Series"),
    (0x48, "A-Series"),
    (0x49, "G-Series"),
    (0x4A, "Z-Series"),
    (0x4B, "R-Series"),
    (0x4C, "Opteron 4300"),
    (0x4D, "Opteron 6300"),
    (0x4E, "Opteron 3300"),
    (0x4F, "FirePro"),
    (0x50, "SPARC"),
    (0x51, "SuperSPARC"),
    (0x52, "MicroSPARC II"),
    (0x53, "MicroSPARC IIep"),
    (0x54, "UltraSPARC"),
    (0x55, "UltraSPARC II"),
    (0x56, "UltraSPARC IIi"),
    (0x57, "UltraSPARC III"),
    (0x58, "UltraSPARC IIIi"),
    (0x60, "68040"),
    (0x61, "68xxx"),
    (0x62, "68000"),
    (0x63, "68010"),
    (0x64, "68020"),
    (0x65, "68030"),
    (0x66, "Athlon X4"),
    (0x67, "Opteron X1000"),
    (0x68, "Opteron X2000"),
    (0x69, "Opteron A-Series"),
    (0x6A, "Opteron X3000"),
    (0x6B, "Zen"),
    (0x70, "Hobbit"),
    (0x78, "Crusoe TM5000"),
    (0x79, "Crusoe TM3000"),
    (0x7A, "Efficeon TM8000"),
    (0x80, "Weitek"),
    (0x82, "Itanium"),
    (0x83, "Athlon 64"),
    (0x84, "Opteron"),
    (0x85, "Sempron"),
    (0x86, "Turion 64"),
    (0x87, "Dual-Core Opteron"),
    (0x88, "Athlon 64 X2"),
    (0x89, "Turion 64 X2"),
    (0x8A, "Quad-Core Opteron"),
    (0x8B, "Third-Generation Opteron"),
    (0x8C, "Phenom FX"),
    (0x8D, "Phenom X4"),
    (0x8E, "Phenom X2"),
    (0x8F, "Athlon X2"),
    (0x90, "PA-RISC"),
    (0x91, "PA-RISC 8500"),
    (0x92, "PA-RISC 8000"),
    (0x93, "PA-RISC 7300LC"),
    (0x94, "PA-RISC 7200"),
    (0x95, "PA-RISC 7100LC"),
    (0x96, "PA-RISC 7100"),
    (0xA0, "V30"),
    (0xA1, "Quad-Core Xeon 3200"),
    (0xA2, "Dual-Core Xeon 3000"),
    (0xA3, "Quad-Core Xeon 5300"),
    (0xA4, "Dual-Core Xeon 5100"),
    (0xA5, "Dual-Core Xeon 5000"),
    (0xA6, "Dual-Core Xeon LV"),
    (0xA7, "Dual-Core Xeon ULV"),
    (0xA8, "Dual-Core Xeon 7100"),
    (0xA9, "Quad-Core Xeon 5400"),
    (0xAA, "Quad-Core Xeon"),
    (0xAB, "Dual-Core Xeon 5200"),
    (0xAC, "Dual-Core Xeon 7200"),
    (0xAD, "Quad-Core Xeon 7300"),
    (0xAE, "Quad-Core Xeon 7400"),
    (0xAF, "Multi-Core Xeon 7400"),
    (0xB0, "Pentium III Xeon"),
    (0xB1, "Pentium III Speedstep"),
    (0xB2, "Pentium 4"),
    (0xB3, "Xeon"),
    (0xB4, "AS400"),
    (0xB5, "Xeon MP"),
    (0xB6, "Athlon XP"),
    (0xB7, "Athlon MP"),
    (0xB8, "Itanium 2"),
    (0xB9, "Pentium M"),
    (0xBA, "Celeron D"),
    (0xBB, "Pentium D"),
    (0xBC, "Pentium EE"),
    (0xBD, "Core Solo"),
    (0xBF, "Core 2 Duo"),
    (0xC0, "Core 2 Solo"),
    (0xC1, "Core 2 Extreme"),
    (0xC2, "Core 2 Quad"),
    (0xC3, "Core 2 Extreme Mobile"),
    (0xC4, "Core 2 Duo Mobile"),
    (0xC5, "Core 2 Solo Mobile"),
    (0xC6, "Core i7"),
    (0xC7, "Dual-Core Celeron"),
    (0xC8, "IBM390"),
    (0xC9, "G4"),
    (0xCA, "G5"),
    (0xCB, "ESA/390 G6"),
    (0xCC, "z/Architecture"),
    (0xCD, "Core i5"),
    (0xCE, "Core i3"),
    (0xCF, "Core i9"),
    (0xD2, "C7-M"),
    (0xD3, "C7-D"),
    (0xD4, "C7"),
    (0xD5, "Eden"),
    (0xD6, "Multi-Core Xeon"),
    (0xD7, "Dual-Core Xeon 3xxx"),
    (0xD8, "Quad-Core Xeon 3xxx"),
    (0xD9, "Nano"),
    (0xDA, "Dual-Core Xeon 5xxx"),
    (0xDB, "Quad-Core Xeon 5xxx"),
    (0xDD, "Dual-Core Xeon 7xxx"),
    (0xDE, "Quad-Core Xeon 7xxx"),
    (0xDF, "Multi-Core Xeon 7xxx"),
    (0xE0, "Multi-Core Xeon 3400"),
    (0xE4, "Opteron 3000"),
    (0xE5, "Sempron II"),
    (0xE6, "Embedded Opteron Quad-Core"),
    (0xE7, "Phenom Triple-Core"),
    (0xE8, "Turion Ultra Dual-Core Mobile"),
    (0xE9, "Turion Dual-Core Mobile"),
    (0xEA, "Athlon Dual-Core"),
    (0xEB, "Sempron SI"),
    (0xEC, "Phenom II"),
    (0xED, "Athlon II"),
    (0xEE, "Six-Core Opteron"),
    (0xEF, "Sempron M"),
    (0xFA, "i860"),
    (0xFB, "i960"),
    (0x100, "ARMv7"),
    (0x101, "ARMv8"),
    (0x102, "ARMv9"),
    (0x104, "SH-3"),
    (0x105, "SH-4"),
    (0x118, "ARM"),
    (0x119, "StrongARM"),
    (0x12C, "6x86"),
    (0x12D, "MediaGX"),
    (0x12E, "MII"),
    (0x140, "WinChip"),
    (0x15E, "DSP"),
    (0x1F4, "Video Processor"),
    (0x200, "RV32"),
    (0x201, "RV64"),
    (0x202, "RV128"),
];

const X86_FLAGS: [&str; 32] = [
    "FPU (Floating-point unit on-chip)",
    "VME (Virtual mode extension)",
    "DE (Debugging extension)",
    "PSE (Page size extension)",
    "TSC (Time stamp counter)",
    "MSR (Model specific registers)",
    "PAE (Physical address extension)",
    "MCE (Machine check exception)",
    "CX8 (CMPXCHG8 instruction supported)",
    "APIC (On-chip APIC hardware supported)",
    "",
    "SEP (Fast system call)",
    "MTRR (Memory type range registers)",
    "PGE (Page global enable)",
    "MCA (Machine check architecture)",
    "CMOV (Conditional move instruction supported)",
    "PAT (Page attribute table)",
    "PSE-36 (36-bit page size extension)",
    "PSN (Processor serial number present and enabled)",
    "CLFSH (CLFLUSH instruction supported)",
    "",
    "DS (Debug store)",
    "ACPI (ACPI supported)",
    "MMX (MMX technology supported)",
    "FXSR (FXSAVE and FXSTOR instructions supported)",
    "SSE (Streaming SIMD extensions)",
    "SSE2 (Streaming SIMD extensions 2)",
    "SS (Self-snoop)",
    "HTT (Multi-threading)",
    "TM (Thermal monitor supported)",
    "",
    "PBE (Pending break enabled)",
];

const PROCESSOR_UPGRADE: [&str; 44] = [
    "Other",
    "Unknown",
    "Daughter Board",
    "ZIF Socket",
    "Replaceable Piggy Back",
    "None",
    "LIF Socket",
    "Slot 1",
    "Slot 2",
    "370-pin Socket",
    "Slot A",
    "Slot M",
    "Socket 423",
    "Socket A (Socket 462)",
    "Socket 478",
    "Socket 754",
    "Socket 940",
    "Socket 939",
    "Socket mPGA604",
    "Socket LGA771",
    "Socket LGA775",
    "Socket S1",
    "Socket AM2",
    "Socket F (1207)",
    "Socket LGA1366",
    "Socket G34",
    "Socket AM3",
    "Socket C32",
    "Socket LGA1156",
    "Socket LGA1567",
    "Socket PGA988A",
    "Socket BGA1288",
    "Socket rPGA988B",
    "Socket BGA1023",
    "Socket BGA1224",
    "Socket BGA1155",
    "Socket LGA1356",
    "Socket LGA2011",
    "Socket FS1",
    "Socket FS2",
    "Socket FM1",
    "Socket FM2",
    "Socket LGA2011-3",
    "Socket LGA1356-3",
];

const PROCESSOR_CHARACTERISTICS: [&str; 6] = [
    "64-bit capable",
    "Multi-Core",
    "Hardware Thread",
    "Execute Protection",
    "Enhanced Virtualization",
    "Power/Performance Control",
];

fn processor_family(s: &Structure, ver: u16) -> String {
    let code8 = s.byte(0x06).unwrap_or(0);
    if ver == 0x0200 && code8 == 0x30 && s.string_at(0x07).contains("Intel") {
        return "Pentium Pro".into();
    }
    let code = match (code8, s.word(0x28)) {
        (0xFE, Some(w)) if s.length() >= 0x2A => w,
        _ => u16::from(code8),
    };
    if code == 0xBE {
        let m = s.string_at(0x07);
        return if m.contains("Intel") {
            "Core 2".into()
        } else if m.contains("AMD") {
            "K7".into()
        } else {
            "Core 2 or K7".into()
        };
    }
    FAMILIES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(OUT_OF_SPEC, |(_, n)| n)
        .to_string()
}

/// x86 signature style of a family: 1 Intel, 2 AMD, 0 none (dmidecode's
/// `dmi_processor_id` ranges).
fn signature_kind(family: u8, version: &str) -> u8 {
    match family {
        0x0B..=0x15
        | 0x28..=0x2B
        | 0xA1..=0xB3
        | 0xB5
        | 0xB9..=0xC7
        | 0xCD..=0xCE
        | 0xD2..=0xDB
        | 0xDD..=0xE0 => 1,
        0x18..=0x1D
        | 0x1F
        | 0x38..=0x3E
        | 0x46..=0x49
        | 0x83..=0x8F
        | 0xB6..=0xB7
        | 0xE6..=0xEF => 2,
        0x01 | 0x02 => {
            if [
                "Pentium III MMX",
                "Intel(R) Core(TM)2",
                "Intel(R) Pentium(R)",
            ]
            .iter()
            .any(|p| version.starts_with(p))
                || version == "Genuine Intel(R) CPU U1400"
            {
                1
            } else if [
                "AMD Athlon(TM)",
                "AMD Opteron(tm)",
                "Dual-Core AMD Opteron(tm)",
            ]
            .iter()
            .any(|p| version.starts_with(p))
            {
                2
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn decode_processor(s: &Structure, ver: u16) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "Handle", s.handle_line());
    if s.length() < 0x1A {
        return m;
    }
    put(&mut m, "Socket Designation", s.string_at(0x04));
    put(
        &mut m,
        "Type",
        table_name(s.byte(0x05).unwrap_or(0), 1, &PROCESSOR_TYPE),
    );
    put(&mut m, "Family", processor_family(s, ver));
    put(&mut m, "Manufacturer", s.string_at(0x07));
    let id = s.qword(0x08).unwrap_or(0).to_le_bytes();
    put(
        &mut m,
        "ID",
        id.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let version = s.string_at(0x10);
    let eax = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    let edx = u32::from_le_bytes([id[4], id[5], id[6], id[7]]);
    match signature_kind(s.byte(0x06).unwrap_or(0), &version) {
        1 => {
            put(
                &mut m,
                "Signature",
                format!(
                    "Type {}, Family {}, Model {}, Stepping {}",
                    (eax >> 12) & 0x3,
                    ((eax >> 20) & 0xFF) + ((eax >> 8) & 0x0F),
                    ((eax >> 12) & 0xF0) + ((eax >> 4) & 0x0F),
                    eax & 0xF
                ),
            );
            put_list(&mut m, "Flags", bits(edx.into(), 0, &X86_FLAGS));
        }
        2 => {
            let fam = (eax >> 8) & 0xF;
            put(
                &mut m,
                "Signature",
                format!(
                    "Family {}, Model {}, Stepping {}",
                    fam + if fam == 0xF { (eax >> 20) & 0xFF } else { 0 },
                    ((eax >> 4) & 0xF) | if fam == 0xF { (eax >> 12) & 0xF0 } else { 0 },
                    eax & 0xF
                ),
            );
            put_list(&mut m, "Flags", bits(edx.into(), 0, &X86_FLAGS));
        }
        _ => {}
    }
    put(&mut m, "Version", version);
    let v = s.byte(0x11).unwrap_or(0);
    let voltage = if v & 0x80 != 0 {
        // f64, not f32: the only f32 formatting in the agent would link its
        // own copy of core's exact float printer; the text is the same for
        // all 128 values (dmidecode's %.1f).
        format!("{:.1} V", f64::from(v & 0x7F) / 10.0)
    } else if v == 0 {
        "Unknown".into()
    } else {
        bits(v.into(), 0, &["5.0 V", "3.3 V", "2.9 V"]).join(" ")
    };
    put(&mut m, "Voltage", voltage);
    let mhz = |off| match s.word(off) {
        Some(0) | None => "Unknown".to_string(),
        Some(f) => format!("{f} MHz"),
    };
    put(&mut m, "External Clock", mhz(0x12));
    put(&mut m, "Max Speed", mhz(0x14));
    put(&mut m, "Current Speed", mhz(0x16));
    let st = s.byte(0x18).unwrap_or(0);
    let status = [
        "Unknown",
        "Enabled",
        "Disabled By User",
        "Disabled By BIOS",
        "Idle",
        OUT_OF_SPEC,
        OUT_OF_SPEC,
        "Other",
    ][(st & 0x07) as usize];
    put(
        &mut m,
        "Status",
        if st & 0x40 != 0 {
            format!("Populated, {status}")
        } else {
            "Unpopulated".into()
        },
    );
    put(
        &mut m,
        "Upgrade",
        table_name(s.byte(0x19).unwrap_or(0), 1, &PROCESSOR_UPGRADE),
    );
    if s.length() < 0x20 {
        return m;
    }
    for (k, off, lvl) in [
        ("L1 Cache Handle", 0x1A, "L1"),
        ("L2 Cache Handle", 0x1C, "L2"),
        ("L3 Cache Handle", 0x1E, "L3"),
    ] {
        let v = match s.word(off) {
            Some(0xFFFF) if ver >= 0x0203 => "Not Provided".to_string(),
            Some(0xFFFF) => format!("No {lvl} Cache"),
            Some(h) => format!("0x{h:04X}"),
            None => continue,
        };
        put(&mut m, k, v);
    }
    if s.length() < 0x23 {
        return m;
    }
    put(&mut m, "Serial Number", s.string_at(0x20));
    put(&mut m, "Asset Tag", s.string_at(0x21));
    put(&mut m, "Part Number", s.string_at(0x22));
    if s.length() < 0x28 {
        return m;
    }
    // SMBIOS 3.0 moved counts above 255 to words at 0x2A/0x2C/0x2E
    let count = |off8: usize, off16: usize| -> Option<u16> {
        match s.byte(off8)? {
            0 => None,
            0xFF if s.length() >= off16 + 2 => s.word(off16).filter(|w| *w != 0),
            b => Some(b.into()),
        }
    };
    if let Some(c) = count(0x23, 0x2A) {
        put(&mut m, "Core Count", c.to_string());
    }
    if let Some(c) = count(0x24, 0x2C) {
        put(&mut m, "Core Enabled", c.to_string());
    }
    if let Some(c) = count(0x25, 0x2E) {
        put(&mut m, "Thread Count", c.to_string());
    }
    put_list(
        &mut m,
        "Characteristics",
        bits(
            s.word(0x26).unwrap_or(0).into(),
            2,
            &PROCESSOR_CHARACTERISTICS,
        ),
    );
    m
}

// ---------------------------------------------------------- types 16, 17

const ARRAY_LOCATION: [&str; 10] = [
    "Other",
    "Unknown",
    "System Board Or Motherboard",
    "ISA Add-on Card",
    "EISA Add-on Card",
    "PCI Add-on Card",
    "MCA Add-on Card",
    "PCMCIA Add-on Card",
    "Proprietary Add-on Card",
    "NuBus",
];
const ARRAY_USE: [&str; 7] = [
    "Other",
    "Unknown",
    "System Memory",
    "Video Memory",
    "Flash Memory",
    "Non-volatile RAM",
    "Cache Memory",
];
const ARRAY_EC: [&str; 7] = [
    "Other",
    "Unknown",
    "None",
    "Parity",
    "Single-bit ECC",
    "Multi-bit ECC",
    "CRC",
];

/// dmidecode's `dmi_print_memory_size`: the largest unit with a non-zero
/// part, or the next smaller one when that is non-zero too.
fn memory_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let split: Vec<u64> = (0..7).map(|i| (bytes >> (10 * i)) & 0x3FF).collect();
    let mut i = (1..7).rev().find(|&i| split[i] != 0).unwrap_or(0);
    let cap = if i > 0 && split[i - 1] != 0 {
        i -= 1;
        split[i] + (split[i + 1] << 10)
    } else {
        split[i]
    };
    format!("{cap} {}", UNITS[i])
}

fn error_handle(h: Option<u16>) -> String {
    match h {
        Some(0xFFFE) => "Not Provided".into(),
        Some(0xFFFF) => "No Error".into(),
        Some(h) => format!("0x{h:04X}"),
        None => "Unknown".into(),
    }
}

fn decode_array(s: &Structure) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "Handle", s.handle_line());
    if s.length() < 0x0F {
        return m;
    }
    let loc = s.byte(0x04).unwrap_or(0);
    let location = match loc {
        0xA0..=0xA3 => [
            "PC-98/C20 Add-on Card",
            "PC-98/C24 Add-on Card",
            "PC-98/E Add-on Card",
            "PC-98/Local Bus Add-on Card",
        ][(loc - 0xA0) as usize]
            .to_string(),
        _ => table_name(loc, 1, &ARRAY_LOCATION),
    };
    put(&mut m, "Location", location);
    put(
        &mut m,
        "Use",
        table_name(s.byte(0x05).unwrap_or(0), 1, &ARRAY_USE),
    );
    put(
        &mut m,
        "Error Correction Type",
        table_name(s.byte(0x06).unwrap_or(0), 1, &ARRAY_EC),
    );
    let cap = s.dword(0x07).unwrap_or(0);
    let capacity = if cap == 0x8000_0000 {
        match s.qword(0x0F).filter(|_| s.length() >= 0x17) {
            Some(b) => memory_size(b),
            None => "Unknown".into(),
        }
    } else {
        memory_size(u64::from(cap) << 10)
    };
    put(&mut m, "Maximum Capacity", capacity);
    put(
        &mut m,
        "Error Information Handle",
        error_handle(s.word(0x0B)),
    );
    put(
        &mut m,
        "Number Of Devices",
        s.word(0x0D).unwrap_or(0).to_string(),
    );
    m
}

const FORM_FACTOR: [&str; 16] = [
    "Other",
    "Unknown",
    "SIMM",
    "SIP",
    "Chip",
    "DIP",
    "ZIP",
    "Proprietary Card",
    "DIMM",
    "TSOP",
    "Row Of Chips",
    "RIMM",
    "SODIMM",
    "SRIMM",
    "FB-DIMM",
    "Die",
];
const MEMORY_TYPE: [&str; 36] = [
    "Other",
    "Unknown",
    "DRAM",
    "EDRAM",
    "VRAM",
    "SRAM",
    "RAM",
    "ROM",
    "Flash",
    "EEPROM",
    "FEPROM",
    "EPROM",
    "CDRAM",
    "3DRAM",
    "SDRAM",
    "SGRAM",
    "RDRAM",
    "DDR",
    "DDR2",
    "DDR2 FB-DIMM",
    "Reserved",
    "Reserved",
    "Reserved",
    "DDR3",
    "FBD2",
    "DDR4",
    "LPDDR",
    "LPDDR2",
    "LPDDR3",
    "LPDDR4",
    "Logical non-volatile device",
    "HBM",
    "HBM2",
    "DDR5",
    "LPDDR5",
    "HBM3",
];
const TYPE_DETAIL: [&str; 15] = [
    "Other",
    "Unknown",
    "Fast-paged",
    "Static Column",
    "Pseudo-static",
    "RAMBus",
    "Synchronous",
    "CMOS",
    "EDO",
    "Window DRAM",
    "Cache DRAM",
    "Non-Volatile",
    "Registered (Buffered)",
    "Unbuffered (Unregistered)",
    "LRDIMM",
];

fn decode_memory_device(s: &Structure) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "Handle", s.handle_line());
    if s.length() < 0x15 {
        return m;
    }
    put(
        &mut m,
        "Array Handle",
        format!("0x{:04X}", s.word(0x04).unwrap_or(0)),
    );
    put(
        &mut m,
        "Error Information Handle",
        error_handle(s.word(0x06)),
    );
    let width = |off| match s.word(off) {
        Some(0) | Some(0xFFFF) | None => "Unknown".to_string(),
        Some(w) => format!("{w} bits"),
    };
    put(&mut m, "Total Width", width(0x08));
    put(&mut m, "Data Width", width(0x0A));
    let size = match s.word(0x0C).unwrap_or(0) {
        0 => "No Module Installed".to_string(),
        0xFFFF => "Unknown".to_string(),
        0x7FFF if s.length() >= 0x20 => {
            let mb = s.dword(0x1C).unwrap_or(0) & 0x7FFF_FFFF;
            if mb & 0x3FF != 0 {
                format!("{mb} MB")
            } else if mb & 0xFFFFF != 0 {
                format!("{} GB", mb >> 10)
            } else {
                format!("{} TB", mb >> 20)
            }
        }
        v if v & 0x8000 != 0 => format!("{} kB", v & 0x7FFF),
        v => format!("{v} MB"),
    };
    put(&mut m, "Size", size);
    put(
        &mut m,
        "Form Factor",
        table_name(s.byte(0x0E).unwrap_or(0), 1, &FORM_FACTOR),
    );
    put(
        &mut m,
        "Set",
        match s.byte(0x0F).unwrap_or(0) {
            0 => "None".to_string(),
            0xFF => "Unknown".to_string(),
            v => v.to_string(),
        },
    );
    put(&mut m, "Locator", s.string_at(0x10));
    put(&mut m, "Bank Locator", s.string_at(0x11));
    put(
        &mut m,
        "Type",
        table_name(s.byte(0x12).unwrap_or(0), 1, &MEMORY_TYPE),
    );
    let detail = s.word(0x13).unwrap_or(0);
    put(
        &mut m,
        "Type Detail",
        if detail & 0xFFFE == 0 {
            "None".to_string()
        } else {
            bits(detail.into(), 1, &TYPE_DETAIL).join(" ")
        },
    );
    let speed = |off| match s.word(off) {
        Some(0) | None => "Unknown".to_string(),
        Some(v) => format!("{v} MHz"),
    };
    if s.length() < 0x17 {
        return m;
    }
    put(&mut m, "Speed", speed(0x15));
    if s.length() < 0x1B {
        return m;
    }
    put(&mut m, "Manufacturer", s.string_at(0x17));
    put(&mut m, "Serial Number", s.string_at(0x18));
    put(&mut m, "Asset Tag", s.string_at(0x19));
    put(&mut m, "Part Number", s.string_at(0x1A));
    if s.length() < 0x1C {
        return m;
    }
    let rank = s.byte(0x1B).unwrap_or(0) & 0x0F;
    put(
        &mut m,
        "Rank",
        if rank == 0 {
            "Unknown".to_string()
        } else {
            rank.to_string()
        },
    );
    if s.length() < 0x22 {
        return m;
    }
    put(&mut m, "Configured Clock Speed", speed(0x20));
    if s.length() < 0x28 {
        return m;
    }
    let volt = |off| match s.word(off) {
        Some(0) | None => "Unknown".to_string(),
        Some(mv) if mv % 100 != 0 => format!("{} V", f64::from(mv) / 1000.0),
        Some(mv) => format!("{:.1} V", f64::from(mv) / 1000.0),
    };
    put(&mut m, "Minimum Voltage", volt(0x22));
    put(&mut m, "Maximum Voltage", volt(0x24));
    put(&mut m, "Configured Voltage", volt(0x26));
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build one structure: formatted area (after the 4-byte header) and
    /// strings.
    pub fn structure(kind: u8, handle: u16, body: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut v = vec![kind, (body.len() + 4) as u8];
        v.extend_from_slice(&handle.to_le_bytes());
        v.extend_from_slice(body);
        if strings.is_empty() {
            v.extend_from_slice(&[0, 0]);
        } else {
            for s in strings {
                v.extend_from_slice(s.as_bytes());
                v.push(0);
            }
            v.push(0);
        }
        v
    }

    /// A type 17 body of `len` bytes (0x28 = SMBIOS 2.8) with a size.
    pub fn memory_device(array: u16, size: u16, ext_mb: u32, locator: u8) -> Vec<u8> {
        let mut b = vec![0u8; 0x28 - 4];
        let mut w =
            |off: usize, bytes: &[u8]| b[off - 4..off - 4 + bytes.len()].copy_from_slice(bytes);
        w(0x04, &array.to_le_bytes());
        w(0x06, &0xFFFEu16.to_le_bytes());
        w(0x08, &72u16.to_le_bytes());
        w(0x0A, &64u16.to_le_bytes());
        w(0x0C, &size.to_le_bytes());
        w(0x0E, &[0x09, 0x00, locator, 0, 0x1A]);
        w(0x13, &0x0080u16.to_le_bytes());
        w(0x15, &2666u16.to_le_bytes());
        w(0x1B, &[2]);
        w(0x1C, &ext_mb.to_le_bytes());
        w(0x20, &2400u16.to_le_bytes());
        w(0x22, &1200u16.to_le_bytes());
        w(0x24, &1200u16.to_le_bytes());
        w(0x26, &1200u16.to_le_bytes());
        b
    }

    fn sample_table() -> Vec<u8> {
        let mut t = vec![];
        // type 0: vendor 1, version 2, segment 0xE800, date 3, ROM 0xFF->
        let mut bios = vec![1, 2, 0x00, 0xE8, 3, 0x0F];
        // PCI (bit 7), upgradeable (11), boot from CD (15), selectable boot (16)
        bios.extend_from_slice(&0x0001_8880u64.to_le_bytes());
        bios.extend_from_slice(&[0x03, 0x0F, 2, 11, 0xFF, 0xFF]);
        t.extend(structure(
            0,
            0x0000,
            &bios,
            &["Dell Inc.", "2.11.2", "06/24/2021"],
        ));
        // type 4: Xeon, Intel signature 0x00050654, flags FPU|TSC|SSE2
        let mut cpu = vec![1, 3, 0xB3, 2];
        cpu.extend_from_slice(&0x0005_0654u32.to_le_bytes());
        cpu.extend_from_slice(&((1u32 << 0) | (1 << 4) | (1 << 26)).to_le_bytes());
        cpu.push(3); // version string
        cpu.push(0x80 | 18); // 1.8 V
        cpu.extend_from_slice(&100u16.to_le_bytes());
        cpu.extend_from_slice(&4000u16.to_le_bytes());
        cpu.extend_from_slice(&2100u16.to_le_bytes());
        cpu.extend_from_slice(&[0x41, 0x01]);
        for h in [0x0100u16, 0x0101, 0xFFFF] {
            cpu.extend_from_slice(&h.to_le_bytes());
        }
        cpu.extend_from_slice(&[0, 0, 0, 16, 16, 32]);
        cpu.extend_from_slice(&0x007Cu16.to_le_bytes());
        t.extend(structure(
            4,
            0x0400,
            &cpu,
            &["CPU1", "Intel", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"],
        ));
        // type 16: 2 arrays of 4 devices, 1 TB max
        for h in [0x1000u16, 0x1001] {
            let mut a = vec![0x03, 0x03, 0x06];
            a.extend_from_slice(&0x4000_0000u32.to_le_bytes());
            a.extend_from_slice(&0xFFFEu16.to_le_bytes());
            a.extend_from_slice(&4u16.to_le_bytes());
            t.extend(structure(16, h, &a, &[]));
        }
        t.extend(structure(
            17,
            0x1100,
            &memory_device(0x1000, 16384, 0, 1),
            &["A1"],
        ));
        t.extend(structure(
            17,
            0x1101,
            &memory_device(0x1000, 0, 0, 1),
            &["A2"],
        ));
        t.extend(structure(
            17,
            0x1102,
            &memory_device(0x1001, 0x7FFF, 65536, 1),
            &["B1"],
        ));
        t.extend(structure(127, 0xFEFF, &[], &[]));
        t
    }

    #[test]
    fn decodes_like_dmidecode() {
        let v = decode(&sample_table(), 0x0302);
        let bios = &v["bios"];
        assert_eq!(bios["Vendor"], "Dell Inc.");
        assert_eq!(bios["Version"], "2.11.2");
        assert_eq!(bios["Release Date"], "06/24/2021");
        assert_eq!(bios["Address"], "0xE8000");
        assert_eq!(bios["Runtime Size"], "96 kB");
        assert_eq!(bios["ROM Size"], "1024 kB");
        assert_eq!(bios["BIOS Revision"], "2.11");
        assert!(bios.get("Firmware Revision").is_none());
        assert_eq!(bios["Handle"], "Handle 0x0000, DMI type 0, 24 bytes");
        let chars: Vec<&str> = bios["Characteristics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            chars,
            vec![
                "PCI is supported",
                "BIOS is upgradeable",
                "Boot from CD is supported",
                "Selectable boot is supported",
                "ACPI is supported",
                "USB legacy is supported",
                "BIOS boot specification is supported",
                "Function key-initiated network boot is supported",
                "Targeted content distribution is supported",
                "UEFI is supported",
            ]
        );
        let cpu = &v["cpu"][0];
        assert_eq!(cpu["Family"], "Xeon");
        assert_eq!(cpu["Type"], "Central Processor");
        assert_eq!(cpu["Signature"], "Type 0, Family 6, Model 85, Stepping 4");
        assert_eq!(cpu["ID"], "54 06 05 00 11 00 00 04");
        assert_eq!(
            cpu["Flags"],
            json!([
                "FPU (Floating-point unit on-chip)",
                "TSC (Time stamp counter)",
                "SSE2 (Streaming SIMD extensions 2)"
            ])
        );
        assert_eq!(cpu["Voltage"], "1.8 V");
        assert_eq!(cpu["Max Speed"], "4000 MHz");
        assert_eq!(cpu["Status"], "Populated, Enabled");
        assert_eq!(cpu["Upgrade"], "Other");
        assert_eq!(cpu["L3 Cache Handle"], "Not Provided");
        assert_eq!(cpu["Core Count"], "16");
        assert_eq!(cpu["Thread Count"], "32");
        assert_eq!(
            cpu["Characteristics"],
            json!([
                "64-bit capable",
                "Multi-Core",
                "Hardware Thread",
                "Execute Protection",
                "Enhanced Virtualization"
            ])
        );
        let mem = &v["memory"];
        assert_eq!(mem["Number Of Devices"], 8);
        assert_eq!(mem["Maximum Capacity"], "1 TB");
        assert_eq!(mem["Use"], "System Memory");
        assert_eq!(mem["Error Correction Type"], "Multi-bit ECC");
        assert!(mem.get("Handle").is_none());
        let devs = mem["devices"].as_array().unwrap();
        assert_eq!(devs.len(), 3);
        assert_eq!(devs[0]["Size"], "16384 MB");
        assert_eq!(devs[0]["Type"], "DDR4");
        assert_eq!(devs[0]["Form Factor"], "DIMM");
        assert_eq!(devs[0]["Type Detail"], "Synchronous");
        assert_eq!(devs[0]["Locator"], "A1");
        assert_eq!(devs[0]["Manufacturer"], "Not Specified");
        assert_eq!(devs[0]["Configured Voltage"], "1.2 V");
        assert_eq!(devs[1]["Size"], "No Module Installed");
        assert_eq!(devs[2]["Size"], "64 GB");
        assert_eq!(devs[2]["Array Handle"], "0x1001");
    }

    #[test]
    fn memory_sum() {
        let t = sample_table();
        let total: u64 = parse_table(&t)
            .iter()
            .filter(|s| s.kind == 17)
            .filter_map(memory_device_size)
            .sum();
        assert_eq!(total, (16u64 << 30) + (64u64 << 30));
        assert_eq!(memory_size(1 << 40), "1 TB");
        assert_eq!(memory_size(1536 << 20), "1536 MB");
        assert_eq!(memory_size(16 << 20), "16 MB");
    }

    #[test]
    fn empty_and_versions() {
        assert_eq!(
            decode(&[], 0),
            json!({"bios": {}, "cpu": [], "memory": {"devices": []}})
        );
        assert_eq!(smbios_version(b"_SM3_\x00\x18\x03\x02\x00"), 0x0302);
        assert_eq!(smbios_version(b"_SM_\x00\x1f\x02\x08"), 0x0208);
        assert_eq!(smbios_version(b"_SM_\x00\x1f\x02\x33"), 0x0206);
        assert_eq!(smbios_version(b"junk"), 0);
    }

    #[test]
    fn truncated_tables_stop_cleanly() {
        let t = sample_table();
        for cut in 0..t.len() {
            let v = decode(&t[..cut], 0x0302);
            assert!(v["memory"]["devices"].is_array());
        }
        // a bad string index
        let s = structure(17, 1, &memory_device(0, 8192, 0, 9), &["A1"]);
        let v = decode(&s, 0x0302);
        assert_eq!(v["memory"]["devices"][0]["Locator"], BAD_INDEX);
        // control characters are dotted out
        let s = structure(
            0,
            0,
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &["Ven\x07dor"],
        );
        assert_eq!(decode(&s, 0)["bios"]["Vendor"], "Ven.dor");
    }

    #[test]
    fn hostile_tables_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let base = sample_table();
        for i in 0..20_000 {
            let mut t = if i % 2 == 0 {
                base.clone()
            } else {
                (0..rng.usize(0..512)).map(|_| rng.u8(..)).collect()
            };
            for _ in 0..rng.usize(0..16) {
                if t.is_empty() {
                    break;
                }
                let at = rng.usize(0..t.len());
                t[at] = rng.u8(..);
            }
            if rng.bool() && !t.is_empty() {
                let n = rng.usize(0..t.len());
                t.truncate(n);
            }
            let _ = decode(&t, rng.u16(..));
            let _ = parse_table(&t)
                .iter()
                .filter_map(memory_device_size)
                .count();
        }
    }
}
