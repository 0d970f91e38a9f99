//! Partition images (`image_type: partition`): IPA's
//! `partition_utils.work_on_disk` + `disk_utils.make_partitions` without
//! parted, mkfs.vfat or mkswap.
//!
//! [`prepare_layout`] writes a new label and the partitions in IPA's order
//! (ESP, BIOS boot, ephemeral, swap, configdrive, root last so growroot can
//! extend it), each `size` MiB from 1 MiB on (`DiskPartitioner.commit`;
//! the configdrive's is the drive's size in whole MiB), and copies the
//! configdrive in; the caller streams the image into `Layout.root`;
//! [`finish`] then formats the ESP (FAT32, label `efi-part`), writes the
//! swap signature (label `swap1`) and the ephemeral filesystem (only
//! through a `mkfs.<format>` found on PATH), and returns the
//! `get_partition_uuids` answer.

use super::configdrive::{self, Drive, Limit};
use super::info::{ImageInfo, PartitionSpec};
use crate::config::Env;
use crate::disk::gpt::{self, Entry, Gpt, Guid};
use crate::disk::mbr::{self, Mbr};
use crate::disk::{self, Geometry, Io, Label};
use crate::error::{AgentError, Kind, Result};
use serde_json::{json, Map, Value};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::config::{BIOS_BOOT_MB, ESP_MB};

/// One partition of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Byte offset and length on the disk.
    pub offset: u64,
    pub len: u64,
    /// The kernel's device name for it: /dev/sda2, /dev/nvme0n1p2.
    pub path: String,
    pub number: u32,
    /// The GPT unique partition GUID (PARTUUID), GPT only.
    pub partuuid: Option<Guid>,
}

/// What [`prepare_layout`] created (or, with `preserve_ephemeral`, found).
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: Region,
    pub efi: Option<Region>,
    pub bios_boot: Option<Region>,
    pub swap: Option<Region>,
    pub ephemeral: Option<Region>,
    pub configdrive: Option<Region>,
    /// "gpt" or "msdos".
    pub label: &'static str,
    /// "uefi" or "bios".
    pub boot_mode: &'static str,
    pub preserve_ephemeral: bool,
    pub ephemeral_format: Option<String>,
    pub sector: u64,
}

/// IPA's `utils.parse_capabilities`: a dict, a JSON string, or
/// "key1:value1,key2:value2".
pub fn parse_capabilities(root: Option<&Value>) -> Map<String, Value> {
    let Some(caps) = root.and_then(|r| r.get("capabilities")) else {
        return Map::new();
    };
    match caps {
        Value::Object(m) => m.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => crate::util::collect_map(
                s.split(',')
                    .filter_map(|kv| kv.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), json!(v.trim()))),
            ),
        },
        _ => Map::new(),
    }
}

fn cap_str(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The ramdisk's own boot mode: UEFI when /sys/firmware/efi exists.
pub fn ramdisk_boot_mode(root: &crate::root::Root) -> &'static str {
    if root.path("/sys/firmware/efi").is_dir() {
        "uefi"
    } else {
        "bios"
    }
}

