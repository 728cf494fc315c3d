//! One connection per input against a real coordinator. See `sesco_fuzz::handlers`.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use sesco_fuzz::handlers::Harness;

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|slot| Harness::run(&mut slot.borrow_mut(), data));
});
