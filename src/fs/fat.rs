//! FAT12/16/32, read-only walking (to find an image's EFI loaders and
//! BOOTX64.CSV without mounting, and a configdrive's volume label), a
//! FAT32 formatter for the ESP of partition images (IPA runs
//! `mkfs.vfat -n efi-part`) and a FAT12/16 writer for configdrives
//! rebuilt from ISO 9660 (IPA's `mkfs.vfat -n CONFIG-2` and a copy). Layout per Microsoft's "FAT: General Overview
//! of On-Disk Format" (FAT32 spec 1.03). Every value read from disk is
//! range-checked and every cluster chain is bounded by the cluster count,
//! so a hostile filesystem yields an error, not a hang or a panic.
//!
//! Why hand-written rather than a crate (judged for issue 15; sizes are the
//! stable static build, 3,387,288 bytes at e0303c1):
//! - `fatfs` 0.3.6 (rafalh/rust-fatfs; last release 2023-01, its 0.4 never
//!   released): with the ESP formatter, the configdrive writer, and the
//!   bootloader and label reader moved onto it (an `Io` region adapted to
//!   `Read + Write + Seek`; [`fat_fits`] and [`smallest_fat_mib`] stay here,
//!   it has nothing like them) the binary grew by 37,504 bytes, past
//!   `scripts/build-static`'s budget. Its `format_volume` cannot set
//!   BPB_HiddSec (mkfs.vfat writes the partition's start); its cluster
//!   iterator has no loop bound, so a cycle in a hostile image's ESP directory
//!   makes a listing endless where this module stops at the cluster count;
//!   and it needs a writable handle even to read.
//! - `hadris-fat` 2.5 (2026, active): needs Rust 1.88 (this crate: 1.85) and
//!   the hadris-* family that cost 23,296 bytes for reading ISO 9660 alone
//!   (see `iso9660.rs`); not wired.
//!
//! The formats are frozen; this module is checked against fsck.fat, mtools
//! and blkid (`tests/image_disk.rs`).

use crate::disk::Io;
use crate::util::bytes::{le16, le32};
use std::io;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// An opened FAT filesystem at `base` on some [`Io`].
pub struct Fat<'a> {
    io: &'a dyn Io,
    base: u64,
    bps: u64,
    cluster_bytes: u64,
    fat_offset: u64,
    root_offset: u64,
    root_entries: u64,
    data_offset: u64,
    clusters: u32,
    root_cluster: u32,
    pub kind: Kind,
}

/// Most long-name entries before a short entry: 20 × 13 units ≥ 255.
const MAX_LFN_PARTS: usize = 20;

/// One directory entry, with its long name when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub cluster: u32,
    pub size: u32,
}

/// The checksum of an 8.3 name that long-name entries carry.
fn short_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |s, &c| (s >> 1).wrapping_add(s << 7).wrapping_add(c))
}

impl<'a> Fat<'a> {
    /// Parse the boot sector of the filesystem at `base` (`len` bytes).
    pub fn open(io: &'a dyn Io, base: u64, len: u64) -> io::Result<Self> {
        let mut bs = [0u8; 512];
        io.read_exact_at(&mut bs, base)?;
        if bs[510] != 0x55 || bs[511] != 0xaa {
            return Err(invalid("no boot sector signature"));
        }
        let bps = u64::from(le16(&bs, 11));
        let spc = u64::from(bs[13]);
        let reserved = u64::from(le16(&bs, 14));
        let nfats = u64::from(bs[16]);
        let root_entries = u64::from(le16(&bs, 17));
        let total = match le16(&bs, 19) {
            0 => u64::from(le32(&bs, 32)),
            n => u64::from(n),
        };
        let fatsz = match le16(&bs, 22) {
            0 => u64::from(le32(&bs, 36)),
            n => u64::from(n),
        };
        if !(512..=4096).contains(&bps)
            || !bps.is_power_of_two()
            || spc == 0
            || !spc.is_power_of_two()
            || reserved == 0
            || nfats == 0
            || fatsz == 0
        {
            return Err(invalid("not a FAT boot sector"));
        }
        if total * bps > len {
            return Err(invalid("FAT filesystem is larger than its partition"));
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let meta = reserved + nfats * fatsz + root_sectors;
        let data_sectors = total
            .checked_sub(meta)
            .ok_or_else(|| invalid("FAT metadata larger than the filesystem"))?;
        let clusters = data_sectors / spc;
        let kind = if clusters < 4085 {
            Kind::Fat12
        } else if clusters < 65525 {
            Kind::Fat16
        } else {
            Kind::Fat32
        };
        // the FAT must hold an entry for every cluster
        let bits = match kind {
            Kind::Fat12 => 12,
            Kind::Fat16 => 16,
            Kind::Fat32 => 32,
        };
        if (clusters + 2) * bits / 8 > fatsz * bps {
            return Err(invalid("FAT too small for its cluster count"));
        }
        let clusters = u32::try_from(clusters).map_err(|_| invalid("too many clusters"))?;
        Ok(Fat {
            io,
            base,
            bps,
            cluster_bytes: bps * spc,
            fat_offset: reserved * bps,
            root_offset: (reserved + nfats * fatsz) * bps,
            root_entries,
            data_offset: meta * bps,
            clusters,
            root_cluster: if kind == Kind::Fat32 {
                le32(&bs, 44)
            } else {
                0
            },
            kind,
        })
    }

    fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && c < self.clusters + 2
    }

    /// The FAT entry of cluster `c`; `None` at end of chain (or a bad or
    /// free entry, which also ends it).
    fn next(&self, c: u32) -> io::Result<Option<u32>> {
        let (off, mask_end) = match self.kind {
            Kind::Fat12 => (u64::from(c) + u64::from(c) / 2, 0xff8),
            Kind::Fat16 => (u64::from(c) * 2, 0xfff8),
            Kind::Fat32 => (u64::from(c) * 4, 0x0fff_fff8),
        };
        let mut b = [0u8; 4];
        let n = if self.kind == Kind::Fat32 { 4 } else { 2 };
        self.io
            .read_exact_at(&mut b[..n], self.base + self.fat_offset + off)?;
        let v = match self.kind {
            Kind::Fat12 => {
                let w = u32::from(le16(&b, 0));
                if c & 1 == 1 {
                    w >> 4
                } else {
                    w & 0xfff
                }
            }
            Kind::Fat16 => u32::from(le16(&b, 0)),
            Kind::Fat32 => le32(&b, 0) & 0x0fff_ffff,
        };
        Ok((v < mask_end && self.valid_cluster(v)).then_some(v))
    }

