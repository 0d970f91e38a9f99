//! UEFI boot entries through efivarfs, without efibootmgr: IPA's
//! `efi_utils.manage_uefi` / `_run_efibootmgr` (image.install_bootloader)
//! and `efi_utils.clean_boot_records` (the `clean_uefi_nvram` step).
//!
//! A boot entry is the efivarfs file
//! `Boot####-8be4df61-93ca-11d2-aa0d-00e098032b8c`: 4 bytes of variable
//! attributes, then an `EFI_LOAD_OPTION` (UEFI spec 2.10 §3.1.3):
//! attributes, FilePathListLength, a NUL-terminated UTF-16 description,
//! the device path (§10.3: here a Hard Drive media node with the ESP's
//! number, start, size and GPT GUID or MBR signature, a File Path node with
//! the loader's path, and the End node), then optional data. BootOrder is
//! an array of u16. Everything goes through `agent.root`, so a fixture
//! root's `sys/firmware/efi/efivars` directory of plain files stands in
//! for the real NVRAM in tests.

use super::disk::{self, Found, Partition};
use super::fat::Fat;
use super::minire::Regex;
use crate::agent::Agent;
use crate::commands::{param, Params};
use crate::error::{AgentError, Kind, Result};
use crate::hardware::StepCall;
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// EFI_GLOBAL_VARIABLE.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const VAR_ATTRS: u32 = 0x7;
const LOAD_OPTION_ACTIVE: u32 = 0x1;

/// IPA's `DEFAULT_CLEAN_UEFI_NVRAM_MATCH_PATTERNS`.
pub const DEFAULT_PATTERNS: [&str; 3] = [r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"];

/// IPA's `efi_utils.BOOTLOADERS_EFI`: the file names (lower case) that
/// mark a loader or a loader hint on an ESP.
const BOOTLOADERS_EFI: [&str; 13] = [
    "bootx64.csv",
    "bootaa64.csv",
    "boot.csv",
    "bootia32.efi",
    "bootx64.efi",
    "bootia64.efi",
    "bootarm.efi",
    "bootaa64.efi",
    "bootriscv32.efi",
    "bootriscv64.efi",
    "bootriscv128.efi",
    "grubaa64.efi",
    "winload.efi",
];

fn efivars_dir(agent: &Agent) -> PathBuf {
    agent.root.path("/sys/firmware/efi/efivars")
}

fn var_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-{GLOBAL_GUID}"))
}

fn utf16z(b: &[u8]) -> (String, usize) {
    let mut units = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        let u = u16::from_le_bytes([b[i], b[i + 1]]);
        i += 2;
        if u == 0 {
            break;
        }
        units.push(u);
    }
    (String::from_utf16_lossy(&units), i)
}

fn guid_lower(b: &[u8]) -> String {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[..16]);
    super::gpt::Guid(g).to_lower()
}

