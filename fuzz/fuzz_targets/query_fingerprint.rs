//! Query fingerprints of whatever a backend's last query was (any client of the
//! database writes it). The first two bytes pick `max_chars`; the rest is the SQL.
//! The same bytes also choose a query built from known tokens
//! (`sampler::query::generated`), whose literals and comments hold the only
//! `generated::SECRET` bytes: none of them may reach its fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::sampler::query::{fingerprint, generated};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_chars = u16::from_le_bytes([data[0], data[1]]) as usize % 1024;
    let sql = String::from_utf8_lossy(&data[2..]);
    let fp = fingerprint(&sql, max_chars);
    // "At most max_chars characters (an ellipsis marks a cut)": the ellipsis comes on
    // top of the kept characters.
    let n = fp.chars().count();
    assert!(n <= max_chars + 1, "{n} chars for max_chars {max_chars}");
    if n == max_chars + 1 {
        assert!(fp.ends_with('…'));
    }

    let built = generated::query(data);
    let fp = fingerprint(&built, 4096);
    assert!(
        !fp.bytes().any(|c| generated::SECRET.contains(&c)),
        "a literal's byte in the fingerprint: {built:?} -> {fp:?}"
    );
});
