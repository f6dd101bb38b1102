//! Reloading the `databases` list without a restart: on SIGHUP, and when the
//! configuration file's text changes (checked every second).
//!
//! The whole configuration is read again (by the [`LoadList`] the daemon gives: the same
//! file and flags, with the environment as it is now) and validated as at start. When it
//! is valid, the fleet is brought in line with its `databases` list
//! ([`super::Fleet::apply`]): databases added start, removed ones stop (their sessions
//! closed), changed ones restart, the others are not touched. When it is not, the running
//! databases keep going, the problems are logged and the failure counted. Only the list (and the `database` settings its entries
//! inherit) takes effect by reload; other keys need a restart, and a warning says so.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::config::DatabaseEntry;
use super::Fleet;
use crate::reload::Outcomes;

/// Reads the whole configuration again and returns its `databases` list (`None` when it
/// has none), or every problem found, as one message.
pub type LoadList = Arc<dyn Fn() -> Result<Option<Vec<DatabaseEntry>>, String> + Send + Sync>;

/// How often the file's text is compared with the last one read.
const POLL: Duration = Duration::from_secs(1);

/// Re-reads the configuration and applies its `databases` list.
pub struct Reloader {
    /// The fleet to bring in line.
    fleet: Arc<Fleet>,
    /// The configuration file.
    file: PathBuf,
    /// Reads it (and the other sources) again.
    load: LoadList,
    /// Hash of the file's text as last read (read at start, or by the last attempt), so
    /// a bad file is not retried every second, only after a change or on SIGHUP.
    seen: Option<u64>,
    /// `poolwatch_config_reloads_total{outcome}`, `poolwatch_config_last_reload_successful`.
    outcomes: Outcomes,
}

fn text_hash(file: &PathBuf) -> Option<u64> {
    let text = std::fs::read(file).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
}

impl Reloader {
    /// A reloader for `fleet` of the configuration read from `file` by `load`; registers
    /// its metrics.
    pub fn register(
        registry: &Registry,
        fleet: Arc<Fleet>,
        file: PathBuf,
        load: LoadList,
    ) -> prometheus::Result<Reloader> {
        let outcomes = Outcomes::register(
            registry,
            "poolwatch_config",
            "Reloads of the configuration file's databases list (the file changed, or SIGHUP), by outcome: success (in force) or failure (logged; the databases watched before keep going).",
            "1 when the last read of the configuration file is in force, 0 when it was invalid and the databases watched before keep going.",
        )?;
        let seen = text_hash(&file);
        Ok(Reloader {
            fleet,
            file,
            load,
            seen,
            outcomes,
        })
    }

    /// Watches until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut triggers = crate::reload::Triggers::new(POLL, "the databases list");
        while let Some(forced) = triggers.next(&cancel).await {
            let now = text_hash(&self.file);
            if !forced && now == self.seen {
                continue;
            }
            self.seen = now;
            self.reload().await;
        }
    }

    /// Reads the configuration again and applies its list, or keeps the running one.
    pub async fn reload(&mut self) {
        let load = self.load.clone();
        // Reading url_file Secrets and the file itself: off the runtime's threads.
        let loaded = tokio::task::spawn_blocking(move || load()).await;
        let databases = match loaded {
            Ok(Ok(databases)) => databases,
            Ok(Err(e)) => {
                tracing::error!(file = %self.file.display(), "configuration reload failed; the databases watched keep going: {e}");
                self.failed();
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed");
                self.failed();
                return;
            }
        };
        let Some(list) = databases else {
            tracing::error!(file = %self.file.display(), "configuration reload failed: the file no longer has a databases list (a single database.url needs a restart); the databases watched keep going");
            self.failed();
            return;
        };
        let (started, stopped) = self.fleet.apply(&list).await;
        tracing::info!(
            databases = list.len(),
            ?started,
            ?stopped,
            "configuration reloaded; settings other than the databases list take effect at the next restart"
        );
        self.outcomes.succeeded();
    }

    fn failed(&self) {
        self.outcomes.failed();
    }
}
