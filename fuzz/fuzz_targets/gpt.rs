//! GPT as the deploy path reads a written image (`disk::gpt`,
//! `disk::table::fix_gpt`): the header and entry parsers on raw sectors,
//! `Gpt::read_any` on the image as a disk of its own size with 512- and
//! 4096-byte sectors, then the image on a disk 1 MiB larger, where the
//! backup is moved to the end (`sgdisk -e`): afterwards the primary must
//! read back with the same partitions and the backup must sit at the
//! disk's last LBA.
#![no_main]

use ironic_agent::disk::gpt::{self, Gpt, Header, LooseHeader};
use ironic_agent::disk::{fix_gpt, Geometry};
use ironic_agent_fuzz::SparseDisk;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for sector in [512usize, 4096] {
        for s in data.chunks(sector) {
            let _ = Header::parse(s);
            let _ = LooseHeader::parse(s).map(|h| h.entries_bytes());
        }
    }
    for e in data.chunks_exact(128) {
        let _ = gpt::Entry::parse(e).is_used();
    }
    for sector in [512u64, 4096] {
        let disk = SparseDisk::fitted(data, sector);
        let sectors = disk.size / sector;
        let Ok(g) = Gpt::read_any(&disk, sector, sectors) else {
            continue;
        };
        let before = g.used();
        let _ = g.free_slot();
        // the same image on a larger disk
        let size = disk.size + (1 << 20);
        let mut big = SparseDisk::new(data, size);
        let geom = Geometry { sector, size };
        let primary_ok = Gpt::read_primary(&big, sector, size / sector).is_ok();
        if fix_gpt(Path::new("/dev/fuzz"), &mut big, geom).is_ok() && primary_ok {
            let g = Gpt::read_primary(&big, sector, size / sector)
                .expect("the primary GPT reads back after fix_gpt");
            assert_eq!(g.used(), before, "fix_gpt changed the partitions");
            assert_eq!(g.header.alternate_lba, size / sector - 1);
            let b = Gpt::read_at(&big, sector, size / sector, size / sector - 1)
                .expect("the moved backup GPT reads");
            assert_eq!(b.used(), before);
        }
    }
});
