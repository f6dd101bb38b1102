//! The listeners: the IPv6 wildcard, poolwatch's default, serves IPv4 and IPv6 clients.

mod common;

use std::net::SocketAddr;

use common::{http, Daemon};

#[tokio::test]
async fn the_ipv6_wildcard_serves_ipv4_and_ipv6_clients() {
    let d = Daemon::start("listen_address: \"[::]:0\"\n").await;
    let port = d.addr.port();
    let v4 = http(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/healthz",
        None,
    )
    .await;
    assert_eq!(v4.status, 200, "{}", v4.body);
    // Only where this host has IPv6 at all (poolwatch then falls back to 0.0.0.0).
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert!(d.addr.is_ipv6(), "{}", d.addr);
        let v6 = http(
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
            "GET",
            "/healthz",
            None,
        )
        .await;
        assert_eq!(v6.status, 200, "{}", v6.body);
    } else {
        eprintln!("no IPv6 on this host: checked the IPv4 fallback only");
    }
    d.stop().await;
}