    /// Read a cluster chain, at most `max` bytes.
    fn read_chain(&self, start: u32, max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut c = start;
        let mut steps = 0u32;
        while self.valid_cluster(c) && (out.len() as u64) < max {
            steps += 1;
            if steps > self.clusters {
                return Err(invalid("FAT cluster chain loops"));
            }
            let n = self.cluster_bytes.min(max - out.len() as u64) as usize;
            let at = self.base + self.data_offset + u64::from(c - 2) * self.cluster_bytes;
            let mut buf = vec![0u8; n];
            self.io.read_exact_at(&mut buf, at)?;
            out.extend_from_slice(&buf);
            match self.next(c)? {
                Some(n) => c = n,
                None => break,
            }
        }
        Ok(out)
    }

    fn dir_bytes(&self, cluster: Option<u32>) -> io::Result<Vec<u8>> {
        const MAX_DIR: u64 = 4 << 20;
        match cluster {
            Some(c) if c != 0 => self.read_chain(c, MAX_DIR),
            _ if self.kind == Kind::Fat32 => self.read_chain(self.root_cluster, MAX_DIR),
            _ => {
                let mut b = vec![0u8; (self.root_entries * 32) as usize];
                self.io
                    .read_exact_at(&mut b, self.base + self.root_offset)?;
                Ok(b)
            }
        }
    }

    fn parse_dir(raw: &[u8]) -> (Vec<DirEntry>, Option<String>) {
        let mut out = Vec::new();
        let mut label = None;
        let mut lfn: Vec<(u8, Vec<u16>)> = Vec::new();
        let mut lfn_sum = None;
        for e in raw.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xe5 {
                lfn.clear();
                continue;
            }
            let attr = e[11];
            if attr & 0x3f == 0x0f {
                let mut units = Vec::with_capacity(13);
                for r in [1..11, 14..26, 28..32] {
                    for c in e[r].chunks_exact(2) {
                        units.push(u16::from_le_bytes([c[0], c[1]]));
                    }
                }
                if e[0] & 0x40 != 0 {
                    lfn.clear();
                }
                // a long name has at most 20 parts (255 UTF-16 units); a
                // longer run is no name, and must not grow (nor be sorted,
                // quadratically) without bound
                if lfn.len() >= MAX_LFN_PARTS {
                    lfn.clear();
                }
                lfn_sum = Some(e[13]);
                lfn.push((e[0] & 0x1f, units));
                continue;
            }
            if attr & 0x08 != 0 {
                if attr & 0x10 == 0 && label.is_none() {
                    let l = String::from_utf8_lossy(&e[0..11]).trim_end().to_string();
                    if !l.is_empty() {
                        label = Some(l);
                    }
                }
                lfn.clear();
                continue;
            }
            let long = if !lfn.is_empty() && lfn_sum == Some(short_checksum(&e[0..11])) {
                crate::util::sort_small_by(&mut lfn, |a, b| a.0.cmp(&b.0));
                let units: Vec<u16> = lfn
                    .iter()
                    .flat_map(|(_, u)| u.iter().copied())
                    .take_while(|&u| u != 0 && u != 0xffff)
                    .collect();
                Some(String::from_utf16_lossy(&units))
            } else {
                None
            };
            lfn.clear();
            let name = long.unwrap_or_else(|| {
                // 8.3 with the NT case bits (0x08 base, 0x10 extension in
                // lower case), as Linux shows it with shortname=mixed.
                let case = |s: &[u8], lower: bool| {
                    let t = String::from_utf8_lossy(s).trim_end().to_string();
                    if lower {
                        t.to_ascii_lowercase()
                    } else {
                        t
                    }
                };
                let mut n = e[0..8].to_vec();
                if n[0] == 0x05 {
                    n[0] = 0xe5;
                }
                let base = case(&n, e[12] & 0x08 != 0);
                let ext = case(&e[8..11], e[12] & 0x10 != 0);
                if ext.is_empty() {
                    base
                } else {
                    format!("{base}.{ext}")
                }
            });
            if name == "." || name == ".." {
                continue;
            }
            let cluster = (u32::from(le16(e, 20)) << 16) | u32::from(le16(e, 26));
            out.push(DirEntry {
                name,
                is_dir: attr & 0x10 != 0,
                cluster,
                size: le32(e, 28),
            });
        }
        (out, label)
    }

    /// The entries of a directory (`None`: the root).
    pub fn list(&self, dir: Option<&DirEntry>) -> io::Result<Vec<DirEntry>> {
        let raw = self.dir_bytes(dir.map(|d| d.cluster))?;
        Ok(Self::parse_dir(&raw).0)
    }

    /// The volume label from the root directory's label entry.
    pub fn volume_label(&self) -> Option<String> {
        let raw = self.dir_bytes(None).ok()?;
        Self::parse_dir(&raw).1
    }

    /// Read a file's contents (at most `max` bytes).
    pub fn read_file(&self, f: &DirEntry, max: u64) -> io::Result<Vec<u8>> {
        if f.size == 0 {
            return Ok(Vec::new());
        }
        self.read_chain(f.cluster, u64::from(f.size).min(max))
    }

    /// Every file and directory under the root, depth first, in directory
    /// order (the order `os.walk` visits a mounted FAT in IPA's
    /// `_get_efi_bootloaders`), as ("EFI/ubuntu/shimx64.efi", entry).
    /// Bounded to 8 levels and 10 000 entries.
    pub fn walk(&self) -> io::Result<Vec<(String, DirEntry)>> {
        let mut out = Vec::new();
        self.walk_into(None, "", 0, &mut out)?;
        Ok(out)
    }

    fn walk_into(
        &self,
        dir: Option<&DirEntry>,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, DirEntry)>,
    ) -> io::Result<()> {
        if depth > 8 || out.len() > 10_000 {
            return Ok(());
        }
        let entries = self.list(dir)?;
        // files of this directory first, then its subdirectories (os.walk
        // top-down order)
        for e in entries.iter().filter(|e| !e.is_dir) {
            out.push((format!("{prefix}{}", e.name), e.clone()));
        }
        for d in entries.iter().filter(|e| e.is_dir) {
            let p = format!("{prefix}{}/", d.name);
            out.push((p.trim_end_matches('/').to_string(), d.clone()));
            if self.valid_cluster(d.cluster) {
                self.walk_into(Some(d), &p, depth + 1, out)?;
            }
        }
        Ok(())
    }

    pub fn sector_size(&self) -> u64 {
        self.bps
    }
}

