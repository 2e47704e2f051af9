//! The retry budget: how many extra requests (retries and hedges) the stack may add to what the
//! application sends.
//!
//! Why: each request on its own is retried until its deadline and hedged up to
//! `hedge.max_attempts` copies. When the whole cluster slows down (a compaction, a disk stall,
//! an overloaded leader), every client would then send two or three copies of every read; the
//! load triples, latency grows further, and the cluster never recovers (a metastable
//! collapse). A budget shared by every request through one health state caps the sum: retries
//! plus hedges may add at most `retry.extra_ratio` of the requests of the last
//! [`WINDOW`], or `retry.extra_min_per_second` per second of it, whichever is more (so a quiet
//! client can still retry). Hedges may spend only the first half of it: a hedge is
//! speculation, a retry after a failure is the request's only chance, and a burst of slow
//! reads must not leave nothing for the failed ones. Past it, a read is sent once, as a single
//! request would be: no hedge, and no retry after a failure that may have cost a member work.
//!
//! Retries after a failure that certainly never reached a member's handler (no connection
//! could be made, or etcd's `hasleader` check refused it before any handler ran) are not
//! drawn from the budget: they cost the members nothing, and they are already paced by the
//! round back-off (`retry.backoff`) and bounded by the deadline. That keeps a read alive
//! through a dead member or an election (both answer at once with such a refusal), as gRPC's
//! transparent retries do for streams the server never saw. An overloaded cluster's own
//! refusal ("too many requests") is drawn from the budget: re-sending it is the very load the
//! budget exists to bound.
//!
//! The design is Finagle's `RetryBudget` (a sliding window of deposits per request and
//! withdrawals per retry, plus a per-second floor), as tower 0.5 ships it
//! (`retry::budget::TpsBudget`), with two changes that are why this is not tower's type:
//! - hedges and retries share the budget, as gRPC's `retryThrottling` has them, but hedges
//!   stop at half of it (gRPC stops both there);
//! - the floor is a minimum, not an addition (as Envoy's `min_retry_concurrency`): with
//!   Finagle's sum, a client at 600 reads/s and a floor of 20/s would add 13.3 %, not the
//!   10 % configured, which is the very figure an operator sizes a cluster by;
//! - the clock is an argument ([`Window`] is pure, tested on made-up clocks), where
//!   `TpsBudget` reads `std::time::Instant::now()` itself, out of reach of tokio's paused
//!   clock; and the remaining budget can be read ([`RetryBudgetSnapshot`]), where tower's
//!   `Budget` trait only answers yes or no.
//!
//! gRPC's `retryThrottling` (a token bucket drained by *failures*) was not taken: it stops
//! retries when many requests fail, which is exactly when an election or a dead member needs
//! them, and lets a slow cluster be hedged without bound as long as nothing fails.
//!
//! One mutex, held for a few additions per request: the window's slots move together, and a
//! lock-free version would need the slot rotation to race with deposits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RetryConfig;

/// How far back the budget looks: requests and extra requests older than this no longer
/// count. Finagle's and tower's default.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// The window is kept in slots of one second each.
const SLOTS: usize = 10;

/// The share of the budget hedges may spend: the rest is kept for retries.
const HEDGE_SHARE: f64 = 0.5;

/// What an extra request is, which decides how much of the budget it may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extra {
    /// A second copy of a slow read: speculation, which may spend only the first half of the
    /// budget.
    Hedge,
    /// A request sent again after its attempt failed: its only chance, which may spend it all.
    Retry,
}

/// Requests and extra requests of one second.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    requests: u64,
    extra: u64,
}

/// What a withdrawal did to the budget's state, for the events of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// This withdrawal was the first refused since the budget was last available.
    Exhausted,
    /// This withdrawal was the first granted since the budget ran out.
    Available,
}

/// The sliding window of one budget: requests and extra requests per second over the last
/// [`WINDOW`]. Pure: every method takes the second (since the budget's epoch) it happens in.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    slots: [Slot; SLOTS],
    /// The second the newest slot holds.
    head: u64,
    /// Sums over the slots.
    requests: u64,
    extra: u64,
    ratio: f64,
    /// Extra requests allowed in the window whatever the traffic.
    floor: f64,
    /// The last withdrawal was refused.
    exhausted: bool,
}

