//! The grouping key in a Pushgateway path: `/metrics/job/<job>{/<label>/<value>}`.
//!
//! As in the Pushgateway: a name ending in `@base64` (also `job@base64`) marks its value as
//! base64url (RFC 4648 §5), padded or not, with a lone `=` for the empty string; label
//! names match `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__`; the job must not be
//! empty; the segments after the job come in name/value pairs. Two deliberate differences:
//! the raw path is split on `/` before each plain segment is percent-decoded (so `%2F`
//! stays inside its value instead of splitting it), and a label given twice is refused
//! instead of the last one silently winning.

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine};

use crate::ingest::IngestError;

use super::{is_label_name, Labels};

/// The suffix that marks a base64url-encoded value.
pub const BASE64_SUFFIX: &str = "@base64";

/// A group's identity: `job` plus the other labels of the path, sorted by name, held as
/// compactly as a sample's labels (ten thousand groups are ten thousand keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupingKey {
    /// Every label of the key, `job` included.
    labels: Labels,
}

impl GroupingKey {
    /// A key from a job and further labels; for tests and callers that build keys.
    pub fn new(job: &str, labels: &[(&str, &str)]) -> GroupingKey {
        let map: BTreeMap<&str, &str> = labels
            .iter()
            .copied()
            .chain(std::iter::once(("job", job)))
            .collect();
        GroupingKey::from_map(&map)
    }

    fn from_map<K: AsRef<str>, V: AsRef<str>>(map: &BTreeMap<K, V>) -> GroupingKey {
        GroupingKey {
            labels: Labels::from_sorted(map.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))),
        }
    }

    /// The job (never empty for a parsed key).
    pub fn job(&self) -> &str {
        self.labels.get("job").unwrap_or("")
    }

    /// One label of the key.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }

    /// All labels of the key, `job` included, sorted by name.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// Parses a raw (still percent-encoded) request path, e.g. the path of the request URI:
/// `/metrics/job/orders/instance/pod-1` or `/metrics/job@base64/b3JkZXJz/path@base64/L3Zhcg`.
pub fn parse_push_path(raw_path: &str) -> Result<GroupingKey, IngestError> {
    let rest = raw_path.strip_prefix("/metrics/").ok_or_else(|| {
        IngestError::field_err(
            "path",
            "must start with /metrics/job/<job> or /metrics/job@base64/<job>",
        )
    })?;
    let (job_name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let job_base64 = match job_name {
        "job" => false,
        "job@base64" => true,
        _ => {
            return Err(IngestError::field_err(
                "path",
                "must start with /metrics/job/<job> or /metrics/job@base64/<job>",
            ))
        }
    };
    let (job_raw, labels) = match rest.split_once('/') {
        Some((job, labels)) => (job, Some(labels)),
        None => (rest, None),
    };
    let job = decode_value("job", job_raw, job_base64)?;
    if job.is_empty() {
        return Err(IngestError::field_err("job", "job name is required"));
    }
    let mut map = BTreeMap::new();
    map.insert("job".to_string(), job);
    // As in the Pushgateway, one trailing slash after the job is no label at all.
    if let Some(labels) = labels.filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = labels.split('/').collect();
        if parts.len() % 2 != 0 {
            return Err(IngestError::field_err(
                "path",
                format!(
                    "odd number of components in label string {:?}",
                    format!("/{labels}")
                ),
            ));
        }
        for pair in parts.chunks(2) {
            let (raw_name, raw_value) = (pair[0], pair[1]);
            let (name, base64) = match raw_name.strip_suffix(BASE64_SUFFIX) {
                Some(name) => (name, true),
                None => (raw_name, false),
            };
            let name = percent_decode(name).map_err(|p| {
                IngestError::field_err("path", format!("label name {raw_name:?}: {p}"))
            })?;
            if !is_label_name(&name) || name.starts_with("__") {
                return Err(IngestError::field_err(
                    "path",
                    format!("improper label name {name:?}"),
                ));
            }
            let value = decode_value(&format!("label {name}"), raw_value, base64)?;
            if map.insert(name.clone(), value).is_some() {
                return Err(IngestError::field_err(
                    format!("label {name}"),
                    "given more than once in the path",
                ));
            }
        }
    }
    Ok(GroupingKey::from_map(&map))
}

/// Decodes one value segment: base64url when marked, percent-encoding otherwise.
fn decode_value(field: &str, raw: &str, base64: bool) -> Result<String, IngestError> {
    if base64 {
        let bytes = decode_base64url(raw).map_err(|p| {
            IngestError::field_err(field, format!("invalid base64 encoding {raw:?}: {p}"))
        })?;
        String::from_utf8(bytes)
            .map_err(|_| IngestError::field_err(field, "base64 value is not valid UTF-8"))
    } else {
        percent_decode(raw).map_err(|p| IngestError::field_err(field, format!("{raw:?}: {p}")))
    }
}

