//! The client examples, built with the real toolchains and run against the daemon and a
//! throwaway PostgreSQL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_series, require_tool, value, Daemon, Pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_example_pushes_db_stats_as_encoding_json_writes_them() {
    let Some(bin) = common::go_build("go-dbstats") else {
        return;
    };
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n",
        pg.url()
    ))
    .await;
    let out = tokio::task::spawn_blocking({
        let bin = bin.clone();
        let push = d.push_addr;
        let url = pg.url();
        move || {
            Command::new(bin)
                .env("POOLWATCH_URL", format!("http://{push}"))
                .env("DATABASE_URL", url)
                .env("APP", "go-dbstats")
                .env("POD_NAME", "pod-go")
                .env("PUSHES", "1")
                .env("HOLD", "2")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""InUse":2"#) && stdout.contains(r#""MaxOpenConnections":10"#),
        "{stdout}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rejected"),
        "push rejected"
    );

    let m = d
        .wait_metrics(Duration::from_secs(5), "the Go pool", |m| {
            m.contains(r#"app="go-dbstats""#)
        })
        .await;
    assert_series(
        &m,
        &format!(r#"{{database="{db}",app="go-dbstats",pool="primary",app_instance="pod-go"}}"#),
        &[
            ("poolwatch_pool_in_use_connections", 2.0),
            // Two held, one pinged.
            ("poolwatch_pool_open_connections", 3.0),
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_max_lifetime_seconds", 1800.0),
        ],
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="dbstats",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
    let _ = std::fs::remove_file(bin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_golang_push_is_analysed_unchanged() {
    let Some(bin) = common::go_build("clients/go-push") else {
        return;
    };
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let mut child = Command::new(&bin)
        .env("POOLWATCH_URL", format!("http://{}", d.push_addr))
        .env(
            "DATABASE_URL",
            format!("{}&application_name=billing", pg.url()),
        )
        .env("POD_NAME", "pod-go")
        .env("HOLD", "2")
        .env("EVERY", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pool = &format!(r#"{{database="{db}",app="billing",pool="orders",app_instance="pod-go"}}"#);
    let app = &format!(r#"{{database="{db}",app="billing",app_instance=""}}"#);
    let m = d
        .wait_metrics(
            Duration::from_secs(20),
            "the pushed pool, joined with the server view",
            |m| {
                value(m, &format!("poolwatch_pool_in_use_connections{pool}")) == Some(2.0)
                    && value(m, &format!("poolwatch_app_server_connections{app}")) == Some(2.0)
            },
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "{}",
        m.lines()
            .filter(|l| l.contains(r#"app="billing""#))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_series(
        &m,
        pool,
        &[
            ("poolwatch_pool_open_connections", 2.0),
            ("poolwatch_pool_max_open_connections", 10.0),
        ],
    );
    assert_series(
        &m,
        app,
        &[
            ("poolwatch_app_pool_open_connections", 2.0),
            ("poolwatch_app_unaccounted_connections", 0.0),
            ("poolwatch_app_leak_suspected", 0.0),
        ],
    );
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="protobuf",outcome="accepted"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(&m, "poolwatch_ingest_ignored_families_total").unwrap() > 0.0,
        "go_* families ignored"
    );
    let _ = std::fs::remove_file(bin);
}

/// Whether `python3` can import `modules`; under CI it must.
fn python_with(modules: &str) -> bool {
    if require_tool("python3").is_none() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !common::in_ci(),
            "python3 cannot import {modules} under CI (.ci/run installs them)"
        );
        eprintln!("SKIPPED: python3 cannot import {modules}; run .ci/run to install them");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_to_gateway_with_psycopg_pool() {
    if !python_with("prometheus_client, psycopg_pool") {
        return;
    }
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/clients/python-push/push.py"
        ))
        .env("POOLWATCH", d.push_addr.to_string())
        .env("DATABASE_URL", pg.url())
        .env("POD_NAME", "pod-py")
        .env("HOLD", "3")
        .env("EVERY", "0.5")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pool = &format!(r#"{{database="{db}",app="reports",pool="main",app_instance="pod-py"}}"#);
    let app = &format!(r#"{{database="{db}",app="reports",app_instance=""}}"#);
    let m = d
        .wait_metrics(
            Duration::from_secs(30),
            "the Python pool, joined with the server view",
            |m| {
                value(m, &format!("poolwatch_pool_in_use_connections{pool}")) == Some(3.0)
                    && value(m, &format!("poolwatch_app_server_connections{app}"))
                        .is_some_and(|v| v >= 3.0)
            },
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_series(
        &m,
        pool,
        &[
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_waiting", 0.0),
        ],
    );
    let open = value(&m, &format!("poolwatch_pool_open_connections{pool}")).unwrap();
    assert!(open >= 3.0, "open = in use + idle: {open}");
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="text",outcome="accepted"}"#
        )
        .unwrap()
            >= 1.0
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_pool_pushes_json() {
    let Some(node) = require_tool("node") else {
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/clients/node-pg");
    if !std::path::Path::new(dir).join("node_modules/pg").is_dir() {
        assert!(
            !common::in_ci(),
            "examples/clients/node-pg/node_modules missing under CI (.ci/run runs npm ci there)"
        );
        eprintln!("SKIPPED: run `npm ci` in {dir}");
        return;
    }
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let out = tokio::task::spawn_blocking({
        let push = d.push_addr;
        let url = pg.url();
        move || {
            Command::new(node)
                .arg("push.js")
                .current_dir(dir)
                .env("POOLWATCH_URL", format!("http://{push}"))
                .env("DATABASE_URL", url)
                .env("POD_NAME", "pod-node")
                .env("HOLD", "2")
                .env("PUSHES", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = d.metrics().await;
    assert_series(
        &m,
        &format!(r#"{{database="{db}",app="web",pool="main",app_instance="pod-node"}}"#),
        &[
            ("poolwatch_pool_in_use_connections", 2.0),
            ("poolwatch_pool_open_connections", 2.0),
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_waiting", 0.0),
        ],
    );
    d.stop().await;
}

/// A daemon watching `pg` with short intervals and a low evidence threshold (10 stuck
/// connection-seconds beyond a 1 s floor), so a leak shows in seconds.
async fn watching(pg: &Pg) -> Daemon {
    Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 60\n  idle_in_use_seconds: 1\n  stuck_connection_seconds: 10\n",
        pg.url()
    ))
    .await
}

/// Runs `program` (`python3` or `node`) on `script` in `examples/clients/<dir>` with the
/// standard OpenTelemetry environment pointed at `d`'s `/v1/metrics`, plus `env`.
fn otel_client(
    program: &std::path::Path,
    dir: &str,
    script: &str,
    d: &Daemon,
    pg: &Pg,
    service: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = Command::new(program);
    cmd.arg(script)
        .current_dir(format!(
            "{}/examples/clients/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("http://{}/v1/metrics", d.push_addr),
        )
        .env("OTEL_SERVICE_NAME", service)
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("service.instance.id=pod-{service}"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("DATABASE_URL", pg.url())
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The lines of `m` about `app`, for the test log.
fn lines_of(m: &str, app: &str) -> String {
    m.lines()
        .filter(|l| l.contains(&format!("app=\"{app}\"")) && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the Python OpenTelemetry packages `.ci/run` installs can be imported.
fn python_otel() -> bool {
    python_with(
        "opentelemetry.sdk.metrics, opentelemetry.exporter.otlp.proto.http.metric_exporter, opentelemetry.instrumentation.sqlalchemy, sqlalchemy, psycopg",
    )
}

/// `examples/clients/python-otel/app.py` as `service`, exporting to `d`.
fn python_otel_app(
    d: &Daemon,
    pg: &Pg,
    service: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let python = std::path::Path::new("python3");
    otel_client(python, "python-otel", "app.py", d, pg, service, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sqlalchemy_otel_pool_joins_the_server_view() {
    if !python_otel() {
        return;
    }
    let pg = Pg::start();
    let db = pg.database();
    let d = watching(&pg).await;
    let mut child = python_otel_app(
        &d,
        &pg,
        "reports",
        &[
            ("WORK", "healthy"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    let pool =
        &format!(r#"{{database="{db}",app="reports",pool="main",app_instance="pod-reports"}}"#);
    let app = &format!(r#"{{database="{db}",app="reports",app_instance=""}}"#);
    let m = d
        .wait_metrics(
            Duration::from_secs(30),
            "the SQLAlchemy pool, joined with the server view",
            |m| {
                value(m, &format!("poolwatch_pool_open_connections{pool}")) == Some(1.0)
                    && value(m, &format!("poolwatch_app_pool_open_connections{app}")) == Some(1.0)
                    && value(m, &format!("poolwatch_app_server_connections{app}")) == Some(1.0)
            },
        )
        .await;
    // A few more seconds of healthy work: never a leak.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let m = d.metrics().await;
        assert_eq!(
            value(&m, &format!("poolwatch_app_leak_suspected{app}")),
            Some(0.0),
            "{}",
            lines_of(&m, "reports")
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("{}", lines_of(&m, "reports"));
    assert_series(
        &m,
        app,
        &[
            ("poolwatch_app_pool_open_connections", 1.0),
            ("poolwatch_app_unaccounted_connections", 0.0),
        ],
    );
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="otlp_protobuf",outcome="accepted"}"#
        )
        .unwrap()
            >= 1.0
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sqlalchemy_otel_leak_is_flagged() {
    if !python_otel() {
        return;
    }
    let pg = Pg::start();
    let db = pg.database();
    let d = watching(&pg).await;
    let mut child = python_otel_app(
        &d,
        &pg,
        "leaky-reports",
        &[("WORK", "leak"), ("LEAK", "6"), ("EVERY", "0.3")],
    );
    let app = &format!(r#"{{database="{db}",app="leaky-reports",app_instance=""}}"#);
    let m = d
        .wait_metrics(Duration::from_secs(40), "the leak to be flagged", |m| {
            value(m, &format!("poolwatch_app_leak_suspected{app}")) == Some(1.0)
        })
        .await;
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("{}", lines_of(&m, "leaky-reports"));
    let pool = &format!(
        r#"{{database="{db}",app="leaky-reports",pool="main",app_instance="pod-leaky-reports"}}"#
    );
    let in_use = value(&m, &format!("poolwatch_pool_in_use_connections{pool}")).unwrap();
    assert!(in_use >= 2.0, "checked out and never returned: {in_use}");
    assert!(
        value(&m, &format!("poolwatch_app_server_connections{app}")).unwrap() >= in_use,
        "{}",
        lines_of(&m, "leaky-reports")
    );
    // Called for the right reason: connections checked out per the pool and idle on the
    // server since before its latest export.
    assert_eq!(
        value(
            &m,
            &format!(
                r#"poolwatch_app_leak_reason{{database="{db}",app="leaky-reports",app_instance="",reason="idle_in_use"}}"#
            )
        ),
        Some(1.0),
        "{}",
        lines_of(&m, "leaky-reports")
    );
    assert!(value(&m, &format!("poolwatch_app_stuck_connections{app}")).unwrap() >= 2.0);
    // The stuck connections are the leaked ones: idle in ClientRead, named by the app.
    let r = common::http(d.addr, "GET", "/api/v1/connections?app=leaky-reports", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let conns = j["applications"][0]["connections"].as_array().unwrap();
    assert!(!conns.is_empty(), "{j}");
    for c in conns {
        assert_eq!(c["application_name"], "leaky-reports", "{c}");
        assert_eq!(c["wait_event"], "ClientRead", "{c}");
    }
    // SQLAlchemy ran its query in a transaction: the last statement is its COMMIT.
    assert_eq!(conns[0]["query"], "COMMIT", "{j}");
    d.stop().await;
}

/// Whether `examples/clients/<dir>/node_modules` holds `module`; under CI it must.
fn node_modules(dir: &str, module: &str) -> bool {
    let path = format!(
        "{}/examples/clients/{dir}/node_modules/{module}",
        env!("CARGO_MANIFEST_DIR")
    );
    let ok = std::path::Path::new(&path).is_dir();
    if !ok {
        assert!(
            !common::in_ci(),
            "{path} missing under CI (.ci/run runs npm ci there)"
        );
        eprintln!("SKIPPED: run `npm ci` in examples/clients/{dir}");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_otel_protobuf_and_json_exports_become_pools() {
    let Some(node) = require_tool("node") else {
        return;
    };
    if !node_modules("node-otel", "@opentelemetry/instrumentation-pg") {
        return;
    }
    let pg = Pg::start();
    let db = pg.database();
    let d = watching(&pg).await;
    let mut children = [("web", "protobuf"), ("web-json", "json")].map(|(service, encoding)| {
        otel_client(
            &node,
            "node-otel",
            "app.js",
            &d,
            &pg,
            service,
            &[
                ("OTLP_ENCODING", encoding),
                ("EXPORT_MS", "300"),
                ("WORKERS", "3"),
            ],
        )
    });
    let pool_of = |service: &str| {
        format!(
            r#"{{database="{db}",app="{service}",pool="127.0.0.1:{}_postgres",app_instance="pod-{service}"}}"#,
            pg.port
        )
    };
    let app_of = |service: &str| format!(r#"{{database="{db}",app="{service}",app_instance=""}}"#);
    let m = d
        .wait_metrics(
            Duration::from_secs(30),
            "both Node pools, joined with the server view",
            |m| {
                ["web", "web-json"].iter().all(|s| {
                    // The analysis has joined the pool (as pushed) and the server's view.
                    value(m, &format!("poolwatch_pool_open_connections{}", pool_of(s))) == Some(3.0)
                        && value(
                            m,
                            &format!("poolwatch_app_pool_open_connections{}", app_of(s)),
                        ) == Some(3.0)
                        && value(m, &format!("poolwatch_app_server_connections{}", app_of(s)))
                            == Some(3.0)
                })
            },
        )
        .await;
    // Three workers whose connections run queries and go back to the pool: no leak.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let m = d.metrics().await;
        for service in ["web", "web-json"] {
            assert_eq!(
                value(
                    &m,
                    &format!("poolwatch_app_leak_suspected{}", app_of(service))
                ),
                Some(0.0),
                "{}",
                lines_of(&m, service)
            );
        }
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    for service in ["web", "web-json"] {
        eprintln!("{}", lines_of(&m, service));
        assert_series(
            &m,
            &pool_of(service),
            &[("poolwatch_pool_max_open_connections", 10.0)],
        );
        assert_series(
            &m,
            &app_of(service),
            &[
                ("poolwatch_app_pool_open_connections", 3.0),
                ("poolwatch_app_unaccounted_connections", 0.0),
            ],
        );
    }
    for format in ["otlp_protobuf", "otlp_json"] {
        assert!(
            value(
                &m,
                &format!(
                    r#"poolwatch_ingest_requests_total{{format="{format}",outcome="accepted"}}"#
                )
            )
            .unwrap()
                >= 1.0,
            "{format}"
        );
    }
    // db.client.operation.duration is dropped unread.
    assert!(value(&m, "poolwatch_ingest_otlp_ignored_metrics_total").unwrap() >= 1.0);
    d.stop().await;
}
