//! md arrays as the kernel runs them: listed from sysfs
//! (`/sys/block/mdN/md/`), started and stopped through the md ioctls
//! (`crate::sys::md`) the way mdadm does for native v1.x metadata:
//!
//! 1. `mdN` written to `/sys/module/md_mod/parameters/new_array` (the
//!    kernel creates the device; devtmpfs its node);
//! 2. `/dev/mdN` opened, `GET_ARRAY_INFO` answers ENODEV (nothing there);
//! 3. `SET_ARRAY_INFO` with only the version: the members' superblocks
//!    describe the array;
//! 4. `ADD_NEW_DISK` per member: the kernel opens it exclusively and checks
//!    its superblock against the first one's;
//! 5. `RUN_ARRAY`: the kernel validates the set, loads the personality
//!    (its own request_module "md-level-N") and starts the array, and a
//!    resync when the superblocks say it is not in sync.
//!
//! Any failure after step 3 ends with `STOP_ARRAY`, which releases the
//! members bound so far: no half-configured md device stays behind
//! (the next `SET_ARRAY_INFO` would get EBUSY).
//!
//! Names: the kernel knows `mdN` only. `/dev/md/<name>` links are what
//! udev or mdadm add; this ramdisk has neither, so [`link_name`] makes
//! them.

use super::{Superblock, Version, SB_BYTES};
use crate::error::{AgentError, Kind, Result};
use crate::root::Root;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// One member of a running (or inactive) array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Kernel name of the member ("vda1", "nvme0n1p2", "sdb").
    pub kname: String,
    /// Its slot, `None` for spares and faulty members.
    pub slot: Option<u32>,
}

/// An md device with a configuration (`array_state` other than "clear").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Array {
    pub kname: String,
    /// "raid1", ...; empty while inactive.
    pub level: String,
    /// sysfs `md/uuid` (8-4-4-4-12).
    pub uuid: String,
    /// Bytes.
    pub size: u64,
    /// In slot order, spares last.
    pub members: Vec<Member>,
}

impl Array {
    pub fn path(&self) -> String {
        format!("/dev/{}", self.kname)
    }
}

/// sysfs reads with the path formatted inside: one copy of the
/// formatting, the call and the path's drop instead of one per call site.
#[inline(never)]
pub fn sys_read(root: &Root, path: std::fmt::Arguments<'_>) -> Option<String> {
    root.read(std::fmt::format(path))
}

#[inline(never)]
pub fn sys_u64(root: &Root, path: std::fmt::Arguments<'_>) -> Option<u64> {
    root.read_u64(std::fmt::format(path))
}

#[inline(never)]
pub fn sys_exists(root: &Root, path: std::fmt::Arguments<'_>) -> bool {
    root.exists(std::fmt::format(path))
}

/// Is `kname` an md device (it has an `md/` directory in sysfs)?
pub fn is_md(root: &Root, kname: &str) -> bool {
    sys_exists(root, format_args!("/sys/block/{kname}/md"))
}

/// The array `kname`, when the md device exists and holds a configuration.
pub fn read(root: &Root, kname: &str) -> Option<Array> {
    let md = format!("/sys/block/{kname}/md");
    if !root.exists(&md) {
        return None;
    }
    if sys_read(root, format_args!("{md}/array_state")).as_deref() == Some("clear") {
        return None;
    }
    let mut members = vec![];
    for e in &root.list(&md) {
        let Some(name) = e.strip_prefix("dev-") else {
            continue;
        };
        members.push(Member {
            kname: root
                .link_name(format!("{md}/{e}/block"))
                .unwrap_or_else(|| name.to_string()),
            slot: sys_u64(root, format_args!("{md}/{e}/slot")).map(|n| n as u32),
        });
    }
    // slot order, spares (None) last
    crate::util::sort_small_by(&mut members, |a, b| {
        a.slot.unwrap_or(u32::MAX).cmp(&b.slot.unwrap_or(u32::MAX))
    });
    Some(Array {
        kname: kname.to_string(),
        level: sys_read(root, format_args!("{md}/level")).unwrap_or_default(),
        uuid: sys_read(root, format_args!("{md}/uuid")).unwrap_or_default(),
        size: sys_u64(root, format_args!("/sys/block/{kname}/size")).unwrap_or(0) * 512,
        members,
    })
}

