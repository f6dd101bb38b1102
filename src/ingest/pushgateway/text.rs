//! The text exposition format 0.0.4, as the Pushgateway's parser reads it.
//!
//! `# HELP name text` and `# TYPE name counter|gauge|summary|histogram|untyped` declare a
//! family; other `#` lines and blank lines are ignored. A sample is
//! `name{label="value",...} value`, with `\\`, `\"` and `\n` escaped in label values
//! (`\\` and `\n` in help text), and `NaN`, `+Inf`, `-Inf` as values. A sample joins the
//! family of its name, or, for `_sum`, `_count` (summary, histogram) and `_bucket`
//! (histogram), the family of its base name; any other sample starts an untyped family of
//! its own. Samples with a timestamp are refused, as the Pushgateway refuses them; so are
//! duplicate series, a second `HELP` or `TYPE` for a family, and a `TYPE` after the
//! family's samples. Every error names its line.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ingest::IngestError;

use super::{
    check_label, check_metric_name, Family, Labels, LabelsBuilder, Limits, MetricKind, Sample,
    SeriesCheck, NO_TIMESTAMPS,
};

/// Parses a text-format body into families, in the order they first appear. Families
/// declared by `HELP` or `TYPE` but given no sample are dropped, as in the Pushgateway.
pub fn parse(body: &[u8], limits: &Limits) -> Result<Vec<Family>, IngestError> {
    let mut parser = Parser {
        limits,
        families: Vec::new(),
        by_name: HashMap::new(),
        help_seen: Vec::new(),
        type_seen: Vec::new(),
        check: SeriesCheck::default(),
        labels: LabelsBuilder::default(),
        names: HashMap::new(),
    };
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let at = |problem: String| IngestError::field_err(format!("line {line_no}"), problem);
        let line = std::str::from_utf8(raw).map_err(|_| at("not valid UTF-8".to_string()))?;
        parser.line(line).map_err(at)?;
    }
    Ok(parser
        .families
        .into_iter()
        .filter(|f| !f.samples.is_empty())
        .collect())
}

struct Parser<'a> {
    limits: &'a Limits,
    /// Families in order of first appearance.
    families: Vec<Family>,
    /// Index into `families` by name.
    by_name: HashMap<String, usize>,
    /// Whether each family (same index) has had its `HELP` line.
    help_seen: Vec<bool>,
    /// Whether each family has had its `TYPE` line or a sample (which fixes its type).
    type_seen: Vec<bool>,
    /// Limits and duplicate detection.
    check: SeriesCheck,
    /// The sample being read's labels.
    labels: LabelsBuilder,
    /// Sample names, each allocated once and shared by its samples.
    names: HashMap<String, Arc<str>>,
}

