//! Arbitrary text through the world file's parser and back. See `sesco_fuzz::world`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        sesco_fuzz::world::check(text);
    }
});
