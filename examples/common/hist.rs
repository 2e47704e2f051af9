//! Latency histograms (nanoseconds, hdrhistogram) and their summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in nanoseconds, resized as needed.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Latency {
    /// Three significant figures: enough to tell medians apart by well under a microsecond.
    pub fn precise() -> Self {
        Self(Histogram::new(3).expect("histogram"))
    }

    /// Two significant figures: cheap enough for one histogram per second per worker.
    pub fn coarse() -> Self {
        Self(Histogram::new(2).expect("histogram"))
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        // `record` grows the histogram; `saturating_record` would clamp to its current top.
        if self.0.record(ns).is_err() {
            self.0.saturating_record(ns);
        }
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("histograms auto-resize");
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1e3
    }

    /// Median, p99, max and mean, in microseconds.
    pub fn summary(&self) -> Summary {
        Summary {
            samples: self.len(),
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            max_us: self.0.max() as f64 / 1e3,
            mean_us: self.0.mean() / 1e3,
        }
    }
}

/// What a report keeps of a histogram.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}
