//! Many databases from one poolwatch: one sampler task per database, each with its own
//! session, `pg_up`, sample errors and backoff, and its own analysis task.
//!
//! Every database of the `databases` list ([`config`]) becomes a [`Member`]: a
//! [`Sampler`] (one session, the same timeouts and `application_name` as a single
//! database gets) and a [`Ticker`] that analyses the pools attributed to it against its
//! sample. The members run as independent tasks, so a database that is slow or down
//! delays no other. [`Fleet::apply`] compares a new list with the running one by name and
//! fingerprint and starts, stops or restarts only what changed; [`reload`] calls it on
//! SIGHUP and when the configuration file changes.
//!
//! Pools are attributed to a database ([`Fleet::database_of`]): the one the push named,
//! else the database where backends carry the pool's `application_name` (or the
//! application's name), the most of them when several have some (ties by name), else
//! the database with the most backends whose `client_addr` is the push's TCP peer
//! address (the same tie rule; loopback addresses included), else none:
//! [`config::UNATTRIBUTED`]. The counts by name and by address are taken once per
//! sample of each database, not per pool. Unattributed pools are analysed by a ticker of their
//! own, without a server view.

pub mod config;
pub mod reload;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::analysis::attribute::truncate_application_name as cut;
use crate::ingest::PoolKey;
use crate::sampler::{Sample, Sampler, ServerState, ERROR_KINDS};
use crate::store::{Entry, Store};
use crate::tick::{AnalysisSettings, PoolFilter, Report, Ticker};
use crate::Mode;
use config::{DatabaseEntry, UNATTRIBUTED};

/// One watched database, running.
pub struct Member {
    /// The entry it runs with.
    pub fingerprint: u64,
    /// The sampler's latest state.
    pub server: watch::Receiver<Arc<ServerState>>,
    /// The analysis' latest report.
    pub reports: watch::Receiver<Arc<Report>>,
    /// Stops its tasks.
    cancel: CancellationToken,
    /// Its tasks; waited for when it stops, so its session is closed before a
    /// replacement opens one.
    tasks: TaskTracker,
    /// Backends per `application_name` and per `client_addr` in the latest sample,
    /// computed once per sample.
    counts: Mutex<CountsCache>,
}

/// Backends of one sample, counted by `application_name` and by client address.
#[derive(Default)]
struct Counts {
    /// Per `application_name`.
    names: HashMap<String, u32>,
    /// Per `client_addr` (IPv4-mapped IPv6 folded into IPv4); Unix-socket backends
    /// (no address) are not counted.
    addrs: HashMap<IpAddr, u32>,
}

/// The sample the counts were taken from, and the counts.
type CountsCache = (Option<Arc<Sample>>, Arc<Counts>);

impl Member {
    /// Backends per `application_name` and per client address in the latest sample
    /// (empty while down).
    fn counts(&self) -> Arc<Counts> {
        let state = self.server.borrow().clone();
        let sample = state.sample.clone().filter(|_| state.up);
        let mut cache = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let same = match (&cache.0, &sample) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            let mut c = Counts::default();
            for b in sample.iter().flat_map(|s| s.backends.iter()) {
                *c.names.entry(b.application_name.clone()).or_insert(0) += 1;
                if let Ok(ip) = b.client_addr.trim().parse::<IpAddr>() {
                    *c.addrs.entry(ip.to_canonical()).or_insert(0) += 1;
                }
            }
            *cache = (sample, Arc::new(c));
        }
        cache.1.clone()
    }
}

/// What a member's analysis needs besides its database.
#[derive(Clone)]
pub struct AnalysisContext {
    /// The analysis settings.
    pub settings: AnalysisSettings,
    /// Deploy mode (central).
    pub mode: Mode,
    /// This poolwatch's instance.
    pub instance: String,
    /// This pod's IP.
    pub pod_ip: Option<IpAddr>,
}

