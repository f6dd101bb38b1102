//! The Pushgateway protocol, as pure functions: what a `PUT`, `POST` or `DELETE` on
//! `/metrics/job/<job>{/<label>/<value>}` means, without the HTTP around it.
//!
//! The data flows one way:
//!
//! 1. [`path::parse_push_path`] turns the request path into a [`path::GroupingKey`].
//! 2. [`body_format`] picks the parser from the `Content-Type`, and [`parse_body`] turns the
//!    (already un-gzipped) body into [`Family`]s: [`text`] for the text format 0.0.4,
//!    [`protobuf`] for client_golang's delimited protobuf. Both produce the same model and
//!    refuse samples with timestamps, as the Pushgateway does.
//! 3. [`group::Group`] holds one grouping key's families and applies the method's semantics
//!    (`PUT` replaces the group, `POST` replaces same-named families, `DELETE` removes it).
//! 4. [`mapping::map_group`] reads the pool families that clients emit (client_golang's
//!    `go_sql_*`, HikariCP, pgxpool, OpenTelemetry) out of a group into [`PoolPush`]es and
//!    counts the families it does not know.
//!
//! Nothing here does I/O, reads the clock or touches the store; every error is an
//! [`IngestError::Field`] whose field names the line, family, label or path segment, so it
//! can be the body of a 400 as it is.
//!
//! [`PoolPush`]: super::PoolPush

pub mod group;
pub mod mapping;
pub mod path;
pub mod protobuf;
pub mod text;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use super::IngestError;

/// A series' labels, sorted by name, in one allocation however many there are: their
/// count, where each name and value ends, then every name and value back to back. A
/// hostile push holds thousands of samples while it is parsed and ten thousand stored
/// groups hold ninety thousand, so a label costs 8 bytes plus its text here, where a
/// pair of `String`s cost 48 bytes and two allocations (and a `BTreeMap`'s first node
/// alone about half a kilobyte). Grouping keys are labels too.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[u8]>);

/// Bytes of one count or offset in [`Labels`].
const WORD: usize = 4;

impl Labels {
    /// No labels.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// Labels from `(name, value)` pairs already sorted by name, without repeats.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
        let (n, text) = pairs
            .clone()
            .fold((0, 0), |(n, t), (k, v)| (n + 1, t + k.len() + v.len()));
        if n == 0 {
            return Labels::default();
        }
        let mut out = Vec::with_capacity(WORD * (1 + 2 * n) + text);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        let mut end = 0;
        for (k, v) in pairs.clone() {
            for part in [k, v] {
                end += part.len();
                out.extend_from_slice(&(end as u32).to_le_bytes());
            }
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        Labels(out.into_boxed_slice())
    }

    fn word(&self, i: usize) -> usize {
        let at = WORD * i;
        let mut w = [0; WORD];
        w.copy_from_slice(&self.0[at..at + WORD]);
        u32::from_le_bytes(w) as usize
    }

    /// The bytes of the `j`th name or value (names even, values odd).
    fn part(&self, j: usize) -> &[u8] {
        let text = WORD * (1 + 2 * self.len());
        let start = if j == 0 { 0 } else { self.word(j) };
        &self.0[text + start..text + self.word(j + 1)]
    }

    /// The `i`th name and value.
    fn pair(&self, i: usize) -> (&str, &str) {
        // Built from `str`s at character boundaries, so always UTF-8.
        let text = |b| std::str::from_utf8(b).unwrap_or_default();
        (text(self.part(2 * i)), text(self.part(2 * i + 1)))
    }

    fn find(&self, name: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.part(2 * mid).cmp(name.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|i| self.pair(i).1)
    }

