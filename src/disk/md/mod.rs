//! md (Linux software RAID) v1.x superblocks: parse, build, checksum, and
//! the geometry mdadm gives a new array, so that arrays this agent makes
//! are ones the kernel starts and mdadm accepts as its own
//! (`include/uapi/linux/raid/md_p.h: struct mdp_superblock_1`;
//! `drivers/md/md.c: super_1_load, calc_sb_1_csum`; mdadm
//! `super1.c: validate_geometry1, write_init_super1`, `Create.c`).
//!
//! Layout of the 256-byte superblock (all little-endian, sizes in 512-byte
//! sectors), followed by `dev_roles[max_dev]` (le16 each):
//!
//! ```text
//! 0x00 magic a92b4efc  0x04 major_version 1  0x08 feature_map  0x0c pad0
//! 0x10 set_uuid[16]    0x20 set_name[32]     0x40 ctime         0x48 level
//! 0x4c layout          0x50 size             0x58 chunksize     0x5c raid_disks
//! 0x60 bitmap_offset   0x64..0x80 reshape fields
//! 0x80 data_offset     0x88 data_size        0x90 super_offset  0x98 recovery_offset
//! 0xa0 dev_number      0xa4 cnt_corrected_read 0xa8 device_uuid[16]
//! 0xb8 devflags 0xb9 bblog_shift 0xba bblog_size 0xbc bblog_offset (signed)
//! 0xc0 utime           0xc8 events           0xd0 resync_offset 0xd8 sb_csum
//! 0xdc max_dev         0xe0 pad3[32]         0x100 dev_roles[]
//! ```
//!
//! Where it lives: 1.0 at `(sectors - 16) & !7` (near the end, so the data
//! starts at the device's first byte: firmware reads a RAID-1 ESP member as
//! plain FAT), 1.1 at sector 0, 1.2 at sector 8 (4 KiB). The kernel reads
//! 4 KiB there and rejects a superblock whose `super_offset` is not that
//! location, whose checksum is wrong, whose pads are not zero or whose
//! feature bits it does not know.
//!
//! [`array`] is the kernel side: running arrays in sysfs, starting and
//! stopping them through the md ioctls.

pub mod array;

use crate::error::{AgentError, Result};
use crate::util::bytes::{le16, le32, le64};

/// `MD_SB_MAGIC`.
pub const MAGIC: u32 = 0xa92b_4efc;
/// Bytes read and written at a superblock location: the kernel reads 4 KiB
/// (`read_disk_sb(rdev, 4096)`); a whole block also suits 4Kn devices.
pub const SB_BYTES: usize = 4096;
/// `dev_roles` entries mdadm writes for arrays of up to 128 devices.
pub const MAX_DEV: u32 = 128;
/// The kernel's limit on `max_dev` ((4096 - 256) / 2).
const MAX_DEV_LIMIT: u32 = 1920;
/// `resync_offset` of an array known to be in sync (`MaxSector`).
pub const IN_SYNC: u64 = u64::MAX;
/// `MD_FEATURE_RAID0_LAYOUT`: `layout` is meaningful for raid0.
pub const FEATURE_RAID0_LAYOUT: u32 = 0x1000;
/// `MD_FEATURE_ALL` in 6.1: any other bit makes the kernel refuse.
pub const FEATURE_ALL: u32 = 0x1fff;
/// `dev_roles` values: a spare, a faulty device; below `ROLE_MAX` a slot.
pub const ROLE_SPARE: u16 = 0xffff;
pub const ROLE_FAULTY: u16 = 0xfffe;
pub const ROLE_MAX: u16 = 0xff00;
/// RAID0_ORIG_LAYOUT, what mdadm writes for raid0.
pub const RAID0_ORIG_LAYOUT: u32 = 1;
/// raid10 "near 2" (`near | far << 8`), mdadm's default.
pub const RAID10_N2: u32 = 0x102;
/// raid5/6 left-symmetric, mdadm's default.
pub const LEFT_SYMMETRIC: u32 = 2;
/// mdadm's default chunk: 512 KiB, in sectors.
pub const DEFAULT_CHUNK: u32 = 1024;

/// Where the superblock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Near the end; data from sector 0.
    V1_0,
    /// At sector 0.
    V1_1,
    /// At sector 8 (what `--metadata=1` means to mdadm).
    V1_2,
}

impl Version {
    /// The minor version, as `SET_ARRAY_INFO` and sysfs want it.
    pub fn minor(self) -> i32 {
        match self {
            Version::V1_0 => 0,
            Version::V1_1 => 1,
            Version::V1_2 => 2,
        }
    }

