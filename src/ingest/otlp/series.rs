//! The series of one pool between exports, and the pool snapshot they make.
//!
//! A series is one metric's points with one set of attributes (told apart by
//! [`super::Point::series`]). What each keeps depends on how its points are read:
//!
//! - a **level** (a gauge, a cumulative up-down counter) and a cumulative **total** (a
//!   counter, a histogram's sum) take the latest point's value; a point older than the
//!   one kept (a late retry) is ignored;
//! - a **delta** (a delta counter or histogram) is added to the series' total, once: a
//!   point that ends no later than the last one added (an export retried after its answer
//!   was lost, or a duplicate in a batch) is not added again. The total starts at the
//!   first delta poolwatch receives, as a counter does at a restart.
//!
//! A field is the sum over its metric's series: a pool whose connections are counted in
//! several series (by an attribute poolwatch drops) gets their total. Where a pool has
//! series of both generations of names for one field, only the current ones count.

use crate::ingest::PoolSnapshot;

use super::{Generation, Use, RULES};

/// How a series' points are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The value now.
    Level,
    /// A cumulative total.
    Total,
    /// The change since the previous point.
    Delta,
}

/// A connection count's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Checked out (`used`).
    Used,
    /// Idle in the pool (`idle`).
    Idle,
}

/// One point as it enters a series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoint {
    /// Index of its metric in [`RULES`].
    pub rule: usize,
    /// Its state, for connection counts.
    pub state: Option<State>,
    /// Its series (the hash of its attributes).
    pub id: u64,
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `time_unix_nano`.
    pub time: u64,
    /// Its value in base units (connections, seconds).
    pub value: f64,
    /// How it is read.
    pub kind: Kind,
}

/// One series as kept.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    rule: usize,
    state: Option<State>,
    id: u64,
    kind: Kind,
    /// The last point taken.
    start: u64,
    time: u64,
    /// The value, or the deltas' total.
    value: f64,
}

/// A pool's series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolSeries {
    series: Vec<Series>,
}

impl PoolSeries {
    /// Series kept per pool: a pool has a handful (two states of a count, a maximum, a
    /// wait time); the cap bounds what one pool can make poolwatch hold.
    pub const MAX_SERIES: usize = 32;

    /// Takes `points` in order; returns how many were refused because the pool already
    /// has [`PoolSeries::MAX_SERIES`] series.
    pub fn apply(&mut self, points: &[SeriesPoint]) -> u64 {
        let mut refused = 0;
        for p in points {
            let found = self
                .series
                .iter()
                .position(|s| s.rule == p.rule && s.id == p.id);
            match found {
                Some(i) if self.series[i].kind != p.kind => {
                    // The sender changed its temporality: start the series over.
                    self.series[i] = Series::from(p);
                }
                Some(i) => self.series[i].take(p),
                None if self.series.len() >= Self::MAX_SERIES => refused += 1,
                None => self.series.push(Series::from(p)),
            }
        }
        refused
    }

    /// How many series are kept.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The pool's snapshot, or why there is none: no connection count, or a count or
    /// time that is not a valid number.
    pub fn snapshot(&self, application_name: &str) -> Result<PoolSnapshot, String> {
        let counts = self.chosen(Use::Count);
        if counts.is_empty() {
            return Err(
                "no db.client.connection.count (or db.client.connections.usage) for it".to_string(),
            );
        }
        let in_use = whole(
            "connections used",
            sum(counts
                .iter()
                .copied()
                .filter(|s| s.state == Some(State::Used))),
        )?;
        let idle = whole(
            "connections idle",
            sum(counts
                .iter()
                .copied()
                .filter(|s| s.state == Some(State::Idle))),
        )?;
        let field = |use_: Use| {
            let s = self.chosen(use_);
            (!s.is_empty()).then(|| sum(s.iter().copied()))
        };
        let max_open = field(Use::MaxOpen)
            .map(|v| whole("the maximum", v))
            .transpose()?
            .filter(|&m| m > 0);
        let waiting = field(Use::Waiting)
            .map(|v| whole("pending requests", v))
            .transpose()?;
        let wait_duration_seconds = match field(Use::WaitTime) {
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                return Err(format!(
                    "the wait time is {v}, not a number of seconds >= 0"
                ))
            }
            w => w,
        };
        Ok(PoolSnapshot {
            max_open,
            open: in_use.saturating_add(idle),
            in_use: Some(in_use),
            idle: Some(idle),
            waiting,
            wait_duration_seconds,
            application_name: application_name.to_string(),
            ..PoolSnapshot::default()
        })
    }

    /// The series that give `use_`: the current names' when there are any, else the
    /// legacy ones'.
    fn chosen(&self, use_: Use) -> Vec<&Series> {
        let of = |g: Generation| -> Vec<&Series> {
            self.series
                .iter()
                .filter(|s| RULES[s.rule].use_ == use_ && RULES[s.rule].generation == g)
                .collect()
        };
        let current = of(Generation::Current);
        if current.is_empty() {
            of(Generation::Legacy)
        } else {
            current
        }
    }
}