impl Window {
    /// An empty window: `ratio` extra requests per request, at least `min_per_second` per
    /// second of the window.
    pub(crate) fn new(ratio: f64, min_per_second: u32) -> Self {
        Self {
            slots: [Slot::default(); SLOTS],
            head: 0,
            requests: 0,
            extra: 0,
            ratio: if ratio.is_finite() {
                ratio.max(0.0)
            } else {
                0.0
            },
            floor: f64::from(min_per_second) * WINDOW.as_secs_f64(),
            exhausted: false,
        }
    }

    /// Moves the window on to `second`, forgetting the seconds that fell out of it.
    fn advance(&mut self, second: u64) {
        if second <= self.head {
            return;
        }
        let gone = (second - self.head).min(SLOTS as u64);
        for s in 1..=gone {
            let slot = &mut self.slots[((self.head + s) % SLOTS as u64) as usize];
            self.requests -= slot.requests;
            self.extra -= slot.extra;
            *slot = Slot::default();
        }
        self.head = second;
    }

    fn newest(&mut self) -> &mut Slot {
        &mut self.slots[(self.head % SLOTS as u64) as usize]
    }

    /// One request from the application, in `second`.
    pub(crate) fn deposit(&mut self, second: u64) {
        self.advance(second);
        self.newest().requests += 1;
        self.requests += 1;
    }

    /// Extra requests the window allows now: the ratio of its requests, or the floor.
    fn allowed(&self) -> f64 {
        (self.ratio * self.requests as f64).max(self.floor)
    }

    /// Whole extra requests still allowed in `second`.
    pub(crate) fn remaining(&mut self, second: u64) -> u64 {
        self.advance(second);
        let left = self.allowed() - self.extra as f64;
        if left >= 1.0 {
            left as u64
        } else {
            0
        }
    }

    /// Takes one extra request of kind `extra` in `second`, if the budget allows it (a hedge
    /// only while at least half of it is left); and whether that changed the budget from
    /// available to exhausted (a retry refused) or back (a retry granted).
    pub(crate) fn try_withdraw(&mut self, second: u64, extra: Extra) -> (bool, Option<Change>) {
        self.advance(second);
        let share = match extra {
            Extra::Hedge => HEDGE_SHARE,
            Extra::Retry => 1.0,
        };
        let granted = (self.extra + 1) as f64 <= self.allowed() * share;
        if granted {
            self.newest().extra += 1;
            self.extra += 1;
        }
        let change = match (extra, granted, self.exhausted) {
            (Extra::Retry, false, false) => Some(Change::Exhausted),
            (Extra::Retry, true, true) => Some(Change::Available),
            _ => None,
        };
        if extra == Extra::Retry {
            self.exhausted = !granted;
        }
        (granted, change)
    }

    /// Requests and extra requests in the window.
    fn counts(&self) -> (u64, u64) {
        (self.requests, self.extra)
    }
}

/// How much of the retry budget is left, at the time of
/// [`HealthChecker::retry_budget`](crate::HealthChecker::retry_budget).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetSnapshot {
    /// Unary requests the application sent through the stack in the last 10 seconds.
    pub requests: u64,
    /// Retries and hedges drawn from the budget in the last 10 seconds (retries that cost the
    /// members nothing are not drawn: see the [`retry`](crate::config::RetryConfig) docs).
    pub extra: u64,
    /// Retries and hedges still allowed now; 0 while the budget is exhausted.
    pub remaining: u64,
    /// Retries and hedges the budget refused since the health state was built.
    pub refused: u64,
}

