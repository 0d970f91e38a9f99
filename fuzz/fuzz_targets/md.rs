//! md v1.x superblocks as start-up assembly, delete_configuration and the
//! erase steps read them from a disk (`disk::md`): `Superblock::parse` with
//! the kernel's context-free checks, then `find` (every version's place on
//! a device holding the input at the 1.2 spot, 4 KiB in) with the checks
//! that need the device, and `magic_offsets`. A superblock that parses
//! encodes back to bytes that parse to the same superblock.
#![no_main]

use ironic_agent::disk::md::{self, Superblock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::parse(data) {
        let again = Superblock::parse(&sb.encode()).expect("an encoded superblock parses");
        // (no Debug outside tests: the binary keeps no formatter for it)
        assert!(again == sb, "an encoded superblock parses back the same");
        let _ = (
            sb.full_name(),
            sb.name(),
            sb.slot(),
            sb.uuid_mdadm(),
            sb.ctime_secs(),
        );
        for v in md::Version::ALL {
            let _ = sb.check_place(v, sb.super_offset().saturating_add(64));
        }
    }
    // the input at 4 KiB (the 1.2 superblock's place) on a device of at
    // least 64 KiB, zeroes elsewhere
    const AT: u64 = 4096;
    let size = (AT + data.len() as u64).div_ceil(4096).max(16) * 4096;
    let read = |off: u64, len: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        for (i, b) in buf.iter_mut().enumerate() {
            let o = off + i as u64;
            if o >= AT {
                if let Some(v) = data.get((o - AT) as usize) {
                    *b = *v;
                }
            }
        }
        Ok(buf)
    };
    for f in md::find(size, &read) {
        assert!(f.sb.check_place(f.version, size / 512).is_ok());
    }
    for off in md::magic_offsets(size, &read) {
        assert!(off < size);
    }
});
