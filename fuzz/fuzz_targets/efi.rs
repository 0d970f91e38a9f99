//! UEFI boot entries as efivarfs holds them (`efi::parse_boot_entry`,
//! `efi::device_path_text`): what `install_bootloader` and
//! `clean_uefi_nvram` read of the firmware's NVRAM. A parsed entry's
//! device path must be a slice of the variable.
#![no_main]

use ironic_agent::efi::{build_load_option, device_path_text, parse_boot_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = device_path_text(data);
    if let Some(e) = parse_boot_entry(1, data) {
        assert!(e.path.len() <= data.len());
        // what build_load_option writes for it parses back to it
        let file = build_load_option(&e.description, &e.path);
        let again = parse_boot_entry(1, &file).expect("a built load option parses");
        assert_eq!(again.path, e.path);
        assert_eq!(again.path_text, e.path_text);
    }
});
