//! FAT12/16/32 as the agent reads a written image's ESP (`fs::fat`, for
//! `install_bootloader`'s loaders and a config drive): the boot sector,
//! every directory down the tree (`walk`), long names, the volume label,
//! and the files' cluster chains, on the image at the start of a 64 MiB
//! partition (seeds are stored without their trailing zeroes).
#![no_main]

use ironic_agent::fs::fat::Fat;
use ironic_agent_fuzz::SparseDisk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let disk = SparseDisk::new(data, (data.len() as u64).max(64 << 20));
    let Ok(fat) = Fat::open(&disk, 0, disk.size) else {
        return;
    };
    let _ = (fat.kind, fat.sector_size(), fat.volume_label());
    if let Ok(root) = fat.list(None) {
        for e in root.iter().take(64) {
            if e.is_dir {
                let _ = fat.list(Some(e));
            } else {
                let _ = fat.read_file(e, 1 << 20);
            }
        }
    }
    if let Ok(all) = fat.walk() {
        let mut read = 0u64;
        for (_, e) in all.iter().filter(|(_, e)| !e.is_dir) {
            if read > 8 << 20 {
                break;
            }
            if let Ok(b) = fat.read_file(e, 1 << 20) {
                assert!(b.len() as u64 <= u64::from(e.size).min(1 << 20));
                read += b.len() as u64;
            }
        }
    }
});
