//! Arbitrary bytes through the codec and the frame reader. See `sesco_fuzz::frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sesco_fuzz::frames::check(data));
