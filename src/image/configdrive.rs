//! The configdrive of a whole-disk image (IPA's
//! `partition_utils.create_config_drive_partition` and `get_configdrive`):
//! an http(s) URL or base64 of a gzipped ISO 9660 image (raw bytes accepted
//! when a downloaded body is not base64), at most 64 MiB uncompressed,
//! written into the partition whose filesystem label is `config-2`, or
//! into a new partition in the last 64 MiB of the disk (GPT: a new entry
//! with a random PARTUUID, as `sgdisk -n 0:-64MB:0 -u 0:<uuid>`; MBR: a
//! primary partition, as `parted mkpart primary fat32 -64MiB -0`, placed
//! just below 2 TiB on bigger disks).
//!
//! On a disk with 4 KiB logical sectors, where Linux cannot mount ISO
//! 9660, or always with `--config-drive-rebuild`, the drive is rebuilt as
//! a FAT filesystem labelled CONFIG-2 with the same files, as IPA does
//! ([`rebuild_as_vfat`]); for partition images too, which IPA leaves ISO.
//!
//! The drive is never staged: it is decompressed once to measure it (a
//! [`Drive`], loaded before the image is written, so a bad drive fails
//! before anything is written) and once more straight onto the disk.

use super::partition::Region;
use crate::config::Env;
use crate::disk::gpt::{self, Entry, Gpt, Guid};
use crate::disk::mbr::{self, Mbr};
use crate::disk::{self, Found, Geometry, Io, Partition};
use crate::error::{AgentError, Kind, Result};
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// IPA's `MAX_CONFIG_DRIVE_SIZE_MB`.
pub const MAX_MB: u64 = 64;
/// The largest drive rebuilt as FAT: IPA's limit for whole-disk images
/// (the rebuild holds the drive's files in memory). A partition image's
/// drive may be larger; it then stays ISO 9660, as IPA leaves it.
pub const MAX_REBUILD: u64 = MAX_MB << 20;
/// The largest configdrive of a partition image (see [`Limit::Disk`]).
pub const MAX_PARTITION_DRIVE: u64 = 4 << 30;
/// IPA's `CONFIGDRIVE_LABEL`.
pub const LABEL: &str = "config-2";
/// IPA's `MAX_DISK_SIZE_MB_SUPPORTED_BY_MBR` (2 TiB).
const MBR_LIMIT_MB: u64 = 2_097_152;
/// The largest download accepted (a base64 text of a 64 MiB drive that
/// compresses badly, with headroom).
const MAX_DOWNLOAD: u64 = 100 << 20;

fn deploy_err(details: impl Into<String>) -> AgentError {
    AgentError::new(Kind::DeploymentError, details)
}

fn node_uuid(env: &Env) -> String {
    env.node
        .clone()
        .and_then(|n| n.get("uuid").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| "local".into())
}

/// The drive as received: gzip to decompress, or raw ISO bytes.
pub enum Source {
    Gzip(Vec<u8>),
    Raw(Vec<u8>),
}

fn is_http_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