/// The running members, by name.
pub struct Fleet {
    /// Members by database name.
    members: RwLock<BTreeMap<String, Arc<Member>>>,
    /// `poolwatch_pg_sample_errors_total{database, kind}`.
    errors: IntCounterVec,
    /// `poolwatch_databases_watched`.
    watched: IntGauge,
    /// The pools.
    store: Arc<Store>,
    /// For the members' tickers.
    analysis: AnalysisContext,
    /// The report of the pools attributed to no database.
    unattributed: watch::Receiver<Arc<Report>>,
    /// Its ticker, until [`Fleet::start`] runs it.
    unattributed_ticker: Mutex<Option<Ticker>>,
    /// Stops every member.
    cancel: CancellationToken,
    /// Every member's tasks.
    tasks: TaskTracker,
    /// Itself, for the pool filters of the tickers.
    me: Weak<Fleet>,
}

impl Fleet {
    /// Registers the fleet's metrics; no member runs until [`Fleet::apply`].
    pub fn register(
        registry: &Registry,
        store: Arc<Store>,
        analysis: AnalysisContext,
    ) -> prometheus::Result<Arc<Fleet>> {
        let errors = IntCounterVec::new(
            Opts::new(
                "poolwatch_pg_sample_errors_total",
                "Failed connection or sample attempts, by database and kind.",
            ),
            &["database", "kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        let watched = IntGauge::new(
            "poolwatch_databases_watched",
            "Databases of the databases list being sampled, each by its own session.",
        )?;
        registry.register(Box::new(watched.clone()))?;
        Ok(Arc::new_cyclic(|me: &Weak<Fleet>| {
            let (ticker, unattributed) = Ticker::new(
                &analysis.settings,
                analysis.mode,
                &analysis.instance,
                analysis.pod_ip,
                None,
                store.clone(),
                None,
            );
            let ticker = ticker.with_filter(filter(me.clone(), UNATTRIBUTED.to_string()));
            Fleet {
                members: RwLock::new(BTreeMap::new()),
                errors,
                watched,
                store,
                analysis,
                unattributed,
                unattributed_ticker: Mutex::new(Some(ticker)),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                me: me.clone(),
            }
        }))
    }

    /// Starts the analysis of the unattributed pools, and the members of `entries`.
    pub async fn start(&self, entries: &[DatabaseEntry]) {
        let ticker = self
            .unattributed_ticker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = ticker {
            self.tasks.spawn(t.run(self.cancel.clone()));
        }
        self.apply(entries).await;
    }

    /// Brings the running members in line with `entries`: members no longer listed, or
    /// whose entry changed, are stopped (their sessions closed) and the new ones
    /// started; the others are left alone. Returns (started, stopped) names.
    pub async fn apply(&self, entries: &[DatabaseEntry]) -> (Vec<String>, Vec<String>) {
        let wanted: BTreeMap<&str, &DatabaseEntry> =
            entries.iter().map(|e| (e.name.as_str(), e)).collect();
        let stopping: Vec<(String, Arc<Member>)> = {
            let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = members
                .iter()
                .filter(|(name, m)| {
                    wanted
                        .get(name.as_str())
                        .is_none_or(|e| e.fingerprint != m.fingerprint)
                })
                .map(|(name, _)| name.clone())
                .collect();
            gone.into_iter()
                .filter_map(|n| members.remove(&n).map(|m| (n, m)))
                .collect()
        };
        let mut stopped = Vec::new();
        for (name, m) in stopping {
            m.cancel.cancel();
            m.tasks.wait().await;
            for kind in ERROR_KINDS {
                let _ = self.errors.remove_label_values(&[name.as_str(), kind]);
            }
            tracing::info!(database = %name, "stopped watching database");
            stopped.push(name);
        }
        let mut started = Vec::new();
        for e in entries {
            let running = self
                .members
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&e.name);
            if !running {
                let m = self.spawn(e);
                self.members
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(e.name.clone(), m);
                started.push(e.name.clone());
            }
        }
        self.watched.set(self.len() as i64);
        (started, stopped)
    }

