//! `image.install_bootloader` (IPA's `ImageExtension.install_bootloader`
//! and `efi_utils.manage_uefi`): UEFI boot entries for the loaders found
//! on the installed disk's EFI system partition, written into the NVRAM
//! through efivarfs ([`crate::efi`]), without efibootmgr.
//!
//! On a software RAID root (an md device), as IPA's
//! `prepare_boot_partitions_for_softraid`: the firmware cannot see inside
//! the array, so the image's ESP moves to a RAID-1 of 550 MiB ESP
//! partitions, one per holder disk, with the md superblock at the end
//! (v1.0: each member reads as a plain FAT), and every holder's copy gets
//! its boot entries ("ironic1 (RAID, part0)", "ironic1 (RAID, part1)",
//! ...), so the node boots from whichever disk survives. In BIOS mode IPA
//! would run grub-install on every holder; this agent refuses, naming why.

use crate::config::Env;
use crate::disk::md;
use crate::disk::table::{partition_path, read_table, Found, Partition, Table};
use crate::efi::{build_load_option, hd_file_path, parse_boot_entry, Nvram};
use crate::error::{AgentError, Kind, Result};
use crate::fs::blkid::block_uuid;
use crate::fs::fat::{DirEntry, Fat};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

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

/// Loaders on the ESP, IPA's `_get_efi_bootloaders`: files whose
/// lower-case name is in `BOOTLOADERS_EFI`, in `os.walk` order; the first
/// CSV found wins alone (it names the loader and the label).
fn find_bootloaders(fat: &Fat<'_>) -> Result<Vec<(String, DirEntry)>> {
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

/// The loaders of an ESP as (path with backslashes, label): IPA's
/// `_run_efibootmgr` naming ("ironic<N>", or the CSV's loader and label).
fn loader_entries(fat: &Fat<'_>) -> Result<Vec<(String, String)>> {
    let found = find_bootloaders(fat)?;
    let names: Vec<String> = found
        .iter()
        .map(|(_, e)| e.name.to_ascii_lowercase())
        .collect();
    if foreign_loaders(&names, OWN_LOADER_ARCH) {
        crate::util::log_at!(
            Warn,
            "The EFI partition holds no loader for this {} machine, only {names:?}: its \
             firmware will not run them. Is the image built for {0}?",
            std::env::consts::ARCH
        );
    }
    let mut out = vec![];
    for (label_id, (v_bl, entry)) in found.iter().enumerate() {
        if v_bl.to_ascii_lowercase().contains("csv") {
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
            out.push((format!("\\{}", path.replace('/', "\\")), label));
        } else {
            out.push((
                format!("\\{}", v_bl.replace('/', "\\")),
                format!("ironic{}", label_id + 1),
            ));
        }
    }
    Ok(out)
}

/// IPA's `_run_efibootmgr` for one ESP (`part` of the disk whose table is
/// `table`, named `device` in the log): one entry per loader, labelled
/// with `suffix` when given, first in BootOrder.
#[inline(never)]
fn add_entries(
    nvram: &Nvram,
    loaders: &[(String, String)],
    table: &Table,
    part: &Partition,
    device: &str,
    suffix: Option<&str>,
) -> Result<()> {
    let mut entries = nvram.entries()?;
    for (loader, base) in loaders {
        let label = match suffix {
            Some(s) => format!("{base} {s}"),
            None => base.clone(),
        };
        let path = hd_file_path(table, part, loader);
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
            crate::util::log_at!(Debug, "Found bootnum {n:04X} matching label");
            nvram.delete_entry(n)?;
        }
        crate::util::log_at!(
            Info,
            "Adding loader {loader} on partition {} of device {device} with label {label}",
            part.number
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
    Ok(())
}

/// The partition table of `device` (a disk), read through the root.
fn table_of(env: &Env, device: &str) -> Result<(File, Table)> {
    let file = File::open(env.root.path(device))
        .map_err(|e| AgentError::io(Kind::CommandExecutionError, format!("opening {device}"), e))?;
    let geom = crate::disk::geometry(env.root, Path::new(device), &file)?;
    match read_table(&file, geom) {
        Found::Table(t) => Ok((file, t)),
        _ => Err(AgentError::device_not_found(format!(
            "No EFI partition could be detected on device {device}: it has no readable \
             partition table"
        ))),
    }
}

/// IPA's `manage_uefi`: Ok(true) when NVRAM entries were written, Ok(false)
/// when the ESP holds no loader. On a software RAID device the ESP moves
/// to a RAID-1 on every holder disk ([`softraid_esp`]) and each holder's
/// copy gets its entries, labelled "(RAID, part<i>)".
fn manage_uefi(
    env: &Env,
    nvram: &Nvram,
    device: &str,
    efi_system_part_uuid: Option<&str>,
) -> Result<bool> {
    let (file, table) = table_of(env, device)?;
    let esp = table.partitions.iter().find(|p| p.is_esp()).or_else(|| {
        let want = efi_system_part_uuid?.to_ascii_lowercase();
        table
            .partitions
            .iter()
            .find(|p| block_uuid(&file, p).to_ascii_lowercase() == want)
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
                partition_path(device, esp.number)
            ),
        )
    })?;
    let loaders = loader_entries(&fat)?;
    if loaders.is_empty() {
        crate::util::log_at!(Warn, "Empty EFI partition detected.");
        return Ok(false);
    }
    let kname = device.trim_start_matches("/dev/");
    if !md::array::is_md(env.root, kname) {
        add_entries(nvram, &loaders, &table, esp, device, None)?;
        return Ok(true);
    }
    let esp_md = softraid_esp(env, device, &file, esp)?;
    for (i, m) in esp_md.members.iter().enumerate() {
        let disk = md::array::parent_disk(env.root, &m.kname);
        let number = md::array::sys_u64(
            env.root,
            format_args!("/sys/block/{disk}/{}/partition", m.kname),
        );
        let disk = format!("/dev/{disk}");
        let (_, t) = table_of(env, &disk)?;
        let Some(part) = t
            .partitions
            .iter()
            .find(|p| Some(u64::from(p.number)) == number)
        else {
            return Err(AgentError::device_not_found(format!(
                "Could not extract the partition number from /dev/{}!",
                m.kname
            )));
        };
        add_entries(
            nvram,
            &loaders,
            &t,
            part,
            &disk,
            Some(&format!("(RAID, part{i})")),
        )?;
    }
    Ok(true)
}

