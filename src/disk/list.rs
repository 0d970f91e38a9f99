//! Block devices from /sys/block: IPA's `list_all_block_devices`
//! (`hardware.py`) without lsblk, udevadm or pyudev.
//!
//! IPA runs `lsblk -bia --json -oKNAME,MODEL,SIZE,ROTA,TYPE,...` and fills
//! the gaps from udev. lsblk itself reads sysfs, so this module reads the
//! same attributes lsblk and udev's rules read (util-linux
//! `misc-utils/lsblk*.c`, systemd `rules.d/60-persistent-storage.rules`,
//! `scsi_id`) and applies IPA's filters on top:
//!
//! * keep lsblk TYPE `disk`, any `raid*` (md arrays) and `mpath`;
//! * drop `ram*`, `zram*`, floppies (`fd*`), zero-size devices, hidden
//!   devices (NVMe multipath paths) and the paths of a multipath device
//!   (the `dm-*` multipath device is listed instead);
//! * `rom` (SCSI type 5), `loop`, `lvm`, `crypt` and plain `dm` are not
//!   disks. Loop devices can be asked for with [`ListOpts::loop_devices`]
//!   (tests and demos back "disks" with loop devices).
//!
//! Partitions (with `include_partitions`) follow the disks, as IPA appends
//! `list_all_block_devices(block_type='part', ignore_raid=True)`.

use crate::error::Result;
use crate::root::Root;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// One block device as IPA serialises it. Internal fields the agent needs
/// for erase and deploy are skipped in JSON.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct BlockDevice {
    /// Always `/dev/<kernel name>`.
    pub name: String,
    pub model: Option<String>,
    pub size: u64,
    pub rotational: bool,
    pub wwn: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
    pub hctl: Option<String>,
    pub by_path: Option<String>,
    pub logical_sectors: Option<u64>,
    pub physical_sectors: Option<u64>,
    pub tran: Option<String>,
    /// Kernel name ("nvme0n1", "sda", "sda1").
    #[serde(skip)]
    pub kname: String,
    /// "disk", "part", "raid1", "mpath", "rom", ... (lsblk's TYPE).
    #[serde(skip)]
    pub dev_type: String,
    /// /sys/block/<d>/ro.
    #[serde(skip)]
    pub read_only: bool,
    /// /sys/block/<d>/removable.
    #[serde(skip)]
    pub removable: bool,
    /// Every serial the device answers to (sysfs, udev-style IDs); hints
    /// match any of them, as IPA does with lsblk + udev.
    #[serde(skip)]
    pub all_serials: Vec<String>,
    /// Every WWN the device answers to.
    #[serde(skip)]
    pub all_wwns: Vec<String>,
}

/// What to list besides disks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// Append the disks' partitions (lsblk TYPE `part`).
    pub partitions: bool,
    /// Treat non-empty loop devices as disks (never on a real node: IPA
    /// does not list them; erase and deploy tests back disks with them).
    pub loop_devices: bool,
}

/// Disks (and with `include_partitions` their partitions), IPA's
/// `list_all_block_devices` without lsblk/udevadm.
pub fn list_block_devices(root: &Root, include_partitions: bool) -> Result<Vec<BlockDevice>> {
    list_block_devices_with(
        root,
        ListOpts {
            partitions: include_partitions,
            ..ListOpts::default()
        },
    )
}

/// [`list_block_devices`] with explicit options.
pub fn list_block_devices_with(root: &Root, opts: ListOpts) -> Result<Vec<BlockDevice>> {
    let mut knames = root.list("/sys/block");
    crate::util::sort_small_by(&mut knames, |a, b| natural_cmp(a, b));
    let by_path = by_path_map(root);
    let mpath_members = multipath_members(root, &knames);

    let mut disks = vec![];
    for k in &knames {
        if let Some(d) = read_disk(root, k, &by_path, &mpath_members, opts) {
            disks.push(d);
        }
    }
    if opts.partitions {
        let mut parts = vec![];
        for d in &disks {
            // IPA lists md partitions as TYPE "md" and skips them with
            // ignore_raid=True.
            if d.dev_type.contains("raid") {
                continue;
            }
            parts.extend(read_partitions(root, d, &by_path));
        }
        disks.extend(parts);
    }
    Ok(disks)
}

