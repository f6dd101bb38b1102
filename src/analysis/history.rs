//! A bounded, time-windowed series of observations.
//!
//! Owns the memory bound of the analysis: a [`History`] holds at most `max_points`
//! points, none older than `window_seconds` before the newest, in one allocation made at
//! creation that never grows. The newest point is replaced by each new observation until
//! it is `window_seconds / max_points` after the point before it, so the kept points are
//! spaced at least that far apart and cover the whole window whatever the tick rate,
//! while the newest value is always the latest seen.

use std::collections::VecDeque;

/// A point in time, Unix seconds.
pub trait Timed {
    /// When the observation was made.
    fn t(&self) -> f64;
}

/// One application's observation per tick (40 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AppPoint {
    /// Unix seconds.
    pub t: f64,
    /// The largest count any view reported: server, socket or the pools' open sum.
    pub connections: u32,
    /// Backends attributed to the application, when the server view was available.
    pub server: Option<u32>,
    /// Sum of the application's pools' `open`, when it has pools.
    pub pool_open: Option<u32>,
    /// Sum of the application's pools' `in_use`, when every pool reports it.
    pub pool_in_use: Option<u32>,
}

impl Timed for AppPoint {
    fn t(&self) -> f64 {
        self.t
    }
}

/// One pool's observation per tick (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolPoint {
    /// Unix seconds.
    pub t: f64,
    /// The pool's `wait_count` counter, when reported.
    pub wait_count: Option<u64>,
}

impl Timed for PoolPoint {
    fn t(&self) -> f64 {
        self.t
    }
}

/// Saturating conversion of a count for compact storage.
pub fn count32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A bounded series of points in time order.
#[derive(Clone, Debug)]
pub struct History<P> {
    /// The points, oldest first.
    points: VecDeque<P>,
    /// Most points kept.
    max_points: usize,
    /// Oldest point kept, in seconds before the newest.
    window_seconds: f64,
}

impl<P: Timed + Copy> History<P> {
    /// An empty history; `max_points` is at least 2.
    pub fn new(max_points: usize, window_seconds: f64) -> History<P> {
        let max_points = max_points.max(2);
        History {
            // One spare slot: a push appends before the front is trimmed.
            points: VecDeque::with_capacity(max_points + 1),
            max_points,
            window_seconds,
        }
    }

    /// Adds an observation. One older than the newest is dropped (a clock step back);
    /// one at the same time as the newest, or while the newest is still closer than the
    /// spacing to the point before it, replaces the newest.
    pub fn push(&mut self, p: P) {
        let spacing = self.window_seconds / self.max_points as f64;
        let n = self.points.len();
        if let Some(last) = self.points.back() {
            if p.t() < last.t() {
                return;
            }
        }
        // The newest point floats (is replaced) until it is `spacing` after the one
        // before it; then it stays and the next observation floats.
        let replace = match n {
            0 => false,
            1 => p.t() == self.points[0].t(),
            _ => {
                p.t() == self.points[n - 1].t()
                    || self.points[n - 1].t() - self.points[n - 2].t() < spacing
            }
        };
        if replace {
            if let Some(last) = self.points.back_mut() {
                *last = p;
            }
        } else {
            self.points.push_back(p);
        }
        let oldest = p.t() - self.window_seconds;
        while self.points.front().is_some_and(|f| f.t() < oldest) {
            self.points.pop_front();
        }
        while self.points.len() > self.max_points {
            self.points.pop_front();
        }
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &P> + ExactSizeIterator {
        self.points.iter()
    }

    /// The newest point.
    pub fn last(&self) -> Option<&P> {
        self.points.back()
    }

    /// How many points are kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is kept.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Points the allocation can hold (for the memory bound's test).
    pub fn capacity(&self) -> usize {
        self.points.capacity()
    }

    /// Heap bytes one history takes at `max_points`: the bound documented per tracked
    /// application or pool.
    pub fn heap_bytes(max_points: usize) -> usize {
        (max_points.max(2) + 1) * std::mem::size_of::<P>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64) -> PoolPoint {
        PoolPoint {
            t,
            wait_count: Some(t as u64),
        }
    }

    #[test]
    fn ten_thousand_pushes_stay_within_the_cap_and_the_window() {
        // Table: tick interval, window, cap.
        for (interval, window, cap) in [(1.0, 900.0, 120), (0.1, 900.0, 120), (30.0, 900.0, 120)] {
            let mut h: History<PoolPoint> = History::new(cap, window);
            let cap0 = h.capacity();
            for i in 0..10_000 {
                h.push(p(1_000.0 + i as f64 * interval));
            }
            let first = h.iter().next().map(|q| q.t).unwrap_or_default();
            let last = h.last().map(|q| q.t).unwrap_or_default();
            assert!(h.len() <= cap, "interval {interval}: {} points", h.len());
            assert_eq!(h.capacity(), cap0, "interval {interval}: never reallocates");
            assert!(
                last - first <= window,
                "interval {interval}: within the window"
            );
            assert_eq!(last, 1_000.0 + 9_999.0 * interval, "newest value is kept");
            // Whatever the tick rate, the kept points still cover most of the window.
            let covered = (9_999.0 * interval).min(window);
            assert!(
                last - first >= covered - 2.0 * window / cap as f64 - interval,
                "interval {interval}: covers {} of {covered}",
                last - first
            );
        }
        assert_eq!(std::mem::size_of::<AppPoint>(), 40);
        assert_eq!(std::mem::size_of::<PoolPoint>(), 24);
    }

    #[test]
    fn out_of_order_is_dropped_and_same_time_replaces() {
        let mut h: History<PoolPoint> = History::new(10, 100.0);
        h.push(p(50.0));
        h.push(p(40.0));
        assert_eq!(h.len(), 1);
        h.push(PoolPoint {
            t: 50.0,
            wait_count: Some(7),
        });
        assert_eq!(h.len(), 1);
        assert_eq!(h.last().and_then(|q| q.wait_count), Some(7));
    }
}