/// IPA's ESP size on each holder (`raid_utils.ESP_SIZE_MIB`).
const ESP_SIZE: u64 = 550 << 20;

#[cold]
#[inline(never)]
fn raid_err(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::SoftwareRAIDError, details)
}

/// IPA's `prepare_boot_partitions_for_softraid` in UEFI mode, for the
/// image's ESP `esp` on the software RAID device `device` (read through
/// `file`): the firmware cannot read an ESP inside an md array, so every
/// holder disk gets a 550 MiB ESP partition ("uefi-holder-<i>", in the
/// room `create_configuration` left before the RAID partitions) and those
/// become a RAID-1 named "esp" with its superblock at the end (v1.0), so
/// that each is a plain FAT to the firmware and all stay identical. The
/// image's ESP is copied onto the mirror as it is (same UUID and label),
/// then its own signature is wiped, so only one filesystem carries that
/// UUID. An ESP mirror already running (vfat on a RAID-1) is reused.
#[inline(never)]
fn softraid_esp(env: &Env, device: &str, file: &File, esp: &Partition) -> Result<md::array::Array> {
    let root = env.root;
    let kname = device.trim_start_matches("/dev/");
    let array = md::array::read(root, kname).ok_or_else(|| {
        md::array::raid_fmt(format_args!(
            "{device} is not a running software RAID device"
        ))
    })?;
    // paths as "/dev/{kname}" where they are formatted: no Strings
    let esp_md = match find_esp_raid(root) {
        Some(a) => {
            crate::util::log_at!(Info, "Found RAIDed ESP /dev/{}, skip creation", a.kname);
            a
        }
        None => build_esp_raid(root, &md::array::holders(root, &array))?,
    };
    drop(array);
    // the image's ESP onto the mirror, as it is; then wipefs -a of the
    // image's own: its boot sector, and the FAT32 backup boot sector and
    // FSInfo (sectors 6 and 7)
    if esp.len > esp_md.size {
        return Err(md::array::raid_fmt(format_args!(
            "ESP content ({} bytes) exceeds md device size ({} bytes)",
            esp.len, esp_md.size
        )));
    }
    let copy = || -> std::io::Result<()> {
        let out = OpenOptions::new()
            .write(true)
            .open(root.path(format!("/dev/{}", esp_md.kname)))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < esp.len {
            let n = ((esp.len - off) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], esp.offset + off)?;
            out.write_all_at(&buf[..n], off)?;
            off += n as u64;
        }
        out.sync_all()?;
        let rw = OpenOptions::new().write(true).open(root.path(device))?;
        rw.write_all_at(&vec![0u8; esp.len.min(64 << 10) as usize], esp.offset)?;
        rw.sync_all()
    };
    copy().map_err(|e| {
        md::array::io_err(
            format_args!("moving the ESP of {device} to /dev/{}", esp_md.kname),
            e,
        )
    })?;
    crate::util::log_at!(
        Info,
        "the ESP of {device} now lives on /dev/{}",
        esp_md.kname
    );
    Ok(esp_md)
}

