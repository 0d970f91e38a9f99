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
//! The drive is never staged, and its text is never copied: it is read
//! as a stream (base64 → gunzip, or the body of a URL) in bounded buffers,
//! once to check and measure it (a [`Drive`], loaded before the image is
//! written, so a bad drive fails before anything is written), once more
//! straight onto the disk, and for a FAT rebuild once more for the files'
//! contents. An inline drive is read from the command's own string; a URL
//! is downloaded once per pass. So a drive costs its command's text (or
//! nothing, for a URL) plus about 2 MiB, whatever its size.

use super::partition::Region;
use crate::config::Env;
use crate::disk::gpt::{self, Entry, Gpt, Guid};
use crate::disk::mbr::{self, Mbr};
use crate::disk::{self, Found, Geometry, Io, Partition};
use crate::error::{AgentError, Kind, Result};
use crate::util::gzip::Decoder as GzDecoder;
use crate::util::Base64Reader;
use serde_json::Value;
use std::cell::RefCell;
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

fn is_http_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// Where a drive's bytes come from, for each pass over them.
enum Source<'a> {
    /// The command's base64 text of the gzipped drive, read in place.
    Inline(&'a str),
    /// Downloaded again for each pass: base64 text of the gzipped drive,
    /// or (not base64) the drive itself.
    Url {
        http: ureq::Agent,
        url: &'a str,
        base64: bool,
    },
}

/// A body, counted, with the first error it gave kept.
struct Counted<R> {
    inner: R,
    n: u64,
    error: Option<String>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.n += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted && self.error.is_none() {
                    self.error = Some(e.to_string());
                }
                Err(e)
            }
        }
    }
}

type Body = Counted<ureq::BodyReader<'static>>;

/// One pass over a drive's uncompressed bytes.
enum Pass<'a> {
    Inline(GzDecoder<Base64Reader<&'a [u8]>>),
    Gzip(GzDecoder<Base64Reader<Body>>),
    Raw(Body),
}

impl Read for Pass<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Pass::Inline(r) => r.read(buf),
            Pass::Gzip(r) => r.read(buf),
            Pass::Raw(r) => r.read(buf),
        }
    }
}

impl Pass<'_> {
    /// Why the download failed, if it did.
    fn download_error(&self) -> Option<&str> {
        match self {
            Pass::Inline(_) => None,
            Pass::Gzip(r) => r.get_ref().get_ref().error.as_deref(),
            Pass::Raw(r) => r.error.as_deref(),
        }
    }
}

fn download_fail(node: &str, url: &str, reason: &str) -> AgentError {
    deploy_err(format!(
        "Can't download the configdrive content for node {node} from '{url}'. Reason: {reason}"
    ))
}

fn http_client(env: &Env, url: &str, node: &str) -> Result<ureq::Agent> {
    let tls =
        crate::tls::client_tls(env.config).map_err(|e| download_fail(node, url, &e.details))?;
    let cfg = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(
            env.config.image_download_connection_timeout.max(1) * 5,
        )))
        .build();
    Ok(ureq::Agent::new_with_config(cfg))
}

