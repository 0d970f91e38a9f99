//! A filesystem's type, UUID and label, read from its superblock the way
//! blkid does, for the types the agent cares about (IPA runs `blkid` and
//! `lsblk` for them).

use crate::disk::{Io, Partition};

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
pub fn probe_fs(io: &dyn Io, offset: u64, len: u64) -> Option<FsInfo> {
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
pub fn block_uuid(io: &dyn Io, part: &Partition) -> String {
    if let Some(uuid) = probe_fs(io, part.offset, part.len).and_then(|f| f.uuid) {
        return uuid;
    }
    part.gpt_uuid.map(|g| g.to_lower()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

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