/// A device path in efibootmgr's (libefivar's) text form:
/// `HD(1,GPT,<guid>,0x800,0x100000)/File(\EFI\ubuntu\shimx64.efi)`.
/// Unknown nodes print as `Path(type,subtype,hex)`; a malformed path stops
/// where it breaks.
pub fn device_path_text(mut b: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    while b.len() >= 4 {
        let (ty, sub) = (b[0], b[1]);
        let len = u16::from_le_bytes([b[2], b[3]]) as usize;
        if len < 4 || len > b.len() {
            break;
        }
        let d = &b[4..len];
        let le32 = |o: usize| {
            d.get(o..o + 4)
                .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                .unwrap_or(0)
        };
        let le64 = |o: usize| {
            d.get(o..o + 8)
                .map(|x| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(x);
                    u64::from_le_bytes(a)
                })
                .unwrap_or(0)
        };
        let hex: String = d.iter().map(|x| format!("{x:02x}")).collect();
        let text = match (ty, sub) {
            (0x7f, 0xff) => break,
            (0x7f, 0x01) => ",".into(),
            (0x01, 0x01) if d.len() >= 2 => format!("Pci(0x{:x},0x{:x})", d[1], d[0]),
            (0x01, 0x04) if d.len() >= 16 => format!("VenHw({})", guid_lower(d)),
            (0x02, 0x01) if d.len() >= 8 => match le32(0) {
                0x0a03_41d0 => format!("PciRoot(0x{:x})", le32(4)),
                0x0a08_41d0 => format!("PcieRoot(0x{:x})", le32(4)),
                hid => format!("Acpi(0x{hid:x},0x{:x})", le32(4)),
            },
            (0x03, 0x0b) if d.len() >= 33 => {
                let mac: String = d[..6].iter().map(|x| format!("{x:02x}")).collect();
                format!("MAC({mac},{})", d[32])
            }
            (0x03, 0x0c) => "IPv4(...)".into(),
            (0x03, 0x0d) => "IPv6(...)".into(),
            (0x03, 0x12) if d.len() >= 6 => format!(
                "Sata({},{},{})",
                u16::from_le_bytes([d[0], d[1]]),
                u16::from_le_bytes([d[2], d[3]]),
                u16::from_le_bytes([d[4], d[5]])
            ),
            (0x03, 0x17) if d.len() >= 4 => format!("NVMe(0x{:x})", le32(0)),
            (0x03, 0x0a) if d.len() >= 16 => format!("VenMsg({})", guid_lower(d)),
            (0x03, 0x18) => format!("Uri({})", String::from_utf8_lossy(d)),
            (0x04, 0x01) if d.len() >= 38 => {
                let (fmt, sig) = match (d[36], d[37]) {
                    (2, 2) => ("GPT", guid_lower(&d[20..36])),
                    (1, 1) => ("MBR", format!("0x{:x}", le32(20))),
                    (f, s) => ("", format!("{f},{s}")),
                };
                format!(
                    "HD({},{fmt},{sig},0x{:x},0x{:x})",
                    le32(0),
                    le64(4),
                    le64(12)
                )
            }
            (0x04, 0x02) => "CDROM(...)".into(),
            (0x04, 0x03) if d.len() >= 16 => format!("VenMedia({})", guid_lower(d)),
            (0x04, 0x04) => format!("File({})", utf16z(d).0),
            (0x04, 0x06) if d.len() >= 16 => format!("FvFile({})", guid_lower(d)),
            (0x04, 0x07) if d.len() >= 16 => format!("FvVol({})", guid_lower(d)),
            (0x05, _) => format!("BBS({hex})"),
            _ => format!("Path({ty},{sub},{hex})"),
        };
        parts.push(text);
        b = &b[len..];
    }
    parts.join("/").replace("/,/", ",")
}

/// One `Boot####` variable.
#[derive(Clone, Debug)]
pub struct BootEntry {
    pub number: u16,
    pub attributes: u32,
    pub description: String,
    pub path: Vec<u8>,
    pub path_text: String,
}

/// Parse an efivarfs file's bytes (attributes first).
pub fn parse_boot_entry(number: u16, file: &[u8]) -> Option<BootEntry> {
    let d = file.get(4..)?;
    if d.len() < 6 {
        return None;
    }
    let attributes = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let fplen = u16::from_le_bytes([d[4], d[5]]) as usize;
    let (description, used) = utf16z(&d[6..]);
    let start = 6 + used;
    let path = d.get(start..start.checked_add(fplen)?)?.to_vec();
    let path_text = device_path_text(&path);
    Some(BootEntry {
        number,
        attributes,
        description,
        path,
        path_text,
    })
}

/// The efivarfs file bytes for a new load option.
pub fn build_load_option(description: &str, path: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&VAR_ATTRS.to_le_bytes());
    v.extend_from_slice(&LOAD_OPTION_ACTIVE.to_le_bytes());
    v.extend_from_slice(&(path.len() as u16).to_le_bytes());
    for u in description.encode_utf16().chain([0]) {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v.extend_from_slice(path);
    v
}

