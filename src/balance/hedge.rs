//! When to hedge a read: an adaptive delay from the members' own recent latency.
//!
//! Why not tower's `hedge::Hedge`: it re-sends a request to the *same* inner service, so over
//! a balancer the copy may land on the very member that is slow, and it keys its percentile on
//! a rotating histogram per service. Here the copy must go to another member, and the same
//! loop also retries and waits out elections, so hedging lives in the balancer's dispatch
//! (`unary/`) and this module only answers "how long is too long". The estimate is TCP's
//! retransmission timer (Jacobson/Karels: smoothed latency plus four mean deviations), which
//! tracks a high percentile of a unimodal latency distribution in two words of state, updated
//! lock-free on every answer. It is bounded below by `hedge.min_delay`, so a fast cluster is
//! not flooded with copies, and above by `hedge.max_delay`, so a hung member costs a read at
//! most that long. A hedge that loses to the copy it was meant to outrun doubles the delay
//! (up to 32 times), one that wins halves it back: when every member is slow at once (a
//! stalled disk, a paused cluster, a client short of CPU) a second copy only adds load, and
//! the retry budget should not be spent on it; when one member is slow, hedges win and the
//! delay stays at the estimate.
//!
//! One estimate per kind of read ([`Hedging`]): a `Status` or a lease read answers from memory
//! in well under a millisecond where a `Range` of a hundred keys may take several, so one
//! shared estimate would let the slower kind set the faster kinds' delay (hedging them late)
//! or the faster kind set the slower kind's (hedging them all, at the cost of the retry
//! budget).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::HedgeConfig;
use crate::etcd::Hedging;

/// One [`HedgeDelay`] per kind of hedged read.
#[derive(Debug)]
pub(crate) struct HedgeDelays([HedgeDelay; Hedging::HEDGED.len()]);

impl HedgeDelays {
    pub(crate) fn new(config: &HedgeConfig) -> Self {
        Self(Hedging::HEDGED.map(|_| HedgeDelay::new(config)))
    }

    /// The estimate for reads of kind `hedging`; `None` for those never hedged.
    pub(crate) fn of(&self, hedging: Hedging) -> Option<&HedgeDelay> {
        let i = Hedging::HEDGED.iter().position(|h| *h == hedging)?;
        self.0.get(i)
    }
}

/// Smoothed latency and deviation of successful reads, across members.
#[derive(Debug)]
pub(crate) struct HedgeDelay {
    /// Smoothed latency, nanoseconds (0 before the first sample).
    srtt: AtomicU64,
    /// Mean deviation, nanoseconds.
    rttvar: AtomicU64,
    min: Duration,
    max: Duration,
    /// The delay is doubled this many times (0..=[`MAX_BACKOFF`]): once more for each hedge
    /// that lost to the copy it was meant to outrun, once less for each that won.
    backoff: AtomicU32,
}

/// Doublings of the hedging delay at most (32 times the estimate, within `hedge.max_delay`).
const MAX_BACKOFF: u32 = 5;

impl HedgeDelay {
    pub(crate) fn new(config: &HedgeConfig) -> Self {
        Self {
            srtt: AtomicU64::new(0),
            rttvar: AtomicU64::new(0),
            min: config.min_delay,
            max: config.max_delay,
            backoff: AtomicU32::new(0),
        }
    }

    /// Takes the latency of one answered read. Concurrent updates may overwrite each other;
    /// a lost sample does not matter to an average.
    pub(crate) fn observe(&self, rtt: Duration) {
        let sample = rtt.as_nanos().min(u128::from(u64::MAX)) as u64;
        let srtt = self.srtt.load(Ordering::Relaxed);
        if srtt == 0 {
            self.srtt.store(sample.max(1), Ordering::Relaxed);
            self.rttvar.store(sample / 2, Ordering::Relaxed);
            return;
        }
        let rttvar = self.rttvar.load(Ordering::Relaxed);
        let err = sample.abs_diff(srtt);
        // rttvar += (|err| - rttvar) / 4; srtt += (sample - srtt) / 8
        let rttvar = (rttvar * 3 + err) / 4;
        let srtt = (srtt * 7 + sample) / 8;
        self.rttvar.store(rttvar, Ordering::Relaxed);
        self.srtt.store(srtt.max(1), Ordering::Relaxed);
    }

