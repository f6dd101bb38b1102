//! Properties the fuzz targets share.

use poolwatch::ingest::pushgateway::{Family, Limits};

/// What a Pushgateway parser accepted respects `limits`: samples in all, labels per
/// sample, name and value lengths, and no family without samples.
pub fn check_limits(families: &[Family], limits: &Limits) {
    let samples: usize = families.iter().map(|f| f.samples.len()).sum();
    assert!(samples <= limits.max_series, "{samples} samples accepted");
    for f in families {
        assert!(!f.samples.is_empty(), "family {} without samples", f.name);
        assert!(f.name.len() <= limits.max_name_len);
        for s in &f.samples {
            assert!(s.labels.len() <= limits.max_labels);
            for (k, v) in &s.labels {
                assert!(k.len() <= limits.max_name_len);
                assert!(v.len() <= limits.max_label_value_len);
            }
        }
    }
}
