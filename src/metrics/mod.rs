//! Registry setup, the views that render the latest state at scrape time, and the
//! text exposition.
//!
//! Components register their own counters on the registry (`Store::register`,
//! `Sampler::register`, the push handlers). The views ([`pools::PoolCollector`],
//! [`server::ServerCollector`], [`apps::AppCollector`]) are rendered from the latest data
//! on every scrape, so a pool that expired or a database that went away leaves no stale
//! series behind. They write text straight away rather than building the client
//! library's protobuf families first: at 10,000 pools those cost about 80 MB for one
//! scrape of 10 MB of text.

pub mod apps;
pub mod databases;
pub mod limits;
pub mod pools;
pub mod server;

use std::io::Write;

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

/// Something rendered at scrape time from the latest state.
pub trait View: Send + Sync {
    /// The families, each with the series it has now (empty ones are left out).
    fn families(&self) -> Vec<Family<'static>>;
}

/// The views `/metrics` renders besides the registry.
#[derive(Default)]
pub struct Views(Vec<Box<dyn View>>);

impl Views {
    /// Adds a view.
    pub fn add(&mut self, view: impl View + 'static) {
        self.0.push(Box::new(view));
    }
}

/// Renders the registry and the views in the text exposition format 0.0.4, families
/// sorted by name (as the registry alone would sort them).
pub fn encode(registry: &Registry, views: &Views) -> Vec<u8> {
    encode_chunks(registry, views).concat()
}

/// [`encode`]'s output as it is rendered, one piece per family, in order: `/metrics`
/// sends the pieces as they are rather than copy them into one buffer.
pub fn encode_chunks(registry: &Registry, views: &Views) -> Vec<hyper::body::Bytes> {
    let mut chunks: Vec<(String, Vec<u8>)> = Vec::new();
    let encoder = TextEncoder::new();
    for mf in registry.gather() {
        let mut text = Vec::new();
        // Encoding into a Vec cannot fail on I/O; an error would mean an invalid family,
        // which the registry does not hold. That family is left out.
        match encoder.encode(std::slice::from_ref(&mf), &mut text) {
            Ok(()) => chunks.push((mf.name().to_string(), text)),
            Err(e) => tracing::error!(family = mf.name(), error = %e, "encoding metrics failed"),
        }
    }
    for view in &views.0 {
        for f in view.families() {
            if f.rows > 0 {
                chunks.push((f.spec.name.to_string(), f.text));
            }
        }
    }
    chunks.sort_by(|a, b| a.0.cmp(&b.0));
    chunks
        .into_iter()
        .map(|(_, mut text)| {
            // Rendered into vectors that grew by doubling: keep what is used.
            text.shrink_to_fit();
            text.into()
        })
        .collect()
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family a view renders: name, help, type and label names.
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

/// Labels every series of a view carries, before the spec's own: the watched
/// database's `database` label. Rendered once, when the view is created; a label whose
/// value is empty is left out, as in [`Family::add`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConstLabels(std::sync::Arc<str>);

impl ConstLabels {
    /// `pairs` as constant labels; pairs with an empty value are left out.
    pub fn new(pairs: &[(&str, &str)]) -> ConstLabels {
        let mut text = Vec::new();
        for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            if !text.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b"=\"");
            escape(&mut text, value, true);
            text.push(b'"');
        }
        // Built from &str pieces and ASCII: valid UTF-8.
        ConstLabels(String::from_utf8_lossy(&text).into())
    }

    /// The `database` label, or none when the database is not known.
    pub fn database(name: Option<&str>) -> ConstLabels {
        ConstLabels::new(&[("database", name.unwrap_or(""))])
    }
}

/// One family's text, written series by series during a scrape.
pub struct Family<'s> {
    spec: &'s Spec,
    text: Vec<u8>,
    rows: usize,
    /// Rendered constant labels, written first in every series.
    consts: ConstLabels,
}