/// Every configured md array, in kernel-name order.
pub fn list(root: &Root) -> Vec<Array> {
    let mut names = root.list("/sys/block");
    // the md ones keep their relative order among the others (a stable
    // sort): filtered in the loop, no retain
    crate::util::sort_small_by(&mut names, |a, b| crate::disk::list::natural_cmp(a, b));
    let mut out = vec![];
    for n in &names {
        if !n.starts_with("md") {
            continue;
        }
        if let Some(a) = read(root, n) {
            out.push(a);
        }
    }
    out
}

/// The whole disk a block device lives on: "vda1" → "vda", "md0p1" →
/// "md0", a whole disk → itself.
pub fn parent_disk(root: &Root, kname: &str) -> String {
    if sys_exists(root, format_args!("/sys/block/{kname}")) {
        return kname.to_string();
    }
    let mut disks = root.list("/sys/block");
    match disks
        .iter()
        .position(|d| sys_exists(root, format_args!("/sys/block/{d}/{kname}/partition")))
    {
        Some(i) => disks.swap_remove(i),
        None => kname.to_string(),
    }
}

/// The disks holding an array's members (IPA's `get_holder_disks`), as
/// "/dev/<disk>", in member order, without repeats.
pub fn holders(root: &Root, a: &Array) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for m in &a.members {
        let d = format!("/dev/{}", parent_disk(root, &m.kname));
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// md's background resyncs, held back ("frozen") while an image is
/// written to an array and let go ("idle") when the guard drops. Right
/// after `create_configuration` or `apply_configuration` the new arrays
/// resync and take the disks' bandwidth (and, in a VM, CPU) from the
/// image; md throttles a resync only when it notices other I/O, and then
/// still moves the disks' heads to it. What the image writes is redundant
/// as it lands: raid1 writes every mirror, and raid5/6 write whole stripes
/// past the resync point (raid5.c: "reconstruct-write" when `recovery_cp`
/// is below the stripe). The resync only makes the blocks nobody wrote
/// agree; it resumes from md's checkpoint (`recovery_cp`, saved when a
/// sync is interrupted: drivers/md/md.c md_do_sync) when the write is
/// done. Every array's, not only the target's: in the ramdisk they are
/// all the deploy's, and they share its disks or at least its CPUs.
pub struct Paused<'a> {
    root: &'a Root,
    arrays: Vec<String>,
}

/// When `kname` is an array: freeze every resync (or rebuild) md runs;
/// checks and repairs an operator started are left alone.
pub fn pause_resync<'a>(root: &'a Root, kname: &str) -> Paused<'a> {
    let mut arrays = vec![];
    if is_md(root, kname) {
        for md in &root.list("/sys/block") {
            let action = format!("/sys/block/{md}/md/sync_action");
            if !matches!(root.read(&action).as_deref(), Some("resync" | "recover")) {
                continue;
            }
            match std::fs::write(root.path(&action), "frozen") {
                Ok(()) => {
                    crate::util::log_at!(
                        Info,
                        "holding back the resync of /dev/{md} while the image is written"
                    );
                    arrays.push(action);
                }
                Err(e) => {
                    crate::util::log_at!(Warn, "could not hold back the resync of /dev/{md}: {e}")
                }
            }
        }
    }
    Paused { root, arrays }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        for action in &self.arrays {
            // "idle" clears md's frozen bit and asks for a sync check: the
            // resync starts again where it stopped
            match std::fs::write(self.root.path(action), "idle") {
                Ok(()) => crate::util::log_at!(Info, "resuming the resync ({action})"),
                Err(e) => crate::util::log_at!(Error, "resuming the resync ({action}): {e}"),
            }
        }
    }
}

/// The size of a block device in 512-byte sectors, from sysfs.
#[inline(never)]
pub fn sectors(root: &Root, kname: &str) -> Option<u64> {
    sys_u64(root, format_args!("/sys/class/block/{kname}/size"))
        .or_else(|| {
            let disk = parent_disk(root, kname);
            sys_u64(root, format_args!("/sys/block/{disk}/{kname}/size"))
        })
        .or_else(|| sys_u64(root, format_args!("/sys/block/{kname}/size")))
}

/// Read the valid v1.x superblocks of the block device `kname`.
pub fn superblocks(root: &Root, kname: &str) -> Vec<super::Found> {
    let Ok(f) = File::open(root.path(format!("/dev/{kname}"))) else {
        return vec![];
    };
    let size = match crate::sys::block_device_size(&f) {
        Ok(n) => n,
        Err(_) => match f.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => return vec![],
        },
    };
    let read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        let n = f.read_at(&mut b, off)?;
        b.truncate(n);
        Ok(b)
    };
    super::find(size, &read)
}

