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
//! A request's deposit takes no lock: it adds to one atomic counter of deposits not yet in the
//! window, folded into the window's newest second by whoever next takes its mutex (a deposit in
//! a second the window has not reached, a retry or hedge asking, a snapshot, the probe
//! scheduler showing the gauge). Every request of the process deposits, from every thread of
//! the runtime, so a mutex there was two atomic read-modify-writes per request and a point
//! where all requests queue; the rare users keep the mutex, so the slots still move together
//! and [`Window`] stays a pure state machine.

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

    /// `n` requests in the newest second (deposits made while it was the newest).
    fn credit(&mut self, n: u64) {
        self.newest().requests += n;
        self.requests += n;
    }

    /// Extra requests the window allows now: the ratio of its requests, or the floor.
    fn allowed(&self) -> f64 {
        self.allowed_with(0)
    }

    /// Extra requests the window allows after `more` requests.
    fn allowed_with(&self, more: u64) -> f64 {
        (self.ratio * (self.requests + more) as f64).max(self.floor)
    }

    /// Whole extra requests still allowed in `second`.
    pub(crate) fn remaining(&mut self, second: u64) -> u64 {
        self.advance(second);
        self.left_with(0)
    }

    /// Whole extra requests allowed after `more` requests in the newest second.
    fn left_with(&self, more: u64) -> u64 {
        let left = self.allowed_with(more) - self.extra as f64;
        if left >= 1.0 {
            left as u64
        } else {
            0
        }
    }

    /// How many more requests in the newest second take what is left past `left` (what is
    /// left now): `u64::MAX` if none would (a ratio of 0). Never more than that many; fewer
    /// only when floats leave it in doubt (asking early costs a look, asking late a wrong
    /// gauge).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn requests_until_more(&self, left: u64) -> u64 {
        // left_with(n) > left exactly when ratio * (requests + n) >= extra + left + 1: the
        // floor already counts in `left` (it is below that, or `left` would be larger).
        let target = (self.extra + left + 1) as f64 / self.ratio;
        if target.is_nan() || target >= 1e18 {
            return u64::MAX;
        }
        let mut n = (target.ceil() as u64).saturating_sub(self.requests).max(1);
        for _ in 0..4 {
            if n > 1 && self.left_with(n - 1) > left {
                n -= 1;
            }
        }
        if n > 1 && self.left_with(n - 1) > left {
            return 1;
        }
        for _ in 0..4 {
            if self.left_with(n) <= left {
                n += 1;
            }
        }
        n
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
    /// The newest second of `window`, as it last moved: a deposit in it (or before it) only
    /// counts itself in `pending`.
    head: AtomicU64,
    /// Deposits not yet in `window`, of its newest second: folded into it under its lock.
    /// (A deposit that read `head` just before the window moved on lands in a later second:
    /// it stays in the window a little longer.)
    pending: AtomicU64,
    /// With the `metrics` feature, the `pending` count at which a deposit takes the lock to
    /// show what is left: where its whole number next grows.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    step: AtomicU64,
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
            head: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            // The first deposit shows the gauge.
            step: AtomicU64::new(1),
            refused: AtomicU64::new(0),
            metrics: crate::metrics::Budget::new(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Locks the window, with every deposit made so far in it.
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let pending = self.pending.swap(0, Ordering::Relaxed);
        if pending > 0 {
            window.credit(pending);
        }
        window
    }

    /// After the window (locked) moved on to `second` or changed: tells deposits its newest
    /// second, and shows what is left in the gauge, with the deposits that change it next.
    fn settled(&self, window: &mut Window, second: u64) {
        #[cfg(feature = "metrics")]
        {
            let left = window.remaining(second);
            self.metrics.left(left);
            self.step
                .store(window.requests_until_more(left), Ordering::Relaxed);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = second;
        self.head.store(window.head, Ordering::Relaxed);
    }

    /// Counts one request of the application, sent `now`.
    ///
    /// Lock-free while the window's newest second is `now`'s (or later) and, with the
    /// `metrics` feature, what is left keeps its whole number (see `metrics::Budget` for why
    /// the gauge follows deposits).
    pub(crate) fn deposit(&self, now: Instant) {
        let second = self.second(now);
        if second <= self.head.load(Ordering::Relaxed) {
            let _pending = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
            #[cfg(feature = "metrics")]
            if _pending >= self.step.load(Ordering::Relaxed) {
                let mut window = self.window();
                self.settled(&mut window, second);
            }
            return;
        }
        let mut window = self.window();
        window.deposit(second);
        self.settled(&mut window, second);
    }

    /// Shows what is left `now` in the budget's gauge: the budget refills as old seconds
    /// leave its window, with no request to notice (the probe scheduler calls this when it
    /// wakes). Does nothing without the `metrics` feature.
    pub(crate) fn show(&self, now: Instant) {
        #[cfg(feature = "metrics")]
        {
            let second = self.second(now);
            let mut window = self.window();
            self.settled(&mut window, second);
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
            self.settled(&mut window, second);
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
        self.head.store(window.head, Ordering::Relaxed);
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

    /// Deposits from several threads at once, with retries asking beside them: every one is
    /// counted, none twice.
    #[test]
    fn deposits_from_many_threads_are_all_counted() {
        let config = RetryConfig {
            extra_ratio: 0.1,
            extra_min_per_second: 0,
            ..RetryConfig::default()
        };
        let start = Instant::now();
        let budget = RetryBudget::new(&config, start);
        let granted = std::thread::scope(|s| {
            let depositors: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..10_000 {
                            budget.deposit(start);
                        }
                    })
                })
                .collect();
            let withdrawer = s.spawn(|| {
                (0..1_000)
                    .filter(|_| budget.try_withdraw(start, Extra::Retry))
                    .count() as u64
            });
            for d in depositors {
                d.join().unwrap();
            }
            withdrawer.join().unwrap()
        });
        let s = budget.snapshot(start);
        assert_eq!((s.requests, s.extra), (40_000, granted));
        assert_eq!(s.remaining, 4_000 - granted);
        // A second later, from several threads again: the window moves on once.
        let later = start + Duration::from_secs(1);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        budget.deposit(later);
                    }
                });
            }
        });
        assert_eq!(budget.snapshot(later).requests, 80_000);
        assert_eq!(budget.snapshot(start + WINDOW).requests, 40_000);
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

        /// The deposits a budget lets pass before it shows the gauge again are exactly those
        /// that leave what is left unchanged (with the `metrics` feature, the gauge follows
        /// every deposit without a lock on the others).
        #[test]
        fn the_next_step_is_where_what_is_left_grows(
            ratio in 0.0f64..2.0,
            floor in 0u32..5,
            requests in 0u64..5_000,
            extra in 0u64..500,
        ) {
            let mut w = Window::new(ratio, floor);
            w.credit(requests);
            w.extra = extra;
            let left = w.remaining(0);
            let n = w.requests_until_more(left);
            if ratio == 0.0 {
                prop_assert_eq!(n, u64::MAX);
            } else {
                prop_assert!(n >= 1);
                prop_assert_eq!(w.left_with(n - 1), left);
                prop_assert!(w.left_with(n) > left, "{} {}", n, w.left_with(n));
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
