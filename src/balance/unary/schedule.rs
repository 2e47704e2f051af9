//! When one unary request sends its next attempt and its next hedge, and which failures may be
//! sent again at all.
//!
//! The rules are etcd's own Go client's (DESIGN.md, section 3): a read may go to another
//! member after any member-level failure; a write only when it is certain the first member
//! never processed it: no connection, a stream HTTP/2 says the member never processed
//! (`REFUSED_STREAM`, above its `GOAWAY`: gRPC's transparent retries, see `crate::grpc::unsent`),
//! or etcd's refusal before its handler ran. A write that timed out, was reset for another
//! reason or lost its connection mid-flight is never re-sent: it may have been applied, and
//! applying it twice could break the caller's data.
//!
//! Why pure: the timing (the first attempt at once, a retry at once on a fresh member, a
//! round's back-off, hedges spaced by the members' usual latency, nothing at or past the
//! caller's deadline) is easy to get subtly wrong inside an async loop. [`Schedule`] takes the
//! clock and the facts of the moment as arguments and is tested on made-up clocks; the driver
//! (`driver.rs`) only sleeps until [`Schedule::wake`] and reports back.

use std::time::Duration;

use tokio::time::Instant;

use crate::balance::attempt::earliest;
use crate::config::{HedgeConfig, RetryConfig};
use crate::etcd::Class;

/// Whether a failed attempt may be sent again: a read always, a write only when it certainly
/// never ran. A write for which this is `false` fails as *outcome unknown*.
pub(crate) fn may_resend(class: Class, maybe_processed: bool) -> bool {
    class == Class::Read || !maybe_processed
}

/// Whether sending a request again after a failed attempt costs the members nothing, so the
/// retry is not drawn from the retry budget (`crate::budget`): the attempt certainly never
/// reached a handler (no connection could be made, HTTP/2 says the member refused or never
/// read the stream, or etcd's `hasleader` check refused it).
/// A refusal for overload ("too many requests") is not free: re-sending it is the load the
/// budget bounds.
pub(crate) fn resend_is_free(maybe_processed: bool, message: &str) -> bool {
    !maybe_processed && !crate::etcd::is_cluster_refusal(message)
}

/// The back-off before attempt `next` (2-based): `backoff * 2^(next-2)`, capped, with up to
/// half of it taken off by `unit` (a uniform sample in `[0, 1)`) so retries of many callers
/// spread out.
pub(crate) fn backoff(config: &RetryConfig, next: u8, unit: f64) -> Duration {
    let exp = u32::from(next.saturating_sub(2)).min(16);
    let full = config
        .backoff
        .saturating_mul(1 << exp)
        .min(config.max_backoff);
    crate::timing::shorten(full, crate::timing::BACKOFF, unit)
}

/// A uniform sample in `[0, 1)` for a back-off's jitter ([`super::plan::Plan::round_backoff`]).
pub(crate) fn jitter() -> f64 {
    crate::timing::unit()
}

/// Copies of a request of `class` in flight at once at most: `hedge.max_attempts` for a read,
/// 1 for a write (never hedged).
fn copies(class: Class, hedge: &HedgeConfig) -> u8 {
    match class {
        Class::Read => hedge.max_attempts.max(1),
        Class::Write => 1,
    }
}

/// What a request does after a failed attempt (see [`Schedule::after_failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing is in flight and nothing more will be sent: the caller gets this failure.
    GiveUp,
    /// Nothing more will be sent, but copies are still in flight: keep this failure for the
    /// caller in case they fail too.
    AwaitOthers,
    /// The next attempt is already set (by an earlier failure or a health change): keep it.
    AlreadySet,
    /// Retry at this time (now), on a member not tried in this round.
    RetryAt(Instant),
    /// The round is over: retry at this time, or as soon as the health state or the leader
    /// changes.
    BackOff(Instant),
}

