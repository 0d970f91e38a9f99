//! An IPA config file (`config::parse_ini`, oslo.config's syntax), its
//! settings (`config::file_settings`) and the configuration they yield
//! (`config::resolve`).
#![no_main]

use ironic_agent::config::{file_settings, parse_cmdline, parse_ini, resolve};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/ironic-python-agent.conf");
    let Ok(entries) = parse_ini(text, path) else {
        return;
    };
    let (mut warned, mut warnings) = (Vec::new(), Vec::new());
    let settings = file_settings(path, &entries, &mut warned, &mut warnings);
    let _ = resolve(&parse_cmdline(""), &settings, &[]);
});
