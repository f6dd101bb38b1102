//! Trend: a robust growth rate, the release test, and time to exhaustion.
//!
//! Owns the arithmetic of "climbing and never coming back down"; it keeps no state and
//! works on `(t, value)` slices that [`super::history`] provides.
//!
//! The growth rate is the Theil-Sen estimator: the median of the slopes between every
//! pair of points. Up to 29% of the points can be arbitrarily wrong without moving it. A
//! single step (a burst, a surge) has at most half its pairs straddling it, so it gives
//! no growth (at most a token one when it sits exactly mid-span); a ramp gives growth
//! once it covers more than about 29% of the fitted span. The pairs are subsampled
//! deterministically beyond [`MAX_PAIRS`], so the cost per fit is bounded whatever the
//! history length.

use super::AnalysisConfig;

/// Most pairwise slopes computed per fit.
pub const MAX_PAIRS: usize = 8_192;

/// Median of the slopes between all pairs of `points` (at most [`MAX_PAIRS`] of them,
/// taken at an even stride), in value per second. `None` with fewer than two distinct
/// times. `scratch` is reused between calls to avoid allocating per fit.
pub fn theil_sen(points: &[(f64, f64)], scratch: &mut Vec<f64>) -> Option<f64> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let pairs = n * (n - 1) / 2;
    let stride = pairs.div_ceil(MAX_PAIRS).max(1);
    scratch.clear();
    let mut k = 0usize;
    for i in 0..n {
        for j in i + 1..n {
            if k % stride == 0 {
                let dt = points[j].0 - points[i].0;
                if dt > 0.0 {
                    scratch.push((points[j].1 - points[i].1) / dt);
                }
            }
            k += 1;
        }
    }
    median(scratch)
}

/// Median of `v` (reordered in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (left, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// The largest fall from an earlier high: `max over i of (max(v[..=i]) - v[i])`.
pub fn max_drawdown(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut high = f64::NEG_INFINITY;
    let mut worst: f64 = 0.0;
    for v in values {
        high = high.max(v);
        worst = worst.max(high - v);
    }
    worst
}

/// Seconds until `headroom` is used up at `growth_per_second`; `None` unless growing.
/// No headroom left gives zero.
pub fn eta_seconds(headroom: f64, growth_per_second: Option<f64>) -> Option<f64> {
    match growth_per_second {
        Some(g) if g > 0.0 => Some(headroom.max(0.0) / g),
        _ => None,
    }
}

/// The trend of one connection series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Growth {
    /// Theil-Sen slope over the last `growth_span_seconds`, connections per second;
    /// `None` with fewer than `min_points` points there.
    pub per_second: Option<f64>,
    /// Newest value minus the window's lowest.
    pub rise: f64,
    /// Largest fall from an earlier high within the window.
    pub drawdown: f64,
    /// The steady-growth rule holds (see [`assess`]).
    pub steady: bool,
}

