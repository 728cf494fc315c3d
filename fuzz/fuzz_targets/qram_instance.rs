//! Arbitrary text through the Q-RAM instance parser and the solver. See `sesco_fuzz::qram`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        sesco_fuzz::qram::check(text);
    }
});
