//! The Pushgateway path `/metrics/job/<job>{/<label>/<value>}`, with `@base64` and
//! percent-encoded segments. The input is used as the raw path (lossy UTF-8, as hyper
//! hands over only valid URIs anyway), and also with the `/metrics/job/` prefix
//! prepended so the fuzzer need not rediscover it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::pushgateway::path::{decode_base64url, parse_push_path};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    for path in [raw.to_string(), format!("/metrics/job/{raw}")] {
        if let Ok(key) = parse_push_path(&path) {
            assert!(!key.job().is_empty(), "empty job accepted from {path:?}");
            for (name, _) in key.labels().iter() {
                assert!(!name.is_empty());
                assert!(name == "job" || !name.starts_with("__"), "label {name:?}");
            }
        }
    }
    let _ = decode_base64url(&raw);
});