/// (clusters, sectors per FAT) for `total` sectors with `spc` sectors per
/// cluster, `fixed` sectors before the data besides the FATs (reserved,
/// and FAT12/16's root directory), `nfats` FATs of `bits` per cluster:
/// the smallest FAT that holds an entry for every cluster it leaves room for.
fn fit_fat(total: u64, fixed: u64, nfats: u64, spc: u64, sector: u64, bits: u64) -> (u64, u64) {
    let mut fatsz = 1u64;
    loop {
        let clusters = total.saturating_sub(fixed + nfats * fatsz) / spc;
        let need = ((clusters + 2) * bits).div_ceil(8).div_ceil(sector);
        if need <= fatsz {
            return (clusters, fatsz);
        }
        fatsz = need;
    }
}

/// Zeroes over `[at, at+len)`, 1 MiB at a time.
fn zero_fill(io: &mut dyn Io, at: u64, len: u64) -> io::Result<()> {
    let zero = vec![0u8; (1 << 20).min(len) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zero.len() as u64) as usize;
        io.write_all_at(&zero[..n], at + done)?;
        done += n as u64;
    }
    Ok(())
}

/// An 11-byte volume label, space-padded.
fn label11(label: &str) -> [u8; 11] {
    let mut lab = [b' '; 11];
    for (d, c) in lab.iter_mut().zip(label.bytes()) {
        *d = c;
    }
    lab
}