/// The array's name from a member's superblock (IPA reads it with
/// `mdadm --detail`: `Name : host:name`): `None` when no member's
/// superblock can be read.
pub fn volume_name(root: &Root, a: &Array) -> Option<String> {
    for m in &a.members {
        for f in &superblocks(root, &m.kname) {
            if a.uuid.is_empty() || f.sb.uuid_sysfs() == a.uuid {
                return Some(f.sb.name());
            }
        }
    }
    None
}

/// A member's superblock as the kernel keeps it (for tests and logs).
#[inline(never)]
pub fn member_superblock(root: &Root, kname: &str) -> Option<Superblock> {
    superblocks(root, kname).into_iter().next().map(|f| f.sb)
}

/// "major:minor" of a block device from sysfs.
pub fn dev_numbers(root: &Root, kname: &str) -> Option<(u32, u32)> {
    let text = sys_read(root, format_args!("/sys/class/block/{kname}/dev")).or_else(|| {
        let disk = parent_disk(root, kname);
        sys_read(root, format_args!("/sys/block/{disk}/{kname}/dev"))
    })?;
    let (a, b) = text.split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// True when `mdN` can take a new array: no such device, or one without a
/// configuration.
pub fn is_free(root: &Root, kname: &str) -> bool {
    !sys_exists(root, format_args!("/sys/block/{kname}")) || read(root, kname).is_none()
}

/// The first free name among `mdN` for N in `numbers` (a `dyn` iterator:
/// one copy for the ascending and the descending callers).
pub fn free_name(root: &Root, numbers: &mut dyn Iterator<Item = u32>) -> Option<String> {
    for n in numbers {
        let k = format!("md{n}");
        if is_free(root, &k) {
            return Some(k);
        }
    }
    None
}

/// `/dev/md/<name>` → `../mdN`, as udev's mdadm rules (or mdadm itself
/// without udev) make it. Failures are logged, not fatal: nothing in the
/// agent opens arrays by these links.
pub fn link_name(root: &Root, md: &str, name: &str) {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return;
    }
    let dir = root.path("/dev/md");
    let _ = std::fs::create_dir_all(&dir);
    // no '/' in the name: the link sits in /dev/md
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(format!("../{md}"), &link) {
        crate::util::log_at!(Warn, "linking /dev/md/{name} to /dev/{md}: {e}");
    }
}

/// Drop `/dev/md/*` links that point at `md`.
pub fn unlink_names(root: &Root, md: &str) {
    let dir = root.path("/dev/md");
    for n in &root.list("/dev/md") {
        let p = dir.join(n);
        if std::fs::read_link(&p).is_ok_and(|t| t.file_name().is_some_and(|f| f == md)) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// What starts and stops arrays: the kernel ([`Sysfs`]), or a stand-in in
/// unit tests, where disks are regular files.
pub trait Kernel {
    /// Start `md` ("md0") from members whose superblocks are written.
    fn start(&self, md: &str, version: Version, members: &[&str]) -> Result<()>;
    /// Stop `md` and release its members.
    fn stop(&self, md: &str) -> Result<()>;
}

/// The running kernel, through sysfs and the md ioctls.
pub struct Sysfs<'a>(pub &'a Root);

#[cold]
#[inline(never)]
fn raid_err(details: String) -> AgentError {
    AgentError::new(Kind::SoftwareRAIDError, details)
}

/// A `SoftwareRAIDError` with its message formatted out of line (one
/// copy of the formatting and the String's move, not one per call site).
#[cold]
#[inline(never)]
pub fn raid_fmt(details: std::fmt::Arguments<'_>) -> AgentError {
    raid_err(std::fmt::format(details))
}

/// A `SoftwareRAIDError` "<what>: <e>": one out-of-line place that
/// formats and drops the OS error, instead of every call site.
#[cold]
#[inline(never)]
pub fn io_err(what: std::fmt::Arguments<'_>, e: io::Error) -> AgentError {
    io_why(what, e, &[])
}

/// [`io_err`] with a hint after the OS error: the text `why` pairs with
/// its errno, if any does ("<what>: <e><hint>").
#[cold]
#[inline(never)]
fn io_why(what: std::fmt::Arguments<'_>, e: io::Error, why: &[(i32, &str)]) -> AgentError {
    let mut hint = "";
    for &(errno, text) in why {
        if e.raw_os_error() == Some(errno) {
            hint = text;
        }
    }
    raid_fmt(format_args!("{what}: {e}{hint}"))
}

impl Sysfs<'_> {
    fn open_md(&self, md: &str, excl: bool) -> Result<File> {
        let path = self.0.path(format!("/dev/{md}"));
        // devtmpfs creates the node when the kernel adds the device; give
        // it a moment on a busy machine
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut o = OpenOptions::new();
            o.read(true).write(true);
            if excl {
                o.custom_flags(libc::O_EXCL);
            }
            match o.open(&path) {
                Ok(f) => return Ok(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(io_err(format_args!("opening /dev/{md}"), e)),
            }
        }
    }
}

