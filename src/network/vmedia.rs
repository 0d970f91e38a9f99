//! The virtual media Ironic attaches (protocol: Ironic's
//! `image_utils.prepare_deploy_iso`): found by label as IPA finds it,
//! read with the agent's own ISO 9660 reader (no mount, no isofs module).
//!
//! - [`find`]: IPA's `_find_vmedia_device_by_labels` + `_check_vmedia_device`:
//!   whole devices whose filesystem label is one of the labels
//!   (case-insensitive) and that are a CD/DVD (SCSI type 5, lsblk's `rom`)
//!   or a USB disk smaller than 4 GiB; never a partition or a local disk.
//! - [`copy_config`]: IPA's `copy_config_from_vmedia` (`_copy_config_from`):
//!   the files of `etc/ironic-python-agent/` and
//!   `etc/ironic-python-agent.d/` (not recursive) to the same places under
//!   `/`: Ironic's CA (`[agent]api_ca_file` becomes
//!   `etc/ironic-python-agent/ironic.crt`) and `ironic-tls.conf`, which
//!   points `cafile` at it.
//! - [`removable_params`]: IPA's `_get_vmedia_params`: `parameters.txt` of
//!   the vfat device labelled `ir-vfd-dev` (Ironic's
//!   `prepare_floppy_image`, a virtual USB stick with
//!   `driver_info/config_via_removable`, for ISOs whose command line
//!   Ironic cannot write).

use crate::error::{Context, Kind, Result};
use crate::fs::fat::Fat;
use crate::fs::iso9660::{self, Entry, Volume};
use crate::root::Root;
use std::fs::File;
use std::path::PathBuf;

/// IPA's labels for the ISO it copies configuration from (`config-2`
/// when Ironic put network data on it, else `VMEDIA_BOOT_ISO`).
pub const CONFIG_LABELS: [&str; 2] = ["config-2", "vmedia_boot_iso"];
/// The directories IPA copies (`_copy_config_from`).
pub const CONFIG_DIRS: [&str; 2] = ["etc/ironic-python-agent", "etc/ironic-python-agent.d"];
/// Where Ironic puts the network data on the ISO.
pub const NETWORK_DATA: &str = "openstack/latest/network_data.json";
/// Larger files are not read (a CA bundle is a few hundred KiB at most).
pub const MAX_FILE: u64 = 4 << 20;

const GIB: u64 = 1 << 30;

/// A virtual-media device with an ISO 9660 filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medium {
    /// Kernel name ("sr0").
    pub kname: String,
    pub size: u64,
    pub volume: Volume,
}

impl Medium {
    pub fn dev(&self) -> String {
        format!("/dev/{}", self.kname)
    }

    /// Whether the publisher is `want` (Ironic's `ir_pub_id`), compared
    /// lower-cased as ironic-python-agent-builder's resolve-configdrive
    /// compares udev's `ID_FS_PUBLISHER_ID`. `want` empty matches an ISO
    /// without a publisher.
    pub fn published_by(&self, want: &str) -> bool {
        let want = want.trim().to_ascii_lowercase();
        std::iter::once(&self.volume.publisher)
            .chain(self.volume.joliet_publisher.as_ref())
            .any(|p| p.trim().to_ascii_lowercase() == want)
    }
}

/// IPA's `_check_vmedia_device` for a whole device: its size when it is a
/// CD/DVD, or a USB disk under 4 GiB.
fn vmedia_size(root: &Root, kname: &str) -> Option<u64> {
    let base = format!("/sys/block/{kname}");
    let size = root.read_u64(format!("{base}/size"))? * 512;
    if size == 0 {
        return None; // an empty drive
    }
    if root.read_u64(format!("{base}/device/type")) == Some(5) {
        return Some(size);
    }
    let real = std::fs::canonicalize(root.path(&base)).ok()?;
    let usb = real
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with("usb"));
    (usb && size < 4 * GIB).then_some(size)
}

/// Devices labelled one of `labels` that IPA would take for virtual media,
/// in kernel-name order. Devices that cannot be read are skipped.
pub fn find(root: &Root, labels: &[&str]) -> Vec<Medium> {
    let mut out = vec![];
    for kname in root.list("/sys/block") {
        let Some(size) = vmedia_size(root, &kname) else {
            continue;
        };
        let Ok(f) = File::open(root.path(format!("/dev/{kname}"))) else {
            continue;
        };
        let Ok(volume) = iso9660::volume(&f, 0) else {
            continue;
        };
        if labels.iter().any(|l| l.eq_ignore_ascii_case(&volume.label)) {
            out.push(Medium {
                kname,
                size,
                volume,
            });
        }
    }
    out
}

/// The label of Ironic's removable parameters image.
pub const PARAMS_LABEL: &str = "ir-vfd-dev";

/// `(device, parameters.txt)` of the first virtual-media device (as
/// [`find`] checks them) holding a FAT labelled `ir-vfd-dev`: Ironic's
/// `key=value` lines, the same parameters as on an ISO's command line
/// (API URL, agent token, BOOTIF, boot_method).
pub fn removable_params(root: &Root) -> Option<(String, String)> {
    for kname in root.list("/sys/block") {
        let Some(size) = vmedia_size(root, &kname) else {
            continue;
        };
        let Ok(f) = File::open(root.path(format!("/dev/{kname}"))) else {
            continue;
        };
        let Ok(fat) = Fat::open(&f, 0, size) else {
            continue;
        };
        if !fat
            .volume_label()
            .is_some_and(|l| l.trim().eq_ignore_ascii_case(PARAMS_LABEL))
        {
            continue;
        }
        let entry = fat
            .list(None)
            .ok()?
            .into_iter()
            .find(|e| !e.is_dir && e.name.eq_ignore_ascii_case("parameters.txt"))?;
        let text = fat.read_file(&entry, 64 << 10).ok()?;
        return Some((
            format!("/dev/{kname}"),
            String::from_utf8_lossy(&text).into_owned(),
        ));
    }
    None
}

