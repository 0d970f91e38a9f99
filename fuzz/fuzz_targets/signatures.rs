//! What `erase_devices_metadata` reads before it zeroes
//! (`disk::signatures::probe`): filesystem, RAID, LVM, LUKS and table
//! signatures at both ends of a window, their backups, and on whole disks
//! the partition table; the window is the image alone, then the image at
//! the start of a 1 TiB disk, with 512- and 4096-byte sectors. Every area
//! the probe marks for zeroing must lie inside the window.
#![no_main]

use ironic_agent::disk::signatures::{md_set_name, probe, Region};
use libfuzzer_sys::fuzz_target;
use std::io;

fuzz_target!(|data: &[u8]| {
    let _ = md_set_name(data);
    let read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
        let s = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let e = s.saturating_add(len).min(data.len());
        let mut v = data[s..e].to_vec();
        v.resize(len, 0);
        Ok(v)
    };
    for size in [data.len() as u64, 1 << 40] {
        for sector in [512u32, 4096] {
            for whole in [true, false] {
                let r = Region {
                    base: 0,
                    size,
                    sector,
                    read: &read,
                };
                let Ok(p) = probe(&r, whole) else { continue };
                for &(start, len, why) in &p.backups {
                    assert!(
                        start.checked_add(len).is_some_and(|e| e <= size),
                        "{why} area {start}+{len} past the window's {size} bytes"
                    );
                }
                for s in &p.signatures {
                    assert!(
                        s.offset < size.max(1),
                        "{} at {} of {size}",
                        s.kind,
                        s.offset
                    );
                }
                let _ = p.has("gpt");
            }
        }
    }
});
