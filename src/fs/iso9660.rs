//! Read-only ISO 9660 directory walking, enough to copy a configdrive's
//! files elsewhere: the 4 KiB-sector case of IPA's
//! `_try_build_fat32_config_drive`, which mounts the ISO and copies it
//! onto a new vfat filesystem, because Linux's isofs cannot use a block
//! device whose logical blocks are larger than its 2 KiB.
//!
//! Names come from the Joliet supplementary descriptor when there is one
//! (OpenStack's drives are made with `genisoimage -J -r`), else from the
//! primary one with the `;1` version cut off. ECMA-119 §8.4, §9.1; Joliet
//! specification 1995. Every value read is range-checked and the walk is
//! bounded in depth, entries and bytes, so a hostile image yields an
//! error, not a hang or a panic.
//!
//! Why hand-written rather than a crate (judged for issue 15; sizes are the
//! stable static build, 3,387,288 bytes at e0303c1):
//! - `hadris-iso` 2.5.0 (hxyulin/hadris, 2026-10, active, reads Joliet and
//!   Rock Ridge): [`list`] moved onto it (an `Io` region adapted to
//!   `Read + Seek`) grew the binary by 23,296 bytes, past
//!   `scripts/build-static`'s budget; it needs Rust 1.88 (this crate: 1.85)
//!   and brings 37 more crates to build (chrono, rand, tracing, heapless,
//!   spin, zerocopy among them). Its one gain, Rock Ridge names, does not
//!   matter here: configdrives are made with `-J`, read through Joliet.
//! - `cdfs` 0.2.3 (2023-10): its FUSE tool's dependencies (fuser, clap,
//!   simple_logger) are not optional. `iso9660` 0.1.1 (2023-04) calls itself
//!   incomplete. `iso9660-rs` 1.0.2 (2026-01) is a bootloader's no_std
//!   reader, released twice in one day; not wired.
//!
//! ~160 lines of code over a frozen format, bounded against hostile images,
//! checked against genisoimage's output (`tests/image_disk.rs`).

use crate::disk::Io;
use std::io;

const SECTOR: u64 = 2048;
/// Bounds of the walk (a configdrive has a few dozen entries).
const MAX_DEPTH: usize = 16;
const MAX_ENTRIES: usize = 10_000;
const MAX_DIR_BYTES: u64 = 1 << 20;
/// All paths together (a configdrive's are a few KiB): with the entries'
/// count, what bounds the list's memory against a hostile image.
const MAX_PATH_BYTES: usize = 1 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A file or directory of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path from the root, `/`-separated, no leading `/`.
    pub path: String,
    pub is_dir: bool,
    /// Byte offset of the contents from the start of the image.
    pub offset: u64,
    pub size: u64,
}

/// Each entry's path with its file's size, `None` for a directory: the
/// shape `fat::write_fat` is asked to hold.
pub fn shape(entries: &[Entry]) -> Vec<(String, Option<u64>)> {
    entries
        .iter()
        .map(|e| (e.path.clone(), (!e.is_dir).then_some(e.size)))
        .collect()
}

struct Walk<'a> {
    io: &'a dyn Io,
    base: u64,
    len: u64,
    joliet: bool,
    out: Vec<Entry>,
    seen_dirs: Vec<u64>,
    path_bytes: usize,
}

