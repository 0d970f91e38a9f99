//! The image format sniffer and its safety checks (`image::format`, oslo's
//! format_inspector as IPA applies it) on an image's first bytes, under
//! the lookup's policies: deep inspection on and off, formats declared or
//! not, raw permitted or not.
#![no_main]

use ironic_agent::image::format::{self, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    let m = format::matches(head);
    match format::detect(head) {
        Ok(f) => {
            assert!(m.len() <= 1);
            let _ = (f.name(), f.is_raw());
            let _ = format::safety_check(f, head);
        }
        Err(format::Ambiguous(v)) => assert!(v.len() > 1),
    }
    let _ = format::check_mbr(head.get(..512).unwrap_or(head));
    let _ = format::check_qcow2(head);
    let all: Vec<String> = ["raw", "qcow2", "iso", "gpt", "vmdk", "vhd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let raw_only = vec!["raw".to_string()];
    for permitted in [&all, &raw_only] {
        for declared in [None, Some("raw"), Some("qcow2"), Some("iso")] {
            for deep in [true, false] {
                let p = Policy {
                    permitted,
                    declared,
                    deep_inspection: deep,
                };
                if let Ok(f) = format::check(head, &p) {
                    let _ = f.name();
                }
            }
        }
    }
});