fn download(env: &Env, url: &str, node: &str) -> Result<Vec<u8>> {
    let fail = |reason: String| {
        deploy_err(format!(
            "Can't download the configdrive content for node {node} from '{url}'. Reason: \
             {reason}"
        ))
    };
    let tls = crate::tls::client_tls(env.config).map_err(|e| fail(e.details))?;
    let cfg = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(
            env.config.image_download_connection_timeout.max(1) * 5,
        )))
        .build();
    let http = ureq::Agent::new_with_config(cfg);
    let mut resp = http.get(url).call().map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))?;
    if status >= 400 {
        return Err(deploy_err(format!(
            "Can't download the configdrive content for node {node} from '{url}'. Got status \
             code {status}, response body {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        )));
    }
    Ok(body)
}

/// A configdrive loaded (downloaded and base64-decoded, still compressed)
/// and measured: IPA's `get_configdrive`, without its temporary file.
pub struct Drive {
    src: Source,
    node: String,
    /// Bytes once decompressed.
    pub size: u64,
}

/// How large a drive may be once decompressed.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// IPA's `MAX_CONFIG_DRIVE_SIZE_MB` (whole-disk images).
    Ipa,
    /// Partition images, given the disk's size in bytes: IPA sets no limit
    /// there and sizes the partition to the drive (staging it in the
    /// ramdisk's RAM, so a few GiB at most in practice); this agent accepts
    /// up to the disk's size or [`MAX_PARTITION_DRIVE`], whichever is
    /// smaller, so a gzip bomb costs seconds, not hours.
    Disk(u64),
}

impl Drive {
    pub fn load(env: &Env, value: &Value, limit: Limit) -> Result<Drive> {
        let src = load(env, value)?;
        let node = node_uuid(env);
        let size = pump(&src, &node, limit, |_, _| Ok(()))?;
        Ok(Drive { src, node, size })
    }

    /// IPA's `configdrive_mb`: the size rounded up to whole MiB.
    pub fn mib(&self) -> u64 {
        self.size.div_ceil(1 << 20)
    }

    /// The whole MiB a partition needs to hold this drive, rebuilt as FAT
    /// with `sector`-byte sectors when `rebuild`: at least [`Drive::mib`],
    /// more when FAT needs it (a cluster or more per file and directory,
    /// where ISO 9660 packs files into 2 KiB blocks). A drive that is not
    /// rebuilt (see [`MAX_REBUILD`]), cannot be listed, or does not fit in
    /// any FAT12/16 of up to twice its size plus 16 MiB keeps
    /// [`Drive::mib`]; its rebuild is then skipped with a warning.
    pub fn partition_mib(&self, sector: u64, rebuild: bool) -> u64 {
        let mib = self.mib();
        if !rebuild || self.size > MAX_REBUILD {
            return mib;
        }
        let Some(shape) = self.shape() else {
            return mib;
        };
        crate::fs::fat::smallest_fat_mib(sector, &shape, mib, mib * 2 + 16).unwrap_or(mib)
    }

    /// The drive's tree as ISO 9660 lists it (directories `None`); the
    /// drive is decompressed into memory for it ([`MAX_REBUILD`] at most).
    fn shape(&self) -> Option<Vec<(String, Option<u64>)>> {
        let mut mem = crate::disk::MemDisk(Vec::new());
        mem.0.try_reserve_exact(self.size as usize).ok()?;
        pump(&self.src, &self.node, Limit::Disk(self.size), |_, b| {
            mem.0.extend_from_slice(b);
            Ok(())
        })
        .ok()?;
        let len = mem.0.len() as u64;
        let entries = crate::fs::iso9660::list(&mem, 0, len).ok()?;
        Some(crate::fs::iso9660::shape(&entries))
    }
}

/// Whether a drive written to a disk with `sector`-byte logical sectors is
/// rebuilt as FAT: always with `--config-drive-rebuild` (IPA's
/// `[DEFAULT]config_drive_rebuild`), else where isofs cannot read it
/// (see [`rebuild_as_vfat`]).
pub fn rebuilds(env: &Env, sector: u64) -> bool {
    env.config.config_drive_rebuild || sector > 2048
}

/// IPA's `get_configdrive` up to the decompression.
fn load(env: &Env, value: &Value) -> Result<Source> {
    let node = node_uuid(env);
    let Some(text) = value.as_str() else {
        return Err(deploy_err(format!(
            "Config drive for node {node} is not base64 encoded or the content is malformed. \
             TypeError: expected a string, got {value}."
        )));
    };
    if is_http_url(text) {
        let body = download(env, text, &node)?;
        // A downloaded body may be base64 text or the binary drive itself.
        let decoded = std::str::from_utf8(&body)
            .ok()
            .and_then(crate::util::base64_decode);
        return Ok(match decoded {
            Some(d) => Source::Gzip(d),
            None => {
                log::debug!("config drive for node {node} is not base64 encoded, assuming binary");
                Source::Raw(body)
            }
        });
    }
    crate::util::base64_decode(text)
        .map(Source::Gzip)
        .ok_or_else(|| {
            deploy_err(format!(
                "Config drive for node {node} is not base64 encoded or the content is malformed. \
             Error: Incorrect padding or invalid character."
            ))
        })
}

/// Stream the uncompressed drive to `sink` in 1 MiB pieces; fails past
/// `limit`. Returns the size.
fn pump(
    src: &Source,
    node: &str,
    limit: Limit,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let (limit, too_big): (u64, &dyn Fn(u64) -> AgentError) = match limit {
        Limit::Ipa => (MAX_MB << 20, &|n: u64| {
            deploy_err(format!(
                "Config drive size exceeds maximum limit of 64MiB. Size of the given config \
                 drive is {} MiB for node {node}.",
                n.div_ceil(1 << 20)
            ))
        }),
        Limit::Disk(disk) => {
            let limit = disk.min(MAX_PARTITION_DRIVE);
            (limit, &move |n: u64| {
                deploy_err(format!(
                    "Config drive for node {node} is too large: {}{} MiB uncompressed, more \
                     than the {} MiB accepted for a partition image (the disk's size, at most \
                     {} MiB)",
                    if n > 1 << 32 { "over " } else { "" },
                    n.div_ceil(1 << 20),
                    limit >> 20,
                    MAX_PARTITION_DRIVE >> 20
                ))
            })
        }
    };
    match src {
        Source::Raw(b) => {
            if b.len() as u64 > limit {
                return Err(too_big(b.len() as u64));
            }
            sink(0, b)?;
            Ok(b.len() as u64)
        }
        Source::Gzip(gz) => {
            let mut dec = crate::util::gzip::Decoder::new(gz);
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = dec.read(&mut buf).map_err(|e| {
                    deploy_err(format!(
                        "Encountered error while decompressing and writing config drive for \
                         node {node}. Error: {e}"
                    ))
                })?;
                if n == 0 {
                    break;
                }
                if total + n as u64 > limit {
                    // count the rest for the message, without storing it
                    let mut rest = total + n as u64;
                    while let Ok(m) = dec.read(&mut buf) {
                        if m == 0 || rest > (1 << 32) {
                            break;
                        }
                        rest += m as u64;
                    }
                    return Err(too_big(rest));
                }
                sink(total, &buf[..n])?;
                total += n as u64;
            }
            Ok(total)
        }
    }
}

