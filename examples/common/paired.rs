//! Deciding a throughput goal on a noisy machine: many short turns of two clients back to
//! back, and a confidence interval for the median of their ratios.
//!
//! Why: `overhead_report`'s rounds run every client for every op and concurrency, so the two
//! batches a ratio compares are seconds apart and the machine's drift (etcd's fsyncs and
//! compactions, other processes on two cores) moves single rounds by ±5–10 %. Seven such
//! ratios cannot tell 0.99 from 1.01. Here the two clients take turns of a fraction of a
//! second each, in alternating order (x then base, base then x, ...), so drift hits both alike;
//! the ratio of one pair is taken from the two turns next to each other, and the median of many
//! pairs comes with a distribution-free 95 % interval (order statistics of the binomial
//! distribution: no assumption about how the noise is shaped). A goal is *met* when the whole
//! interval is at or above it, *missed* when the whole interval is below it, and *undecided*
//! otherwise: the difference is smaller than this machine can measure in that many pairs.

use serde::Serialize;

use super::clients::{Client, Op};
use super::load::batch;

/// The median of many paired throughput ratios with its 95 % interval.
#[derive(Clone, Debug, Serialize)]
pub struct PairedRatio {
    /// Pairs measured.
    pub pairs: usize,
    /// Median of throughput(x) / throughput(base) over the pairs.
    pub median: f64,
    /// Lower end of the 95 % interval of the median.
    pub low: f64,
    /// Upper end of the 95 % interval of the median.
    pub high: f64,
    /// Requests that failed in the turns of either client.
    pub errors: u64,
}

/// How a [`PairedRatio`] stands against a goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole interval is at or above the goal.
    Met,
    /// The whole interval is below the goal.
    Missed,
    /// The goal lies inside the interval.
    Undecided,
}

impl Verdict {
    /// For printing.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Undecided => "undecided",
        }
    }
}

impl PairedRatio {
    /// Median and interval of `ratios` (at least one).
    pub fn of(ratios: &[f64], errors: u64) -> Self {
        let mut v = ratios.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = super::stats::median_of_sorted(&v);
        let (low, high) = match median_interval(n) {
            Some((lo, hi)) => (v[lo], v[hi]),
            None => (f64::NEG_INFINITY, f64::INFINITY),
        };
        Self {
            pairs: n,
            median,
            low,
            high,
            errors,
        }
    }

    /// Where the ratio stands against `goal`.
    pub fn verdict(&self, goal: f64) -> Verdict {
        if self.low >= goal {
            Verdict::Met
        } else if self.high < goal {
            Verdict::Missed
        } else {
            Verdict::Undecided
        }
    }
}

/// Indices (0-based, into the sorted sample) of a ≥ 95 % interval for the median of `n`
/// samples: the `k`-th smallest and the `k`-th largest (1-based) for the largest `k` with
/// P(Binomial(n, ½) ≤ k − 1) ≤ 2.5 %. `None` when `n` is too small for any such interval
/// (fewer than 6 samples).
pub fn median_interval(n: usize) -> Option<(usize, usize)> {
    if n == 0 {
        return None;
    }
    // P(B = i) in log space (no underflow for large n), summed until it passes 2.5 %.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut cdf = 0.0f64; // P(B <= i - 1) before adding term i
    let mut k = 0usize; // terms summed: P(B <= k - 1) <= 2.5 %
    for i in 0..n {
        let p = (ln_choose + ln_half_n).exp();
        if cdf + p > 0.025 {
            break;
        }
        cdf += p;
        k = i + 1;
        ln_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    match k {
        0 => None,
        k => Some((k - 1, n - k)),
    }
}

/// Runs `pairs` pairs of turns of `x` and `base`, `requests` requests of `op` each with
/// `in_flight` outstanding, alternating which goes first; returns throughput(x) /
/// throughput(base) per pair and the failed requests of both.
pub async fn paired_ratios(
    x: &Client,
    base: &Client,
    op: Op,
    pairs: usize,
    requests: u64,
    in_flight: usize,
) -> (Vec<f64>, u64) {
    let mut ratios = Vec::with_capacity(pairs);
    let mut errors = 0;
    for i in 0..pairs {
        let (tx, tb) = if i % 2 == 0 {
            let tx = batch(x, op, requests, in_flight, None).await;
            (tx, batch(base, op, requests, in_flight, None).await)
        } else {
            let tb = batch(base, op, requests, in_flight, None).await;
            (batch(x, op, requests, in_flight, None).await, tb)
        };
        errors += tx.errors + tb.errors;
        // Same number of requests in both turns: the throughput ratio is the time ratio.
        ratios.push(tb.elapsed.as_secs_f64() / tx.elapsed.as_secs_f64());
    }
    (ratios, errors)
}

#[cfg(test)]
mod tests {
    // Items are named by path, not imported: the criterion bench includes this module too and
    // builds it under `cfg(test)` without a test harness, where such an import is unused.

    /// The sign-test interval for the median, checked against exact binomial sums worked
    /// out by hand: n = 6 gives the extremes (96.9 %), n = 40 the 14th and 27th values
    /// (96.2 %), n = 100 the 40th and 61st (96.5 %), 1-based.
    #[test]
    fn interval_indices_match_the_binomial_table() {
        assert_eq!(super::median_interval(5), None);
        assert_eq!(super::median_interval(6), Some((0, 5)));
        assert_eq!(super::median_interval(40), Some((13, 26)));
        assert_eq!(super::median_interval(100), Some((39, 60)));
        // Large n does not underflow.
        let (lo, hi) = super::median_interval(5000).expect("interval");
        assert!(lo > 2400 && hi < 2600 && lo + hi == 4999, "{lo} {hi}");
    }

    #[test]
    fn verdicts() {
        use super::Verdict::{Met, Missed, Undecided};
        let r = super::PairedRatio::of(&[0.98, 0.99, 1.0, 1.01, 1.02, 1.03, 1.04], 0);
        assert_eq!(r.median, 1.01);
        assert_eq!(r.verdict(0.97), Met);
        assert_eq!(r.verdict(1.00), Undecided);
        assert_eq!(r.verdict(1.05), Missed);
    }
}
