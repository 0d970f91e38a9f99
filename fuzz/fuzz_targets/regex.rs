//! The Python `re` subset of `clean_uefi_nvram`'s patterns
//! (`util::regex`), which come from the clean step's arguments: the
//! input's first line is the pattern, the rest the text matched. A match
//! either answers or runs out of its step budget: never a hang.
#![no_main]

use ironic_agent::util::regex::Regex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, text) = s.split_once('\n').unwrap_or((s, ""));
    if let Ok(re) = Regex::new(pattern) {
        let _ = re.is_match(text);
        let _ = re.is_match("");
    }
});
