//! UEFI variables through efivarfs, without efibootmgr: the boot entries
//! and BootOrder that IPA's `efi_utils` manages with `efibootmgr`
//! (`image.install_bootloader` writes them, in `image::bootloader`; the
//! `clean_uefi_nvram` step deletes them, in `hardware::generic::nvram`).
//!
//! A boot entry is the efivarfs file
//! `Boot####-8be4df61-93ca-11d2-aa0d-00e098032b8c`: 4 bytes of variable
//! attributes, then an `EFI_LOAD_OPTION` (UEFI spec 2.10 §3.1.3):
//! attributes, FilePathListLength, a NUL-terminated UTF-16 description,
//! the device path (§10.3: here a Hard Drive media node with the ESP's
//! number, start, size and GPT GUID or MBR signature, a File Path node with
//! the loader's path, and the End node), then optional data. BootOrder is
//! an array of u16. Everything goes through the root prefix, so a fixture
//! root's `sys/firmware/efi/efivars` directory of plain files stands in
//! for the real NVRAM in tests.

use crate::disk::table::{Label, Partition, Table};
use crate::disk::Guid;
use crate::error::{AgentError, Kind, Result};
use crate::root::Root;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// EFI_GLOBAL_VARIABLE.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const VAR_ATTRS: u32 = 0x7;
const LOAD_OPTION_ACTIVE: u32 = 0x1;

/// Where efivarfs shows the NVRAM, under `root`.
pub fn efivars_dir(root: &Root) -> PathBuf {
    root.path("/sys/firmware/efi/efivars")
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
    Guid(g).to_lower()
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
pub fn hd_file_path(table: &Table, part: &Partition, loader: &str) -> Vec<u8> {
    let mut v = Vec::new();
    // Hard Drive: type 4, subtype 1, length 42
    v.extend_from_slice(&[0x04, 0x01, 42, 0]);
    v.extend_from_slice(&part.number.to_le_bytes());
    v.extend_from_slice(&part.start_lba.to_le_bytes());
    v.extend_from_slice(&part.sectors.to_le_bytes());
    let mut sig = [0u8; 16];
    let (fmt, sigtype) = match (table.label, part.gpt_uuid) {
        (Label::Gpt, Some(g)) => {
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
    pub fn open(root: &Root) -> Option<Nvram> {
        let dir = efivars_dir(root);
        dir.is_dir().then(|| Nvram {
            dir,
            plain_files: !root.is_real(),
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
                    None => crate::util::log_at!(Warn, "ignoring malformed UEFI variable {name}"),
                },
                Err(err) => crate::util::log_at!(Warn, "reading {name}: {err}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_option_round_trip_and_text() {
        let guid = Guid::parse("0b6a8e4f-4a23-4a5c-8f3e-d1c8a1b2c3d4").unwrap();
        let table = Table {
            label: Label::Gpt,
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
            gpt_type: Some(crate::disk::gpt::TYPE_ESP),
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