    /// Whether label `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.word(0)
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Name and value pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        (0..self.len()).map(|i| self.pair(i))
    }

    /// These labels and `name` set to `value`; `None` when `name` is one of them already.
    pub fn with(&self, name: &str, value: &str) -> Option<Labels> {
        if self.contains_key(name) {
            return None;
        }
        let at = self.iter().take_while(|(k, _)| *k < name).count();
        let pairs = self
            .iter()
            .take(at)
            .chain(std::iter::once((name, value)))
            .chain(self.iter().skip(at));
        Some(Labels::from_sorted(pairs))
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no label {name:?}"))
    }
}

/// Later pairs replace earlier ones of the same name.
impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Labels {
        let mut pairs: Vec<(String, String)> = pairs.into_iter().collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        Labels::from_sorted(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// One sample's labels as a parser reads them: the text goes into a buffer kept from
/// sample to sample, so a sample costs the two allocations of its [`Labels`] and no more.
#[derive(Default)]
pub(crate) struct LabelsBuilder {
    text: String,
    /// Name start, name end (the value's start), value end, in `text`.
    spans: Vec<(usize, usize, usize)>,
}

impl LabelsBuilder {
    /// Starts the next sample's labels.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// Labels so far.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Adds a label whose value `write` appends to the buffer it is given (a parser
    /// unescapes straight into it); returns the value as written.
    pub(crate) fn push_with(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut String) -> Result<(), String>,
    ) -> Result<&str, String> {
        let start = self.text.len();
        self.text.push_str(name);
        let mid = self.text.len();
        write(&mut self.text)?;
        self.spans.push((start, mid, self.text.len()));
        Ok(&self.text[mid..])
    }

    /// The labels, sorted by name; `Err` names a label given twice.
    pub(crate) fn finish(&mut self) -> Result<Labels, String> {
        let text = &self.text;
        let name = |s: &(usize, usize, usize)| &text[s.0..s.1];
        self.spans.sort_unstable_by(|a, b| name(a).cmp(name(b)));
        if let Some(w) = self.spans.windows(2).find(|w| name(&w[0]) == name(&w[1])) {
            return Err(format!("label {} given twice", name(&w[0])));
        }
        Ok(Labels::from_sorted(
            self.spans
                .iter()
                .map(|s| (&text[s.0..s.1], &text[s.1..s.2])),
        ))
    }
}

/// The type a family declares (`# TYPE` or the protobuf `MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Quantiles plus `_sum` and `_count`.
    Summary,
    /// No declared type (a sample without `# TYPE`).
    Untyped,
    /// Cumulative `_bucket`s plus `_sum` and `_count`.
    Histogram,
    /// A histogram of a gauge (protobuf only).
    GaugeHistogram,
}

impl MetricKind {
    /// The name the text format uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
            MetricKind::Untyped => "untyped",
            MetricKind::Histogram => "histogram",
            MetricKind::GaugeHistogram => "gaugehistogram",
        }
    }
}

/// One sample line: what the text format writes as `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name: the family's, or it plus `_sum`, `_count` or `_bucket`;
    /// shared by the samples of one name (and, once stored, by every group's samples of
    /// a name poolwatch knows: [`intern`]).
    pub name: Arc<str>,
    /// Its labels, including `quantile` or `le` for summaries and histograms.
    pub labels: Labels,
    /// Its value; may be NaN or infinite.
    pub value: f64,
}

/// A metric family as pushed: the unit the Pushgateway replaces on `POST`.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The family's name, e.g. `go_sql_open_connections`.
    pub name: Arc<str>,
    /// Its `# HELP` text; empty when none was given.
    pub help: String,
    /// Its declared type.
    pub kind: MetricKind,
    /// Its samples, in the order pushed; never empty.
    pub samples: Vec<Sample>,
}

/// Bounds on one push, so a body's size is not the only limit on the memory it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most samples in one push, counting every `_bucket`, `_sum` and `_count` line.
    pub max_series: usize,
    /// Most labels on one sample.
    pub max_labels: usize,
    /// Longest metric or label name, bytes.
    pub max_name_len: usize,
    /// Longest label value, bytes.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 10_000,
            max_labels: 64,
            max_name_len: 256,
            max_label_value_len: 4096,
        }
    }
}

