//! GUID Partition Table: parse, check, create and relocate (UEFI spec 2.10
//! §5.3). Everything here works on byte buffers and the [`Io`] trait, so a
//! hostile table read from an image can only produce an error, never a
//! panic or an out-of-bounds access: every offset and count taken from the
//! disk is checked before it is used.
//!
//! What `sgdisk -e` does (IPA's `disk_utils._fix_gpt_structs`) is
//! [`relocate_backup`]; what `parted mklabel gpt` + `mkpart` do is
//! [`Gpt::new`] + [`Gpt::write`].
//!
//! Why hand-written rather than a crate (judged for issue 15; sizes are the
//! stable static build, 3,387,288 bytes at e0303c1):
//! - `gptman` 3.1.1 (rust-disk-partition-management, 2026-04, active):
//!   [`Gpt::read_at`], [`Gpt::write`] and [`relocate_backup`] moved onto it
//!   (an `Io` adapted to `Read + Write + Seek`) grew the binary by 32,448
//!   bytes, past `scripts/build-static`'s budget. On a hostile table whose
//!   CRCs are right it allocates the claimed entry array up front
//!   (`u32::MAX` entries: ~650 GB, an allocation failure that aborts the
//!   agent rather than a panic it could catch); its array CRC asserts
//!   128-byte entries, so the spec's larger entry sizes panic; it accepts
//!   only 92-byte headers, checks neither `my_lba` nor the partitions'
//!   bounds when reading, and writes the primary before the backup. Probing
//!   would still need [`LooseHeader`] here.
//! - `gpt` 4.1.0 (2025-03): not wired; it pulls `uuid` with random v4
//!   generation for the same job.
//!
//! The format is frozen; this is ~400 lines of code, tested here (2,000
//! random hostile headers among them) and against `sgdisk -v` and
//! `sgdisk -e` (`tests/image_disk.rs`).

use super::Io;
use crate::util::bytes::{le32, le64};
pub use crate::util::guid::Guid;
use std::fmt;
use std::io;

/// "EFI PART" (UEFI spec Table 5-5).
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0.
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// The size every tool uses; the spec allows 128 × 2^n.
pub const ENTRY_SIZE: u32 = 128;
/// parted, sgdisk and the kernel all create 128 entries (16 KiB).
pub const DEFAULT_ENTRIES: u32 = 128;
/// The largest entry array accepted from a disk: far above what any tool
/// writes, small enough that a hostile header cannot make us allocate much.
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Partition type GUIDs (UEFI spec Table 5-7, and the freedesktop
/// Discoverable Partitions list for the Linux ones, which is what parted
/// and sgdisk use).
pub const TYPE_ESP: Guid = Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
pub const TYPE_BIOS_BOOT: Guid = Guid::from_str_const("21686148-6449-6E6F-744E-656564454649");
pub const TYPE_LINUX_DATA: Guid = Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
pub const TYPE_LINUX_SWAP: Guid = Guid::from_str_const("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F");

/// CRC-32 (IEEE 802.3), the one the GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    !crate::util::crc32_update(!0, data)
}

/// A GPT header (UEFI spec Table 5-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// Why a header or table was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    NoSignature,
    Invalid(String),
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::NoSignature => write!(f, "no GPT signature"),
            GptError::Invalid(s) => write!(f, "{s}"),
        }
    }
}

fn bad(s: impl Into<String>) -> GptError {
    GptError::Invalid(s.into())
}

