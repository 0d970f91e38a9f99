//! The disk after an image is on it: geometry, the partition table as the
//! kernel will see it, the backup GPT moved to the end (IPA's
//! `fix_gpt_partition`), the kernel told to re-read (IPA's `partprobe`),
//! the "at least one partition" check (IPA's `_validate_partitioning`),
//! filesystem UUIDs and labels read from superblocks (IPA's `blkid`/`lsblk`
//! calls), and `get_partition_uuids`' answer.
//!
//! No external tool is run. Devices may be regular files (fixture roots):
//! then ioctls are skipped and the sector size comes from the fixture's
//! `/sys/block/<dev>/queue/logical_block_size`.

use super::gpt::{self, Gpt, GptError, Guid};
use super::mbr::{self, Mbr};
use crate::agent::Agent;
use crate::error::{AgentError, Kind, Result};
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Positioned I/O over a disk: a `File` (device or sparse file) or, in
/// tests, a buffer.
pub trait Io {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
}

impl Io for File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, off)
    }
}

impl Io for &File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(*self, buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(*self, buf, off)
    }
}

/// An in-memory disk for unit tests and for building small images.
#[derive(Clone, Debug)]
pub struct MemDisk(pub Vec<u8>);

impl MemDisk {
    pub fn new(len: usize) -> MemDisk {
        MemDisk(vec![0; len])
    }
}

fn range(len: usize, buf: usize, off: u64) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(off).map_err(|_| io::ErrorKind::UnexpectedEof)?;
    let end = start
        .checked_add(buf)
        .filter(|&e| e <= len)
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    Ok(start..end)
}

impl Io for MemDisk {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let r = range(self.0.len(), buf.len(), off)?;
        buf.copy_from_slice(&self.0[r]);
        Ok(())
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let r = range(self.0.len(), buf.len(), off)?;
        self.0[r].copy_from_slice(buf);
        Ok(())
    }
}

/// Size and logical sector size of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub sector: u64,
    pub size: u64,
}

impl Geometry {
    pub fn sectors(&self) -> u64 {
        self.size / self.sector
    }
    /// Sectors per MiB (the alignment unit of parted's `-a optimal` and of
    /// every table written here).
    pub fn mib(&self) -> u64 {
        (1 << 20) / self.sector
    }
}

/// The kernel name of a device path: "/dev/sda" → "sda".
fn kname(dev_path: &Path) -> String {
    dev_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Turn O_DIRECT off on `file` for small, unaligned table I/O; returns
/// whether it was on, for [`direct_restore`]. The streaming writer hands
/// over the file it opened with O_DIRECT.
pub fn direct_off(dev_path: &Path, file: &File) -> bool {
    crate::sys::set_o_direct(file, false).unwrap_or_else(|e| {
        log::warn!("{}: cannot turn O_DIRECT off: {e}", dev_path.display());
        false
    })
}

/// Put O_DIRECT back when [`direct_off`] found it on.
pub fn direct_restore(dev_path: &Path, file: &File, was: bool) {
    if was {
        if let Err(e) = crate::sys::set_o_direct(file, true) {
            log::warn!("{}: cannot turn O_DIRECT back on: {e}", dev_path.display());
        }
    }
}

/// BLKSSZGET/BLKGETSIZE64 for a block device; for a regular file (fixture
/// root) its length and `/sys/block/<name>/queue/logical_block_size` from
/// the root, 512 when absent.
pub fn geometry(agent: &Agent, dev_path: &Path, file: &File) -> Result<Geometry> {
    let (sector, size) = if crate::sys::is_block_device(file) {
        let s = crate::sys::logical_sector_size(file).map_err(|e| {
            AgentError::io(
                Kind::BlockDeviceError,
                format!("reading the sector size of {}", dev_path.display()),
                e,
            )
        })?;
        let n = crate::sys::block_device_size(file).map_err(|e| {
            AgentError::io(
                Kind::BlockDeviceError,
                format!("reading the size of {}", dev_path.display()),
                e,
            )
        })?;
        (u64::from(s), n)
    } else {
        let n = file
            .metadata()
            .map_err(|e| {
                AgentError::io(
                    Kind::BlockDeviceError,
                    format!("reading the size of {}", dev_path.display()),
                    e,
                )
            })?
            .len();
        let p = agent.root.path(format!(
            "/sys/block/{}/queue/logical_block_size",
            kname(dev_path)
        ));
        let s = std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(512);
        (s, n)
    };
    if !(512..=65536).contains(&sector) || !sector.is_power_of_two() {
        return Err(AgentError::block_device(format!(
            "{} reports an unsupported logical sector size of {sector} bytes",
            dev_path.display()
        )));
    }
    Ok(Geometry { sector, size })
}

/// "gpt" or "msdos", as parted names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Gpt,
    Msdos,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Gpt => "gpt",
            Label::Msdos => "msdos",
        }
    }
}