/// IPA's `find_esp_raid`: a running RAID-1 holding a FAT filesystem.
fn find_esp_raid(root: &crate::root::Root) -> Option<md::array::Array> {
    // taken out with swap_remove: no IntoIter and its drop glue
    let mut all = md::array::list(root);
    let i = all.iter().position(|a| {
        a.level == "raid1"
            && File::open(root.path(a.path()))
                .ok()
                .is_some_and(|f| Fat::open(&f, 0, a.size).is_ok())
    })?;
    Some(all.swap_remove(i))
}

/// An ESP partition on each holder, and the RAID-1 (v1.0) over them.
#[inline(never)]
fn build_esp_raid(root: &crate::root::Root, holders: &[String]) -> Result<md::array::Array> {
    let mut files = vec![];
    // per holder: the new partition's number, offset and length
    let mut parts: Vec<(u32, u64, u64)> = vec![];
    for (i, holder) in holders.iter().enumerate() {
        let mut f = md::array::open_rw(root, holder, false)
            .map_err(|e| md::array::io_err(format_args!("opening {holder}"), e))?;
        let geom = crate::disk::geometry(root, Path::new(holder), &f)?;
        let need = ESP_SIZE / geom.sector;
        let gpt = crate::disk::gpt::Gpt::read_primary(&f, geom.sector, geom.sectors()).ok();
        let first = gpt
            .as_ref()
            .and_then(|g| crate::disk::table::largest_free(g, geom))
            .filter(|(a, b)| b + 1 - a >= need);
        let (Some(g), Some((first, _))) = (gpt, first) else {
            return Err(md::array::raid_fmt(format_args!(
                "{holder} has no GPT with room for a 550 MiB ESP, which UEFI needs on every \
                 software RAID holder"
            )));
        };
        let (number, _) = crate::disk::table::gpt_add(
            &mut f,
            g,
            first,
            first + need - 1,
            crate::disk::gpt::TYPE_ESP,
            &format!("uefi-holder-{i}"),
        )?;
        let (off, len) = (first * geom.sector, need * geom.sector);
        // the other partitions are md members: BLKRRPART would be refused
        let r = f.sync_all().and_then(|_| {
            if crate::sys::is_block_device(&f) {
                crate::sys::blkpg_partition(&f, true, number, off, len)
            } else {
                Ok(())
            }
        });
        r.map_err(|e| md::array::io_err(format_args!("adding partition {number} to {holder}"), e))?;
        parts.push((number, off, len));
        files.push(f);
    }
    let mut members: Vec<md::array::NewMember> = vec![];
    for ((disk, &(number, offset, len)), holder) in files.iter().zip(&parts).zip(holders) {
        members.push(md::array::NewMember {
            disk,
            // "sda2": the holder's name is "/dev/sda"
            kname: partition_path(&holder[5..], number),
            offset,
            len,
        });
    }
    let name = md::array::free_name(root, &mut (0..=127))
        .ok_or_else(|| raid_err("No free md (RAID) devices are left"))?;
    let kernel = md::array::Sysfs(root);
    md::array::create(root, &kernel, &name, md::Version::V1_0, 1, "esp", &members)?;
    md::array::read(root, &name)
        .ok_or_else(|| md::array::raid_fmt(format_args!("/dev/{name} vanished")))
}

