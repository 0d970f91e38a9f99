//! The DOS/MBR partition table: four primary entries at byte 446 of LBA 0,
//! the 0x55AA signature at 510, the disk signature at 440 (what IPA reads
//! with `hexdump -s 440 -n 4` as a whole-disk image's "root uuid"), and the
//! chain of extended boot records for logical partitions. Bounds-checked:
//! a hostile chain is cut off, never followed forever.
//!
//! Why hand-written rather than the `mbrman` crate (0.6.1, 2025-07, the
//! same maintainers as `gptman`), judged for issue 15: parsing, writing and
//! the EBR walk moved onto it grew the stable static binary by 62,976 bytes
//! (3,387,288 → 3,450,264 at e0303c1: `bincode`, `bitvec`,
//! `serde-big-array`), past `scripts/build-static`'s budget, for ~170
//! lines of code here, checked against sfdisk (`tests/image_disk.rs`). It
//! is strict where probing must be lenient (a boot flag other than
//! 0x00/0x80, or one unreadable EBR, makes the whole table an error) and
//! bounds an EBR chain only by its growing offsets, not by a count.

use super::Io;
use std::io;

pub const TYPE_EMPTY: u8 = 0x00;
/// parted's `fat32` on msdos (FAT32 with LBA addressing).
pub const TYPE_FAT32_LBA: u8 = 0x0c;
pub const TYPE_LINUX: u8 = 0x83;
pub const TYPE_LINUX_SWAP: u8 = 0x82;
/// What parted writes for the `esp` flag on msdos.
pub const TYPE_EFI: u8 = 0xef;
pub const TYPE_GPT_PROTECTIVE: u8 = 0xee;
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];

/// An extended partition's container type (CHS, LBA, Linux).
pub fn is_extended_type(ptype: u8) -> bool {
    EXTENDED.contains(&ptype)
}

/// Logical partitions accepted before the chain is declared hostile.
const MAX_LOGICAL: usize = 256;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub bootable: bool,
    pub ptype: u8,
    /// In sectors (logical sector size of the disk).
    pub start: u32,
    pub sectors: u32,
}

impl Entry {
    pub fn is_used(&self) -> bool {
        self.ptype != TYPE_EMPTY && self.sectors != 0
    }

    pub fn is_extended(&self) -> bool {
        is_extended_type(self.ptype)
    }

    fn parse(b: &[u8]) -> Entry {
        Entry {
            bootable: b[0] == 0x80,
            ptype: b[4],
            start: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            sectors: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0] = if self.bootable { 0x80 } else { 0 };
        // CHS fields: "use LBA" markers (0xFE,0xFF,0xFF), as parted and
        // sfdisk write for anything beyond the first 8 GiB; firmware and
        // Linux use the LBA fields.
        b[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        b[4] = self.ptype;
        b[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        b[8..12].copy_from_slice(&self.start.to_le_bytes());
        b[12..16].copy_from_slice(&self.sectors.to_le_bytes());
    }
}

/// LBA 0 as far as partitioning goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    pub disk_signature: u32,
    pub entries: [Entry; 4],
}

impl Mbr {
    /// `None` without the 0x55AA signature.
    pub fn parse(lba0: &[u8]) -> Option<Mbr> {
        if lba0.len() < 512 || lba0[510] != 0x55 || lba0[511] != 0xaa {
            return None;
        }
        let mut entries = [Entry::default(); 4];
        for (i, e) in entries.iter_mut().enumerate() {
            *e = Entry::parse(&lba0[446 + 16 * i..462 + 16 * i]);
        }
        Some(Mbr {
            disk_signature: disk_signature(lba0),
            entries,
        })
    }

    /// A GPT protective MBR (one 0xEE entry), with or without hybrid
    /// entries.
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.ptype == TYPE_GPT_PROTECTIVE)
    }

    /// Only the 0xEE entry is used (what every GPT tool writes), as
    /// opposed to a hybrid MBR, which must not be touched.
    pub fn is_pure_protective(&self) -> bool {
        let used: Vec<&Entry> = self.entries.iter().filter(|e| e.is_used()).collect();
        used.len() == 1 && used[0].ptype == TYPE_GPT_PROTECTIVE
    }

    /// Write the four entries, the disk signature and 0x55AA into `lba0`,
    /// keeping its boot code (bytes 0..440).
    pub fn write_into(&self, lba0: &mut [u8]) {
        lba0[440..444].copy_from_slice(&self.disk_signature.to_le_bytes());
        lba0[444..446].fill(0);
        for (i, e) in self.entries.iter().enumerate() {
            let slot = &mut lba0[446 + 16 * i..462 + 16 * i];
            if e.is_used() {
                e.write(slot);
            } else {
                slot.fill(0);
            }
        }
        lba0[510] = 0x55;
        lba0[511] = 0xaa;
    }

    /// The protective MBR a GPT needs (UEFI spec §5.2.3): one 0xEE entry
    /// from LBA 1 to the end of the disk, capped at 2^32 − 1 sectors.
    pub fn protective(disk_sectors: u64) -> Mbr {
        let mut entries = [Entry::default(); 4];
        entries[0] = Entry {
            bootable: false,
            ptype: TYPE_GPT_PROTECTIVE,
            start: 1,
            sectors: (disk_sectors - 1).min(u64::from(u32::MAX)) as u32,
        };
        Mbr {
            disk_signature: 0,
            entries,
        }
    }

    pub fn primary_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_used()).count()
    }
}