impl Kernel for Sysfs<'_> {
    fn start(&self, md: &str, version: Version, members: &[&str]) -> Result<()> {
        let root = self.0;
        if !root.exists("/sys/module/md_mod") {
            return Err(raid_err(
                "the kernel's md driver (md_mod) is not loaded: no software RAID without it".into(),
            ));
        }
        match std::fs::write(root.path("/sys/module/md_mod/parameters/new_array"), md) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(io_err(format_args!("creating /dev/{md} (new_array)"), e)),
        }
        let f = self.open_md(md, true)?;
        match crate::sys::md::get_array_info(&f) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Ok(_) => return Err(raid_fmt(format_args!("/dev/{md} already holds an array"))),
            Err(e) => return Err(io_err(format_args!("asking /dev/{md} for its array"), e)),
        }
        crate::sys::md::set_array_version(&f, 1, version.minor())
            .map_err(|e| io_err(format_args!("setting up /dev/{md} (SET_ARRAY_INFO)"), e))?;
        if let Err(e) = bind(root, &f, md, members) {
            if let Err(e) = crate::sys::md::stop_array(&f) {
                crate::util::log_at!(
                    Error,
                    "releasing the members of /dev/{md} after a failure: {e}"
                );
            }
            return Err(e);
        }
        // start_ro=1 would leave it auto-read-only (no resync); EBUSY: it
        // is read-write already
        let _ = crate::sys::md::restart_array_rw(&f);
        Ok(())
    }

    fn stop(&self, md: &str) -> Result<()> {
        let f = self.open_md(md, false)?;
        // mdadm's Manage_stop: 25 tries 200 ms apart while busy (a udev
        // probe, a partition scan)
        let mut tries = 0;
        loop {
            match crate::sys::md::stop_array(&f) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 25 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(io_why(
                        format_args!("stopping /dev/{md}"),
                        e,
                        &[(
                            libc::EBUSY,
                            " (still open: mounted, or held by another device)",
                        )],
                    ));
                }
            }
        }
    }
}

/// [`Sysfs::start`]'s members added and the array run; on failure the
/// caller releases what was bound.
fn bind(root: &Root, f: &File, md: &str, members: &[&str]) -> Result<()> {
    for m in members {
        let Some((major, minor)) = dev_numbers(root, m) else {
            return Err(raid_fmt(format_args!(
                "adding /dev/{m} to /dev/{md}: the device is gone"
            )));
        };
        if let Err(e) = crate::sys::md::add_new_disk(f, major, minor) {
            return Err(io_why(
                format_args!("adding /dev/{m} to /dev/{md}"),
                e,
                &[
                    (
                        libc::EINVAL,
                        " (no valid md superblock, or one of another array)",
                    ),
                    (libc::EBUSY, " (in use, or a slot taken twice)"),
                ],
            ));
        }
    }
    crate::sys::md::run_array(f).map_err(|e| {
        io_why(
            format_args!("starting /dev/{md} (RUN_ARRAY)"),
            e,
            &[(
                libc::EINVAL,
                " (the kernel refused the set: see its log; a personality module that could \
                 not be loaded, or members that do not agree)",
            )],
        )
    })
}

/// Zero every md superblock (any version) on `kname` (what
/// `mdadm --zero-superblock` does, 4 KiB at each location that carries the
/// magic), through `/dev/<kname>` under `root`. Returns the byte offsets
/// cleared.
pub fn zero_superblocks(root: &Root, kname: &str) -> Result<Vec<u64>> {
    let name = format!("/dev/{kname}");
    // exclusively, as mdadm: never under a running array, a mount, dm
    let f = open_rw(root, &name, true)
        .map_err(|e| io_err(format_args!("opening {name} to clear its md superblock"), e))?;
    let size = crate::sys::block_device_size(&f)
        .or_else(|_| f.metadata().map(|m| m.len()))
        .map_err(|e| io_err(format_args!("reading the size of {name}"), e))?;
    zero_superblocks_in(&f, 0, size, &name)
}