/// `install_bootloader`'s parameters, as Ironic sends them.
#[derive(Clone, Debug, Default)]
pub struct Args<'a> {
    pub root_uuid: Option<&'a str>,
    pub efi_system_part_uuid: Option<&'a str>,
    pub target_boot_mode: Option<&'a str>,
    /// Overrides `--ignore-bootloader-failure` when given.
    pub ignore_bootloader_failure: Option<bool>,
}

/// `image.install_bootloader` (IPA's `ImageExtension.install_bootloader`).
/// `install_device` names the disk the image went to; it is asked only on
/// the UEFI path (the BIOS and whole-disk paths need none).
pub fn install_bootloader(
    env: &Env,
    args: &Args,
    install_device: &dyn Fn() -> Result<String>,
) -> Result<Value> {
    let root_uuid = args.root_uuid;
    let efi_uuid = args.efi_system_part_uuid;
    let target = args.target_boot_mode;
    let ignore_failure = args
        .ignore_bootloader_failure
        .unwrap_or(env.config.ignore_bootloader_failure);
    let current = super::partition::ramdisk_boot_mode(env.root);
    if let Some(t) = target {
        if t != current {
            crate::util::log_at!(
                Warn,
                "Boot mode mismatch: target boot mode is {t}, current boot mode is {current}. \
                 Installing boot loader may fail or work incorrectly."
            );
        }
    }
    if current == "uefi" {
        match Nvram::open(env.root) {
            None => crate::util::log_at!(Warn, "efivarfs is not available in the ramdisk"),
            // The device is looked up only here: the BIOS and whole-disk
            // paths below need none.
            Some(nvram) => match install_device()
                .and_then(|device| manage_uefi(env, &nvram, &device, efi_uuid))
            {
                Ok(true) => return Ok(Value::Null),
                Ok(false) => {}
                Err(e) => {
                    crate::util::log_at!(Error, "Error setting up bootloader. Error {e}");
                    if !ignore_failure {
                        return Err(e);
                    }
                }
            },
        }
    }
    // A software RAID root outside UEFI: IPA runs grub-install on every
    // holder disk (when the conductor allows BIOS bootloader installs at
    // all); without it the holders carry no boot code and the node cannot
    // boot, whatever the image holds. Refused, with the reason.
    if let Some(dev) = (current != "uefi")
        .then(install_device)
        .and_then(|d| d.ok())
    {
        let kname = dev.trim_start_matches("/dev/");
        if md::array::is_md(env.root, kname) {
            let holders = md::array::read(env.root, kname)
                .map(|a| md::array::holders(env.root, &a).join(", "))
                .unwrap_or_default();
            let msg = format!(
                "Booting the software RAID device {dev} in BIOS mode needs GRUB installed on \
                 every holder disk ({holders}); this agent does not run grub-install. Deploy \
                 this node in UEFI mode (its ESP is then mirrored on every holder)"
            );
            crate::util::log_at!(Error, "{msg}");
            if ignore_failure {
                return Ok(Value::Null);
            }
            return Err(AgentError::new(Kind::CommandExecutionError, msg));
        }
    }
    if root_uuid.is_none() || root_uuid == Some("0x00000000") {
        crate::util::log_at!(
            Info,
            "Not using grub2-install since root UUID is not provided. Assuming a whole disk image"
        );
        return Ok(Value::Null);
    }
    let msg = if env.lookup.enable_bios_bootloader_install {
        "Installing GRUB (grub-install in a chroot) is not supported by this agent; use a \
         whole-disk image or a partition image that carries its UEFI loaders"
    } else {
        "Install of legacy BIOS bootloaders disabled by CONF.enable_bios_bootloader_install as \
         part of CVE-2026-43003 mitigation."
    };
    crate::util::log_at!(Error, "{msg}");
    if ignore_failure {
        return Ok(Value::Null);
    }
    Err(AgentError::new(Kind::InvalidImage, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
