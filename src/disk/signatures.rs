//! Read-only probing of a disk or partition before it is wiped: which
//! signatures it carries (what `wipefs` would list), where their backup
//! copies live, its volume label (to recognise virtual media), and the
//! partitions its partition table describes (to wipe and safety-check
//! partitions the kernel may not have registered).
//!
//! Everything here works on a [`Region`]: a byte window of a device read
//! through a callback, so the parsers are pure and unit-tested on vectors.
//! Offsets and magics follow util-linux libblkid (`libblkid/src/superblocks/*`,
//! `partitions/{gpt,dos}.c`), the UEFI specification §5.3 (GPT), and each
//! on-disk format's own headers, cited where used.

use super::gpt::{self, LooseHeader};
use super::mbr::{self, Mbr};
use super::{GIB, KIB, MIB};
use crate::util::bytes::{at, be16, be32, be64, le16, le32, le64};
use std::io;

/// Bytes read (and later zeroed) at each end of every device and partition.
/// 1 MiB covers the partition tables, the primary superblocks of every
/// format listed below, ZFS labels L0/L1 (head) and L2/L3 (tail), and the
/// md 0.90/1.0 superblocks (tail). coreos-installer zeroes the same first MiB.
pub const END_AREA: u64 = MIB;

/// Reads `len` bytes at `off` (relative to the region). Short reads at the
/// end of the device return fewer bytes.
pub type ReadFn<'a> = dyn Fn(u64, usize) -> io::Result<Vec<u8>> + 'a;

/// A byte window of a device: the whole disk, or one partition of it.
pub struct Region<'a> {
    /// Offset of the window on the device (bytes).
    pub base: u64,
    pub size: u64,
    /// Logical sector size of the device (512 or 4096).
    pub sector: u32,
    pub read: &'a ReadFn<'a>,
}

impl Region<'_> {
    /// Read `len` bytes at window offset `off`; past the end gives zeros so
    /// that parsers can index freely.
    fn get(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        if off >= self.size {
            return Ok(vec![0; len]);
        }
        let n = (len as u64).min(self.size - off) as usize;
        let mut v = (self.read)(self.base + off, n)?;
        v.resize(len, 0);
        Ok(v)
    }
}

/// One signature found, at a window offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// libblkid's TYPE name ("ext4", "xfs", "linux_raid_member", "gpt", ...).
    pub kind: &'static str,
    pub offset: u64,
}

/// A partition described by the partition table (offsets in bytes, relative
/// to the disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub start: u64,
    pub size: u64,
    /// GPT type GUID in lsblk's upper-case text form, or MBR type as
    /// lsblk prints it ("0xfb").
    pub part_type: String,
}

/// What a window carries.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub signatures: Vec<Signature>,
    /// vfat or ISO9660 volume label (trimmed).
    pub label: Option<String>,
    /// Extra areas to zero beyond the two ends: (offset, len, why), derived
    /// from the superblocks and headers found (backup superblocks, the GPT
    /// backup the primary header points at, logical-partition EBRs).
    pub backups: Vec<(u64, u64, &'static str)>,
    /// Partition table entries (only probed on whole disks).
    pub table: Vec<TableEntry>,
}

impl Probe {
    pub fn has(&self, kind: &str) -> bool {
        self.signatures.iter().any(|s| s.kind == kind)
    }
}

/// md superblock magic (`MD_SB_MAGIC`, include/uapi/linux/raid/md_p.h),
/// stored little-endian by v1.x and in host order by v0.90.
pub const MD_MAGIC: u32 = 0xa92b_4efc;

/// Offsets at which LUKS2 may keep its secondary header
/// (cryptsetup `lib/luks2/luks2_disk_metadata.c: hdr2_offsets`).
pub const LUKS2_SECONDARY: [u64; 9] = [
    16 * KIB,
    32 * KIB,
    64 * KIB,
    128 * KIB,
    256 * KIB,
    512 * KIB,
    MIB,
    2 * MIB,
    4 * MIB,
];

/// btrfs superblock mirrors (`btrfs_sb_offset`: 64 KiB, 64 MiB, 256 GiB, 1 PiB).
pub const BTRFS_MIRRORS: [u64; 3] = [64 * MIB, 256 * GIB, 1 << 50];

