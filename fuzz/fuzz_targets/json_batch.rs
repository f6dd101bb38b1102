//! `POST /api/v1/pools`: a batch of one application's pools.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::json::parse_batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(pushes) = parse_batch(data, "fuzz-default", 500) {
        // One application per batch, every pool named.
        if let Some(first) = pushes.first() {
            assert!(pushes.iter().all(|p| p.key.app == first.key.app));
        }
        assert!(pushes.iter().all(|p| !p.key.pool.is_empty()));
    }
});
