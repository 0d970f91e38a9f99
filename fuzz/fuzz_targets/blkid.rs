//! Filesystem type, UUID and label from a superblock (`fs::blkid::probe_fs`,
//! what IPA asks blkid for: the root UUID of a written image, the config
//! drive's label), on the image as a partition of its own size and inside
//! a larger one.
#![no_main]

use ironic_agent::fs::blkid::probe_fs;
use ironic_agent_fuzz::SparseDisk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let disk = SparseDisk::fitted(data, 512);
    let _ = probe_fs(&disk, 0, data.len() as u64);
    let big = SparseDisk::new(data, 1 << 30);
    if let Some(f) = probe_fs(&big, 0, 1 << 30) {
        let _ = (f.fstype, f.uuid, f.label);
    }
});
