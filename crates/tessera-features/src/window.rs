//! Sliding windows over tiles (F3), the arithmetic of a `stream` view.
//!
//! A window of size `w` advances every slide `s` (`w` a whole number of
//! slides): windows start at multiples of `s`, so an event at `t` falls in
//! the `w / s` windows whose start lies in `(t - w, t]` (Flink's rule for
//! sliding event-time windows). Events are kept as partial aggregates per
//! tile (one slide wide); a window's value merges its `w / s` tiles, so an
//! event is added once, not once per window.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::features::{Aggregation, Function, parse_duration};

/// One aggregation's window and slide, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    pub window: i64,
    pub slide: i64,
}

impl Windowing {
    /// From a checked aggregation (`validate_view` has accepted it).
    pub fn of(a: &Aggregation) -> Option<Self> {
        let window = parse_duration(&a.window).ok()?.as_millis() as i64;
        let slide = match &a.slide {
            Some(s) => parse_duration(s).ok()?.as_millis() as i64,
            None => window,
        };
        (slide > 0 && window >= slide && window % slide == 0).then_some(Self { window, slide })
    }

    /// The start of the tile holding time `t`.
    pub fn tile(self, t: i64) -> i64 {
        t.div_euclid(self.slide) * self.slide
    }

    /// The windows `[start, end)` holding time `t`, earliest first.
    pub fn windows(self, t: i64) -> Vec<(i64, i64)> {
        let last = self.tile(t);
        let n = self.window / self.slide;
        (0..n).rev().map(|i| last - i * self.slide).map(|s| (s, s + self.window)).collect()
    }

    /// The tiles of the window ending at `end` (exclusive), earliest first.
    pub fn tiles_ending(self, end: i64) -> impl Iterator<Item = i64> {
        let n = self.window / self.slide;
        (0..n).rev().map(move |i| end - (i + 1) * self.slide)
    }
}

/// What a tile (or a merged window) knows of one aggregation's column:
/// the events, and the numeric values among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Events in the tile (with or without the column).
    pub events: u64,
    /// Numeric values of the column.
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Partial {
    /// Adds an event whose column holds `v` (none: missing or not a number).
    pub fn add(&mut self, v: Option<f64>) {
        self.events += 1;
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.n += 1;
            self.sum += v;
            self.sum_sq += v * v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }

    pub fn merge(&mut self, o: &Partial) {
        self.events += o.events;
        self.n += o.n;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The aggregation's value: `count` counts events (or, with a column,
    /// the events that had a number in it); `sum` of none is 0; `mean`,
    /// `min`, `max` of none are null; `stddev` is the sample standard
    /// deviation (pandas' and Spark's), null below two values.
    pub fn value(&self, a: &Aggregation) -> Value {
        match a.function {
            Function::Count if a.column.is_empty() => Value::from(self.events),
            Function::Count => Value::from(self.n),
            Function::Sum => Value::from(self.sum),
            Function::Mean if self.n > 0 => Value::from(self.sum / self.n as f64),
            Function::Min => self.min.map_or(Value::Null, Value::from),
            Function::Max => self.max.map_or(Value::Null, Value::from),
            Function::Stddev if self.n > 1 => {
                let n = self.n as f64;
                let var = ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
                Value::from(var.sqrt())
            }
            Function::Mean | Function::Stddev => Value::Null,
        }
    }
}

/// The number an event's property holds for a column, if any.
pub fn number(properties: &serde_json::Map<String, Value>, column: &str) -> Option<f64> {
    properties.get(column).and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agg(v: Value) -> Aggregation {
        serde_json::from_value(v).unwrap()
    }

    /// Flink's rule: size 5 min, slide 30 s, an event at 1,000,000 ms lies
    /// in exactly 10 windows, the first [720000, 1020000).
    #[test]
    fn windows_follow_flinks_assignment() {
        let w = Windowing::of(&agg(json!({"function": "count", "window": "5m", "slide": "30s"})))
            .unwrap();
        let ws = w.windows(1_000_000);
        assert_eq!(ws.len(), 10);
        assert_eq!(ws[0], (720_000, 1_020_000));
        assert_eq!(ws[9], (990_000, 1_290_000));
        assert!(ws.iter().all(|(s, e)| *s <= 1_000_000 && 1_000_000 < *e));
        // The tiles of the last window are the slides it covers.
        let tiles: Vec<i64> = w.tiles_ending(1_290_000).collect();
        assert_eq!(tiles.len(), 10);
        assert_eq!((tiles[0], tiles[9]), (990_000, 1_260_000));
        // Negative times floor, they do not truncate.
        assert_eq!(w.tile(-1), -30_000);
        let tumbling = Windowing::of(&agg(json!({"function": "count", "window": "1m"}))).unwrap();
        assert_eq!(tumbling.windows(61_000), vec![(60_000, 120_000)]);
    }

    /// Merged tiles give what a brute-force pass over the window's events gives.
    #[test]
    fn merged_tiles_match_brute_force() {
        let w = Windowing { window: 300_000, slide: 30_000 };
        // A fixed pseudo-random stream: (time, value or missing).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let events: Vec<(i64, Option<f64>)> = (0..2_000)
            .map(|_| {
                let t = (next() % 3_600_000) as i64;
                let v = (next() % 10 != 0).then(|| (next() % 10_000) as f64 / 100.0 - 20.0);
                (t, v)
            })
            .collect();
        let mut tiles = std::collections::BTreeMap::<i64, Partial>::new();
        for (t, v) in &events {
            tiles.entry(w.tile(*t)).or_default().add(*v);
        }
        let aggs = [
            agg(json!({"function": "count", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "count", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "sum", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "mean", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "min", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "max", "window": "5m", "slide": "30s"})),
            agg(json!({"column": "v", "function": "stddev", "window": "5m", "slide": "30s"})),
        ];
        for end in (300_000..3_900_000).step_by(30_000 * 7) {
            let mut merged = Partial::default();
            for t in w.tiles_ending(end) {
                if let Some(p) = tiles.get(&t) {
                    merged.merge(p);
                }
            }
            let inside: Vec<Option<f64>> = events
                .iter()
                .filter(|(t, _)| (end - 300_000..end).contains(t))
                .map(|(_, v)| *v)
                .collect();
            let nums: Vec<f64> = inside.iter().flatten().copied().collect();
            let n = nums.len() as f64;
            let mean = nums.iter().sum::<f64>() / n;
            let sd = (nums.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let expect = [
                inside.len() as f64,
                n,
                nums.iter().sum(),
                mean,
                nums.iter().copied().fold(f64::INFINITY, f64::min),
                nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                sd,
            ];
            for (a, e) in aggs.iter().zip(expect) {
                let got = merged.value(a).as_f64().unwrap();
                assert!(
                    (got - e).abs() < 1e-6 * e.abs().max(1.0),
                    "{:?} ending {end}: {got} vs {e}",
                    a.function
                );
            }
        }
    }

    #[test]
    fn empty_windows_have_the_documented_values() {
        let p = Partial::default();
        let v = |f: &str| p.value(&agg(json!({"column": "v", "function": f, "window": "1m"})));
        assert_eq!(
            (v("count"), v("sum"), v("mean"), v("min"), v("stddev")),
            (json!(0), json!(0.0), Value::Null, Value::Null, Value::Null)
        );
    }
}
