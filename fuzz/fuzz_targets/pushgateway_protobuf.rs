//! Pushgateway delimited protobuf bodies (`io.prometheus.client.MetricFamily`), with the
//! default limits; accepted bodies must respect them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::pushgateway::{protobuf, Limits};
use poolwatch_fuzz::check_limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(families) = protobuf::parse(data, &limits) {
        check_limits(&families, &limits);
    }
});
