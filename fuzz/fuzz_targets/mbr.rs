//! MBR and the partition table as a deploy and the erase steps read them
//! (`disk::mbr`, `disk::table::read_table`): the MBR of LBA 0, the EBR
//! chain of an extended partition, and the GPT-or-MBR choice with 512- and
//! 4096-byte sectors, on the image as a disk of its own size. Every
//! partition `read_table` reports must lie on the disk.
#![no_main]

use ironic_agent::disk::mbr::{self, Mbr};
use ironic_agent::disk::{read_table, Found, Geometry};
use ironic_agent_fuzz::SparseDisk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mbr::disk_signature(data.get(..512).unwrap_or(&[0; 512]));
    for sector in [512u64, 4096] {
        let disk = SparseDisk::fitted(data, sector);
        let sectors = disk.size / sector;
        if let Some(m) = mbr::read(&disk).ok().as_deref().and_then(Mbr::parse) {
            let _ = (m.is_protective(), m.is_pure_protective(), m.primary_count());
            let parts = mbr::partitions(&disk, &m, sector, sectors);
            assert!(parts.len() <= 260, "{} partitions", parts.len());
        }
        let geom = Geometry {
            sector,
            size: disk.size,
        };
        if let Found::Table(t) = read_table(&disk, geom) {
            let _ = t.label.as_str();
            for p in &t.partitions {
                assert!(
                    p.offset.checked_add(p.len).is_some_and(|e| e <= disk.size),
                    "partition {p:?} ends past the disk's {} bytes",
                    disk.size
                );
                let _ = p.is_esp();
            }
        }
    }
});