impl Header {
    /// Parse and check one header sector: signature, size, CRC, and that
    /// the entry array is of a sane shape. `sector` is the whole LBA.
    pub fn parse(sector: &[u8]) -> Result<Header, GptError> {
        if sector.len() < 512 || &sector[0..8] != SIGNATURE {
            return Err(GptError::NoSignature);
        }
        let size = le32(sector, 12);
        if size < HEADER_SIZE || size as usize > sector.len() {
            return Err(bad(format!("GPT header size {size} is invalid")));
        }
        let stored = le32(sector, 16);
        let mut copy = sector[..size as usize].to_vec();
        copy[16..20].fill(0);
        let actual = crc32(&copy);
        if stored != actual {
            return Err(bad(format!(
                "GPT header CRC mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )));
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&sector[56..72]);
        let h = Header {
            my_lba: le64(sector, 24),
            alternate_lba: le64(sector, 32),
            first_usable: le64(sector, 40),
            last_usable: le64(sector, 48),
            disk_guid: Guid(guid),
            entries_lba: le64(sector, 72),
            num_entries: le32(sector, 80),
            entry_size: le32(sector, 84),
            entries_crc: le32(sector, 88),
        };
        if h.entry_size < ENTRY_SIZE || h.entry_size % 8 != 0 || h.entry_size > 4096 {
            return Err(bad(format!(
                "GPT partition entry size {} is invalid",
                h.entry_size
            )));
        }
        if h.entries_bytes() > MAX_ENTRY_BYTES {
            return Err(bad(format!(
                "GPT partition array of {} entries is too large",
                h.num_entries
            )));
        }
        if h.first_usable > h.last_usable {
            return Err(bad("GPT usable range is empty"));
        }
        Ok(h)
    }

    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }

    /// Sectors the entry array occupies.
    pub fn entries_sectors(&self, sector: u64) -> u64 {
        self.entries_bytes().div_ceil(sector)
    }

    /// One header sector with its CRC filled in.
    pub fn to_sector(&self, sector: usize) -> Vec<u8> {
        let mut b = vec![0u8; sector];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&REVISION.to_le_bytes());
        b[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        b[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        b[56..72].copy_from_slice(&self.disk_guid.0);
        b[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        b[80..84].copy_from_slice(&self.num_entries.to_le_bytes());
        b[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        b[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32(&b[..HEADER_SIZE as usize]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// The header fields that probing needs, read without checking anything
/// but the signature: before a wipe, a damaged or foreign table still names
/// areas to zero (IPA's `wipefs` and `sgdisk -Z` read them the same way).
/// Writing and deploying use the strict [`Gpt::read_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LooseHeader {
    pub alternate_lba: u64,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
}

impl LooseHeader {
    /// `None` without the "EFI PART" signature or when `b` is shorter than
    /// a header.
    pub fn parse(b: &[u8]) -> Option<LooseHeader> {
        if b.len() < HEADER_SIZE as usize || &b[..8] != SIGNATURE {
            return None;
        }
        Some(LooseHeader {
            alternate_lba: le64(b, 32),
            entries_lba: le64(b, 72),
            num_entries: le32(b, 80),
            entry_size: le32(b, 84),
        })
    }

    /// Bytes of the entry array.
    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }
}

/// One partition entry (UEFI spec Table 5-6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// UTF-16LE, up to 36 code units.
    pub name: String,
}

impl Entry {
    /// Parse a 128-byte (or larger) entry; `b` must hold at least 128
    /// bytes.
    pub fn parse(b: &[u8]) -> Entry {
        let mut t = [0u8; 16];
        let mut u = [0u8; 16];
        t.copy_from_slice(&b[0..16]);
        u.copy_from_slice(&b[16..32]);
        let units: Vec<u16> = b[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        Entry {
            type_guid: Guid(t),
            unique_guid: Guid(u),
            first_lba: le64(b, 32),
            last_lba: le64(b, 40),
            attributes: le64(b, 48),
            name: String::from_utf16_lossy(&units),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b.fill(0);
        b[0..16].copy_from_slice(&self.type_guid.0);
        b[16..32].copy_from_slice(&self.unique_guid.0);
        b[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        b[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (i, u) in self.name.encode_utf16().take(36).enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }

    pub fn is_used(&self) -> bool {
        !self.type_guid.is_zero()
    }
}

/// A whole table: one header and its raw entry array (kept raw so that
/// entries larger than 128 bytes survive a rewrite unchanged).
#[derive(Clone, Debug)]
pub struct Gpt {
    pub header: Header,
    pub entries: Vec<u8>,
    pub sector: u64,
}

impl Gpt {
    /// Read the table whose header sits at `lba`, checking the header CRC,
    /// the entry-array CRC and every used entry's bounds. `disk_sectors` is
    /// the device size in sectors.
    pub fn read_at(io: &dyn Io, sector: u64, disk_sectors: u64, lba: u64) -> Result<Gpt, GptError> {
        let mut hs = vec![0u8; sector as usize];
        io.read_exact_at(&mut hs, lba * sector)
            .map_err(|e| bad(format!("reading GPT header at LBA {lba}: {e}")))?;
        let header = Header::parse(&hs)?;
        if header.my_lba != lba {
            return Err(bad(format!(
                "GPT header at LBA {lba} says it lives at LBA {}",
                header.my_lba
            )));
        }
        if header.last_usable >= disk_sectors {
            return Err(bad(format!(
                "GPT last usable LBA {} lies beyond the device's {disk_sectors} sectors",
                header.last_usable
            )));
        }
        let esec = header.entries_sectors(sector);
        header
            .entries_lba
            .checked_add(esec)
            .filter(|&e| e <= disk_sectors && header.entries_lba >= 1)
            .ok_or_else(|| bad("GPT partition array lies beyond the end of the device"))?;
        let mut entries = vec![0u8; header.entries_bytes() as usize];
        io.read_exact_at(&mut entries, header.entries_lba * sector)
            .map_err(|e| bad(format!("reading GPT partition array: {e}")))?;
        let crc = crc32(&entries);
        if crc != header.entries_crc {
            return Err(bad(format!(
                "GPT partition array CRC mismatch (stored {:#010x}, computed {crc:#010x})",
                header.entries_crc
            )));
        }
        let g = Gpt {
            header,
            entries,
            sector,
        };
        for (n, e) in g.used() {
            if e.first_lba > e.last_lba
                || e.first_lba < g.header.first_usable
                || e.last_lba > g.header.last_usable
            {
                return Err(bad(format!(
                    "GPT partition {n} ({}..{}) lies outside the usable range {}..{}",
                    e.first_lba, e.last_lba, g.header.first_usable, g.header.last_usable
                )));
            }
        }
        Ok(g)
    }

    /// The primary table (LBA 1).
    pub fn read_primary(io: &dyn Io, sector: u64, disk_sectors: u64) -> Result<Gpt, GptError> {
        Self::read_at(io, sector, disk_sectors, 1)
    }

    /// The primary table, or the backup at the last LBA when the primary is
    /// damaged (the kernel's and gdisk's fallback).
    pub fn read_any(io: &dyn Io, sector: u64, disk_sectors: u64) -> Result<Gpt, GptError> {
        match Self::read_primary(io, sector, disk_sectors) {
            Ok(g) => Ok(g),
            Err(GptError::NoSignature) if disk_sectors > 2 => {
                match Self::read_at(io, sector, disk_sectors, disk_sectors - 1) {
                    Ok(g) => Ok(g),
                    Err(_) => Err(GptError::NoSignature),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Entry `i` (0-based), whatever its state.
    pub fn entry(&self, i: usize) -> Option<Entry> {
        let size = self.header.entry_size as usize;
        let b = self.entries.get(i * size..i * size + size)?;
        Some(Entry::parse(b))
    }

    /// Used entries with their 1-based partition numbers.
    pub fn used(&self) -> Vec<(u32, Entry)> {
        (0..self.header.num_entries as usize)
            .filter_map(|i| self.entry(i).map(|e| (i as u32 + 1, e)))
            .filter(|(_, e)| e.is_used())
            .collect()
    }

    /// Replace entry `i` (0-based) and refresh the array CRC.
    pub fn set_entry(&mut self, i: usize, e: &Entry) -> Result<(), GptError> {
        let size = self.header.entry_size as usize;
        let slot = self
            .entries
            .get_mut(i * size..i * size + size)
            .ok_or_else(|| bad(format!("GPT has no partition slot {}", i + 1)))?;
        e.write(slot);
        self.header.entries_crc = crc32(&self.entries);
        Ok(())
    }

    /// The first free slot (0-based).
    pub fn free_slot(&self) -> Option<usize> {
        (0..self.header.num_entries as usize).find(|&i| self.entry(i).is_some_and(|e| !e.is_used()))
    }

    /// A fresh, empty table for a disk of `disk_sectors` sectors, laid out
    /// as parted and sgdisk do: 128 entries right after the primary header,
    /// the backup array just before the backup header at the last LBA.
    pub fn new(sector: u64, disk_sectors: u64, disk_guid: Guid) -> Result<Gpt, GptError> {
        let entries = vec![0u8; (DEFAULT_ENTRIES * ENTRY_SIZE) as usize];
        let esec =
            entries.len() as u64 / sector.max(1) + u64::from(entries.len() as u64 % sector != 0);
        // LBA0 MBR, LBA1 header, array, ... , array, backup header.
        if disk_sectors < 2 * esec + 4 {
            return Err(bad("device too small for a GPT"));
        }
        let last = disk_sectors - 1;
        let header = Header {
            my_lba: 1,
            alternate_lba: last,
            first_usable: 2 + esec,
            last_usable: last - esec - 1,
            disk_guid,
            entries_lba: 2,
            num_entries: DEFAULT_ENTRIES,
            entry_size: ENTRY_SIZE,
            entries_crc: crc32(&entries),
        };
        Ok(Gpt {
            header,
            entries,
            sector,
        })
    }

    /// The backup header matching this (primary) header.
    fn backup_header(&self) -> Header {
        let esec = self.header.entries_sectors(self.sector);
        Header {
            my_lba: self.header.alternate_lba,
            alternate_lba: self.header.my_lba,
            entries_lba: self.header.alternate_lba - esec,
            ..self.header.clone()
        }
    }

    /// Write both copies. The backup goes first, so a crash in between
    /// leaves the old primary pointing at a complete backup.
    pub fn write(&self, io: &mut dyn Io) -> io::Result<()> {
        let s = self.sector;
        let mut arr = self.entries.clone();
        arr.resize(self.header.entries_sectors(s) as usize * s as usize, 0);
        let backup = self.backup_header();
        io.write_all_at(&arr, backup.entries_lba * s)?;
        io.write_all_at(&backup.to_sector(s as usize), backup.my_lba * s)?;
        io.write_all_at(&arr, self.header.entries_lba * s)?;
        io.write_all_at(&self.header.to_sector(s as usize), self.header.my_lba * s)?;
        Ok(())
    }
}

/// What [`relocate_backup`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relocation {
    /// The backup already sat at the last LBA.
    AlreadyAtEnd,
    /// Moved from the image's last LBA to the device's.
    Moved { from: u64, to: u64 },
}

/// `sgdisk -e`: when an image's backup GPT is not at the device's last LBA
/// (the image was smaller than the disk), rewrite the backup array and
/// header at the real end, point the primary header's `alternate_lba` there
/// and grow `last_usable` so the new space can be partitioned (the
/// configdrive, cloud-init's growpart). The old backup header sector is
/// zeroed so that no stale "EFI PART" remains in the middle of the disk.
pub fn relocate_backup(
    io: &mut dyn Io,
    sector: u64,
    disk_sectors: u64,
) -> Result<Relocation, GptError> {
    let mut g = Gpt::read_primary(io, sector, disk_sectors)?;
    let last = disk_sectors - 1;
    let old = g.header.alternate_lba;
    if old == last {
        return Ok(Relocation::AlreadyAtEnd);
    }
    let esec = g.header.entries_sectors(sector);
    let primary_end = g.header.entries_lba + esec;
    let new_last_usable = last
        .checked_sub(esec + 1)
        .filter(|&l| l >= primary_end && l >= g.header.first_usable)
        .ok_or_else(|| bad("device too small for its GPT"))?;
    if let Some((n, e)) = g
        .used()
        .into_iter()
        .find(|(_, e)| e.last_lba > new_last_usable)
    {
        return Err(bad(format!(
            "GPT partition {n} ends at LBA {} beyond the device's last usable LBA {new_last_usable}",
            e.last_lba
        )));
    }
    g.header.alternate_lba = last;
    g.header.last_usable = new_last_usable;
    g.write(io)
        .map_err(|e| bad(format!("writing the relocated GPT: {e}")))?;
    // The old backup header is past the image's last usable LBA, i.e. in
    // no partition: safe to clear.
    let max_part_end = g.used().iter().map(|(_, e)| e.last_lba).max().unwrap_or(0);
    if old < last && old > primary_end && old > max_part_end {
        let zero = vec![0u8; sector as usize];
        let _ = io.write_all_at(&zero, old * sector);
    }
    Ok(Relocation::Moved {
        from: old,
        to: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn guid_text_round_trip() {
        let g = TYPE_ESP;
        assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        // on-disk order: first field little-endian
        assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(Guid::parse(&g.to_lower()), Some(g));
        assert_eq!(Guid::parse("nope"), None);
        assert_eq!(Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93G"), None);
        let r = Guid::random().unwrap();
        assert_eq!(r.to_string().as_bytes()[14], b'4');
    }

    fn table_with_one_partition(sector: u64, sectors: u64) -> (MemDisk, Gpt) {
        let mut d = MemDisk::new((sectors * sector) as usize);
        let mut g = Gpt::new(sector, sectors, Guid::random().unwrap()).unwrap();
        let mib = (1 << 20) / sector;
        g.set_entry(
            0,
            &Entry {
                type_guid: TYPE_LINUX_DATA,
                unique_guid: Guid::random().unwrap(),
                first_lba: mib,
                last_lba: 2 * mib - 1,
                attributes: 0,
                name: "root".into(),
            },
        )
        .unwrap();
        g.write(&mut d).unwrap();
        (d, g)
    }

    #[test]
    fn new_table_reads_back() {
        for sector in [512u64, 4096] {
            let sectors = (4 << 20) / sector;
            let (d, g) = table_with_one_partition(sector, sectors);
            let r = Gpt::read_primary(&d, sector, sectors).unwrap();
            assert_eq!(r.header, g.header);
            let b = Gpt::read_at(&d, sector, sectors, sectors - 1).unwrap();
            assert_eq!(b.header.alternate_lba, 1);
            assert_eq!(r.used().len(), 1);
            assert_eq!(r.used()[0].1.name, "root");
            assert_eq!(r.free_slot(), Some(1));
        }
    }

    #[test]
    fn relocation_moves_backup_to_the_end() {
        for sector in [512u64, 4096] {
            let small = (4 << 20) / sector;
            let (d, _) = table_with_one_partition(sector, small);
            // "write the image onto a disk twice as big"
            let big = 2 * small;
            let mut disk = MemDisk::new((big * sector) as usize);
            disk.0[..d.0.len()].copy_from_slice(&d.0);
            let r = relocate_backup(&mut disk, sector, big).unwrap();
            assert_eq!(
                r,
                Relocation::Moved {
                    from: small - 1,
                    to: big - 1
                }
            );
            let p = Gpt::read_primary(&disk, sector, big).unwrap();
            assert_eq!(p.header.alternate_lba, big - 1);
            let b = Gpt::read_at(&disk, sector, big, big - 1).unwrap();
            assert_eq!(b.entries, p.entries);
            assert_eq!(b.header.last_usable, p.header.last_usable);
            // old backup cleared
            let mut old = vec![0u8; sector as usize];
            disk.read_exact_at(&mut old, (small - 1) * sector).unwrap();
            assert!(old.iter().all(|&x| x == 0));
            // idempotent
            assert_eq!(
                relocate_backup(&mut disk, sector, big).unwrap(),
                Relocation::AlreadyAtEnd
            );
        }
    }

    #[test]
    fn hostile_headers_are_errors() {
        let sector = 512u64;
        let sectors = 8192u64;
        let (d, g) = table_with_one_partition(sector, sectors);
        let mutate = |f: &dyn Fn(&mut Header)| {
            let mut d2 = MemDisk(d.0.clone());
            let mut h = g.header.clone();
            f(&mut h);
            d2.write_all_at(&h.to_sector(512), 512).unwrap();
            Gpt::read_primary(&d2, sector, sectors)
        };
        assert!(mutate(&|h| h.num_entries = u32::MAX).is_err());
        assert!(mutate(&|h| h.entry_size = 0).is_err());
        assert!(mutate(&|h| h.entry_size = 129).is_err());
        assert!(mutate(&|h| h.entries_lba = u64::MAX - 1).is_err());
        assert!(mutate(&|h| h.entries_lba = sectors - 1).is_err());
        assert!(mutate(&|h| h.my_lba = 7).is_err());
        assert!(mutate(&|h| h.first_usable = u64::MAX).is_err());
        assert!(mutate(&|h| h.last_usable = 40).is_err()); // partition outside
        assert!(mutate(&|h| h.last_usable = u64::MAX).is_err());
        // flipped CRC
        let mut d3 = MemDisk(d.0.clone());
        d3.0[512 + 30] ^= 1;
        assert!(Gpt::read_primary(&d3, sector, sectors).is_err());
        // random garbage with a signature never panics
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut d4 = MemDisk(d.0.clone());
            for _ in 0..8 {
                let i = 512 + rng.usize(0..92);
                d4.0[i] = rng.u8(..);
            }
            // recompute the CRC so the fields themselves are exercised
            let size = 92usize;
            d4.0[512 + 16..512 + 20].fill(0);
            let crc = crc32(&d4.0[512..512 + size]);
            d4.0[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
            d4.0[512 + 12..512 + 16].copy_from_slice(&92u32.to_le_bytes());
            d4.0[512..520].copy_from_slice(SIGNATURE);
            let _ = Gpt::read_primary(&d4, sector, sectors);
            let mut d5 = MemDisk(d4.0.clone());
            let _ = relocate_backup(&mut d5, sector, sectors * 2);
        }
    }

    #[test]
    fn relocation_refuses_partition_beyond_device() {
        let sector = 512u64;
        let (d, _) = table_with_one_partition(sector, 8192);
        // A "device" smaller than the image's partition.
        let mut small = MemDisk(d.0[..(3000 * 512)].to_vec());
        assert!(relocate_backup(&mut small, sector, 3000).is_err());
    }
}
