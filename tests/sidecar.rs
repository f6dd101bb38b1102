//! Sidecar mode against a real PostgreSQL and this machine's real `/proc/net`: the pod
//! is this test process (its IP 127.0.0.1), the application's connections are counted on
//! the server and as sockets, and poolwatch's own session is in neither count.

mod common;

use std::time::Duration;

use common::{on_db, value, Daemon, Pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_forgets_connections_shows_in_the_server_and_socket_views() {
    let pg = Pg::start();
    let d = Daemon::start(&format!(
        "mode: sidecar\ninstance: pod-a\npod_ip: 127.0.0.1\npush_listen_address: 127.0.0.1:0\nlisten_address: 127.0.0.2:0\n\
         socket:\n  peers: 127.0.0.1:{port}\n\
         database:\n  url: {url}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n\
         analysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n  disagreement_hold_seconds: 2\n",
        port = pg.port,
        url = pg.url()
    ))
    .await;
    let held: Vec<_> = open_clients(&pg, 3).await;
    let socket = format!(
        r#"poolwatch_socket_connections{{database="{db}",app_instance="pod-a",peer="127.0.0.1:{}",state="established"}}"#,
        pg.port,
        db = pg.database()
    );
    let l = &format!(
        r#"{{database="{}",app="api",app_instance="pod-a"}}"#,
        pg.database()
    );
    // The pool accounts for all three: no disagreement.
    assert_eq!(push(&d, 3).await.status, 200);
    let m = d
        .wait_metrics(Duration::from_secs(10), "three sockets and backends", |m| {
            value(m, &socket) == Some(3.0)
                && value(m, &format!("poolwatch_app_server_connections{l}")) == Some(3.0)
        })
        .await;
    assert_eq!(
        value(&m, &format!("poolwatch_app_socket_connections{l}")),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        value(&m, &format!("poolwatch_app_unaccounted_connections{l}")),
        Some(0.0)
    );
    assert_eq!(
        value(&m, &format!("poolwatch_app_leak_suspected{l}")),
        Some(0.0)
    );

    // The pool forgets two of them: it reports one open while three stay open.
    let mut last = String::new();
    for _ in 0..40 {
        assert_eq!(push(&d, 1).await.status, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = d.metrics().await;
        if value(&last, &format!("poolwatch_app_leak_suspected{l}")) == Some(1.0) {
            break;
        }
    }
    assert_eq!(
        value(&last, &format!("poolwatch_app_leak_suspected{l}")),
        Some(1.0),
        "{last}"
    );
    assert_eq!(
        value(&last, &format!("poolwatch_app_unaccounted_connections{l}")),
        Some(2.0)
    );
    assert_eq!(
        value(
            &last,
            &on_db(
                &pg.database(),
                r#"poolwatch_app_leak_reason{app="api",app_instance="pod-a",reason="unaccounted_connections"}"#
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&last, &socket),
        Some(3.0),
        "poolwatch's own session is not a socket of the app"
    );
    drop(held);
    d.stop().await;
}

async fn push(d: &Daemon, open: u64) -> common::Resp {
    let body = format!(r#"{{"open":{open},"in_use":0,"idle":{open},"max_open":10}}"#);
    d.push("/api/v1/pools/api/primary", &body).await
}

async fn open_clients(pg: &Pg, n: usize) -> Vec<tokio_postgres::Client> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(pg.client("api").await);
    }
    v
}