/// lsblk's TYPE for a whole device (`lsblk.c: get_type`).
fn device_type(root: &Root, kname: &str) -> String {
    let base = format!("/sys/block/{kname}");
    if kname.starts_with("dm-") {
        // The device-mapper UUID prefix names the target user: "mpath-",
        // "LVM-", "CRYPT-", "part1-mpath-..." (kpartx).
        return match root.read_nonempty(format!("{base}/dm/uuid")) {
            Some(uuid) => {
                let prefix = uuid.split('-').next().unwrap_or("").to_ascii_lowercase();
                if prefix.starts_with("part") {
                    "part".into()
                } else if prefix.is_empty() {
                    "dm".into()
                } else {
                    prefix
                }
            }
            None => "dm".into(),
        };
    }
    if kname.starts_with("loop") {
        return "loop".into();
    }
    if kname.starts_with("md") {
        return root
            .read_nonempty(format!("{base}/md/level"))
            .unwrap_or_else(|| "md".into());
    }
    // SCSI peripheral device type (include/scsi/scsi_proto.h TYPE_*).
    match root.read_u64(format!("{base}/device/type")) {
        Some(0) | None => "disk",
        Some(1) => "tape",
        Some(2) => "printer",
        Some(3) => "processor",
        Some(4) => "worm",
        Some(5) => "rom",
        Some(6) => "scanner",
        Some(7) => "mo-disk",
        Some(8) => "changer",
        Some(9) => "comm",
        Some(0xc) => "raid",
        Some(0xd) => "enclosure",
        Some(0xe) => "rbc",
        Some(0x11) => "osd",
        Some(_) => "no-lun",
    }
    .into()
}

/// Paths of an active multipath map: the slaves of every `dm-*` whose
/// UUID starts with "mpath-" (what `multipath -c` answers for IPA).
fn multipath_members(root: &Root, knames: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for k in knames.iter().filter(|k| k.starts_with("dm-")) {
        if device_type(root, k) == "mpath" {
            out.extend(root.list(format!("/sys/block/{k}/slaves")));
        }
    }
    out
}

fn read_disk(
    root: &Root,
    kname: &str,
    by_path: &BTreeMap<String, String>,
    mpath_members: &BTreeSet<String>,
    opts: ListOpts,
) -> Option<BlockDevice> {
    let base = format!("/sys/block/{kname}");
    // IPA: "RAM disks and zRAM devices appear in the output of lsblk as
    // disks, but we cannot do anything useful with them"; floppies too.
    if kname.starts_with("ram") || kname.starts_with("zram") || kname.starts_with("fd") {
        return None;
    }
    if mpath_members.contains(kname) {
        crate::util::log_at!(
            Debug,
            "{kname} is a path of a multipath device, listing the dm device instead"
        );
        return None;
    }
    if root.read(format!("{base}/hidden")).as_deref() == Some("1") {
        return None;
    }
    let dev_type = device_type(root, kname);
    let wanted = dev_type == "disk"
        || dev_type.contains("raid")
        || dev_type == "mpath"
        || (opts.loop_devices && dev_type == "loop");
    if !wanted {
        return None;
    }
    let size = root.read_u64(format!("{base}/size")).unwrap_or(0) * 512;
    if size == 0 {
        // "some hardware represents virtual floppy devices as normal block
        // devices with size 0"
        return None;
    }
    let scsi = is_scsi(root, kname);
    // A multipath map has no `device/` link; lsblk shows no model either.
    let model = root.read_nonempty(format!("{base}/device/model"));
    let ids = identifiers(root, kname, &dev_type, scsi, model.as_deref());
    let hctl = root
        .list(format!("{base}/device/scsi_device"))
        .into_iter()
        .next();
    let name = format!("/dev/{kname}");
    Some(BlockDevice {
        by_path: by_path.get(&name).cloned(),
        model,
        size,
        rotational: root.read(format!("{base}/queue/rotational")).as_deref() == Some("1"),
        wwn: ids.wwn,
        serial: ids.serial,
        // IPA's `_get_device_info(dev, 'block', 'vendor')`: the raw
        // attribute, stripped (may be ""), or None when absent.
        vendor: root.read(format!("/sys/class/block/{kname}/device/vendor")),
        wwn_with_extension: ids.wwn_with_extension,
        wwn_vendor_extension: ids.wwn_vendor_extension,
        tran: transport(root, kname),
        hctl,
        logical_sectors: root.read_u64(format!("{base}/queue/logical_block_size")),
        physical_sectors: root.read_u64(format!("{base}/queue/physical_block_size")),
        name,
        kname: kname.to_string(),
        dev_type,
        read_only: root.read(format!("{base}/ro")).as_deref() == Some("1"),
        removable: root.read(format!("{base}/removable")).as_deref() == Some("1"),
        all_serials: ids.all_serials,
        all_wwns: ids.all_wwns,
    })
}