/// The body at `url`, at most [`MAX_DOWNLOAD`] bytes of it.
fn get(http: &ureq::Agent, url: &str, node: &str) -> Result<Body> {
    let resp = http
        .get(url)
        .call()
        .map_err(|e| download_fail(node, url, &e.to_string()))?;
    let status = resp.status().as_u16();
    let mut body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_DOWNLOAD)
        .reader();
    if status >= 400 {
        let mut head = Vec::new();
        let _ = (&mut body).take(512).read_to_end(&mut head);
        return Err(deploy_err(format!(
            "Can't download the configdrive content for node {node} from '{url}'. Got status \
             code {status}, response body {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(Counted {
        inner: body,
        n: 0,
        error: None,
    })
}

/// A configdrive checked and measured: IPA's `get_configdrive`, without
/// its temporary file. It holds no bytes of the drive.
pub struct Drive<'a> {
    src: Source<'a>,
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

impl<'a> Drive<'a> {
    /// IPA's `get_configdrive` up to the decompression, and the
    /// decompression measured (nothing kept).
    pub fn load(env: &Env, value: &'a Value, limit: Limit) -> Result<Drive<'a>> {
        let node = node_uuid(env);
        let Some(text) = value.as_str() else {
            return Err(deploy_err(format!(
                "Config drive for node {node} is not base64 encoded or the content is \
                 malformed. TypeError: expected a string, got {value}."
            )));
        };
        if is_http_url(text) {
            return load_url(env, text, node, limit);
        }
        if !crate::util::base64_valid(text.as_bytes()) {
            return Err(deploy_err(format!(
                "Config drive for node {node} is not base64 encoded or the content is malformed. \
             Error: Incorrect padding or invalid character."
            )));
        }
        let mut d = Drive {
            src: Source::Inline(text),
            node,
            size: 0,
        };
        let mut pass = d.open()?;
        d.size = pump(&mut pass, &d.node, limit, |_, _| Ok(()))?;
        drop(pass);
        Ok(d)
    }

    /// A new pass over the uncompressed drive, from its first byte.
    fn open(&self) -> Result<Pass<'a>> {
        Ok(match &self.src {
            Source::Inline(t) => Pass::Inline(GzDecoder::new(Base64Reader::new(t.as_bytes()))),
            Source::Url { http, url, base64 } => {
                let body = get(http, url, &self.node)?;
                if *base64 {
                    Pass::Gzip(GzDecoder::new(Base64Reader::new(body)))
                } else {
                    Pass::Raw(body)
                }
            }
        })
    }

    /// Stream the drive to `sink` (offset, bytes), checking it is still
    /// the drive measured (a URL's content may change between downloads).
    fn each(&self, mut sink: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let mut pass = self.open()?;
        let mut failed = None;
        let r = pump(&mut pass, &self.node, Limit::Disk(self.size), |at, b| {
            sink(at, b).map_err(|e| {
                failed = Some(e);
                deploy_err("")
            })
        });
        // the sink's own error (the disk's), as it is
        if let Some(e) = failed {
            return Err(e);
        }
        self.check_pass(&pass, r)
    }

    /// A pass's outcome: a failed download or a drive that is no longer
    /// the one measured is said so.
    fn check_pass(&self, pass: &Pass, r: Result<u64>) -> Result<()> {
        let changed = |what: String| {
            deploy_err(format!(
                "Config drive for node {} changed since it was checked: {what}",
                self.node
            ))
        };
        if let (Some(e), Source::Url { url, .. }) = (pass.download_error(), &self.src) {
            return Err(download_fail(&self.node, url, e));
        }
        match r {
            Ok(n) if n == self.size => Ok(()),
            Ok(n) => Err(changed(format!("{n} bytes, not {}", self.size))),
            Err(e) if matches!(self.src, Source::Url { .. }) => Err(changed(e.into_details())),
            Err(e) => Err(e),
        }
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

    /// The drive's tree as ISO 9660 lists it (directories `None`), read
    /// from passes over the stream ([`Streamed`]).
    fn shape(&self) -> Option<Vec<(String, Option<u64>)>> {
        let io = Streamed {
            drive: self,
            st: RefCell::new(StreamedState {
                pass: None,
                pos: 0,
                prefix: Vec::new(),
                passes: 0,
            }),
        };
        let entries = crate::fs::iso9660::list(&io, 0, self.size)
            .inspect_err(|e| crate::util::log_at!(Debug, "listing the config drive: {e}"))
            .ok()?;
        Some(crate::fs::iso9660::shape(&entries))
    }
}

/// IPA's `get_configdrive` for a URL: download the body once, measuring
/// it both as base64 of a gzipped drive and as the drive itself, and keep
/// whichever it turns out to be (base64 only when all of it is).
fn load_url<'a>(env: &Env, url: &'a str, node: String, limit: Limit) -> Result<Drive<'a>> {
    let http = http_client(env, url, &node)?;
    let body = get(&http, url, &node)?;
    let mut gz = GzDecoder::new(Base64Reader::new(body));
    let measured = pump(&mut gz, &node, limit, |_, _| Ok(()));
    // the rest of the text, which the decompressor may not have read
    let b64 = gz.get_mut();
    let mut scratch = vec![0u8; 64 << 10];
    while !b64.invalid() && b64.get_ref().error.is_none() {
        match b64.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let base64 = !b64.invalid();
    // (for a body that is not base64: the rest of it, counted)
    let body = b64.get_mut();
    if !base64 {
        while body.error.is_none() {
            match body.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    if let Some(e) = &body.error {
        return Err(download_fail(&node, url, e));
    }
    let size = if base64 {
        measured?
    } else {
        crate::util::log_at!(
            Debug,
            "config drive for node {node} is not base64 encoded, assuming binary"
        );
        let (max, too_big) = limits(&node, limit);
        if body.n > max {
            return Err(too_big(body.n));
        }
        body.n
    };
    Ok(Drive {
        src: Source::Url { http, url, base64 },
        node,
        size,
    })
}

/// The largest size `limit` allows, and the error for a drive of `n`
/// bytes over it.
fn limits(node: &str, limit: Limit) -> (u64, Box<dyn Fn(u64) -> AgentError + '_>) {
    match limit {
        Limit::Ipa => (
            MAX_MB << 20,
            Box::new(move |n: u64| {
                deploy_err(format!(
                    "Config drive size exceeds maximum limit of 64MiB. Size of the given config \
                     drive is {} MiB for node {node}.",
                    n.div_ceil(1 << 20)
                ))
            }),
        ),
        Limit::Disk(disk) => {
            let limit = disk.min(MAX_PARTITION_DRIVE);
            (
                limit,
                Box::new(move |n: u64| {
                    deploy_err(format!(
                        "Config drive for node {node} is too large: {}{} MiB uncompressed, more \
                         than the {} MiB accepted for a partition image (the disk's size, at \
                         most {} MiB)",
                        if n > 1 << 32 { "over " } else { "" },
                        n.div_ceil(1 << 20),
                        limit >> 20,
                        MAX_PARTITION_DRIVE >> 20
                    ))
                }),
            )
        }
    }
}

/// Whether a drive written to a disk with `sector`-byte logical sectors is
/// rebuilt as FAT: always with `--config-drive-rebuild` (IPA's
/// `[DEFAULT]config_drive_rebuild`), else where isofs cannot read it
/// (see [`rebuild_as_vfat`]).
pub fn rebuilds(env: &Env, sector: u64) -> bool {
    env.config.config_drive_rebuild || sector > 2048
}

/// Stream the uncompressed drive `r` to `sink` in 1 MiB pieces; fails past
/// `limit`. Returns the size.
fn pump(
    r: &mut impl Read,
    node: &str,
    limit: Limit,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let (limit, too_big) = limits(node, limit);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(deploy_err(format!(
                    "Encountered error while decompressing and writing config drive for node \
                     {node}. Error: {e}"
                )))
            }
        };
        if n == 0 {
            break;
        }
        if total + n as u64 > limit {
            // count the rest for the message, without storing it
            let mut rest = total + n as u64;
            while let Ok(m) = r.read(&mut buf) {
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

/// The stream of a drive as a read-only disk, for the ISO 9660 walk that
/// sizes a partition image's configdrive partition before the drive is
/// on the disk: reads go forward through a pass, and the first
/// [`PREFIX`] bytes (where genisoimage puts the descriptors, path tables
/// and directories) are kept, so a walk that goes back within them costs
/// nothing; one that goes back further starts a new pass, at most
/// [`MAX_PASSES`] in all.
struct Streamed<'d, 'a> {
    drive: &'d Drive<'a>,
    st: RefCell<StreamedState<'a>>,
}

struct StreamedState<'a> {
    pass: Option<Pass<'a>>,
    pos: u64,
    prefix: Vec<u8>,
    passes: u32,
}

const PREFIX: usize = 2 << 20;
const MAX_PASSES: u32 = 16;

impl StreamedState<'_> {
    /// Read `buf` from the pass at its position.
    fn take(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let pass = self
            .pass
            .as_mut()
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        pass.read_exact(buf)?;
        if self.pos == self.prefix.len() as u64 && self.prefix.len() < PREFIX {
            let k = buf.len().min(PREFIX - self.prefix.len());
            self.prefix.extend_from_slice(&buf[..k]);
        }
        self.pos += buf.len() as u64;
        Ok(())
    }
}

impl Io for Streamed<'_, '_> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let mut st = self.st.borrow_mut();
        let (mut buf, mut off) = (buf, off);
        // what the prefix holds
        if off < st.prefix.len() as u64 {
            let k = (st.prefix.len() - off as usize).min(buf.len());
            buf[..k].copy_from_slice(&st.prefix[off as usize..off as usize + k]);
            buf = &mut buf[k..];
            off += k as u64;
        }
        if buf.is_empty() {
            return Ok(());
        }
        if st.pass.is_none() || off < st.pos {
            if st.passes == MAX_PASSES {
                return Err(std::io::Error::other(
                    "the drive's directories are too far apart to read as a stream",
                ));
            }
            st.passes += 1;
            st.pass = Some(
                self.drive
                    .open()
                    .map_err(|e| std::io::Error::other(e.into_details()))?,
            );
            st.pos = 0;
        }
        let mut skip = vec![0u8; (64 << 10).min((off - st.pos) as usize)];
        while st.pos < off {
            let k = skip.len().min((off - st.pos) as usize);
            st.take(&mut skip[..k])?;
        }
        st.take(buf)
    }

    fn write_all_at(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
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
    drive.each(|at, b| {
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
    crate::util::log_at!(
        Info,
        "Configdrive for node {node} successfully copied onto partition {part}"
    );
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
        crate::util::log_at!(
            Warn,
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
    crate::util::log_at!(
        Debug,
        "Adding config drive partition {} MiB to device: {dev} for node {node}",
        drive.mib()
    );
    let part = match existing.into_iter().next() {
        Some(p) => {
            crate::util::log_at!(
                Debug,
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
/// over. Here: the ISO just written is listed from the disk, a FAT with
/// the same tree is written over the partition (nothing is written when
/// it would not fit), and the files' contents are copied into it from one
/// more pass over the drive's stream ([`fill_files`]), not from the ISO
/// it overwrites; so memory holds the list of files, never their
/// contents. Should that pass fail for a partition image (not `strict`),
/// the ISO is written back, as IPA would leave it.
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
        crate::util::log_at!(
            Warn,
            "{path}: the config drive stays ISO 9660, which the instance may not read from \
             {sector}-byte sectors: no FAT12 or FAT16 fits {} MiB with them",
            len >> 20
        );
        return Ok(());
    }
    if drive.size > MAX_REBUILD {
        // (whole-disk drives never are: IPA's 64 MiB limit)
        crate::util::log_at!(
            Warn,
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
            crate::util::log_at!(
                Warn,
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
        crate::util::log_at!(Warn, "{path}: the config drive stays ISO 9660: {why}");
        Ok(())
    };
    let shape = crate::fs::iso9660::shape(&entries);
    if let Err(e) = crate::fs::fat::fat_check(len, sector, &shape) {
        let why = format!(
            "the {} files and directories of the drive cannot be a FAT filesystem of {} KiB \
             with {sector}-byte sectors: {e}",
            shape.len(),
            len >> 10
        );
        return skip(why);
    }
    let mut id = [0u8; 4];
    crate::sys::getrandom(&mut id).map_err(|e| fail(format!("a volume id: {e}")))?;
    let count = entries.len();
    let vol = crate::fs::fat::Volume {
        offset,
        len,
        sector,
        label: "CONFIG-2",
        volume_id: u32::from_le_bytes(id),
        hidden: offset / sector,
    };
    let (kind, at) =
        crate::fs::fat::format_tree(file, &vol, &shape).map_err(|e| fail(e.to_string()))?;
    drop(shape);
    if let Err(e) = fill_files(file, drive, &entries, &at) {
        if strict {
            return Err(fail(e));
        }
        crate::util::log_at!(
            Warn,
            "{path}: the config drive stays ISO 9660: copying its files: {e}"
        );
        return write_drive(file, offset, len, path, drive);
    }
    file.sync_all()
        .map_err(|e| AgentError::io(Kind::DeploymentError, format!("syncing {path}"), e))?;
    crate::util::log_at!(
        Info,
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

/// Copy each file of `entries` (the ISO's) to `at` (where the FAT keeps
/// it) from one pass over the drive, in the order of their extents. Two
/// files may share bytes (hard links): what the pass has already gone by
/// is copied from the file the FAT got it into, which holds all of it.
fn fill_files(
    file: &mut File,
    drive: &Drive,
    entries: &[crate::fs::iso9660::Entry],
    at: &[Option<u64>],
) -> std::result::Result<(), String> {
    let mut files: Vec<(u64, u64, u64)> = entries
        .iter()
        .zip(at)
        .filter(|(e, _)| !e.is_dir && e.size > 0)
        .filter_map(|(e, at)| Some((e.offset, e.size, (*at)?)))
        .collect();
    // the crate's one heapsort, not an ipnsort instantiated for this tuple
    crate::util::sort_unstable(&mut files);
    let mut pass = drive.open().map_err(|e| e.into_details())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    // the file whose extent reaches furthest: (start, disk offset)
    let mut furthest = (0u64, 0u64);
    let read_err = |pass: &Pass, e: std::io::Error| match pass.download_error() {
        Some(d) => format!("downloading the drive again: {d}"),
        None => format!("reading the drive again: {e}"),
    };
    for (start, size, to) in files {
        let mut done = 0u64;
        if start < pos {
            let (from_start, from) = furthest;
            let k = size.min(pos - start);
            let mut off = 0u64;
            while off < k {
                let n = (buf.len() as u64).min(k - off) as usize;
                let src = from + (start - from_start) + off;
                Io::read_exact_at(&*file, &mut buf[..n], src).map_err(|e| e.to_string())?;
                Io::write_all_at(file, &buf[..n], to + off).map_err(|e| e.to_string())?;
                off += n as u64;
            }
            done = k;
        } else {
            while pos < start {
                let n = (buf.len() as u64).min(start - pos) as usize;
                pass.read_exact(&mut buf[..n])
                    .map_err(|e| read_err(&pass, e))?;
                pos += n as u64;
            }
        }
        while done < size {
            let n = (buf.len() as u64).min(size - done) as usize;
            pass.read_exact(&mut buf[..n])
                .map_err(|e| read_err(&pass, e))?;
            Io::write_all_at(file, &buf[..n], to + done).map_err(|e| e.to_string())?;
            done += n as u64;
            pos += n as u64;
        }
        if start + size >= pos {
            furthest = (start, to);
        }
    }
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
    use serde_json::json;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn dec(gz: &[u8]) -> GzDecoder<&[u8]> {
        GzDecoder::new(gz)
    }

    #[test]
    fn pump_measures_and_limits() {
        let src = gz(&vec![7u8; 3 << 20]);
        let mut got = 0u64;
        assert_eq!(
            pump(&mut dec(&src), "n", Limit::Ipa, |at, b| {
                assert_eq!(at, got);
                got += b.len() as u64;
                Ok(())
            })
            .unwrap(),
            3 << 20
        );
        let big = gz(&vec![0u8; (64 << 20) + 1]);
        let e = pump(&mut dec(&big), "n", Limit::Ipa, |_, _| Ok(())).unwrap_err();
        assert!(e
            .details
            .starts_with("Config drive size exceeds maximum limit of 64MiB"));
        assert!(e.details.contains("65 MiB"), "{}", e.details);
        // exactly 64 MiB is allowed, as in IPA (ceil MiB > 64 fails)
        let edge = gz(&vec![0u8; 64 << 20]);
        assert!(pump(&mut dec(&edge), "n", Limit::Ipa, |_, _| Ok(())).is_ok());
        assert!(pump(&mut dec(b"not gzip"), "n", Limit::Ipa, |_, _| Ok(()))
            .unwrap_err()
            .details
            .contains("decompressing"));
        // partition images: no 64 MiB limit, only the disk's size
        assert_eq!(
            pump(&mut dec(&big), "n", Limit::Disk(1 << 30), |_, _| Ok(())).unwrap(),
            (64 << 20) + 1
        );
        let e = pump(&mut dec(&big), "n", Limit::Disk(32 << 20), |_, _| Ok(())).unwrap_err();
        assert!(
            e.details
                .contains("too large: 65 MiB uncompressed, more than the 32 MiB accepted"),
            "{}",
            e.details
        );
    }

    fn env_test(f: impl FnOnce(&Env)) {
        let cfg = crate::config::Config {
            root: std::env::temp_dir().join("ironic-agent-no-such-root"),
            ..Default::default()
        };
        let owned = crate::config::OwnedEnv::new(cfg);
        f(&owned.env());
    }

    #[test]
    fn inline_drives_are_measured_in_place() {
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        let text = Value::String(crate::util::base64_encode(&gz(&data)));
        env_test(|env| {
            let d = Drive::load(env, &text, Limit::Ipa).unwrap();
            assert_eq!(d.size, 3 << 20);
            assert_eq!(d.mib(), 3);
            let mut out = Vec::new();
            d.each(|at, b| {
                assert_eq!(at, out.len() as u64);
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(out, data);
            // base64 is checked before anything is decompressed
            for bad in [json!("H4sI!"), json!("Zm9v\u{e9}"), json!("Z")] {
                let e = Drive::load(env, &bad, Limit::Ipa).err().unwrap();
                assert!(
                    e.details.ends_with(
                        "is not base64 encoded or the content is malformed. Error: Incorrect \
                         padding or invalid character."
                    ),
                    "{}",
                    e.details
                );
            }
            let e = Drive::load(env, &json!(5), Limit::Ipa).err().unwrap();
            assert!(e.details.ends_with("TypeError: expected a string, got 5."));
            let e = Drive::load(env, &json!("Zm9v"), Limit::Ipa).err().unwrap();
            assert!(e.details.contains("decompressing"), "{}", e.details);
        });
    }

    #[test]
    fn streamed_reads_match_the_drive() {
        let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i * 7 % 253) as u8).collect();
        let text = Value::String(crate::util::base64_encode(&gz(&data)));
        env_test(|env| {
            let d = Drive::load(env, &text, Limit::Ipa).unwrap();
            let io = Streamed {
                drive: &d,
                st: RefCell::new(StreamedState {
                    pass: None,
                    pos: 0,
                    prefix: Vec::new(),
                    passes: 0,
                }),
            };
            let at = |off: u64, len: usize| {
                let mut b = vec![0u8; len];
                io.read_exact_at(&mut b, off).unwrap();
                assert_eq!(b, data[off as usize..off as usize + len], "at {off}");
            };
            // forward, back within the prefix, across its end, forward
            at(16 * 2048, 2048);
            at(100_000, 5000);
            at(0, 100);
            at(PREFIX as u64 - 10, 20);
            at(3 << 20, 4096);
            assert_eq!(io.st.borrow().passes, 1);
            // back past the prefix: a new pass
            at(PREFIX as u64 + 1000, 10);
            assert_eq!(io.st.borrow().passes, 2);
            let mut b = [0u8; 10];
            assert!(io.read_exact_at(&mut b, 5 << 20).is_err());
            // too many passes is an error, not a hang
            for _ in 0..MAX_PASSES {
                let _ = io.read_exact_at(&mut b, 4 << 20);
                let _ = io.read_exact_at(&mut b, 3 << 20);
            }
            assert!(io.st.borrow().passes <= MAX_PASSES);
            assert!(io.read_exact_at(&mut b, 3 << 20).is_err());
        });
    }

    #[test]
    fn urls_detected_like_ipa() {
        assert!(is_http_url("HTTPS://x/y"));
        assert!(is_http_url("http://x"));
        assert!(!is_http_url("H4sIAAAA"));
        assert!(!is_http_url("ht"));
    }
}
