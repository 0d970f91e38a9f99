//! A disk's partition table as the kernel will read it: GPT when LBA 1
//! (or the last LBA) holds a valid one, else the MBR; the partitions,
//! whatever the label; the backup GPT moved to the end of a bigger disk
//! (IPA's `fix_gpt_partition`, `sgdisk -e`).

use super::gpt::{self, Gpt, GptError, Guid};
use super::mbr::{self, Mbr};
use super::{Geometry, Io};
use crate::error::{AgentError, Kind, Result};
use std::path::Path;

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
pub fn read_table(io: &dyn Io, geom: Geometry) -> Found {
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

/// IPA's `fix_gpt_partition` for an already-open disk: move the backup GPT
/// to the end when it is not there, and refresh a pure protective MBR's
/// size to match. MBR disks and disks without a GPT are left alone.
pub fn fix_gpt(dev_path: &Path, io: &mut dyn Io, geom: Geometry) -> Result<()> {
    let sectors = geom.sectors();
    match gpt::relocate_backup(io, geom.sector, sectors) {
        Ok(gpt::Relocation::AlreadyAtEnd) => {}
        Ok(gpt::Relocation::Moved { from, to }) => {
            crate::util::log_at!(
                Info,
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
            return Err(AgentError::new(
                Kind::DeploymentError,
                format!(
                    "Failed to fix GPT partition on disk {}. Error: {why}",
                    dev_path.display()
                ),
            ))
        }
    }
    Ok(())
}

/// One partition of a table written from scratch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPart {
    /// 1-based; the GPT slot or MBR entry `number - 1`.
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub gpt_type: Guid,
    pub mbr_type: u8,
    /// GPT partition name.
    pub name: &'static str,
}

impl NewPart {
    /// A Linux data partition as parted's `mkpart primary` makes it: GPT
    /// type Linux filesystem named "primary", msdos type 0x83.
    pub fn linux(number: u32, first_lba: u64, last_lba: u64) -> NewPart {
        NewPart {
            number,
            first_lba,
            last_lba,
            gpt_type: gpt::TYPE_LINUX_DATA,
            mbr_type: mbr::TYPE_LINUX,
            name: "primary",
        }
    }
    /// Byte offset on a disk of `sector`-byte sectors.
    pub fn offset(&self, sector: u64) -> u64 {
        self.first_lba * sector
    }
    /// Length in bytes.
    pub fn len(&self, sector: u64) -> u64 {
        (self.last_lba - self.first_lba + 1) * sector
    }
}

/// "<what>: <e>" as a table error: one out-of-line copy of the
/// formatting for every failure of [`write_new`].
#[cold]
#[inline(never)]
fn fail(what: &str, e: &dyn std::fmt::Display) -> AgentError {
    AgentError::msg(format!("{what}: {e}"))
}

/// One write of [`write_new`], its failure named by `what`: the I/O
/// error is formatted and dropped here, not at every call site.
#[inline(never)]
fn write_at(io: &mut dyn Io, buf: &[u8], off: u64, what: &str) -> Result<()> {
    io.write_all_at(buf, off).map_err(|e| fail(what, &e))
}

/// A random GUID, or [`write_new`]'s error.
fn new_guid() -> Result<Guid> {
    Guid::random().map_err(|e| fail("generating a GUID", &e))
}

/// Write a fresh partition table on a disk (`parted mklabel` + `mkpart`):
/// the first and last MiB are cleared first (old primary and backup
/// tables), then a protective MBR and both GPT copies, or an MBR with a
/// random disk signature. Partition GUIDs are random. The caller syncs.
#[inline(never)]
pub fn write_new(io: &mut dyn Io, geom: Geometry, label: Label, parts: &[NewPart]) -> Result<()> {
    let mib = 1u64 << 20;
    let zero = vec![0u8; mib as usize];
    let head = mib.min(geom.size);
    write_at(
        io,
        &zero[..head as usize],
        0,
        "clearing the old partition table",
    )?;
    if geom.size > 2 * mib {
        write_at(
            io,
            &zero,
            geom.size - mib,
            "clearing the old backup partition table",
        )?;
    }
    drop(zero);
    let sectors = geom.sectors();
    let mut lba0 = vec![0u8; geom.sector as usize];
    let what = match label {
        Label::Gpt => {
            let mut g = Gpt::new(geom.sector, sectors, new_guid()?)
                .map_err(|e| fail("creating a GPT", &e))?;
            for p in parts {
                let e = gpt::Entry {
                    type_guid: p.gpt_type,
                    unique_guid: new_guid()?,
                    first_lba: p.first_lba,
                    last_lba: p.last_lba,
                    attributes: 0,
                    name: p.name.to_string(),
                };
                g.set_entry(p.number as usize - 1, &e)
                    .map_err(|e| fail("creating a GPT", &e))?;
            }
            Mbr::protective(sectors).write_into(&mut lba0);
            write_at(io, &lba0, 0, "writing the protective MBR")?;
            g.write(io).map_err(|e| fail("writing the GPT", &e))?;
            return Ok(());
        }
        Label::Msdos => {
            let mut sig = [0u8; 4];
            crate::sys::getrandom(&mut sig).map_err(|e| fail("generating a disk id", &e))?;
            let mut m = Mbr {
                disk_signature: u32::from_le_bytes(sig).max(1),
                entries: [mbr::Entry::default(); 4],
            };
            for p in parts {
                let (Ok(start), Ok(len), Some(slot)) = (
                    u32::try_from(p.first_lba),
                    u32::try_from(p.last_lba - p.first_lba + 1),
                    m.entries.get_mut(p.number as usize - 1),
                ) else {
                    return Err(AgentError::msg(format!(
                        "partition {} does not fit an msdos table",
                        p.number
                    )));
                };
                *slot = mbr::Entry {
                    bootable: false,
                    ptype: p.mbr_type,
                    start,
                    sectors: len,
                };
            }
            m.write_into(&mut lba0);
            "writing the MBR"
        }
    };
    write_at(io, &lba0, 0, what)
}

/// `sgdisk -F`: the first 1 MiB-aligned sector of the largest free
/// stretch of a GPT disk, and the last free sector of that stretch.
#[inline(never)]
pub fn largest_free(g: &Gpt, geom: Geometry) -> Option<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = g
        .used()
        .into_iter()
        .map(|(_, e)| (e.first_lba, e.last_lba))
        .collect();
    crate::util::sort_small(&mut used);
    let mut best: Option<(u64, u64)> = None;
    let mut cur = g.header.first_usable;
    let mut consider = |from: u64, to: u64| {
        if to >= from && best.is_none_or(|(a, b)| to - from > b - a) {
            best = Some((from, to));
        }
    };
    for (a, b) in used {
        if a > cur {
            consider(cur, a - 1);
        }
        cur = cur.max(b.saturating_add(1));
    }
    if cur <= g.header.last_usable {
        consider(cur, g.header.last_usable);
    }
    let (from, to) = best?;
    let mib = geom.mib().max(1);
    let start = from.div_ceil(mib) * mib;
    (start <= to).then_some((start, to))
}