/// True when the block device sits on a SCSI device (`device` points at a
/// "H:C:T:L" directory).
fn is_scsi(root: &Root, kname: &str) -> bool {
    root.link_name(format!("/sys/block/{kname}/device"))
        .map(|n| parse_hctl(&n).is_some())
        .unwrap_or(false)
}

fn parse_hctl(s: &str) -> Option<[u32; 4]> {
    let mut out = [0u32; 4];
    let mut it = s.split(':');
    for slot in &mut out {
        *slot = it.next()?.parse().ok()?;
    }
    it.next().is_none().then_some(out)
}

#[derive(Default, Debug, PartialEq)]
struct Ids {
    serial: Option<String>,
    wwn: Option<String>,
    wwn_with_extension: Option<String>,
    wwn_vendor_extension: Option<String>,
    all_serials: Vec<String>,
    all_wwns: Vec<String>,
}

/// Serial numbers and WWNs as lsblk + udev report them.
///
/// * serial: udev's `ID_SCSI_SERIAL`/`ID_SERIAL_SHORT` — the SCSI unit
///   serial number (VPD page 0x80) for SCSI and SATA disks, the `serial`
///   attribute for NVMe, virtio-blk and MMC.
/// * WWN: for NVMe udev copies the `wwid` attribute verbatim into
///   `ID_WWN`; for SCSI `scsi_id` turns an NAA designator ("naa.<hex>") into
///   `0x<first 16 hex>` plus a vendor extension (the rest). lsblk's WWN
///   column prefers `ID_WWN_WITH_EXTENSION`.
/// * all_serials / all_wwns: every value root-device hints may match (IPA's
///   `all_serial_and_wwn=True`: lsblk's, `ID_SERIAL_SHORT` and the long
///   `ID_SERIAL`, which udev builds as "<model>_<serial>" for ATA, NVMe and
///   as "3<naa>" for SCSI disks with an NAA identifier).
fn identifiers(root: &Root, kname: &str, dev_type: &str, scsi: bool, model: Option<&str>) -> Ids {
    let base = format!("/sys/block/{kname}");
    let mut ids = Ids::default();
    let wwid = root
        .read_nonempty(format!("{base}/wwid"))
        .or_else(|| root.read_nonempty(format!("{base}/device/wwid")));
    let serial = if scsi {
        std::fs::read(root.path(format!("{base}/device/vpd_pg80")))
            .ok()
            .and_then(|b| parse_vpd_pg80(&b))
            .or_else(|| root.read_nonempty(format!("{base}/device/serial")))
    } else {
        root.read_nonempty(format!("{base}/device/serial"))
            .or_else(|| root.read_nonempty(format!("{base}/serial")))
    };
    if dev_type == "mpath" {
        // DM_UUID "mpath-<wwid>": multipathd names maps by the paths' WWID
        // ("3" + NAA for SCSI), which is what udev exports as DM_SERIAL.
        if let Some(uuid) = root.read_nonempty(format!("{base}/dm/uuid")) {
            if let Some(id) = uuid.strip_prefix("mpath-") {
                ids.serial = Some(id.to_string());
                ids.all_serials.push(id.to_string());
                if let Some(naa) = id.strip_prefix('3') {
                    let w = wwn_from_hex(naa);
                    ids.wwn = w.1.clone();
                    ids.wwn_with_extension = w.1;
                    ids.wwn_vendor_extension = w.2;
                    ids.all_wwns.extend(ids.wwn.clone());
                }
            }
        }
        return ids;
    }
    ids.serial = serial.clone();
    ids.all_serials.extend(serial.clone());
    if let Some(w) = &wwid {
        if kname.starts_with("nvme") {
            ids.wwn = Some(w.clone());
            ids.all_wwns.push(w.clone());
        } else if let Some(hex) = w.strip_prefix("naa.") {
            let (short, with_ext, vendor_ext) = wwn_from_hex(hex);
            ids.wwn = with_ext.clone().or(short.clone());
            ids.wwn_with_extension = with_ext;
            ids.wwn_vendor_extension = vendor_ext;
            ids.all_wwns.extend(ids.wwn.clone());
            if short != ids.wwn {
                ids.all_wwns.extend(short);
            }
            // scsi_id's long ID_SERIAL for an NAA identifier
            if !kname.starts_with("vd") {
                let long = format!("3{}", hex.to_ascii_lowercase());
                if !ids.all_serials.contains(&long) {
                    ids.all_serials.push(long);
                }
            }
        }
        // eui./t10./nvme. designators on SCSI have no udev ID_WWN, but
        // hints may still name them.
        if !ids.all_wwns.contains(w) {
            ids.all_wwns.push(w.clone());
        }
    }
    if let (Some(s), Some(m)) = (&serial, model) {
        if !kname.starts_with("vd") {
            let long = format!("{}_{}", m.trim(), s).replace(' ', "_");
            if !ids.all_serials.contains(&long) {
                ids.all_serials.push(long);
            }
        }
    }
    ids
}

