//! Real block devices for the erase, image and deploy tests: sparse files
//! attached as loop devices (`losetup`, root only; detached, and the
//! backing file removed, on drop), and fixture roots whose /dev/<name> is
//! a symlink to the loop device and whose /sys/block/<name> copies the
//! loop device's real attributes, so the agent runs its real ioctls and
//! direct I/O against a device it was told about by name, and never sees
//! this machine's own disks.
//!
//! Tests that use them call [`super::tools::need_root`] first.

use super::tools::{must, run};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device over a sparse file; detached (and the file removed) on
/// drop.
pub struct Loop {
    pub dev: String,
    pub file: PathBuf,
}

impl Loop {
    /// A new sparse backing file of `size` bytes, attached; `partscan` for
    /// partition devices, `read_only` for a write-protected device.
    pub fn new(file: &Path, size: u64, partscan: bool, read_only: bool) -> Loop {
        let f = fs::File::create(file).expect("creating the backing file");
        f.set_len(size).expect("sizing the backing file");
        let mut opts = vec![];
        if partscan {
            opts.push("-P");
        }
        if read_only {
            opts.push("-r");
        }
        Loop::attach(file, &opts)
    }

    /// Attach an existing backing file (`losetup -f --show OPTS FILE`,
    /// e.g. `-r`, `-P`, `--sector-size 4096`).
    pub fn attach(file: &Path, opts: &[&str]) -> Loop {
        let fname = file.to_str().unwrap();
        let mut args = vec!["losetup", "-f", "--show"];
        args.extend_from_slice(opts);
        args.push(fname);
        let dev = must(&args).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup said {dev}");
        Loop {
            dev,
            file: file.to_path_buf(),
        }
    }

    pub fn kname(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }

    pub fn write_at(&self, off: u64, data: &[u8]) {
        let f = fs::OpenOptions::new().write(true).open(&self.dev).unwrap();
        f.write_all_at(data, off).unwrap();
        f.sync_all().unwrap();
    }

    /// Read with O_DIRECT (what the device holds, not the page cache).
    pub fn read_at(&self, off: u64, len: usize) -> Vec<u8> {
        read_direct(&self.dev, off, len)
    }

    /// Partition knames the kernel registered ("loop3p1", ...).
    pub fn partitions(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(format!("/sys/block/{}", self.kname()))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(self.kname()) && n.len() > self.kname().len())
            .collect();
        v.sort();
        v
    }

    /// Register the partitions of a freshly written table with BLKPG
    /// (`partx -a`): the host kernel may have no partition parsers built in
    /// (this machine's has neither MSDOS nor EFI), so BLKRRPART alone would
    /// find none.
    pub fn register_partitions(&self) {
        let _ = run(&["partx", "-a", &self.dev]);
    }

    /// Wait for udev-less partition nodes to show up in devtmpfs.
    pub fn part_dev(&self, n: u32) -> String {
        let p = format!("{}p{n}", self.dev);
        for _ in 0..100 {
            if Path::new(&p).exists() {
                return p;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("{p} did not appear");
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = fs::remove_file(&self.file);
    }
}

/// A filesystem mounted for a test (`mount ARGS... DIR`); unmounted on
/// drop, so a failing assertion leaves no mount behind.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(args: &[&str], dir: &Path) -> Mounted {
        let mut a = vec!["mount"];
        a.extend_from_slice(args);
        a.push(dir.to_str().unwrap());
        must(&a);
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `len` bytes at `off` of a block device, read with O_DIRECT through a
/// 4 KiB-aligned window.
pub fn read_direct(dev: &str, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap();
    let start = off / 4096 * 4096;
    let end = (off + len as u64).div_ceil(4096) * 4096;
    let n = (end - start) as usize;
    let mut raw = vec![0u8; n + 4096];
    let a = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[a..a + n];
    let mut done = 0;
    while done < n {
        let got = f.read_at(&mut buf[done..], start + done as u64).unwrap();
        if got == 0 {
            break;
        }
        done += got;
    }
    let s = (off - start) as usize;
    buf[s..(s + len).min(done)].to_vec()
}

fn put(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn copy_attr(from: &str, to: &Path, default: &str) {
    let v = fs::read_to_string(from).unwrap_or_else(|_| default.to_string());
    put(to, v.trim());
}

/// Present loop device `lo` in fixture root `root` as disk `name`
/// (sda, nvme0n1, ...): /dev/<name> → the loop device, and /sys/block/<name>
/// with the loop device's size, ro, dev, queue limits and partitions.
pub fn present(root: &Path, name: &str, lo: &Loop) {
    let sys = format!("/sys/block/{}", lo.kname());
    let fx = root.join("sys/block").join(name);
    for attr in ["size", "ro", "removable", "dev"] {
        copy_attr(&format!("{sys}/{attr}"), &fx.join(attr), "0");
    }
    for attr in [
        "logical_block_size",
        "physical_block_size",
        "rotational",
        "write_zeroes_max_bytes",
        "discard_max_bytes",
        "discard_granularity",
    ] {
        copy_attr(
            &format!("{sys}/queue/{attr}"),
            &fx.join("queue").join(attr),
            "0",
        );
    }
    let dev = root.join("dev");
    fs::create_dir_all(&dev).unwrap();
    let _ = fs::remove_file(dev.join(name));
    std::os::unix::fs::symlink(&lo.dev, dev.join(name)).unwrap();
    for p in lo.partitions() {
        let n = &p[lo.kname().len()..].trim_start_matches('p');
        let pname = if name.ends_with(|c: char| c.is_ascii_digit()) {
            format!("{name}p{n}")
        } else {
            format!("{name}{n}")
        };
        for attr in ["partition", "start", "size", "dev", "ro"] {
            copy_attr(
                &format!("{sys}/{p}/{attr}"),
                &fx.join(&pname).join(attr),
                "0",
            );
        }
        let _ = fs::remove_file(dev.join(&pname));
        std::os::unix::fs::symlink(format!("/dev/{p}"), dev.join(&pname)).unwrap();
    }
}

/// An empty fixture root: no mounts, no swaps, an empty cmdline.
pub fn empty_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    put(&root.join("proc/mounts"), "");
    put(
        &root.join("proc/swaps"),
        "Filename Type Size Used Priority\n",
    );
    put(&root.join("proc/cmdline"), "");
    fs::create_dir_all(root.join("sys/block")).unwrap();
    root
}

/// Signatures the host's libblkid finds at byte `offset` of `dev`
/// (`blkid -p -O`), the oracle for "nothing left to recognise".
pub fn blkid_at(dev: &str, offset: u64) -> Option<String> {
    let (ok, out) = run(&[
        "blkid",
        "-p",
        "-O",
        &offset.to_string(),
        "-o",
        "export",
        dev,
    ]);
    (ok && !out.trim().is_empty()).then(|| out.trim().to_string())
}

/// Fill `lo` with a repeating non-zero pattern (writes 1 MiB at a time).
pub fn fill_pattern(lo: &Loop, size: u64, byte: u8) {
    let f = fs::OpenOptions::new().write(true).open(&lo.dev).unwrap();
    let chunk = vec![byte; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = chunk.len().min((size - off) as usize);
        f.write_all_at(&chunk[..n], off).unwrap();
        off += n as u64;
    }
    f.sync_all().unwrap();
}