/// Every entry of the ISO 9660 image at `base` (`len` bytes), each
/// directory before its contents.
pub fn list(io: &dyn Io, base: u64, len: u64) -> io::Result<Vec<Entry>> {
    let mut root = None;
    for i in 16..16 + 64u64 {
        if (i + 1) * SECTOR > len {
            break;
        }
        let mut vd = [0u8; 2048];
        io.read_exact_at(&mut vd, base + i * SECTOR)?;
        if &vd[1..6] != b"CD001" {
            return Err(invalid("not an ISO 9660 image"));
        }
        match vd[0] {
            // primary: used unless a Joliet descriptor follows
            1 if root.is_none() => root = Some((record(&vd[156..190])?, false)),
            // supplementary with a Joliet UCS-2 escape sequence
            2 if vd[88] == b'%' && vd[89] == b'/' && matches!(vd[90], b'@' | b'C' | b'E') => {
                root = Some((record(&vd[156..190])?, true));
            }
            255 => break,
            _ => {}
        }
    }
    let Some(((offset, size, _), joliet)) = root else {
        return Err(invalid("no ISO 9660 primary volume descriptor"));
    };
    let mut w = Walk {
        io,
        base,
        len,
        joliet,
        out: Vec::new(),
        seen_dirs: Vec::new(),
        path_bytes: 0,
    };
    w.dir(offset, size, "", 0)?;
    Ok(w.out)
}

/// (offset, size, is_dir) of a directory record.
fn record(r: &[u8]) -> io::Result<(u64, u64, bool)> {
    if r.len() < 33 || usize::from(r[0]) < 33 {
        return Err(invalid("short ISO 9660 directory record"));
    }
    let lba = u32::from_le_bytes([r[2], r[3], r[4], r[5]]);
    let size = u32::from_le_bytes([r[10], r[11], r[12], r[13]]);
    Ok((u64::from(lba) * SECTOR, u64::from(size), r[25] & 0x02 != 0))
}