/// One partition, whatever the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel numbers them (sda1, nvme0n1p1).
    pub number: u32,
    /// Byte offset and length on the disk.
    pub offset: u64,
    pub len: u64,
    /// Start and size in logical sectors.
    pub start_lba: u64,
    pub sectors: u64,
    pub gpt_type: Option<Guid>,
    pub gpt_uuid: Option<Guid>,
    pub gpt_name: String,
    pub mbr_type: Option<u8>,
    pub bootable: bool,
}

impl Partition {
    /// An EFI system partition: GPT type C12A7328-…, or MBR type 0xEF
    /// (parted's `esp` flag on either label; IPA's `find_efi_partition`).
    pub fn is_esp(&self) -> bool {
        self.gpt_type == Some(gpt::TYPE_ESP) || self.mbr_type == Some(mbr::TYPE_EFI)
    }
}

/// A disk's partition table as the kernel would read it.
#[derive(Clone, Debug)]
pub struct Table {
    pub label: Label,
    pub disk_guid: Option<Guid>,
    pub mbr_signature: u32,
    pub partitions: Vec<Partition>,
}

/// What reading a table found.
#[derive(Debug)]
pub enum Found {
    Table(Table),
    /// Neither a GPT nor an MBR signature.
    Nothing,
    /// A table that is there but broken (reason given).
    Broken(String),
}

/// Read the partition table: GPT when LBA 1 (or the last LBA) holds a
/// valid one, else the MBR. A protective MBR without any valid GPT is
/// broken; an image built for 512-byte sectors on a 4 KiB disk (or the
/// reverse) is detected and named, since that is a common cause of IPA's
/// "Unable to find a valid partition table".
pub fn read_table(io: &impl Io, geom: Geometry) -> Found {
    let lba0 = match mbr::read(io) {
        Ok(b) => b,
        Err(e) => return Found::Broken(format!("reading LBA 0: {e}")),
    };
    let m = Mbr::parse(&lba0);
    let sectors = geom.sectors();
    match Gpt::read_any(io, geom.sector, sectors) {
        Ok(g) => {
            let partitions = g
                .used()
                .into_iter()
                .map(|(n, e)| Partition {
                    number: n,
                    offset: e.first_lba * geom.sector,
                    len: (e.last_lba - e.first_lba + 1) * geom.sector,
                    start_lba: e.first_lba,
                    sectors: e.last_lba - e.first_lba + 1,
                    gpt_type: Some(e.type_guid),
                    gpt_uuid: Some(e.unique_guid),
                    gpt_name: e.name,
                    mbr_type: None,
                    bootable: e.attributes & 4 != 0,
                })
                .collect();
            return Found::Table(Table {
                label: Label::Gpt,
                disk_guid: Some(g.header.disk_guid),
                mbr_signature: mbr::disk_signature(&lba0),
                partitions,
            });
        }
        Err(GptError::Invalid(why)) => return Found::Broken(format!("invalid GPT: {why}")),
        Err(GptError::NoSignature) => {}
    }
    let Some(m) = m else {
        return Found::Nothing;
    };
    if m.is_protective() {
        // Look for a GPT written for the other sector size.
        for other in [512u64, 4096] {
            if other != geom.sector {
                let mut b = [0u8; 8];
                if io.read_exact_at(&mut b, other).is_ok() && &b == gpt::SIGNATURE {
                    return Found::Broken(format!(
                        "the GPT was made for {other}-byte sectors but the device uses {}-byte \
                         sectors",
                        geom.sector
                    ));
                }
            }
        }
        return Found::Broken("protective MBR without a valid GPT".into());
    }
    let partitions = mbr::partitions(io, &m, geom.sector, sectors)
        .into_iter()
        .filter(|p| p.start.saturating_add(p.sectors) <= sectors)
        .map(|p| Partition {
            number: p.number,
            offset: p.start * geom.sector,
            len: p.sectors * geom.sector,
            start_lba: p.start,
            sectors: p.sectors,
            gpt_type: None,
            gpt_uuid: None,
            gpt_name: String::new(),
            mbr_type: Some(p.entry.ptype),
            bootable: p.entry.bootable,
        })
        .collect();
    Found::Table(Table {
        label: Label::Msdos,
        disk_guid: None,
        mbr_signature: m.disk_signature,
        partitions,
    })
}