/// The retry budget of one health state, shared by every request through it.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    epoch: Instant,
    window: Mutex<Window>,
    refused: AtomicU64,
    /// Its series (`etcd_health.retry_budget.*`), kept current by [`deposit`](Self::deposit),
    /// [`try_withdraw`](Self::try_withdraw) and [`show`](Self::show).
    metrics: crate::metrics::Budget,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget by `config`, counting seconds from `epoch`.
    pub(crate) fn new(config: &RetryConfig, epoch: Instant) -> Self {
        Self {
            epoch,
            window: Mutex::new(Window::new(config.extra_ratio, config.extra_min_per_second)),
            refused: AtomicU64::new(0),
            metrics: crate::metrics::Budget::new(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request of the application, sent `now`.
    pub(crate) fn deposit(&self, now: Instant) {
        let second = self.second(now);
        let mut window = self.window();
        window.deposit(second);
        // The window has just moved on: what is left is a few operations away (see
        // `metrics::Budget` for why per request, and why that costs a comparison).
        #[cfg(feature = "metrics")]
        self.metrics.left(window.remaining(second));
    }

    /// Shows what is left `now` in the budget's gauge: the budget refills as old seconds
    /// leave its window, with no request to notice (the probe scheduler calls this when it
    /// wakes). Does nothing without the `metrics` feature.
    pub(crate) fn show(&self, now: Instant) {
        #[cfg(feature = "metrics")]
        {
            let second = self.second(now);
            let mut window = self.window();
            self.metrics.left(window.remaining(second));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = now;
    }

    /// Takes one retry or hedge `now`, if the budget allows it.
    pub(crate) fn try_withdraw(&self, now: Instant, kind: Extra) -> bool {
        let second = self.second(now);
        let (granted, change, (requests, extra)) = {
            let mut window = self.window();
            let (granted, change) = window.try_withdraw(second, kind);
            #[cfg(feature = "metrics")]
            self.metrics.left(window.remaining(second));
            (granted, change, window.counts())
        };
        if !granted {
            self.refused.fetch_add(1, Ordering::Relaxed);
            self.metrics.refused();
        }
        match change {
            Some(Change::Exhausted) => tracing::warn!(
                requests,
                extra,
                window = ?WINDOW,
                "retry budget exhausted: reads are sent once, without hedges or retries, until it refills"
            ),
            Some(Change::Available) => tracing::info!(
                requests,
                extra,
                "retry budget available again: slow reads are hedged and failed ones retried"
            ),
            None => {}
        }
        granted
    }

    /// How much is left `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> RetryBudgetSnapshot {
        let second = self.second(now);
        let mut window = self.window();
        let remaining = window.remaining(second);
        let (requests, extra) = window.counts();
        RetryBudgetSnapshot {
            requests,
            extra,
            remaining,
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_floor_serves_a_quiet_client() {
        let mut w = Window::new(0.1, 2);
        // 20 extra requests per window with no traffic at all.
        for i in 0..20 {
            assert!(w.try_withdraw(0, Extra::Retry).0, "{i}");
        }
        assert_eq!(
            w.try_withdraw(0, Extra::Retry),
            (false, Some(Change::Exhausted))
        );
        assert_eq!(w.try_withdraw(0, Extra::Retry), (false, None));
        // Ten seconds on, the first second's withdrawals have left the window.
        assert_eq!(w.remaining(9), 0);
        assert_eq!(
            w.try_withdraw(10, Extra::Retry),
            (true, Some(Change::Available))
        );
        assert_eq!(w.remaining(10), 19);
    }

    #[test]
    fn the_ratio_serves_a_busy_client_and_the_floor_is_not_added() {
        let mut w = Window::new(0.1, 10);
        for s in 0..10 {
            for _ in 0..1_000 {
                w.deposit(s);
            }
        }
        // 10 000 requests: 1 000 extra, not 1 000 + 100.
        assert_eq!(w.remaining(9), 1_000);
        let granted = (0..2_000)
            .filter(|_| w.try_withdraw(9, Extra::Retry).0)
            .count();
        assert_eq!(granted, 1_000);
    }

    /// Hedges stop at half the budget; the other half is kept for retries.
    #[test]
    fn hedges_leave_half_for_retries() {
        let mut w = Window::new(0.1, 0);
        for _ in 0..1_000 {
            w.deposit(0);
        }
        let hedges = (0..200)
            .filter(|_| w.try_withdraw(0, Extra::Hedge).0)
            .count();
        assert_eq!(hedges, 50);
        assert_eq!(w.remaining(0), 50);
        let retries = (0..200)
            .filter(|_| w.try_withdraw(0, Extra::Retry).0)
            .count();
        assert_eq!(retries, 50);
        assert!(!w.try_withdraw(0, Extra::Hedge).0);
    }

    #[test]
    fn a_gap_longer_than_the_window_forgets_everything() {
        let mut w = Window::new(0.5, 0);
        for _ in 0..100 {
            w.deposit(3);
        }
        assert_eq!(w.remaining(3), 50);
        assert_eq!(w.remaining(12), 50);
        assert_eq!(w.remaining(13), 0);
        assert_eq!(w.remaining(1_000_000), 0);
        assert_eq!(w.counts(), (0, 0));
    }

    #[test]
    fn zero_turns_every_charged_extra_request_off() {
        let mut w = Window::new(0.0, 0);
        for _ in 0..1_000 {
            w.deposit(0);
        }
        assert!(!w.try_withdraw(0, Extra::Retry).0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_budget_counts_refusals_and_reports_what_is_left() {
        let config = RetryConfig {
            extra_ratio: 0.25,
            extra_min_per_second: 0,
            ..RetryConfig::default()
        };
        let start = crate::timing::now();
        let budget = RetryBudget::new(&config, start);
        for _ in 0..8 {
            budget.deposit(start);
        }
        assert!(budget.try_withdraw(start, Extra::Retry));
        assert!(budget.try_withdraw(start, Extra::Retry));
        assert!(!budget.try_withdraw(start, Extra::Retry));
        let s = budget.snapshot(start + Duration::from_millis(500));
        assert_eq!(
            s,
            RetryBudgetSnapshot {
                requests: 8,
                extra: 2,
                remaining: 0,
                refused: 1
            }
        );
        let later = budget.snapshot(start + WINDOW);
        assert_eq!((later.requests, later.extra, later.refused), (0, 0, 1));
    }

    proptest! {
        /// Whatever the traffic and its timing, a grant never takes the extra requests of the
        /// window ending at it past the ratio of that window's requests or the floor,
        /// whichever is more. (Over a long run at steady traffic that is the ratio; a burst of
        /// requests may fund extra requests up to one window later.)
        #[test]
        fn never_grants_more_than_the_budget(
            ratio in 0.0f64..1.0,
            floor in 0u32..5,
            events in prop::collection::vec((0u64..3, 0u8..3), 1..2_000),
        ) {
            let mut w = Window::new(ratio, floor);
            let mut second = 0;
            let mut log: Vec<(u64, bool, bool)> = Vec::new();
            for (step, what) in events {
                second += step;
                if what == 0 {
                    w.deposit(second);
                    log.push((second, true, false));
                } else {
                    let kind = if what == 1 { Extra::Hedge } else { Extra::Retry };
                    let (granted, _) = w.try_withdraw(second, kind);
                    log.push((second, false, granted));
                }
            }
            // At every grant, the window ending then (what happened up to it in the last 10
            // seconds) holds no more extra requests than it allows.
            for (i, &(end, _, granted)) in log.iter().enumerate() {
                if !granted {
                    continue;
                }
                let in_window = log[..=i].iter().filter(|(s, _, _)| *s + SLOTS as u64 > end);
                let (mut requests, mut extra) = (0u64, 0u64);
                for &(_, req, granted) in in_window {
                    requests += u64::from(req);
                    extra += u64::from(granted);
                }
                let allowed = (ratio * requests as f64).max(f64::from(floor) * 10.0);
                prop_assert!(extra as f64 <= allowed + 1e-9, "{extra} > {allowed} at {end}");
            }
        }

        /// A withdrawal is refused only when the window's allowance is spent.
        #[test]
        fn refuses_only_when_spent(ratio in 0.0f64..1.0, requests in 0u64..500, floor in 0u32..3) {
            let mut w = Window::new(ratio, floor);
            for _ in 0..requests {
                w.deposit(0);
            }
            let allowed = (ratio * requests as f64).max(f64::from(floor) * 10.0).floor() as u64;
            let granted = (0..allowed + 10).filter(|_| w.try_withdraw(0, Extra::Retry).0).count() as u64;
            prop_assert_eq!(granted, allowed);
        }
    }
}
