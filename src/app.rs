//! Wiring only: the registry, the store, the sampler task, the listeners, and the
//! shutdown order (readiness off, listeners closed and drained within the grace period,
//! then the sampler's session closed).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::fleet::{self, AnalysisContext, Fleet};
use crate::http::web::{Reloader, WebConfig};
use crate::http::{self, push::IngestMetrics, Ctx, Routes};
use crate::metrics::databases::FleetCollector;
use crate::metrics::{self, apps::AppCollector, pools::PoolCollector, server::ServerCollector};
use crate::sampler::Sampler;
use crate::store::Store;
use crate::tick::{Report, Ticker};

/// The bound listeners: metrics, and push when it has an address of its own.
pub struct Listeners {
    /// `/metrics`, health, and the push endpoints too when `push` is `None`.
    pub metrics: TcpListener,
    /// The push endpoints on their own address.
    pub push: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(cfg: &Config) -> io::Result<Listeners> {
        let metrics = bind(cfg.daemon.listen_address).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (listen_address): {e}",
                    cfg.daemon.listen_address
                ),
            )
        })?;
        let push = if cfg.daemon.push_listen_address == cfg.daemon.listen_address {
            None
        } else {
            Some(bind(cfg.daemon.push_listen_address).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on {} (push_listen_address): {e}",
                        cfg.daemon.push_listen_address
                    ),
                )
            })?)
        };
        Ok(Listeners { metrics, push })
    }
}

/// Binds `addr`. The IPv6 wildcard `[::]` takes IPv4 connections too (as `::ffff:a.b.c.d`,
/// whatever `net.ipv6.bindv6only` says), so one listener serves IPv4-only, dual-stack and
/// IPv6-only pods; on a host without IPv6 it falls back to `0.0.0.0`, with a warning.
async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return TcpListener::bind(addr).await;
    }
    let dual_stack = || -> io::Result<TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        // As tokio's own bind does: a restart does not wait for TIME_WAIT to pass.
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    match dual_stack() {
        Ok(listener) => Ok(listener),
        Err(e) if matches!(e.raw_os_error(), Some(EAFNOSUPPORT | EADDRNOTAVAIL)) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!(address = %addr, fallback = %v4, error = %e, "no IPv6 on this host; listening on IPv4 only");
            TcpListener::bind(v4).await
        }
        Err(e) => Err(e),
    }
}

/// `EAFNOSUPPORT` and `EADDRNOTAVAIL` on Linux: what creating or binding an IPv6 socket
/// fails with when the kernel has IPv6 off.
const EAFNOSUPPORT: i32 = 97;
const EADDRNOTAVAIL: i32 = 99;

/// Everything `/metrics` renders, wired as the daemon wires it; the sampler is not yet
/// running. Tests build one to render fixed inputs.
pub struct Core {
    /// The metrics components register.
    pub registry: prometheus::Registry,
    /// The views rendered at scrape time.
    pub views: Arc<metrics::Views>,
    /// Pool snapshots.
    pub store: Arc<Store>,
    /// Push outcome counters.
    pub ingest: IngestMetrics,
    /// Open connections per listener.
    pub open_connections: prometheus::IntGaugeVec,
    /// The sampler, when a database is configured.
    pub sampler: Option<Sampler>,
    /// Pushgateway-format groups.
    pub groups: crate::http::pushgateway::Groups,
    /// The OTLP receiver.
    pub otlp: crate::http::otlp::Receiver,
    /// The analysis task.
    pub ticker: Ticker,
    /// Sidecar mode with `forward.url`: the task forwarding the pools.
    pub forwarder: Option<crate::forward::Forwarder>,
    /// Its reports.
    pub reports: tokio::sync::watch::Receiver<Arc<Report>>,
    /// With `web_config_file`: what re-reads it, and the configuration in force.
    pub web: Option<(Reloader, tokio::sync::watch::Receiver<Arc<WebConfig>>)>,
    /// With a `databases` list: the databases, and what reloads the list when the
    /// configuration came from a file. The fleet analyses its pools itself; `ticker`
    /// is then not run.
    pub fleet: Option<(Arc<Fleet>, Option<fleet::reload::Reloader>)>,
}