/// Hard Drive media node + File Path node + End node for a loader at
/// `loader` (backslashes) on partition `part` of a disk whose table is
/// `table`.
pub fn hd_file_path(table: &disk::Table, part: &Partition, loader: &str) -> Vec<u8> {
    let mut v = Vec::new();
    // Hard Drive: type 4, subtype 1, length 42
    v.extend_from_slice(&[0x04, 0x01, 42, 0]);
    v.extend_from_slice(&part.number.to_le_bytes());
    v.extend_from_slice(&part.start_lba.to_le_bytes());
    v.extend_from_slice(&part.sectors.to_le_bytes());
    let mut sig = [0u8; 16];
    let (fmt, sigtype) = match (table.label, part.gpt_uuid) {
        (disk::Label::Gpt, Some(g)) => {
            sig = g.0;
            (2u8, 2u8)
        }
        _ => {
            sig[..4].copy_from_slice(&table.mbr_signature.to_le_bytes());
            (1, 1)
        }
    };
    v.extend_from_slice(&sig);
    v.push(fmt);
    v.push(sigtype);
    // File Path: type 4, subtype 4
    let units: Vec<u16> = loader.encode_utf16().chain([0]).collect();
    let len = 4 + 2 * units.len();
    v.extend_from_slice(&[0x04, 0x04]);
    v.extend_from_slice(&(len as u16).to_le_bytes());
    for u in units {
        v.extend_from_slice(&u.to_le_bytes());
    }
    // End of entire device path
    v.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);
    v
}

/// The NVRAM as efivarfs shows it.
pub struct Nvram {
    dir: PathBuf,
    /// Plain files (a fixture root): writes must truncate, which efivarfs
    /// neither needs nor wants (each write replaces the variable).
    plain_files: bool,
}

impl Nvram {
    pub fn open(agent: &Agent) -> Option<Nvram> {
        let dir = efivars_dir(agent);
        dir.is_dir().then(|| Nvram {
            dir,
            plain_files: !agent.root.is_real(),
        })
    }

