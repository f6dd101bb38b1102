//! Pushgateway delimited protobuf bodies (`io.prometheus.client.MetricFamily`), with the
//! default limits; accepted bodies must respect them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolwatch::ingest::pushgateway::{protobuf, Family, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(families) = protobuf::parse(data, &limits) {
        check_limits(&families, &limits);
    }
});

fn check_limits(families: &[Family], limits: &Limits) {
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
