//! Image handling: `standby.prepare_image` and the `write_image` deploy
//! step (protocol §3.3, §7; IPA's `extensions/standby.py`).
//!
//! The write path is one streaming pass, download → hash → write, for raw
//! and qcow2 images alike, in bounded memory, with the disk's first MiB
//! written only after the checksum verified:
//!
//! * [`checksum`]: which digest `image_info` asks for, checksum files;
//! * [`download`]: HTTP(S) with auth, proxies, retries and Range resume;
//! * [`format`]: sniffing and IPA's format policy (CVE-2024-44082);
//! * [`qcow2`]: qcow2 → raw while streaming ([`inflate`]: its compressed
//!   clusters on helper threads);
//! * [`writer`]: the target, O_DIRECT, held-back head, wipe on failure;
//! * [`stream`]: the pass itself, retries, verification.
//!
//! The on-disk side (GPT/MBR, partition re-read, configdrive, partition
//! images, UUIDs) is in `disk`, `gpt`, `mbr`, `configdrive`, `partition`.
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

pub mod checksum;
pub mod configdrive;
pub mod disk;
pub mod download;
pub mod efi;
pub mod fat;
pub mod format;
pub mod gpt;
pub mod inflate;
pub mod inject;
pub mod iso9660;
pub mod mbr;
pub mod minire;
pub mod partition;
pub mod qcow2;
pub mod stream;
pub mod writer;

use crate::agent::{Agent, WrittenImage};
use crate::error::{AgentError, Kind, Result};
use crate::hardware::StepCall;
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

/// Synchronous validation of `image_info` (IPA's `_validate_image_info`):
/// 400 on failure.
pub fn validate_image_info(agent: &Agent, image_info: &Map<String, Value>) -> Result<()> {
    checksum::validate(image_info, agent.lookup_settings().md5_enabled)
}