/// Decodes `%XX` escapes; each must be two hex digits, and the result UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    if let Some((i, _)) = s.match_indices('%').find(|(i, _)| {
        !b.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    }) {
        return Err(format!("invalid percent-encoding at byte {i}"));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| "percent-decoded value is not valid UTF-8".to_string())
}

/// Base64url without padding (the `=` are trimmed first), taking bits past the last
/// whole byte as Go's decoder does.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64url (RFC 4648 §5) as the Pushgateway does: trailing `=` are trimmed
/// first, so padded, unpadded and a lone `=` (the empty string) all work. `+` and `/`
/// (the standard alphabet) are refused: they are not URL-safe.
pub fn decode_base64url(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_end_matches('=');
    if let Some(i) = s.find(['+', '/']) {
        return Err(format!(
            "{:?} at position {i} is standard base64; use the URL-safe alphabet (- and _)",
            &s[i..=i]
        ));
    }
    BASE64URL.decode(s).map_err(|e| match e {
        DecodeError::InvalidByte(i, c) => {
            format!("illegal character {:?} at position {i}", c as char)
        }
        DecodeError::InvalidLength(_) => "length is not a valid base64 length".to_string(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Vec<(String, String)> {
        parse_push_path(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .labels()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(key("/metrics/job/orders"), pairs(&[("job", "orders")]));
        assert_eq!(key("/metrics/job/orders/"), pairs(&[("job", "orders")]));
        assert_eq!(
            key("/metrics/job/orders/instance/pod-1/pool/main"),
            pairs(&[("instance", "pod-1"), ("job", "orders"), ("pool", "main")])
        );
        // Percent-decoding applies per segment, after splitting.
        assert_eq!(
            key("/metrics/job/my%20job/path/%2Fvar%2Ftmp"),
            pairs(&[("job", "my job"), ("path", "/var/tmp")])
        );
        // An empty plain value is allowed for labels (only the job must not be empty).
        assert_eq!(
            key("/metrics/job/j/instance/"),
            pairs(&[("instance", ""), ("job", "j")])
        );
    }

    #[test]
    fn base64_segments() {
        // The Pushgateway README's example: path@base64/L3Zhci90bXA= is /var/tmp.
        let padded = pairs(&[("job", "directory_cleaner"), ("path", "/var/tmp")]);
        assert_eq!(
            key("/metrics/job/directory_cleaner/path@base64/L3Zhci90bXA="),
            padded
        );
        assert_eq!(
            key("/metrics/job/directory_cleaner/path@base64/L3Zhci90bXA"),
            padded
        );
        // The job itself may be base64.
        assert_eq!(
            key("/metrics/job@base64/L3Zhci90bXA/x/y"),
            pairs(&[("job", "/var/tmp"), ("x", "y")])
        );
        // A lone = is the empty value.
        assert_eq!(
            key("/metrics/job/j/first_label@base64/="),
            pairs(&[("first_label", ""), ("job", "j")])
        );
        // URL-safe characters decode (0xfb 0xff -> "-_8").
        assert_eq!(decode_base64url("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("YQ").unwrap(), b"a");
        assert_eq!(decode_base64url("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64url("YWI").unwrap(), b"ab");
        assert_eq!(decode_base64url("YWJj").unwrap(), b"abc");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            ("/metrics/job/", "job", "required"),
            ("/metrics/job", "job", "required"),
            ("/metrics/job@base64/=", "job", "required"),
            ("/metrics/jobs/x", "path", "must start with"),
            ("/other/job/x", "path", "must start with"),
            ("/metrics/job/x/a", "path", "odd number"),
            ("/metrics/job/x/a/b/c", "path", "odd number"),
            ("/metrics/job/x/a/b/", "path", "odd number"),
            ("/metrics/job/x/1a/b", "path", "improper label name \"1a\""),
            ("/metrics/job/x/__a/b", "path", "improper label name"),
            ("/metrics/job/x/a-b/b", "path", "improper label name"),
            ("/metrics/job/x/a/1/a/2", "label a", "more than once"),
            ("/metrics/job/x/job/y", "label job", "more than once"),
            ("/metrics/job/x/a@base64/!!", "label a", "illegal character"),
            ("/metrics/job/x/a@base64/a+b", "label a", "URL-safe"),
            ("/metrics/job/x/a@base64/abcde", "label a", "length"),
            ("/metrics/job/x/a@base64/_w", "label a", "UTF-8"),
            ("/metrics/job/x/a/%zz", "label a", "percent"),
            ("/metrics/job/x/a/%+4", "label a", "percent"),
            ("/metrics/job/x/a/%4", "label a", "percent"),
            ("/metrics/job@base64/%%%", "job", "illegal character"),
        ];
        for (path, field, problem) in cases {
            let err = parse_push_path(path).expect_err(path);
            assert_eq!(err.field(), Some(*field), "{path}: {err}");
            assert!(err.to_string().contains(problem), "{path}: {err}");
        }
    }
}