/// The facts of the moment an attempt failed (see [`Schedule::after_failure`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failed {
    /// The request's class.
    pub(crate) class: Class,
    /// Whether the member may have processed the request.
    pub(crate) maybe_processed: bool,
    /// Attempts started so far, hedges included.
    pub(crate) attempts: u8,
    /// No copy of the request is in flight any more.
    pub(crate) in_flight_empty: bool,
    /// A member not tried in this round may take the request.
    pub(crate) has_fresh: bool,
    /// The back-off ending the round would start ([`Plan::round_backoff`](super::plan::Plan::round_backoff)).
    pub(crate) backoff: Duration,
}

/// The decision after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AfterFailure {
    /// What to do.
    pub(crate) next: Next,
    /// Every member was tried in this round: the driver ends it ([`Plan::end_round`](super::plan::Plan::end_round)) and
    /// watches the health state, even when the deadline then stops the request.
    pub(crate) round_over: bool,
}

/// What the dispatch timer fired for (see [`Schedule::on_timer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fire {
    /// Send the next attempt.
    Attempt,
    /// Send one more copy of a slow read to another member.
    Hedge,
    /// Nothing to send (a hedge with no room left, or an early wake).
    Nothing,
}

/// With no caller's deadline, a retry due less than this before the end of `retry.budget` (or a
/// twentieth of the budget, if less) is not sent: its attempt would be cut off by the budget
/// before a member could answer (under load a TLS handshake alone takes longer), and would only
/// turn a known failure into `DeadlineExceeded`, a write's into *outcome unknown*, at the cost
/// of one more request to a cluster already failing it. The budget is ours, not the caller's:
/// ending it a little early costs the caller nothing it asked for. A caller's deadline is used
/// to its end.
const OWN_END_SLACK: Duration = Duration::from_millis(50);

/// When one request sends its next attempt and its next hedge, bounded by its deadline and by
/// `retry.max_attempts` and `hedge.max_attempts` (see the [module docs](self)).
///
/// Plain data (no allocation): it lives in every unary request's future.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// When the next attempt goes; `None` while none is to be sent.
    next_attempt: Option<Instant>,
    /// When the next copy of a slow read goes; `None` while none is due.
    hedge_at: Option<Instant>,
    /// The caller's deadline, or the retry budget: no attempt starts at or after it.
    end: Instant,
    /// With no caller's deadline, how long before the retry budget's `end` no attempt starts
    /// either (see [`OWN_END_SLACK`]); zero with one.
    slack: Duration,
    /// `retry.max_attempts`, at least 1: attempts and hedges together.
    max_attempts: u8,
    /// Copies of the request in flight at once at most: `hedge.max_attempts` for a read, 1
    /// for a write (never hedged). A `u8` like `max_attempts`, so both share a word.
    copies: u8,
}

impl Schedule {
    /// The schedule of a request of `class` that arrived at `started` with the caller's
    /// `deadline`, if any: its first attempt is due at once.
    pub(crate) fn new(
        class: Class,
        started: Instant,
        deadline: Option<Duration>,
        retry: &RetryConfig,
        hedge: &HedgeConfig,
    ) -> Self {
        Self {
            next_attempt: Some(started),
            hedge_at: None,
            // Saturating: the deadline comes from the caller's `grpc-timeout` header.
            end: crate::timing::later(started, deadline.unwrap_or(retry.budget)),
            slack: match deadline {
                Some(_) => Duration::ZERO,
                None => (retry.budget / 20).min(OWN_END_SLACK),
            },
            max_attempts: retry.max_attempts.max(1),
            copies: copies(class, hedge),
        }
    }

    /// The request turned out to be of `class` once its body was read (a `Txn` of reads is a
    /// read); nothing was sent yet.
    pub(crate) fn reclass(&mut self, class: Class, hedge: &HedgeConfig) {
        self.copies = copies(class, hedge);
    }

    /// The caller's deadline (or the retry budget's end).
    pub(crate) fn end(&self) -> Instant {
        self.end
    }