    pub fn entries(&self) -> Result<Vec<BootEntry>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| {
            AgentError::io(
                Kind::CommandExecutionError,
                format!("listing {}", self.dir.display()),
                e,
            )
        })?;
        let suffix = format!("-{GLOBAL_GUID}");
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(var) = name.strip_suffix(&suffix) else {
                continue;
            };
            let Some(hex) = var.strip_prefix("Boot") else {
                continue;
            };
            if hex.len() != 4 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(number) = u16::from_str_radix(hex, 16) else {
                continue;
            };
            match fs::read(e.path()) {
                Ok(bytes) => match parse_boot_entry(number, &bytes) {
                    Some(b) => out.push(b),
                    None => log::warn!("ignoring malformed UEFI variable {name}"),
                },
                Err(err) => log::warn!("reading {name}: {err}"),
            }
        }
        crate::util::sort_small_by(&mut out, |a, b| a.number.cmp(&b.number));
        Ok(out)
    }

    pub fn boot_order(&self) -> Vec<u16> {
        fs::read(var_path(&self.dir, "BootOrder"))
            .ok()
            .and_then(|b| b.get(4..).map(<[u8]>::to_vec))
            .map(|d| {
                d.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn write_var(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let p = var_path(&self.dir, name);
        let fail = |e: std::io::Error| {
            AgentError::io(
                Kind::CommandExecutionError,
                format!("writing UEFI variable {}", p.display()),
                e,
            )
        };
        if p.exists() {
            if let Ok(f) = File::open(&p) {
                crate::sys::clear_immutable(&f).map_err(fail)?;
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            // efivarfs replaces the variable on each write (systemd and
            // libefivar open without O_TRUNC); plain files are cut after
            // the write instead
            .truncate(false)
            .open(&p)
            .map_err(fail)?;
        // efivarfs takes one write() of attributes + data per variable.
        let n = f.write(bytes).map_err(fail)?;
        if n != bytes.len() {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", bytes.len()),
            )));
        }
        if self.plain_files {
            f.set_len(n as u64).map_err(fail)?;
        }
        Ok(())
    }

    pub fn set_boot_order(&self, order: &[u16]) -> Result<()> {
        let mut b = VAR_ATTRS.to_le_bytes().to_vec();
        for n in order {
            b.extend_from_slice(&n.to_le_bytes());
        }
        self.write_var("BootOrder", &b)
    }

    pub fn set_entry(&self, number: u16, bytes: &[u8]) -> Result<()> {
        self.write_var(&format!("Boot{number:04X}"), bytes)
    }

    /// `efibootmgr -b #### -B`: delete the variable and drop it from
    /// BootOrder.
    pub fn delete_entry(&self, number: u16) -> Result<()> {
        let p = var_path(&self.dir, &format!("Boot{number:04X}"));
        let fail = |e: std::io::Error| {
            AgentError::io(
                Kind::CommandExecutionError,
                format!("deleting UEFI variable {}", p.display()),
                e,
            )
        };
        if let Ok(f) = File::open(&p) {
            crate::sys::clear_immutable(&f).map_err(fail)?;
        }
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let order = self.boot_order();
        if order.contains(&number) {
            let new: Vec<u16> = order.into_iter().filter(|&n| n != number).collect();
            self.set_boot_order(&new)?;
        }
        Ok(())
    }
}

/// The `clean_uefi_nvram` clean/deploy step (IPA's hardware.py and
/// `efi_utils.clean_boot_records`): delete every Boot#### whose device
/// path matches one of `match_patterns` (case-insensitive search; the
/// subset of Python's `re` that [`super::minire`] supports), and drop them
/// from BootOrder. Returns null, as IPA.
pub fn clean_uefi_nvram(agent: &Agent, call: &StepCall) -> Result<Value> {
    let raw = call.args.get("match_patterns").filter(|v| !v.is_null());
    let patterns: Vec<String> = match raw {
        None => DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
        Some(v) => {
            let bad = || {
                AgentError::invalid_params(format!(
                    "The match_patterns must be a list of strings: {v}"
                ))
            };
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|p| p.as_str().map(String::from).ok_or_else(bad))
                .collect::<Result<_>>()?
        }
    };
    let compiled: Vec<Regex> = patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                AgentError::invalid_params(format!(
                    "The match_patterns must be a list of strings: {patterns:?} ({e})"
                ))
            })
        })
        .collect::<Result<_>>()?;
    let Some(nvram) = Nvram::open(agent) else {
        return Err(AgentError::new(
            call.kind.error_kind(),
            format!(
                "clean_uefi_nvram: {} does not exist: the node did not boot in UEFI mode or \
                 efivarfs is not mounted",
                efivars_dir(agent).display()
            ),
        ));
    };
    for e in nvram.entries()? {
        if let Some(p) = compiled
            .iter()
            .zip(&patterns)
            .find(|(r, _)| r.is_match(&e.path_text))
        {
            log::debug!(
                "Path {} matched pattern {}, entry will be deleted: {}",
                e.path_text,
                p.1,
                e.description
            );
            nvram.delete_entry(e.number)?;
        }
    }
    Ok(Value::Null)
}

/// Loaders on the ESP, IPA's `_get_efi_bootloaders`: files whose
/// lower-case name is in `BOOTLOADERS_EFI`, in `os.walk` order; the first
/// CSV found wins alone (it names the loader and the label).
fn find_bootloaders(fat: &Fat<'_, File>) -> Result<Vec<(String, super::fat::DirEntry)>> {
    let walked = fat
        .walk()
        .map_err(|e| AgentError::io(Kind::CommandExecutionError, "reading the EFI partition", e))?;
    let mut out = Vec::new();
    for (path, e) in walked {
        if e.is_dir || !BOOTLOADERS_EFI.contains(&e.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if e.name.to_ascii_lowercase().contains("csv") {
            return Ok(vec![(path, e)]);
        }
        out.push((path, e));
    }
    Ok(out)
}

/// This machine's architecture as UEFI's removable-media loader names
/// spell it (BOOTX64.EFI, BOOTAA64.EFI: UEFI spec 2.10 §3.5.1.1).
const OWN_LOADER_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "aa64"
} else {
    "x64"
};