/// Open a device (`path` under the root) read-write; with `excl` and when
/// it is a block device, exclusively (O_EXCL: the kernel refuses while it
/// or one of its partitions is mounted or held by md, LVM or dm). One
/// copy for every RAID caller.
#[inline(never)]
pub fn open_rw(root: &Root, path: &str, excl: bool) -> io::Result<File> {
    let path = root.path(path);
    let excl = excl
        && std::fs::metadata(&path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if excl {
        o.custom_flags(libc::O_EXCL);
    }
    o.open(&path)
}

/// [`zero_superblocks`] inside a window `[base, base+size)` of an open
/// device (a partition reached through its disk).
pub fn zero_superblocks_in(f: &File, base: u64, size: u64, name: &str) -> Result<Vec<u64>> {
    let read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        let n = f.read_at(&mut b, base + off)?;
        b.truncate(n);
        Ok(b)
    };
    let spots = super::magic_offsets(size, &read);
    let zero = vec![0u8; SB_BYTES];
    for &off in &spots {
        let n = (size - off).min(SB_BYTES as u64) as usize;
        f.write_all_at(&zero[..n], base + off)
            .map_err(|e| io_err(format_args!("clearing the md superblock of {name}"), e))?;
    }
    if !spots.is_empty() {
        f.sync_all()
            .map_err(|e| io_err(format_args!("flushing {name}"), e))?;
        if crate::sys::is_block_device(f) {
            let _ = crate::sys::flush_buffers(f);
        }
    }
    Ok(spots)
}

/// The ramdisk's host name, mdadm's default homehost.
fn homehost(root: &Root) -> Option<String> {
    root.read_nonempty("/proc/sys/kernel/hostname")
        .filter(|h| h != "(none)")
}

/// A new array's identity, as `mdadm --create --name NAME` gives it: a
/// random UUID, "homehost:NAME", created now.
pub fn new_identity(root: &Root, name: &str) -> Result<super::Identity> {
    let mut set_uuid = [0u8; 16];
    crate::sys::getrandom(&mut set_uuid)
        .map_err(|e| io_err(format_args!("generating an md UUID"), e))?;
    let ctime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(super::Identity {
        set_uuid,
        set_name: super::set_name(homehost(root).as_deref(), name),
        ctime,
    })
}

/// Clear stale md superblocks in a member's window `[offset, offset+len)`
/// of an open disk (mdadm's `Kill` before `--create`) and write its new
/// one there: through the disk, so the partition's device node need not
/// exist yet. The caller syncs.
pub fn write_member(f: &File, name: &str, offset: u64, len: u64, sb: &Superblock) -> Result<()> {
    zero_superblocks_in(f, offset, len, name)?;
    f.write_all_at(sb.as_bytes(), offset + sb.super_offset() * 512)
        .map_err(|e| io_err(format_args!("writing the md superblock of {name}"), e))
}

/// One member of a new array: a window of an open disk, and the kernel
/// name the window has as a partition.
pub struct NewMember<'a> {
    pub disk: &'a File,
    pub kname: String,
    pub offset: u64,
    pub len: u64,
}

