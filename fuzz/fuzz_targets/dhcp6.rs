//! A DHCPv6 server's message as `ironic-agent dhcp6` reads it from the
//! wire (`network::dhcp6::parse_answer`, then `timers` on what it
//! accepted): the first 3 bytes of the input are the transaction id the
//! client expects, so that messages for us are reached. An answer is
//! accepted only with our client id and a server id, and the renew and
//! rebind times it yields are ordered.
#![no_main]

use ironic_agent::network::dhcp6::{parse_answer, timers, Client};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let xid = [data[0], data[1], data[2]];
    let c = Client::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let Some(a) = parse_answer(&data[3..], xid, &c) else {
        return;
    };
    assert!(!a.server.is_empty());
    if let Some((t1, t2, _)) = timers(&a) {
        assert!(t1 <= t2, "renew {t1:?} after rebind {t2:?}");
    }
});