/// IPA adds a boot entry for every loader it finds on the ESP, whatever
/// its architecture, and so does the agent: an image made for another
/// architecture (an x86_64-only image on an arm64 server) is written and
/// registered all the same, and the firmware then finds nothing it can
/// run. True (the agent logs a warning) when some of `names` (lower case,
/// from `BOOTLOADERS_EFI`) name an architecture and none names `own`.
fn foreign_loaders(names: &[String], own: &str) -> bool {
    let mut tagged = names
        .iter()
        .filter(|n| !n.starts_with("boot.") && *n != "winload.efi")
        .peekable();
    tagged.peek().is_some() && !tagged.any(|n| n.contains(own))
}

/// A BOOTX64.CSV: UTF-16 (BOM-detected, little-endian without one),
/// "loader,label,options,comment".
fn parse_csv(bytes: &[u8]) -> Option<(String, String)> {
    let (body, be) = match bytes {
        [0xff, 0xfe, rest @ ..] => (rest, false),
        [0xfe, 0xff, rest @ ..] => (rest, true),
        rest => (rest, false),
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .collect();
    let text = String::from_utf16_lossy(&units);
    let mut it = text.splitn(4, ',');
    let file = it.next()?.trim().to_string();
    let label = it.next()?.to_string();
    (!file.is_empty()).then_some((file, label))
}

/// IPA's `manage_uefi`: Ok(true) when NVRAM entries were written, Ok(false)
/// when the ESP holds no loader.
fn manage_uefi(
    agent: &Agent,
    nvram: &Nvram,
    device: &str,
    efi_system_part_uuid: Option<&str>,
) -> Result<bool> {
    let dev_path = agent.root.path(device);
    let file = File::open(&dev_path)
        .map_err(|e| AgentError::io(Kind::CommandExecutionError, format!("opening {device}"), e))?;
    let geom = disk::geometry(agent, Path::new(device), &file)?;
    let table = match disk::read_table(&file, geom) {
        Found::Table(t) => t,
        _ => {
            return Err(AgentError::device_not_found(format!(
                "No EFI partition could be detected on device {device}: it has no readable \
                 partition table"
            )))
        }
    };
    let esp = table.partitions.iter().find(|p| p.is_esp()).or_else(|| {
        let want = efi_system_part_uuid?.to_ascii_lowercase();
        table
            .partitions
            .iter()
            .find(|p| disk::block_uuid(&file, p).to_ascii_lowercase() == want)
    });
    let Some(esp) = esp else {
        return Err(AgentError::device_not_found(format!(
            "No EFI partition could be detected on device {device} and EFI partition UUID has \
             not been recorded during deployment (which is often the case for whole disk \
             images). Are you using a UEFI-compatible image?"
        )));
    };
    let fat = Fat::open(&file, esp.offset, esp.len).map_err(|e| {
        AgentError::new(
            Kind::CommandExecutionError,
            format!(
                "Could not configure UEFI boot on device {device}: the EFI partition {} is not \
                 a FAT filesystem: {e}",
                disk::partition_path(device, esp.number)
            ),
        )
    })?;
    let loaders = find_bootloaders(&fat)?;
    if loaders.is_empty() {
        log::warn!("Empty EFI partition detected.");
        return Ok(false);
    }
    let names: Vec<String> = loaders
        .iter()
        .map(|(_, e)| e.name.to_ascii_lowercase())
        .collect();
    if foreign_loaders(&names, OWN_LOADER_ARCH) {
        log::warn!(
            "The EFI partition holds no loader for this {} machine, only {names:?}: its \
             firmware will not run them. Is the image built for {0}?",
            std::env::consts::ARCH
        );
    }
    let mut entries = nvram.entries()?;
    for (label_id, (v_bl, entry)) in loaders.iter().enumerate() {
        let (loader, label) = if v_bl.to_ascii_lowercase().contains("csv") {
            let bytes = fat.read_file(entry, 64 << 10).map_err(|e| {
                AgentError::io(Kind::CommandExecutionError, format!("reading {v_bl}"), e)
            })?;
            let (file_name, label) = parse_csv(&bytes).ok_or_else(|| {
                AgentError::execution(format!("{v_bl} is not a valid boot CSV file"))
            })?;
            let dir = v_bl.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let path = if dir.is_empty() {
                file_name
            } else {
                format!("{dir}/{file_name}")
            };
            (format!("\\{}", path.replace('/', "\\")), label)
        } else {
            (
                format!("\\{}", v_bl.replace('/', "\\")),
                format!("ironic{}", label_id + 1),
            )
        };
        let path = hd_file_path(&table, esp, &loader);
        let bytes = build_load_option(&label, &path);
        // IPA removes every entry with the same label and adds a new one;
        // we reuse the first such number instead of growing the list.
        let same: Vec<u16> = entries
            .iter()
            .filter(|e| e.description == label)
            .map(|e| e.number)
            .collect();
        let number = match same.first() {
            Some(&n) => n,
            None => (0..=u16::MAX)
                .find(|n| !entries.iter().any(|e| e.number == *n))
                .ok_or_else(|| AgentError::execution("no free Boot#### number"))?,
        };
        for &n in same.iter().skip(1) {
            log::debug!("Found bootnum {n:04X} matching label");
            nvram.delete_entry(n)?;
        }
        log::info!(
            "Adding loader {loader} on partition {} of device {device} with label {label}",
            esp.number
        );
        nvram.set_entry(number, &bytes)?;
        let mut order = vec![number];
        order.extend(nvram.boot_order().into_iter().filter(|&n| n != number));
        nvram.set_boot_order(&order)?;
        entries.retain(|e| !same.contains(&e.number));
        if let Some(b) = parse_boot_entry(number, &bytes) {
            entries.push(b);
        }
    }
    Ok(true)
}

/// The install device: the one the last image went to, else the
/// hardware managers' `get_os_install_device`.
fn install_device(agent: &Agent) -> Result<String> {
    if let Some(w) = agent.state().written_image.as_ref() {
        if !w.device.is_empty() {
            return Ok(w.device.clone());
        }
    }
    agent
        .managers
        .dispatch("get_os_install_device", |m| {
            m.get_os_install_device(agent, None)
        })
        .map(|d| d.name)
}

/// `image.install_bootloader` (IPA's `ImageExtension.install_bootloader`).
pub fn install_bootloader(agent: &Agent, params: &Params) -> Result<Value> {
    let root_uuid = param::str(params, "root_uuid");
    let efi_uuid = param::str(params, "efi_system_part_uuid");
    let target = param::str(params, "target_boot_mode");
    let ignore_failure = param::bool(params, "ignore_bootloader_failure")
        .unwrap_or(agent.config.ignore_bootloader_failure);
    let current = super::partition::ramdisk_boot_mode(agent);
    if let Some(t) = target {
        if t != current {
            log::warn!(
                "Boot mode mismatch: target boot mode is {t}, current boot mode is {current}. \
                 Installing boot loader may fail or work incorrectly."
            );
        }
    }
    if current == "uefi" {
        match Nvram::open(agent) {
            None => log::warn!("efivarfs is not available in the ramdisk"),
            // The device is looked up only here: the BIOS and whole-disk
            // paths below need none.
            Some(nvram) => match install_device(agent)
                .and_then(|device| manage_uefi(agent, &nvram, &device, efi_uuid))
            {
                Ok(true) => return Ok(Value::Null),
                Ok(false) => {}
                Err(e) => {
                    log::error!("Error setting up bootloader. Error {e}");
                    if !ignore_failure {
                        return Err(e);
                    }
                }
            },
        }
    }
    if root_uuid.is_none() || root_uuid == Some("0x00000000") {
        log::info!(
            "Not using grub2-install since root UUID is not provided. Assuming a whole disk image"
        );
        return Ok(Value::Null);
    }
    let msg = if agent.lookup_settings().enable_bios_bootloader_install {
        "Installing GRUB (grub-install in a chroot) is not supported by this agent; use a \
         whole-disk image or a partition image that carries its UEFI loaders"
    } else {
        "Install of legacy BIOS bootloaders disabled by CONF.enable_bios_bootloader_install as \
         part of CVE-2026-43003 mitigation."
    };
    log::error!("{msg}");
    if ignore_failure {
        return Ok(Value::Null);
    }
    Err(AgentError::new(Kind::InvalidImage, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::gpt::Guid;

    #[test]
    fn load_option_round_trip_and_text() {
        let guid = Guid::parse("0b6a8e4f-4a23-4a5c-8f3e-d1c8a1b2c3d4").unwrap();
        let table = disk::Table {
            label: disk::Label::Gpt,
            disk_guid: None,
            mbr_signature: 0,
            partitions: vec![],
        };
        let part = Partition {
            number: 1,
            offset: 1 << 20,
            len: 512 << 20,
            start_lba: 2048,
            sectors: 0x100000,
            gpt_type: Some(crate::image::gpt::TYPE_ESP),
            gpt_uuid: Some(guid),
            gpt_name: String::new(),
            mbr_type: None,
            bootable: false,
        };
        let dp = hd_file_path(&table, &part, r"\EFI\ubuntu\shimx64.efi");
        let bytes = build_load_option("ubuntu", &dp);
        let e = parse_boot_entry(3, &bytes).unwrap();
        assert_eq!(e.description, "ubuntu");
        assert_eq!(e.attributes, 1);
        assert_eq!(
            e.path_text,
            r"HD(1,GPT,0b6a8e4f-4a23-4a5c-8f3e-d1c8a1b2c3d4,0x800,0x100000)/File(\EFI\ubuntu\shimx64.efi)"
        );
        // truncated or hostile variables never panic
        for n in 0..bytes.len() {
            let _ = parse_boot_entry(0, &bytes[..n]);
        }
        let mut bad = bytes.clone();
        bad[8] = 0xff;
        bad[9] = 0xff;
        assert!(parse_boot_entry(0, &bad).is_none());
        assert_eq!(device_path_text(&[0x04, 0x01, 0x02, 0x00]), "");
    }

    #[test]
    fn loaders_of_another_architecture_are_named() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // an x86_64-only image on an arm64 machine, and the reverse
        assert!(foreign_loaders(&n(&["bootx64.efi"]), "aa64"));
        assert!(foreign_loaders(&n(&["bootaa64.efi"]), "x64"));
        assert!(foreign_loaders(&n(&["bootaa64.csv"]), "x64"));
        assert!(foreign_loaders(&n(&["bootia32.efi"]), "x64"));
        // the machine's own loader, alone or beside others (multi-arch
        // media), or loaders that name no architecture: nothing to say
        assert!(!foreign_loaders(&n(&["bootaa64.efi"]), "aa64"));
        assert!(!foreign_loaders(&n(&["grubaa64.efi"]), "aa64"));
        assert!(!foreign_loaders(
            &n(&["bootx64.efi", "bootaa64.efi"]),
            "aa64"
        ));
        assert!(!foreign_loaders(
            &n(&["bootx64.efi", "bootaa64.efi"]),
            "x64"
        ));
        assert!(!foreign_loaders(&n(&["boot.csv", "winload.efi"]), "aa64"));
        assert!(!foreign_loaders(&[], "aa64"));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(OWN_LOADER_ARCH, "aa64");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(OWN_LOADER_ARCH, "x64");
    }

    #[test]
    fn csv_in_utf16() {
        let mut b = vec![0xff, 0xfe];
        for u in "shimx64.efi,ubuntu,,This is the boot entry for Ubuntu\n".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(
            parse_csv(&b),
            Some(("shimx64.efi".to_string(), "ubuntu".to_string()))
        );
        assert_eq!(parse_csv(&[0xff, 0xfe]), None);
    }

    #[test]
    fn pxe_paths_render() {
        // PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400123456,1)
        let mut p = vec![0x02, 0x01, 12, 0];
        p.extend_from_slice(&0x0a03_41d0u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&[0x01, 0x01, 6, 0, 0, 3]);
        let mut mac = vec![0x03, 0x0b, 37, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
        mac.resize(36, 0);
        mac.push(1);
        p.extend_from_slice(&mac);
        p.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        assert_eq!(
            device_path_text(&p),
            "PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400123456,1)"
        );
    }
}
