//! Metadata wiping: IPA's `disk_utils.destroy_disk_metadata` (`wipefs
//! --force --all`, `dd` of the first and last 33 sectors (5 on 4Kn disks),
//! `sgdisk -Z`) done with plain zero writes and no tools.
//!
//! What is zeroed, per partition first and then per disk (all through the
//! disk device, at the partition's offset):
//! * the first and last MiB ([`probe::END_AREA`]): MBR/PMBR, GPT primary
//!   header and entries, GPT backup at the end of the disk, the primary
//!   superblocks of ext2/3/4, XFS, btrfs, vfat/exFAT/NTFS, ISO9660/UDF,
//!   LVM2 labels and metadata area, md 1.1/1.2 (head) and 0.90/1.0
//!   (tail), swap, LUKS1/LUKS2, bcache, gfs2, OCFS2, ZFS labels L0–L3;
//! * fixed spots past the first MiB: LUKS2 secondary headers at 1, 2 and
//!   4 MiB, VMFS headers at 1 and 2 MiB, the UDF anchor of 4Kn disks at
//!   1 MiB, btrfs superblock mirrors at 64 MiB and 256 GiB;
//! * what the survey derived: ext2/3/4 backup superblocks, XFS secondary
//!   superblocks, the GPT backup wherever the primary header says it is,
//!   and the EBRs of logical partitions.
//!
//! Areas of partitions that the skip list protects are never written, even
//! when the disk's own areas overlap them.

use super::targets::Target;
use crate::disk::device::Access;
use crate::disk::signatures::{self as probe, Probe, END_AREA};
use crate::disk::{AlignedBuf, Disk};
use crate::disk::{KIB, MIB};
use crate::error::{Context, Kind, Result};
use serde_json::{json, Value};
use std::time::Instant;

/// An area to zero (bytes, relative to the window it was computed for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub off: u64,
    pub len: u64,
    pub why: &'static str,
}

/// The areas to zero in a window of `size` bytes that carries `p`.
pub fn metadata_ranges(size: u64, p: &Probe) -> Vec<Range> {
    let mut v = vec![Range {
        off: 0,
        len: END_AREA.min(size),
        why: "first MiB",
    }];
    let tail = END_AREA.min(size);
    v.push(Range {
        off: size - tail,
        len: tail,
        why: "last MiB",
    });
    for off in probe::LUKS2_SECONDARY.into_iter().filter(|o| *o >= MIB) {
        v.push(Range {
            off,
            len: 4 * KIB,
            why: "LUKS2 secondary header / VMFS / UDF anchor",
        });
    }
    for off in probe::BTRFS_MIRRORS {
        v.push(Range {
            off,
            len: 4 * KIB,
            why: "btrfs superblock mirror",
        });
    }
    v.extend(p.backups.iter().map(|(off, len, why)| Range {
        off: *off,
        len: *len,
        why,
    }));
    // Clamp to the window.
    v.retain(|r| r.off < size && r.len > 0);
    for r in v.iter_mut() {
        r.len = r.len.min(size - r.off);
    }
    v
}

/// Sort and coalesce overlapping or touching ranges.
pub fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|r| r.1 > 0);
    crate::util::sort_unstable(&mut v);
    let mut out: Vec<(u64, u64)> = vec![];
    for (s, e) in v.into_iter().map(|(o, l)| (o, o + l)) {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out.into_iter().map(|(s, e)| (s, e - s)).collect()
}

/// Remove the protected windows from the ranges (all as (off, len)).
pub fn subtract(ranges: Vec<(u64, u64)>, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut cur: Vec<(u64, u64)> = ranges.into_iter().map(|(o, l)| (o, o + l)).collect();
    for (ho, hl) in holes {
        let (hs, he) = (*ho, ho + hl);
        let mut next = vec![];
        for (s, e) in cur {
            if e <= hs || s >= he {
                next.push((s, e));
                continue;
            }
            if s < hs {
                next.push((s, hs));
            }
            if e > he {
                next.push((he, e));
            }
        }
        cur = next;
    }
    cur.into_iter().map(|(s, e)| (s, e - s)).collect()
}

