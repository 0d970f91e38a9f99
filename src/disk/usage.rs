//! Whether the running system uses a block device: mounted, swap, or held
//! by another block device. Checked before anything destructive (erase,
//! deploy, RAID); opening with `O_EXCL` checks again in the kernel.

use super::list::{partition_names, BlockDevice};
use crate::error::{AgentError, Result};
use crate::root::Root;

/// Refuse a device that the running system uses: mounted (by path in
/// /proc/mounts, by major:minor in /proc/self/mountinfo, so `/dev/root`
/// and renamed mapper devices are caught), active swap (/proc/swaps), or
/// held by another block device (/sys/block/<d>/holders: device-mapper,
/// md, bcache), for the device itself and each of its partitions.
pub fn check_not_in_use(root: &Root, dev: &BlockDevice) -> Result<()> {
    let kname = if dev.kname.is_empty() {
        dev.name.trim_start_matches("/dev/").to_string()
    } else {
        dev.kname.clone()
    };
    // (kernel name, its sysfs directory)
    let mut members = vec![];
    if root.exists(format!("/sys/block/{kname}")) {
        members.push((kname.clone(), format!("/sys/block/{kname}")));
        for p in partition_names(root, &kname) {
            members.push((p.clone(), format!("/sys/block/{kname}/{p}")));
        }
    } else {
        // a partition: its directory sits under its disk
        let sys = root
            .list("/sys/block")
            .into_iter()
            .map(|d| format!("/sys/block/{d}/{kname}"))
            .find(|p| root.exists(format!("{p}/partition")))
            .unwrap_or_else(|| format!("/sys/class/block/{kname}"));
        members.push((kname.clone(), sys));
    }
    let mounts = root.read("/proc/mounts").unwrap_or_default();
    let mountinfo = root.read("/proc/self/mountinfo").unwrap_or_default();
    let swaps = root.read("/proc/swaps").unwrap_or_default();
    for (k, sys) in &members {
        let path = format!("/dev/{k}");
        let devno = root.read_nonempty(format!("{sys}/dev"));
        if let Some(on) = mounted_at(&mounts, &mountinfo, &path, devno.as_deref()) {
            return Err(in_use(&dev.name, &format!("{path} is mounted on {on}")));
        }
        if swaps
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(path.as_str()))
        {
            return Err(in_use(&dev.name, &format!("{path} is in use as swap")));
        }
        let holders = root.list(format!("{sys}/holders"));
        if !holders.is_empty() {
            return Err(in_use(
                &dev.name,
                &format!("{path} is held by {}", holders.join(", ")),
            ));
        }
    }
    Ok(())
}

fn in_use(dev: &str, why: &str) -> AgentError {
    AgentError::block_device(format!("{dev} is in use: {why}"))
}

/// Where `path` (or the device numbered `devno`, "8:1") is mounted.
fn mounted_at(mounts: &str, mountinfo: &str, path: &str, devno: Option<&str>) -> Option<String> {
    for l in mounts.lines() {
        let mut f = l.split_whitespace();
        if f.next() == Some(path) {
            return f.next().map(unescape_octal);
        }
    }
    let devno = devno?;
    for l in mountinfo.lines() {
        // id parent major:minor root mountpoint ...
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 4 && f[2] == devno {
            return Some(unescape_octal(f[4]));
        }
    }
    None
}

/// /proc/mounts escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_lookup() {
        let mounts = "/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 /mnt/with\\040space xfs rw 0 0\n";
        let info = "22 1 8:3 / /boot rw - ext4 /dev/root rw\n";
        assert_eq!(
            mounted_at(mounts, info, "/dev/sda2", None).as_deref(),
            Some("/")
        );
        assert_eq!(
            mounted_at(mounts, info, "/dev/sdb1", None).as_deref(),
            Some("/mnt/with space")
        );
        assert_eq!(
            mounted_at(mounts, info, "/dev/sda3", Some("8:3")).as_deref(),
            Some("/boot")
        );
        assert_eq!(mounted_at(mounts, info, "/dev/sdc", Some("8:32")), None);
    }
}
