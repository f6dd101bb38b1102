//! Registry setup and the collectors that render the latest state at scrape time.
//!
//! Components register their own counters (`Store::register`, `Sampler::register`,
//! the push handlers); the views are rendered by collectors built from the latest
//! data on every scrape ([`pools::PoolCollector`], [`server::ServerCollector`]), so a
//! pool that expired or a database that went away leaves no stale series behind.

pub mod apps;
pub mod pools;
pub mod server;

use prometheus::core::Collector;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// A registry with `poolwatch_build_info` and the process collector (`process_*`).
pub fn new_registry() -> prometheus::Result<Registry> {
    let registry = Registry::new();
    let build = IntGaugeVec::new(
        Opts::new(
            "poolwatch_build_info",
            "Always 1; the version of poolwatch in a label.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[crate::VERSION]).set(1);
    registry.register(Box::new(build))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

/// Renders the registry in the text exposition format 0.0.4.
pub fn encode(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec cannot fail on I/O; an error would mean an invalid family,
    // which the collectors never build. Whatever was written so far is served.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family a collector renders: name, help, type and label names.
pub struct Spec {
    /// Full metric name.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Counter or gauge.
    pub counter: bool,
    /// Label names, in the order values are given.
    pub labels: &'static [&'static str],
}

impl Spec {
    fn desc(&self) -> prometheus::core::Desc {
        // The specs are constants checked by the tests; a bad one is a programming error.
        prometheus::core::Desc::new(
            self.name.to_string(),
            self.help.to_string(),
            self.labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .expect("metric spec is valid")
    }
}

/// Descriptors for a collector's specs.
pub fn descs(specs: &[Spec]) -> Vec<prometheus::core::Desc> {
    specs.iter().map(Spec::desc).collect()
}

/// Builds one family's metrics during a scrape.
pub struct Family<'s> {
    spec: &'s Spec,
    mf: MetricFamily,
}

impl<'s> Family<'s> {
    /// An empty family for `spec`.
    pub fn new(spec: &'s Spec) -> Family<'s> {
        let mut mf = MetricFamily::default();
        mf.set_name(spec.name.to_string());
        mf.set_help(spec.help.to_string());
        mf.set_field_type(if spec.counter {
            MetricType::COUNTER
        } else {
            MetricType::GAUGE
        });
        Family { spec, mf }
    }

    /// Adds one series; `values` pair up with the spec's label names.
    pub fn add(&mut self, values: &[&str], v: f64) {
        debug_assert_eq!(values.len(), self.spec.labels.len(), "{}", self.spec.name);
        let labels = self
            .spec
            .labels
            .iter()
            .zip(values)
            .map(|(n, v)| {
                let mut lp = LabelPair::default();
                lp.set_name(n.to_string());
                lp.set_value(v.to_string());
                lp
            })
            .collect();
        let mut m = Metric::from_label(labels);
        if self.spec.counter {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        self.mf.mut_metric().push(m);
    }

    /// Adds a series when there is a value.
    pub fn add_opt(&mut self, values: &[&str], v: Option<f64>) {
        if let Some(v) = v {
            self.add(values, v);
        }
    }

    /// The finished family.
    pub fn finish(self) -> MetricFamily {
        self.mf
    }
}

/// Registers a collector, boxing it.
pub fn register<C: Collector + 'static>(registry: &Registry, c: C) -> prometheus::Result<()> {
    registry.register(Box::new(c))
}