/// An NAA identifier in hex as udev's `ID_WWN`, `ID_WWN_WITH_EXTENSION`
/// and `ID_WWN_VENDOR_EXTENSION` (`scsi_id`: the first 16 hex digits are
/// the WWN, anything beyond is the NAA 6 vendor extension).
fn wwn_from_hex(hex: &str) -> (Option<String>, Option<String>, Option<String>) {
    let hex = hex.trim().to_ascii_lowercase();
    if hex.len() < 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (None, None, None);
    }
    let short = format!("0x{}", &hex[..16]);
    if hex.len() > 16 {
        (
            Some(short),
            Some(format!("0x{hex}")),
            Some(format!("0x{}", &hex[16..])),
        )
    } else {
        (Some(short.clone()), Some(short), None)
    }
}

/// The Unit Serial Number VPD page (SPC-4 7.8.18): 4-byte header whose
/// bytes 2..4 are the page length, then the ASCII serial, often padded.
pub(crate) fn parse_vpd_pg80(b: &[u8]) -> Option<String> {
    if b.len() < 4 || b[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let data = b.get(4..4 + len.min(b.len() - 4))?;
    let s: String = data
        .iter()
        .filter(|c| c.is_ascii_graphic() || **c == b' ')
        .map(|&c| c as char)
        .collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// lsblk's TRAN column (`lsblk.c: get_transport`), from the SCSI host's
/// transport class, else from the kernel name. Like util-linux 2.38 (the
/// lsblk IPA's sample inventory came from), virtio-blk has no transport.
fn transport(root: &Root, kname: &str) -> Option<String> {
    let hctl_dir = root.link_name(format!("/sys/block/{kname}/device"));
    if let Some(h) = hctl_dir.as_deref().and_then(parse_hctl) {
        let host = h[0];
        let host_is = |t: &str| {
            root.path(format!("/sys/class/{t}_host/host{host}"))
                .is_dir()
        };
        let scsi_dev = format!("/sys/block/{kname}/device");
        let t = if host_is("spi") {
            "spi"
        } else if host_is("fc") {
            let name = root.read(format!("/sys/class/fc_host/host{host}/symbolic_name"))?;
            if name.contains(" over ") {
                "fcoe"
            } else {
                "fc"
            }
        } else if host_is("sas") || root.exists(format!("{scsi_dev}/sas_device")) {
            "sas"
        } else if root.exists(format!("{scsi_dev}/ieee1394_id")) {
            "sbp"
        } else if host_is("iscsi") {
            "iscsi"
        } else if device_path_contains(root, &scsi_dev, "usb") {
            "usb"
        } else if host_is("scsi") {
            let proc_name = root.read(format!("/sys/class/scsi_host/host{host}/proc_name"))?;
            if proc_name.starts_with("ahci") || proc_name.starts_with("sata") {
                "sata"
            } else if proc_name.contains("ata") {
                "ata"
            } else {
                return None;
            }
        } else {
            return None;
        };
        return Some(t.into());
    }
    if kname.starts_with("nvme") {
        Some("nvme".into())
    } else if kname.starts_with("mmcblk") {
        Some("mmc".into())
    } else {
        None
    }
}

/// Whether the real (symlink-resolved) sysfs path of a device contains
/// `pat`, judged on the machine path, not the fixture root's own path.
fn device_path_contains(root: &Root, abs: &str, pat: &str) -> bool {
    match std::fs::canonicalize(root.path(abs)) {
        Ok(p) => root.unmap(&p).to_string_lossy().contains(pat),
        Err(_) => false,
    }
}

fn read_partitions(
    root: &Root,
    disk: &BlockDevice,
    by_path: &BTreeMap<String, String>,
) -> Vec<BlockDevice> {
    let mut names: Vec<String> = partition_names(root, &disk.kname);
    crate::util::sort_small_by(&mut names, |a, b| natural_cmp(a, b));
    let mut out = vec![];
    for p in names {
        let base = format!("/sys/block/{}/{p}", disk.kname);
        let size = root.read_u64(format!("{base}/size")).unwrap_or(0) * 512;
        if size == 0 {
            continue;
        }
        let name = format!("/dev/{p}");
        // Partitions have no `device/` link of their own; udev copies the
        // disk's ID_MODEL/ID_SERIAL/ID_WWN* to them, so lsblk (and IPA)
        // report the disk's values, while vendor/hctl stay unset.
        out.push(BlockDevice {
            by_path: by_path.get(&name).cloned(),
            model: disk.model.clone(),
            size,
            rotational: disk.rotational,
            wwn: disk.wwn.clone(),
            serial: disk.serial.clone(),
            vendor: None,
            wwn_with_extension: disk.wwn_with_extension.clone(),
            wwn_vendor_extension: disk.wwn_vendor_extension.clone(),
            hctl: None,
            logical_sectors: disk.logical_sectors,
            physical_sectors: disk.physical_sectors,
            tran: None,
            name,
            kname: p.clone(),
            dev_type: "part".into(),
            read_only: root.read(format!("{base}/ro")).as_deref() == Some("1") || disk.read_only,
            removable: disk.removable,
            all_serials: disk.all_serials.clone(),
            all_wwns: disk.all_wwns.clone(),
        });
    }
    out
}

/// Kernel names of the registered partitions of a disk: the entries of
/// /sys/block/<disk> that have a `partition` attribute.
pub fn partition_names(root: &Root, disk: &str) -> Vec<String> {
    root.list(format!("/sys/block/{disk}"))
        .into_iter()
        .filter(|e| root.exists(format!("/sys/block/{disk}/{e}/partition")))
        .collect()
}

/// /dev/disk/by-path: device path → link path (IPA's `by_path_mapping`;
/// links are resolved lexically, as `os.path.abspath` does, so fixture
/// roots need no real device nodes behind them).
fn by_path_map(root: &Root) -> BTreeMap<String, String> {
    let dir = "/dev/disk/by-path";
    let mut map = BTreeMap::new();
    for link in root.list(dir) {
        let abs = format!("{dir}/{link}");
        if let Ok(target) = root.read_link(&abs) {
            let dev = normalize(&Path::new(dir).join(target));
            map.insert(dev.to_string_lossy().into_owned(), abs);
        }
    }
    map
}

/// Lexical path normalisation (`os.path.abspath` without the cwd).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Kernel-name order as people read it: digit runs compare numerically
/// (nvme2n1 before nvme10n1) and disk letters by length first (sdz before
/// sdaa), the order the kernel hands the names out in.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (trim_zeros(&x[..nx]), trim_zeros(&y[..ny]));
                let o = dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(_), Some(_)) => {
                let nx = x.iter().take_while(|c| !c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| !c.is_ascii_digit()).count();
                let (rx, ry) = (&x[..nx], &y[..ny]);
                // Disk letters ("sdz" < "sdaa"): shorter first among runs
                // of the same family; otherwise plain byte order.
                let o = if rx.len() >= 2 && ry.len() >= 2 && rx[..2] == ry[..2] {
                    nx.cmp(&ny).then_with(|| rx.cmp(ry))
                } else {
                    rx.cmp(ry)
                };
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec![
            "sdaa", "nvme10n1", "sdb", "nvme2n1", "sda", "vda", "md0", "dm-10", "dm-2",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec!["dm-2", "dm-10", "md0", "nvme2n1", "nvme10n1", "sda", "sdb", "sdaa", "vda"]
        );
    }

    #[test]
    fn wwn_like_udev() {
        assert_eq!(
            wwn_from_hex("5002538e4055b5a2"),
            (
                Some("0x5002538e4055b5a2".into()),
                Some("0x5002538e4055b5a2".into()),
                None
            )
        );
        assert_eq!(
            wwn_from_hex("600508B1001C4D5E6F7A8B9C0D1E2F30"),
            (
                Some("0x600508b1001c4d5e".into()),
                Some("0x600508b1001c4d5e6f7a8b9c0d1e2f30".into()),
                Some("0x6f7a8b9c0d1e2f30".into())
            )
        );
        assert_eq!(wwn_from_hex("xyz"), (None, None, None));
        assert_eq!(wwn_from_hex("5002538e4055b5"), (None, None, None));
    }

    #[test]
    fn vpd_page_80() {
        let mut b = vec![0u8, 0x80, 0, 12];
        b.extend_from_slice(b"  S45NNE0M12 ");
        assert_eq!(parse_vpd_pg80(&b).as_deref(), Some("S45NNE0M12"));
        // length beyond the buffer is clipped, not a panic
        assert_eq!(
            parse_vpd_pg80(&[0, 0x80, 0xff, 0xff, b'A']).as_deref(),
            Some("A")
        );
        assert_eq!(parse_vpd_pg80(&[0, 0x83, 0, 1, b'A']), None);
        assert_eq!(parse_vpd_pg80(&[0, 0x80, 0, 2, b' ', 0]), None);
        assert_eq!(parse_vpd_pg80(&[]), None);
    }

    #[test]
    fn hctl() {
        assert_eq!(parse_hctl("0:0:1:0"), Some([0, 0, 1, 0]));
        assert_eq!(parse_hctl("nvme0"), None);
        assert_eq!(parse_hctl("1:2:3"), None);
        assert_eq!(parse_hctl("1:2:3:4:5"), None);
    }

    #[test]
    fn by_path_normalises() {
        assert_eq!(
            normalize(Path::new("/dev/disk/by-path/../../sda")),
            PathBuf::from("/dev/sda")
        );
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::disk::usage::check_not_in_use;

    fn fixture(name: &str) -> Root {
        Root::fixture(name)
    }

    #[test]
    fn vm_virtio_disks() {
        let root = fixture("vm-virtio");
        let d = list_block_devices(&root, true).unwrap();
        assert_eq!(d.len(), 1, "{d:#?}");
        let vda = &d[0];
        assert_eq!(vda.name, "/dev/vda");
        assert_eq!(vda.kname, "vda");
        assert_eq!(vda.dev_type, "disk");
        assert_eq!(vda.size, 274877906944);
        assert_eq!(vda.model, None);
        assert_eq!(vda.vendor.as_deref(), Some("0x1af4"));
        assert_eq!(vda.serial.as_deref(), Some("overlayblk"));
        assert!(vda.rotational);
        assert_eq!(
            (vda.logical_sectors, vda.physical_sectors),
            (Some(512), Some(4096))
        );
        assert_eq!(
            (vda.tran.as_deref(), vda.hctl.as_deref(), vda.wwn.as_deref()),
            (None, None, None)
        );
        // loop devices of size 0 stay out even when asked for
        let with_loops = list_block_devices_with(
            &root,
            ListOpts {
                partitions: false,
                loop_devices: true,
            },
        )
        .unwrap();
        assert_eq!(with_loops.len(), 1);
        // the captured machine runs from /dev/vda
        let e = check_not_in_use(&root, vda).unwrap_err();
        assert_eq!(e.details, "/dev/vda is in use: /dev/vda is mounted on /");
    }

    fn names(d: &[BlockDevice]) -> Vec<&str> {
        d.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn server_disks() {
        let root = fixture("server");
        let d = list_block_devices(&root, false).unwrap();
        assert_eq!(names(&d), vec!["/dev/nvme0n1", "/dev/sda", "/dev/sdb"]);
        let (nvme, sda, sdb) = (&d[0], &d[1], &d[2]);
        assert_eq!(nvme.model.as_deref(), Some("Dell Ent NVMe CM6 RI 1.92TB"));
        assert_eq!(nvme.serial.as_deref(), Some("Z0N0A02ETZ1A"));
        assert_eq!(
            nvme.wwn.as_deref(),
            Some("eui.36344630528003960025384500000001")
        );
        assert_eq!(
            (nvme.tran.as_deref(), nvme.hctl.as_deref()),
            (Some("nvme"), None)
        );
        assert_eq!(
            nvme.all_serials,
            vec!["Z0N0A02ETZ1A", "Dell_Ent_NVMe_CM6_RI_1.92TB_Z0N0A02ETZ1A"]
        );
        assert_eq!(sda.vendor.as_deref(), Some("ATA"));
        assert_eq!(sda.serial.as_deref(), Some("S45NNE0M123456"));
        assert_eq!(sda.wwn.as_deref(), Some("0x5002538e4055b5a2"));
        assert_eq!(
            sda.wwn_with_extension.as_deref(),
            Some("0x5002538e4055b5a2")
        );
        assert_eq!(sda.wwn_vendor_extension, None);
        assert_eq!(sda.hctl.as_deref(), Some("0:0:0:0"));
        assert_eq!(sda.tran.as_deref(), Some("sata"));
        assert_eq!(
            sda.by_path.as_deref(),
            Some("/dev/disk/by-path/pci-0000:00:17.0-ata-1")
        );
        assert!(!sda.rotational && sdb.rotational);
        assert!(sda.all_serials.contains(&"35002538e4055b5a2".to_string()));
        assert!(sda
            .all_serials
            .contains(&"SAMSUNG_MZ7LH480_S45NNE0M123456".to_string()));
        // partitions follow the disks, with the disk's identifiers
        let all = list_block_devices(&root, true).unwrap();
        assert_eq!(
            names(&all),
            vec![
                "/dev/nvme0n1",
                "/dev/sda",
                "/dev/sdb",
                "/dev/sda1",
                "/dev/sda2"
            ]
        );
        let sda1 = &all[3];
        assert_eq!((sda1.dev_type.as_str(), sda1.size), ("part", 1 << 30));
        assert_eq!(sda1.serial, sda.serial);
        assert_eq!(
            sda1.by_path.as_deref(),
            Some("/dev/disk/by-path/pci-0000:00:17.0-ata-1-part1")
        );
        for dev in &all {
            check_not_in_use(&root, dev).unwrap();
        }
    }

    #[test]
    fn odd_disks() {
        let root = fixture("odd");
        let d = list_block_devices(&root, false).unwrap();
        // sr0 (rom), fd0, ram0, zram0, loop0, sdf (empty card reader),
        // dm-1 (LVM) and the multipath paths sdc/sdd are not disks
        assert_eq!(
            names(&d),
            vec![
                "/dev/dm-0",
                "/dev/nvme0n1",
                "/dev/sda",
                "/dev/sdb",
                "/dev/sde"
            ]
        );
        let dm0 = &d[0];
        assert_eq!(dm0.dev_type, "mpath");
        assert_eq!(
            dm0.wwn.as_deref(),
            Some("0x600c0ff0001e2a3b4c5d6e7f01000000")
        );
        let nvme = &d[1];
        assert_eq!(
            (nvme.serial.as_deref(), nvme.model.as_deref()),
            (None, None)
        );
        assert_eq!((nvme.logical_sectors, nvme.physical_sectors), (None, None));
        assert!(nvme.all_serials.is_empty() && nvme.all_wwns.is_empty());
        let sda = &d[2];
        assert_eq!((sda.model.as_deref(), sda.serial.as_deref()), (None, None));
        assert_eq!(sda.tran.as_deref(), Some("ata"));
        let sdb = &d[3];
        assert_eq!(
            (sdb.logical_sectors, sdb.physical_sectors),
            (Some(4096), Some(4096))
        );
        assert_eq!(sdb.tran.as_deref(), Some("sas"));
        assert_eq!(
            sdb.wwn_vendor_extension.as_deref(),
            Some("0x6f7a8b9c0d1e2f30")
        );
        let sde = &d[4];
        assert!(sde.removable);
        assert_eq!(sde.tran.as_deref(), Some("usb"));
        // loop devices on request
        let with_loop = list_block_devices_with(
            &root,
            ListOpts {
                partitions: true,
                loop_devices: true,
            },
        )
        .unwrap();
        assert!(with_loop
            .iter()
            .any(|d| d.name == "/dev/loop0" && d.dev_type == "loop"));
        // partitions: only of listed disks; sdb1 on a 4Kn disk keeps
        // 512-byte sysfs units
        let parts: Vec<&BlockDevice> = with_loop.iter().filter(|d| d.dev_type == "part").collect();
        assert_eq!(
            parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["/dev/sda1", "/dev/sda2", "/dev/sdb1"]
        );
        assert_eq!(parts[2].size, 100 << 30);
        // usage
        let err = |n: &str| {
            let dev = with_loop.iter().find(|d| d.name == n).unwrap();
            check_not_in_use(&root, dev).unwrap_err().into_details()
        };
        assert_eq!(
            err("/dev/sda"),
            "/dev/sda is in use: /dev/sda1 is mounted on /boot"
        );
        assert_eq!(
            err("/dev/sda2"),
            "/dev/sda2 is in use: /dev/sda2 is in use as swap"
        );
        assert_eq!(
            err("/dev/sdb"),
            "/dev/sdb is in use: /dev/sdb1 is held by dm-1"
        );
        for free in ["/dev/sde", "/dev/nvme0n1", "/dev/dm-0", "/dev/loop0"] {
            let dev = with_loop.iter().find(|d| d.name == free).unwrap();
            check_not_in_use(&root, dev).unwrap();
        }
        // a multipath path is held by its map
        let sdc = BlockDevice {
            name: "/dev/sdc".into(),
            kname: "sdc".into(),
            ..Default::default()
        };
        assert_eq!(
            check_not_in_use(&root, &sdc).unwrap_err().details,
            "/dev/sdc is in use: /dev/sdc is held by dm-0"
        );
    }
}
