//! The daemon's own section: deploy mode, the default `app_instance`, the two listeners,
//! the shutdown grace and logging: the keys that belong to no component but to the
//! process as a whole ([`crate::app`] binds and drains the listeners, `main` sets up
//! logging).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::keys::{Key, Kind, Values};
use crate::Mode;

/// Metrics, health and read-only API. The 9100-9999 exporter range of the Prometheus
/// port allocations is full, so poolwatch sits outside it.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 19187);
/// Push endpoints in sidecar mode: loopback only, so only the pod itself can push.
pub const DEFAULT_SIDECAR_PUSH_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 19188);

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` fields then a sentence, for people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The daemon's own settings.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Deploy mode.
    pub mode: Mode,
    /// Default `instance` label for pushes that do not name one.
    pub instance: String,
    /// Address for `/metrics`, `/healthz`, `/readyz`.
    pub listen_address: SocketAddr,
    /// Address for the push endpoints; equal to `listen_address` means one listener.
    pub push_listen_address: SocketAddr,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `tracing` filter directive, e.g. `info` or `poolwatch=debug`.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// This pod's IP (sidecar mode): backends whose `client_addr` is this IP belong to the
    /// pod's application.
    pub pod_ip: Option<IpAddr>,
}

const MODE: Key = Key::new(
    "mode",
    Kind::Choice(&["sidecar", "central"]),
    "central",
    &["POOLWATCH_MODE"],
)
.flag(
    "--mode",
    "MODE",
    "Deploy mode: sidecar or central (default central)",
);
const INSTANCE: Key = Key::new("instance", Kind::Text, "-", &["POOLWATCH_INSTANCE"]).flag(
    "--instance",
    "NAME",
    "Default instance label for pushes (default: $POD_NAME in sidecar mode)",
);
const LISTEN: Key = Key::new(
    "listen_address",
    Kind::Address,
    "[::]:19187",
    &["POOLWATCH_LISTEN_ADDRESS"],
)
.flag(
    "--listen",
    "ADDR",
    "Address for /metrics and health (default [::]:19187: IPv4 and IPv6)",
);
const PUSH_LISTEN: Key = Key::new(
    "push_listen_address",
    Kind::Address,
    "-",
    &["POOLWATCH_PUSH_LISTEN_ADDRESS"],
)
.flag(
    "--push-listen",
    "ADDR",
    "Address for pushes (default: --listen in central mode, 127.0.0.1:19188 in sidecar mode)",
);
const SHUTDOWN_GRACE: Key = Key::new(
    "shutdown_grace_seconds",
    Kind::Seconds,
    "10",
    &["POOLWATCH_SHUTDOWN_GRACE_SECONDS"],
);
const LOG_LEVEL: Key = Key::new("log_level", Kind::Text, "info", &["POOLWATCH_LOG_LEVEL"]).flag(
    "--log-level",
    "LEVEL",
    "Log level or tracing filter, e.g. info or poolwatch=debug",
);
const LOG_FORMAT: Key = Key::new(
    "log_format",
    Kind::Choice(&["text", "json"]),
    "text",
    &["POOLWATCH_LOG_FORMAT"],
)
.flag("--log-format", "FORMAT", "Log format: text or json");
const POD_IP: Key = Key::new("pod_ip", Kind::Text, "-", &["POOLWATCH_POD_IP", "POD_IP"]);

impl DaemonConfig {
    /// The keys of the daemon as a whole.
    pub const KEYS: &'static [Key] = &[
        MODE,
        INSTANCE,
        LISTEN,
        PUSH_LISTEN,
        SHUTDOWN_GRACE,
        LOG_LEVEL,
        LOG_FORMAT,
        POD_IP,
    ];

    /// Reads the daemon's keys; problems go to `v`.
    pub fn from_values(v: &mut Values) -> DaemonConfig {
        let mode = match v.choice(&MODE) {
            "sidecar" => Mode::Sidecar,
            _ => Mode::Central,
        };
        let instance = match v.text(&INSTANCE) {
            Some(i) => i,
            None if mode == Mode::Sidecar => v.env("POD_NAME").unwrap_or_default(),
            None => String::new(),
        };
        if instance.len() > 253 {
            v.bad(&INSTANCE, "at most 253 characters");
        }
        let listen_address = v.address(&LISTEN).unwrap_or(DEFAULT_LISTEN);
        let push_listen_address = v.address(&PUSH_LISTEN).unwrap_or(match mode {
            Mode::Sidecar => DEFAULT_SIDECAR_PUSH_LISTEN,
            Mode::Central => listen_address,
        });
        if push_listen_address != listen_address
            && push_listen_address.port() == listen_address.port()
            && push_listen_address.port() != 0
        {
            v.problem(format!(
                "push_listen_address {push_listen_address} and listen_address {listen_address} share a port but not an address; use the same address or another port"
            ));
        }
        let shutdown_grace = v.seconds(&SHUTDOWN_GRACE);
        let log_level = v.text_or_default(&LOG_LEVEL);
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            v.bad(
                &LOG_LEVEL,
                "a level (error, warn, info, debug, trace) or a tracing filter",
            );
        }
        let log_format = match v.choice(&LOG_FORMAT) {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let pod_ip = match v.text(&POD_IP).filter(|s| !s.is_empty()) {
            Some(ip) => ip
                .parse::<IpAddr>()
                .map_err(|_| v.bad(&POD_IP, "an IP address"))
                .ok(),
            None => None,
        };
        DaemonConfig {
            mode,
            instance,
            listen_address,
            push_listen_address,
            shutdown_grace,
            log_level,
            log_format,
            pod_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{env, values};

    fn daemon(pairs: &[(&Key, &str)], e: &[(&str, &str)]) -> Result<DaemonConfig, Vec<String>> {
        let e = env(e);
        let mut v = values(pairs, &e);
        let d = DaemonConfig::from_values(&mut v);
        let (problems, _) = v.finish();
        if problems.is_empty() {
            Ok(d)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn central_listens_once_and_a_sidecar_takes_pushes_on_loopback_as_its_pod() {
        let c = daemon(&[], &[("POD_NAME", "api-7f9c-x2")]).unwrap();
        assert_eq!(c.mode, Mode::Central);
        assert_eq!(c.listen_address, DEFAULT_LISTEN);
        assert_eq!(LISTEN.default, DEFAULT_LISTEN.to_string());
        assert_eq!(c.push_listen_address, c.listen_address);
        assert_eq!(c.instance, "", "a central instance is no pod");

        let s = daemon(&[(&MODE, "sidecar")], &[("POD_NAME", "api-7f9c-x2")]).unwrap();
        assert_eq!(s.push_listen_address, DEFAULT_SIDECAR_PUSH_LISTEN);
        assert!(s.push_listen_address.ip().is_loopback());
        assert_eq!(s.instance, "api-7f9c-x2");
    }

    #[test]
    fn each_rejection_names_its_key() {
        let long = "x".repeat(254);
        for (pairs, needle) in [
            (&[(&LISTEN, "nowhere")][..], "an address like"),
            (&[(&LOG_LEVEL, "info,,=x")], "log_level"),
            (&[(&POD_IP, "not-an-ip")], "pod_ip"),
            (&[(&PUSH_LISTEN, "127.0.0.1:19187")], "share a port"),
            (&[(&INSTANCE, long.as_str())], "at most 253 characters"),
        ] {
            let err = daemon(pairs, &[]).expect_err(needle).join("\n");
            assert!(err.contains(needle), "{needle:?} missing from {err}");
        }
    }
}
