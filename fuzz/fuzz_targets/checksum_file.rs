//! A checksum file fetched from an image server
//! (`image::checksum::parse_checksum_file`, IPA's `_fetch_checksum`): the
//! input's first line is the image URL, the rest the file. A digest found
//! must be a line's hex word.
#![no_main]

use ironic_agent::image::checksum::{algo_by_length, parse_checksum_file, url_basename};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (url, file) = text.split_once('\n').unwrap_or((text, ""));
    let fname = url_basename(url);
    if let Ok(d) = parse_checksum_file(file, fname) {
        assert!(
            !d.is_empty() && d.chars().all(|c| c.is_ascii_hexdigit()),
            "{d:?}"
        );
        assert!(file.contains(d.as_str()));
        let _ = algo_by_length(&d, true);
        let _ = algo_by_length(&d, false);
    }
});
