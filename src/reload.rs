//! What makes a reloader re-read its files (the web configuration, the databases list):
//! SIGHUP, or a poll timer at which it compares the files with the last read, which
//! catches the kubelet's `..data` symlink swap of a mounted Secret or ConfigMap.

use std::time::Duration;

/// What makes a reloader re-read its files: SIGHUP, or a timer tick at which it compares
/// the files with the last read.
pub struct Triggers {
    /// SIGHUP, when it can be handled.
    hangup: Option<tokio::signal::unix::Signal>,
    /// The poll timer.
    timer: tokio::time::Interval,
}

impl Triggers {
    /// SIGHUP and a tick every `poll`; `what` names the reloaded files in the warning
    /// logged when SIGHUP cannot be handled.
    pub fn new(poll: Duration, what: &str) -> Triggers {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; {what} is still re-read when it changes");
                None
            }
        };
        let mut timer = tokio::time::interval(poll);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Triggers { hangup, timer }
    }

    /// The next trigger: `Some(true)` for SIGHUP (re-read whatever the files say),
    /// `Some(false)` for a tick (re-read if they changed), `None` once `cancel` fires.
    pub async fn next(&mut self, cancel: &tokio_util::sync::CancellationToken) -> Option<bool> {
        let hup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            _ = hup => Some(true),
            _ = self.timer.tick() => Some(false),
        }
    }
}

/// A reloader's two series: `<prefix>_reloads_total{outcome}` (success, failure; both
/// present from the start) and `<prefix>_last_reload_successful` (1 at start).
pub struct Outcomes {
    reloads: prometheus::IntCounterVec,
    last_ok: prometheus::IntGauge,
}

impl Outcomes {
    /// Registers `<prefix>_reloads_total` and `<prefix>_last_reload_successful` with
    /// their help texts.
    pub fn register(
        registry: &prometheus::Registry,
        prefix: &str,
        reloads_help: &str,
        last_ok_help: &str,
    ) -> prometheus::Result<Outcomes> {
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(format!("{prefix}_reloads_total"), reloads_help),
            &["outcome"],
        )?;
        for outcome in ["success", "failure"] {
            reloads.with_label_values(&[outcome]);
        }
        let last_ok =
            prometheus::IntGauge::new(format!("{prefix}_last_reload_successful"), last_ok_help)?;
        last_ok.set(1);
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_ok.clone()))?;
        Ok(Outcomes { reloads, last_ok })
    }

    /// A reload is in force.
    pub fn succeeded(&self) {
        self.reloads.with_label_values(&["success"]).inc();
        self.last_ok.set(1);
    }

    /// A reload failed; the previous state stays in force.
    pub fn failed(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
        self.last_ok.set(0);
    }
}