/// IPA's `_message_format`: "image (<id>) written to device <dev>
/// root_uuid=<uuid>", plus the ESP's UUID for UEFI partition images.
fn result_message(
    id: &str,
    device: &str,
    info: &Map<String, Value>,
    uuids: &Map<String, Value>,
) -> String {
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
        Some(esp) if info.get("deploy_boot_mode").and_then(Value::as_str) == Some("uefi") => {
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

/// `standby.prepare_image`: write the image, returns IPA's result string.
pub fn prepare_image(
    agent: &Agent,
    image_info: &Map<String, Value>,
    configdrive: Option<&Value>,
) -> Result<String> {
    let id = checksum::image_id(image_info);
    log::debug!("Preparing image {id}");
    let mut info = image_info.clone();
    // IPA: backward compatibility, the configdrive inside image_info
    let configdrive = configdrive
        .cloned()
        .or_else(|| info.remove("configdrive"))
        .filter(|v| !v.is_null());
    let node = agent.node();
    let dev = agent.managers.dispatch("get_os_install_device", |m| {
        m.get_os_install_device(agent, node.as_ref())
    })?;
    let device = dev.name.clone();
    let dev_path = Path::new(&device);
    let path = agent.root.path(&device);
    let partition_image = info.get("image_type").and_then(Value::as_str) == Some("partition");
    if partition_image {
        if let Some(cd) = &configdrive {
            info.insert("configdrive".into(), cd.clone());
        }
    }

    // IPA: the same image already on this device is not written again
    let cached = agent
        .state()
        .written_image
        .clone()
        .filter(|w| w.image_id == id && w.device == device);
    let uuids = if let Some(w) = cached {
        log::info!("image {id} is already on {device}; not writing it again");
        if !partition_image {
            let drive = load_drive(agent, configdrive.as_ref())?;
            let mut file = reopen(&path, &device)?;
            disk::after_whole_disk_write(agent, dev_path, &mut file)?;
            if let Some(d) = &drive {
                configdrive::write_configdrive(agent, dev_path, &mut file, d)?;
            }
        }
        w.partition_uuids
    } else {
        agent.state().written_image = None;
        // mounted, swap or held partitions (from the root's /proc and /sys);
        // opening a real block device with O_EXCL checks again in the kernel
        crate::hardware::generic::disks::check_not_in_use(&agent.root, &dev)?;
        write_to_device(
            agent,
            &info,
            &id,
            &device,
            &path,
            node.as_ref(),
            configdrive.as_ref(),
        )?
    };
    agent.state().written_image = Some(WrittenImage {
        image_id: id.clone(),
        device: device.clone(),
        partition_uuids: uuids.clone(),
    });
    let msg = result_message(&id, &device, &info, &uuids);
    log::info!("{msg}");
    Ok(msg)
}

/// A whole-disk image's configdrive, fetched and measured (IPA does it
/// only after the image is written: a bad drive then fails a deploy whose
/// image is already on the disk).
fn load_drive(agent: &Agent, value: Option<&Value>) -> Result<Option<configdrive::Drive>> {
    value
        .map(|v| configdrive::Drive::load(agent, v, configdrive::Limit::Ipa))
        .transpose()
}

fn write_to_device(
    agent: &Agent,
    info: &Map<String, Value>,
    id: &str,
    device: &str,
    path: &Path,
    node: Option<&Value>,
    configdrive: Option<&Value>,
) -> Result<Map<String, Value>> {
    let dev_path = Path::new(device);
    let settings = agent.lookup_settings();
    let client = Arc::new(download::Client::new(agent, info, id)?);
    let expected = checksum::resolve(agent, info, &mut |u| client.fetch_text(u))?;
    let urls: Vec<String> = info
        .get("urls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|u| {
                    u.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| u.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let partition_image = info.get("image_type").and_then(Value::as_str) == Some("partition");
    // A whole-disk image's drive is checked before the image and loaded
    // again after it, so it takes no memory while the image streams (up to
    // 64 MiB, in a 128 MiB ramdisk); a URL is fetched twice. (A partition
    // image's drive is loaded by partition::prepare_layout, which sizes
    // its partition from it, and written before the image.)
    if !partition_image {
        drop(load_drive(agent, configdrive)?);
    }
    let job = stream::Job {
        id,
        urls,
        client,
        expected,
        policy: format::Policy {
            permitted: &settings.permitted_image_formats,
            declared: info.get("disk_format").and_then(Value::as_str),
            deep_inspection: !settings.disable_deep_image_inspection,
        },
        partition: partition_image,
    };
    let (file, mode) = writer::open_device(path, device, writer::IoMode::preferred())?;
    let geom = disk::geometry(agent, dev_path, &file)?;
    log::info!(
        "writing image {id} to {device} ({} bytes, {}-byte sectors, {})",
        geom.size,
        geom.sector,
        if mode == writer::IoMode::Direct {
            "O_DIRECT"
        } else {
            "buffered"
        }
    );
    if partition_image {
        let mut file = file;
        let layout = partition::prepare_layout(agent, dev_path, &mut file, info, node)?;
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
        partition::finish(agent, dev_path, &mut file, &layout)
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
        disk::after_whole_disk_write(agent, dev_path, &mut file)?;
        if let Some(d) = load_drive(agent, configdrive)? {
            configdrive::write_configdrive(agent, dev_path, &mut file, &d)?;
        }
        disk::partition_uuids(agent, dev_path, &file, None)
    }
}

fn log_done(id: &str, dev: &str, s: &stream::Summary) {
    let mib = s.bytes as f64 / (1 << 20) as f64;
    log::info!(
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

/// The `write_image` deploy/service step: IPA's
/// `GenericHardwareManager.write_image` runs `standby.prepare_image` and
/// returns its command result, `{"result": "prepare_image: ..."}`.
pub fn write_image_step(agent: &Agent, call: &StepCall) -> Result<Value> {
    let info = call
        .args
        .get("image_info")
        .and_then(Value::as_object)
        .ok_or_else(|| AgentError::invalid_params("image_info is required"))?;
    validate_image_info(agent, info)?;
    let configdrive = call.args.get("configdrive").filter(|v| !v.is_null());
    let msg = prepare_image(agent, info, configdrive)?;
    Ok(json!({ "result": format!("prepare_image: {msg}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_messages_like_ipa() {
        let info = json!({"id": "img"});
        let uuids = json!({"root uuid": "0x1234abcd"});
        assert_eq!(
            result_message(
                "img",
                "/dev/sda",
                info.as_object().unwrap(),
                uuids.as_object().unwrap()
            ),
            "image (img) written to device /dev/sda root_uuid=0x1234abcd"
        );
        let info = json!({"id": "img", "deploy_boot_mode": "uefi"});
        let uuids = json!({"root uuid": "r-u", "efi system partition uuid": "E-F"});
        assert_eq!(
            result_message(
                "img",
                "/dev/sda",
                info.as_object().unwrap(),
                uuids.as_object().unwrap()
            ),
            "image (img) written to device /dev/sda root_uuid=r-u efi_system_partition_uuid=E-F"
        );
        let info = json!({"id": "img", "deploy_boot_mode": "bios"});
        assert_eq!(
            result_message(
                "img",
                "/dev/sda",
                info.as_object().unwrap(),
                uuids.as_object().unwrap()
            ),
            "image (img) written to device /dev/sda root_uuid=r-u"
        );
        assert_eq!(
            result_message("i", "/dev/vda", &Map::new(), &Map::new()),
            "image (i) written to device /dev/vda root_uuid=None"
        );
    }
}