/// A boot sector with the BPB fields FAT12/16 and FAT32 share, as mkfs.fat
/// writes them (`jump` is the short jump over the BPB to the boot code);
/// the type's own fields are left zero for the caller.
fn boot_sector(sector: u64, spc: u64, reserved: u64, nfats: u64, hidden: u64, jump: u8) -> Vec<u8> {
    let mut bs = vec![0u8; sector as usize];
    bs[0..3].copy_from_slice(&[0xeb, jump, 0x90]);
    bs[3..11].copy_from_slice(b"mkfs.fat");
    bs[11..13].copy_from_slice(&(sector as u16).to_le_bytes());
    bs[13] = spc as u8;
    bs[14..16].copy_from_slice(&(reserved as u16).to_le_bytes());
    bs[16] = nfats as u8;
    bs[21] = 0xf8;
    bs[24..26].copy_from_slice(&32u16.to_le_bytes());
    bs[26..28].copy_from_slice(&64u16.to_le_bytes());
    bs[28..32].copy_from_slice(&(hidden.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    bs[510] = 0x55;
    bs[511] = 0xaa;
    bs
}

/// Reserved sectors of a new FAT32 (boot sector, FSInfo, their backups).
const FAT32_RESERVED: u64 = 32;

/// (total sectors, sectors per cluster, clusters, sectors per FAT) of the
/// FAT32 [`format_fat32`] makes on `len` bytes: 4 KiB clusters where the
/// size allows, as mkfs.fat picks for ESPs, smaller down to one sector to
/// reach FAT32's 65 525 clusters; an error when even that is too small.
fn fat32_geometry(len: u64, sector: u64) -> io::Result<(u64, u64, u64, u64)> {
    let total = (len / sector).min(u64::from(u32::MAX));
    let mut spc = (4096 / sector).max(1);
    let (clusters, fatsz) = loop {
        let (clusters, fatsz) = fit_fat(total, FAT32_RESERVED, 2, spc, sector, 32);
        if clusters >= 65525 || spc == 1 {
            break (clusters, fatsz);
        }
        spc /= 2;
    };
    if !(65525..=0x0fff_fff5).contains(&clusters) {
        return Err(invalid(format!(
            "{} MiB is too small for FAT32 with {sector}-byte sectors",
            len >> 20
        )));
    }
    Ok((total, spc, clusters, fatsz))
}

/// Where a FAT goes and what its boot sector names: the region
/// `[offset, offset+len)` of the device, its sector size, the volume
/// label and id, and `hidden`, the partition's start LBA (BPB_HiddSec).
#[derive(Clone, Copy, Debug)]
pub struct Volume<'a> {
    pub offset: u64,
    pub len: u64,
    pub sector: u64,
    pub label: &'a str,
    pub volume_id: u32,
    pub hidden: u64,
}

/// An empty FAT labelled `label` on `[offset, offset+len)`, the way IPA's
/// plain `mkfs.vfat` formats an ESP: FAT32 ([`format_fat32`]) where it
/// fits, else FAT16 or FAT12 ([`write_fat`]) for an ESP configured smaller.
pub fn format_empty(io: &mut dyn Io, vol: &Volume) -> io::Result<()> {
    if fat32_geometry(vol.len, vol.sector).is_ok() {
        return format_fat32(io, vol);
    }
    write_fat(io, vol, vec![]).map(|_| ())
}

/// Format `[offset, offset+len)` as FAT32 the way `mkfs.vfat -F 32` lays
/// it out: 32 reserved sectors (boot sector at 0, FSInfo at 1, backups at
/// 6 and 7), two FATs, the root directory in cluster 2 holding the volume
/// label. `hidden` is the partition's start LBA (BPB_HiddSec). Fails when
/// the region is too small to be FAT32 (fewer than 65 525 clusters).
pub fn format_fat32(io: &mut dyn Io, vol: &Volume) -> io::Result<()> {
    let Volume {
        offset,
        len,
        sector,
        label,
        volume_id,
        hidden,
    } = *vol;
    let (total, spc, clusters, fatsz) = fat32_geometry(len, sector)?;
    let (reserved, nfats) = (FAT32_RESERVED, 2u64);
    let s = sector as usize;
    // zero reserved sectors, both FATs and the root cluster
    zero_fill(io, offset, (reserved + nfats * fatsz + spc) * sector)?;
    let lab = label11(label);
    let mut bs = boot_sector(sector, spc, reserved, nfats, hidden, 0x58);
    bs[32..36].copy_from_slice(&(total as u32).to_le_bytes());
    bs[36..40].copy_from_slice(&(fatsz as u32).to_le_bytes());
    bs[44..48].copy_from_slice(&2u32.to_le_bytes());
    bs[48..50].copy_from_slice(&1u16.to_le_bytes());
    bs[50..52].copy_from_slice(&6u16.to_le_bytes());
    bs[64] = 0x80;
    bs[66] = 0x29;
    bs[67..71].copy_from_slice(&volume_id.to_le_bytes());
    bs[71..82].copy_from_slice(&lab);
    bs[82..90].copy_from_slice(b"FAT32   ");
    // boot code: loop forever (an ESP is never BIOS-booted)
    bs[90..92].copy_from_slice(&[0xeb, 0xfe]);
    let mut fsinfo = vec![0u8; s];
    fsinfo[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    fsinfo[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    fsinfo[488..492].copy_from_slice(&((clusters - 1) as u32).to_le_bytes());
    fsinfo[492..496].copy_from_slice(&3u32.to_le_bytes());
    fsinfo[508..512].copy_from_slice(&0xaa55_0000u32.to_le_bytes());
    for (lba, buf) in [(0u64, &bs), (1, &fsinfo), (6, &bs), (7, &fsinfo)] {
        io.write_all_at(buf, offset + lba * sector)?;
    }
    let mut fat = vec![0u8; 12];
    fat[0..4].copy_from_slice(&0x0fff_fff8u32.to_le_bytes());
    fat[4..8].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    fat[8..12].copy_from_slice(&0x0fff_ffffu32.to_le_bytes()); // root dir
    for i in 0..nfats {
        io.write_all_at(&fat, offset + (reserved + i * fatsz) * sector)?;
    }
    let mut root = [0u8; 32];
    root[0..11].copy_from_slice(&lab);
    root[11] = 0x08;
    io.write_all_at(&root, offset + (reserved + nfats * fatsz) * sector)?;
    Ok(())
}

/// Root directory entries of a new FAT12/16 (mkfs.fat's for disks).
const ROOT_ENTRIES: u64 = 512;
/// FAT12 holds at most this many clusters; the count alone decides the
/// type for every reader (Linux's `fat_fill_super`, Microsoft's spec).
const FAT12_MAX_CLUSTERS: u64 = 4084;

/// The layout of a new FAT12 or FAT16.
#[derive(Clone, Copy, Debug)]
struct SmallFat {
    total: u64,
    spc: u64,
    clusters: u64,
    fatsz: u64,
    /// Bits per FAT entry: 12 or 16.
    bits: u64,
}

/// The FAT12 or FAT16 that mkfs.fat would make on `len` bytes with
/// `sector`-byte sectors: FAT16 with the smallest clusters (one sector up
/// to 32 KiB) that keep the count within 4085..=65524; below 4085
/// clusters, FAT12 with one sector per cluster. A FAT12 whose smaller FAT
/// would leave room for more than 4084 clusters uses only the sectors
/// 4084 need (a few KiB at the end stay unused).
fn small_fat_geometry(len: u64, sector: u64) -> io::Result<SmallFat> {
    let outside = || {
        invalid(format!(
            "{} KiB with {sector}-byte sectors is outside FAT12's and FAT16's range",
            len >> 10
        ))
    };
    if !(512..=4096).contains(&sector) || !sector.is_power_of_two() {
        return Err(outside());
    }
    let total = len / sector;
    let (reserved, nfats) = (1u64, 2u64);
    let fixed = reserved + (ROOT_ENTRIES * 32).div_ceil(sector);
    if total > u64::from(u32::MAX) {
        return Err(outside());
    }
    let mut spc = 1u64;
    let (clusters, fatsz) = loop {
        let (clusters, fatsz) = fit_fat(total, fixed, nfats, spc, sector, 16);
        if clusters <= 65524 || spc * sector >= 32768 {
            break (clusters, fatsz);
        }
        spc *= 2;
    };
    if clusters > 65524 {
        return Err(outside());
    }
    if clusters > FAT12_MAX_CLUSTERS {
        return Ok(SmallFat {
            total,
            spc,
            clusters,
            fatsz,
            bits: 16,
        });
    }
    let (mut clusters, mut fatsz) = fit_fat(total, fixed, nfats, 1, sector, 12);
    let mut total = total;
    if clusters > FAT12_MAX_CLUSTERS {
        clusters = FAT12_MAX_CLUSTERS;
        fatsz = ((clusters + 2) * 12).div_ceil(8).div_ceil(sector);
        total = fixed + nfats * fatsz + clusters;
    }
    if clusters == 0 {
        return Err(outside());
    }
    Ok(SmallFat {
        total,
        spc: 1,
        clusters,
        fatsz,
        bits: 12,
    })
}

/// A file (`Some(bytes)`) or directory (`None`) to put in a new FAT12/16
/// filesystem; `/`-separated path from the root, parents listed first.
pub type NewEntry = (String, Option<Vec<u8>>);

/// The shape of what [`write_fat`] is to hold: each path with its file's
/// size, or `None` for a directory.
pub type Shape = [(String, Option<u64>)];

/// 1980-01-01, 00:00 (the FAT epoch): the timestamps of what
/// [`write_fat`] creates.
const DOS_DATE: u16 = (1 << 5) | 1;

struct Node {
    name: String,
    /// Index of the parent directory (`None` for the root).
    parent: Option<usize>,
    /// A file's size; `None` for a directory.
    size: Option<u64>,
    children: Vec<usize>,
    cluster: u32,
    clusters: u32,
}

/// A tree to write, node 0 its root, each other node the entry of the
/// same index minus one.
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn new(shape: &Shape) -> io::Result<Tree> {
        let mut nodes = vec![Node {
            name: String::new(),
            parent: None,
            size: None,
            children: Vec::new(),
            cluster: 0,
            clusters: 0,
        }];
        let mut dirs = std::collections::HashMap::new();
        // (parent, name folded to lower case): FAT looks long names up
        // without regard to case (Linux's vfat_cmp, Windows alike), so
        // "A" beside "a", or two entries of one name (a hostile ISO can
        // list them; Joliet names decoded lossily can become equal),
        // would leave one of them unreachable. Found by the iso9660 fuzz
        // target.
        let mut names = std::collections::HashSet::new();
        for (path, size) in shape {
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (Some(d), n),
                None => (None, path.as_str()),
            };
            let parent = match dir {
                None => 0,
                Some(d) => *dirs
                    .get(d)
                    .ok_or_else(|| invalid(format!("{path}: its directory is not listed first")))?,
            };
            let units = name.encode_utf16().count();
            // A long name ends at U+0000 and is padded with U+FFFF
            // (Microsoft's FAT spec, "Long Directory Entries"): a name holding
            // either would read back cut short; control characters are
            // invalid in long names. Found by the iso9660 fuzz target.
            if name.is_empty()
                || units > 255
                || name == "."
                || name == ".."
                || name.chars().any(|c| c < ' ' || c == '\u{ffff}')
            {
                return Err(invalid(format!("{path}: unusable FAT name")));
            }
            if !names.insert((parent, name.to_lowercase())) {
                return Err(invalid(format!(
                    "{path}: a second entry of that name in its directory (FAT names ignore case)"
                )));
            }
            if size.is_some_and(|s| s > u64::from(u32::MAX)) {
                return Err(invalid(format!("{path}: too large for FAT")));
            }
            let i = nodes.len();
            if size.is_none() {
                dirs.insert(path.as_str(), i);
            }
            nodes.push(Node {
                name: name.to_string(),
                parent: Some(parent),
                size: *size,
                children: Vec::new(),
                cluster: 0,
                clusters: 0,
            });
            nodes[parent].children.push(i);
        }
        Ok(Tree { nodes })
    }

    /// Directory entries node `i`'s children take: an 8.3 entry plus one
    /// long name entry per 13 UTF-16 units, after the volume label (root)
    /// or `.` and `..`.
    fn dir_slots(&self, i: usize) -> u64 {
        let dots = if i == 0 { 1 } else { 2 };
        dots + self.nodes[i]
            .children
            .iter()
            .map(|&c| 1 + (self.nodes[c].name.encode_utf16().count() as u64).div_ceil(13))
            .sum::<u64>()
    }

    /// Give each file and directory its run of clusters; fails when the
    /// root directory or the data area is too small.
    fn place(&mut self, g: &SmallFat, sector: u64) -> io::Result<()> {
        if self.dir_slots(0) > ROOT_ENTRIES {
            return Err(invalid("too many entries for the FAT root directory"));
        }
        let cluster_bytes = g.spc * sector;
        let mut next = 2u64;
        for i in 1..self.nodes.len() {
            let bytes = match self.nodes[i].size {
                Some(s) => s,
                None => self.dir_slots(i) * 32,
            };
            let n = bytes.div_ceil(cluster_bytes);
            if n > 0 {
                self.nodes[i].cluster = next.min(u64::from(u32::MAX)) as u32;
                self.nodes[i].clusters = n.min(u64::from(u32::MAX)) as u32;
                next += n;
            }
        }
        if next - 2 > g.clusters {
            return Err(invalid(format!(
                "the files need {} KiB, the filesystem holds {} KiB",
                ((next - 2) * cluster_bytes) >> 10,
                (g.clusters * cluster_bytes) >> 10
            )));
        }
        Ok(())
    }
}

/// Whether [`write_fat`] can put a tree of this shape in `len` bytes with
/// `sector`-byte sectors (FAT allows 512 to 4096).
pub fn fat_fits(len: u64, sector: u64, shape: &Shape) -> bool {
    fat_check(len, sector, shape).is_ok()
}

/// [`fat_fits`], saying why not: the region's size, a bad or repeated
/// name, a missing parent, too little room.
pub fn fat_check(len: u64, sector: u64, shape: &Shape) -> io::Result<()> {
    let g = small_fat_geometry(len, sector)?;
    Tree::new(shape)?.place(&g, sector)
}

/// The smallest whole MiB, from `from` to `to`, in which [`write_fat`] can
/// hold a tree of this shape; `None` when none can (or the tree itself is
/// unusable: a missing parent, a bad name, a full root directory).
pub fn smallest_fat_mib(sector: u64, shape: &Shape, from: u64, to: u64) -> Option<u64> {
    let mut tree = Tree::new(shape).ok()?;
    if tree.dir_slots(0) > ROOT_ENTRIES {
        return None;
    }
    (from..=to)
        .find(|m| small_fat_geometry(m << 20, sector).is_ok_and(|g| tree.place(&g, sector).is_ok()))
}

/// Store FAT entry `c` (12 or 16 bits).
fn set_entry(fat: &mut [u8], bits: u64, c: usize, v: u16) {
    if bits == 12 {
        let o = c + c / 2;
        let (lo, hi) = if c % 2 == 0 {
            (v as u8, (fat[o + 1] & 0xf0) | ((v >> 8) as u8 & 0x0f))
        } else {
            ((fat[o] & 0x0f) | ((v as u8 & 0x0f) << 4), (v >> 4) as u8)
        };
        fat[o] = lo;
        fat[o + 1] = hi;
    } else {
        fat[2 * c..2 * c + 2].copy_from_slice(&v.to_le_bytes());
    }
}

/// Format `[offset, offset+len)` as FAT12 or FAT16 (by size, as mkfs.fat
/// picks) holding `entries`, the way `mkfs.vfat -n LABEL` then a copy
/// onto the mounted filesystem would (IPA's
/// `_try_build_fat32_config_drive`: mkfs.vfat picks FAT16 for a 64 MiB
/// partition, FAT12 under 16 MiB with 4 KiB sectors): 1 reserved sector,
/// two FATs, a 512-entry root directory, every name as a long (VFAT) name
/// with a unique 8.3 alias, each file and directory in consecutive
/// clusters. Returns the type written ("FAT12" or "FAT16"). Fails when
/// the region is outside FAT12/16's range or the entries do not fit
/// ([`fat_fits`] tells beforehand), before anything is written.
pub fn write_fat(
    io: &mut dyn Io,
    vol: &Volume,
    entries: Vec<NewEntry>,
) -> io::Result<&'static str> {
    let shape: Vec<(String, Option<u64>)> = entries
        .iter()
        .map(|(p, d)| (p.clone(), d.as_ref().map(|d| d.len() as u64)))
        .collect();
    let (kind, at) = format_tree(io, vol, &shape)?;
    for ((_, data), at) in entries.iter().zip(at) {
        if let (Some(d), Some(at)) = (data, at) {
            io.write_all_at(d, at)?;
        }
    }
    Ok(kind)
}

