//! Attribution: which application each server backend belongs to.
//!
//! Owns the matching rules and [`AppKey`]; it counts nothing and keeps no state.
//!
//! - A backend belongs to application `A` when its `application_name` equals the
//!   `application_name` one of `A`'s pools reports, or `A`'s own name, both cut to the 63 bytes PostgreSQL keeps. When two applications report the
//!   same name, the first by name wins, so the result never depends on input order.
//! - **Central mode**: every backend counts. A backend matching no pushed application is
//!   grouped under its own `application_name` (or [`UNNAMED_APPLICATION`]), at most
//!   `max_other_apps` such groups (the largest; ties by name), the rest under
//!   [`OTHER_APPLICATIONS`]. The key's `instance` is empty: the join is per application.
//! - **Sidecar mode**: the server view is filtered to this pod, so only backends whose
//!   `client_addr` is the pod's IP count (IPv4-mapped IPv6 equals its IPv4 form). Among
//!   them the name picks the application; a backend whose name matches none goes to the
//!   only pushed application when there is exactly one, and otherwise to a group under its
//!   own name. Backends from other addresses (other replicas) are ignored. Without a pod
//!   IP no backend can be placed, and the server view is left out (see
//!   [`server_view_usable`]). The key's `instance` is the instance the application's pools
//!   report when they agree on one, else the sidecar's own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::ingest::{PoolKey, MAX_APPLICATION_NAME_LEN};
use crate::sampler::activity::Backend;
use crate::store::Entry;
use crate::Mode;

pub use crate::sampler::activity::OTHER_APPLICATIONS;

/// Group name for backends that set no `application_name` (central mode).
pub const UNNAMED_APPLICATION: &str = "__unnamed__";

/// One row of the per-application join: labels `app` and, in sidecar mode, `instance`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    /// Application name (a pushed app, or a backend's own `application_name` group).
    pub app: String,
    /// Replica in sidecar mode; empty in central mode.
    pub instance: String,
}

impl AppKey {
    /// Builds a key from borrowed parts.
    pub fn new(app: &str, instance: &str) -> AppKey {
        AppKey {
            app: app.to_string(),
            instance: instance.to_string(),
        }
    }
}

/// Which backends belong to which application, by index into the sample's backends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attribution {
    /// Each application's backends, as indices into the `backends` slice given to
    /// [`attribute`], ascending.
    pub backends: BTreeMap<AppKey, Vec<usize>>,
    /// Backends left out (sidecar mode: not from this pod).
    pub ignored: usize,
}

/// The key a pool's numbers are joined under.
pub fn app_key_of_pool(mode: Mode, key: &PoolKey) -> AppKey {
    match mode {
        Mode::Central => AppKey::new(&key.app, ""),
        Mode::Sidecar => AppKey::new(&key.app, &key.instance),
    }
}