/// IPA's `utils.get_node_boot_mode`: `uefi` with the secure_boot
/// capability, else instance_info.deploy_boot_mode →
/// properties.capabilities.boot_mode → driver_internal_info.deploy_boot_mode
/// → the ramdisk's own mode.
pub fn node_boot_mode(env: &Env, node: Option<&Value>) -> &'static str {
    let ii = node.and_then(|n| n.get("instance_info"));
    let props = node.and_then(|n| n.get("properties"));
    let ii_caps = parse_capabilities(ii);
    let node_caps = parse_capabilities(props);
    let secure = cap_str(&ii_caps, "secure_boot")
        .or_else(|| cap_str(&node_caps, "secure_boot"))
        .unwrap_or_default();
    if secure.eq_ignore_ascii_case("true") {
        return "uefi";
    }
    let own = ramdisk_boot_mode(env.root);
    let mode = ii
        .and_then(|i| i.get("deploy_boot_mode"))
        .map(|v| v.as_str().map(String::from).unwrap_or(v.to_string()))
        .or_else(|| cap_str(&node_caps, "boot_mode"))
        .or_else(|| {
            node.and_then(|n| n.pointer("/driver_internal_info/deploy_boot_mode"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| own.to_string())
        .to_ascii_lowercase();
    match mode.as_str() {
        "uefi" => "uefi",
        "bios" => "bios",
        _ => own,
    }
}

/// IPA's `utils.get_partition_table_type_from_specs`: gpt in UEFI mode,
/// else the `disk_label` capability (instance_info over properties),
/// default msdos.
pub fn disk_label(env: &Env, node: Option<&Value>) -> Label {
    if node_boot_mode(env, node) == "uefi" {
        return Label::Gpt;
    }
    let ii_caps = parse_capabilities(node.and_then(|n| n.get("instance_info")));
    let node_caps = parse_capabilities(node.and_then(|n| n.get("properties")));
    let l = cap_str(&ii_caps, "disk_label")
        .or_else(|| cap_str(&node_caps, "disk_label"))
        .unwrap_or_default();
    if l == "gpt" {
        Label::Gpt
    } else {
        Label::Msdos
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Efi,
    BiosBoot,
    Ephemeral,
    Swap,
    ConfigDrive,
    Root,
}

struct Spec {
    role: Role,
    size_mb: u64,
}

fn deploy_err(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::DeploymentError, details)
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> AgentError {
    AgentError::io(Kind::DeploymentError, what, e)
}

/// Partition the disk for a partition image, write the configdrive into
/// its partition, and return where each part lives. With
/// `preserve_ephemeral` the table is not rewritten (IPA's `commit=False`):
/// the partitions on the disk are used, see [`adopt_preserved`].
pub fn prepare_layout(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    image_info: &ImageInfo,
    configdrive: Option<&Value>,
    node: Option<&Value>,
) -> Result<Layout> {
    let was = disk::direct_off(dev_path, file);
    let r = prepare_layout_inner(env, dev_path, file, image_info, configdrive, node);
    disk::direct_restore(dev_path, file, was);
    r
}

fn prepare_layout_inner(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    image_info: &ImageInfo,
    configdrive: Option<&Value>,
    node: Option<&Value>,
) -> Result<Layout> {
    let cached = env.node.clone();
    let node = node.or(cached.as_ref());
    let boot_mode = node_boot_mode(env, node);
    let label = disk_label(env, node);
    let root_mb = image_info.partition.root_mb;
    if root_mb == 0 {
        return Err(AgentError::invalid_params(
            "image_info.root_mb is required for partition images",
        ));
    }
    let preserve = image_info.partition.preserve_ephemeral;
    let geom = disk::geometry(env.root, dev_path, file)?;
    // IPA's work_on_disk calls get_configdrive before make_partitions: a
    // drive that cannot be fetched or decoded fails before anything is
    // written, and its partition is the drive's size in whole MiB
    // (`configdrive_mb`), none for an empty drive.
    let drive = match configdrive.filter(|v| !v.is_null()) {
        Some(v) => Some(Drive::load(env, v, Limit::Disk(geom.size))?),
        None => None,
    }
    .filter(|d| d.size > 0);
    let mut specs = Vec::new();
    if boot_mode == "uefi" {
        specs.push(Spec {
            role: Role::Efi,
            size_mb: env.config.efi_system_partition_size,
        });
    }
    if boot_mode == "bios" && label == Label::Gpt {
        specs.push(Spec {
            role: Role::BiosBoot,
            size_mb: env.config.bios_boot_partition_size,
        });
    }
    for (role, size_mb) in [
        (Role::Ephemeral, image_info.partition.ephemeral_mb),
        (Role::Swap, image_info.partition.swap_mb),
    ] {
        if size_mb > 0 {
            specs.push(Spec { role, size_mb });
        }
    }
    let rebuild = configdrive::rebuilds(env, geom.sector);
    // IPA's size, or more for a drive rebuilt as FAT (not when preserving:
    // the partitions on the disk are taken as they are)
    let cd_mb = drive.as_ref().map(|d| {
        let ipa = d.mib();
        let fat = if preserve {
            ipa
        } else {
            d.partition_mib(geom.sector, rebuild)
        };
        (ipa, fat)
    });
    if let Some((_, fat)) = cd_mb {
        specs.push(Spec {
            role: Role::ConfigDrive,
            size_mb: fat,
        });
    }
    specs.push(Spec {
        role: Role::Root,
        size_mb: root_mb,
    });
    let dev = dev_path.display().to_string();
    let mut layout = match plan(&dev, geom, label, boot_mode, &specs, &image_info.partition) {
        Err(e) if cd_mb.is_some_and(|(ipa, fat)| fat > ipa) => {
            // the extra MiB for the FAT must not fail a layout that fits
            // at IPA's size: the drive then stays ISO 9660
            let (ipa, fat) = cd_mb.unwrap_or_default();
            crate::util::log_at!(
                Warn,
                "{dev}: no room for a {fat} MiB configdrive partition ({e}); using {ipa} MiB, \
                 where the drive may not fit as FAT"
            );
            for s in specs.iter_mut().filter(|s| s.role == Role::ConfigDrive) {
                s.size_mb = ipa;
            }
            plan(&dev, geom, label, boot_mode, &specs, &image_info.partition)?
        }
        r => r?,
    };
    if preserve {
        adopt_preserved(dev_path, file, geom, &mut layout)?;
        refresh_partuuids(env, dev_path, file, &mut layout);
    } else {
        if label == Label::Gpt {
            for r in layout.regions_mut() {
                r.partuuid = Some(Guid::random().map_err(|e| io_err("generating a GUID", e))?);
            }
        }
        write_table(dev_path, file, geom, &layout)?;
        disk::reread_partitions(dev_path, file)?;
    }
    // IPA copies the drive in before the image (work_on_disk), and the
    // measured drive need not stay in memory while the image streams
    if let (Some(cd), Some(d)) = (&layout.configdrive, &drive) {
        configdrive::write_into_region(file, cd, d, geom.sector, rebuild)?;
    }
    Ok(layout)
}

fn plan(
    dev: &str,
    geom: Geometry,
    label: Label,
    boot_mode: &'static str,
    specs: &[Spec],
    part: &PartitionSpec,
) -> Result<Layout> {
    let preserve = part.preserve_ephemeral;
    let mib = geom.mib();
    let sectors = geom.sectors();
    // The last sector a partition may use: before the backup GPT array on
    // GPT (33 sectors with 512-byte sectors), the disk's end (and the
    // 32-bit LBA limit) on msdos.
    let last_usable = match label {
        Label::Gpt => sectors.saturating_sub(2 + (16384u64).div_ceil(geom.sector)),
        Label::Msdos => (sectors - 1).min(u64::from(u32::MAX)),
    };
    if label == Label::Msdos && specs.len() > 4 {
        return Err(deploy_err(format!(
            "Disk partitioning failed on device {dev}: an msdos label holds at most 4 primary \
             partitions, {} are needed",
            specs.len()
        )));
    }
    let mut start_mb = 1u64;
    let mut layout = Layout {
        root: Region {
            offset: 0,
            len: 0,
            path: String::new(),
            number: 0,
            partuuid: None,
        },
        efi: None,
        bios_boot: None,
        swap: None,
        ephemeral: None,
        configdrive: None,
        label: label.as_str(),
        boot_mode,
        preserve_ephemeral: preserve,
        ephemeral_format: part.ephemeral_format.clone(),
        sector: geom.sector,
    };
    for (i, s) in specs.iter().enumerate() {
        let number = i as u32 + 1;
        let first = start_mb * mib;
        // sizes come from image_info: an absurd one must not wrap around
        // into a "fitting" layout
        let end_mb = start_mb.saturating_add(s.size_mb);
        let last = end_mb.saturating_mul(mib).saturating_sub(1);
        if last > last_usable {
            return Err(deploy_err(format!(
                "Disk partitioning failed on device {dev}: the partitions need {end_mb} MiB \
                 but the device has {} MiB",
                geom.size >> 20
            )));
        }
        let r = Region {
            offset: first * geom.sector,
            len: (last - first + 1) * geom.sector,
            path: disk::partition_path(dev, number),
            number,
            partuuid: None,
        };
        match s.role {
            Role::Efi => layout.efi = Some(r),
            Role::BiosBoot => layout.bios_boot = Some(r),
            Role::Ephemeral => layout.ephemeral = Some(r),
            Role::Swap => layout.swap = Some(r),
            Role::ConfigDrive => layout.configdrive = Some(r),
            Role::Root => layout.root = r,
        }
        start_mb = end_mb;
    }
    Ok(layout)
}

impl Layout {
    /// (region, GPT type, MBR type, boot flag) in partition-number order.
    fn parts(&self) -> Vec<(&Region, Guid, u8, bool)> {
        let msdos_boot = self.label == "msdos" && self.boot_mode == "bios";
        let mut v: Vec<(&Region, Guid, u8, bool)> = Vec::new();
        if let Some(r) = &self.efi {
            v.push((r, gpt::TYPE_ESP, mbr::TYPE_EFI, false));
        }
        if let Some(r) = &self.bios_boot {
            v.push((r, gpt::TYPE_BIOS_BOOT, mbr::TYPE_LINUX, false));
        }
        if let Some(r) = &self.ephemeral {
            v.push((r, gpt::TYPE_LINUX_DATA, mbr::TYPE_LINUX, false));
        }
        if let Some(r) = &self.swap {
            v.push((r, gpt::TYPE_LINUX_SWAP, mbr::TYPE_LINUX_SWAP, false));
        }
        if let Some(r) = &self.configdrive {
            v.push((r, gpt::TYPE_LINUX_DATA, mbr::TYPE_LINUX, false));
        }
        v.push((
            &self.root,
            gpt::TYPE_LINUX_DATA,
            mbr::TYPE_LINUX,
            msdos_boot,
        ));
        crate::util::sort_small_by(&mut v, |a, b| a.0.number.cmp(&b.0.number));
        v
    }

    fn regions_mut(&mut self) -> Vec<&mut Region> {
        let mut v: Vec<&mut Region> = Vec::new();
        for r in [
            &mut self.efi,
            &mut self.bios_boot,
            &mut self.ephemeral,
            &mut self.swap,
            &mut self.configdrive,
        ]
        .into_iter()
        .flatten()
        {
            v.push(r);
        }
        v.push(&mut self.root);
        v
    }
}

/// With preserve_ephemeral the table is not written. IPA then only numbers
/// the partitions (`make_partitions(commit=False)`) and writes into
/// whatever partition carries each number; here each part takes the
/// on-disk partition with its number, which must exist, and the ephemeral
/// partition, the data being kept, must be exactly where this layout puts
/// it (else the request does not describe this disk: refused). The others
/// may differ from the plan: a root partition grown by cloud-init's
/// growpart, a configdrive partition sized to an earlier drive (the new
/// drive and the image must still fit, checked when they are written).
fn adopt_preserved(
    dev_path: &Path,
    file: &File,
    geom: Geometry,
    layout: &mut Layout,
) -> Result<()> {
    let dev = dev_path.display();
    let t = match disk::read_table(&file, geom) {
        disk::Found::Table(t) => t,
        _ => {
            return Err(deploy_err(format!(
                "preserve_ephemeral is set but {dev} has no readable partition table"
            )))
        }
    };
    let eph = layout.ephemeral.clone();
    let overlaps_eph = |p: &disk::Partition| {
        eph.as_ref()
            .is_some_and(|e| p.offset < e.offset + e.len && e.offset < p.offset + p.len)
    };
    for r in layout.regions_mut() {
        // an msdos extended container is not a partition to write into
        // (its EBR and logical partitions are inside)
        let on_disk = t
            .partitions
            .iter()
            .find(|p| p.number == r.number && !p.mbr_type.is_some_and(mbr::is_extended_type));
        match on_disk {
            Some(p) if Some(r.number) != eph.as_ref().map(|e| e.number) && !overlaps_eph(p) => {
                r.offset = p.offset;
                r.len = p.len;
            }
            Some(p) if p.offset == r.offset && p.len == r.len => {}
            _ => {
                return Err(deploy_err(format!(
                    "preserve_ephemeral is set but partition {} of {dev} {} the requested \
                     layout; refusing to repartition",
                    r.path,
                    match on_disk {
                        Some(p)
                            if overlaps_eph(p)
                                && eph.as_ref().is_some_and(|e| e.number != r.number) =>
                        {
                            "overlaps the ephemeral partition of"
                        }
                        Some(_) => "does not match the ephemeral partition of",
                        None => "does not exist as a data partition in",
                    }
                )));
            }
        }
    }
    Ok(())
}

fn write_table(dev_path: &Path, file: &mut File, geom: Geometry, layout: &Layout) -> Result<()> {
    let dev = dev_path.display();
    // IPA's destroy_disk_metadata before partitioning: clear the old
    // tables at both ends (primary GPT and MBR in the first MiB, backup
    // GPT in the last).
    let mib_bytes = 1u64 << 20;
    let zero = vec![0u8; mib_bytes as usize];
    let head = mib_bytes.min(geom.size);
    file.write_all_at_(&zero[..head as usize], 0)
        .map_err(|e| io_err(format!("wiping the head of {dev}"), e))?;
    if geom.size > 2 * mib_bytes {
        file.write_all_at_(&zero, geom.size - mib_bytes)
            .map_err(|e| io_err(format!("wiping the tail of {dev}"), e))?;
    }
    // Stale signatures at the start of the new partitions (an old
    // filesystem would otherwise reappear in blkid); not the root, which
    // the image overwrites.
    for (r, ..) in layout.parts() {
        if r.number != layout.root.number {
            let n = r.len.min(mib_bytes) as usize;
            file.write_all_at_(&zero[..n], r.offset)
                .map_err(|e| io_err(format!("wiping {}", r.path), e))?;
        }
    }
    let sectors = geom.sectors();
    let mut lba0 = vec![0u8; 512];
    match layout.label {
        "gpt" => {
            let guid = Guid::random().map_err(|e| io_err("generating a GUID", e))?;
            let mut g = Gpt::new(geom.sector, sectors, guid)
                .map_err(|e| deploy_err(format!("creating a GPT on {dev}: {e}")))?;
            for (i, (r, ty, _, _)) in layout.parts().into_iter().enumerate() {
                let e = Entry {
                    type_guid: ty,
                    unique_guid: match r.partuuid {
                        Some(g) => g,
                        None => Guid::random().map_err(|e| io_err("generating a GUID", e))?,
                    },
                    first_lba: r.offset / geom.sector,
                    last_lba: (r.offset + r.len) / geom.sector - 1,
                    attributes: 0,
                    // parted names GPT partitions after mkpart's type word
                    name: "primary".into(),
                };
                g.set_entry(i, &e)
                    .map_err(|e| deploy_err(format!("creating a GPT on {dev}: {e}")))?;
            }
            Mbr::protective(sectors).write_into(&mut lba0);
            file.write_all_at_(&lba0, 0)
                .map_err(|e| io_err(format!("writing the protective MBR of {dev}"), e))?;
            g.write(file)
                .map_err(|e| io_err(format!("writing the GPT of {dev}"), e))?;
        }
        _ => {
            let mut sig = [0u8; 4];
            crate::sys::getrandom(&mut sig).map_err(|e| io_err("generating a disk id", e))?;
            let mut m = Mbr {
                // parted gives a new msdos label a random disk signature
                disk_signature: u32::from_le_bytes(sig).max(1),
                entries: [mbr::Entry::default(); 4],
            };
            for (i, (r, _, ty, boot)) in layout.parts().into_iter().enumerate() {
                m.entries[i] = mbr::Entry {
                    bootable: boot,
                    ptype: ty,
                    start: (r.offset / geom.sector) as u32,
                    sectors: (r.len / geom.sector) as u32,
                };
            }
            m.write_into(&mut lba0);
            file.write_all_at_(&lba0, 0)
                .map_err(|e| io_err(format!("writing the MBR of {dev}"), e))?;
        }
    }
    file.sync_all()
        .map_err(|e| io_err(format!("syncing {dev}"), e))?;
    Ok(())
}

/// `File` through [`Io`] without importing the trait's method names at
/// every call site.
trait WriteAt {
    fn write_all_at_(&mut self, buf: &[u8], off: u64) -> std::io::Result<()>;
}

impl WriteAt for File {
    fn write_all_at_(&mut self, buf: &[u8], off: u64) -> std::io::Result<()> {
        Io::write_all_at(self, buf, off)
    }
}

/// Linux swap v1 (what `mkswap -L <label>` writes, include/linux/swap.h
/// `union swap_header`): the first page zeroed except, at 1024, version 1,
/// the last page number, no bad pages, a UUID and a 16-byte label, and
/// "SWAPSPACE2" in the page's last 10 bytes. The kernel reads it in native
/// byte order with its own page size.
pub fn mkswap(
    io: &mut dyn Io,
    offset: u64,
    len: u64,
    label: &str,
    uuid: [u8; 16],
) -> std::io::Result<()> {
    let page = crate::sys::page_size();
    let pages = len / page;
    if pages < 10 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "swap area needs at least 10 pages",
        ));
    }
    let mut p = vec![0u8; page as usize];
    p[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
    p[1028..1032].copy_from_slice(&((pages - 1).min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    p[1036..1052].copy_from_slice(&uuid);
    for (d, c) in p[1052..1068].iter_mut().zip(label.bytes().take(15)) {
        *d = c;
    }
    let n = p.len();
    p[n - 10..].copy_from_slice(b"SWAPSPACE2");
    io.write_all_at(&p, offset)
}

fn random_uuid() -> Result<[u8; 16]> {
    let g = Guid::random().map_err(|e| io_err("generating a UUID", e))?;
    // Guid::random sets the version in on-disk (mixed-endian) order;
    // filesystem UUIDs are plain big-endian byte strings: set it again.
    let mut b = g.0;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b)
}

/// Find `mkfs.<fmt>` on PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// After the image is in `layout.root`: the ESP's FAT32, swap and
/// ephemeral filesystems, then the UUID map.
pub fn finish(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    layout: &Layout,
) -> Result<Map<String, Value>> {
    let was = disk::direct_off(dev_path, file);
    let r = finish_inner(env, dev_path, file, layout);
    disk::direct_restore(dev_path, file, was);
    r
}

fn finish_inner(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    layout: &Layout,
) -> Result<Map<String, Value>> {
    if let Some(efi) = &layout.efi {
        let mut id = [0u8; 4];
        crate::sys::getrandom(&mut id).map_err(|e| io_err("generating a volume id", e))?;
        // IPA's plain `mkfs.vfat` picks the FAT type by size: FAT32 for the
        // default 550 MiB, FAT16 or FAT12 for an ESP configured smaller
        let vol = crate::fs::fat::Volume {
            offset: efi.offset,
            len: efi.len,
            sector: layout.sector,
            label: "efi-part",
            volume_id: u32::from_le_bytes(id),
            hidden: efi.offset / layout.sector,
        };
        let r = crate::fs::fat::format_empty(file, &vol);
        r.map_err(|e| io_err(format!("creating the FAT filesystem on {}", efi.path), e))?;
    }
    if let Some(swap) = &layout.swap {
        mkswap(file, swap.offset, swap.len, "swap1", random_uuid()?)
            .map_err(|e| io_err(format!("writing the swap signature on {}", swap.path), e))?;
    }
    file.sync_all()
        .map_err(|e| io_err(format!("syncing {}", dev_path.display()), e))?;
    disk::reread_partitions(dev_path, file)?;
    if let (Some(eph), false) = (&layout.ephemeral, layout.preserve_ephemeral) {
        let fmt = layout.ephemeral_format.as_deref().unwrap_or("ext4");
        mkfs_ephemeral(env.root, eph, fmt)?;
    }
    uuids(&*file, layout)
}

/// IPA's `utils.mkfs(fs=<ephemeral_format>, label="ephemeral0")`, only
/// through a tool on PATH: the agent carries no ext4/xfs writer.
fn mkfs_ephemeral(root: &crate::root::Root, eph: &Region, fmt: &str) -> Result<()> {
    if fmt.is_empty() || !fmt.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AgentError::invalid_params(format!(
            "invalid ephemeral_format {fmt:?}"
        )));
    }
    let tool = format!("mkfs.{fmt}");
    let Some(bin) = find_tool(&tool) else {
        return Err(deploy_err(format!(
            "Cannot create the {fmt} ephemeral filesystem on {}: {tool} was not found on PATH \
             (this agent writes only the ESP and swap natively)",
            eph.path
        )));
    };
    let dev = root.path(&eph.path);
    let is_blk = std::fs::metadata(&dev)
        .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        .unwrap_or(false);
    if !is_blk {
        return Err(deploy_err(format!(
            "'ephemeral' device '{}' not found",
            eph.path
        )));
    }
    let mut cmd = std::process::Command::new(bin);
    match fmt {
        "ext2" | "ext3" | "ext4" => {
            cmd.args(["-F", "-L", "ephemeral0"]);
        }
        "vfat" | "fat" | "msdos" => {
            cmd.args(["-n", "ephemeral0"]);
        }
        _ => {
            cmd.args(["-L", "ephemeral0"]);
        }
    }
    let out = cmd
        .arg(&dev)
        .output()
        .map_err(|e| io_err(format!("running {tool}"), e))?;
    if !out.status.success() {
        return Err(deploy_err(format!(
            "{tool} {} failed ({}): {}",
            eph.path,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The `get_partition_uuids` answer for a partition image (IPA's
/// `work_on_disk` return value): partition paths, the root filesystem's
/// UUID (PARTUUID when it has none) and the ESP's vfat id.
pub fn uuids(io: &dyn Io, layout: &Layout) -> Result<Map<String, Value>> {
    let mut partitions = Map::new();
    let named = [
        ("efi system partition", &layout.efi),
        ("BIOS Boot partition", &layout.bios_boot),
        ("ephemeral", &layout.ephemeral),
        ("swap", &layout.swap),
        ("configdrive", &layout.configdrive),
    ];
    for (k, r) in named {
        if let Some(r) = r {
            partitions.insert(k.into(), json!(r.path));
        }
    }
    partitions.insert("root".into(), json!(layout.root.path));
    // IPA's block_uuid: the filesystem UUID, else the PARTUUID, which on
    // msdos is the disk signature and the partition number as blkid and
    // the kernel (root=PARTUUID=) spell it: "1234abcd-02"
    let msdos_signature = (layout.label == "msdos")
        .then(|| {
            let mut lba0 = [0u8; 512];
            io.read_exact_at(&mut lba0, 0).ok()?;
            // blkid reports no PARTUUID for a zero disk signature
            Some(mbr::disk_signature(&lba0)).filter(|&s| s != 0)
        })
        .flatten();
    let uuid_of = |r: &Region| -> String {
        crate::fs::blkid::probe_fs(io, r.offset, r.len)
            .and_then(|f| f.uuid)
            .or_else(|| r.partuuid.map(|g| g.to_lower()))
            .or_else(|| msdos_signature.map(|sig| format!("{sig:08x}-{:02x}", r.number)))
            .unwrap_or_default()
    };
    let mut m = Map::new();
    m.insert("partitions".into(), Value::Object(partitions));
    m.insert("root uuid".into(), json!(uuid_of(&layout.root)));
    m.insert(
        "efi system partition uuid".into(),
        layout
            .efi
            .as_ref()
            .map(|r| json!(uuid_of(r)))
            .unwrap_or(Value::Null),
    );
    Ok(m)
}

/// Fill in the PARTUUIDs from the table now on the disk (GPT only).
pub fn refresh_partuuids(env: &Env, dev_path: &Path, file: &File, layout: &mut Layout) {
    let Ok(geom) = disk::geometry(env.root, dev_path, file) else {
        return;
    };
    if let disk::Found::Table(t) = disk::read_table(&file, geom) {
        for r in layout.regions_mut() {
            r.partuuid = t
                .partitions
                .iter()
                .find(|p| p.number == r.number)
                .and_then(|p| p.gpt_uuid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_in_every_shape() {
        let a = json!({"capabilities": {"boot_mode": "uefi"}});
        let b = json!({"capabilities": "{\"boot_mode\": \"uefi\"}"});
        let c = json!({"capabilities": "disk_label:gpt,boot_mode:uefi"});
        for v in [a, b, c] {
            assert_eq!(parse_capabilities(Some(&v))["boot_mode"], "uefi");
        }
        assert!(parse_capabilities(Some(&json!({"capabilities": 5}))).is_empty());
    }

    #[test]
    fn mkswap_header() {
        let mut d = disk::MemDisk::new(1 << 20);
        mkswap(&mut d, 0, 1 << 20, "swap1", [7; 16]).unwrap();
        let f = crate::fs::blkid::probe_fs(&d, 0, 1 << 20).unwrap();
        assert_eq!(f.fstype, "swap");
        assert_eq!(f.label.as_deref(), Some("swap1"));
        assert!(mkswap(&mut d, 0, 4096, "x", [0; 16]).is_err());
    }

    fn geom(mb: u64, sector: u64) -> Geometry {
        Geometry {
            sector,
            size: mb << 20,
        }
    }

    #[test]
    fn plans_ipa_order_and_sizes() {
        let specs = [
            Spec {
                role: Role::Efi,
                size_mb: ESP_MB,
            },
            Spec {
                role: Role::Swap,
                size_mb: 64,
            },
            Spec {
                role: Role::ConfigDrive,
                size_mb: 64,
            },
            Spec {
                role: Role::Root,
                size_mb: 100,
            },
        ];
        let l = plan(
            "/dev/nvme0n1",
            geom(1024, 512),
            Label::Gpt,
            "uefi",
            &specs,
            &PartitionSpec::default(),
        )
        .unwrap();
        let efi = l.efi.unwrap();
        assert_eq!((efi.offset, efi.len), (1 << 20, 550 << 20));
        assert_eq!(efi.path, "/dev/nvme0n1p1");
        assert_eq!(l.swap.unwrap().offset, 551 << 20);
        assert_eq!(l.configdrive.unwrap().path, "/dev/nvme0n1p3");
        assert_eq!(l.root.path, "/dev/nvme0n1p4");
        assert_eq!(l.root.offset, 679 << 20);
        // sizes that would wrap around u64 are "too big", not a tiny layout
        for huge in [(1u64 << 53) - 6, u64::MAX - 1, u64::MAX] {
            let specs = [
                Spec {
                    role: Role::Ephemeral,
                    size_mb: 10,
                },
                Spec {
                    role: Role::Root,
                    size_mb: huge,
                },
            ];
            let e = plan(
                "/dev/sda",
                geom(1024, 512),
                Label::Msdos,
                "bios",
                &specs,
                &PartitionSpec::default(),
            );
            assert!(e.is_err(), "root_mb {huge} accepted");
        }
        // too big
        assert!(plan(
            "/dev/sda",
            geom(700, 512),
            Label::Gpt,
            "uefi",
            &specs,
            &PartitionSpec::default(),
        )
        .is_err());
    }
}
