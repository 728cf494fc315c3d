//! The application protocol's line reader and parsers. See `sesco_fuzz::app_line`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sesco_fuzz::app_line::check(data));