/// [`write_fat`] for a tree of this shape, without the files' contents:
/// everything but them is written. Returns the type and, for each entry,
/// where its file's contents go (its clusters are consecutive: the
/// contents are one run of bytes from there); `None` for directories and
/// empty files. So a caller can copy contents in from a stream, in
/// whatever order it reads them.
pub fn format_tree(
    io: &mut dyn Io,
    vol: &Volume,
    shape: &Shape,
) -> io::Result<(&'static str, Vec<Option<u64>>)> {
    let Volume {
        offset,
        len,
        sector,
        label,
        volume_id,
        hidden,
    } = *vol;
    let g = small_fat_geometry(len, sector)?;
    let (reserved, nfats) = (1u64, 2u64);
    let root_sectors = (ROOT_ENTRIES * 32).div_ceil(sector);
    let cluster_bytes = g.spc * sector;
    let mut tree = Tree::new(shape)?;
    tree.place(&g, sector)?;
    let mut at = vec![None; shape.len()];
    let nodes = &tree.nodes;
    let fat_at = offset + reserved * sector;
    let root_at = fat_at + nfats * g.fatsz * sector;
    let data_at = root_at + root_sectors * sector;
    // boot sector, FATs and root directory, zeroed first
    zero_fill(io, offset, data_at - offset)?;
    let lab = label11(label);
    let mut bs = boot_sector(sector, g.spc, reserved, nfats, hidden, 0x3c);
    bs[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    if g.total < 0x10000 {
        bs[19..21].copy_from_slice(&(g.total as u16).to_le_bytes());
    } else {
        bs[32..36].copy_from_slice(&(g.total as u32).to_le_bytes());
    }
    bs[22..24].copy_from_slice(&(g.fatsz as u16).to_le_bytes());
    bs[36] = 0x80;
    bs[38] = 0x29;
    bs[39..43].copy_from_slice(&volume_id.to_le_bytes());
    bs[43..54].copy_from_slice(&lab);
    bs[54..62].copy_from_slice(if g.bits == 12 {
        b"FAT12   "
    } else {
        b"FAT16   "
    });
    bs[62..64].copy_from_slice(&[0xeb, 0xfe]); // boot code: loop forever
    io.write_all_at(&bs, offset)?;
    // the FAT: media and end-of-chain marks, then each run of clusters
    let eoc: u16 = if g.bits == 12 { 0xfff } else { 0xffff };
    let mut fat = vec![0u8; (g.fatsz * sector) as usize];
    set_entry(&mut fat, g.bits, 0, eoc & 0xfff8);
    set_entry(&mut fat, g.bits, 1, eoc);
    for n in &nodes[1..] {
        for k in 0..n.clusters {
            let c = (n.cluster + k) as usize;
            let v = if k + 1 == n.clusters {
                eoc
            } else {
                (c + 1) as u16
            };
            set_entry(&mut fat, g.bits, c, v);
        }
    }
    for i in 0..nfats {
        io.write_all_at(&fat, fat_at + i * g.fatsz * sector)?;
    }
    let cluster_at = |c: u32| data_at + (u64::from(c) - 2) * cluster_bytes;
    for i in 0..nodes.len() {
        if nodes[i].size.is_some() {
            if nodes[i].clusters > 0 {
                at[i - 1] = Some(cluster_at(nodes[i].cluster));
            }
            continue;
        }
        let mut dir: Vec<u8> = Vec::new();
        if i == 0 {
            let mut e = [0u8; 32];
            e[0..11].copy_from_slice(&lab);
            e[11] = 0x08;
            dir.extend_from_slice(&e);
        } else {
            let parent = nodes[i].parent.map_or(0, |p| nodes[p].cluster);
            dir.extend_from_slice(&short_entry(b".          ", 0x10, nodes[i].cluster, 0));
            dir.extend_from_slice(&short_entry(b"..         ", 0x10, parent, 0));
        }
        for (k, &c) in nodes[i].children.iter().enumerate() {
            let n = &nodes[c];
            let short = short_name(&n.name, k + 1);
            let units: Vec<u16> = n.name.encode_utf16().collect();
            let count = units.len().div_ceil(13);
            let sum = short_checksum(&short);
            for part in (0..count).rev() {
                let mut e = [0u8; 32];
                e[0] = (part + 1) as u8 | if part + 1 == count { 0x40 } else { 0 };
                e[11] = 0x0f;
                e[13] = sum;
                // 13 units: the name, a NUL after it when there is room, 0xFFFF after that
                let unit = |j: usize| -> u16 {
                    let at = part * 13 + j;
                    match at.cmp(&units.len()) {
                        std::cmp::Ordering::Less => units[at],
                        std::cmp::Ordering::Equal => 0,
                        std::cmp::Ordering::Greater => 0xffff,
                    }
                };
                for (j, o) in (0..5)
                    .map(|j| (j, 1 + 2 * j))
                    .chain((5..11).map(|j| (j, 14 + 2 * (j - 5))))
                    .chain((11..13).map(|j| (j, 28 + 2 * (j - 11))))
                {
                    e[o..o + 2].copy_from_slice(&unit(j).to_le_bytes());
                }
                dir.extend_from_slice(&e);
            }
            let (attr, size) = match n.size {
                Some(s) => (0x20, s as u32),
                None => (0x10, 0),
            };
            dir.extend_from_slice(&short_entry(&short, attr, n.cluster, size));
        }
        let dir_at = if i == 0 {
            root_at
        } else {
            cluster_at(nodes[i].cluster)
        };
        io.write_all_at(&dir, dir_at)?;
        // the rest of the directory's last cluster reads as free entries
        let end = if i == 0 {
            root_sectors * sector
        } else {
            u64::from(nodes[i].clusters) * cluster_bytes
        };
        zero_fill(io, dir_at + dir.len() as u64, end - dir.len() as u64)?;
    }
    Ok((if g.bits == 12 { "FAT12" } else { "FAT16" }, at))
}

/// A unique 8.3 alias for the `k`th name of a directory: up to 6 (fewer
/// as `k` grows) of its valid characters, `~k`, and up to 3 of its
/// extension's; the long name entries carry the real name.
fn short_name(name: &str, k: usize) -> [u8; 11] {
    let clean = |s: &str, n: usize| -> Vec<u8> {
        s.bytes()
            .filter(|&c| c != b'.' && c != b' ')
            .map(|c| match c.to_ascii_uppercase() {
                c @ (b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'!' | b'#' | b'$') => c,
                _ => b'_',
            })
            .take(n)
            .collect()
    };
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, e),
        _ => (name, ""),
    };
    let tail = format!("~{k}");
    let mut out = [b' '; 11];
    let mut b = clean(base, 8 - tail.len());
    if b.is_empty() {
        b.push(b'_');
    }
    b.extend_from_slice(tail.as_bytes());
    out[..b.len()].copy_from_slice(&b);
    let e = clean(ext, 3);
    out[8..8 + e.len()].copy_from_slice(&e);
    out
}