/// Every area to zero on a surveyed disk, absolute and merged, with
/// skip-listed partitions cut out.
pub fn disk_ranges(t: &Target) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = vec![];
    for p in t.parts.iter().filter(|p| !p.skip) {
        for r in metadata_ranges(p.size, &p.probe) {
            all.push((p.start + r.off, r.len));
        }
    }
    for r in metadata_ranges(t.size, &t.probe) {
        all.push((r.off, r.len));
    }
    let holes: Vec<(u64, u64)> = t
        .parts
        .iter()
        .filter(|p| p.skip)
        .map(|p| (p.start, p.size))
        .collect();
    merge(subtract(merge(all), &holes))
}

/// "kind@device" for every signature found, for the step result.
pub fn found_signatures(t: &Target) -> Vec<String> {
    let mut v: Vec<String> = t
        .probe
        .signatures
        .iter()
        .map(|s| format!("{}@{}", s.kind, t.dev.name))
        .collect();
    for p in &t.parts {
        v.extend(
            p.probe
                .signatures
                .iter()
                .map(|s| format!("{}@{}", s.kind, p.name)),
        );
    }
    v.dedup();
    v
}

/// Zero the metadata areas of a surveyed disk and its partitions, flush,
/// and have the kernel re-read the (now empty) partition table. Returns
/// the per-device record of the step result.
pub fn destroy_disk_metadata(t: &Target) -> Result<Value> {
    let started = Instant::now();
    let name = &t.dev.name;
    let disk = Disk::open(&t.path, name, Access::Write, t.sector)
        .ctx(Kind::BlockDeviceEraseError, || format!("opening {name}"))?;
    super::targets::check_identity(t, &disk)?;
    let zeroes = AlignedBuf::zeroed(MIB as usize);
    let mut written = 0;
    let ranges = disk_ranges(t);
    for (off, len) in &ranges {
        written += disk
            .zero(*off, *len, &zeroes)
            .ctx(Kind::BlockDeviceEraseError, || {
                format!("zeroing {name} at byte {off} ({len} bytes)")
            })?;
    }
    disk.sync()
        .ctx(Kind::BlockDeviceEraseError, || format!("flushing {name}"))?;
    if let Err(e) = disk.reread_partitions() {
        // The table is gone from the disk; only the kernel's view is stale.
        crate::util::log_at!(Warn, "re-reading the partition table of {name}: {e}");
    }
    let parts: Vec<&str> = t
        .parts
        .iter()
        .filter(|p| !p.skip)
        .map(|p| p.name.as_str())
        .collect();
    crate::util::log_at!(
        Info,
        "disk metadata on {name} destroyed: {written} bytes zeroed in {} areas",
        ranges.len()
    );
    Ok(json!({
        "method": "metadata",
        "partitions": parts,
        "signatures": found_signatures(t),
        "zeroed_bytes": written,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_subtract() {
        assert_eq!(
            merge(vec![(10, 5), (0, 4), (4, 2), (20, 0), (12, 10)]),
            vec![(0, 6), (10, 12)]
        );
        assert_eq!(
            subtract(vec![(0, 100)], &[(10, 10), (50, 100)]),
            vec![(0, 10), (20, 30)]
        );
        assert_eq!(subtract(vec![(0, 10)], &[(0, 10)]), vec![]);
    }

    #[test]
    fn ranges_for_small_and_large_windows() {
        let p = Probe::default();
        // 100 KiB: head and tail overlap, spots fall outside
        let r = merge(
            metadata_ranges(100 * KIB, &p)
                .iter()
                .map(|r| (r.off, r.len))
                .collect(),
        );
        assert_eq!(r, vec![(0, 100 * KIB)]);
        // 1 TiB: head, 1/2/4 MiB spots, 64 MiB and 256 GiB mirrors, tail
        let t = 1u64 << 40;
        let r = merge(
            metadata_ranges(t, &p)
                .iter()
                .map(|r| (r.off, r.len))
                .collect(),
        );
        assert_eq!(
            r,
            vec![
                (0, MIB + 4 * KIB),
                (2 * MIB, 4 * KIB),
                (4 * MIB, 4 * KIB),
                (64 * MIB, 4 * KIB),
                (256 << 30, 4 * KIB),
                (t - MIB, MIB)
            ]
        );
    }
}