/// IPA's `partition_index_to_path`: "/dev/sda" + 2 → "/dev/sda2",
/// "/dev/nvme0n1" + 2 → "/dev/nvme0n1p2" (a name ending in a digit gets a
/// `p`).
pub fn partition_path(dev: &str, number: u32) -> String {
    if dev.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{dev}p{number}")
    } else {
        format!("{dev}{number}")
    }
}

fn deploy_error(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::DeploymentError, details)
}

/// BLKRRPART with coreos-installer's retries (20 × 100 ms while the kernel
/// answers EBUSY, e.g. while udev still holds a partition it just probed).
/// Skipped for regular files. EINVAL (a device that cannot carry
/// partitions, such as a loop device without partscan) is logged, not
/// fatal: IPA's `partprobe` failures are warnings too.
pub fn reread_partitions(dev_path: &Path, file: &File) -> Result<()> {
    if !crate::sys::is_block_device(file) {
        return Ok(());
    }
    let _ = file.sync_all();
    let mut last = None;
    for attempt in 0..20 {
        match crate::sys::reread_partitions(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                if attempt < 19 {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                log::warn!(
                    "{}: the kernel cannot re-read its partition table (not a partitionable \
                     device, e.g. a loop device without partscan): {e}",
                    dev_path.display()
                );
                return Ok(());
            }
            Err(e) => {
                return Err(AgentError::io(
                    Kind::BlockDeviceError,
                    format!("re-reading the partition table of {}", dev_path.display()),
                    e,
                ))
            }
        }
    }
    Err(AgentError::new(
        Kind::BlockDeviceError,
        format!(
            "re-reading the partition table of {}: {} (a partition is still in use; tried 20 \
             times over 2 s)",
            dev_path.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

/// IPA's `fix_gpt_partition` for an already-open disk: move the backup GPT
/// to the end when it is not there, and refresh a pure protective MBR's
/// size to match. MBR disks and disks without a GPT are left alone.
pub fn fix_gpt(dev_path: &Path, io: &mut impl Io, geom: Geometry) -> Result<()> {
    let sectors = geom.sectors();
    match gpt::relocate_backup(io, geom.sector, sectors) {
        Ok(gpt::Relocation::AlreadyAtEnd) => {}
        Ok(gpt::Relocation::Moved { from, to }) => {
            log::info!(
                "{}: moved the backup GPT from LBA {from} to the end of the disk (LBA {to})",
                dev_path.display()
            );
            let mut lba0 = mbr::read(io).map_err(|e| {
                AgentError::io(
                    Kind::DeploymentError,
                    format!("reading the MBR of {}", dev_path.display()),
                    e,
                )
            })?;
            if let Some(m) = Mbr::parse(&lba0) {
                if m.is_pure_protective() {
                    let mut p = Mbr::protective(sectors);
                    p.disk_signature = m.disk_signature;
                    p.write_into(&mut lba0);
                    io.write_all_at(&lba0, 0).map_err(|e| {
                        AgentError::io(
                            Kind::DeploymentError,
                            format!("writing the protective MBR of {}", dev_path.display()),
                            e,
                        )
                    })?;
                }
            }
        }
        Err(GptError::NoSignature) => {}
        Err(GptError::Invalid(why)) => {
            return Err(deploy_error(format!(
                "Failed to fix GPT partition on disk {}. Error: {why}",
                dev_path.display()
            )))
        }
    }
    Ok(())
}

/// After a whole-disk image is on `dev_path` (open as `file`): move the
/// backup GPT to the real end of a bigger disk (`sgdisk -e`), re-read the
/// partition table, and fail as IPA's `_validate_partitioning` does when
/// the image carries no partition.
pub fn after_whole_disk_write(agent: &Agent, dev_path: &Path, file: &mut File) -> Result<()> {
    let was = direct_off(dev_path, file);
    let r = after_whole_disk_write_inner(agent, dev_path, file);
    direct_restore(dev_path, file, was);
    r
}

fn after_whole_disk_write_inner(agent: &Agent, dev_path: &Path, file: &mut File) -> Result<()> {
    let geom = geometry(agent, dev_path, file)?;
    fix_gpt(dev_path, file, geom)?;
    file.sync_all().map_err(|e| {
        AgentError::io(
            Kind::DeploymentError,
            format!("syncing {}", dev_path.display()),
            e,
        )
    })?;
    reread_partitions(dev_path, file)?;
    validate_partitioning(dev_path, &*file, geom)
}

/// IPA's `_validate_partitioning`, from the bytes.
pub fn validate_partitioning(dev_path: &Path, io: &impl Io, geom: Geometry) -> Result<()> {
    match read_table(io, geom) {
        Found::Table(t) if !t.partitions.is_empty() => Ok(()),
        Found::Table(_) => Err(deploy_error(format!(
            "No partitions found on the device {} after writing the image.",
            dev_path.display()
        ))),
        Found::Nothing => Err(deploy_error(format!(
            "Unable to find a valid partition table on the disk after writing the image. The \
             image may be corrupted or it uses a different sector size than the device. Error: \
             {}: unrecognised disk label",
            dev_path.display()
        ))),
        Found::Broken(why) => Err(deploy_error(format!(
            "Unable to find a valid partition table on the disk after writing the image. The \
             image may be corrupted or it uses a different sector size than the device. Error: \
             {}: {why}",
            dev_path.display()
        ))),
    }
}

/// What a superblock says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// blkid's TYPE: "ext4", "xfs", "btrfs", "vfat", "iso9660", "swap".
    pub fstype: &'static str,
    /// blkid's UUID text.
    pub uuid: Option<String>,
    pub label: Option<String>,
}

fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() < 16 || b[..16].iter().all(|&x| x == 0) {
        return None;
    }
    let h: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn label_text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

/// Identify the filesystem starting at `offset` (a partition's start) the
/// way blkid does for the types the agent cares about.
pub fn probe_fs(io: &impl Io, offset: u64, len: u64) -> Option<FsInfo> {
    let read = |at: u64, n: usize| -> Option<Vec<u8>> {
        if at.checked_add(n as u64)? > len {
            return None;
        }
        let mut b = vec![0u8; n];
        io.read_exact_at(&mut b, offset + at).ok()?;
        Some(b)
    };
    // ext2/3/4: superblock at 1024, s_magic 0xEF53 at +56.
    if let Some(sb) = read(1024, 256) {
        if sb[56] == 0x53 && sb[57] == 0xef {
            let compat = u32::from_le_bytes([sb[92], sb[93], sb[94], sb[95]]);
            let incompat = u32::from_le_bytes([sb[96], sb[97], sb[98], sb[99]]);
            let fstype = if incompat & 0x2c0 != 0 {
                "ext4" // EXTENTS | 64BIT | FLEX_BG
            } else if compat & 0x4 != 0 {
                "ext3" // HAS_JOURNAL
            } else {
                "ext2"
            };
            return Some(FsInfo {
                fstype,
                uuid: uuid_text(&sb[104..120]),
                label: label_text(&sb[120..136]),
            });
        }
    }
    // XFS: "XFSB" at 0, sb_uuid at 32, sb_fname at 108.
    if let Some(sb) = read(0, 512) {
        if &sb[0..4] == b"XFSB" {
            return Some(FsInfo {
                fstype: "xfs",
                uuid: uuid_text(&sb[32..48]),
                label: label_text(&sb[108..120]),
            });
        }
    }
    // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at +0x40.
    if let Some(sb) = read(0x10000, 0x22b) {
        if &sb[0x40..0x48] == b"_BHRfS_M" {
            return Some(FsInfo {
                fstype: "btrfs",
                uuid: uuid_text(&sb[0x20..0x30]),
                label: label_text(&sb[0x12b..0x22b]),
            });
        }
    }
    // ISO 9660: primary volume descriptor at 32 KiB ("\x01CD001").
    if let Some(pvd) = read(32768, 2048) {
        if &pvd[1..6] == b"CD001" && pvd[0] == 1 {
            // blkid's UUID for ISO9660 is the creation date
            // (YYYY-MM-DD-HH-MM-SS-CC) from the volume descriptor.
            let d = &pvd[813..829];
            let uuid = d.iter().all(u8::is_ascii_digit).then(|| {
                let s = String::from_utf8_lossy(d);
                format!(
                    "{}-{}-{}-{}-{}-{}-{}",
                    &s[0..4],
                    &s[4..6],
                    &s[6..8],
                    &s[8..10],
                    &s[10..12],
                    &s[12..14],
                    &s[14..16]
                )
            });
            return Some(FsInfo {
                fstype: "iso9660",
                uuid,
                label: label_text(&pvd[40..72]),
            });
        }
    }
    // swap: "SWAPSPACE2" at the end of the first page (4 KiB here; 64 KiB
    // pages on some arm64 kernels), UUID at 1024+12, label at 1024+28.
    for page in [4096u64, 65536, 16384, 8192] {
        if let Some(magic) = read(page - 10, 10) {
            if &magic == b"SWAPSPACE2" || &magic == b"SWAP-SPACE" {
                let h = read(1024, 44)?;
                return Some(FsInfo {
                    fstype: "swap",
                    uuid: uuid_text(&h[12..28]),
                    label: label_text(&h[28..44]),
                });
            }
        }
    }
    // FAT: boot sector with 0x55AA and a FAT type string.
    if let Some(bs) = read(0, 512) {
        if bs[510] == 0x55 && bs[511] == 0xaa {
            let (id_off, label_off) = if &bs[82..87] == b"FAT32" {
                (67, 71)
            } else if &bs[54..59] == b"FAT12" || &bs[54..59] == b"FAT16" {
                (39, 43)
            } else {
                (0, 0)
            };
            if id_off != 0 {
                let id = u32::from_le_bytes([
                    bs[id_off],
                    bs[id_off + 1],
                    bs[id_off + 2],
                    bs[id_off + 3],
                ]);
                let label = label_text(&bs[label_off..label_off + 11]).filter(|l| l != "NO NAME");
                // The root directory's volume-label entry wins over the
                // boot sector's copy, as in blkid.
                let label = super::fat::Fat::open(io, offset, len)
                    .ok()
                    .and_then(|f| f.volume_label())
                    .or(label);
                return Some(FsInfo {
                    fstype: "vfat",
                    uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff)),
                    label,
                });
            }
        }
    }
    None
}

/// IPA's `block_uuid`: the filesystem UUID, else the GPT PARTUUID, else "".
pub fn block_uuid(io: &impl Io, part: &Partition) -> String {
    if let Some(uuid) = probe_fs(io, part.offset, part.len).and_then(|f| f.uuid) {
        return uuid;
    }
    part.gpt_uuid.map(|g| g.to_lower()).unwrap_or_default()
}

/// The `get_partition_uuids` answer for a whole-disk image: `{"root uuid":
/// "0x%08x"}`, the 4 bytes at 440 (IPA's `get_disk_identifier`; GPT
/// images usually give `0x00000000`).
pub fn whole_disk_uuids(io: &impl Io) -> Result<Map<String, Value>> {
    let lba0 =
        mbr::read(io).map_err(|e| AgentError::io(Kind::DeploymentError, "reading LBA 0", e))?;
    let mut m = Map::new();
    m.insert(
        "root uuid".into(),
        json!(format!("0x{:08x}", mbr::disk_signature(&lba0))),
    );
    Ok(m)
}

/// `standby.get_partition_uuids`' answer after an image write. For a
/// whole-disk image (`layout` None) the disk identifier; for a partition
/// image the partition paths and the root and ESP filesystem UUIDs, read
/// from their superblocks (IPA's `work_on_disk`).
pub fn partition_uuids(
    agent: &Agent,
    dev_path: &Path,
    file: &File,
    layout: Option<&super::partition::Layout>,
) -> Result<Map<String, Value>> {
    let Some(layout) = layout else {
        let was = direct_off(dev_path, file);
        let r = whole_disk_uuids(&file);
        direct_restore(dev_path, file, was);
        return r;
    };
    let _ = geometry(agent, dev_path, file)?;
    let was = direct_off(dev_path, file);
    let r = super::partition::uuids(file, layout);
    direct_restore(dev_path, file, was);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::gpt::{Entry, TYPE_LINUX_DATA};

    #[test]
    fn partition_paths_like_ipa() {
        assert_eq!(partition_path("/dev/sda", 2), "/dev/sda2");
        assert_eq!(partition_path("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
        assert_eq!(partition_path("/dev/md0", 1), "/dev/md0p1");
    }

    fn gpt_disk(sector: u64, sectors: u64, parts: usize) -> MemDisk {
        let mut d = MemDisk::new((sector * sectors) as usize);
        let mut g = Gpt::new(sector, sectors, Guid::random().unwrap()).unwrap();
        let mib = (1 << 20) / sector;
        for i in 0..parts {
            g.set_entry(
                i,
                &Entry {
                    type_guid: TYPE_LINUX_DATA,
                    unique_guid: Guid::random().unwrap(),
                    first_lba: mib * (i as u64 + 1),
                    last_lba: mib * (i as u64 + 2) - 1,
                    attributes: 0,
                    name: String::new(),
                },
            )
            .unwrap();
        }
        let mut lba0 = vec![0u8; 512];
        Mbr::protective(sectors).write_into(&mut lba0);
        d.write_all_at(&lba0, 0).unwrap();
        g.write(&mut d).unwrap();
        d
    }

    #[test]
    fn validate_counts_partitions() {
        let geom = Geometry {
            sector: 512,
            size: 8 << 20,
        };
        let p = Path::new("/dev/sdx");
        let d = gpt_disk(512, geom.sectors(), 2);
        validate_partitioning(p, &d, geom).unwrap();
        let empty = gpt_disk(512, geom.sectors(), 0);
        let e = validate_partitioning(p, &empty, geom).unwrap_err();
        assert_eq!(
            e.details,
            "No partitions found on the device /dev/sdx after writing the image."
        );
        assert_eq!(e.type_name(), "DeploymentError");
        let nothing = MemDisk::new(1 << 20);
        let e = validate_partitioning(p, &nothing, geom).unwrap_err();
        assert!(
            e.details.contains("unrecognised disk label"),
            "{}",
            e.details
        );
    }

    #[test]
    fn wrong_sector_size_is_named() {
        let d = gpt_disk(512, 16384, 1);
        let geom = Geometry {
            sector: 4096,
            size: 8 << 20,
        };
        match read_table(&d, geom) {
            Found::Broken(why) => assert!(why.contains("512-byte sectors"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fix_gpt_refreshes_protective_mbr() {
        let small = gpt_disk(512, 8192, 1);
        let mut big = MemDisk::new(16384 * 512);
        big.0[..small.0.len()].copy_from_slice(&small.0);
        let geom = Geometry {
            sector: 512,
            size: 16384 * 512,
        };
        fix_gpt(Path::new("/dev/x"), &mut big, geom).unwrap();
        let m = Mbr::parse(&big.0[..512]).unwrap();
        assert_eq!(m.entries[0].sectors, 16383);
        match read_table(&big, geom) {
            Found::Table(t) => assert_eq!(t.partitions.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_disks_never_panic() {
        let base = gpt_disk(512, 8192, 3);
        let mut rng = fastrand::Rng::with_seed(5);
        for round in 0..1500 {
            let mut d = MemDisk(base.0.clone());
            // scribble over the MBR, the primary header and the entries
            for _ in 0..16 {
                let i = rng.usize(0..(34 * 512));
                d.0[i] = rng.u8(..);
            }
            if round % 2 == 0 {
                // keep the header CRC valid so the fields themselves are
                // exercised
                d.0[512 + 16..512 + 20].fill(0);
                let crc = gpt::crc32(&d.0[512..512 + 92]);
                d.0[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
            }
            for sector in [512u64, 4096] {
                let geom = Geometry {
                    sector,
                    size: d.0.len() as u64 * (1 + round as u64 % 3),
                };
                let _ = read_table(&d, geom);
                let mut w = MemDisk(d.0.clone());
                let _ = fix_gpt(Path::new("/dev/x"), &mut w, geom);
                if let Found::Table(t) = read_table(&w, geom) {
                    for p in &t.partitions {
                        let _ = block_uuid(&w, p);
                    }
                }
            }
        }
    }

    #[test]
    fn whole_disk_root_uuid_is_mbr_signature() {
        let mut d = MemDisk::new(4096);
        d.0[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        assert_eq!(whole_disk_uuids(&d).unwrap()["root uuid"], "0xdeadbeef");
    }

    #[test]
    fn probes_ext4_and_swap() {
        let mut d = MemDisk::new(1 << 20);
        d.0[1024 + 56] = 0x53;
        d.0[1024 + 57] = 0xef;
        d.0[1024 + 96] = 0x40; // extents
        d.0[1024 + 104..1024 + 120].copy_from_slice(&[0x11; 16]);
        d.0[1024 + 120..1024 + 124].copy_from_slice(b"root");
        let f = probe_fs(&d, 0, 1 << 20).unwrap();
        assert_eq!(f.fstype, "ext4");
        assert_eq!(
            f.uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(f.label.as_deref(), Some("root"));
        assert!(probe_fs(&MemDisk::new(4096), 0, 4096).is_none());
        // truncated regions never read outside themselves
        assert!(probe_fs(&d, 0, 100).is_none());
    }
}