/// Probe a window. `whole_disk` also reads the partition table.
pub fn probe(r: &Region, whole_disk: bool) -> io::Result<Probe> {
    let mut p = Probe::default();
    let head = r.get(0, END_AREA as usize)?;
    let tail_len = END_AREA.min(r.size);
    let tail_off = r.size - tail_len;
    let tail = r.get(tail_off, tail_len as usize)?;
    probe_head(&head, &mut p);
    probe_tail(&tail, tail_off, r.size, &mut p);
    // Signatures that live past the first MiB.
    let spot = |off: u64| r.get(off, 4096);
    let vmfs_vol = spot(MIB)?;
    if at(&vmfs_vol, 0, b"\x0d\xd0\x01\xc0") {
        p.push("VMFS_volume_member", MIB);
    }
    let vmfs = spot(2 * MIB)?;
    if at(&vmfs, 0, b"\x5e\xf1\xab\x2f") {
        p.push("VMFS", 2 * MIB);
    }
    for off in LUKS2_SECONDARY.into_iter().filter(|o| *o >= MIB) {
        if at(&spot(off)?, 0, b"SKUL\xba\xbe") {
            p.push("crypto_LUKS", off);
        }
    }
    for off in BTRFS_MIRRORS {
        if off + 4096 <= r.size && at(&spot(off)?, 0x40, b"_BHRfS_M") {
            p.push("btrfs", off);
        }
    }
    ext_backups(&head, r.size, &mut p);
    xfs_backups(&head, r.size, &mut p);
    if whole_disk {
        partition_table(r, &head, &mut p)?;
    }
    Ok(p)
}

impl Probe {
    fn push(&mut self, kind: &'static str, offset: u64) {
        self.signatures.push(Signature { kind, offset });
    }
}

