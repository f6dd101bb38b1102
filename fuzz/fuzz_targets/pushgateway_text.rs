//! Pushgateway text format 0.0.4 bodies, with the default limits; accepted bodies must
//! respect them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::pushgateway::{text, Limits};
use poolwatch_fuzz::check_limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(families) = text::parse(data, &limits) {
        check_limits(&families, &limits);
    }
});