/// Write the drive into `region`, the configdrive partition of a
/// partition image on the disk open as `file`, rebuilt as FAT when
/// `rebuild` ([`rebuilds`]). IPA's `work_on_disk` copies the ISO as it is,
/// so on a 4Kn disk the instance could not read it; here the partition was
/// sized with [`Drive::partition_mib`] to hold the FAT.
pub fn write_into_region(
    file: &mut File,
    region: &Region,
    drive: &Drive,
    sector: u64,
    rebuild: bool,
) -> Result<()> {
    write_drive(file, region.offset, region.len, &region.path, drive)?;
    if rebuild {
        rebuild_as_vfat(
            file,
            region.offset,
            region.len,
            &region.path,
            sector,
            drive,
            false,
        )?;
    }
    Ok(())
}

fn write_drive(file: &mut File, offset: u64, len: u64, part: &str, drive: &Drive) -> Result<()> {
    let node = &drive.node;
    let size = drive.size;
    if size > len {
        return Err(deploy_err(format!(
            "Config drive for node {node} ({size} bytes) does not fit into partition {part} \
             ({len} bytes)"
        )));
    }
    // the limit was checked when the drive was measured; the same bytes
    // come out again
    pump(&drive.src, node, Limit::Disk(size), |at, b| {
        Io::write_all_at(file, b, offset + at).map_err(|e| {
            AgentError::io(
                Kind::DeploymentError,
                format!("writing the config drive to {part}"),
                e,
            )
        })
    })?;
    file.sync_all()
        .map_err(|e| AgentError::io(Kind::DeploymentError, format!("syncing {part}"), e))?;
    log::info!("Configdrive for node {node} successfully copied onto partition {part}");
    Ok(())
}

/// Partitions whose filesystem label (or GPT name) is `config-2`,
/// case-insensitively, as IPA's `get_labelled_partition` (lsblk LABEL).
pub fn labelled(io: &dyn Io, parts: &[Partition]) -> Vec<Partition> {
    parts
        .iter()
        .filter(|p| {
            let fs = crate::fs::blkid::probe_fs(io, p.offset, p.len).and_then(|f| f.label);
            fs.is_some_and(|l| l.eq_ignore_ascii_case(LABEL))
                || p.gpt_name.eq_ignore_ascii_case(LABEL)
        })
        .cloned()
        .collect()
}

/// Where a new configdrive partition goes: (first, last) LBA, or why not.
fn new_partition_span(
    t: &disk::Table,
    geom: Geometry,
    last_usable: u64,
    dev: &str,
    node: &str,
) -> Result<(u64, u64)> {
    let mib = geom.mib();
    let (first, last) = if t.label == disk::Label::Msdos && geom.size >> 20 > MBR_LIMIT_MB {
        log::warn!(
            "Disk size is larger than 2TB for node {node}. Creating config drive at the end of \
             the disk {dev}."
        );
        (
            (MBR_LIMIT_MB - MAX_MB - 1) * mib,
            (MBR_LIMIT_MB - 1) * mib - 1,
        )
    } else {
        let end = last_usable;
        let start = (end + 1).saturating_sub(MAX_MB * mib) / mib * mib;
        (start, end)
    };
    let used_end = t
        .partitions
        .iter()
        .filter(|p| p.mbr_type.is_none_or(|ty| ty != mbr::TYPE_GPT_PROTECTIVE))
        .map(|p| p.start_lba + p.sectors)
        .max()
        .unwrap_or(0);
    if first < used_end || first == 0 || last <= first {
        return Err(deploy_err(format!(
            "Failed to create config drive on disk {dev} for node {node}. Error: no free space \
             for a {MAX_MB} MiB partition at the end of the disk (partitions end at sector \
             {used_end}, the config drive would start at {first})"
        )));
    }
    Ok((first, last))
}