/// Signatures in the first MiB of a window.
fn probe_head(h: &[u8], p: &mut Probe) {
    // Boot-sector formats first: they share the 0x55AA marker with the MBR.
    let boot_sig = at(h, 510, b"\x55\xaa");
    if at(h, 3, b"NTFS    ") {
        p.push("ntfs", 3);
    } else if at(h, 3, b"EXFAT   ") {
        p.push("exfat", 3);
    } else if at(h, 0x52, b"FAT32   ") {
        p.push("vfat", 0x52);
        p.label = label(&h[0x47..0x52]);
    } else if at(h, 0x36, b"FAT12   ") || at(h, 0x36, b"FAT16   ") || at(h, 0x36, b"FAT     ") {
        p.push("vfat", 0x36);
        p.label = label(&h[0x2b..0x36]);
    } else if boot_sig && (0..4).any(|i| h[446 + i * 16 + 4] == 0xee) {
        p.push("PMBR", 510);
    } else if boot_sig {
        p.push("dos", 510);
    }
    // GPT header at LBA 1 (UEFI 2.10 §5.3.2), for either sector size.
    for ss in [512usize, 4096] {
        if at(h, ss, b"EFI PART") {
            p.push("gpt", ss as u64);
        }
    }
    // ext2/3/4: s_magic 0xEF53 at 1024 + 0x38 (e2fsprogs lib/ext2fs/ext2_fs.h).
    if le16(h, 1024 + 0x38) == 0xef53 {
        p.push("ext4", 1024 + 0x38);
    }
    if at(h, 0, b"XFSB") {
        p.push("xfs", 0);
    }
    // btrfs primary superblock at 64 KiB, magic at +0x40.
    if at(h, 64 * 1024 + 0x40, b"_BHRfS_M") {
        p.push("btrfs", 64 * KIB);
    }
    // ISO9660 primary volume descriptor at 32 KiB: "\x01CD001"; volume id at +40.
    if at(h, 32768 + 1, b"CD001") {
        p.push("iso9660", 32 * KIB);
        if p.label.is_none() {
            p.label = label(&h[32768 + 40..32768 + 72]);
        }
    }
    // UDF anchor volume descriptor pointer at sector 256.
    if at(h, 256 * 512, b"\x02\x00") && at(h, 32768 + 1, b"BEA01") {
        p.push("udf", 128 * KIB);
    }
    // LVM2 physical volume label in one of the first four 512-byte sectors.
    for s in 0..4 {
        if at(h, s * 512, b"LABELONE") && at(h, s * 512 + 24, b"LVM2 001") {
            p.push("LVM2_member", (s * 512) as u64);
        }
    }
    // md superblocks 1.1 (offset 0) and 1.2 (4 KiB).
    for off in [0usize, 4096] {
        if le32(h, off) == MD_MAGIC {
            p.push("linux_raid_member", off as u64);
        }
    }
    // Swap: "SWAPSPACE2" ends at the page size (util-linux swap.c probes
    // 4, 8, 16 and 64 KiB pages).
    for page in [4096usize, 8192, 16384, 65536] {
        if at(h, page - 10, b"SWAPSPACE2") || at(h, page - 10, b"SWAP-SPACE") {
            p.push("swap", (page - 10) as u64);
        }
    }
    // LUKS1/LUKS2 primary header and LUKS2 secondary headers in the first MiB.
    if at(h, 0, b"LUKS\xba\xbe") {
        p.push("crypto_LUKS", 0);
    }
    for off in LUKS2_SECONDARY.into_iter().filter(|o| *o < MIB) {
        if at(h, off as usize, b"SKUL\xba\xbe") {
            p.push("crypto_LUKS", off);
        }
    }
    // bcache superblock at 4 KiB (SB_SECTOR 8), magic at +24 (bcache.h).
    const BCACHE: [u8; 16] = [
        0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d,
        0x81,
    ];
    if at(h, 4096 + 24, &BCACHE) {
        p.push("bcache", 4 * KIB);
    }
    // ZFS labels L0 (0) and L1 (256 KiB): uberblock magic 0x00bab10c in the
    // uberblock ring at +128 KiB (1 KiB slots).
    for label_off in [0usize, 256 * 1024] {
        if zfs_uberblock(h, label_off) {
            p.push("zfs_member", label_off as u64);
            break;
        }
    }
    // gfs/gfs2 superblock at 64 KiB (libblkid gfs.c): magic, then
    // sb_fs_format/sb_multihost_format 1801/1900 (gfs2) or 1309/1401 (gfs).
    let g = 64 * 1024;
    if be32(h, g) == 0x0116_1970 {
        match (be32(h, g + 24), be32(h, g + 28)) {
            (1801, 1900) => p.push("gfs2", g as u64),
            (1309, 1401) => p.push("gfs", g as u64),
            _ => {}
        }
    }
    // OCFS2 superblock in block 2 for block sizes 512..4096 (libblkid ocfs.c).
    for kb in [1usize, 2, 4, 8] {
        if at(h, kb * 1024, b"OCFSV2") {
            p.push("ocfs2", (kb * 1024) as u64);
            break;
        }
    }
    if at(h, 8 * 1024 + 8, b"OracleCFS") {
        p.push("ocfs", 8 * KIB);
    }
}

fn zfs_uberblock(h: &[u8], label_off: usize) -> bool {
    let ring = label_off + 128 * 1024;
    (0..128).any(|i| {
        let o = ring + i * 1024;
        o + 8 <= h.len() && (le64(h, o) == 0x00ba_b10c || be64(h, o) == 0x00ba_b10c)
    })
}

/// Signatures in the last MiB: md 0.90 and 1.0 superblocks, ZFS L2/L3.
fn probe_tail(t: &[u8], tail_off: u64, size: u64, p: &mut Probe) {
    let rel = |abs: u64| abs.checked_sub(tail_off).map(|r| r as usize);
    // md 0.90: MD_NEW_SIZE_SECTORS: size rounded down to 64 KiB, minus 64 KiB.
    if size >= 128 * KIB {
        let off = (size & !(64 * KIB - 1)) - 64 * KIB;
        if let Some(o) = rel(off) {
            if o + 4 <= t.len() && (le32(t, o) == MD_MAGIC || be32(t, o) == MD_MAGIC) {
                p.push("linux_raid_member", off);
            }
        }
    }
    // md 1.0: 8 KiB before the end, aligned down to 4 KiB (super_1_load).
    if size >= 12 * KIB {
        let off = (size - 8 * KIB) & !(4 * KIB - 1);
        if let Some(o) = rel(off) {
            if o + 4 <= t.len() && le32(t, o) == MD_MAGIC {
                p.push("linux_raid_member", off);
            }
        }
    }
    // ZFS L2/L3: the last two 256 KiB labels of the 256 KiB-aligned size.
    let asize = size & !(256 * KIB - 1);
    if asize >= 1024 * KIB {
        for l in [asize - 512 * KIB, asize - 256 * KIB] {
            if let Some(o) = rel(l) {
                if zfs_uberblock(t, o) {
                    p.push("zfs_member", l);
                    break;
                }
            }
        }
    }
    // GPT backup header in the last sector.
    for ss in [512u64, 4096] {
        if size >= ss {
            if let Some(o) = rel(size - ss) {
                if at(t, o, b"EFI PART") {
                    p.push("gpt", size - ss);
                }
            }
        }
    }
}

