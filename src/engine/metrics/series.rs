//! One measured quantity on the metrics thread: an HdrHistogram for
//! quantiles, plus exact Prometheus buckets, sum and count.
//!
//! The Prometheus buckets are counted from the exact sample, not read back
//! from the HdrHistogram, so `_bucket`, `_sum` and `_count` are exact; the
//! HdrHistogram (3 significant digits) gives p50/p99/p999/max.

use hdrhistogram::{CreationError, Histogram};

/// Upper bounds (inclusive) of the latency buckets, in nanoseconds:
/// 1 µs … 10 s in 1-2.5-5 steps.
pub const LATENCY_BOUNDS_NS: &[u64] = &[
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds of the batch-size buckets, in commands: powers of two.
pub const BATCH_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];

/// Largest latency the HdrHistogram tells apart (60 s); longer samples are
/// counted exactly in the buckets and the sum, and as 60 s in quantiles.
const LATENCY_HIGH_NS: u64 = 60_000_000_000;
/// Largest batch size the HdrHistogram tells apart.
const BATCH_HIGH: u64 = 1 << 24;
const SIGFIG: u8 = 3;

/// How a series' raw values become the exported unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Samples in nanoseconds, exported in seconds.
    Nanoseconds,
    /// Plain counts, exported as they are.
    Count,
}

impl Unit {
    /// A raw value in the exported unit.
    pub fn export(self, raw: f64) -> f64 {
        match self {
            Unit::Nanoseconds => raw / 1e9,
            Unit::Count => raw,
        }
    }
}

/// A histogram of one quantity since start, and optionally of the current
/// log interval.
#[derive(Debug, Clone)]
pub struct Series {
    pub unit: Unit,
    /// Bucket upper bounds, inclusive, in raw units.
    pub bounds: &'static [u64],
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: Vec<u64>,
    sum: u128,
    count: u64,
    since_start: Histogram<u64>,
    /// Reset at every summary log line.
    interval: Option<Histogram<u64>>,
}

/// Quantiles of a histogram, in raw units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        if h.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl Series {
    /// A latency series (nanoseconds in, seconds out).
    pub fn latency(with_interval: bool) -> Result<Series, CreationError> {
        Series::new(
            Unit::Nanoseconds,
            LATENCY_BOUNDS_NS,
            LATENCY_HIGH_NS,
            with_interval,
        )
    }

    /// A batch-size series (commands).
    pub fn batch_size() -> Result<Series, CreationError> {
        Series::new(Unit::Count, BATCH_BOUNDS, BATCH_HIGH, false)
    }

    fn new(
        unit: Unit,
        bounds: &'static [u64],
        high: u64,
        with_interval: bool,
    ) -> Result<Series, CreationError> {
        let h = Histogram::new_with_bounds(1, high, SIGFIG)?;
        Ok(Series {
            unit,
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum: 0,
            count: 0,
            interval: with_interval.then(|| h.clone()),
            since_start: h,
        })
    }

    /// Add one sample.
    #[inline]
    pub fn record(&mut self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        if let Some(n) = self.buckets.get_mut(i) {
            *n += 1;
        }
        self.sum += u128::from(value);
        self.count += 1;
        self.since_start.saturating_record(value);
        if let Some(h) = &mut self.interval {
            h.saturating_record(value);
        }
    }

    /// Samples since start.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of every sample since start, raw units.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Cumulative counts per bound (`le`), the last one being `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets.iter().scan(0u64, |acc, &n| {
            *acc += n;
            Some(*acc)
        })
    }

    /// Quantiles since start.
    pub fn since_start(&self) -> Quantiles {
        Quantiles::of(&self.since_start)
    }

    /// Quantiles of the current interval, and start a new one.
    pub fn take_interval(&mut self) -> Quantiles {
        match &mut self.interval {
            Some(h) => {
                let q = Quantiles::of(h);
                h.reset();
                q
            }
            None => Quantiles::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_at_their_bounds() {
        let mut s = Series::latency(false).unwrap();
        for v in [
            0,
            1_000,
            1_001,
            2_500,
            10_000_000_000,
            10_000_000_001,
            90_000_000_000,
        ] {
            s.record(v);
        }
        let c: Vec<u64> = s.cumulative().collect();
        assert_eq!(c.len(), LATENCY_BOUNDS_NS.len() + 1);
        assert_eq!(c[0], 2, "0 and 1000 ns are <= 1 µs");
        assert_eq!(c[1], 4, "1001 and 2500 ns are <= 2.5 µs");
        assert_eq!(c[LATENCY_BOUNDS_NS.len() - 1], 5, "<= 10 s");
        assert_eq!(*c.last().unwrap(), 7, "+Inf holds everything");
        assert_eq!(s.count(), 7);
        assert_eq!(
            s.sum(),
            1_000 + 1_001 + 2_500 + 10_000_000_000 + 10_000_000_001 + 90_000_000_000
        );
    }

    #[test]
    fn quantiles_come_from_the_hdrhistogram() {
        let mut s = Series::latency(true).unwrap();
        for v in 1..=1000u64 {
            s.record(v * 1000);
        }
        let q = s.since_start();
        assert_eq!(q.count, 1000);
        // Three significant digits: within 0.1 % of the true value.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(q.p50, 500_000), "{q:?}");
        assert!(near(q.p99, 990_000), "{q:?}");
        assert!(near(q.p999, 999_000), "{q:?}");
        assert!(near(q.max, 1_000_000), "{q:?}");
        assert!(q.p50 <= q.p99 && q.p99 <= q.p999 && q.p999 <= q.max);
    }

    #[test]
    fn the_interval_resets_but_the_total_does_not() {
        let mut s = Series::latency(true).unwrap();
        s.record(5_000);
        s.record(7_000);
        assert_eq!(s.take_interval().count, 2);
        assert_eq!(s.take_interval(), Quantiles::default());
        s.record(1_000_000);
        let q = s.take_interval();
        assert_eq!(q.count, 1);
        assert!(q.max >= 1_000_000 && q.max < 1_001_000, "{q:?}");
        assert_eq!(s.since_start().count, 3);
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn a_series_without_interval_reports_nothing_for_it() {
        let mut s = Series::batch_size().unwrap();
        s.record(3);
        assert_eq!(s.take_interval(), Quantiles::default());
        let c: Vec<u64> = s.cumulative().collect();
        assert_eq!(&c[..3], &[0, 0, 1], "3 lands in le=4");
    }

    #[test]
    fn samples_beyond_the_histogram_range_saturate() {
        let mut s = Series::batch_size().unwrap();
        s.record(u64::MAX);
        assert_eq!(s.count(), 1);
        assert_eq!(s.sum(), u128::from(u64::MAX));
        assert_eq!(s.since_start().count, 1);
        assert_eq!(*s.cumulative().collect::<Vec<_>>().last().unwrap(), 1);
    }
}