impl<'s> Family<'s> {
    /// A family for `spec` with its `# HELP` and `# TYPE` lines, without constant labels.
    pub fn new(spec: &'s Spec) -> Family<'s> {
        Family::with_consts(spec, &ConstLabels::default())
    }

    /// A family for `spec` whose every series starts with `consts`.
    pub fn with_consts(spec: &'s Spec, consts: &ConstLabels) -> Family<'s> {
        let mut text = Vec::with_capacity(spec.name.len() * 2 + spec.help.len() + 32);
        text.extend_from_slice(b"# HELP ");
        text.extend_from_slice(spec.name.as_bytes());
        text.push(b' ');
        escape(&mut text, spec.help, false);
        text.extend_from_slice(b"\n# TYPE ");
        text.extend_from_slice(spec.name.as_bytes());
        text.extend_from_slice(if spec.counter {
            b" counter\n"
        } else {
            b" gauge\n"
        });
        Family {
            spec,
            text,
            rows: 0,
            consts: consts.clone(),
        }
    }

    /// Starts the series added from now on with `consts` instead (one family holding the
    /// series of several databases).
    pub fn set_consts(&mut self, consts: &ConstLabels) {
        self.consts = consts.clone();
    }

    /// Adds one series; `values` pair up with the spec's label names. A label whose
    /// value is empty is left out: `x=""` and no `x` are the same series to Prometheus,
    /// and an exported empty value is clobbered differently by each scrape setting.
    pub fn add(&mut self, values: &[&str], v: f64) {
        debug_assert_eq!(values.len(), self.spec.labels.len(), "{}", self.spec.name);
        let t = &mut self.text;
        t.extend_from_slice(self.spec.name.as_bytes());
        let mut open = false;
        if !self.consts.0.is_empty() {
            t.push(b'{');
            t.extend_from_slice(self.consts.0.as_bytes());
            open = true;
        }
        for (name, value) in self.spec.labels.iter().zip(values) {
            if value.is_empty() {
                continue;
            }
            t.push(if open { b',' } else { b'{' });
            open = true;
            t.extend_from_slice(name.as_bytes());
            t.extend_from_slice(b"=\"");
            escape(t, value, true);
            t.push(b'"');
        }
        if open {
            t.push(b'}');
        }
        t.push(b' ');
        if v.is_nan() {
            t.extend_from_slice(b"NaN");
        } else if v.is_infinite() {
            t.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        } else {
            // Writing to a Vec cannot fail.
            let _ = write!(t, "{v}");
        }
        t.push(b'\n');
        self.rows += 1;
    }

    /// Adds a series when there is a value.
    pub fn add_opt(&mut self, values: &[&str], v: Option<f64>) {
        if let Some(v) = v {
            self.add(values, v);
        }
    }
}

/// Appends `s` escaped for the text format: `\` and newline always, `"` in label values.
fn escape(out: &mut Vec<u8>, s: &str, quote: bool) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [Spec; 3] = [
        Spec {
            name: "t_gauge",
            help: "A help with a \\ and a\nnewline.",
            counter: false,
            labels: &["b", "c"],
        },
        Spec {
            name: "t_total",
            help: "Counted.",
            counter: true,
            labels: &[],
        },
        Spec {
            name: "t_empty",
            help: "No series.",
            counter: false,
            labels: &["a"],
        },
    ];

    const SERIES: [([&str; 2], f64); 4] = [
        (["a", "z"], 0.0),
        (["plain", "1"], 25.0),
        (["x\"y", "back\\slash\nline"], 1.5),
        (["\u{e9}t\u{e9}", "b"], 1800000451.25),
    ];

    struct Fixed;

    impl View for Fixed {
        fn families(&self) -> Vec<Family<'static>> {
            let mut g = Family::with_consts(&SPECS[0], &ConstLabels::new(&[("a", "d\"b")]));
            for (labels, v) in SERIES {
                g.add(&labels, v);
            }
            g.add_opt(&["n", "n"], None);
            let mut c = Family::new(&SPECS[1]);
            c.add(&[], 3.0);
            vec![g, c, Family::new(&SPECS[2])]
        }
    }

    /// The same families through the client library's registry and encoder, and through
    /// a view: the same text, byte for byte.
    #[test]
    fn views_render_what_the_client_library_renders() {
        let registry = Registry::new();
        let first = prometheus::IntCounter::new("a_first_total", "Sorted first.").unwrap();
        first.inc();
        registry.register(Box::new(first.clone())).unwrap();
        let mut views = Views::default();
        views.add(Fixed);
        let ours = String::from_utf8(encode(&registry, &views)).unwrap();

        let reference = Registry::new();
        reference.register(Box::new(first)).unwrap();
        let g = prometheus::GaugeVec::new(
            Opts::new(SPECS[0].name, SPECS[0].help).const_label("a", "d\"b"),
            &["b", "c"],
        )
        .unwrap();
        for (labels, v) in SERIES {
            g.with_label_values(&labels).set(v);
        }
        reference.register(Box::new(g)).unwrap();
        let c = prometheus::Counter::new(SPECS[1].name, SPECS[1].help).unwrap();
        c.inc_by(3.0);
        reference.register(Box::new(c)).unwrap();
        let empty =
            prometheus::GaugeVec::new(Opts::new(SPECS[2].name, SPECS[2].help), &["a"]).unwrap();
        reference.register(Box::new(empty)).unwrap();
        let mut theirs = Vec::new();
        TextEncoder::new()
            .encode(&reference.gather(), &mut theirs)
            .unwrap();

        assert_eq!(ours, String::from_utf8(theirs).unwrap());
        assert!(
            ours.contains(r#"t_gauge{a="d\"b",b="x\"y",c="back\\slash\nline"} 1.5"#),
            "{ours}"
        );
        assert!(!ours.contains("t_empty"), "{ours}");
    }

    /// An empty value is never exported: the label is left out, constant or not, and a
    /// series left with no label has no braces.
    #[test]
    fn empty_label_values_are_left_out() {
        static SPEC: Spec = Spec {
            name: "t",
            help: "h",
            counter: false,
            labels: &["app", "app_instance", "pool"],
        };
        let render = |consts: ConstLabels, values: [&str; 3]| {
            let mut f = Family::with_consts(&SPEC, &consts);
            f.add(&values, 1.0);
            String::from_utf8(f.text)
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .to_string()
        };
        let db = ConstLabels::database(Some("10.0.0.5:5432"));
        assert_eq!(
            render(db.clone(), ["billing", "", "primary"]),
            r#"t{database="10.0.0.5:5432",app="billing",pool="primary"} 1"#
        );
        assert_eq!(render(db, ["", "", ""]), r#"t{database="10.0.0.5:5432"} 1"#);
        assert_eq!(
            render(ConstLabels::database(None), ["", "pod-1", ""]),
            r#"t{app_instance="pod-1"} 1"#
        );
        assert_eq!(render(ConstLabels::database(Some("")), ["", "", ""]), "t 1");
    }

    #[test]
    fn special_values_are_spelled_as_the_format_says() {
        static SPEC: Spec = Spec {
            name: "t",
            help: "h",
            counter: false,
            labels: &[],
        };
        for (v, text) in [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (-0.5, "-0.5"),
        ] {
            let mut f = Family::new(&SPEC);
            f.add(&[], v);
            assert_eq!(
                String::from_utf8(f.text).unwrap(),
                format!("# HELP t h\n# TYPE t gauge\nt {text}\n")
            );
        }
    }
}