/// An opened medium: its directory, for reading files.
pub struct Iso {
    file: File,
    len: u64,
    pub entries: Vec<Entry>,
    pub dev: String,
}

impl Iso {
    pub fn open(root: &Root, m: &Medium) -> Result<Iso> {
        let dev = m.dev();
        let file =
            File::open(root.path(&dev)).ctx(Kind::DeviceNotFound, || format!("opening {dev}"))?;
        let entries = iso9660::list(&file, 0, m.size).ctx(Kind::InvalidContentError, || {
            format!("reading the ISO 9660 directory of {dev}")
        })?;
        Ok(Iso {
            file,
            len: m.size,
            entries,
            dev,
        })
    }

    /// A file's contents, `None` when it is not on the medium.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        iso9660::read_file(&self.file, 0, self.len, &self.entries, path, MAX_FILE)
            .ctx(Kind::InvalidContentError, || {
                format!("reading {path} from {}", self.dev)
            })
    }
}

/// IPA's `_copy_config_from`: every file directly in [`CONFIG_DIRS`] to
/// the same path under `root`. Returns the paths written.
pub fn copy_config(root: &Root, iso: &Iso) -> Result<Vec<String>> {
    let mut done = vec![];
    for dir in CONFIG_DIRS {
        let prefix = format!("{dir}/");
        let files: Vec<&Entry> = iso
            .entries
            .iter()
            .filter(|e| {
                e.path
                    .strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            })
            .collect();
        if files.is_empty() {
            continue;
        }
        let target: PathBuf = root.path(format!("/{dir}"));
        std::fs::create_dir_all(&target)
            .ctx(Kind::CommandExecutionError, || format!("creating /{dir}"))?;
        for e in files {
            if e.is_dir {
                crate::util::log_at!(
                    Warn,
                    "{}: {} is a directory; IPA does not copy those either",
                    iso.dev,
                    e.path
                );
                continue;
            }
            let data = iso.read(&e.path)?.unwrap_or_default();
            let to = format!("/{}", e.path);
            write_file(&root.path(&to), &data)
                .ctx(Kind::CommandExecutionError, || format!("writing {to}"))?;
            done.push(to);
        }
    }
    Ok(done)
}

fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("ironic-agent-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (PathBuf, Root) {
        let d =
            std::env::temp_dir().join(format!("ironic-agent-vmedia-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        (d.clone(), Root::new(d))
    }

    /// A minimal ISO image: PVD with a label and publisher, terminator,
    /// an empty root directory.
    fn iso(label: &str, publisher: &str) -> Vec<u8> {
        let mut d = vec![0u8; 20 * 2048];
        let pvd = 16 * 2048;
        d[pvd] = 1;
        d[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        d[pvd + 40..pvd + 72].copy_from_slice(format!("{label:<32}").as_bytes());
        d[pvd + 318..pvd + 446].copy_from_slice(format!("{publisher:<128}").as_bytes());
        // root directory record at 156: LBA 18, 2048 bytes, a directory
        d[pvd + 156] = 34;
        d[pvd + 158..pvd + 162].copy_from_slice(&18u32.to_le_bytes());
        d[pvd + 166..pvd + 170].copy_from_slice(&2048u32.to_le_bytes());
        d[pvd + 181] = 2;
        d[pvd + 188] = 1;
        d[17 * 2048] = 255;
        d[17 * 2048 + 1..17 * 2048 + 6].copy_from_slice(b"CD001");
        d
    }

    fn device(dir: &std::path::Path, kname: &str, data: &[u8], scsi_type: Option<u8>) {
        let s = dir.join("sys/block").join(kname);
        std::fs::create_dir_all(s.join("device")).unwrap();
        std::fs::write(s.join("size"), format!("{}\n", data.len() / 512)).unwrap();
        if let Some(t) = scsi_type {
            std::fs::write(s.join("device/type"), format!("{t}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        std::fs::write(dir.join("dev").join(kname), data).unwrap();
    }

    #[test]
    fn finds_cdroms_by_label_not_disks() {
        let (d, root) = fixture("find");
        device(&d, "sr0", &iso("CONFIG-2", "abc-DEF"), Some(5));
        device(&d, "sr1", &iso("something", ""), Some(5));
        // a local disk with the label: not virtual media
        device(&d, "vda", &iso("config-2", "abc-def"), Some(0));
        device(&d, "sr2", &[], Some(5)); // no medium
        let m = find(&root, &CONFIG_LABELS);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].dev(), "/dev/sr0");
        assert!(m[0].published_by("ABC-def"));
        assert!(!m[0].published_by(""));
        let iso = Iso::open(&root, &m[0]).unwrap();
        assert!(iso.entries.is_empty());
        assert_eq!(iso.read(NETWORK_DATA).unwrap(), None);
        assert!(copy_config(&root, &iso).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(d);
    }
}