    fn spawn(&self, e: &DatabaseEntry) -> Arc<Member> {
        let errors: Vec<_> = ERROR_KINDS
            .iter()
            .map(|k| (*k, self.errors.with_label_values(&[e.name.as_str(), k])))
            .collect();
        let (sampler, server) = Sampler::new(e.db.clone(), errors, Some(e.name.clone()));
        let a = &self.analysis;
        let (ticker, reports) = Ticker::new(
            &a.settings,
            a.mode,
            &a.instance,
            a.pod_ip,
            None,
            self.store.clone(),
            Some(server.clone()),
        );
        let ticker = ticker.with_filter(filter(self.me.clone(), e.name.clone()));
        let cancel = self.cancel.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(sampler.run(cancel.clone()));
        tasks.spawn(ticker.run(cancel.clone()));
        // Closed now so that waiting for it ends when both tasks have.
        tasks.close();
        let t = tasks.clone();
        self.tasks.spawn(async move { t.wait().await });
        Arc::new(Member {
            fingerprint: e.fingerprint,
            server,
            reports,
            cancel,
            tasks,
            counts: Mutex::new((None, Arc::new(Counts::default()))),
        })
    }

    /// Databases running.
    pub fn len(&self) -> usize {
        self.members.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `name` is a database of the list.
    pub fn contains(&self, name: &str) -> bool {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// The running members, by name.
    pub fn members(&self) -> Vec<(String, Arc<Member>)> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect()
    }

    /// The report of the pools attributed to no database.
    pub fn unattributed(&self) -> watch::Receiver<Arc<Report>> {
        self.unattributed.clone()
    }

    /// The latest report of every running database, by name, then the unattributed
    /// pools' ([`UNATTRIBUTED`]).
    pub fn reports(&self) -> Vec<(String, Arc<Report>)> {
        let mut r: Vec<(String, Arc<Report>)> = self
            .members()
            .into_iter()
            .map(|(name, m)| (name, m.reports.borrow().clone()))
            .collect();
        r.push((UNATTRIBUTED.to_string(), self.unattributed.borrow().clone()));
        r
    }

    /// The database a pool belongs to (see the module's documentation).
    pub fn database_of(&self, key: &PoolKey, entry: &Entry) -> String {
        let members = self.members();
        if let Some(named) = &entry.snapshot.database {
            if members.iter().any(|(n, _)| n == named) {
                return named.clone();
            }
        }
        let counts: Vec<(&str, Arc<Counts>)> = members
            .iter()
            .map(|(n, m)| (n.as_str(), m.counts()))
            .collect();
        let wanted = [cut(&entry.snapshot.application_name), cut(&key.app)];
        let by_name = most(&counts, |c| {
            if wanted[0] == wanted[1] {
                c.names.get(wanted[0]).copied().unwrap_or(0)
            } else {
                wanted
                    .iter()
                    .filter(|w| !w.is_empty())
                    .map(|w| c.names.get(*w).copied().unwrap_or(0))
                    .sum()
            }
        });
        let by_addr = || {
            let peer = entry.snapshot.peer?;
            most(&counts, |c| c.addrs.get(&peer).copied().unwrap_or(0))
        };
        by_name
            .or_else(by_addr)
            .map_or_else(|| UNATTRIBUTED.to_string(), str::to_string)
    }

    /// Stops every member and waits until their sessions are closed.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The database with the most backends by `count` (at least one; ties: the first name).
fn most<'a>(counts: &[(&'a str, Arc<Counts>)], count: impl Fn(&Counts) -> u32) -> Option<&'a str> {
    let mut best: Option<(u32, &str)> = None;
    for (name, c) in counts {
        let n = count(c);
        if n > 0 && best.is_none_or(|(b, _)| n > b) {
            best = Some((n, name));
        }
    }
    best.map(|(_, n)| n)
}

/// A pool filter for the analysis of database `name`.
fn filter(fleet: Weak<Fleet>, name: String) -> PoolFilter {
    Arc::new(move |k: &PoolKey, e: &Entry| {
        fleet.upgrade().is_some_and(|f| f.database_of(k, e) == name)
    })
}