/// IPA's `create_config_drive_partition` for a whole-disk image already on
/// `dev_path` (open as `file`).
pub fn write_configdrive(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    configdrive: &Drive,
) -> Result<()> {
    let was = disk::direct_off(dev_path, file);
    let r = write_configdrive_inner(env, dev_path, file, configdrive);
    disk::direct_restore(dev_path, file, was);
    r
}

fn write_configdrive_inner(
    env: &Env,
    dev_path: &Path,
    file: &mut File,
    drive: &Drive,
) -> Result<()> {
    let node = node_uuid(env);
    let dev = dev_path.display().to_string();
    let geom = disk::geometry(env.root, dev_path, file)?;
    disk::fix_gpt(dev_path, file, geom)?;
    let table = match disk::read_table(&*file, geom) {
        Found::Table(t) => t,
        Found::Nothing => {
            return Err(deploy_err(format!(
                "Failed to create config drive on disk {dev} for node {node}. Error: the disk \
                 has no partition table"
            )))
        }
        Found::Broken(why) => {
            return Err(deploy_err(format!(
                "Failed to create config drive on disk {dev} for node {node}. Error: {why}"
            )))
        }
    };
    let existing = labelled(&*file, &table.partitions);
    if existing.len() > 1 {
        let found: Vec<String> = existing
            .iter()
            .map(|p| disk::partition_path(&dev, p.number))
            .collect();
        return Err(deploy_err(format!(
            "More than one partition with label \"{LABEL}\" exists on device {dev} for node \
             {node}: {}.",
            found.join(" and ")
        )));
    }
    log::debug!(
        "Adding config drive partition {} MiB to device: {dev} for node {node}",
        drive.mib()
    );
    let part = match existing.into_iter().next() {
        Some(p) => {
            log::debug!(
                "Configdrive for node {node} exists at {}",
                disk::partition_path(&dev, p.number)
            );
            p
        }
        None => {
            let p = create_partition(dev_path, file, geom, &table, &node)?;
            file.sync_all()
                .map_err(|e| AgentError::io(Kind::DeploymentError, format!("syncing {dev}"), e))?;
            disk::reread_partitions(dev_path, file)?;
            p
        }
    };
    let path = disk::partition_path(&dev, part.number);
    write_drive(file, part.offset, part.len, &path, drive)?;
    if rebuilds(env, geom.sector) {
        rebuild_as_vfat(file, part.offset, part.len, &path, geom.sector, drive, true)?;
    }
    disk::reread_partitions(dev_path, file)?;
    Ok(())
}