/// ext2/3/4 backup superblocks (e2fsprogs `ext2fs_bg_has_super`): groups 0,
/// 1 and powers of 3, 5, 7 with `sparse_super`, the two `s_backup_bgs` with
/// `sparse_super2`, every group otherwise. `e2fsck -b` recovers a file
/// system from any of them, so they are zeroed too.
fn ext_backups(h: &[u8], size: u64, p: &mut Probe) {
    let sb = 1024;
    if le16(h, sb + 0x38) != 0xef53 {
        return;
    }
    let log_bs = le32(h, sb + 24);
    if log_bs > 6 {
        return;
    }
    let bs = 1024u64 << log_bs;
    let first_data_block = u64::from(le32(h, sb + 20));
    let per_group = u64::from(le32(h, sb + 32));
    let compat = le32(h, sb + 0x5c);
    let incompat = le32(h, sb + 0x60);
    let ro_compat = le32(h, sb + 0x64);
    let mut blocks = u64::from(le32(h, sb + 4));
    if incompat & 0x80 != 0 {
        blocks |= u64::from(le32(h, sb + 0x150)) << 32;
    }
    if per_group == 0 || blocks <= first_data_block {
        return;
    }
    let groups = (blocks - first_data_block).div_ceil(per_group);
    let mut list: Vec<u64> = vec![];
    if compat & 0x200 != 0 {
        // COMPAT_SPARSE_SUPER2: s_backup_bgs[2] at 0x24c.
        list.extend([le32(h, sb + 0x24c), le32(h, sb + 0x250)].map(u64::from));
    } else if ro_compat & 0x1 != 0 {
        list.push(1);
        for base in [3u64, 5, 7] {
            let mut g = base;
            while g < groups {
                list.push(g);
                // the superblock's numbers are the previous tenant's: an
                // overflow ends the powers (wrapping would loop for ever)
                match g.checked_mul(base) {
                    Some(n) => g = n,
                    None => break,
                }
            }
        }
    } else {
        list.extend(1..groups.min(4096));
    }
    crate::util::sort_unstable(&mut list);
    list.dedup();
    for g in list.into_iter().filter(|g| *g > 0 && *g < groups) {
        let off = g
            .checked_mul(per_group)
            .and_then(|b| b.checked_add(first_data_block))
            .and_then(|b| b.checked_mul(bs));
        let Some(off) = off else { continue };
        if off.saturating_add(bs) <= size {
            p.backups.push((off, bs, "ext backup superblock"));
        }
    }
}

/// The array name of an md 1.x superblock (`struct mdp_superblock_1`:
/// magic @0, major_version @4, set_name[32] @32, "host:name" as mdadm
/// writes it): the part after the colon. `None` for anything else (0.90
/// superblocks have no name).
pub fn md_set_name(sb: &[u8]) -> Option<String> {
    if sb.len() < 64 || le32(sb, 0) != MD_MAGIC || le32(sb, 4) != 1 {
        return None;
    }
    let raw = &sb[32..64];
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let name = String::from_utf8_lossy(&raw[..end]).into_owned();
    let name = name
        .rsplit_once(':')
        .map_or(name.as_str(), |(_, n)| n)
        .to_string();
    (!name.is_empty()).then_some(name)
}