fn short_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..11].copy_from_slice(name);
    e[11] = attr;
    for o in [16, 18, 24] {
        e[o..o + 2].copy_from_slice(&DOS_DATE.to_le_bytes());
    }
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(len: u64, sector: u64, label: &str, volume_id: u32, hidden: u64) -> Volume<'_> {
        Volume {
            offset: 0,
            len,
            sector,
            label,
            volume_id,
            hidden,
        }
    }
    use crate::disk::MemDisk;

    /// A directory of long-name entries with no short entry to end them
    /// (4 MiB of them: a hostile ESP): parsed in linear time, no name
    /// made of them. Found while writing the fuzz target: the run was
    /// kept whole and insertion-sorted, quadratic in its length.
    #[test]
    fn endless_long_name_run_is_bounded() {
        let mut lfn = [0u8; 32];
        lfn[0] = 0x01; // part 1, never the "last part" flag
        lfn[1] = b'a';
        lfn[11] = 0x0f;
        let mut raw: Vec<u8> = lfn.repeat((4 << 20) / 32 - 1);
        // parts numbered downwards: insertion sort's worst case
        for (i, e) in raw.chunks_exact_mut(32).enumerate() {
            e[0] = 0x1f - (i % 0x1f) as u8;
        }
        let mut short = [b' '; 32];
        short[..4].copy_from_slice(b"FILE");
        short[11] = 0x20;
        short[12..].fill(0);
        raw.extend_from_slice(&short);
        let sum = short_checksum(&short[..11]);
        for e in raw.chunks_exact_mut(32).rev().skip(1) {
            e[13] = sum;
        }
        let t = std::time::Instant::now();
        let (entries, _) = Fat::parse_dir(&raw);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(entries.len(), 1);
        // the last 20 parts at most make the name
        assert!(entries[0].name.encode_utf16().count() <= MAX_LFN_PARTS * 13);
    }

    #[test]
    fn formats_and_reads_back() {
        for sector in [512u64, 4096] {
            let len = 300u64 << 20;
            let mut d = MemDisk::new(len as usize);
            format_fat32(&mut d, &vol(len, sector, "efi-part", 0x1234abcd, 2048)).unwrap();
            let f = Fat::open(&d, 0, len).unwrap();
            assert_eq!(f.kind, Kind::Fat32);
            assert_eq!(f.volume_label().as_deref(), Some("efi-part"));
            assert!(f.list(None).unwrap().is_empty());
            let info = crate::fs::blkid::probe_fs(&d, 0, len).unwrap();
            assert_eq!(info.fstype, "vfat");
            assert_eq!(info.uuid.as_deref(), Some("1234-ABCD"));
        }
    }

    /// A tree with long names, a multi-cluster file, an empty file and a
    /// directory spanning clusters.
    fn tree() -> Vec<NewEntry> {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut entries: Vec<NewEntry> = vec![
            ("openstack".into(), None),
            ("openstack/latest".into(), None),
            (
                "openstack/latest/meta_data.json".into(),
                Some(b"{}".to_vec()),
            ),
            ("openstack/latest/user_data".into(), Some(big)),
            ("openstack/latest/empty".into(), Some(Vec::new())),
            ("ec2".into(), None),
        ];
        // enough names for a second directory cluster and ~10 aliases
        for i in 0..150 {
            entries.push((
                format!("ec2/a-rather-long-file-name-{i}.json"),
                Some(vec![i as u8]),
            ));
        }
        entries
    }

    fn reads_back(d: &MemDisk, len: u64, kind: Kind, entries: &[NewEntry]) {
        let f = Fat::open(d, 0, len).unwrap();
        assert_eq!(f.kind, kind, "{len}");
        assert_eq!(f.volume_label().as_deref(), Some("CONFIG-2"));
        let all = f.walk().unwrap();
        for (path, data) in entries {
            let (_, e) = all
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("{path}"));
            match data {
                Some(b) => assert_eq!(&f.read_file(e, 1 << 20).unwrap(), b, "{path}"),
                None => assert!(e.is_dir, "{path}"),
            }
        }
        assert_eq!(all.len(), entries.len());
    }

    #[test]
    fn fat12_and_fat16_with_long_names_read_back() {
        // FAT16 from 4085 clusters, FAT12 below (both sector sizes)
        for (sector, len, kind) in [
            (512u64, 64u64 << 20, Kind::Fat16),
            (4096, 64 << 20, Kind::Fat16),
            (512, 1 << 20, Kind::Fat12),
            (4096, 2 << 20, Kind::Fat12),
            (4096, 15 << 20, Kind::Fat12),
        ] {
            let mut d = MemDisk::new(len as usize);
            let entries = tree();
            let shape: Vec<(String, Option<u64>)> = entries
                .iter()
                .map(|(p, d)| (p.clone(), d.as_ref().map(|d| d.len() as u64)))
                .collect();
            assert!(fat_fits(len, sector, &shape));
            write_fat(&mut d, &vol(len, sector, "CONFIG-2", 7, 0), entries.clone()).unwrap();
            reads_back(&d, len, kind, &entries);
        }
        // too small for the files: refused before anything is written
        let mut d = MemDisk::new(64 << 10);
        let entries = tree();
        assert!(write_fat(&mut d, &vol(64 << 10, 512, "x", 1, 0), entries).is_err());
        assert!(d.0.iter().all(|&b| b == 0));
        // FAT sizes: FAT32 only above 2 GiB, no sectors over 4 KiB
        assert!(fat_fits(1 << 20, 512, &[]) && fat_fits(64 << 20, 4096, &[]));
        assert!(!fat_fits(64 << 20, 8192, &[]) && !fat_fits(4 << 30, 512, &[]));
        // a missing parent
        assert!(!fat_fits(64 << 20, 4096, &[("a/b".into(), None)]));
        let mut d = MemDisk::new(64 << 20);
        let orphan = vec![("a/b".into(), None)];
        assert!(write_fat(&mut d, &vol(64 << 20, 4096, "x", 1, 0), orphan).is_err());
        // names a long entry cannot hold: U+FFFF (its padding), U+0000 (its
        // end), control characters (the iso9660 fuzz target's find)
        for bad in ["u\u{ffff}x", "a\0b", "tab\there"] {
            assert!(
                !fat_fits(64 << 20, 4096, &[(bad.into(), Some(1))]),
                "{bad:?}"
            );
        }
        assert!(fat_fits(64 << 20, 4096, &[("user_data".into(), Some(1))]));
        // one name twice in a directory, or twice but for case (FAT finds
        // names without regard to case): the iso9660 fuzz target's second
        // find, a file and a directory both "e\u{fffd}\u{fffd}"
        let twice = |a: &str, b: &str| -> Vec<(String, Option<u64>)> {
            vec![(a.into(), None), (b.into(), Some(1))]
        };
        for (a, b) in [("e\u{fffd}", "e\u{fffd}"), ("Meta", "meta"), ("ÄB", "äb")] {
            assert!(!fat_fits(64 << 20, 4096, &twice(a, b)), "{a:?} {b:?}");
        }
        // the same name in two directories is fine
        let apart: Vec<(String, Option<u64>)> = vec![
            ("a".into(), None),
            ("b".into(), None),
            ("a/x".into(), Some(1)),
            ("b/x".into(), Some(1)),
        ];
        assert!(fat_fits(64 << 20, 4096, &apart));
    }

    #[test]
    fn smallest_fat_for_a_tree() {
        let shape: Vec<(String, Option<u64>)> = tree()
            .iter()
            .map(|(p, d)| (p.clone(), d.as_ref().map(|d| d.len() as u64)))
            .collect();
        // ~160 one-cluster files and 70 KB: 1 MiB at 4 KiB clusters
        assert_eq!(smallest_fat_mib(4096, &shape, 1, 10), Some(1));
        let big = vec![("f".to_string(), Some(3u64 << 20))];
        assert_eq!(smallest_fat_mib(4096, &big, 3, 10), Some(4));
        assert_eq!(smallest_fat_mib(4096, &big, 1, 3), None);
        // unusable trees fail at once, whatever the size
        let orphan = vec![("a/b".to_string(), None)];
        assert_eq!(smallest_fat_mib(4096, &orphan, 1, 1 << 12), None);
        let crowded: Vec<(String, Option<u64>)> =
            (0..600).map(|i| (format!("f{i}"), Some(1))).collect();
        assert_eq!(smallest_fat_mib(512, &crowded, 1, 1 << 12), None);
        assert_eq!(smallest_fat_mib(0, &big, 1, 10), None);
        assert!(!fat_fits(1 << 20, 0, &[]) && !fat_fits(1 << 20, 1536, &[]));
    }

    /// Around FAT12's 4084-cluster limit the type follows the cluster
    /// count, which is how every reader decides it: each size reads back
    /// with a file over every cluster (odd and even FAT12 entries).
    #[test]
    fn fat12_fat16_boundary() {
        for sector in [512u64, 4096] {
            let fixed = 1 + (ROOT_ENTRIES * 32) / sector;
            for clusters in [4070u64, 4083, 4084, 4085, 4086, 4100, 4120] {
                let len = (fixed + 2 * 24 + clusters) * sector;
                let g = small_fat_geometry(len, sector).unwrap();
                assert_eq!(
                    g.bits == 12,
                    g.clusters <= 4084,
                    "{sector} {clusters} {g:?}"
                );
                let mut d = MemDisk::new(len as usize);
                let n = (g.clusters - 1) * g.spc * sector;
                let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
                let entries = vec![("f".to_string(), Some(data))];
                write_fat(&mut d, &vol(len, sector, "CONFIG-2", 7, 0), entries.clone()).unwrap();
                let kind = if g.bits == 12 {
                    Kind::Fat12
                } else {
                    Kind::Fat16
                };
                let f = Fat::open(&d, 0, len).unwrap();
                assert_eq!(f.kind, kind);
                let all = f.walk().unwrap();
                let got = f.read_file(&all[0].1, 1 << 30).unwrap();
                assert!(got == entries[0].1.clone().unwrap(), "{sector} {clusters}");
            }
        }
    }

    #[test]
    fn too_small_for_fat32() {
        let mut d = MemDisk::new(8 << 20);
        assert!(format_fat32(&mut d, &vol(8 << 20, 512, "x", 1, 0)).is_err());
    }

    #[test]
    fn hostile_fat_never_panics_or_loops() {
        let len = 40u64 << 20;
        let mut d = MemDisk::new(len as usize);
        format_fat32(&mut d, &vol(len, 512, "efi-part", 1, 0)).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..300 {
            let mut x = d.clone();
            // root dir full of random entries, FAT entries pointing anywhere
            let (root, fat) = {
                let f = Fat::open(&x, 0, len).unwrap();
                (f.data_offset as usize, f.fat_offset as usize)
            };
            for b in &mut x.0[root..root + 512] {
                *b = rng.u8(..);
            }
            for b in &mut x.0[fat..fat + 64] {
                *b = rng.u8(..);
            }
            if round % 3 == 0 {
                for b in &mut x.0[11..40] {
                    *b = rng.u8(..);
                }
            }
            if let Ok(f) = Fat::open(&x, 0, len) {
                let _ = f.walk();
                let _ = f.volume_label();
            }
        }
    }
}
