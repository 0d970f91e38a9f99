//! Image handling: `standby.prepare_image` and the `write_image` deploy
//! step (protocol §3.3, §7; IPA's `extensions/standby.py`).
//!
//! The write path is one streaming pass, download → hash → write, for raw
//! and qcow2 images alike, in bounded memory, with the disk's first MiB
//! written only after the checksum verified:
//!
//! * [`checksum`]: which digest `image_info` asks for, checksum files;
//! * [`download`]: HTTP(S) with auth, proxies, retries and Range resume
//!   ([`http`]: plain-HTTP bodies read straight into the aligned buffers);
//! * [`format`]: sniffing and IPA's format policy (CVE-2024-44082);
//! * [`qcow2`]: qcow2 → raw while streaming ([`inflate`]: its compressed
//!   clusters on helper threads);
//! * [`writer`]: the target, O_DIRECT, held-back head, wipe on failure;
//! * [`stream`]: the pass itself, retries, verification.
//!
//! After the stream: [`finish`] (backup GPT moved, partitions re-read,
//! UUIDs), [`configdrive`], [`partition`] (partition images),
//! and [`bootloader`] (`install_bootloader`'s UEFI entries). Disks, partition tables and filesystems
//! themselves are the lower layers' (`crate::disk`, `crate::fs`,
//! `crate::efi`).
//!
//! The install device is chosen by the caller (the hardware managers'
//! `get_os_install_device`) and passed in; nothing here calls back up.
//!
//! Where this differs from IPA on purpose:
//! * every image is streamed, whatever `stream_raw_images` says (IPA stages
//!   non-raw images in the ramdisk's RAM and runs qemu-img);
//! * every image is sniffed, also when declared raw (IPA writes raw-declared
//!   images unexamined), so a qcow2 declared raw is refused instead of being
//!   written byte for byte;
//! * a dropped connection resumes with a Range request instead of starting
//!   over; a 4xx answer moves on to the next URL of `urls` instead of
//!   ending the download;
//! * md5 is refused while the lookup disables it also when it comes as
//!   `os_hash_algo`; digests compare case-insensitively;
//! * disk write errors are `ImageWriteError` and not retried (IPA wraps them
//!   in a retried `ImageDownloadError`); ENOSPC is IPA's
//!   `ImageDownloadOutofSpaceError`;
//! * `ImageChecksumError` names the device as the location and the image id
//!   as the image (IPA swaps the two in `verify_image`).

pub mod bootloader;
pub mod checksum;
pub mod configdrive;
pub mod download;
pub mod finish;
pub mod format;
pub mod http;
pub mod inflate;
pub mod info;
pub mod partition;
pub mod qcow2;
pub mod stream;
pub mod writer;

use crate::config::Env;
use crate::disk::device::{geometry, open_for_image, IoMode};
use crate::disk::usage::check_not_in_use;
use crate::disk::BlockDevice;
use crate::error::{AgentError, Kind, Result};
use crate::util::lock;
pub use info::ImageInfo;
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the last image write left behind, for `standby.get_partition_uuids`
/// and `image.install_bootloader`.
#[derive(Clone, Debug, Default)]
pub struct WrittenImage {
    pub image_id: String,
    pub device: String,
    /// The `get_partition_uuids` answer (keys contain spaces, as IPA's).
    pub partition_uuids: Map<String, Value>,
}

/// The last image written, shared by the commands that read it
/// (`get_partition_uuids`, `install_bootloader`, `inject_files`) and
/// forgotten when a clean step or a new lookup starts over.
#[derive(Debug, Default)]
pub struct Written(Mutex<Option<WrittenImage>>);

impl Written {
    pub fn get(&self) -> Option<WrittenImage> {
        lock(&self.0).clone()
    }

    pub fn set(&self, w: Option<WrittenImage>) {
        *lock(&self.0) = w;
    }

    /// The device the last image went to, if any.
    pub fn device(&self) -> Option<String> {
        lock(&self.0)
            .as_ref()
            .map(|w| w.device.clone())
            .filter(|d| !d.is_empty())
    }
}

/// Parse and validate `image_info` (IPA's `_validate_image_info`): 400 on
/// failure.
pub fn parse_image_info(env: &Env, image_info: &Map<String, Value>) -> Result<ImageInfo> {
    ImageInfo::parse(image_info, env.lookup.md5_enabled)
}