/// Which parser a body needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// The text exposition format 0.0.4 (the fallback, as in the Pushgateway).
    Text,
    /// Varint-length-delimited `io.prometheus.client.MetricFamily` messages.
    ProtobufDelimited,
}

/// The media type of client_golang's default push encoding.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/vnd.google.protobuf";
/// The protobuf message a delimited body must hold.
pub const PROTOBUF_MESSAGE: &str = "io.prometheus.client.MetricFamily";

/// Picks the parser for a `Content-Type` header, as the Pushgateway does: delimited
/// protobuf when the header says exactly that, the text format for everything else
/// (including no header). A protobuf media type with another encoding or message is
/// refused, since the text parser could only fail on it less clearly.
pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, IngestError> {
    let Some(ct) = content_type else {
        return Ok(BodyFormat::Text);
    };
    let mut parts = ct.split(';');
    let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if media_type != PROTOBUF_MEDIA_TYPE {
        return Ok(BodyFormat::Text);
    }
    let mut proto = None;
    let mut encoding = None;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "proto" => proto = Some(value.to_string()),
            "encoding" => encoding = Some(value.to_string()),
            _ => {}
        }
    }
    if proto.as_deref() == Some(PROTOBUF_MESSAGE) && encoding.as_deref() == Some("delimited") {
        Ok(BodyFormat::ProtobufDelimited)
    } else {
        Err(IngestError::field_err(
            "Content-Type",
            format!(
                "{ct:?} is not supported; use {PROTOBUF_MEDIA_TYPE}; \
                 proto={PROTOBUF_MESSAGE}; encoding=delimited, or the text format 0.0.4"
            ),
        ))
    }
}

/// Parses a push body in the given format; see [`text::parse`] and [`protobuf::parse`].
pub fn parse_body(
    format: BodyFormat,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Family>, IngestError> {
    match format {
        BodyFormat::Text => text::parse(body, limits),
        BodyFormat::ProtobufDelimited => protobuf::parse(body, limits),
    }
}

/// The one shared copy of a family or sample name that the mapping knows (its rules and
/// the recognised families, with their `_sum`, `_count` and `_bucket`): stored groups
/// hold these names over and over. Other names are returned as they are.
pub fn intern(name: &Arc<str>) -> Arc<str> {
    static KNOWN: std::sync::OnceLock<HashSet<Arc<str>>> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let bases = mapping::RULES
            .iter()
            .map(|r| r.sample)
            .chain(mapping::RECOGNISED.iter().copied());
        bases
            .flat_map(|b| {
                let base = b.strip_suffix("_sum").unwrap_or(b);
                ["", "_sum", "_count", "_bucket", "_created"]
                    .map(|s| Arc::from(format!("{base}{s}")))
            })
            .collect()
    });
    known.get(&**name).cloned().unwrap_or_else(|| name.clone())
}

/// The suffix the Pushgateway gives a pushed metric's timestamp error.
pub(crate) const NO_TIMESTAMPS: &str = "pushed metrics must not have timestamps";

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the classic metric name.
pub(crate) fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the classic label name.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Formats a bound or quantile the way the text format writes it (`+Inf`, `0.5`).
pub(crate) fn format_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

/// Renders a series as `name{a="1",b="2"}` for error messages.
pub(crate) fn series_name(name: &str, labels: &Labels) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// A series' identity, for telling series apart without keeping a copy of each: its name
/// and labels hashed by two independently keyed SipHashes (a false match between two
/// series of one push has odds of 2^-128 per pair; a pusher who could force one would
/// only get their own push refused).
#[derive(Default)]
pub(crate) struct SeriesHasher {
    keys: (RandomState, RandomState),
}

