//! oslo's `specs_matcher` (`util::specs`), which root-device hints use:
//! the input's first line is the spec, the rest a value matched as a
//! string and, when it is one, as a number.
#![no_main]

use ironic_agent::util::specs::{parse_spec, py_float, spec_match, Val};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (spec, value) = s.split_once('\n').unwrap_or((s, ""));
    let _ = parse_spec(spec);
    let _ = spec_match(&Val::Str(value.to_string()), spec);
    if let Ok(n) = py_float(value) {
        let _ = spec_match(&Val::Num(n), spec);
    }
    let _ = spec_match(&Val::Num(100.0), spec);
});