impl Walk<'_> {
    fn dir(&mut self, offset: u64, size: u64, prefix: &str, depth: usize) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(invalid("ISO 9660 directories nested too deep"));
        }
        if size > MAX_DIR_BYTES || offset.checked_add(size).is_none_or(|e| e > self.len) {
            return Err(invalid("ISO 9660 directory outside the image"));
        }
        if self.seen_dirs.contains(&offset) {
            return Err(invalid("ISO 9660 directory loop"));
        }
        self.seen_dirs.push(offset);
        let mut data = vec![0u8; size as usize];
        self.io.read_exact_at(&mut data, self.base + offset)?;
        let mut at = 0usize;
        let mut subdirs = Vec::new();
        while at < data.len() {
            let n = usize::from(data[at]);
            if n == 0 {
                // records do not cross sectors: the rest of this one is padding
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(r) = data.get(at..at + n) else {
                return Err(invalid("ISO 9660 directory record past its directory"));
            };
            at += n;
            let (off, len, is_dir) = record(r)?;
            let name_len = usize::from(r[32]);
            let Some(raw) = r.get(33..33 + name_len) else {
                return Err(invalid("ISO 9660 name past its record"));
            };
            if raw == [0] || raw == [1] {
                continue; // "." and ".."
            }
            let name = self.name(raw, is_dir)?;
            if self.out.len() >= MAX_ENTRIES {
                return Err(invalid("too many ISO 9660 entries"));
            }
            if off.checked_add(len).is_none_or(|e| e > self.len) {
                return Err(invalid(format!("ISO 9660 entry {name} outside the image")));
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            self.path_bytes += path.len();
            if self.path_bytes > MAX_PATH_BYTES {
                return Err(invalid("ISO 9660 paths too long in all"));
            }
            self.out.push(Entry {
                path: path.clone(),
                is_dir,
                offset: off,
                size: if is_dir { 0 } else { len },
            });
            if is_dir {
                subdirs.push((off, len, path));
            }
        }
        for (off, len, path) in subdirs {
            self.dir(off, len, &path, depth + 1)?;
        }
        Ok(())
    }

    fn name(&self, raw: &[u8], is_dir: bool) -> io::Result<String> {
        let mut name = if self.joliet {
            if raw.len() % 2 != 0 {
                return Err(invalid("odd-length Joliet name"));
            }
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| invalid("bad UCS-2 in a Joliet name"))?
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        if !is_dir {
            if let Some(i) = name.rfind(';') {
                name.truncate(i);
            }
            if !self.joliet && name.ends_with('.') {
                name.pop();
            }
        }
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(invalid(format!("unusable ISO 9660 name {name:?}")));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    /// A hand-made image: PVD, Joliet SVD, terminator, root and one
    /// subdirectory with a file.
    fn image(joliet: bool) -> MemDisk {
        let mut d = MemDisk::new(64 * 2048);
        let rec = |lba: u32, size: u32, dir: bool, name: &[u8]| {
            let mut r = vec![0u8; 33 + name.len() + (name.len() + 1) % 2];
            r[0] = r.len() as u8;
            r[2..6].copy_from_slice(&lba.to_le_bytes());
            r[10..14].copy_from_slice(&size.to_le_bytes());
            r[25] = if dir { 2 } else { 0 };
            r[32] = name.len() as u8;
            r[33..33 + name.len()].copy_from_slice(name);
            r
        };
        let ucs = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect() };
        let name = |s: &str| {
            if joliet {
                ucs(s)
            } else {
                s.to_uppercase().into_bytes()
            }
        };
        let mut put =
            |at: u64, b: &[u8]| d.0[at as usize..at as usize + b.len()].copy_from_slice(b);
        let (root, sub, file) = (20u32, 21u32, 22u32);
        let svd = if joliet { 2 } else { 255 };
        for (lba, kind) in [(16u64, 1u8), (17, svd), (18, 255)] {
            let mut vd = vec![0u8; 2048];
            vd[0] = kind;
            vd[1..6].copy_from_slice(b"CD001");
            vd[6] = 1;
            if kind == 2 {
                vd[88..91].copy_from_slice(b"%/E");
            }
            if kind != 255 {
                let r = rec(root, 2048, true, &[0]);
                vd[156..156 + 34].copy_from_slice(&r[..34]);
            }
            put(lba * 2048, &vd);
        }
        let mut dir = rec(root, 2048, true, &[0]);
        dir.extend(rec(root, 2048, true, &[1]));
        dir.extend(rec(sub, 2048, true, &name("openstack")));
        put(u64::from(root) * 2048, &dir);
        let mut dir = rec(sub, 2048, true, &[0]);
        dir.extend(rec(root, 2048, true, &[1]));
        let mut f = name("meta_data.json");
        f.extend(
            b";1"
                .iter()
                .flat_map(|&c| if joliet { vec![0, c] } else { vec![c] }),
        );
        dir.extend(rec(file, 13, false, &f));
        put(u64::from(sub) * 2048, &dir);
        put(u64::from(file) * 2048, b"{\"uuid\": \"x\"}");
        d
    }

    #[test]
    fn walks_joliet_and_primary_names() {
        for (joliet, want) in [
            (true, "openstack/meta_data.json"),
            (false, "OPENSTACK/META_DATA.JSON"),
        ] {
            let d = image(joliet);
            let l = list(&d, 0, d.0.len() as u64).unwrap();
            assert_eq!(l.len(), 2, "{l:?}");
            assert!(l[0].is_dir);
            assert_eq!(l[1].path, want);
            assert_eq!((l[1].offset, l[1].size), (22 * 2048, 13));
        }
    }

    #[test]
    fn hostile_images_never_panic_or_loop() {
        let clean = image(true);
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..2000 {
            let mut d = clean.clone();
            // scribble over the descriptors and directories
            for _ in 0..rng.usize(1..24) {
                let at = rng.usize(16 * 2048..23 * 2048);
                d.0[at] = rng.u8(..);
            }
            let _ = list(&d, 0, d.0.len() as u64);
        }
        // a directory that contains itself
        let mut d = clean.clone();
        let at = 21 * 2048 + 34 * 2 + 2;
        d.0[at..at + 4].copy_from_slice(&21u32.to_le_bytes());
        d.0[at + 23] = 2;
        assert!(list(&d, 0, d.0.len() as u64).is_err());
    }
}