/// The 4 bytes at 440 as IPA's `hexdump -s 440 -n 4 -e '"0x%08x"'` prints
/// them: a little-endian u32.
pub fn disk_signature(lba0: &[u8]) -> u32 {
    if lba0.len() < 444 {
        return 0;
    }
    u32::from_le_bytes([lba0[440], lba0[441], lba0[442], lba0[443]])
}

/// A partition found in an MBR, primary (1..=4) or logical (5..).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub entry: Entry,
    /// Absolute start in sectors (logical entries are relative to their EBR).
    pub start: u64,
    pub sectors: u64,
}

/// Every partition: the used primaries, and the logical partitions found by
/// walking the extended partition's EBR chain (bounded, loop-safe). The
/// extended container itself is listed too, as parted does.
pub fn partitions(io: &dyn Io, mbr: &Mbr, sector: u64, disk_sectors: u64) -> Vec<Part> {
    let mut out = Vec::new();
    let mut ext: Option<(u64, u64)> = None;
    for (i, e) in mbr.entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        out.push(Part {
            number: i as u32 + 1,
            entry: *e,
            start: u64::from(e.start),
            sectors: u64::from(e.sectors),
        });
        if e.is_extended() && ext.is_none() {
            ext = Some((u64::from(e.start), u64::from(e.sectors)));
        }
    }
    if let Some((ext_start, ext_len)) = ext {
        let mut ebr = ext_start;
        let mut seen = std::collections::HashSet::new();
        let mut number = 5;
        let mut buf = vec![0u8; sector as usize];
        while out.len() < MAX_LOGICAL + 4
            && ebr < disk_sectors
            && seen.insert(ebr)
            && io.read_exact_at(&mut buf, ebr * sector).is_ok()
        {
            let Some(m) = Mbr::parse(&buf) else { break };
            let [l, next, ..] = m.entries;
            if l.is_used() {
                let start = ebr + u64::from(l.start);
                if start + u64::from(l.sectors) <= ext_start + ext_len {
                    out.push(Part {
                        number,
                        entry: l,
                        start,
                        sectors: u64::from(l.sectors),
                    });
                    number += 1;
                }
            }
            if !next.is_used() || !next.is_extended() {
                break;
            }
            // "next" is relative to the start of the extended partition.
            ebr = ext_start + u64::from(next.start);
        }
    }
    out
}

/// Read LBA 0 (always the first 512 bytes used; a 4 KiB sector carries the
/// MBR in its first 512 bytes too).
pub fn read(io: &dyn Io) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; 512];
    io.read_exact_at(&mut b, 0)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    #[test]
    fn round_trip_and_signature() {
        let mut lba0 = vec![0u8; 512];
        lba0[0] = 0xeb; // boot code survives
        let mut m = Mbr::protective(1 << 40);
        assert_eq!(m.entries[0].sectors, u32::MAX);
        m.disk_signature = 0x1a2b3c4d;
        m.write_into(&mut lba0);
        assert_eq!(lba0[0], 0xeb);
        let p = Mbr::parse(&lba0).unwrap();
        assert_eq!(p, m);
        assert!(p.is_pure_protective());
        assert_eq!(format!("0x{:08x}", disk_signature(&lba0)), "0x1a2b3c4d");
        assert!(Mbr::parse(&[0u8; 512]).is_none());
        assert!(Mbr::parse(&[0u8; 10]).is_none());
    }

    #[test]
    fn logical_chain_is_followed_and_loops_are_cut() {
        let sector = 512u64;
        let mut d = MemDisk::new(1 << 20);
        let mut m = Mbr {
            disk_signature: 1,
            entries: [Entry::default(); 4],
        };
        m.entries[0] = Entry {
            bootable: true,
            ptype: TYPE_LINUX,
            start: 2,
            sectors: 100,
        };
        m.entries[1] = Entry {
            bootable: false,
            ptype: 0x05,
            start: 200,
            sectors: 1000,
        };
        let mut lba0 = vec![0u8; 512];
        m.write_into(&mut lba0);
        d.write_all_at(&lba0, 0).unwrap();
        // EBR 1 at 200: logical at +2, next EBR at ext+300
        let mut e1 = Mbr {
            disk_signature: 0,
            entries: [Entry::default(); 4],
        };
        e1.entries[0] = Entry {
            bootable: false,
            ptype: TYPE_LINUX,
            start: 2,
            sectors: 50,
        };
        e1.entries[1] = Entry {
            bootable: false,
            ptype: 0x05,
            start: 300,
            sectors: 100,
        };
        let mut b = vec![0u8; 512];
        e1.write_into(&mut b);
        d.write_all_at(&b, 200 * 512).unwrap();
        // EBR 2 at 500 points back to the first: a loop
        let mut e2 = e1.clone();
        e2.entries[1].start = 0;
        let mut b2 = vec![0u8; 512];
        e2.write_into(&mut b2);
        d.write_all_at(&b2, 500 * 512).unwrap();
        let parts = partitions(&d, &m, sector, 2048);
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        assert_eq!(numbers, vec![1, 2, 5, 6]);
        assert_eq!(parts[2].start, 202);
        assert_eq!(parts[3].start, 502);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2000 {
            let mut d = MemDisk::new(64 * 512);
            for b in d.0.iter_mut().take(4096) {
                *b = rng.u8(..);
            }
            d.0[510] = 0x55;
            d.0[511] = 0xaa;
            d.0[446 + 4] = 0x05;
            if let Some(m) = Mbr::parse(&d.0[..512]) {
                let _ = partitions(&d, &m, 512, 64);
                let _ = partitions(&d, &m, 512, u64::MAX / 1024);
            }
        }
    }
}
