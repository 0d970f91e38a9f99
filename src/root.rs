//! The root prefix: every /sys, /proc, /dev, /run and /etc path the agent
//! reads or writes goes through one [`Root`]. On a ramdisk it is `/`; tests
//! and demos point `--root` at a fixture tree whose disks are sparse files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }

    /// True when the root is the real `/`: ioctls and syscalls that act on
    /// the whole machine (reboot, sync, efivarfs) are only attempted then.
    pub fn is_real(&self) -> bool {
        self.0 == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Map an absolute machine path ("/sys/block") into the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        self.path_of(abs.as_ref())
    }

    // The bodies below take &Path: one copy each, not one per argument
    // type (String, &str, PathBuf, ...) the generic front ends are called
    // with.
    #[inline(never)]
    fn path_of(&self, abs: &Path) -> PathBuf {
        if self.is_real() {
            return abs.to_path_buf();
        }
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// Map a path under the root back to the machine path it stands for.
    pub fn unmap(&self, p: &Path) -> PathBuf {
        if self.is_real() {
            return p.to_path_buf();
        }
        match p.strip_prefix(&self.0) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        }
    }

    /// Read a small text file (sysfs attribute), trimmed. `None` when it is
    /// missing or unreadable: sysfs attributes come and go with drivers.
    pub fn read(&self, abs: impl AsRef<Path>) -> Option<String> {
        self.read_of(abs.as_ref())
    }

    #[inline(never)]
    fn read_of(&self, abs: &Path) -> Option<String> {
        fs::read_to_string(self.path_of(abs))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Like [`Root::read`] but `None` for empty values too.
    pub fn read_nonempty(&self, abs: impl AsRef<Path>) -> Option<String> {
        self.read(abs).filter(|s| !s.is_empty())
    }

    pub fn read_u64(&self, abs: impl AsRef<Path>) -> Option<u64> {
        self.read(abs).and_then(|s| s.parse().ok())
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.exists_of(abs.as_ref())
    }

    #[inline(never)]
    fn exists_of(&self, abs: &Path) -> bool {
        self.path_of(abs).exists()
    }

    /// Sorted entry names of a directory; empty when it does not exist.
    pub fn list(&self, abs: impl AsRef<Path>) -> Vec<String> {
        self.list_of(abs.as_ref())
    }

    #[inline(never)]
    fn list_of(&self, abs: &Path) -> Vec<String> {
        let mut v: Vec<String> = match fs::read_dir(self.path_of(abs)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        };
        crate::util::sort_small(&mut v);
        v
    }

    /// The target of a symlink, as written (may be relative).
    pub fn read_link(&self, abs: impl AsRef<Path>) -> io::Result<PathBuf> {
        fs::read_link(self.path(abs))
    }

    /// Basename of a symlink's target ("driver" -> "virtio_net").
    pub fn link_name(&self, abs: impl AsRef<Path>) -> Option<String> {
        self.read_link(abs)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }
}

impl Root {
    /// The fixture tree `tests/fixtures/<name>` (unit tests).
    #[cfg(test)]
    pub fn fixture(name: &str) -> Root {
        Root::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_paths() {
        let r = Root::new("/tmp/fx");
        assert_eq!(r.path("/sys/block"), PathBuf::from("/tmp/fx/sys/block"));
        assert_eq!(
            r.unmap(Path::new("/tmp/fx/dev/vda")),
            PathBuf::from("/dev/vda")
        );
        let real = Root::new("/");
        assert!(real.is_real());
        assert_eq!(real.path("/dev/sda"), PathBuf::from("/dev/sda"));
    }
}