/// XFS secondary superblocks: the first sector of every allocation group
/// (xfs_format.h: sb_blocksize @4, sb_agblocks @84, sb_agcount @88,
/// sb_sectsize @102, all big-endian). `xfs_repair` finds them by scanning.
fn xfs_backups(h: &[u8], size: u64, p: &mut Probe) {
    if !at(h, 0, b"XFSB") {
        return;
    }
    let bs = u64::from(be32(h, 4));
    let agblocks = u64::from(be32(h, 84));
    let agcount = u64::from(be32(h, 88));
    let sect = u64::from(be16(h, 102)).max(512);
    if bs == 0 || agblocks == 0 || !bs.is_power_of_two() || sect > 64 * KIB {
        return;
    }
    for ag in 1..agcount.min(100_000) {
        let off = ag.saturating_mul(agblocks).saturating_mul(bs);
        if off.saturating_add(sect) > size {
            break;
        }
        p.backups.push((off, sect, "xfs secondary superblock"));
    }
}

/// A label field: trailing spaces and NULs trimmed; `None` when empty or
/// the vfat placeholder "NO NAME".
fn label(b: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_end_matches([' ', '\0']).trim();
    (!s.is_empty() && s != "NO NAME").then(|| s.to_string())
}

/// GPT (primary, else the backup at the end) and MBR entries with their
/// types, plus the GPT backup area named by the primary header and the
/// EBR sectors of logical partitions, which must be zeroed too.
fn partition_table(r: &Region, head: &[u8], p: &mut Probe) -> io::Result<()> {
    let ss = u64::from(r.sector);
    let mut gpt_found = false;
    if let Some(hdr) = LooseHeader::parse(&head[ss as usize..]) {
        gpt_found = gpt_entries(r, &hdr, p)?;
        // The backup header the primary points at: it may not be the last
        // sector when an image was written to a larger disk.
        let alt = hdr.alternate_lba;
        if alt > 1 && alt.saturating_mul(ss) < r.size {
            let ent_bytes = hdr.entries_bytes().div_ceil(ss) * ss;
            let start = (alt * ss).saturating_sub(ent_bytes.min(MIB));
            p.backups.push((start, alt * ss + ss - start, "gpt backup"));
        }
    }
    if r.size >= ss {
        let last = r.get(r.size - ss, ss as usize)?;
        if let Some(hdr) = LooseHeader::parse(&last) {
            let ent_bytes = hdr.entries_bytes().div_ceil(ss) * ss;
            // the header is not trusted yet: its fields may be garbage
            if hdr.entries_lba.checked_mul(ss).is_some_and(|b| b < r.size) && ent_bytes <= MIB {
                p.backups.push((
                    hdr.entries_lba * ss,
                    ent_bytes,
                    "gpt backup partition entries",
                ));
            }
            if !gpt_found {
                gpt_found = gpt_entries(r, &hdr, p)?;
            }
        }
    }
    if !gpt_found {
        if let Some(mbr) = Mbr::parse(&head[..512]) {
            mbr_entries(r, &mbr, p)?;
        }
    }
    Ok(())
}

/// Parse the entry array a GPT header points at. False when the header is
/// not plausible (then the MBR is tried).
fn gpt_entries(r: &Region, hdr: &LooseHeader, p: &mut Probe) -> io::Result<bool> {
    let ss = u64::from(r.sector);
    let lba = hdr.entries_lba;
    let n = u64::from(hdr.num_entries);
    let esz = u64::from(hdr.entry_size);
    if !(128..=4096).contains(&esz) || n == 0 || n > 4096 || lba.saturating_mul(ss) >= r.size {
        return Ok(false);
    }
    let buf = r.get(lba * ss, (n * esz) as usize)?;
    for raw in buf.chunks_exact(esz as usize) {
        let e = gpt::Entry::parse(raw);
        if !e.is_used() {
            continue;
        }
        let (first, last) = (e.first_lba, e.last_lba);
        if last < first || first.saturating_mul(ss) >= r.size {
            continue;
        }
        let size = (last - first)
            .saturating_add(1)
            .saturating_mul(ss)
            .min(r.size - first * ss);
        p.table.push(TableEntry {
            start: first * ss,
            size,
            part_type: e.type_guid.to_string(),
        });
    }
    Ok(true)
}