/// `s` cut to the 63 bytes PostgreSQL keeps of an `application_name`, at a character
/// boundary (the server never splits a character).
pub fn truncate_application_name(s: &str) -> &str {
    if s.len() <= MAX_APPLICATION_NAME_LEN {
        return s;
    }
    let mut end = MAX_APPLICATION_NAME_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `application_name` a pool's connections carry: the reported one, else the app's.
pub fn pool_application_name<'a>(key: &'a PoolKey, entry: &'a Entry) -> &'a str {
    let n = entry.snapshot.application_name.as_str();
    truncate_application_name(if n.is_empty() { &key.app } else { n })
}

/// Parses an address as PostgreSQL's `host(client_addr)` or the downward API prints it,
/// folding IPv4-mapped IPv6 into IPv4.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Whether the server view can be attributed at all: always in central mode; in sidecar
/// mode only with a parseable pod IP, since the view must be filtered to this pod.
pub fn server_view_usable(mode: Mode, pod_ip: Option<&str>) -> bool {
    match mode {
        Mode::Central => true,
        Mode::Sidecar => pod_ip.and_then(parse_ip).is_some(),
    }
}

/// Attributes every backend (see the module doc for the rules). `instance` is the
/// sidecar's own instance; `max_other_apps` caps the groups of unmatched names.
pub fn attribute(
    mode: Mode,
    pod_ip: Option<&str>,
    instance: &str,
    pools: &[(PoolKey, Entry)],
    backends: &[Backend],
    max_other_apps: usize,
) -> Attribution {
    // application_name -> the smallest app reporting it.
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    // app -> the instances its pools report.
    let mut instances: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, entry) in pools {
        for name in [
            pool_application_name(key, entry),
            truncate_application_name(&key.app),
        ] {
            by_name
                .entry(name)
                .and_modify(|a| {
                    if key.app.as_str() < *a {
                        *a = key.app.as_str();
                    }
                })
                .or_insert(key.app.as_str());
        }
        instances
            .entry(key.app.as_str())
            .or_default()
            .insert(key.instance.as_str());
    }
    let pod = pod_ip.and_then(parse_ip);
    let sidecar_instance = |app: &str| -> String {
        match instances.get(app) {
            Some(set) if set.len() == 1 => set.iter().next().map(|s| s.to_string()),
            _ => None,
        }
        .unwrap_or_else(|| instance.to_string())
    };
    let only_app: Option<&str> = if instances.len() == 1 {
        instances.keys().next().copied()
    } else {
        None
    };

    let mut out = Attribution::default();
    // Backends matching no pushed app, by their own name (capped below).
    let mut others: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        if mode == Mode::Sidecar {
            let from_pod = matches!((pod, parse_ip(&b.client_addr)), (Some(p), Some(c)) if p == c);
            if !from_pod {
                out.ignored += 1;
                continue;
            }
        }
        let name = truncate_application_name(&b.application_name);
        let app = by_name.get(name).copied().or(match mode {
            Mode::Sidecar => only_app,
            Mode::Central => None,
        });
        match app {
            Some(app) => {
                let key = match mode {
                    Mode::Central => AppKey::new(app, ""),
                    Mode::Sidecar => AppKey::new(app, &sidecar_instance(app)),
                };
                out.backends.entry(key).or_default().push(i);
            }
            None => others.entry(name).or_default().push(i),
        }
    }

    // Cap the unmatched groups: keep the largest, fold the rest into one.
    let mut ranked: Vec<(&str, Vec<usize>)> = others.into_iter().collect();
    ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let group_instance = match mode {
        Mode::Central => "",
        Mode::Sidecar => instance,
    };
    let mut rest: Vec<usize> = Vec::new();
    for (n, (name, idx)) in ranked.into_iter().enumerate() {
        if n < max_other_apps {
            let app = if name.is_empty() {
                UNNAMED_APPLICATION
            } else {
                name
            };
            out.backends
                .entry(AppKey::new(app, group_instance))
                .or_default()
                .extend(idx);
        } else {
            rest.extend(idx);
        }
    }
    if !rest.is_empty() {
        out.backends
            .entry(AppKey::new(OTHER_APPLICATIONS, group_instance))
            .or_default()
            .extend(rest);
    }
    for v in out.backends.values_mut() {
        v.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::PoolSnapshot;
    use std::time::Instant;

    fn pool(app: &str, instance: &str, application_name: &str) -> (PoolKey, Entry) {
        (
            PoolKey {
                app: app.into(),
                pool: "main".into(),
                instance: instance.into(),
            },
            Entry {
                snapshot: PoolSnapshot {
                    application_name: application_name.into(),
                    ..Default::default()
                },
                received: Instant::now(),
                received_unix: 0.0,
            },
        )
    }

    fn backend(application_name: &str, client_addr: &str) -> Backend {
        Backend {
            application_name: application_name.into(),
            client_addr: client_addr.into(),
            ..Default::default()
        }
    }

    fn names(a: &Attribution) -> Vec<(String, String, Vec<usize>)> {
        a.backends
            .iter()
            .map(|(k, v)| (k.app.clone(), k.instance.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn truncation_keeps_63_bytes_at_a_char_boundary() {
        let long = "a".repeat(70);
        assert_eq!(truncate_application_name(&long).len(), 63);
        // 62 ASCII bytes then a 2-byte character: byte 63 is inside it, so cut before.
        let s = format!("{}é", "a".repeat(62));
        assert_eq!(truncate_application_name(&s), "a".repeat(62));
        assert_eq!(truncate_application_name("short"), "short");
    }

    #[test]
    fn attribution_table() {
        let long = format!("billing-{}", "x".repeat(80));
        struct Case {
            name: &'static str,
            mode: Mode,
            pod_ip: Option<&'static str>,
            pools: Vec<(PoolKey, Entry)>,
            backends: Vec<Backend>,
            max_other: usize,
            want: Vec<(&'static str, &'static str, Vec<usize>)>,
            ignored: usize,
        }
        let cases = vec![
            Case {
                name: "central: reported name, default name, unmatched group, unnamed",
                mode: Mode::Central,
                pod_ip: None,
                pools: vec![pool("api", "p1", "api-svc"), pool("worker", "p2", "")],
                backends: vec![
                    backend("api-svc", "10.0.0.1"),
                    backend("worker", "10.0.0.2"),
                    backend("psql", "10.0.0.3"),
                    backend("", ""),
                    backend("api", "10.0.0.1"),
                ],
                max_other: 10,
                want: vec![
                    ("__unnamed__", "", vec![3]),
                    ("api", "", vec![0, 4]),
                    ("psql", "", vec![2]),
                    ("worker", "", vec![1]),
                ],
                ignored: 0,
            },
            Case {
                name: "central: a pushed name longer than 63 bytes matches the server's cut",
                mode: Mode::Central,
                pod_ip: None,
                pools: vec![pool(
                    "billing",
                    "p",
                    Box::leak(long.clone().into_boxed_str()),
                )],
                backends: vec![backend(truncate_application_name(&long), "")],
                max_other: 10,
                want: vec![("billing", "", vec![0])],
                ignored: 0,
            },
            Case {
                name: "central: unmatched groups beyond the cap fold into __other__",
                mode: Mode::Central,
                pod_ip: None,
                pools: vec![],
                backends: vec![
                    backend("a", ""),
                    backend("b", ""),
                    backend("b", ""),
                    backend("c", ""),
                ],
                max_other: 1,
                want: vec![("__other__", "", vec![0, 3]), ("b", "", vec![1, 2])],
                ignored: 0,
            },
            Case {
                name: "sidecar: only this pod's backends; unnamed ones go to the only app",
                mode: Mode::Sidecar,
                pod_ip: Some("10.0.0.7"),
                pools: vec![pool("api", "pod-a", "")],
                backends: vec![
                    backend("api", "10.0.0.7"),
                    backend("api", "10.0.0.8"),
                    backend("", "::ffff:10.0.0.7"),
                ],
                max_other: 10,
                want: vec![("api", "pod-a", vec![0, 2])],
                ignored: 1,
            },
            Case {
                name: "sidecar: several apps, an unmatched backend gets its own group",
                mode: Mode::Sidecar,
                pod_ip: Some("fd00::7"),
                pools: vec![pool("api", "pod-a", ""), pool("cron", "pod-a", "")],
                backends: vec![
                    backend("cron", "fd00::7"),
                    backend("psql", "fd00::7"),
                    backend("api", "fd00::8"),
                ],
                max_other: 10,
                want: vec![("cron", "pod-a", vec![0]), ("psql", "self", vec![1])],
                ignored: 1,
            },
            Case {
                name: "sidecar without a pod IP: nothing can be placed",
                mode: Mode::Sidecar,
                pod_ip: None,
                pools: vec![pool("api", "pod-a", "")],
                backends: vec![backend("api", "10.0.0.7")],
                max_other: 10,
                want: vec![],
                ignored: 1,
            },
        ];
        for c in cases {
            let got = attribute(c.mode, c.pod_ip, "self", &c.pools, &c.backends, c.max_other);
            let want: Vec<(String, String, Vec<usize>)> = c
                .want
                .iter()
                .map(|(a, i, v)| (a.to_string(), i.to_string(), v.clone()))
                .collect();
            assert_eq!(names(&got), want, "{}", c.name);
            assert_eq!(got.ignored, c.ignored, "{}: ignored", c.name);
        }
    }
}
