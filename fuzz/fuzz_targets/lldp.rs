//! An LLDP frame as the inspection's `lldp` collector reads it from a
//! packet socket (`hardware::generic::collect::lldp`): the Ethernet head
//! (one 802.1Q tag skipped), the TLVs, the mandatory Chassis ID, Port ID
//! and TTL. Every value reported lies in the frame, and the inventory's
//! hex form is twice its length.
#![no_main]

use ironic_agent::hardware::generic::collect::lldp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    if let Ok(tlvs) = lldp::parse_frame(data) {
        assert!(tlvs.len() >= 3);
        for (t, v) in &tlvs {
            assert!(*t < 128);
            let r = v.as_ptr_range();
            assert!(r.start >= range.start && r.end <= range.end);
        }
        for ((_, v), (_, h)) in tlvs.iter().zip(lldp::encode(&tlvs)) {
            assert_eq!(h.len(), 2 * v.len());
        }
    }
    let _ = lldp::parse_tlvs(data, 0).map_err(|e| e.to_string());
    if let Err(e) = lldp::parse_frame(data) {
        let _ = e.to_string();
    }
});
