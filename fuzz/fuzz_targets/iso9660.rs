//! ISO 9660 (and Joliet) as the agent reads a config drive
//! (`fs::iso9660::list`), then what `image::configdrive` does with one on
//! 4 KiB-sector disks: the tree rebuilt as FAT (`fs::fat::write_fat`).
//! Whatever `write_fat` accepts must read back (`fs::fat::Fat::walk`) as
//! the same paths with the same bytes. The input starts at the volume
//! descriptors (byte 32768 of the image).
#![no_main]

use ironic_agent::disk::Io;
use ironic_agent::fs::fat::{self, Fat};
use ironic_agent::fs::iso9660;
use ironic_agent_fuzz::SparseDisk;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    // the input is the image from its volume descriptors on (sector 16):
    // the system area before them is never read
    let disk = SparseDisk::after_gap(data, 16 * 2048, 2048);
    let Ok(entries) = iso9660::list(&disk, 0, disk.size) else {
        return;
    };
    for e in &entries {
        assert!(e
            .offset
            .checked_add(e.size)
            .is_some_and(|end| end <= disk.size));
    }
    let shape = iso9660::shape(&entries);
    // Fat::walk lists 9 levels; deeper trees are compared no further
    let deep = entries.iter().any(|e| e.path.split('/').count() > 9);
    for sector in [512u64, 4096] {
        let Some(mib) = fat::smallest_fat_mib(sector, &shape, 1, 4) else {
            continue;
        };
        let len = mib << 20;
        assert!(fat::fat_fits(len, sector, &shape));
        // as configdrive::rebuild_as_vfat reads them: the total bounded by
        // the drive's size, entries may share extents
        let mut files = Vec::new();
        let mut want = BTreeMap::new();
        let mut total = 0u64;
        for e in &entries {
            let bytes = if e.is_dir {
                None
            } else {
                total += e.size;
                if total > disk.size {
                    return;
                }
                let mut b = vec![0u8; e.size as usize];
                disk.read_exact_at(&mut b, e.offset)
                    .expect("inside the image");
                Some(b)
            };
            want.insert(e.path.clone(), bytes.clone());
            files.push((e.path.clone(), bytes));
        }
        let mut out = SparseDisk::new(&[], len);
        let vol = fat::Volume {
            offset: 0,
            len,
            sector,
            label: "CONFIG-2",
            volume_id: 0x1234_5678,
            hidden: 0,
        };
        if fat::write_fat(&mut out, &vol, files).is_err() {
            continue;
        }
        let f = Fat::open(&out, 0, len).expect("a FAT write_fat made opens");
        if deep {
            continue;
        }
        assert_eq!(f.volume_label().as_deref(), Some("CONFIG-2"));
        let walked = f.walk().expect("a FAT write_fat made walks");
        let mut got = BTreeMap::new();
        for (path, e) in walked {
            let bytes = (!e.is_dir).then(|| f.read_file(&e, u64::MAX).expect("a file reads"));
            got.insert(path, bytes);
        }
        assert_eq!(got, want, "the FAT does not hold the ISO's tree");
    }
});
