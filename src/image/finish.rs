//! The disk after a whole-disk image is on it: the backup GPT moved to the
//! end (IPA's `fix_gpt_partition`), the kernel told to re-read (IPA's
//! `partprobe`), the "at least one partition" check (IPA's
//! `_validate_partitioning`), and `get_partition_uuids`' answer.

use crate::disk::device::{direct_off, direct_restore, geometry, reread_partitions};
use crate::disk::table::{fix_gpt, read_table, Found};
use crate::disk::{mbr, Geometry, Io};
use crate::error::{AgentError, Kind, Result};
use crate::root::Root;
use serde_json::{json, Map, Value};
use std::fs::File;
use std::path::Path;

fn deploy_error(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::DeploymentError, details)
}

/// After a whole-disk image is on `dev_path` (open as `file`): move the
/// backup GPT to the real end of a bigger disk (`sgdisk -e`), re-read the
/// partition table, and fail as IPA's `_validate_partitioning` does when
/// the image carries no partition.
pub fn after_whole_disk_write(root: &Root, dev_path: &Path, file: &mut File) -> Result<()> {
    let was = direct_off(dev_path, file);
    let r = after_whole_disk_write_inner(root, dev_path, file);
    direct_restore(dev_path, file, was);
    r
}

fn after_whole_disk_write_inner(root: &Root, dev_path: &Path, file: &mut File) -> Result<()> {
    let geom = geometry(root, dev_path, file)?;
    fix_gpt(dev_path, file, geom)?;
    file.sync_all().map_err(|e| {
        AgentError::io(
            Kind::DeploymentError,
            format!("syncing {}", dev_path.display()),
            e,
        )
    })?;
    reread_partitions(dev_path, file)?;
    validate_partitioning(dev_path, &*file, geom)
}

/// IPA's `_validate_partitioning`, from the bytes.
pub fn validate_partitioning(dev_path: &Path, io: &dyn Io, geom: Geometry) -> Result<()> {
    match read_table(io, geom) {
        Found::Table(t) if !t.partitions.is_empty() => Ok(()),
        Found::Table(_) => Err(deploy_error(format!(
            "No partitions found on the device {} after writing the image.",
            dev_path.display()
        ))),
        Found::Nothing => Err(deploy_error(format!(
            "Unable to find a valid partition table on the disk after writing the image. The \
             image may be corrupted or it uses a different sector size than the device. Error: \
             {}: unrecognised disk label",
            dev_path.display()
        ))),
        Found::Broken(why) => Err(deploy_error(format!(
            "Unable to find a valid partition table on the disk after writing the image. The \
             image may be corrupted or it uses a different sector size than the device. Error: \
             {}: {why}",
            dev_path.display()
        ))),
    }
}

/// The `get_partition_uuids` answer for a whole-disk image: `{"root uuid":
/// "0x%08x"}`, the 4 bytes at 440 (IPA's `get_disk_identifier`; GPT
/// images usually give `0x00000000`).
pub fn whole_disk_uuids(io: &dyn Io) -> Result<Map<String, Value>> {
    let lba0 =
        mbr::read(io).map_err(|e| AgentError::io(Kind::DeploymentError, "reading LBA 0", e))?;
    let mut m = Map::new();
    m.insert(
        "root uuid".into(),
        json!(format!("0x{:08x}", mbr::disk_signature(&lba0))),
    );
    Ok(m)
}

/// `standby.get_partition_uuids`' answer after an image write. For a
/// whole-disk image (`layout` None) the disk identifier; for a partition
/// image the partition paths and the root and ESP filesystem UUIDs, read
/// from their superblocks (IPA's `work_on_disk`).
pub fn partition_uuids(
    root: &Root,
    dev_path: &Path,
    file: &File,
    layout: Option<&super::partition::Layout>,
) -> Result<Map<String, Value>> {
    let Some(layout) = layout else {
        let was = direct_off(dev_path, file);
        let r = whole_disk_uuids(&file);
        direct_restore(dev_path, file, was);
        return r;
    };
    let _ = geometry(root, dev_path, file)?;
    let was = direct_off(dev_path, file);
    let r = super::partition::uuids(file, layout);
    direct_restore(dev_path, file, was);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::table::tests::gpt_disk;
    use crate::disk::MemDisk;

    #[test]
    fn validate_counts_partitions() {
        let geom = Geometry {
            sector: 512,
            size: 8 << 20,
        };
        let p = Path::new("/dev/sdx");
        let d = gpt_disk(512, geom.sectors(), 2);
        validate_partitioning(p, &d, geom).unwrap();
        let empty = gpt_disk(512, geom.sectors(), 0);
        let e = validate_partitioning(p, &empty, geom).unwrap_err();
        assert_eq!(
            e.details,
            "No partitions found on the device /dev/sdx after writing the image."
        );
        assert_eq!(e.type_name(), "DeploymentError");
        let nothing = MemDisk::new(1 << 20);
        let e = validate_partitioning(p, &nothing, geom).unwrap_err();
        assert!(
            e.details.contains("unrecognised disk label"),
            "{}",
            e.details
        );
    }

    #[test]
    fn whole_disk_root_uuid_is_mbr_signature() {
        let mut d = MemDisk::new(4096);
        d.0[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        assert_eq!(whole_disk_uuids(&d).unwrap()["root uuid"], "0xdeadbeef");
    }
}