impl Parser<'_> {
    fn line(&mut self, line: &str) -> Result<(), String> {
        // A CR before the LF is tolerated (bodies written on Windows).
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        self.sample(line)
    }

    fn family_index(&mut self, name: &str, kind: MetricKind) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let name = self.name(name);
        self.families.push(Family {
            name: name.clone(),
            help: String::new(),
            kind,
            samples: Vec::new(),
        });
        self.help_seen.push(false);
        self.type_seen.push(false);
        self.by_name
            .insert(name.to_string(), self.families.len() - 1);
        self.families.len() - 1
    }

    /// The shared copy of a family or sample name.
    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(name.to_string(), n.clone());
        n
    }

    fn comment(&mut self, comment: &str) -> Result<(), String> {
        let rest = comment.trim_start_matches([' ', '\t']);
        let (keyword, rest) = split_token(rest);
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let (name, rest) = split_token(rest.trim_start_matches([' ', '\t']));
        if name.is_empty() {
            return Err(format!("{keyword} line without a metric name"));
        }
        check_metric_name(name, self.limits)?;
        // One blank (or tab) run separates the name from the text.
        let rest = rest.trim_start_matches([' ', '\t']);
        if keyword == "HELP" {
            let help = unescape_help(rest)?;
            let i = self.family_index(name, MetricKind::Untyped);
            if std::mem::replace(&mut self.help_seen[i], true) {
                return Err(format!("second HELP line for metric name {name:?}"));
            }
            self.families[i].help = help;
        } else {
            let kind = match rest
                .trim_end_matches([' ', '\t'])
                .to_ascii_lowercase()
                .as_str()
            {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                "summary" => MetricKind::Summary,
                "histogram" => MetricKind::Histogram,
                "untyped" => MetricKind::Untyped,
                other => return Err(format!("unknown metric type {other:?} for {name}")),
            };
            let i = self.family_index(name, kind);
            if std::mem::replace(&mut self.type_seen[i], true) {
                return Err(format!(
                    "second TYPE line for metric name {name:?}, or TYPE reported after samples"
                ));
            }
            self.families[i].kind = kind;
        }
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() {
            let c = line.chars().next().unwrap_or(' ');
            return Err(format!("expected a metric name, found {c:?}"));
        }
        check_metric_name(name, self.limits)?;
        let after_name = &line[name_end..];
        self.labels.clear();
        let rest = match after_name.trim_start_matches([' ', '\t']).strip_prefix('{') {
            Some(after) => parse_labels(after, &mut self.labels, self.limits)?,
            None => after_name,
        };
        let labels = self.labels.finish()?;
        let after_value = rest.trim_start_matches([' ', '\t']);
        if after_value.len() == rest.len() && !rest.is_empty() {
            return Err(format!(
                "expected a blank between the series and its value, found {:?}",
                rest.chars().next().unwrap_or(' ')
            ));
        }
        let (value_token, rest) = split_token(after_value);
        if value_token.is_empty() {
            return Err(format!("sample {name} has no value"));
        }
        let value = parse_value(value_token)
            .ok_or_else(|| format!("invalid value {value_token:?} for {name}"))?;
        let extra = rest.trim_matches([' ', '\t']);
        if !extra.is_empty() {
            return Err(if extra.parse::<i64>().is_ok() {
                format!("sample {name} has a timestamp ({extra}); {NO_TIMESTAMPS}")
            } else {
                format!("unexpected {extra:?} after the value of {name}")
            });
        }
        let i = self.family_for(name);
        self.check_shape(i, name, &labels)?;
        self.check.admit(name, &labels, self.limits)?;
        self.type_seen[i] = true;
        let name = self.name(name);
        self.families[i].samples.push(Sample {
            name,
            labels,
            value,
        });
        Ok(())
    }

    /// The family a sample belongs to (see the module documentation).
    fn family_for(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        for (suffix, histogram_only) in [("_sum", false), ("_count", false), ("_bucket", true)] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(&i) = self.by_name.get(base) {
                    let kind = self.families[i].kind;
                    if kind == MetricKind::Histogram
                        || (!histogram_only && kind == MetricKind::Summary)
                    {
                        return i;
                    }
                }
            }
        }
        self.family_index(name, MetricKind::Untyped)
    }

    /// Checks that a sample fits its family's type.
    fn check_shape(&self, i: usize, name: &str, labels: &Labels) -> Result<(), String> {
        let family = &self.families[i];
        let suffix = &name[family.name.len()..];
        let bound = |label: &str| -> Result<(), String> {
            match labels.get(label) {
                None => Err(format!(
                    "{name} in {} {} has no {label} label",
                    family.kind.as_str(),
                    family.name
                )),
                Some(v) if parse_value(v).is_none() => {
                    Err(format!("{name}: {label} label {v:?} is not a number"))
                }
                Some(_) => Ok(()),
            }
        };
        match (family.kind, suffix) {
            (MetricKind::Summary, "") => bound("quantile"),
            (MetricKind::Histogram, "_bucket") => bound("le"),
            (MetricKind::Histogram, "") => Err(format!(
                "{name}: a histogram's samples end in _bucket, _sum or _count"
            )),
            _ => Ok(()),
        }
    }
}

/// Splits at the first blank or tab.
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Parses a value as the text format allows: decimal or exponent notation, `NaN`, `+Inf`,
/// `-Inf` (any case, as Go's `strconv.ParseFloat` reads them). Hex floats and `_` are
/// refused, as the Pushgateway's parser refuses them.
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    if s.contains(['_', 'p', 'P', 'x', 'X']) {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Parses `name="value",...}` (after the `{`) into `labels`; returns the rest of the line.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut LabelsBuilder,
    limits: &Limits,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() {
            return Err(match s.chars().next() {
                None => "label set not closed with }".to_string(),
                Some(c) => format!("expected a label name, found {c:?}"),
            });
        }
        s = s[name_end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected = after label name {name}"))?;
        s = s.trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected a quoted value for label {name}"))?;
        if labels.len() >= limits.max_labels {
            return Err(format!(
                "more than {} labels on one sample",
                limits.max_labels
            ));
        }
        let mut rest = "";
        let value = labels.push_with(name, |out| {
            rest = unescape_label_value(s, name, out)?;
            Ok(())
        })?;
        check_label(name, value, limits)?;
        s = rest.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(match s.chars().next() {
                None => "label set not closed with }".to_string(),
                Some(c) => format!("expected , or }} after the value of label {name}, found {c:?}"),
            });
        }
    }
}