impl Series {
    fn from(p: &SeriesPoint) -> Series {
        Series {
            rule: p.rule,
            state: p.state,
            id: p.id,
            kind: p.kind,
            start: p.start,
            time: p.time,
            value: p.value,
        }
    }

    fn take(&mut self, p: &SeriesPoint) {
        match p.kind {
            Kind::Level | Kind::Total if p.time < self.time => {}
            Kind::Level | Kind::Total => {
                self.value = p.value;
                (self.start, self.time) = (p.start, p.time);
            }
            Kind::Delta if p.time <= self.time => {}
            Kind::Delta => {
                self.value += p.value;
                (self.start, self.time) = (p.start, p.time);
            }
        }
    }
}

fn sum<'a>(series: impl Iterator<Item = &'a Series>) -> f64 {
    series.map(|s| s.value).sum()
}

/// A count as a whole number, or why it is not one.
fn whole(what: &str, v: f64) -> Result<u64, String> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9.007_199_254_740_992e15 {
        Ok(v as u64)
    } else {
        Err(format!("{what} is {v}, not a whole number >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::otlp::rule_index;

    fn point(metric: &str, state: Option<State>, id: u64, time: u64, value: f64) -> SeriesPoint {
        SeriesPoint {
            rule: rule_index(metric).unwrap(),
            state,
            id,
            start: 0,
            time,
            value,
            kind: Kind::Level,
        }
    }

    fn delta(metric: &str, id: u64, start: u64, time: u64, value: f64) -> SeriesPoint {
        SeriesPoint {
            start,
            kind: Kind::Delta,
            ..point(metric, None, id, time, value)
        }
    }

    const COUNT: &str = "db.client.connection.count";
    const USAGE: &str = "db.client.connections.usage";

    #[test]
    fn levels_take_the_latest_and_states_give_in_use_and_idle() {
        let mut s = PoolSeries::default();
        s.apply(&[
            point(COUNT, Some(State::Used), 1, 10, 3.0),
            point(COUNT, Some(State::Idle), 2, 10, 2.0),
            point("db.client.connection.max", None, 3, 10, 10.0),
        ]);
        // A later export; then a late retry of an earlier one, ignored.
        s.apply(&[point(COUNT, Some(State::Used), 1, 20, 4.0)]);
        s.apply(&[point(COUNT, Some(State::Used), 1, 15, 9.0)]);
        let snap = s.snapshot("billing").unwrap();
        assert_eq!(
            (snap.in_use, snap.idle, snap.open, snap.max_open),
            (Some(4), Some(2), 6, Some(10))
        );
        assert_eq!(snap.application_name, "billing");
        assert_eq!(snap.waiting, None);
        assert_eq!(snap.wait_duration_seconds, None);
    }

    #[test]
    fn a_state_never_reported_is_zero() {
        // SQLAlchemy's instrumentation reports `used` only after the first checkout.
        let mut s = PoolSeries::default();
        s.apply(&[point(USAGE, Some(State::Idle), 1, 10, 1.0)]);
        let snap = s.snapshot("a").unwrap();
        assert_eq!((snap.in_use, snap.idle, snap.open), (Some(0), Some(1), 1));
    }

    #[test]
    fn deltas_are_accumulated_once() {
        const WAIT: &str = "db.client.connection.wait_time";
        let mut s = PoolSeries::default();
        s.apply(&[point(COUNT, Some(State::Used), 1, 10, 1.0)]);
        s.apply(&[delta(WAIT, 7, 0, 10, 0.5)]);
        s.apply(&[delta(WAIT, 7, 10, 20, 0.25)]);
        // The same export again (retried), and a stale one: not added.
        s.apply(&[delta(WAIT, 7, 10, 20, 0.25)]);
        s.apply(&[delta(WAIT, 7, 0, 10, 0.5)]);
        // A second series of the same metric (another attribute value) adds up.
        s.apply(&[delta(WAIT, 8, 10, 20, 1.0)]);
        let snap = s.snapshot("a").unwrap();
        assert_eq!(snap.wait_duration_seconds, Some(1.75));
        // A series that turns cumulative starts over from its value.
        s.apply(&[SeriesPoint {
            kind: Kind::Total,
            ..delta(WAIT, 7, 0, 30, 3.0)
        }]);
        assert_eq!(s.snapshot("a").unwrap().wait_duration_seconds, Some(4.0));
    }

    #[test]
    fn series_split_by_a_dropped_attribute_add_up() {
        let mut s = PoolSeries::default();
        s.apply(&[
            point(COUNT, Some(State::Used), 1, 10, 3.0),
            point(COUNT, Some(State::Used), 2, 10, 4.0),
            point(COUNT, Some(State::Idle), 3, 10, 1.0),
        ]);
        let snap = s.snapshot("a").unwrap();
        assert_eq!((snap.in_use, snap.idle, snap.open), (Some(7), Some(1), 8));
    }

    #[test]
    fn current_names_win_over_legacy_ones() {
        let mut s = PoolSeries::default();
        s.apply(&[
            point(USAGE, Some(State::Used), 1, 10, 9.0),
            point(USAGE, Some(State::Idle), 2, 10, 9.0),
            point("db.client.connections.max", None, 3, 10, 50.0),
            point(COUNT, Some(State::Used), 4, 10, 2.0),
            point(COUNT, Some(State::Idle), 5, 10, 1.0),
        ]);
        let snap = s.snapshot("a").unwrap();
        // Counts from the current names; the maximum only has a legacy series.
        assert_eq!(
            (snap.in_use, snap.idle, snap.max_open),
            (Some(2), Some(1), Some(50))
        );
    }

    #[test]
    fn no_count_or_a_bad_value_gives_no_snapshot() {
        let mut s = PoolSeries::default();
        s.apply(&[point("db.client.connection.max", None, 3, 10, 10.0)]);
        assert!(s
            .snapshot("a")
            .unwrap_err()
            .contains("no db.client.connection.count"));
        s.apply(&[point(COUNT, Some(State::Used), 1, 10, -1.0)]);
        assert!(s
            .snapshot("a")
            .unwrap_err()
            .contains("-1, not a whole number"));
        s.apply(&[point(COUNT, Some(State::Used), 1, 11, 1.5)]);
        assert!(s.snapshot("a").unwrap_err().contains("1.5"));
    }

    #[test]
    fn the_series_cap_refuses_new_series_only() {
        let mut s = PoolSeries::default();
        let many: Vec<SeriesPoint> = (0..40)
            .map(|i| point(COUNT, Some(State::Idle), i, 10, 1.0))
            .collect();
        assert_eq!(s.apply(&many), 8);
        assert_eq!(s.len(), PoolSeries::MAX_SERIES);
        // Known series still update.
        assert_eq!(s.apply(&[point(COUNT, Some(State::Idle), 0, 11, 2.0)]), 0);
        assert_eq!(s.snapshot("a").unwrap().idle, Some(33));
    }
}
