//! One member's health: status, counters, ejections.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Counters, Ejection, Outcome, Source, Thresholds};

/// Whether a member is in rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// In rotation.
    Healthy,
    /// Out of rotation until probes (or, in panic mode, requests) show it has recovered.
    Unhealthy,
}

impl Status {
    /// `true` for [`Status::Healthy`].
    pub fn is_healthy(self) -> bool {
        self == Status::Healthy
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        })
    }
}

/// A status change and what caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Which check saw the deciding outcome.
    pub source: Source,
    /// The deciding outcome.
    pub outcome: Outcome,
    /// How many consecutive outcomes of that kind led to it.
    pub count: u8,
    /// For an ejection: how long the member stays out at least.
    pub ejected_for: Option<Duration>,
    /// Ejections in a row so far (not forgiven yet).
    pub ejections: u32,
}

/// The health of one member, driven by outcomes and the clock passed in.
#[derive(Clone, Debug)]
pub struct HealthState {
    status: Status,
    counters: Counters,
    totals: [u64; 5],
    ejections: u32,
    ejections_total: u64,
    ejected_until: Option<Instant>,
    since: Instant,
    last: Option<(Source, Outcome, Instant)>,
}

impl HealthState {
    /// A member that starts healthy, as lua-resty-healthcheck's targets do.
    pub fn new(now: Instant) -> Self {
        Self {
            status: Status::Healthy,
            counters: Counters::default(),
            totals: [0; 5],
            ejections: 0,
            ejections_total: 0,
            ejected_until: None,
            since: now,
            last: None,
        }
    }

    /// A member that starts out of rotation, pending admission: the first success (by the
    /// healthy thresholds) from `now` on puts it in. For members found by discovery, which must
    /// show they answer before they take requests.
    pub fn pending(now: Instant) -> Self {
        Self {
            status: Status::Unhealthy,
            ejected_until: Some(now),
            ..Self::new(now)
        }
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Consecutive-outcome counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Outcomes seen since the member was added, indexed like [`Outcome`]'s counters:
    /// successes, http_failures, tcp_failures, timeouts, hangs.
    pub fn totals(&self) -> [u64; 5] {
        self.totals
    }

    /// Consecutive ejections not yet forgiven.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// All ejections since the member was added.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total
    }

    /// While unhealthy: the earliest time a success may re-admit the member.
    pub fn ejected_until(&self) -> Option<Instant> {
        match self.status {
            Status::Healthy => None,
            Status::Unhealthy => self.ejected_until,
        }
    }

    /// When the status last changed.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The last outcome recorded, with its source and time.
    pub fn last(&self) -> Option<(Source, Outcome, Instant)> {
        self.last
    }

    /// Whether a passive success would change nothing but the totals: in rotation, with no
    /// failure counted since the last success. Such successes may be counted apart and folded
    /// in later with [`record_successes`](Self::record_successes).
    pub fn is_settled(&self) -> bool {
        let c = self.counters;
        self.status == Status::Healthy
            && c.http_failures == 0
            && c.tcp_failures == 0
            && c.timeouts == 0
            && c.hangs == 0
    }

    /// Records `n` passive successes, the last at `at`, counted apart while the state
    /// [`is_settled`](Self::is_settled): on a settled state, what `n` calls of
    /// [`record`](Self::record) with `Source::Passive` and `Outcome::Success` would have done
    /// (they never change its status). On a state no longer settled (a failure was recorded
    /// before these were folded in) only the totals and the last outcome take them: its counters
    /// stay as the failure left them, the cautious side, and nothing re-admits it.
    pub fn record_successes(&mut self, n: u64, at: Instant) {
        if n == 0 {
            return;
        }
        if self.is_settled() {
            self.counters.successes = self
                .counters
                .successes
                .saturating_add(u8::try_from(n).unwrap_or(u8::MAX));
        }
        self.totals[0] = self.totals[0].saturating_add(n);
        self.last = Some((Source::Passive, Outcome::Success, at));
    }

