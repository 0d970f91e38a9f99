//! Which disks hold the arrays and how they are partitioned: IPA's
//! `raid_utils.get_block_devices_for_raid`, `calculate_raid_start` and
//! `calc_raid_partition_sectors` and the `parted` calls of
//! `_do_create_configuration`, computed here in sectors, all before
//! anything is written, so that a configuration that does not fit fails
//! with the sizes in its message.
//!
//! The layout per holder disk, as parted makes it with IPA's arguments
//! (checked against parted 3.5):
//!
//! * a GPT in UEFI mode (whatever `disk_label` says), else the node's
//!   `disk_label` (msdos by default);
//! * the first RAID partition starts at 551 MiB in UEFI mode (room for the
//!   550 MiB ESP `install_bootloader` adds at deploy time), 8 MiB on BIOS
//!   with GPT (room for the BIOS boot partition), 1 MiB on BIOS with msdos
//!   (sgdisk's first free sector on a fresh label);
//! * logical disks in configuration order, the `MAX` one last; the first
//!   partition ends at `size_gb` GiB *from the start of the disk* (IPA's
//!   parted call gives the end as an absolute position), the next ones
//!   are `size_gb` GiB long; `MAX` runs to the last MiB boundary at least
//!   0.5 MB before the disk's end (how parted places `-1` with `-a
//!   optimal`);
//! * GPT partitions are of type Linux filesystem and named "primary",
//!   msdos ones of type 0x83, as parted's `mkpart primary` makes them.

use super::validate::{raid_error, PyStr};
use crate::disk::md;
use crate::disk::md::array::raid_fmt;
use crate::disk::{BlockDevice, Label};
use crate::error::Result;
use crate::hardware::hints;
use crate::hardware::hints::py_str;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `size_gb`: a whole number of GiB, or "MAX".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Max,
    Gib(u64),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Max => f.write_str("MAX"),
            Size::Gib(g) => write!(f, "{g}"),
        }
    }
}

/// One logical disk to build; borrows the configuration and the block
/// devices it was parsed and placed from.
#[derive(Clone, Debug)]
pub struct Volume<'a> {
    pub size: Size,
    /// "1", "1+0", ... (printed as IPA prints it: [`PyStr`]).
    pub raid_level: &'a Value,
    /// md's level number.
    pub level: i32,
    pub volume_name: Option<String>,
    /// `is_root_volume` when given (IPA records it whatever its value).
    pub is_root: Option<bool>,
    pub physical_disks: Option<&'a Vec<Value>>,
    /// Holder disks ("/dev/sda"), chosen by [`select_holders`].
    pub holders: Vec<&'a str>,
}

/// Parse the logical disks IPA would build (validation has run).
pub fn parse_volumes<'a>(lds: &[&'a Value]) -> Result<Vec<Volume<'a>>> {
    let mut out = vec![];
    for ld in lds {
        let size_gb = ld.get("size_gb");
        let size = match size_gb {
            Some(Value::String(s)) if s == "MAX" => Some(Size::Max),
            Some(Value::Number(n)) => n.as_u64().map(Size::Gib),
            Some(Value::String(s)) => s.trim().parse().ok().map(Size::Gib),
            _ => None,
        };
        let size = match size {
            Some(Size::Gib(0)) => {
                return Err(raid_error(
                    "Invalid size_gb 0 for software RAID: a whole number of GiB or 'MAX'",
                ))
            }
            Some(size) => size,
            None => {
                return Err(raid_fmt(format_args!(
                    "Invalid size_gb {} for software RAID: a whole number of GiB or 'MAX'",
                    PyStr(size_gb.unwrap_or(&Value::Null))
                )))
            }
        };
        let raid_level = ld.get("raid_level").unwrap_or(&Value::Null);
        let level = match raid_level {
            Value::String(s) => md::level_number(s),
            other => md::level_number(&hints::py_repr(other)),
        };
        let Some(level) = level else {
            return Err(raid_fmt(format_args!(
                "Software RAID configuration does not support RAID level {}",
                PyStr(raid_level)
            )));
        };
        let physical_disks = match ld.get("physical_disks") {
            Some(Value::Array(a)) if !a.is_empty() => Some(a),
            _ => None,
        };
        out.push(Volume {
            size,
            raid_level,
            level,
            volume_name: ld.get("volume_name").filter(|v| !v.is_null()).map(py_str),
            is_root: ld
                .get("is_root_volume")
                .filter(|v| !v.is_null())
                .map(super::validate::truthy),
            physical_disks,
            holders: vec![],
        });
    }
    Ok(out)
}

