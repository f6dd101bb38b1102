//! The `Authorization: Basic …` header of a request to a listener with
//! `basic_auth_users` (anyone who reaches the port writes it). The input is used twice:
//! as the header value itself (lossy UTF-8, as hyper hands over only visible ASCII
//! anyway), and as the credentials, base64-encoded behind `Basic `, so the fuzzer need
//! not rediscover base64 to get past the decoder.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use poolwatch::http::web::parse_basic;

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fuzz_target!(|data: &[u8]| {
    // As the header: whatever it accepts is a user without ':' and a password that
    // survive a round trip through the canonical encoding.
    let header = String::from_utf8_lossy(data);
    if let Some((user, password)) = parse_basic(&header) {
        assert!(!user.contains(':'), "user {user:?} from {header:?}");
        let canonical = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        assert_eq!(
            parse_basic(&canonical),
            Some((user, password)),
            "{header:?} -> {canonical:?}"
        );
    }

    // As the credentials: accepted exactly when they are UTF-8 with a ':', split at the
    // first one; the scheme's case and the padding do not matter.
    let expected = std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.split_once(':'))
        .map(|(u, p)| (u.to_string(), p.to_string()));
    let encoded = base64(data);
    for header in [
        format!("Basic {encoded}"),
        format!("bAsIc {}", encoded.trim_end_matches('=')),
    ] {
        assert_eq!(parse_basic(&header), expected, "{header:?}");
    }
});