/// The four primary MBR entries and, inside an extended partition, the
/// chain of EBRs (each holding one logical partition and a link).
fn mbr_entries(r: &Region, mbr: &Mbr, p: &mut Probe) -> io::Result<()> {
    let ss = u64::from(r.sector);
    for e in &mbr.entries {
        let (ty, start, count) = (e.ptype, u64::from(e.start), u64::from(e.sectors));
        if ty == 0 || count == 0 || ty == mbr::TYPE_GPT_PROTECTIVE || start * ss >= r.size {
            continue;
        }
        p.table.push(TableEntry {
            start: start * ss,
            size: (count * ss).min(r.size - start * ss),
            part_type: format!("0x{ty:x}"),
        });
        if e.is_extended() {
            // Logical partitions: EBR at ext_start + link, up to 128 of them.
            let mut link = 0u64;
            for _ in 0..128 {
                let ebr_lba = start + link;
                if ebr_lba * ss >= r.size {
                    break;
                }
                let Some(ebr) = Mbr::parse(&r.get(ebr_lba * ss, 512)?) else {
                    break;
                };
                p.backups.push((ebr_lba * ss, ss, "ebr"));
                let [l, next, ..] = ebr.entries;
                let (lstart, lcount) = (u64::from(l.start), u64::from(l.sectors));
                if l.ptype != 0 && lcount != 0 && (ebr_lba + lstart) * ss < r.size {
                    let s = (ebr_lba + lstart) * ss;
                    p.table.push(TableEntry {
                        start: s,
                        size: (lcount * ss).min(r.size - s),
                        part_type: format!("0x{:x}", l.ptype),
                    });
                }
                let nstart = u64::from(next.start);
                if next.ptype == 0 || nstart == 0 || nstart == link {
                    break;
                }
                link = nstart;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Probe an in-memory "device".
    pub fn probe_vec(dev: &[u8], sector: u32, whole: bool) -> Probe {
        let read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let s = (off as usize).min(dev.len());
            let e = (s + len).min(dev.len());
            Ok(dev[s..e].to_vec())
        };
        let r = Region {
            base: 0,
            size: dev.len() as u64,
            sector,
            read: &read,
        };
        probe(&r, whole).unwrap()
    }

    /// A last sector that starts with "EFI PART" followed by garbage (a
    /// half-overwritten backup header) must not overflow or mark a bogus
    /// area; found by the e2e harness, whose fixture disks carry one.
    #[test]
    fn garbage_backup_gpt_header() {
        let mut d = vec![0xa5u8; 64 * 1024];
        let last = d.len() - 512;
        d[last..last + 8].copy_from_slice(b"EFI PART");
        let p = probe_vec(&d, 512, true);
        assert!(p
            .backups
            .iter()
            .all(|(start, len, _)| start + len <= d.len() as u64));
    }

    fn kinds(p: &Probe) -> Vec<&'static str> {
        p.signatures.iter().map(|s| s.kind).collect()
    }

    /// A GPT disk image with one entry per (first_lba, last_lba, type).
    pub fn gpt_disk(size: usize, parts: &[(u64, u64, [u8; 16])]) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[446 + 4] = 0xee;
        d[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        d[510] = 0x55;
        d[511] = 0xaa;
        let last_lba = (size / 512 - 1) as u64;
        for (hdr_lba, ents_lba, alt) in [(1u64, 2u64, last_lba), (last_lba, last_lba - 32, 1)] {
            let h = hdr_lba as usize * 512;
            d[h..h + 8].copy_from_slice(b"EFI PART");
            d[h + 24..h + 32].copy_from_slice(&hdr_lba.to_le_bytes());
            d[h + 32..h + 40].copy_from_slice(&alt.to_le_bytes());
            d[h + 72..h + 80].copy_from_slice(&ents_lba.to_le_bytes());
            d[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
            d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
            for (i, (first, last, ty)) in parts.iter().enumerate() {
                let e = ents_lba as usize * 512 + i * 128;
                d[e..e + 16].copy_from_slice(ty);
                d[e + 16] = 1; // unique GUID, non-zero
                d[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
                d[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
            }
        }
        d
    }

    /// VMFS partition type AA31E02A-400F-11DB-9590-000C2911D1B8 as stored.
    pub const VMFS_GUID: [u8; 16] = [
        0x2a, 0xe0, 0x31, 0xaa, 0x0f, 0x40, 0xdb, 0x11, 0x95, 0x90, 0x00, 0x0c, 0x29, 0x11, 0xd1,
        0xb8,
    ];

    #[test]
    fn gpt_entries_types_and_backup() {
        let d = gpt_disk(8 << 20, &[(2048, 4095, VMFS_GUID), (4096, 8191, [7; 16])]);
        let p = probe_vec(&d, 512, true);
        assert!(kinds(&p).contains(&"gpt") && kinds(&p).contains(&"PMBR"));
        assert_eq!(p.table.len(), 2);
        assert_eq!(p.table[0].start, 2048 * 512);
        assert_eq!(p.table[0].size, 2048 * 512);
        assert_eq!(p.table[0].part_type, "AA31E02A-400F-11DB-9590-000C2911D1B8");
        // the backup area named by the header: 32 entry sectors + header
        let last = (8 << 20) - 512;
        assert!(p
            .backups
            .iter()
            .any(|(o, l, _)| *o == last - 32 * 512 && o + l == last + 512));
    }

    #[test]
    fn gpt_from_backup_when_primary_is_gone() {
        let mut d = gpt_disk(4 << 20, &[(2048, 4095, [9; 16])]);
        d[512..1024].fill(0);
        let p = probe_vec(&d, 512, true);
        assert_eq!(p.table.len(), 1);
        assert_eq!(p.table[0].start, 2048 * 512);
    }

    #[test]
    fn mbr_with_logical_partitions() {
        let mut d = vec![0u8; 16 << 20];
        let put = |d: &mut Vec<u8>, at: usize, i: usize, ty: u8, start: u32, count: u32| {
            let e = at + 446 + i * 16;
            d[e + 4] = ty;
            d[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
            d[at + 510] = 0x55;
            d[at + 511] = 0xaa;
        };
        put(&mut d, 0, 0, 0xfb, 2048, 2048);
        put(&mut d, 0, 1, 0x05, 8192, 16384);
        // first EBR at 8192: logical at +2048, next EBR at +8192
        put(&mut d, 8192 * 512, 0, 0x83, 2048, 2048);
        put(&mut d, 8192 * 512, 1, 0x05, 8192, 4096);
        put(&mut d, (8192 + 8192) * 512, 0, 0x82, 2048, 1024);
        let p = probe_vec(&d, 512, true);
        let types: Vec<&str> = p.table.iter().map(|e| e.part_type.as_str()).collect();
        assert_eq!(types, vec!["0xfb", "0x5", "0x83", "0x82"]);
        assert_eq!(p.table[2].start, (8192 + 2048) * 512);
        assert_eq!(p.table[3].start, (16384 + 2048) * 512);
        assert_eq!(p.backups.iter().filter(|b| b.2 == "ebr").count(), 2);
    }

    #[test]
    fn filesystem_and_raid_signatures() {
        let mut d = vec![0u8; 4 << 20];
        d[1024 + 0x38] = 0x53;
        d[1024 + 0x39] = 0xef;
        d[64 * 1024 + 0x40..64 * 1024 + 0x48].copy_from_slice(b"_BHRfS_M");
        d[4096..4100].copy_from_slice(&MD_MAGIC.to_le_bytes());
        d[4096 - 10..4096].copy_from_slice(b"SWAPSPACE2");
        d[512..520].copy_from_slice(b"LABELONE");
        d[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
        let md090 = (4 << 20) - 64 * 1024;
        d[md090..md090 + 4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        d[2 << 20..(2 << 20) + 4].copy_from_slice(b"\x5e\xf1\xab\x2f");
        let p = probe_vec(&d, 512, false);
        let k = kinds(&p);
        for want in [
            "ext4",
            "btrfs",
            "linux_raid_member",
            "swap",
            "LVM2_member",
            "VMFS",
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
        assert_eq!(
            p.signatures
                .iter()
                .filter(|s| s.kind == "linux_raid_member")
                .count(),
            2
        );
    }

    #[test]
    fn cluster_filesystems() {
        let mut d = vec![0u8; 2 << 20];
        let g = 64 * 1024;
        d[g..g + 4].copy_from_slice(&0x0116_1970u32.to_be_bytes());
        d[g + 24..g + 28].copy_from_slice(&1801u32.to_be_bytes());
        d[g + 28..g + 32].copy_from_slice(&1900u32.to_be_bytes());
        d[2048..2054].copy_from_slice(b"OCFSV2");
        let k = kinds(&probe_vec(&d, 512, false));
        assert!(k.contains(&"gfs2") && k.contains(&"ocfs2"), "{k:?}");
    }

    #[test]
    fn ext4_backup_superblocks_from_the_primary() {
        // 4 KiB blocks, 32768 blocks per group, 1,000,000 blocks (31 groups),
        // sparse_super: backups in groups 1, 3, 5, 7, 9, 25, 27.
        let mut d = vec![0u8; 1 << 20];
        let sb = 1024;
        d[sb + 0x38..sb + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        d[sb + 4..sb + 8].copy_from_slice(&1_000_000u32.to_le_bytes());
        d[sb + 24..sb + 28].copy_from_slice(&2u32.to_le_bytes());
        d[sb + 32..sb + 36].copy_from_slice(&32768u32.to_le_bytes());
        d[sb + 0x64..sb + 0x68].copy_from_slice(&1u32.to_le_bytes());
        let mut p = Probe::default();
        ext_backups(&d, 1_000_000 * 4096, &mut p);
        let groups: Vec<u64> = p.backups.iter().map(|b| b.0 / (32768 * 4096)).collect();
        assert_eq!(groups, vec![1, 3, 5, 7, 9, 25, 27]);
        assert!(p.backups.iter().all(|b| b.1 == 4096));
        // a hostile superblock (64bit, 2^64-1 blocks, 1 block per group):
        // the powers of 3, 5, 7 stop at u64's end instead of wrapping for
        // ever (found in review), and nothing lands beyond the disk
        d[sb + 4..sb + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        d[sb + 0x150..sb + 0x154].copy_from_slice(&u32::MAX.to_le_bytes());
        d[sb + 0x60..sb + 0x64].copy_from_slice(&0x80u32.to_le_bytes());
        d[sb + 32..sb + 36].copy_from_slice(&1u32.to_le_bytes());
        let mut p = Probe::default();
        ext_backups(&d, 1 << 30, &mut p);
        assert!(p.backups.iter().all(|b| b.0 + b.1 <= 1 << 30));
        assert!(p.backups.len() < 200);
    }

    #[test]
    fn xfs_secondary_superblocks() {
        let mut d = vec![0u8; 1 << 20];
        d[0..4].copy_from_slice(b"XFSB");
        d[4..8].copy_from_slice(&4096u32.to_be_bytes());
        d[84..88].copy_from_slice(&65536u32.to_be_bytes());
        d[88..92].copy_from_slice(&4u32.to_be_bytes());
        d[102..104].copy_from_slice(&512u16.to_be_bytes());
        let mut p = Probe::default();
        xfs_backups(&d, 4 * 65536 * 4096, &mut p);
        let offs: Vec<u64> = p.backups.iter().map(|b| b.0).collect();
        assert_eq!(offs, vec![1 << 28, 2 << 28, 3 << 28]);
    }

    #[test]
    fn labels_of_virtual_media() {
        let mut d = vec![0u8; 1 << 20];
        d[0x36..0x3e].copy_from_slice(b"FAT12   ");
        d[0x2b..0x36].copy_from_slice(b"ir-vfd-dev ");
        d[510] = 0x55;
        d[511] = 0xaa;
        let p = probe_vec(&d, 512, false);
        assert_eq!(p.label.as_deref(), Some("ir-vfd-dev"));
        assert!(p.has("vfat") && !p.has("dos"));
        let mut iso = vec![0u8; 1 << 20];
        iso[32768] = 1;
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[32768 + 40..32768 + 72].copy_from_slice(b"config-2                        ");
        let p = probe_vec(&iso, 512, false);
        assert_eq!(p.label.as_deref(), Some("config-2"));
    }

    #[test]
    fn tiny_and_empty_devices() {
        assert!(probe_vec(&[], 512, true).signatures.is_empty());
        assert!(probe_vec(&[0u8; 4096], 512, true).signatures.is_empty());
    }
}