/// IPA's `_message_format`: "image (<id>) written to device <dev>
/// root_uuid=<uuid>", plus the ESP's UUID for UEFI partition images.
fn result_message(id: &str, device: &str, info: &ImageInfo, uuids: &Map<String, Value>) -> String {
    let show = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "None".into(),
        Some(v) => v.to_string(),
    };
    let root = show(uuids.get("root uuid"));
    let esp = uuids
        .get("efi system partition uuid")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    match esp {
        Some(esp) if info.deploy_boot_mode.as_deref() == Some("uefi") => {
            format!(
            "image ({id}) written to device {device} root_uuid={root} efi_system_partition_uuid={}",
            show(Some(esp))
        )
        }
        _ => format!("image ({id}) written to device {device} root_uuid={root}"),
    }
}

/// Open the device again for the table work after the write: without
/// O_EXCL (mkfs tools the partition code may run open partitions
/// exclusively) and without O_DIRECT (small unaligned table I/O).
fn reopen(path: &Path, dev: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AgentError::io(Kind::ImageWriteError, format!("opening {dev}"), e))
}

/// The configdrive to write: the command's `configdrive` parameter, or
/// (IPA's backward compatibility) the one inside `image_info`; `None` when
/// neither is given or both are null. Read in place, never copied.
pub fn configdrive_of<'a>(
    param: Option<&'a Value>,
    image_info: &'a Map<String, Value>,
) -> Option<&'a Value> {
    param
        .filter(|v| !v.is_null())
        .or_else(|| image_info.get("configdrive"))
        .filter(|v| !v.is_null())
}

/// `standby.prepare_image`: write the image to `dev` (the install device
/// the hardware managers chose), returns IPA's result string.
/// `configdrive`: [`configdrive_of`].
pub fn prepare_image(
    env: &Env,
    written: &Written,
    dev: &BlockDevice,
    node: Option<&Value>,
    info: &ImageInfo,
    configdrive: Option<&Value>,
) -> Result<String> {
    let id = info.id.clone();
    crate::util::log_at!(Debug, "Preparing image {id}");
    let device = dev.name.clone();
    let dev_path = Path::new(&device);
    let path = env.root.path(&device);
    let partition_image = info.is_partition();

    // IPA: the same image already on this device is not written again
    let cached = written
        .get()
        .filter(|w| w.image_id == id && w.device == device);
    let uuids = if let Some(w) = cached {
        crate::util::log_at!(
            Info,
            "image {id} is already on {device}; not writing it again"
        );
        if !partition_image {
            let drive = load_drive(env, configdrive)?;
            let mut file = reopen(&path, &device)?;
            finish::after_whole_disk_write(env.root, dev_path, &mut file)?;
            if let Some(d) = &drive {
                configdrive::write_configdrive(env, dev_path, &mut file, d)?;
            }
        }
        w.partition_uuids
    } else {
        written.set(None);
        // mounted, swap or held partitions (from the root's /proc and /sys);
        // opening a real block device with O_EXCL checks again in the kernel
        check_not_in_use(env.root, dev)?;
        write_to_device(env, info, &id, &device, &path, node, configdrive)?
    };
    written.set(Some(WrittenImage {
        image_id: id.clone(),
        device: device.clone(),
        partition_uuids: uuids.clone(),
    }));
    let msg = result_message(&id, &device, info, &uuids);
    crate::util::log_at!(Info, "{msg}");
    Ok(msg)
}

/// A whole-disk image's configdrive, fetched and measured (IPA does it
/// only after the image is written: a bad drive then fails a deploy whose
/// image is already on the disk).
fn load_drive<'a>(env: &Env, value: Option<&'a Value>) -> Result<Option<configdrive::Drive<'a>>> {
    value
        .map(|v| configdrive::Drive::load(env, v, configdrive::Limit::Ipa))
        .transpose()
}

