//! Properties the fuzz targets share.

use poolwatch::ingest::otlp::{self, series::PoolSeries, Export};
use poolwatch::ingest::pushgateway::{Family, Limits};
use poolwatch::ingest::{MAX_APPLICATION_NAME_LEN, MAX_INSTANCE_LEN, MAX_NAME_LEN};

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
            for (k, v) in s.labels.iter() {
                assert!(k.len() <= limits.max_name_len);
                assert!(v.len() <= limits.max_label_value_len);
            }
        }
    }
}

/// What an OTLP decoder accepted respects `limits`, and the rest of the receiver's path
/// (plan, series, snapshot) takes it without panicking and hands the store only valid
/// pools: names within bounds, counts that add up, times finite and not negative.
pub fn check_otlp(export: Export, limits: &otlp::Limits) {
    let points: usize = export
        .resources
        .iter()
        .flat_map(|r| &r.metrics)
        .map(|m| m.points.len())
        .sum();
    assert!(points <= limits.max_points, "{points} points kept");
    for r in &export.resources {
        let a = &r.attributes;
        for v in [&a.service_name, &a.service_instance_id, &a.k8s_pod_name, &a.host_name]
            .into_iter()
            .flatten()
        {
            assert!(v.len() <= limits.max_value_len);
        }
        for m in &r.metrics {
            assert!(m.unit.len() <= limits.max_value_len);
        }
    }
    let plan = otlp::plan(export, "fuzz-default");
    assert!(plan.rejected.points as usize <= points);
    for (key, incoming) in plan.pools {
        assert!(!key.app.is_empty() && key.app.len() <= MAX_NAME_LEN);
        assert!(!key.pool.is_empty() && key.pool.len() <= MAX_NAME_LEN);
        assert!(key.instance.len() <= MAX_INSTANCE_LEN.max("fuzz-default".len()));
        assert!(incoming.application_name.len() <= MAX_APPLICATION_NAME_LEN);
        let mut series = PoolSeries::default();
        let refused = series.apply(&incoming.points);
        assert!(series.len() <= PoolSeries::MAX_SERIES);
        assert!(refused as usize <= incoming.points.len());
        if let Ok(s) = series.snapshot(&incoming.application_name) {
            assert_eq!(Some(s.open), s.in_use.zip(s.idle).map(|(u, i)| u + i));
            if let Some(w) = s.wait_duration_seconds {
                assert!(w.is_finite() && w >= 0.0, "wait {w}");
            }
        }
    }
}
