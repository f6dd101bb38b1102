//! `POST /v1/metrics` in JSON: the `ExportMetricsServiceRequest` decoder with the default
//! limits, then the rest of the path short of the store (the plan, each pool's series,
//! its snapshot). What is accepted must respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::otlp::{json, Limits};
use poolwatch_fuzz::check_otlp;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(export) = json::decode(data, &limits) {
        check_otlp(export, &limits);
    }
});