    /// "1.0", "1.1", "1.2" (sysfs `md/metadata_version`, mdadm).
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// The superblock's sector on a device of `sectors` 512-byte sectors
    /// (`super_1_load`); `None` when the device is too small for it.
    pub fn sb_sector(self, sectors: u64) -> Option<u64> {
        match self {
            Version::V1_0 => sectors.checked_sub(16).map(|s| s & !7),
            Version::V1_1 => Some(0),
            Version::V1_2 => (sectors >= 16).then_some(8),
        }
    }

    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];
}

/// The 0.90 superblock's sector (`MD_NEW_SIZE_SECTORS`: the size rounded
/// down to 64 KiB, minus 64 KiB); only ever zeroed here, never assembled.
pub fn sb090_sector(sectors: u64) -> Option<u64> {
    (sectors & !127).checked_sub(128)
}

/// One v1.x superblock: the 4 KiB block as it sits at the superblock
/// location (the 256-byte header, `dev_roles`, zeros after them, the
/// checksum right), read through accessors named after the fields (at
/// fixed offsets of a fixed-size block: no bounds checks). A parsed
/// superblock encodes back to the same bytes.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct Superblock(Box<[u8; SB_BYTES]>);

/// `calc_sb_1_csum` (kernel and mdadm alike): the le32 words of the 256
/// bytes and the roles, with `sb_csum` counted as 0, a trailing half word
/// added as a u16, folded once to 32 bits (the carry out of the fold is
/// dropped).
pub fn checksum(sb: &[u8]) -> u32 {
    let max_dev = le32(sb, 0xdc) as usize;
    let len = (256 + 2 * max_dev).min(sb.len());
    let mut sum: u64 = 0;
    let mut o = 0;
    while o + 4 <= len {
        if o != 0xd8 {
            sum += u64::from(le32(sb, o));
        }
        o += 4;
    }
    if len - o == 2 {
        sum += u64::from(le16(sb, o));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

#[cold]
#[inline(never)]
fn bad(msg: std::fmt::Arguments<'_>) -> AgentError {
    AgentError::msg(std::fmt::format(msg))
}

/// Little-endian stores into a superblock's bytes.
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

impl Superblock {
    /// Parse the bytes at a superblock location, with the kernel's checks
    /// that need no context: magic, major version 1, a `max_dev` the
    /// buffer holds, known feature bits, zero pads, the checksum.
    pub fn parse(b: &[u8]) -> Result<Superblock> {
        if b.len() < 256 {
            return Err(bad(format_args!("md superblock: short read")));
        }
        if le32(b, 0) != MAGIC {
            return Err(bad(format_args!("no md superblock magic")));
        }
        if le32(b, 4) != 1 {
            return Err(bad(format_args!(
                "md superblock major version {} (only 1.x is supported)",
                le32(b, 4)
            )));
        }
        let max_dev = le32(b, 0xdc);
        if max_dev > MAX_DEV_LIMIT || 256 + 2 * max_dev as usize > b.len() {
            return Err(bad(format_args!(
                "md superblock max_dev {max_dev} out of range"
            )));
        }
        let feature_map = le32(b, 8);
        if feature_map & !FEATURE_ALL != 0 {
            return Err(bad(format_args!(
                "md superblock has unknown features {feature_map:#x}"
            )));
        }
        if le32(b, 0xc) != 0 || b[0xe0..0x100].iter().any(|x| *x != 0) {
            return Err(bad(format_args!("md superblock padding is not zero")));
        }
        let stored = le32(b, 0xd8);
        let computed = checksum(b);
        if stored != computed {
            return Err(bad(format_args!(
                "md superblock checksum {stored:#010x} is wrong (computed {computed:#010x})"
            )));
        }
        let n = 256 + 2 * max_dev as usize;
        let mut sb = Box::new([0u8; SB_BYTES]);
        sb[..n].copy_from_slice(&b[..n]);
        Ok(Superblock(sb))
    }

    /// The 4 KiB block to write at the superblock location, checksum
    /// included, zero after the roles.
    pub fn encode(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// The same block, borrowed (what is written: no copy).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }

    fn u32_at(&self, o: usize) -> u32 {
        le32(&self.0[..], o)
    }

    fn u64_at(&self, o: usize) -> u64 {
        le64(&self.0[..], o)
    }

    /// Do two members describe the same array as mdadm's `Assemble`
    /// compares them: ctime, level, layout (0x40..0x50), chunksize and
    /// raid_disks (0x58..0x60)?
    pub fn same_array(&self, o: &Superblock) -> bool {
        self.0[0x40..0x50] == o.0[0x40..0x50] && self.0[0x58..0x60] == o.0[0x58..0x60]
    }

    pub fn set_uuid(&self) -> &[u8] {
        &self.0[0x10..0x20]
    }
    /// Seconds since the epoch in bits 0–39, microseconds above.
    pub fn ctime(&self) -> u64 {
        self.u64_at(0x40)
    }
    pub fn level(&self) -> i32 {
        self.u32_at(0x48) as i32
    }
    pub fn layout(&self) -> u32 {
        self.u32_at(0x4c)
    }
    pub fn raid_disks(&self) -> u32 {
        self.u32_at(0x5c)
    }
    pub fn data_offset(&self) -> u64 {
        self.u64_at(0x80)
    }
    pub fn data_size(&self) -> u64 {
        self.u64_at(0x88)
    }
    pub fn super_offset(&self) -> u64 {
        self.u64_at(0x90)
    }
    pub fn dev_number(&self) -> u32 {
        self.u32_at(0xa0)
    }
    pub fn events(&self) -> u64 {
        self.u64_at(0xc8)
    }
    pub fn resync_offset(&self) -> u64 {
        self.u64_at(0xd0)
    }
    /// `max_dev`: how many `dev_roles` follow the header.
    pub fn max_dev(&self) -> usize {
        self.u32_at(0xdc) as usize
    }

    /// The kernel's checks that need the device (`super_1_load`): the
    /// superblock sits where `version` puts it on a device of `sectors`,
    /// its data fits, and metadata and data do not overlap.
    pub fn check_place(&self, version: Version, sectors: u64) -> Result<()> {
        let at = version
            .sb_sector(sectors)
            .ok_or_else(|| bad(format_args!("device too small for an md superblock")))?;
        let (data_offset, data_size) = (self.data_offset(), self.data_size());
        if self.super_offset() != at {
            return Err(bad(format_args!(
                "md superblock says it lives at sector {}, not {at}",
                self.super_offset()
            )));
        }
        if data_size < 10 {
            return Err(bad(format_args!("md superblock data_size too small")));
        }
        let sb_sectors = (256 + 2 * self.max_dev() as u64).div_ceil(512);
        match version {
            Version::V1_0 => {
                // checked: both come from the disk
                if at < data_size
                    || data_offset
                        .checked_add(data_size)
                        .is_none_or(|end| end > at)
                {
                    return Err(bad(format_args!("md data overlaps the 1.0 superblock")));
                }
            }
            _ => {
                if data_offset < at + sb_sectors || sectors.saturating_sub(data_offset) < data_size
                {
                    return Err(bad(format_args!(
                        "md data overlaps the superblock or the device end"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The whole `set_name` ("host:name" or "name").
    pub fn full_name(&self) -> String {
        let n = &self.0[0x20..0x40];
        let end = n.iter().position(|b| *b == 0).unwrap_or(32);
        String::from_utf8_lossy(&n[..end]).into_owned()
    }

    /// The array's name as IPA reads it from `mdadm --detail`'s `Name :`
    /// line (`raid_utils.get_volume_name_of_raid_device`): the part after
    /// the homehost prefix, up to the first space.
    pub fn name(&self) -> String {
        // on the bytes: ':' and ' ' are ASCII, so cutting before the
        // lossy UTF-8 conversion cuts where the text would be cut
        let n = &self.0[0x20..0x40];
        let mut n = &n[..n.iter().position(|b| *b == 0).unwrap_or(32)];
        if let Some(c) = n.iter().rposition(|b| *b == b':') {
            n = &n[c + 1..];
        }
        if let Some(sp) = n.iter().position(|b| *b == b' ') {
            n = &n[..sp];
        }
        String::from_utf8_lossy(n).into_owned()
    }

    /// The role (slot) this member holds, `None` for a spare or faulty one.
    pub fn slot(&self) -> Option<u32> {
        let i = self.dev_number() as usize;
        if i >= self.max_dev() {
            return None;
        }
        let r = le16(&self.0[..], 0x100 + 2 * i);
        (r < ROLE_MAX).then_some(u32::from(r))
    }

    /// The set UUID as mdadm prints it ("35cb2455:48654330:7b2df8f4:dda80f3c").
    pub fn uuid_mdadm(&self) -> String {
        hex_groups(self.set_uuid(), &[4, 4, 4, 4], ':')
    }

    /// The set UUID as sysfs `md/uuid` shows it (`%pU`, bytes in order).
    pub fn uuid_sysfs(&self) -> String {
        hex_groups(self.set_uuid(), &[4, 2, 2, 2, 6], '-')
    }

    /// Seconds part of `ctime`.
    pub fn ctime_secs(&self) -> u64 {
        self.ctime() & 0xff_ffff_ffff
    }
}

/// `u`'s bytes as lowercase hex, in groups of `groups` bytes joined by
/// `sep` (one loop for both UUID spellings).
#[inline(never)]
fn hex_groups(u: &[u8], groups: &[usize], sep: char) -> String {
    let mut out = String::with_capacity(40);
    let mut i = 0;
    for (g, &n) in groups.iter().enumerate() {
        if g > 0 {
            out.push(sep);
        }
        out.push_str(&crate::util::bytes::hex(&u[i..i + n]));
        i += n;
    }
    out
}

/// `set_name` as mdadm's `init_super1` writes it: "homehost:name" when
/// that fits in 31 bytes and the name has no colon, else the name cut to
/// 31 bytes.
pub fn set_name(homehost: Option<&str>, name: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut n = 0;
    // the bytes in, up to 31 (the last stays NUL)
    let mut put = |s: &[u8]| {
        for &b in s {
            if n < 31 {
                out[n] = b;
                n += 1;
            }
        }
    };
    match homehost {
        Some(h) if !h.is_empty() && !name.contains(':') && h.len() + 1 + name.len() < 32 => {
            put(h.as_bytes());
            put(b":");
            put(name.as_bytes());
        }
        _ => put(name.as_bytes()),
    }
    out
}

/// RAID levels as md numbers them (`level`), from IPA's names.
pub fn level_number(raid_level: &str) -> Option<i32> {
    match raid_level {
        "0" => Some(0),
        "1" => Some(1),
        "1+0" | "10" => Some(10),
        "5" => Some(5),
        "6" => Some(6),
        _ => None,
    }
}

/// sysfs `md/level` names ("raid1"), formatted where they are used.
pub fn level_name(level: i32) -> LevelName {
    LevelName(level)
}

/// [`level_name`]'s text: "linear" or "raid<N>".
pub struct LevelName(i32);

impl std::fmt::Display for LevelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            -1 => f.write_str("linear"),
            l => write!(f, "raid{l}"),
        }
    }
}

/// The fewest members a level runs with when created here (what mdadm
/// accepts with `--force`, as IPA passes it).
pub fn min_members(level: i32) -> usize {
    match level {
        0 | 1 => 1,
        10 => 2,
        5 => 2,
        6 => 4,
        _ => usize::MAX,
    }
}

/// `choose_bm_space` (mdadm and the kernel alike), sectors.
fn bm_space(s: u64) -> u64 {
    if s < 128 {
        0
    } else if s - 128 >= 400 << 20 {
        256
    } else if s - 8 > 16 << 20 {
        128
    } else {
        8
    }
}

/// Where one member's data and metadata sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPlace {
    pub data_offset: u64,
    pub data_size: u64,
    pub super_offset: u64,
    pub bblog_offset: i32,
    pub bblog_size: u16,
}

/// The geometry of a new array, as mdadm's `Create` computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub version: Version,
    pub level: i32,
    pub layout: u32,
    pub feature_map: u32,
    /// Sectors; 0 for raid1.
    pub chunk: u32,
    /// Component size in sectors (0 for raid0).
    pub size: u64,
    pub members: Vec<MemberPlace>,
    /// The array's size in sectors.
    pub array_sectors: u64,
}

/// Plan a new array of `level` over members of `sectors` each (512-byte
/// sectors), without a write-intent bitmap (mdadm ≥ 4.4 with `--run`, as
/// IPA calls it, adds none either).
pub fn plan(version: Version, level: i32, sectors: &[u64]) -> Result<Plan> {
    let n = sectors.len();
    if n < min_members(level) {
        return Err(bad(format_args!(
            "RAID level {} needs at least {} member(s), got {n}",
            level_name(level),
            min_members(level)
        )));
    }
    let (chunk_k, layout): (u64, u32) = match level {
        0 => (512, RAID0_ORIG_LAYOUT),
        1 => (0, 0),
        10 => (512, RAID10_N2),
        5 | 6 => (512, LEFT_SYMMETRIC),
        _ => return Err(bad(format_args!("unsupported md level {level}"))),
    };
    let min = *sectors.iter().min().expect("at least one member");
    let first = sectors[0];
    // validate_geometry1: 1.2 data_offset from the first member's size,
    // about 0.1 % headroom, at least 1 MiB-aligned.
    let data_offset = match version {
        Version::V1_0 => 0,
        Version::V1_1 | Version::V1_2 => {
            let mut headroom: u64 = 128 * 1024 * 2;
            while (headroom << 10) > first && (chunk_k == 0 || headroom / 2 >= chunk_k * 4) {
                headroom >>= 1;
            }
            (24 + bm_space(first) + headroom).div_ceil(2048) * 2048
        }
    };
    let free = match version {
        Version::V1_0 => (min & !7).checked_sub(16 + 8 + bm_space(min)),
        _ => min.checked_sub(data_offset),
    }
    .filter(|f| *f >= 128);
    let size_k = free
        .map(|free| {
            let mut size_k = free / 2;
            if chunk_k > 0 {
                size_k &= !(chunk_k - 1);
            }
            if level == 1 {
                size_k &= !63;
            }
            size_k
        })
        .filter(|s| *s != 0)
        .ok_or_else(|| {
            bad(format_args!(
                "a member of {min} sectors is too small for an md {} array",
                level_name(level)
            ))
        })?;
    let size = if level == 0 { 0 } else { size_k * 2 };
    let mut members = vec![];
    for &d in sectors {
        let m = match version {
            Version::V1_0 => {
                let sbo = (d - 16) & !7;
                let used = size;
                let mut space = bm_space(used) + 8;
                if sbo < used + space {
                    space = sbo - used;
                }
                MemberPlace {
                    data_offset: 0,
                    data_size: sbo - space,
                    super_offset: sbo,
                    bblog_offset: if space >= 8 { -8 } else { 0 },
                    bblog_size: if space >= 8 { 8 } else { 0 },
                }
            }
            _ => {
                let sbo = if version == Version::V1_2 { 8 } else { 0 };
                let bms = bm_space(size);
                let (bbo, bbs) = if data_offset >= sbo + 8 + bms + 8 {
                    ((8 + bms) as i32, 8)
                } else if data_offset >= sbo + 16 {
                    ((data_offset - 8 - sbo) as i32, 8)
                } else {
                    (0, 0)
                };
                MemberPlace {
                    data_offset,
                    data_size: d - data_offset,
                    super_offset: sbo,
                    bblog_offset: bbo,
                    bblog_size: bbs,
                }
            }
        };
        members.push(m);
    }
    let chunk = (chunk_k * 2) as u32;
    let mut feature_map = 0;
    let array_sectors = match level {
        0 => {
            let c = u64::from(chunk);
            let zone = |m: &MemberPlace| m.data_size / c * c;
            // Members of different sizes make several zones, which a
            // 5.4+ kernel runs only when the layout is recorded.
            let mut sum = 0;
            for m in &members {
                if zone(m) != zone(&members[0]) {
                    feature_map |= FEATURE_RAID0_LAYOUT;
                }
                sum += zone(m);
            }
            sum
        }
        1 => size,
        10 => {
            let c = u64::from(chunk);
            (size / c) * n as u64 / 2 * c
        }
        5 => size * (n as u64 - 1),
        6 => size * (n as u64 - 2),
        _ => unreachable!("levels checked above"),
    };
    Ok(Plan {
        version,
        level,
        layout,
        feature_map,
        chunk,
        size,
        members,
        array_sectors,
    })
}

/// What every member of a new array shares.
#[derive(Clone, Debug)]
pub struct Identity {
    pub set_uuid: [u8; 16],
    pub set_name: [u8; 32],
    /// Seconds since the epoch.
    pub ctime: u64,
}

impl Plan {
    /// Member `i`'s superblock: active in slot `i`, events 0, as mdadm's
    /// `write_init_super1` writes it; `resync_offset` 0 (a full resync
    /// follows, as with `mdadm --create --force`) except for raid0, which
    /// has nothing to sync. Fields not set here are zero.
    pub fn superblock(&self, id: &Identity, i: usize, device_uuid: [u8; 16]) -> Superblock {
        let m = &self.members[i];
        let n = self.members.len();
        let max_dev = MAX_DEV.max(n as u32).min(MAX_DEV_LIMIT) as usize;
        let mut b = Box::new([0u8; SB_BYTES]);
        put32(&mut b[..], 0, MAGIC);
        put32(&mut b[..], 4, 1);
        put32(&mut b[..], 8, self.feature_map);
        b[0x10..0x20].copy_from_slice(&id.set_uuid);
        b[0x20..0x40].copy_from_slice(&id.set_name);
        put64(&mut b[..], 0x40, id.ctime);
        put32(&mut b[..], 0x48, self.level as u32);
        put32(&mut b[..], 0x4c, self.layout);
        put64(&mut b[..], 0x50, self.size);
        put32(&mut b[..], 0x58, self.chunk);
        put32(&mut b[..], 0x5c, n as u32);
        put64(&mut b[..], 0x80, m.data_offset);
        put64(&mut b[..], 0x88, m.data_size);
        put64(&mut b[..], 0x90, m.super_offset);
        put32(&mut b[..], 0xa0, i as u32);
        b[0xa8..0xb8].copy_from_slice(&device_uuid);
        b[0xba..0xbc].copy_from_slice(&m.bblog_size.to_le_bytes());
        put32(&mut b[..], 0xbc, m.bblog_offset as u32);
        // utime: the creation time; events 0
        put64(&mut b[..], 0xc0, id.ctime);
        put64(&mut b[..], 0xd0, if self.level == 0 { IN_SYNC } else { 0 });
        put32(&mut b[..], 0xdc, max_dev as u32);
        // slots 0..n, the rest spare
        for r in 0..max_dev {
            let role = if r < n { r as u16 } else { ROLE_SPARE };
            b[0x100 + 2 * r..0x102 + 2 * r].copy_from_slice(&role.to_le_bytes());
        }
        let c = checksum(&b[..]);
        put32(&mut b[..], 0xd8, c);
        Superblock(b)
    }
}

/// A valid superblock found on a device.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct Found {
    pub version: Version,
    pub sb: Superblock,
}

/// Every valid v1.x superblock on a device of `size` bytes, read through
/// `read(offset, len)`; mdadm's `guess_super` would take the newest
/// (`ctime`), which is the first of the list.
pub fn find(size: u64, read: &dyn Fn(u64, usize) -> std::io::Result<Vec<u8>>) -> Vec<Found> {
    let sectors = size / 512;
    let mut out = vec![];
    for version in Version::ALL {
        let Some(at) = version.sb_sector(sectors) else {
            continue;
        };
        let Ok(buf) = read(at * 512, SB_BYTES) else {
            continue;
        };
        if buf.len() < 256 || le32(&buf, 0) != MAGIC {
            continue;
        }
        match Superblock::parse(&buf).and_then(|sb| sb.check_place(version, sectors).map(|_| sb)) {
            Ok(sb) => out.push(Found { version, sb }),
            Err(e) => crate::util::log_at!(
                Debug,
                "md superblock {} at sector {at}: {}",
                version.as_str(),
                e.details
            ),
        }
    }
    crate::util::sort_small_by(&mut out, |a, b| b.sb.ctime_secs().cmp(&a.sb.ctime_secs()));
    out
}

/// Byte offsets of every md superblock magic (v0.90, 1.0, 1.1, 1.2, valid
/// or not) on a device of `size` bytes: what `mdadm --zero-superblock`
/// clears, found the way `guess_super` looks.
pub fn magic_offsets(size: u64, read: &dyn Fn(u64, usize) -> std::io::Result<Vec<u8>>) -> Vec<u64> {
    let sectors = size / 512;
    let mut spots: Vec<u64> = vec![];
    let places = [
        Version::V1_0.sb_sector(sectors),
        Version::V1_1.sb_sector(sectors),
        Version::V1_2.sb_sector(sectors),
        sb090_sector(sectors),
    ];
    // each place once, kept when it holds the magic; then in disk order
    for s in places.into_iter().flatten() {
        let off = s * 512;
        if !spots.contains(&off)
            && read(off, 512).is_ok_and(|b| b.len() >= 4 && le32(&b, 0) == MAGIC)
        {
            spots.push(off);
        }
    }
    crate::util::sort_small(&mut spots);
    spots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            set_uuid: [0x11; 16],
            set_name: set_name(Some("testhost"), "r0"),
            ctime: 1_796_600_273,
        }
    }

    #[test]
    fn checksum_folds_once_and_skips_itself() {
        let mut b = vec![0u8; 512];
        b[0xdc..0xe0].copy_from_slice(&128u32.to_le_bytes());
        // 256 + 256 bytes, all 0xff words: 128 words of 0xffffffff
        for x in b[0x100..0x200].iter_mut() {
            *x = 0xff;
        }
        let words = 64u64 * 0xffff_ffff + 128;
        let want = ((words & 0xffff_ffff) + (words >> 32)) as u32;
        assert_eq!(checksum(&b), want);
        b[0xd8..0xdc].copy_from_slice(&0x1234u32.to_le_bytes());
        assert_eq!(checksum(&b), want, "sb_csum counts as 0");
        // an odd max_dev leaves a half word, added as u16
        let mut c = vec![0u8; 512];
        c[0xdc..0xe0].copy_from_slice(&1u32.to_le_bytes());
        c[0x100..0x102].copy_from_slice(&0xabcdu16.to_le_bytes());
        assert_eq!(checksum(&c), 1 + 0xabcd);
    }

    /// The golden example of the notes (mdadm 4.2, raid0, 2 × 200 MiB,
    /// member 0): every field we can reproduce.
    #[test]
    fn mdadm_raid0_geometry() {
        let p = plan(Version::V1_2, 0, &[409600, 409600]).unwrap();
        assert_eq!(p.members[0].data_offset, 4096);
        assert_eq!(p.members[0].data_size, 405504);
        assert_eq!(p.members[0].bblog_offset, 8);
        assert_eq!((p.size, p.chunk, p.layout, p.feature_map), (0, 1024, 1, 0));
        assert_eq!(p.array_sectors, 811008);
        let sb = p.superblock(&id(), 0, [0x22; 16]);
        let b = sb.encode();
        assert_eq!(&b[0..8], &[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0]);
        assert_eq!(&b[0x20..0x2c], b"testhost:r0\0");
        assert_eq!(
            &b[0x50..0x60],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(
            &b[0x80..0x98],
            &[0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x30, 6, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&b[0xb8..0xc0], &[0, 0, 8, 0, 8, 0, 0, 0]);
        assert_eq!(&b[0xd0..0xd8], &[0xff; 8]);
        assert_eq!(&b[0xdc..0xe0], &[0x80, 0, 0, 0]);
        assert_eq!(&b[0x100..0x106], &[0, 0, 1, 0, 0xff, 0xff]);
        assert!(b[0x200..].iter().all(|x| *x == 0));
        let back = Superblock::parse(&b).unwrap();
        assert_eq!(back, sb);
        assert_eq!(back.encode(), b);
        assert_eq!(back.name(), "r0");
        assert_eq!(back.slot(), Some(0));
        back.check_place(Version::V1_2, 409600).unwrap();
    }

    /// mdadm's data offsets (the notes' table, T-checked rows marked there).
    #[test]
    fn data_offsets_like_mdadm() {
        let gib = 2 * 1024 * 1024u64;
        let off = |level, s| plan(Version::V1_2, level, &[s, s]).unwrap().members[0].data_offset;
        assert_eq!(off(1, 300 * 2048), 2048);
        assert_eq!(off(5, 200 * 2048), 4096);
        assert_eq!(off(1, gib), 4096);
        assert_eq!(off(1, 10 * gib), 18432);
        assert_eq!(off(1, 32 * gib), 67584);
        assert_eq!(off(1, 100 * gib), 133120);
        assert_eq!(off(1, 130 * gib), 264192);
        // raid1 on 300 MiB members: size = data_size = 612352 (T)
        let p = plan(Version::V1_2, 1, &[614400, 614400]).unwrap();
        assert_eq!((p.size, p.members[0].data_size), (612352, 612352));
        // raid5/10/6 on 200 MiB: size 405504, array 811008 (T)
        let p = plan(Version::V1_2, 5, &[409600; 3]).unwrap();
        assert_eq!((p.size, p.array_sectors, p.layout), (405504, 811008, 2));
        let p = plan(Version::V1_2, 10, &[409600; 4]).unwrap();
        assert_eq!((p.array_sectors, p.layout), (811008, 0x102));
        let p = plan(Version::V1_2, 6, &[409600; 4]).unwrap();
        assert_eq!(p.array_sectors, 811008);
    }

    /// data_offset and data_size come from the disk: a sum past u64 is
    /// refused, not wrapped under the 1.0 superblock's sector.
    #[test]
    fn a_data_range_past_u64_is_refused() {
        let p = plan(Version::V1_0, 1, &[204800, 204800]).unwrap();
        let mut b = p.superblock(&id(), 0, [0x22; 16]).encode();
        b[0x80..0x88].copy_from_slice(&(u64::MAX - 5).to_le_bytes());
        let c = checksum(&b);
        b[0xd8..0xdc].copy_from_slice(&c.to_le_bytes());
        let sb = Superblock::parse(&b).unwrap();
        let e = sb.check_place(Version::V1_0, 204800).unwrap_err();
        assert!(e.to_string().contains("overlaps the 1.0 superblock"), "{e}");
    }

    /// 1.0 (the ESP mirror): T, a 100 MiB partition: sb 204784, data_size
    /// 204768, size 204672.
    #[test]
    fn v1_0_geometry() {
        let p = plan(Version::V1_0, 1, &[204800, 204800]).unwrap();
        let m = p.members[0];
        assert_eq!(
            (m.super_offset, m.data_size, p.size),
            (204784, 204768, 204672)
        );
        assert_eq!((m.data_offset, m.bblog_offset, m.bblog_size), (0, -8, 8));
        let sb = p.superblock(&id(), 1, [3; 16]);
        sb.check_place(Version::V1_0, 204800).unwrap();
        assert!(sb.check_place(Version::V1_2, 204800).is_err());
        assert_eq!(sb.slot(), Some(1));
    }

    #[test]
    fn raid0_members_of_different_sizes_record_the_layout() {
        let p = plan(Version::V1_2, 0, &[409600, 819200]).unwrap();
        assert_eq!(p.feature_map, FEATURE_RAID0_LAYOUT);
        assert_eq!(p.array_sectors, 405504 + 815104);
    }

    #[test]
    fn too_small_or_too_few() {
        assert!(plan(Version::V1_2, 1, &[2048, 2048]).is_err());
        assert!(plan(Version::V1_2, 6, &[409600; 3]).is_err());
        assert!(plan(Version::V1_2, 7, &[409600; 3]).is_err());
    }

    #[test]
    fn parse_rejects_what_the_kernel_rejects() {
        let p = plan(Version::V1_2, 1, &[614400, 614400]).unwrap();
        let good = p.superblock(&id(), 0, [1; 16]).encode();
        let mut b = good.clone();
        b[0x30] ^= 1; // a name byte: checksum
        assert!(Superblock::parse(&b)
            .unwrap_err()
            .details
            .contains("checksum"));
        let mut b = good.clone();
        b[0xe0] = 1;
        assert!(Superblock::parse(&b).is_err());
        let mut b = good.clone();
        b[8] = 0; // feature 0x2000 is unknown
        b[9] = 0x20;
        assert!(Superblock::parse(&b).is_err());
        let mut b = good;
        b[0] = 0;
        assert!(Superblock::parse(&b).is_err());
        assert!(Superblock::parse(&[0u8; 10]).is_err());
    }

    #[test]
    fn find_and_magic_offsets() {
        let sectors = 614400u64;
        let mut disk = vec![0u8; (sectors * 512) as usize];
        let p = plan(Version::V1_2, 1, &[sectors, sectors]).unwrap();
        let sb = p.superblock(&id(), 0, [1; 16]).encode();
        disk[4096..8192].copy_from_slice(&sb);
        // a stale 0.90 magic near the end
        let s090 = (sb090_sector(sectors).unwrap() * 512) as usize;
        disk[s090..s090 + 4].copy_from_slice(&MAGIC.to_le_bytes());
        let read = |off: u64, len: usize| Ok(disk[off as usize..off as usize + len].to_vec());
        let found = find(disk.len() as u64, &read);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version, Version::V1_2);
        assert_eq!(
            found[0].sb.uuid_mdadm(),
            "11111111:11111111:11111111:11111111"
        );
        assert_eq!(
            found[0].sb.uuid_sysfs(),
            "11111111-1111-1111-1111-111111111111"
        );
        assert_eq!(
            magic_offsets(disk.len() as u64, &read),
            vec![4096, s090 as u64]
        );
    }

    #[test]
    fn names_like_mdadm_and_ipa() {
        let n = |h, v| {
            let id = Identity {
                set_name: set_name(h, v),
                ..id()
            };
            let s = plan(Version::V1_2, 1, &[614400])
                .unwrap()
                .superblock(&id, 0, [0; 16]);
            (s.full_name(), s.name())
        };
        assert_eq!(
            n(Some("localhost"), "root"),
            ("localhost:root".into(), "root".into())
        );
        assert_eq!(n(None, "root"), ("root".into(), "root".into()));
        // too long for the prefix: the name alone
        let long = "a-very-long-volume-name-of-28ch";
        assert_eq!(n(Some("localhost"), long).0, long);
        assert_eq!(level_number("1+0"), Some(10));
        assert_eq!(level_name(5).to_string(), "raid5");
    }
}