fn write_to_device(
    env: &Env,
    info: &ImageInfo,
    id: &str,
    device: &str,
    path: &Path,
    node: Option<&Value>,
    configdrive: Option<&Value>,
) -> Result<Map<String, Value>> {
    let dev_path = Path::new(device);
    let settings = &env.lookup;
    let client = Arc::new(download::Client::new(env, info, id)?);
    let expected = checksum::resolve(env, info, &mut |u| client.fetch_text(u))?;
    let urls = info.urls.clone();
    let partition_image = info.is_partition();
    // A whole-disk image's drive is checked before the image, and written
    // after it from another pass over its stream (a `Drive` holds none of
    // its bytes; a URL is fetched again). (A partition image's drive is
    // loaded by partition::prepare_layout, which sizes its partition from
    // it, and written before the image.)
    let drive = if partition_image {
        None
    } else {
        load_drive(env, configdrive)?
    };
    let job = stream::Job {
        id,
        urls,
        client,
        expected,
        policy: format::Policy {
            permitted: &settings.permitted_image_formats,
            declared: info.disk_format.as_deref(),
            deep_inspection: !settings.disable_deep_image_inspection,
        },
        partition: partition_image,
    };
    let (file, mode) = open_for_image(path, device, IoMode::preferred())?;
    // an array's background resync waits for the image (the image's own
    // writes reach every mirror); it resumes when this drops
    let _resync =
        crate::disk::md::array::pause_resync(env.root, device.trim_start_matches("/dev/"));
    let geom = geometry(env.root, dev_path, &file)?;
    crate::util::log_at!(
        Info,
        "writing image {id} to {device} ({} bytes, {}-byte sectors, {})",
        geom.size,
        geom.sector,
        if mode == IoMode::Direct {
            "O_DIRECT"
        } else {
            "buffered"
        }
    );
    if partition_image {
        let mut file = file;
        let layout = partition::prepare_layout(env, dev_path, &mut file, info, configdrive, node)?;
        let mut target = writer::Target::new(
            file,
            &layout.root.path,
            id,
            mode,
            geom.sector,
            geom.size,
            layout.root.offset,
            layout.root.len,
            false,
        );
        let s = stream::write_image(&job, &mut target)?;
        log_done(id, &layout.root.path, &s);
        drop(target);
        let mut file = reopen(path, device)?;
        partition::finish(env, dev_path, &mut file, &layout)
    } else {
        let mut target = writer::Target::new(
            file,
            device,
            id,
            mode,
            geom.sector,
            geom.size,
            0,
            geom.size,
            true,
        );
        let s = stream::write_image(&job, &mut target)?;
        log_done(id, device, &s);
        drop(target);
        let mut file = reopen(path, device)?;
        finish::after_whole_disk_write(env.root, dev_path, &mut file)?;
        if let Some(d) = &drive {
            configdrive::write_configdrive(env, dev_path, &mut file, d)?;
        }
        finish::partition_uuids(env.root, dev_path, &file, None)
    }
}

fn log_done(id: &str, dev: &str, s: &stream::Summary) {
    let mib = s.bytes as f64 / (1 << 20) as f64;
    crate::util::log_at!(
        Info,
        "Image {id} streamed onto device {dev} in {:.2} seconds for {} bytes ({:.1} MiB/s, {}; \
         {} bytes written){}",
        s.seconds,
        s.bytes,
        mib / s.seconds.max(0.001),
        s.format.map(|f| f.name()).unwrap_or("?"),
        s.written,
        if s.resumes > 0 {
            format!(", {} resumed connections", s.resumes)
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An image_info with only deploy_boot_mode set, as these tests need.
    fn mode(v: &Value) -> ImageInfo {
        ImageInfo {
            deploy_boot_mode: v["deploy_boot_mode"].as_str().map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn result_messages_like_ipa() {
        let info = json!({"id": "img"});
        let uuids = json!({"root uuid": "0x1234abcd"});
        assert_eq!(
            result_message("img", "/dev/sda", &mode(&info), uuids.as_object().unwrap()),
            "image (img) written to device /dev/sda root_uuid=0x1234abcd"
        );
        let info = json!({"id": "img", "deploy_boot_mode": "uefi"});
        let uuids = json!({"root uuid": "r-u", "efi system partition uuid": "E-F"});
        assert_eq!(
            result_message("img", "/dev/sda", &mode(&info), uuids.as_object().unwrap()),
            "image (img) written to device /dev/sda root_uuid=r-u efi_system_partition_uuid=E-F"
        );
        let info = json!({"id": "img", "deploy_boot_mode": "bios"});
        assert_eq!(
            result_message("img", "/dev/sda", &mode(&info), uuids.as_object().unwrap()),
            "image (img) written to device /dev/sda root_uuid=r-u"
        );
        assert_eq!(
            result_message("i", "/dev/vda", &ImageInfo::default(), &Map::new()),
            "image (i) written to device /dev/vda root_uuid=None"
        );
    }
}