/// The devices as IPA lists them in its errors: "[/dev/sda (N bytes), ...]".
struct Listed<'a>(&'a [BlockDevice]);

impl std::fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            write!(f, "{sep}{} ({} bytes)", d.name, d.size)?;
        }
        f.write_str("]")
    }
}

/// IPA's `get_block_devices_for_raid`: every candidate for a volume
/// without `physical_disks`; else, per hint set in order, the first
/// matching disk not already taken by this volume. Returns the holders of
/// all volumes, first-seen order.
pub fn select_holders<'a>(
    devices: &'a [BlockDevice],
    vols: &mut [Volume<'a>],
) -> Result<Vec<&'a str>> {
    let mut all: Vec<&str> = vec![];
    for v in vols.iter_mut() {
        let mut matching: Vec<&str> = vec![];
        match v.physical_disks {
            None => {
                for d in devices {
                    matching.push(&d.name);
                }
            }
            Some(hint_sets) => {
                for h in hint_sets {
                    let Some(h) = h.as_object() else {
                        continue;
                    };
                    let candidates = hints::find_devices(devices, h)
                        .map_err(|e| raid_error(e.into_details()))?;
                    let mut pick = None;
                    for c in &candidates {
                        if !matching.contains(&c.name.as_str()) {
                            pick = Some(c.name.as_str());
                            break;
                        }
                    }
                    if let Some(c) = pick {
                        matching.push(c);
                        continue;
                    }
                    let hr = hints::py_repr(&Value::Object(h.clone()));
                    if candidates.is_empty() {
                        return Err(raid_fmt(format_args!(
                            "No candidates for physical disk {hr} from the list {}",
                            Listed(devices)
                        )));
                    }
                    let mut names: Vec<&str> = vec![];
                    for c in &candidates {
                        names.push(&c.name);
                    }
                    return Err(raid_fmt(format_args!(
                        "No candidates left for physical disk {hr} from the list [{}] after \
                         picking [{}] for previous volumes",
                        names.join(", "),
                        matching.join(", ")
                    )));
                }
            }
        }
        for m in &matching {
            if !all.contains(m) {
                all.push(m);
            }
        }
        v.holders = matching;
    }
    Ok(all)
}

/// The volumes in creation order: the `MAX` one last.
pub fn reorder(mut vols: Vec<Volume<'_>>) -> Vec<Volume<'_>> {
    // a stable sort: the others keep their order, so do the MAX ones
    crate::util::sort_small_by(&mut vols, |a, b| {
        (a.size == Size::Max).cmp(&(b.size == Size::Max))
    });
    vols
}

/// A partition to create: a Linux data partition (the table's own type,
/// so the plan is written as it is).
pub type Part = crate::disk::table::NewPart;

/// One holder disk's new table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderPlan<'a> {
    pub name: &'a str,
    pub size: u64,
    pub sector: u64,
    pub label: Label,
    pub parts: Vec<Part>,
}

/// A volume's members: (holder index, partition number).
pub type Members = Vec<(usize, u32)>;

/// The last sector a partition may use.
pub fn last_usable(label: Label, size: u64, sector: u64) -> u64 {
    let sectors = size / sector;
    match label {
        // 128 entries of 128 bytes, and the backup header
        Label::Gpt => sectors - 1 - (16384u64).div_ceil(sector) - 1,
        Label::Msdos => sectors - 1,
    }
}

/// Where the first RAID partition starts, bytes (`calculate_raid_start`).
pub fn first_start(label: Label, uefi: bool) -> u64 {
    if uefi {
        551 * MIB
    } else if label == Label::Gpt {
        8 * MIB
    } else {
        MIB
    }
}