impl Core {
    /// Creates the registry and registers every component's metrics.
    pub fn new(cfg: &Config) -> prometheus::Result<Core> {
        let registry = metrics::new_registry()?;
        let store = Arc::new(Store::register(&registry, &cfg.pools)?);
        let consts = metrics::ConstLabels::database(cfg.database_label.as_deref());
        let mut views = metrics::Views::default();
        let ingest = IngestMetrics::register(&registry)?;
        let open_connections = http::register_connections(
            &registry,
            cfg.daemon.push_listen_address != cfg.daemon.listen_address,
        )?;
        let groups = crate::http::pushgateway::Groups::register(
            &registry,
            cfg.pools.expiry,
            cfg.pools.max_pools,
        )?;
        let otlp = crate::http::otlp::Receiver::register(&registry, cfg.pools.expiry)?;
        let (sampler, server_rx) = match cfg.database.clone() {
            Some(db) => {
                let (sampler, rx) = Sampler::register(&registry, db)?;
                views.add(ServerCollector::new(rx.clone(), consts.clone()));
                (Some(sampler), Some(rx))
            }
            None => (None, None),
        };
        let forwarder = match cfg.forward.clone() {
            Some(f) => Some(crate::forward::Forwarder::register(
                &registry,
                f,
                store.clone(),
                cfg.analysis.interval,
            )?),
            None => None,
        };
        let (ticker, reports) = Ticker::new(
            &cfg.analysis,
            cfg.daemon.mode,
            &cfg.daemon.instance,
            cfg.daemon.pod_ip,
            cfg.socket.clone(),
            store.clone(),
            server_rx,
        );
        let fleet = if cfg.databases.is_none() {
            views.add(PoolCollector::new(store.clone(), consts.clone()));
            views.add(AppCollector::new(reports.clone(), consts));
            None
        } else {
            let f = Fleet::register(
                &registry,
                store.clone(),
                AnalysisContext {
                    settings: cfg.analysis.clone(),
                    mode: cfg.daemon.mode,
                    instance: cfg.daemon.instance.clone(),
                    pod_ip: cfg.daemon.pod_ip,
                },
            )?;
            let attributed = f.clone();
            views.add(
                PoolCollector::new(store.clone(), consts)
                    .by_database(Arc::new(move |k, e| attributed.database_of(k, e))),
            );
            views.add(FleetCollector::new(f.clone()));
            let reloader = match &cfg.source {
                Some((file, flags)) => {
                    let (path, flags) = (file.clone(), flags.clone());
                    let load: fleet::reload::LoadList = Arc::new(move || {
                        crate::config::load(Some(&path), &flags, &crate::config::process_env)
                            .map(|c| c.databases)
                            .map_err(|e| e.to_string())
                    });
                    Some(fleet::reload::Reloader::register(
                        &registry,
                        f.clone(),
                        file.clone(),
                        load,
                    )?)
                }
                None => None,
            };
            Some((f, reloader))
        };
        let web = match cfg.web.clone() {
            Some(w) => Some(Reloader::register(&registry, w)?),
            None => None,
        };
        Ok(Core {
            registry,
            views: Arc::new(views),
            store,
            ingest,
            open_connections,
            groups,
            otlp,
            sampler,
            ticker,
            forwarder,
            reports,
            web,
            fleet,
        })
    }
}

/// Runs poolwatch until `cancel` fires, then shuts down in order.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    cancel: CancellationToken,
) -> prometheus::Result<()> {
    let core = Core::new(&cfg)?;
    let background = TaskTracker::new();
    let sampler_cancel = CancellationToken::new();
    let mut reports = core.reports;
    match (core.sampler, &core.fleet) {
        (Some(sampler), _) => {
            background.spawn(sampler.run(sampler_cancel.clone()));
        }
        (None, Some(_)) => {}
        (None, None) => tracing::info!(
            "no database configured (database.url, database.url_file, PGHOST/PGUSER/PGDATABASE or a databases list): running push-only, server view off"
        ),
    }
    let fleet = match core.fleet {
        Some((fleet, reloader)) => {
            let list = cfg.databases.as_deref().unwrap_or_default();
            tracing::info!(
                databases = list.len(),
                "watching a list of databases, each with its own session"
            );
            fleet.start(list).await;
            if let Some(r) = reloader {
                background.spawn(r.run(sampler_cancel.clone()));
            }
            reports = fleet.unattributed();
            Some(fleet)
        }
        None => {
            background.spawn(core.ticker.run(sampler_cancel.clone()));
            None
        }
    };
    if let Some(forwarder) = core.forwarder {
        background.spawn(forwarder.run(sampler_cancel.clone()));
    }
    let web = core.web.map(|(reloader, rx)| {
        background.spawn(reloader.run(sampler_cancel.clone()));
        rx
    });
    let ctx = Arc::new(Ctx {
        registry: core.registry,
        views: core.views,
        store: core.store,
        ingest: core.ingest,
        intake: http::push::Intake::new(cfg.http.max_body_bytes, cfg.http.request_timeout),
        groups: core.groups,
        otlp: core.otlp,
        fleet: fleet.clone(),
        database_label: cfg.database_label.clone(),
        reports,
        http: cfg.http.clone(),
        web,
        default_instance: cfg.daemon.instance.clone(),
        ready: AtomicBool::new(true),
        open_connections: core.open_connections,
    });
    let servers = TaskTracker::new();
    let grace = cfg.daemon.shutdown_grace;
    let metrics_addr = listeners.metrics.local_addr().ok();
    match listeners.push {
        None => {
            tracing::info!(address = ?metrics_addr, mode = cfg.daemon.mode.as_str(), "serving metrics and pushes");
            servers.spawn(http::serve(
                listeners.metrics,
                ctx.clone(),
                Routes {
                    metrics: true,
                    push: true,
                },
                cancel.clone(),
                grace,
            ));
        }
        Some(push) => {
            tracing::info!(address = ?metrics_addr, push_address = ?push.local_addr().ok(), mode = cfg.daemon.mode.as_str(), "serving metrics; pushes on their own address");
            servers.spawn(http::serve(
                listeners.metrics,
                ctx.clone(),
                Routes {
                    metrics: true,
                    push: false,
                },
                cancel.clone(),
                grace,
            ));
            servers.spawn(http::serve(
                push,
                ctx.clone(),
                Routes {
                    metrics: false,
                    push: true,
                },
                cancel.clone(),
                grace,
            ));
        }
    }
    servers.close();

    cancel.cancelled().await;
    ctx.ready.store(false, Ordering::Relaxed);
    tracing::info!(grace_seconds = grace.as_secs_f64(), "shutting down");
    servers.wait().await;
    sampler_cancel.cancel();
    if let Some(f) = &fleet {
        f.stop().await;
    }
    background.close();
    background.wait().await;
    tracing::info!("stopped");
    Ok(())
}