/// Add a GPT partition `[first, last]` in the first free slot of `g`
/// (the disk's primary GPT, as the caller read it to find the room) and
/// write the table (`sgdisk -n 0:...`); returns its number and unique
/// GUID.
#[inline(never)]
pub fn gpt_add(
    io: &mut dyn Io,
    mut g: Gpt,
    first: u64,
    last: u64,
    type_guid: Guid,
    name: &str,
) -> Result<(u32, Guid)> {
    let slot = g
        .free_slot()
        .ok_or_else(|| AgentError::msg("the GPT has no free partition slot"))?;
    let unique = new_guid()?;
    g.set_entry(
        slot,
        &gpt::Entry {
            type_guid,
            unique_guid: unique,
            first_lba: first,
            last_lba: last,
            attributes: 0,
            name: name.to_string(),
        },
    )
    .map_err(|e| fail("adding a partition", &e))?;
    g.write(io).map_err(|e| fail("writing the GPT", &e))?;
    Ok((slot as u32 + 1, unique))
}

/// Drop partitions by number from a GPT or MBR table (`parted rm`).
#[inline(never)]
pub fn remove_partitions(io: &mut dyn Io, geom: Geometry, numbers: &[u32]) -> Result<()> {
    let what = "removing partitions";
    match Gpt::read_primary(&*io, geom.sector, geom.sectors()) {
        Ok(mut g) => {
            for &n in numbers {
                let empty = gpt::Entry {
                    type_guid: Guid::ZERO,
                    unique_guid: Guid::ZERO,
                    first_lba: 0,
                    last_lba: 0,
                    attributes: 0,
                    name: String::new(),
                };
                g.set_entry(n as usize - 1, &empty)
                    .map_err(|e| fail(what, &e))?;
            }
            g.write(io).map_err(|e| fail(what, &e))
        }
        Err(_) => {
            let mut lba0 = mbr::read(&*io).map_err(|e| fail(what, &e))?;
            let Some(mut m) = Mbr::parse(&lba0) else {
                return Err(fail(what, &"no partition table"));
            };
            for &n in numbers {
                if let Some(e) = m.entries.get_mut(n as usize - 1) {
                    *e = mbr::Entry::default();
                }
            }
            m.write_into(&mut lba0);
            write_at(io, &lba0, 0, what)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::disk::gpt::{Entry, TYPE_LINUX_DATA};
    use crate::disk::MemDisk;

    #[test]
    fn partition_paths_like_ipa() {
        assert_eq!(partition_path("/dev/sda", 2), "/dev/sda2");
        assert_eq!(partition_path("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
        assert_eq!(partition_path("/dev/md0", 1), "/dev/md0p1");
    }

    /// A GPT disk of `sectors` with `parts` 1 MiB Linux partitions.
    pub fn gpt_disk(sector: u64, sectors: u64, parts: usize) -> MemDisk {
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
                let _ = read_table(&w, geom);
            }
        }
    }
    #[test]
    fn new_tables_free_space_add_and_remove() {
        let geom = Geometry {
            sector: 512,
            size: 64 << 20,
        };
        let mut d = MemDisk::new(geom.size as usize);
        let part = |number, first, last| NewPart {
            number,
            first_lba: first,
            last_lba: last,
            gpt_type: TYPE_LINUX_DATA,
            mbr_type: mbr::TYPE_LINUX,
            name: "primary",
        };
        write_new(
            &mut d,
            geom,
            Label::Gpt,
            &[part(1, 40960, 81919), part(2, 81920, 122879)],
        )
        .unwrap();
        let Found::Table(t) = read_table(&d, geom) else {
            panic!("no table")
        };
        assert_eq!(t.label, Label::Gpt);
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.partitions[1].gpt_name, "primary");
        let g = Gpt::read_primary(&d, 512, geom.sectors()).unwrap();
        // the gap before partition 1 (20 MiB) is larger than the tail
        assert_eq!(largest_free(&g, geom), Some((2048, 40959)));
        let (n, _) = gpt_add(&mut d, g, 2048, 40959, gpt::TYPE_ESP, "uefi-holder-0").unwrap();
        assert_eq!(n, 3);
        let g = Gpt::read_primary(&d, 512, geom.sectors()).unwrap();
        assert_eq!(largest_free(&g, geom), Some((122880, geom.sectors() - 34)));
        remove_partitions(&mut d, geom, &[1, 3]).unwrap();
        let Found::Table(t) = read_table(&d, geom) else {
            panic!("no table")
        };
        assert_eq!(
            t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![2]
        );
        // msdos
        write_new(&mut d, geom, Label::Msdos, &[part(1, 2048, 40959)]).unwrap();
        let Found::Table(t) = read_table(&d, geom) else {
            panic!("no table")
        };
        assert_eq!(t.label, Label::Msdos);
        assert_eq!(
            (t.partitions[0].start_lba, t.partitions[0].mbr_type),
            (2048, Some(0x83))
        );
        remove_partitions(&mut d, geom, &[1]).unwrap();
        let Found::Table(t) = read_table(&d, geom) else {
            panic!("no table")
        };
        assert!(t.partitions.is_empty());
    }
}