/// Lay the partitions out on `holders` (name, size in bytes, logical
/// sector size), for `vols` in creation order. Fails, naming the sizes,
/// when a partition would not fit or would be too small for its array.
pub fn partition<'a>(
    holders: &[(&'a str, u64, u64)],
    vols: &[Volume<'_>],
    label: Label,
    uefi: bool,
) -> Result<(Vec<HolderPlan<'a>>, Vec<Members>)> {
    let mut plans: Vec<HolderPlan> = vec![];
    for &(name, size, sector) in holders {
        plans.push(HolderPlan {
            name,
            size,
            sector,
            label,
            parts: vec![],
        });
    }
    // per holder: the end of the last fixed-size partition, in GiB (0:
    // none yet; a fixed size is never 0)
    let mut cursor: Vec<u64> = vec![0; plans.len()];
    let mut members: Vec<Members> = vec![];
    for (vi, v) in vols.iter().enumerate() {
        let mut mine: Members = vec![];
        for &hname in &v.holders {
            let Some(hi) = plans.iter().position(|p| p.name == hname) else {
                return Err(raid_fmt(format_args!("{hname} is not a holder disk")));
            };
            let p = &mut plans[hi];
            let s = p.sector;
            let mib = (MIB / s).max(1);
            let usable = last_usable(label, p.size, s);
            let c = cursor[hi];
            let start = if c == 0 {
                first_start(label, uefi)
            } else {
                c * GIB
            };
            let first = (start / s).div_ceil(mib) * mib;
            let last = match v.size {
                Size::Gib(g) => (((c + g) * GIB) / s).saturating_sub(1),
                // parted reads "-1" as 1 MB before the end (its default
                // unit), ±0.5 MB, and -a optimal ends on a MiB boundary
                Size::Max => (p.size.saturating_sub(500_000) / MIB * MIB / s).saturating_sub(1),
            };
            // past the usable end, no room at all, or beyond an msdos
            // table's 32-bit sectors
            let msdos = label == Label::Msdos;
            if last > usable || last < first + mib || (msdos && last >> 32 != 0) {
                return Err(raid_fmt(format_args!(
                    "The software RAID configuration does not fit on {hname} ({} bytes): \
                     logical disk {} (size_gb {}) would span bytes {} to {}, the disk's \
                     usable space ends at byte {}{}",
                    p.size,
                    vi + 1,
                    v.size,
                    first * s,
                    (last + 1) * s,
                    ((usable + 1) * s).min(if msdos { s << 32 } else { u64::MAX }),
                    if msdos { " (msdos label)" } else { "" }
                )));
            }
            let number = p.parts.len() as u32 + 1;
            p.parts.push(Part::linux(number, first, last));
            if let Size::Gib(g) = v.size {
                cursor[hi] = c + g;
            }
            mine.push((hi, number));
        }
        // the array must fit its members (md metadata, chunks)
        let mut sizes: Vec<u64> = vec![];
        let mut smallest = u64::MAX;
        for &(hi, n) in &mine {
            let p = &plans[hi];
            let sectors = p.parts[n as usize - 1].len(p.sector) / 512;
            smallest = smallest.min(sectors);
            sizes.push(sectors);
        }
        if let Err(e) = md::plan(md::Version::V1_2, v.level, &sizes) {
            return Err(raid_fmt(format_args!(
                "The software RAID configuration does not fit: logical disk {} (RAID-{}) on \
                 partitions of {} bytes: {}",
                vi + 1,
                PyStr(v.raid_level),
                if sizes.is_empty() { 0 } else { smallest * 512 },
                e.details
            )));
        }
        members.push(mine);
    }
    Ok((plans, members))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dev(name: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            kname: name.trim_start_matches("/dev/").into(),
            size: gib * GIB,
            dev_type: "disk".into(),
            ..Default::default()
        }
    }

    /// Devices that outlive the volumes placed on them.
    fn leak(d: Vec<BlockDevice>) -> &'static [BlockDevice] {
        Box::leak(d.into_boxed_slice())
    }

    fn vols(v: Value) -> Vec<Volume<'static>> {
        let v: &'static Value = Box::leak(Box::new(v));
        let refs: Vec<&Value> = v.as_array().unwrap().iter().collect();
        parse_volumes(&refs).unwrap()
    }

    fn lbas(p: &HolderPlan) -> Vec<(u64, u64)> {
        p.parts.iter().map(|p| (p.first_lba, p.last_lba)).collect()
    }

    const G: u64 = 2 * 1024 * 1024; // sectors per GiB

    /// IPA's test_create_configuration_efi: gpt, "551MiB 10GiB", then
    /// "10GiB -1", as parted lays them out.
    #[test]
    fn uefi_layout_like_parted() {
        let mut v = vols(json!([
            {"size_gb": 10, "raid_level": "1", "controller": "software"},
            {"size_gb": "MAX", "raid_level": "0", "controller": "software"}]));
        let devs = [dev("/dev/sda", 20), dev("/dev/sdb", 20)];
        let hs = select_holders(&devs, &mut v).unwrap();
        assert_eq!(hs, vec!["/dev/sda", "/dev/sdb"]);
        let holders: Vec<(&str, u64, u64)> = devs
            .iter()
            .map(|d| (d.name.as_str(), d.size, 512))
            .collect();
        let (plans, members) = partition(&holders, &reorder(v), Label::Gpt, true).unwrap();
        // parted 3.5 on a 20 GiB file: 1128448-20971519, 20971520-41940991
        assert_eq!(
            lbas(&plans[0]),
            vec![(1128448, 10 * G - 1), (10 * G, 41940991)]
        );
        assert_eq!(
            plans[0],
            HolderPlan {
                name: "/dev/sda",
                ..plans[0].clone()
            }
        );
        assert_eq!(members, vec![vec![(0, 1), (1, 1)], vec![(0, 2), (1, 2)]]);
    }

    /// BIOS: msdos from 1 MiB, or GPT from 8 MiB; no MAX: "10GiB 30GiB".
    #[test]
    fn bios_layouts() {
        let v = vols(json!([
            {"size_gb": "10", "raid_level": "1", "controller": "software"},
            {"size_gb": "20", "raid_level": "0", "controller": "software"}]));
        let mut v = reorder(v);
        select_holders(leak(vec![dev("/dev/sda", 40)]), &mut v).unwrap();
        let h = [("/dev/sda", 40 * GIB, 512)];
        let (p, _) = partition(&h, &v, Label::Msdos, false).unwrap();
        assert_eq!(lbas(&p[0]), vec![(2048, 10 * G - 1), (10 * G, 30 * G - 1)]);
        let (p, _) = partition(&h, &v, Label::Gpt, false).unwrap();
        assert_eq!(p[0].parts[0].first_lba, 16384);
        // MAX first in the config: created last (md index follows)
        let v = reorder(vols(json!([
            {"size_gb": "MAX", "raid_level": "1", "controller": "software"},
            {"size_gb": 20, "raid_level": "0", "controller": "software"}])));
        assert_eq!(v[0].size, Size::Gib(20));
        // msdos MAX ends on the last MiB boundary, as parted -a optimal
        let mut v = v;
        select_holders(leak(vec![dev("/dev/sda", 40)]), &mut v).unwrap();
        let (p, _) = partition(&h, &v, Label::Msdos, false).unwrap();
        assert_eq!(
            lbas(&p[0]),
            vec![(2048, 20 * G - 1), (20 * G, 40 * G - 2049)]
        );
        let (p, _) = partition(&h, &v, Label::Gpt, false).unwrap();
        assert_eq!(p[0].parts[1].last_lba, 40 * G - 2049);
    }

    #[test]
    fn four_k_sectors() {
        let mut v = vols(json!([
            {"size_gb": 2, "raid_level": "1", "controller": "software"}]));
        select_holders(leak(vec![dev("/dev/sda", 4)]), &mut v).unwrap();
        let h = [("/dev/sda", 4 * GIB, 4096)];
        let (p, _) = partition(&h, &v, Label::Gpt, true).unwrap();
        assert_eq!(lbas(&p[0]), vec![(551 * 256, 2 * 262144 - 1)]);
    }

    #[test]
    fn does_not_fit_names_the_sizes() {
        let mut v = vols(json!([
            {"size_gb": 10, "raid_level": "1", "controller": "software"}]));
        select_holders(leak(vec![dev("/dev/sda", 8), dev("/dev/sdb", 8)]), &mut v).unwrap();
        let h = [("/dev/sda", 8 * GIB, 512), ("/dev/sdb", 8 * GIB, 512)];
        let e = partition(&h, &v, Label::Gpt, true).unwrap_err();
        assert_eq!(
            e.details,
            "The software RAID configuration does not fit on /dev/sda (8589934592 bytes): \
             logical disk 1 (size_gb 10) would span bytes 577765376 to 10737418240, the disk's \
             usable space ends at byte 8589917696"
        );
        // MAX on a disk smaller than the room kept for the ESP
        let mut v = vols(json!([
            {"size_gb": "MAX", "raid_level": "1", "controller": "software"}]));
        select_holders(leak(vec![dev("/dev/sda", 8)]), &mut v).unwrap();
        let small = [("/dev/sda", 512 * MIB, 512)];
        assert!(partition(&small, &v, Label::Gpt, false).is_ok());
        let e = partition(&small, &v, Label::Gpt, true).unwrap_err();
        assert!(
            e.details
                .contains("logical disk 1 (size_gb MAX) would span bytes 577765376 to 535822336"),
            "{e:?}"
        );
    }

    #[test]
    fn physical_disks_pick_in_order() {
        let devs = [
            dev("/dev/sda", 10),
            dev("/dev/sdb", 20),
            dev("/dev/sdc", 20),
        ];
        let mut v = vols(json!([
            {"size_gb": 5, "raid_level": "1", "controller": "software",
             "physical_disks": [{"size": ">= 15"}, {"size": ">= 15"}]},
            {"size_gb": "MAX", "raid_level": "1", "controller": "software",
             "physical_disks": [{"name": "/dev/sda"}, {"name": "/dev/sdc"}]}]));
        let all = select_holders(&devs, &mut v).unwrap();
        assert_eq!(v[0].holders, vec!["/dev/sdb", "/dev/sdc"]);
        assert_eq!(all, vec!["/dev/sdb", "/dev/sdc", "/dev/sda"]);
        // IPA's test_create_configuration_mismatching_hints
        let mut v = vols(json!([
            {"size_gb": 5, "raid_level": "1", "controller": "software",
             "physical_disks": [{"name": "/dev/sda"}, {"name": "/dev/sda"}]}]));
        let e = select_holders(&devs, &mut v).unwrap_err();
        assert_eq!(
            e.details,
            "No candidates left for physical disk {'name': '/dev/sda'} from the list \
             [/dev/sda] after picking [/dev/sda] for previous volumes"
        );
        let mut v = vols(json!([
            {"size_gb": 5, "raid_level": "1", "controller": "software",
             "physical_disks": [{"size": ">= 100"}, {"size": ">= 100"}]}]));
        let e = select_holders(&devs, &mut v).unwrap_err();
        assert!(e
            .details
            .starts_with("No candidates for physical disk {'size': '>= 100'}"));
    }

    #[test]
    fn sizes_and_levels() {
        let v = vols(json!([
            {"size_gb": "7", "raid_level": "1+0", "volume_name": "v", "is_root_volume": false}]));
        assert_eq!(
            (v[0].size, v[0].level, v[0].is_root),
            (Size::Gib(7), 10, Some(false))
        );
        assert!(parse_volumes(&[&json!({"size_gb": "7.5", "raid_level": "1"})]).is_err());
        assert!(parse_volumes(&[&json!({"size_gb": 0, "raid_level": "1"})]).is_err());
        // an array too small for its members' metadata
        let mut v = vols(json!([{"size_gb": "MAX", "raid_level": "6", "controller": "software"}]));
        let devs: Vec<BlockDevice> = (0..4).map(|i| dev(&format!("/dev/sd{i}"), 1)).collect();
        select_holders(&devs, &mut v).unwrap();
        let h: Vec<(&str, u64, u64)> = devs
            .iter()
            .map(|d| (d.name.as_str(), 600 * MIB, 512))
            .collect();
        let (p, m) = partition(&h, &v, Label::Gpt, true).unwrap();
        assert_eq!(m[0].len(), 4);
        assert_eq!(p[0].parts[0].first_lba, 551 * 2048);
    }
}
