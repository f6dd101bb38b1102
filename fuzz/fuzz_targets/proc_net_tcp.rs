//! `/proc/net/tcp` and `/proc/net/tcp6` text (the socket view). The kernel writes it, but
//! the directory is configurable and the parser promises never to panic; counting the
//! rows against a few peers exercises the address handling too.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use poolwatch::sampler::socket;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let table = socket::parse(&text);
    let lines = text.lines().count();
    assert!(table.rows.len() + table.skipped <= lines);
    let peers: [SocketAddr; 3] = [
        "127.0.0.1:5432".parse().unwrap(),
        "[::1]:5432".parse().unwrap(),
        "[::ffff:10.0.0.5]:6432".parse().unwrap(),
    ];
    let counts = socket::count(&table.rows, &peers);
    assert_eq!(counts.len(), peers.len());
    let matched: u64 = counts.iter().map(|c| c.total()).sum();
    assert!(matched <= table.rows.len() as u64);
    for line in text.lines() {
        let _ = socket::parse_row(line);
    }
});