/// isofs needs logical blocks of at most 2 KiB (`sb_min_blocksize` in
/// fs/isofs/inode.c), so on a 4Kn disk the instance cannot mount an ISO
/// 9660 drive. IPA then (`_does_config_drive_work` fails, or always with
/// `config_drive_rebuild`) rebuilds it: `_try_build_fat32_config_drive`
/// mounts the ISO, runs `mkfs.vfat -n CONFIG-2` on the partition (FAT16 at
/// 64 MiB, FAT12 under 16 MiB with 4 KiB sectors) and copies the files
/// over. Here: the ISO just written is read back, its files kept in memory
/// (at most the drive's size), and a FAT with the same tree is written
/// over the partition; nothing is written when it would not fit.
fn rebuild_as_vfat(
    file: &mut File,
    offset: u64,
    len: u64,
    path: &str,
    sector: u64,
    drive: &Drive,
    strict: bool,
) -> Result<()> {
    if !crate::fs::fat::fat_fits(len, sector, &[]) {
        // (FAT allows sectors of 4 KiB at most; an existing config-2
        // partition may be over FAT16's 2 GiB, where mkfs.vfat would pick
        // FAT32, which this agent does not write with files)
        log::warn!(
            "{path}: the config drive stays ISO 9660, which the instance may not read from \
             {sector}-byte sectors: no FAT12 or FAT16 fits {} MiB with them",
            len >> 20
        );
        return Ok(());
    }
    if drive.size > MAX_REBUILD {
        // (whole-disk drives never are: IPA's 64 MiB limit)
        log::warn!(
            "{path}: the config drive stays ISO 9660, which the instance may not read from \
             {sector}-byte sectors: it is over the {MAX_MB} MiB rebuilt as FAT"
        );
        return Ok(());
    }
    // the drive's bytes only, as Drive::partition_mib listed them
    let entries = match crate::fs::iso9660::list(&*file, offset, drive.size) {
        Ok(e) => e,
        Err(e) => {
            // IPA: "We were unable to examine the configuration drive, bypassing."
            log::warn!(
                "{path}: the config drive is not a readable ISO 9660 image ({e}); left as \
                 written, though the instance may not read it from {sector}-byte sectors"
            );
            return Ok(());
        }
    };
    let fail = |e: String| {
        deploy_err(format!(
            "A failure occured while attempting to format, copy, and re-create the \
             configuration drive in a structure which is compatible with the underlying \
             hardware and Operating System. Due to the nature of configuration drive, it could \
             have been incorrectly formatted. Operator investigation is required. Error: {e}"
        ))
    };
    // Until the FAT is written the ISO is intact: for a partition image
    // (not `strict`), a drive that cannot be rebuilt stays as IPA leaves it.
    let skip = |why: String| -> Result<()> {
        if strict {
            return Err(fail(why));
        }
        log::warn!("{path}: the config drive stays ISO 9660: {why}");
        Ok(())
    };
    let shape = crate::fs::iso9660::shape(&entries);
    if !crate::fs::fat::fat_fits(len, sector, &shape) {
        let why = format!(
            "the {} files and directories of the drive do not fit a FAT filesystem of {} KiB \
             with {sector}-byte sectors",
            shape.len(),
            len >> 10
        );
        return skip(why);
    }
    let mut files = Vec::with_capacity(entries.len());
    let mut bytes = 0u64;
    for e in &entries {
        let data = if e.is_dir {
            None
        } else {
            // entries may share extents: bound the total, not each
            bytes += e.size;
            if bytes > drive.size {
                return skip(format!(
                    "the ISO's files add up to more than the drive ({} bytes)",
                    drive.size
                ));
            }
            let mut b = vec![0u8; e.size as usize];
            if let Err(err) = Io::read_exact_at(&*file, &mut b, offset + e.offset) {
                return skip(format!("reading {} back from {path}: {err}", e.path));
            }
            Some(b)
        };
        files.push((e.path.clone(), data));
    }
    let mut id = [0u8; 4];
    crate::sys::getrandom(&mut id).map_err(|e| fail(format!("a volume id: {e}")))?;
    let count = files.len();
    let kind = crate::fs::fat::write_fat(
        file,
        offset,
        len,
        sector,
        "CONFIG-2",
        u32::from_le_bytes(id),
        offset / sector,
        files,
    )
    .map_err(|e| fail(e.to_string()))?;
    file.sync_all()
        .map_err(|e| AgentError::io(Kind::DeploymentError, format!("syncing {path}"), e))?;
    log::info!(
        "{path}: the config drive was rebuilt as {kind} labelled CONFIG-2 with its {count} files \
         and directories ({})",
        if sector > 2048 {
            format!("{sector}-byte logical sectors, which isofs cannot read")
        } else {
            "config_drive_rebuild".to_string()
        }
    );
    Ok(())
}