    /// When the dispatch timer must fire next: the earlier of the next attempt and the next
    /// hedge; `None` while neither is due (the request waits for its copies in flight).
    pub(crate) fn wake(&self) -> Option<Instant> {
        earliest(self.next_attempt, self.hedge_at)
    }

    /// Whether an attempt is set to go (so a change of the health state may bring it forward).
    pub(crate) fn attempt_set(&self) -> bool {
        self.next_attempt.is_some()
    }

    /// Decides what follows a failed attempt, seen at `now`.
    pub(crate) fn after_failure(&mut self, failed: Failed, now: Instant) -> AfterFailure {
        let Failed {
            class,
            maybe_processed,
            attempts,
            in_flight_empty,
            has_fresh,
            backoff,
        } = failed;
        let stop = |schedule: &mut Self, round_over| {
            schedule.next_attempt = None;
            let next = if in_flight_empty {
                Next::GiveUp
            } else {
                Next::AwaitOthers
            };
            AfterFailure { next, round_over }
        };
        if !may_resend(class, maybe_processed) || attempts >= self.max_attempts {
            return stop(self, false);
        }
        if self.next_attempt.is_some() {
            return AfterFailure {
                next: Next::AlreadySet,
                round_over: false,
            };
        }
        let (at, round_over) = if has_fresh {
            (now, false)
        } else {
            (now + backoff, true)
        };
        if crate::timing::later(at, self.slack) >= self.end {
            return stop(self, round_over);
        }
        self.next_attempt = Some(at);
        let next = if round_over {
            Next::BackOff(at)
        } else {
            Next::RetryAt(at)
        };
        AfterFailure { next, round_over }
    }

    /// The attempt [`after_failure`](Self::after_failure) set does not go (the retry budget
    /// refused it, or a copy still in flight stands in for it): the request ends with this
    /// failure, or with the copies still in flight (and their hedges), as a single request
    /// would.
    pub(crate) fn refuse_retry(&mut self, in_flight_empty: bool) -> Next {
        self.next_attempt = None;
        if in_flight_empty {
            Next::GiveUp
        } else {
            Next::AwaitOthers
        }
    }

    /// The timer fired at `now`, with `attempts` started so far and `in_flight` copies
    /// unanswered: a due attempt goes first; a due hedge goes only while there is room for
    /// another copy (`hedge.max_attempts`) and another attempt (`retry.max_attempts`).
    pub(crate) fn on_timer(&mut self, now: Instant, attempts: u8, in_flight: usize) -> Fire {
        if self.next_attempt.is_some_and(|at| at <= now) {
            self.next_attempt = None;
            return Fire::Attempt;
        }
        if self.hedge_at.is_some_and(|at| at <= now) {
            self.hedge_at = None;
            if in_flight < usize::from(self.copies) && attempts < self.max_attempts {
                return Fire::Hedge;
            }
        }
        Fire::Nothing
    }

    /// An attempt was sent at `now`, leaving `in_flight` copies unanswered: with room for
    /// another copy, a hedge is due one hedging `delay` later. `delay` is `None` when no other
    /// member could take a hedge (one member known): then no timer is set for one.
    pub(crate) fn attempt_sent(&mut self, now: Instant, in_flight: usize, delay: Option<Duration>) {
        if let (true, Some(delay)) = (in_flight < usize::from(self.copies), delay) {
            self.hedge_at = Some(now + delay);
        }
    }

    /// A hedge was sent at `now`, leaving `in_flight` copies unanswered: with room for
    /// another, the next one waits longer (`in_flight` hedging delays; two slow members at
    /// once are rare, and copies cost the cluster work).
    pub(crate) fn hedge_sent(&mut self, now: Instant, in_flight: usize, delay: Duration) {
        if in_flight < usize::from(self.copies) {
            let factor = u32::try_from(in_flight).unwrap_or(u32::MAX);
            self.hedge_at = Some(now + delay * factor);
        }
    }