/// Reads a label value up to its closing quote into `out`; returns the rest after the
/// quote.
fn unescape_label_value<'a>(s: &'a str, label: &str, out: &mut String) -> Result<&'a str, String> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(&s[i + 1..]),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => {
                    return Err(format!(
                        "invalid escape sequence \\{other} in the value of label {label}"
                    ))
                }
                None => break,
            },
            _ => out.push(c),
        }
    }
    Err(format!("value of label {label} is not closed with \""))
}

/// Unescapes help text: `\\` and `\n`.
fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => return Err(format!("invalid escape sequence \\{other} in HELP")),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(body: &str) -> Vec<Family> {
        parse(body.as_bytes(), &Limits::default()).unwrap_or_else(|e| panic!("{e}\n{body}"))
    }

    fn parse_err(body: &str) -> String {
        match parse(body.as_bytes(), &Limits::default()) {
            Ok(f) => panic!("accepted {body:?}: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn families_types_and_help() {
        let body = "# HELP a_total Help with \\\\ and \\n.\n\
                    # TYPE a_total counter\n\
                    a_total{x=\"1\"} 3\n\
                    a_total{x=\"2\"} 4\n\
                    \n\
                    # just a comment\n\
                    #TYPE g gauge\n\
                    g 1.5\n\
                    loose 7\n";
        let fams = parse_ok(body);
        assert_eq!(fams.len(), 3);
        assert_eq!(&*fams[0].name, "a_total");
        assert_eq!(fams[0].help, "Help with \\ and \n.");
        assert_eq!(fams[0].kind, MetricKind::Counter);
        assert_eq!(fams[0].samples.len(), 2);
        assert_eq!(fams[0].samples[1].labels, labels(&[("x", "2")]));
        assert_eq!(fams[1].kind, MetricKind::Gauge);
        assert_eq!(&*fams[2].name, "loose");
        assert_eq!(fams[2].kind, MetricKind::Untyped);
    }

    #[test]
    fn label_escapes_and_spacing() {
        let body = "m{a=\"back\\\\slash\",b=\"quo\\\"te\",c=\"new\\nline\",d=\"\",} 1\n\
                    m { e = \"x\" , f=\"{}=,\" } 2\n";
        let fams = parse_ok(body);
        let s = &fams[0].samples;
        assert_eq!(
            s[0].labels,
            labels(&[
                ("a", "back\\slash"),
                ("b", "quo\"te"),
                ("c", "new\nline"),
                ("d", "")
            ])
        );
        assert_eq!(s[1].labels, labels(&[("e", "x"), ("f", "{}=,")]));
    }

    #[test]
    fn special_values() {
        let body = "a NaN\nb +Inf\nc -Inf\nd 1e3\ne -0.5\nf .5\ng Inf\n";
        let fams = parse_ok(body);
        let v: Vec<f64> = fams.iter().map(|f| f.samples[0].value).collect();
        assert!(v[0].is_nan());
        assert_eq!(v[1], f64::INFINITY);
        assert_eq!(v[2], f64::NEG_INFINITY);
        assert_eq!(&v[3..], &[1000.0, -0.5, 0.5, f64::INFINITY]);
    }

    #[test]
    fn summaries_and_histograms_group_their_samples() {
        let body = "# TYPE s summary\n\
                    s{quantile=\"0.5\"} 1\n\
                    s_sum 10\n\
                    s_count 4\n\
                    # TYPE h histogram\n\
                    h_bucket{le=\"0.1\"} 1\n\
                    h_bucket{le=\"+Inf\"} 2\n\
                    h_sum 0.3\n\
                    h_count 2\n\
                    # TYPE c counter\n\
                    c 1\n\
                    c_count 5\n";
        let fams = parse_ok(body);
        let names: Vec<(&str, usize)> = fams.iter().map(|f| (&*f.name, f.samples.len())).collect();
        // c_count does not belong to counter c: it is a family of its own.
        assert_eq!(names, [("s", 3), ("h", 4), ("c", 1), ("c_count", 1)]);
    }

    #[test]
    fn empty_declared_families_are_dropped() {
        assert!(parse_ok("# HELP x nothing\n# TYPE x gauge\n").is_empty());
        assert!(parse_ok("").is_empty());
    }

    #[test]
    fn timestamps_are_refused() {
        let err = parse_err("ok 1\nm{a=\"b\"} 1 1700000000000\n");
        assert!(err.starts_with("line 2: "), "{err}");
        assert!(
            err.contains("pushed metrics must not have timestamps"),
            "{err}"
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases: &[(&str, &str)] = &[
            ("a 1\n9bad 1\n", "line 2: invalid metric name \"9bad\""),
            (
                "a 1\n{x=\"1\"} 1\n",
                "line 2: expected a metric name, found '{'",
            ),
            ("a{b=\"c\" 1\n", "line 1: expected , or }"),
            ("a{b=c} 1\n", "line 1: expected a quoted value for label b"),
            ("a{b=\"c} 1\n", "line 1: value of label b is not closed"),
            ("a{b=\"\\t\"} 1\n", "line 1: invalid escape sequence \\t"),
            ("a{b=\"1\",b=\"2\"} 1\n", "line 1: label b given twice"),
            ("a{__name__=\"x\"} 1\n", "reserved"),
            ("a{1b=\"x\"} 1\n", "line 1: invalid label name \"1b\""),
            ("a{-=\"x\"} 1\n", "line 1: expected a label name, found '-'"),
            ("a{b=\"x\"\n", "line 1: label set not closed"),
            ("a\n", "line 1: sample a has no value"),
            ("a one\n", "line 1: invalid value \"one\""),
            ("a 0x10\n", "invalid value"),
            ("a 1_000\n", "invalid value"),
            ("a 1 2 3\n", "unexpected \"2 3\""),
            (
                "\n\n# TYPE a gauge\n# TYPE a counter\n",
                "line 4: second TYPE",
            ),
            (
                "a 1\n# TYPE a gauge\n",
                "line 2: second TYPE line for metric name \"a\", or TYPE reported after samples",
            ),
            ("# HELP a x\n# HELP a y\n", "line 2: second HELP"),
            ("# TYPE a gaugeish\n", "line 1: unknown metric type"),
            ("# TYPE\n", "line 1: TYPE line without a metric name"),
            (
                "# HELP a bad \\q\n",
                "line 1: invalid escape sequence \\q in HELP",
            ),
            ("a 1\na 2\n", "line 2: duplicate series a"),
            (
                "# TYPE s summary\ns 1\n",
                "line 2: s in summary s has no quantile label",
            ),
            ("# TYPE h histogram\nh_bucket 1\n", "no le label"),
            ("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "not a number"),
            ("# TYPE h histogram\nh 1\n", "_bucket, _sum or _count"),
            ("a{b=\"c\"}1\n", "expected a blank"),
        ];
        for (body, want) in cases {
            let err = parse_err(body);
            assert!(err.contains(want), "{body:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let err = parse(b"a 1\nb{x=\"\xff\"} 1\n", &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("line 2"));
    }

    #[test]
    fn limits_bound_the_push() {
        let limits = Limits {
            max_series: 2,
            max_labels: 2,
            max_name_len: 10,
            max_label_value_len: 5,
        };
        let run = |body: &str| parse(body.as_bytes(), &limits).map_err(|e| e.to_string());
        assert!(run("a 1\nb 2\n").is_ok());
        assert!(run("a 1\nb 2\nc 3\n")
            .unwrap_err()
            .contains("line 3: more than 2 samples"));
        assert!(run("a{x=\"1\",y=\"2\",z=\"3\"} 1\n")
            .unwrap_err()
            .contains("line 1: more than 2 labels"));
        assert!(run("abcdefghijk 1\n")
            .unwrap_err()
            .contains("longer than 10"));
        assert!(run("a{x=\"123456\"} 1\n")
            .unwrap_err()
            .contains("longer than 5"));
    }

    #[test]
    fn crlf_and_leading_blanks_are_tolerated() {
        let fams = parse_ok("# TYPE a gauge\r\n  a 1\r\n");
        assert_eq!(fams[0].kind, MetricKind::Gauge);
        assert_eq!(fams[0].samples[0].value, 1.0);
    }
}