fn create_partition(
    dev_path: &Path,
    file: &mut File,
    geom: Geometry,
    table: &disk::Table,
    node: &str,
) -> Result<Partition> {
    let dev = dev_path.display().to_string();
    let fail = |e: String| {
        deploy_err(format!(
            "Failed to create config drive on disk {dev} for node {node}. Error: {e}"
        ))
    };
    match table.label {
        disk::Label::Gpt => {
            let mut g = Gpt::read_primary(&*file, geom.sector, geom.sectors())
                .map_err(|e| fail(e.to_string()))?;
            let (first, last) = new_partition_span(table, geom, g.header.last_usable, &dev, node)?;
            let slot = g
                .free_slot()
                .ok_or_else(|| fail("the GPT has no free partition entry".into()))?;
            let uuid = Guid::random().map_err(|e| fail(e.to_string()))?;
            g.set_entry(
                slot,
                &Entry {
                    // sgdisk's default type for -n: 8300 Linux filesystem
                    type_guid: gpt::TYPE_LINUX_DATA,
                    unique_guid: uuid,
                    first_lba: first,
                    last_lba: last,
                    attributes: 0,
                    name: String::new(),
                },
            )
            .map_err(|e| fail(e.to_string()))?;
            g.write(file).map_err(|e| fail(e.to_string()))?;
            Ok(Partition {
                number: slot as u32 + 1,
                offset: first * geom.sector,
                len: (last - first + 1) * geom.sector,
                start_lba: first,
                sectors: last - first + 1,
                gpt_type: Some(gpt::TYPE_LINUX_DATA),
                gpt_uuid: Some(uuid),
                gpt_name: String::new(),
                mbr_type: None,
                bootable: false,
            })
        }
        disk::Label::Msdos => {
            let lba0 = mbr::read(&*file).map_err(|e| fail(e.to_string()))?;
            let mut m = Mbr::parse(&lba0).ok_or_else(|| fail("no MBR".into()))?;
            let pp = m.primary_count();
            if pp > 3 {
                return Err(deploy_err(format!(
                    "Config drive cannot be created for node {node}. Disk ({dev}) uses MBR \
                     partitioning and already has {pp} primary partitions."
                )));
            }
            let last_usable = (geom.sectors() - 1).min(u64::from(u32::MAX));
            let (first, last) = new_partition_span(table, geom, last_usable, &dev, node)?;
            if last > u64::from(u32::MAX) {
                return Err(fail(
                    "the partition would lie beyond the MBR's 32-bit limit".into(),
                ));
            }
            let slot = m
                .entries
                .iter()
                .position(|e| !e.is_used())
                .ok_or_else(|| fail("no free primary slot".into()))?;
            m.entries[slot] = mbr::Entry {
                bootable: false,
                ptype: mbr::TYPE_FAT32_LBA,
                start: first as u32,
                sectors: (last - first + 1) as u32,
            };
            let mut lba0 = lba0;
            m.write_into(&mut lba0);
            Io::write_all_at(file, &lba0, 0).map_err(|e| fail(e.to_string()))?;
            Ok(Partition {
                number: slot as u32 + 1,
                offset: first * geom.sector,
                len: (last - first + 1) * geom.sector,
                start_lba: first,
                sectors: last - first + 1,
                gpt_type: None,
                gpt_uuid: None,
                gpt_name: String::new(),
                mbr_type: Some(mbr::TYPE_FAT32_LBA),
                bootable: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn pump_measures_and_limits() {
        let src = Source::Gzip(gz(&vec![7u8; 3 << 20]));
        let mut got = 0u64;
        assert_eq!(
            pump(&src, "n", Limit::Ipa, |at, b| {
                assert_eq!(at, got);
                got += b.len() as u64;
                Ok(())
            })
            .unwrap(),
            3 << 20
        );
        let big = Source::Gzip(gz(&vec![0u8; (64 << 20) + 1]));
        let e = pump(&big, "n", Limit::Ipa, |_, _| Ok(())).unwrap_err();
        assert!(e
            .details
            .starts_with("Config drive size exceeds maximum limit of 64MiB"));
        assert!(e.details.contains("65 MiB"), "{}", e.details);
        // exactly 64 MiB is allowed, as in IPA (ceil MiB > 64 fails)
        let edge = Source::Gzip(gz(&vec![0u8; 64 << 20]));
        assert!(pump(&edge, "n", Limit::Ipa, |_, _| Ok(())).is_ok());
        let junk = Source::Gzip(b"not gzip".to_vec());
        assert!(pump(&junk, "n", Limit::Ipa, |_, _| Ok(()))
            .unwrap_err()
            .details
            .contains("decompressing"));
        // partition images: no 64 MiB limit, only the disk's size
        assert_eq!(
            pump(&big, "n", Limit::Disk(1 << 30), |_, _| Ok(())).unwrap(),
            (64 << 20) + 1
        );
        let e = pump(&big, "n", Limit::Disk(32 << 20), |_, _| Ok(())).unwrap_err();
        assert!(
            e.details
                .contains("too large: 65 MiB uncompressed, more than the 32 MiB accepted"),
            "{}",
            e.details
        );
    }

    #[test]
    fn urls_detected_like_ipa() {
        assert!(is_http_url("HTTPS://x/y"));
        assert!(is_http_url("http://x"));
        assert!(!is_http_url("H4sIAAAA"));
        assert!(!is_http_url("ht"));
    }
}