impl SeriesHasher {
    /// The 128-bit identity of series `name{labels}`.
    pub(crate) fn hash(&self, name: &str, labels: &Labels) -> u128 {
        let one = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write(name.as_bytes());
            for (k, v) in labels.iter() {
                h.write_u8(0xff);
                h.write(k.as_bytes());
                h.write_u8(0xfe);
                h.write(v.as_bytes());
            }
            h.finish()
        };
        (u128::from(one(&self.keys.0)) << 64) | u128::from(one(&self.keys.1))
    }
}

/// Checks the limits and uniqueness every sample must meet, whatever its format.
/// Shared by both parsers so text and protobuf refuse the same pushes.
#[derive(Default)]
pub(crate) struct SeriesCheck {
    /// Samples accepted so far.
    count: usize,
    /// Every series seen, by identity, to refuse a duplicate as the Pushgateway's
    /// consistency check does.
    seen: HashSet<u128>,
    hasher: SeriesHasher,
}

impl SeriesCheck {
    /// Admits one sample, or says why not (without the location, which the caller adds).
    pub(crate) fn admit(
        &mut self,
        name: &str,
        labels: &Labels,
        limits: &Limits,
    ) -> Result<(), String> {
        self.count += 1;
        if self.count > limits.max_series {
            return Err(format!(
                "more than {} samples in one push (limit)",
                limits.max_series
            ));
        }
        if labels.len() > limits.max_labels {
            return Err(format!(
                "{} labels on one sample; at most {} allowed",
                labels.len(),
                limits.max_labels
            ));
        }
        if !self.seen.insert(self.hasher.hash(name, labels)) {
            return Err(format!("duplicate series {}", series_name(name, labels)));
        }
        Ok(())
    }
}

/// Checks a label name and value against the rules and limits; `Err` says why.
pub(crate) fn check_label(name: &str, value: &str, limits: &Limits) -> Result<(), String> {
    if name.len() > limits.max_name_len {
        return Err(format!(
            "label name longer than {} bytes",
            limits.max_name_len
        ));
    }
    if !is_label_name(name) {
        return Err(format!("invalid label name {name:?}"));
    }
    if name == "__name__" {
        return Err("label name \"__name__\" is reserved".to_string());
    }
    if value.len() > limits.max_label_value_len {
        return Err(format!(
            "value of label {name} longer than {} bytes",
            limits.max_label_value_len
        ));
    }
    Ok(())
}

/// Checks a metric or family name against the rules and limits; `Err` says why.
pub(crate) fn check_metric_name(name: &str, limits: &Limits) -> Result<(), String> {
    if name.len() > limits.max_name_len {
        return Err(format!(
            "metric name longer than {} bytes",
            limits.max_name_len
        ));
    }
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let pb = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
        assert_eq!(body_format(Some(pb)), Ok(BodyFormat::ProtobufDelimited));
        // Parameter order and case of names do not matter; quoted values are fine.
        let pb2 = "Application/Vnd.Google.Protobuf;Encoding=\"delimited\";PROTO=io.prometheus.client.MetricFamily";
        assert_eq!(body_format(Some(pb2)), Ok(BodyFormat::ProtobufDelimited));
        for text in [
            None,
            Some("text/plain; version=0.0.4"),
            Some("text/plain"),
            Some("application/octet-stream"),
            Some(""),
        ] {
            assert_eq!(body_format(text), Ok(BodyFormat::Text), "{text:?}");
        }
        for bad in [
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text",
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily",
            "application/vnd.google.protobuf; proto=other.Message; encoding=delimited",
        ] {
            let err = body_format(Some(bad)).unwrap_err();
            assert_eq!(err.field(), Some("Content-Type"), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "_a", "a:b", "go_sql_open_connections", "A9"] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        assert!(is_label_name("db_name"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("1a"));
    }

    #[test]
    fn floats_render_as_the_text_format_does() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(5.0), "5");
    }
}