    /// A hedged read was answered first by the copy sent before the hedge: the hedge was
    /// load for nothing, as it is whenever every member is slow at once (a stalled disk, a
    /// paused cluster, a client short of CPU). Hedges of this kind wait twice as long.
    pub(crate) fn hedge_lost(&self) {
        let _ = self
            .backoff
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < MAX_BACKOFF).then_some(b + 1)
            });
    }

    /// A hedge answered first: the member the read went to was slower than a peer, which is
    /// what hedging is for. Hedges of this kind wait half as long (down to the estimate).
    pub(crate) fn hedge_won(&self) {
        let _ = self
            .backoff
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
    }

    /// How long a read may go unanswered before it is also sent to another member.
    pub(crate) fn delay(&self) -> Duration {
        let srtt = self.srtt.load(Ordering::Relaxed);
        let rttvar = self.rttvar.load(Ordering::Relaxed);
        let backoff = self.backoff.load(Ordering::Relaxed).min(MAX_BACKOFF);
        Duration::from_nanos(srtt.saturating_add(rttvar.saturating_mul(4)))
            .clamp(self.min, self.max)
            .saturating_mul(1 << backoff)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay() -> HedgeDelay {
        HedgeDelay::new(&HedgeConfig {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
            ..HedgeConfig::default()
        })
    }

    #[test]
    fn floor_before_any_sample_and_on_a_fast_cluster() {
        let d = delay();
        assert_eq!(d.delay(), Duration::from_millis(10));
        for _ in 0..100 {
            d.observe(Duration::from_micros(300));
        }
        assert_eq!(d.delay(), Duration::from_millis(10));
    }

    #[test]
    fn follows_a_slower_cluster_and_its_jitter() {
        let d = delay();
        for i in 0..200 {
            d.observe(Duration::from_millis(if i % 2 == 0 { 20 } else { 40 }));
        }
        let got = d.delay();
        // Mean 30 ms, mean deviation 10 ms: about 30 + 4 * 10.
        assert!(
            got > Duration::from_millis(55) && got < Duration::from_millis(85),
            "{got:?}"
        );
    }

    /// A slow kind of read does not move the delay of another.
    #[test]
    fn each_kind_has_its_own_estimate() {
        let config = HedgeConfig::default();
        let delays = HedgeDelays::new(&config);
        assert!(delays.of(Hedging::Never).is_none());
        let range = delays.of(Hedging::Range).expect("hedged");
        for _ in 0..50 {
            range.observe(Duration::from_millis(300));
        }
        assert!(range.delay() > Duration::from_millis(300));
        for kind in [Hedging::Lease, Hedging::Cluster, Hedging::Other] {
            assert_eq!(delays.of(kind).expect("hedged").delay(), config.min_delay);
        }
    }

    /// Hedges that lose push the delay up (a cluster slow everywhere gains nothing from
    /// them); hedges that win bring it back.
    #[test]
    fn lost_hedges_back_off_and_won_ones_recover() {
        let d = delay();
        assert_eq!(d.delay(), Duration::from_millis(10));
        d.hedge_lost();
        d.hedge_lost();
        assert_eq!(d.delay(), Duration::from_millis(40));
        for _ in 0..10 {
            d.hedge_lost();
        }
        assert_eq!(d.delay(), Duration::from_millis(320), "at most 32 times");
        d.hedge_won();
        assert_eq!(d.delay(), Duration::from_millis(160));
        for _ in 0..10 {
            d.hedge_won();
        }
        assert_eq!(d.delay(), Duration::from_millis(10));
    }

    #[test]
    fn capped() {
        let d = delay();
        for _ in 0..50 {
            d.observe(Duration::from_secs(3));
        }
        assert_eq!(d.delay(), Duration::from_millis(500));
    }
}