    /// Records one outcome and returns the status change it causes, if any.
    ///
    /// `unit` is a uniform sample in `[0, 1)` used for the ejection jitter; passing it in
    /// keeps this function deterministic.
    pub fn record(
        &mut self,
        source: Source,
        outcome: Outcome,
        now: Instant,
        thresholds: &Thresholds,
        ejection: &Ejection,
        unit: f64,
    ) -> Option<Transition> {
        let index = match outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::TcpFailure => 2,
            Outcome::Timeout => 3,
            Outcome::Hang => 4,
        };
        self.totals[index] = self.totals[index].saturating_add(1);
        self.last = Some((source, outcome, now));
        let count = self.counters.count(outcome);
        if !thresholds.reached(outcome, count) {
            return None;
        }
        match (self.status, outcome) {
            (Status::Healthy, o) if o.is_failure() => {
                if now.saturating_duration_since(self.since) >= ejection.forgiveness() {
                    self.ejections = 0;
                }
                self.ejections = self.ejections.saturating_add(1);
                self.ejections_total = self.ejections_total.saturating_add(1);
                let ejected_for = ejection.duration(self.ejections, unit);
                self.ejected_until = Some(now + ejected_for);
                Some(self.flip(
                    Status::Unhealthy,
                    source,
                    outcome,
                    count,
                    now,
                    Some(ejected_for),
                ))
            }
            (Status::Unhealthy, Outcome::Success) => {
                if self.ejected_until.is_some_and(|until| now < until) {
                    return None;
                }
                self.ejected_until = None;
                Some(self.flip(Status::Healthy, source, outcome, count, now, None))
            }
            _ => None,
        }
    }

    fn flip(
        &mut self,
        to: Status,
        source: Source,
        outcome: Outcome,
        count: u8,
        now: Instant,
        ejected_for: Option<Duration>,
    ) -> Transition {
        let from = self.status;
        self.status = to;
        self.since = now;
        self.counters.reset();
        Transition {
            from,
            to,
            source,
            outcome,
            count,
            ejected_for,
            ejections: self.ejections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EjectionConfig;
    use proptest::prelude::*;

    fn thresholds(s: u8, f: u8, t: u8, to: u8) -> Thresholds {
        Thresholds {
            successes: s,
            http_failures: f,
            tcp_failures: t,
            timeouts: to,
            hangs: to,
        }
    }

    fn ejection(base_ms: u64, max_ms: u64) -> Ejection {
        Ejection::new(&EjectionConfig {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            jitter: 0.0,
        })
    }

    #[test]
    fn ejects_on_threshold_and_readmits_after_ejection_time() {
        let t0 = Instant::now();
        let th = thresholds(2, 3, 1, 2);
        let ej = ejection(1000, 10_000);
        let mut s = HealthState::new(t0);
        assert_eq!(
            s.record(Source::Passive, Outcome::Timeout, t0, &th, &ej, 0.0),
            None
        );
        let tr = s
            .record(Source::Passive, Outcome::Timeout, t0, &th, &ej, 0.0)
            .expect("second timeout ejects");
        assert_eq!(
            (tr.from, tr.to, tr.count),
            (Status::Healthy, Status::Unhealthy, 2)
        );
        assert_eq!(tr.ejected_for, Some(Duration::from_secs(1)));
        assert_eq!(s.counters(), Counters::default());
        // Successes inside the ejection time do not re-admit.
        let early = t0 + Duration::from_millis(500);
        assert_eq!(
            s.record(Source::Active, Outcome::Success, early, &th, &ej, 0.0),
            None
        );
        assert_eq!(
            s.record(Source::Active, Outcome::Success, early, &th, &ej, 0.0),
            None
        );
        assert_eq!(s.status(), Status::Unhealthy);
        let later = t0 + Duration::from_millis(1000);
        let tr = s
            .record(Source::Active, Outcome::Success, later, &th, &ej, 0.0)
            .expect("success after the ejection time re-admits");
        assert_eq!(tr.to, Status::Healthy);
        assert_eq!(s.ejected_until(), None);
        assert_eq!(s.totals(), [3, 0, 0, 2, 0]);
    }

    proptest! {
        /// Successes counted apart and folded in with `record_successes` leave a settled state
        /// exactly as one `record` per success would (some after earlier successes, so the
        /// success streak saturates too).
        #[test]
        fn folded_successes_equal_recorded_ones(before in 0u64..300, n in 0u64..600) {
            let t0 = Instant::now();
            let (th, ej) = (thresholds(2, 3, 1, 2), ejection(1000, 10_000));
            let mut one_by_one = HealthState::new(t0);
            for _ in 0..before {
                one_by_one.record(Source::Active, Outcome::Success, t0, &th, &ej, 0.0);
            }
            prop_assert!(one_by_one.is_settled());
            let mut folded = one_by_one.clone();
            let at = t0 + Duration::from_millis(7);
            for _ in 0..n {
                prop_assert_eq!(
                    one_by_one.record(Source::Passive, Outcome::Success, at, &th, &ej, 0.0),
                    None
                );
            }
            folded.record_successes(n, at);
            prop_assert_eq!(folded.status(), one_by_one.status());
            prop_assert_eq!(folded.counters(), one_by_one.counters());
            prop_assert_eq!(folded.totals(), one_by_one.totals());
            prop_assert_eq!(folded.last(), one_by_one.last());
            prop_assert!(folded.is_settled());
        }
    }

    /// A failure counted, or the member out of rotation, unsettles the state: its next success
    /// must go through `record` (which resets the failures, or may re-admit it).
    #[test]
    fn a_counted_failure_or_an_ejection_unsettles() {
        let t0 = Instant::now();
        let (th, ej) = (thresholds(2, 3, 1, 2), ejection(1000, 10_000));
        let mut s = HealthState::new(t0);
        assert!(s.is_settled());
        s.record(Source::Passive, Outcome::Timeout, t0, &th, &ej, 0.0);
        assert!(!s.is_settled(), "a timeout counted");
        s.record(Source::Passive, Outcome::Success, t0, &th, &ej, 0.0);
        assert!(s.is_settled(), "the success reset it");
        s.record(Source::Passive, Outcome::TcpFailure, t0, &th, &ej, 0.0);
        assert_eq!(s.status(), Status::Unhealthy);
        assert!(!s.is_settled(), "ejected");
        // Successes counted before the ejection and folded in after it count in the totals
        // only: no step toward re-admission.
        let counters = s.counters();
        s.record_successes(5, t0);
        assert_eq!(s.counters(), counters);
        assert_eq!(s.totals()[0], 6);
        assert_eq!(s.status(), Status::Unhealthy);
    }

    #[test]
    fn totals_and_ejection_counts_saturate_at_their_max() {
        // Months of outcomes: every count at its maximum, then one more ejection.
        let t0 = Instant::now();
        let th = thresholds(1, 1, 1, 1);
        let ej = ejection(1000, 4000);
        let mut s = HealthState::new(t0);
        s.totals = [u64::MAX; 5];
        s.ejections = u32::MAX;
        s.ejections_total = u64::MAX;
        s.counters.timeouts = u8::MAX - 1;
        let tr = s
            .record(Source::Passive, Outcome::Timeout, t0, &th, &ej, 0.0)
            .expect("ejected");
        assert_eq!(s.totals(), [u64::MAX; 5]);
        assert_eq!((s.ejections(), tr.ejections), (u32::MAX, u32::MAX));
        assert_eq!(s.ejections_total(), u64::MAX);
        assert_eq!(tr.count, u8::MAX);
        assert_eq!(tr.ejected_for, Some(Duration::from_millis(4000)), "capped");
        // And it still comes back.
        let tr = s
            .record(
                Source::Active,
                Outcome::Success,
                t0 + Duration::from_secs(4),
                &th,
                &ej,
                0.0,
            )
            .expect("re-admitted");
        assert_eq!(tr.to, Status::Healthy);
        assert_eq!(s.totals(), [u64::MAX; 5]);
    }

    #[test]
    fn a_pending_member_is_admitted_by_its_first_success() {
        let t0 = Instant::now();
        let th = thresholds(1, 1, 1, 1);
        let ej = ejection(1000, 4000);
        let mut s = HealthState::pending(t0);
        assert_eq!(s.status(), Status::Unhealthy);
        assert_eq!(s.ejected_until(), Some(t0));
        assert_eq!(
            s.record(Source::Active, Outcome::TcpFailure, t0, &th, &ej, 0.0),
            None,
            "failures keep it out without an ejection"
        );
        let tr = s
            .record(Source::Active, Outcome::Success, t0, &th, &ej, 0.0)
            .expect("admitted");
        assert_eq!((tr.from, tr.to), (Status::Unhealthy, Status::Healthy));
        assert_eq!(s.ejections_total(), 0);
    }

    #[test]
    fn repeated_ejections_grow_and_are_forgiven() {
        let t0 = Instant::now();
        let th = thresholds(1, 1, 1, 1);
        let ej = ejection(1000, 4000);
        let mut s = HealthState::new(t0);
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let tr = s
                .record(Source::Passive, Outcome::TcpFailure, now, &th, &ej, 0.0)
                .unwrap();
            seen.push(tr.ejected_for.unwrap().as_millis());
            now += tr.ejected_for.unwrap();
            s.record(Source::Active, Outcome::Success, now, &th, &ej, 0.0)
                .unwrap();
        }
        assert_eq!(seen, vec![1000, 2000, 4000, 4000]);
        // Healthy for longer than `max`: the next ejection starts from `base` again.
        now += Duration::from_secs(5);
        let tr = s
            .record(Source::Passive, Outcome::Failure, now, &th, &ej, 0.0)
            .unwrap();
        assert_eq!(tr.ejected_for, Some(Duration::from_secs(1)));
        assert_eq!(s.ejections_total(), 5);
    }

    #[test]
    fn zero_thresholds_never_flip() {
        let t0 = Instant::now();
        let th = thresholds(0, 0, 0, 0);
        let ej = ejection(0, 0);
        let mut s = HealthState::new(t0);
        for o in [
            Outcome::Failure,
            Outcome::TcpFailure,
            Outcome::Timeout,
            Outcome::Hang,
        ] {
            for _ in 0..300 {
                assert_eq!(s.record(Source::Passive, o, t0, &th, &ej, 0.0), None);
            }
        }
        assert!(s.status().is_healthy());
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Success),
            Just(Outcome::Failure),
            Just(Outcome::TcpFailure),
            Just(Outcome::Timeout),
            Just(Outcome::Hang),
        ]
    }

    proptest! {
        /// Against a reference model: a member flips to unhealthy exactly when some failure
        /// kind has `threshold` consecutive occurrences (with no success in between), and back
        /// exactly after `successes` consecutive successes past the ejection time.
        #[test]
        fn matches_reference_model(
            th in (0u8..4, 0u8..4, 0u8..4, 0u8..4),
            steps in proptest::collection::vec((outcome(), 0u64..600), 1..200),
        ) {
            let th = thresholds(th.0, th.1, th.2, th.3);
            let ej = ejection(1000, 8000);
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = HealthState::new(t0);
            let mut healthy = true;
            let mut run = [0u32; 5];
            let mut until = t0;
            for (o, dt) in steps {
                now += Duration::from_millis(dt);
                let i = match o { Outcome::Success => 0, Outcome::Failure => 1, Outcome::TcpFailure => 2, Outcome::Timeout => 3, Outcome::Hang => 4 };
                if i == 0 { run[1] = 0; run[2] = 0; run[3] = 0; run[4] = 0; } else { run[0] = 0; }
                run[i] += 1;
                let limit = th.for_outcome(o) as u32;
                let tr = s.record(Source::Passive, o, now, &th, &ej, 0.0);
                let expect_flip = limit != 0 && run[i] >= limit && if healthy { i != 0 } else { i == 0 && now >= until };
                prop_assert_eq!(tr.is_some(), expect_flip);
                if let Some(tr) = tr {
                    prop_assert_eq!(tr.from.is_healthy(), healthy);
                    healthy = !healthy;
                    run = [0; 5];
                    if let Some(d) = tr.ejected_for { until = now + d; }
                    prop_assert!(tr.ejected_for.unwrap_or_default() <= Duration::from_secs(8));
                }
                prop_assert_eq!(s.status().is_healthy(), healthy);
            }
        }
    }
}
