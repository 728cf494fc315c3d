//! Sesco's side of a control port connection, fuzzed. See `sesco_fuzz::control`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sesco_fuzz::control::check(data));
