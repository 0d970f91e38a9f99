//! The kernel command line (`config::parse_cmdline`, IPA's
//! `_read_params_from_file`) and the configuration it yields
//! (`config::resolve`): every `ipa-*` value checked as the agent checks it
//! at start.
#![no_main]

use ironic_agent::config::{parse_cmdline, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = parse_cmdline(&text);
    let _ = resolve(&p, &[], &[]);
});