/// Make and start a new array, as `mdadm --create MD --force --run
/// --metadata=1.x --level LEVEL --name NAME` does: the superblocks written
/// (the members in slot order, a full resync to follow for redundant
/// levels), then the array started and `/dev/md/NAME` linked. Returns its
/// size in sectors.
pub fn create(
    root: &Root,
    kernel: &dyn Kernel,
    md: &str,
    version: Version,
    level: i32,
    name: &str,
    members: &[NewMember],
) -> Result<u64> {
    let mut sizes: Vec<u64> = vec![];
    for m in members {
        sizes.push(m.len / 512);
    }
    let plan = super::plan(version, level, &sizes).map_err(|e| raid_err(e.into_details()))?;
    let id = new_identity(root, name)?;
    let mut knames: Vec<&str> = vec![];
    for (i, m) in members.iter().enumerate() {
        let mut dev_uuid = [0u8; 16];
        crate::sys::getrandom(&mut dev_uuid)
            .map_err(|e| io_err(format_args!("generating an md UUID"), e))?;
        write_member(
            m.disk,
            &m.kname,
            m.offset,
            m.len,
            &plan.superblock(&id, i, dev_uuid),
        )?;
        m.disk
            .sync_all()
            .map_err(|e| io_err(format_args!("flushing /dev/{}", m.kname), e))?;
        knames.push(&m.kname);
    }
    kernel.start(md, version, &knames)?;
    crate::util::log_at!(
        Info,
        "created /dev/{md}: {} \"{name}\" on {}, {} sectors",
        super::level_name(level),
        knames.join(" "),
        plan.array_sectors
    );
    link_name(root, md, name);
    Ok(plan.array_sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(root: &std::path::Path, p: &str, v: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }

    #[test]
    fn arrays_from_sysfs() {
        let dir = std::env::temp_dir().join(format!("md-array-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        w(&dir, "/sys/block/vda/vda1/partition", "1");
        w(&dir, "/sys/block/vda/vda1/dev", "254:1");
        w(&dir, "/sys/block/vdb/vdb1/partition", "1");
        w(&dir, "/sys/block/md127/size", "1024");
        w(&dir, "/sys/block/md127/md/level", "raid1");
        w(&dir, "/sys/block/md127/md/array_state", "clean");
        w(&dir, "/sys/block/md127/md/metadata_version", "1.2");
        w(
            &dir,
            "/sys/block/md127/md/uuid",
            "11111111-1111-1111-1111-111111111111",
        );
        w(&dir, "/sys/block/md127/md/raid_disks", "2");
        for (m, slot) in [("vdb1", "1"), ("vda1", "0")] {
            let d = dir.join(format!("sys/block/md127/md/dev-{m}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("slot"), slot).unwrap();
        }
        // an md device without a configuration
        w(&dir, "/sys/block/md0/md/array_state", "clear");
        let root = Root::new(&dir);
        let all = list(&root);
        assert_eq!(all.len(), 1);
        let a = &all[0];
        assert_eq!(a.path(), "/dev/md127");
        assert_eq!(a.size, 512 * 1024);
        let m: Vec<&str> = a.members.iter().map(|m| m.kname.as_str()).collect();
        assert_eq!(m, vec!["vda1", "vdb1"]);
        assert_eq!(holders(&root, a), vec!["/dev/vda", "/dev/vdb"]);
        assert_eq!(parent_disk(&root, "vdb1"), "vdb");
        assert_eq!(dev_numbers(&root, "vda1"), Some((254, 1)));
        assert!(is_free(&root, "md0") && is_free(&root, "md1") && !is_free(&root, "md127"));
        assert_eq!(
            free_name(&root, &mut (120..=127).rev()),
            Some("md126".into())
        );
        assert!(is_md(&root, "md127") && !is_md(&root, "vda"));
        // a resync is held back while an image is written to an array, and
        // let go after; an idle one, or a write to a plain disk, touches none
        w(&dir, "/sys/block/md127/md/sync_action", "resync");
        {
            let _p = pause_resync(&root, "md127");
            assert_eq!(
                root.read("/sys/block/md127/md/sync_action").unwrap(),
                "frozen"
            );
        }
        assert_eq!(
            root.read("/sys/block/md127/md/sync_action").unwrap(),
            "idle"
        );
        assert!(pause_resync(&root, "md127").arrays.is_empty());
        assert!(pause_resync(&root, "vda").arrays.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zeroing_in_a_window() {
        let dir = std::env::temp_dir().join(format!("md-zero-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("disk");
        let sectors = 614400u64;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len((1 << 20) + sectors * 512).unwrap();
        let base = 1 << 20;
        let plan = super::super::plan(Version::V1_0, 1, &[sectors, sectors]).unwrap();
        let id = super::super::Identity {
            set_uuid: [5; 16],
            set_name: super::super::set_name(None, "esp"),
            ctime: 1,
        };
        let sb = plan.superblock(&id, 0, [6; 16]);
        f.write_all_at(&sb.encode(), base + sb.super_offset() * 512)
            .unwrap();
        f.write_all_at(b"data", base).unwrap();
        let spots = zero_superblocks_in(&f, base, sectors * 512, "t").unwrap();
        assert_eq!(spots, vec![sb.super_offset() * 512]);
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, base).unwrap();
        assert_eq!(&b, b"data", "only the superblock is cleared");
        assert!(zero_superblocks_in(&f, base, sectors * 512, "t")
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
