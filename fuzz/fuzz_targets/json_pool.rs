//! `POST /api/v1/pools/{app}/{pool}?query`: canonical and `sql.DBStats` bodies, and the
//! path segments and query string the handler passes through as they came.
//!
//! Input layout: `app NUL pool NUL query NUL body`; with two NULs `app NUL pool NUL body`
//! and no query (`None`); with none the whole input is the body of `billing/primary`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::json::parse_pool;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(4, |&b| b == 0).collect();
    let (app, pool, query, body): (&[u8], &[u8], Option<&[u8]>, &[u8]) = match parts[..] {
        [app, pool, query, body] => (app, pool, Some(query), body),
        [app, pool, body] => (app, pool, None, body),
        [app, pool] => (app, pool, None, b""),
        [body] => (b"billing", b"primary", None, body),
        _ => return,
    };
    let app = String::from_utf8_lossy(app);
    let pool = String::from_utf8_lossy(pool);
    let query = query.map(String::from_utf8_lossy);
    if let Ok((_format, push)) = parse_pool(body, &app, &pool, query.as_deref(), "fuzz-default") {
        // What was accepted is what the path said, and what reaches the store is sane.
        assert_eq!(push.key.app, app);
        assert_eq!(push.key.pool, pool);
        assert!(!push.snapshot.application_name.is_empty());
        for v in [
            push.snapshot.wait_duration_seconds,
            push.snapshot.max_lifetime_seconds,
            push.snapshot.max_idle_time_seconds,
        ]
        .into_iter()
        .flatten()
        {
            assert!(v.is_finite() && v >= 0.0, "accepted seconds value {v}");
        }
    }
});