    /// The health state or the leader changed at `now` during a back-off: go now.
    pub(crate) fn changed(&mut self, now: Instant) {
        if self.next_attempt.is_some() {
            self.next_attempt = Some(now);
        }
    }
}

/// For the fuzz targets: the end of a request's schedule for a caller's `deadline` (from its
/// `grpc-timeout`), and the instants its first attempt and hedge compute: no panic, whatever
/// the deadline.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_schedule(deadline: Option<Duration>, hedge_after: Duration) -> Instant {
    let config = crate::config::Config::default();
    let now = Instant::now();
    let mut s = Schedule::new(Class::Read, now, deadline, &config.retry, &config.hedge);
    let _ = s.on_timer(now, 0, 0);
    s.attempt_sent(now, 1, Some(hedge_after.min(config.hedge.max_delay)));
    let _ = s.wake();
    s.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn retry(max_attempts: u8) -> RetryConfig {
        RetryConfig {
            max_attempts,
            backoff: ms(100),
            max_backoff: ms(300),
            budget: ms(1000),
            ..RetryConfig::default()
        }
    }

    fn hedge(max_attempts: u8) -> HedgeConfig {
        HedgeConfig {
            max_attempts,
            ..HedgeConfig::default()
        }
    }

    /// A request of `class` that arrived at `t0` with a deadline of 1 s, up to 5 attempts,
    /// up to 3 copies of a read at once; its first attempt already sent.
    fn sent(class: Class, t0: Instant) -> Schedule {
        let mut s = Schedule::new(class, t0, Some(ms(1000)), &retry(5), &hedge(3));
        assert_eq!(s.on_timer(t0, 0, 0), Fire::Attempt);
        s.attempt_sent(t0, 1, Some(ms(10)));
        s
    }

    /// A failure of a request of `class`, after `attempts`, with copies in flight or not and
    /// a fresh member or not; a round's back-off would be 100 ms.
    fn failed(
        class: Class,
        maybe_processed: bool,
        attempts: u8,
        in_flight_empty: bool,
        has_fresh: bool,
    ) -> Failed {
        Failed {
            class,
            maybe_processed,
            attempts,
            in_flight_empty,
            has_fresh,
            backoff: ms(100),
        }
    }

    fn decided(next: Next, round_over: bool) -> AfterFailure {
        AfterFailure { next, round_over }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = retry(5);
        // No jitter taken off, and the most of it (a half).
        assert_eq!(backoff(&c, 2, 0.0), ms(100));
        assert_eq!(backoff(&c, 2, 1.0), ms(50));
        assert_eq!(backoff(&c, 3, 0.0), ms(200));
        assert_eq!(backoff(&c, 3, 0.5), ms(150));
        assert_eq!(backoff(&c, 4, 0.0), ms(300), "capped");
        assert_eq!(backoff(&c, u8::MAX, 0.0), ms(300), "capped");
        assert_eq!(backoff(&c, 1, 0.0), ms(100), "before the second attempt");
    }

    #[test]
    fn the_first_attempt_goes_at_once_and_the_deadline_or_budget_ends_it_all() {
        let t0 = Instant::now();
        let s = Schedule::new(Class::Read, t0, Some(ms(250)), &retry(5), &hedge(3));
        assert_eq!(s.wake(), Some(t0));
        assert!(s.attempt_set());
        assert_eq!(s.end(), t0 + ms(250));
        let s = Schedule::new(Class::Write, t0, None, &retry(5), &hedge(3));
        assert_eq!(s.end(), t0 + ms(1000), "retry.budget without a deadline");
        let mut s = Schedule::new(Class::Read, t0, None, &retry(0), &hedge(0));
        assert_eq!(s.on_timer(t0, 0, 0), Fire::Attempt);
        s.attempt_sent(t0, 1, Some(ms(10)));
        assert_eq!(s.wake(), None, "0 means 1: one copy, no hedge");
        let d = s.after_failure(failed(Class::Read, false, 1, true, true), t0);
        assert_eq!(d, decided(Next::GiveUp, false), "0 means 1: no retry");
    }

    /// With one member known there is nobody to hedge to: no timer is set for a hedge, and
    /// the request waits for its answer alone.
    #[test]
    fn no_hedge_timer_without_another_member() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Class::Read, t0, None, &retry(5), &hedge(3));
        assert_eq!(s.on_timer(t0, 0, 0), Fire::Attempt);
        s.attempt_sent(t0, 1, None);
        assert_eq!(s.wake(), None);
        s.attempt_sent(t0, 1, Some(ms(10)));
        assert_eq!(s.wake(), Some(t0 + ms(10)), "with a peer, the hedge is due");
    }

    /// A write the member may have processed is never sent again, whatever else holds: the
    /// caller gets it (as *outcome unknown*) or waits for copies already in flight.
    #[test]
    fn a_write_that_may_have_been_processed_is_never_resent() {
        let t0 = Instant::now();
        assert!(!may_resend(Class::Write, true));
        let mut s = sent(Class::Write, t0);
        let d = s.after_failure(failed(Class::Write, true, 1, true, true), t0 + ms(5));
        assert_eq!(d, decided(Next::GiveUp, false));
        assert_eq!(s.wake(), None, "a write is never hedged");

        let mut s = sent(Class::Write, t0);
        let d = s.after_failure(failed(Class::Write, true, 1, false, false), t0 + ms(5));
        assert_eq!(d, decided(Next::AwaitOthers, false));
        assert!(!s.attempt_set());
    }

    /// A write refused before it ran goes to a fresh member at once; a read after any failure.
    #[test]
    fn a_write_certainly_not_processed_and_any_read_are_retried_at_once_on_a_fresh_member() {
        let t0 = Instant::now();
        assert!(may_resend(Class::Write, false));
        assert!(may_resend(Class::Read, true) && may_resend(Class::Read, false));
        for (class, maybe_processed) in [(Class::Write, false), (Class::Read, true)] {
            let mut s = sent(class, t0);
            let now = t0 + ms(5);
            let d = s.after_failure(failed(class, maybe_processed, 1, true, true), now);
            assert_eq!(d, decided(Next::RetryAt(now), false), "{class:?}");
            assert_eq!(s.wake(), Some(now));
            assert_eq!(s.on_timer(now, 1, 0), Fire::Attempt);
        }
    }

    /// Every member was tried in this round: wait out the back-off (the driver ends the round),
    /// unless the health state changes first.
    #[test]
    fn a_round_over_waits_its_back_off_unless_health_changes() {
        let t0 = Instant::now();
        let mut s = sent(Class::Write, t0);
        let now = t0 + ms(5);
        let d = s.after_failure(failed(Class::Write, false, 3, true, false), now);
        assert_eq!(d, decided(Next::BackOff(now + ms(100)), true));
        assert_eq!(s.wake(), Some(now + ms(100)));
        assert_eq!(s.on_timer(now + ms(99), 3, 0), Fire::Nothing, "not yet");
        assert!(s.attempt_set());
        s.changed(now + ms(20));
        assert_eq!(s.wake(), Some(now + ms(20)), "brought forward");
        assert_eq!(s.on_timer(now + ms(20), 3, 0), Fire::Attempt);
        assert!(!s.attempt_set());
        s.changed(now + ms(30));
        assert_eq!(s.wake(), None, "nothing set: nothing to bring forward");
    }

    /// As the dispatch has always done: a hedge armed for the read's last attempt stays armed
    /// when that attempt fails, and goes during the round's back-off if it is due first.
    #[test]
    fn a_hedge_armed_before_a_failure_may_go_during_the_back_off() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 3, true, false), t0 + ms(1));
        assert_eq!(d, decided(Next::BackOff(t0 + ms(101)), true));
        assert_eq!(s.wake(), Some(t0 + ms(10)));
        assert_eq!(s.on_timer(t0 + ms(10), 3, 0), Fire::Hedge);
        assert_eq!(s.wake(), Some(t0 + ms(101)), "the back-off still stands");
    }

    /// No attempt starts at or after the deadline: the request gives up, or waits for its
    /// copies in flight; a round that was over is still reported so.
    #[test]
    fn gives_up_at_the_deadline() {
        let t0 = Instant::now();
        let end = t0 + ms(1000);
        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), end);
        assert_eq!(
            d,
            decided(Next::GiveUp, false),
            "a fresh member, but no time"
        );

        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 3, true, false), end - ms(100));
        assert_eq!(
            d,
            decided(Next::GiveUp, true),
            "the back-off ends at the deadline"
        );

        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 3, false, false), end - ms(50));
        assert_eq!(d, decided(Next::AwaitOthers, true));
        assert!(!s.attempt_set());

        let mut s = sent(Class::Read, t0);
        let now = end - ms(101);
        let d = s.after_failure(failed(Class::Read, true, 3, true, false), now);
        assert_eq!(d, decided(Next::BackOff(end - ms(1)), true), "just in time");
    }

    /// Without a caller's deadline, no retry starts within the last twentieth of the retry
    /// budget (at most 50 ms): it could only time out. A caller's deadline is used to its end
    /// (`gives_up_at_the_deadline`).
    #[test]
    fn no_retry_starts_in_the_last_moments_of_the_retry_budget() {
        let t0 = Instant::now();
        let own = |budget| {
            let config = RetryConfig {
                budget: ms(budget),
                ..retry(5)
            };
            let mut s = Schedule::new(Class::Read, t0, None, &config, &hedge(3));
            assert_eq!(s.on_timer(t0, 0, 0), Fire::Attempt);
            s.attempt_sent(t0, 1, Some(ms(10)));
            s
        };
        let end = t0 + ms(2000);
        let mut s = own(2000);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), end - ms(40));
        assert_eq!(
            d,
            decided(Next::GiveUp, false),
            "40 ms left: not worth an attempt"
        );
        let mut s = own(2000);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), end - ms(60));
        assert_eq!(d, decided(Next::RetryAt(end - ms(60)), false));
        let mut s = own(2000);
        let d = s.after_failure(failed(Class::Read, true, 3, true, false), end - ms(140));
        assert_eq!(
            d,
            decided(Next::GiveUp, true),
            "a back-off ending 40 ms before the budget's end"
        );
        // A small budget: a twentieth of it (10 ms of 200).
        let mut s = own(200);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), t0 + ms(189));
        assert_eq!(
            d,
            decided(Next::RetryAt(t0 + ms(189)), false),
            "11 ms left of 200"
        );
        let mut s = own(200);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), t0 + ms(191));
        assert_eq!(d, decided(Next::GiveUp, false), "9 ms left of 200");
    }

    /// `retry.max_attempts` counts every attempt; reaching it stops retries and drops an
    /// attempt already set.
    #[test]
    fn max_attempts_stops_retries() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 5, true, true), t0);
        assert_eq!(d, decided(Next::GiveUp, false));

        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 4, false, true), t0);
        assert_eq!(d, decided(Next::RetryAt(t0), false));
        let d = s.after_failure(failed(Class::Read, true, 5, false, true), t0);
        assert_eq!(d, decided(Next::AwaitOthers, false));
        assert!(!s.attempt_set(), "the retry set before is dropped");
    }

    /// A second failure while the next attempt is already set changes nothing.
    #[test]
    fn an_attempt_already_set_is_kept() {
        let t0 = Instant::now();
        let mut s = sent(Class::Write, t0);
        let d = s.after_failure(failed(Class::Write, false, 3, false, false), t0);
        assert_eq!(d, decided(Next::BackOff(t0 + ms(100)), true));
        let d = s.after_failure(failed(Class::Write, false, 3, true, true), t0 + ms(1));
        assert_eq!(d, decided(Next::AlreadySet, false));
        assert_eq!(s.on_timer(t0 + ms(99), 3, 0), Fire::Nothing);
        assert_eq!(s.on_timer(t0 + ms(100), 3, 0), Fire::Attempt);
    }

    /// A slow read is hedged after one hedging delay, the next copy after two more, up to
    /// `hedge.max_attempts` copies in flight.
    #[test]
    fn hedges_are_spaced_and_capped_by_hedge_max_attempts() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        assert_eq!(s.wake(), Some(t0 + ms(10)));
        assert_eq!(s.on_timer(t0 + ms(9), 1, 1), Fire::Nothing, "early wake");
        assert_eq!(s.on_timer(t0 + ms(10), 1, 1), Fire::Hedge);
        s.hedge_sent(t0 + ms(10), 2, ms(10));
        assert_eq!(s.wake(), Some(t0 + ms(30)), "two delays on");
        assert_eq!(s.on_timer(t0 + ms(30), 2, 2), Fire::Hedge);
        s.hedge_sent(t0 + ms(30), 3, ms(10));
        assert_eq!(s.wake(), None, "three copies in flight: no more");

        // A hedge found due while the copies in flight are at the cap is dropped.
        let mut s = sent(Class::Read, t0);
        assert_eq!(s.on_timer(t0 + ms(10), 1, 3), Fire::Nothing);
        assert_eq!(s.wake(), None);
    }

    /// Hedges count as attempts: none is sent once `retry.max_attempts` is reached.
    #[test]
    fn hedges_are_capped_by_retry_max_attempts() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        assert_eq!(s.on_timer(t0 + ms(10), 5, 1), Fire::Nothing);
        assert_eq!(s.wake(), None);
    }

    /// A due attempt goes before a due hedge; a retry sent while a copy is in flight arms one
    /// hedging delay again.
    #[test]
    fn a_due_attempt_goes_before_a_due_hedge() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 2, false, true), t0 + ms(10));
        assert_eq!(d, decided(Next::RetryAt(t0 + ms(10)), false));
        assert_eq!(s.on_timer(t0 + ms(10), 2, 1), Fire::Attempt);
        assert_eq!(
            s.on_timer(t0 + ms(10), 2, 1),
            Fire::Hedge,
            "the hedge is still due"
        );
        let mut s = sent(Class::Read, t0);
        s.after_failure(failed(Class::Read, true, 2, false, true), t0 + ms(10));
        assert_eq!(s.on_timer(t0 + ms(10), 2, 1), Fire::Attempt);
        s.attempt_sent(t0 + ms(10), 2, Some(ms(10)));
        assert_eq!(s.wake(), Some(t0 + ms(20)), "one delay, not two");
    }

    /// A retry the budget refuses is not sent: the request ends with its failure, or waits
    /// for its copies in flight, as a single request would.
    #[test]
    fn a_refused_retry_is_not_sent() {
        let t0 = Instant::now();
        let mut s = sent(Class::Read, t0);
        let d = s.after_failure(failed(Class::Read, true, 1, true, true), t0 + ms(5));
        assert_eq!(d.next, Next::RetryAt(t0 + ms(5)));
        assert_eq!(s.refuse_retry(true), Next::GiveUp);
        assert!(!s.attempt_set());
        assert_eq!(s.on_timer(t0 + ms(5), 1, 0), Fire::Nothing);
        let mut s = sent(Class::Read, t0);
        s.after_failure(failed(Class::Read, true, 1, false, false), t0 + ms(5));
        assert_eq!(s.refuse_retry(false), Next::AwaitOthers);
        assert!(!s.attempt_set());
    }

    /// Only a failure that never reached a handler is re-sent free of the budget.
    #[test]
    fn only_unprocessed_failures_resend_free() {
        assert!(resend_is_free(false, "etcdserver: no leader"));
        assert!(resend_is_free(false, "transport error: connection refused"));
        assert!(!resend_is_free(true, "etcdserver: leader changed"));
        assert!(!resend_is_free(false, crate::etcd::TOO_MANY_REQUESTS));
    }
}