/// Fits the series (oldest first, the whole window) and applies the steady-growth rule.
/// All must hold:
///
/// 1. enough evidence: at least `min_points` points in the last `growth_span_seconds`,
///    and the history reaches back at least 90% of that span (jitter allowance);
/// 2. steady climbing: the Theil-Sen slope over that span, and the slopes over each of
///    its halves (at least `min_points / 2` points each), are all at least
///    `min_growth_per_second`. The halves are what tell growth from a step: a burst or
///    a surge that ramps up within a minute climbs in one half only, and a warm-up that
///    has stopped is flat in the newer half;
/// 3. a real climb: the newest value is at least `min_rise_connections` above the
///    window's lowest;
/// 4. never released: within the whole window, no fall from an earlier high exceeds
///    `release_fraction` of the window's range (and at least one connection), so a
///    burst, a surge or a sawtooth that came back down within the window is not a leak,
///    and the newest value is near the window's high.
pub fn assess(series: &[(f64, f64)], cfg: &AnalysisConfig, scratch: &mut Vec<f64>) -> Growth {
    let Some(&(now, current)) = series.last() else {
        return Growth::default();
    };
    let from = now - cfg.growth_span_seconds;
    let start = series.partition_point(|p| p.0 < from);
    let recent = &series[start..];
    let per_second = if recent.len() >= cfg.min_points.max(2) {
        theil_sen(recent, scratch)
    } else {
        None
    };
    // The span's older and newer halves must each climb on their own: growth spread
    // over the whole span, not one fast step or ramp inside it.
    let mid = recent.partition_point(|p| p.0 < now - cfg.growth_span_seconds / 2.0);
    let half_points = (cfg.min_points / 2).max(2);
    let halves_climb = [&recent[..mid], &recent[mid..]].into_iter().all(|h| {
        h.len() >= half_points
            && theil_sen(h, scratch).is_some_and(|g| g >= cfg.min_growth_per_second)
    });
    let low = series.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = series.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let drawdown = max_drawdown(series.iter().map(|p| p.1));
    let rise = current - low;
    let covered = now - series[0].0 >= 0.9 * cfg.growth_span_seconds;
    let tolerance = (cfg.release_fraction * (high - low)).max(1.0);
    let steady = covered
        && per_second.is_some_and(|g| g >= cfg.min_growth_per_second)
        && halves_climb
        && rise >= cfg.min_rise_connections as f64
        && drawdown <= tolerance;
    Growth {
        per_second,
        rise,
        drawdown,
        steady,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64], interval: f64) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * interval, *v))
            .collect()
    }

    #[test]
    fn theil_sen_ignores_one_outlier() {
        let mut s = Vec::new();
        // (name, values, expected slope per second at 10 s spacing)
        let mut flat = vec![10.0; 30];
        flat[17] = 100.0;
        let mut ramp: Vec<f64> = (0..30).map(|i| i as f64).collect();
        ramp[29] = 500.0; // a final spike: least squares would call this a trend
        let mut dip: Vec<f64> = (0..30).map(|i| 2.0 * i as f64).collect();
        dip[5] = -300.0;
        let cases: Vec<(&str, Vec<f64>, f64)> = vec![
            ("flat with one spike", flat, 0.0),
            ("ramp with a spike at the end", ramp, 0.1),
            ("steeper ramp with one dip", dip, 0.2),
        ];
        for (name, values, want) in cases {
            let got = theil_sen(&series(&values, 10.0), &mut s).unwrap();
            assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
        }
        // The growth rule agrees: one spike on a flat line is no leak.
        let mut spike = vec![10.0; 40];
        spike[39] = 60.0;
        let g = assess(&series(&spike, 10.0), &AnalysisConfig::default(), &mut s);
        assert_eq!(g.per_second, Some(0.0));
        assert!(!g.steady);
    }

    #[test]
    fn theil_sen_is_bounded_and_deterministic_on_long_series() {
        let mut s = Vec::new();
        let pts: Vec<(f64, f64)> = (0..1_000).map(|i| (i as f64, 3.0 * i as f64)).collect();
        let a = theil_sen(&pts, &mut s).unwrap();
        assert!(s.len() <= MAX_PAIRS + 1, "{} slopes", s.len());
        assert_eq!(a, 3.0);
        assert_eq!(theil_sen(&pts, &mut s), Some(a));
        assert_eq!(theil_sen(&pts[..1], &mut s), None);
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 5.0)], &mut s), None);
    }

    #[test]
    fn median_and_drawdown_and_eta() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(max_drawdown([1.0, 5.0, 2.0, 6.0, 5.0]), 3.0);
        assert_eq!(max_drawdown([1.0, 2.0, 3.0]), 0.0);
        assert_eq!(eta_seconds(10.0, Some(0.5)), Some(20.0));
        assert_eq!(eta_seconds(-3.0, Some(0.5)), Some(0.0));
        assert_eq!(eta_seconds(10.0, Some(0.0)), None);
        assert_eq!(eta_seconds(10.0, None), None);
    }
}
