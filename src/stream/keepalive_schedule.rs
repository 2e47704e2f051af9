//! When to renew, when to ask another member too, and when the lease must be presumed gone.
//!
//! Why a pure state machine: the keep-alive's timing rules (renew every TTL/3, hedge an
//! unanswered renewal on another member, give a stuck stream up, stop acting as the lease
//! holder once the TTL has run out locally) are where a lease gets lost, and they are easy to
//! get subtly wrong. Here they take `now` as an argument and are tested on made-up clocks.
//!
//! The keep-alive engine (`keepalive_driver.rs`) runs one per caller stream: its rounds start
//! with each keep-alive of the caller (`start_round_if_due(now, true)`), and its hedging,
//! give-up and back-off rules ([`Schedule::step`], [`Schedule::driver_wake`]) decide what the
//! driver does. The tower [`KeepAlive`](crate::lease::KeepAlive) runs one more on its side, for
//! what etcd-client's keeper decides for the drop-in: when to renew (every TTL/3) and when the
//! lease is presumed expired ([`Schedule::renewal_wake`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::timing;

/// Until the first answer tells the TTL: renew this often.
pub(crate) const INITIAL_INTERVAL: Duration = Duration::from_millis(500);
/// Never renew more often than this, whatever the TTL.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Never hedge sooner than this after the last stream was asked.
const MIN_HEDGE: Duration = Duration::from_millis(50);
/// At most this many keep-alive streams at once (one, plus hedges while it is unanswered).
pub(crate) const MAX_STREAMS: usize = 3;

/// The caller's settings of a [`Schedule`]; `None` for the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timing {
    /// Renew this often instead of every TTL/3.
    pub(crate) interval: Option<Duration>,
    /// Give a stream up after this long with a keep-alive unanswered.
    pub(crate) response_timeout: Option<Duration>,
    /// Ask another member too after this long with a keep-alive unanswered.
    pub(crate) hedge_after: Option<Duration>,
    /// The TTL the lease was granted with: it may expire this long after the start.
    pub(crate) granted_ttl: Option<Duration>,
    /// With no response timeout set, no more than this (the interval if shorter): twice
    /// `hang.after`, the unary requests' bound, when a health checker is known.
    pub(crate) response_ceiling: Option<Duration>,
}

/// What the driver does now, besides waiting (see [`Schedule::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing.
    Wait,
    /// Open a stream: the first, or a hedge.
    Open,
    /// A hedge is due with every stream taken: ask the health state for the leader instead.
    LeaderCheck,
}

/// The renewal timing of one lease (see the [module docs](self)).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// The renewal period in force: the caller's, or TTL/3 once an answer told the TTL.
    interval: Duration,
    fixed_interval: bool,
    response_timeout: Option<Duration>,
    response_ceiling: Option<Duration>,
    hedge_after: Option<Duration>,
    /// When etcd may expire the lease at the earliest, as far as we know: the time a renewal
    /// that was answered was *sent*, plus the TTL it answered with.
    expires: Option<Instant>,
    /// The TTL of the last answer (or the caller's `granted_ttl` before one).
    ttl: Option<Duration>,
    /// Whether the expiry has been reported and no renewal answered since.
    presumed_expired: bool,
    /// When the next renewal is due (while none is outstanding).
    next_send: Instant,
    /// When the outstanding renewal began; `None` while the last one was answered.
    round: Option<Instant>,
    /// When a stream was last opened or asked during this round: hedges count from it.
    last_ask: Option<Instant>,
    /// While no stream is open: not before this (the back-off after a failed stream).
    reopen_at: Instant,
}

impl Schedule {
    /// A schedule whose first renewal is due at once. With [`Timing::granted_ttl`], the lease
    /// is presumed to expire that long after `now` until an answer says otherwise.
    pub(crate) fn new(options: &Timing, now: Instant) -> Self {
        Self {
            interval: options.interval.unwrap_or(INITIAL_INTERVAL),
            fixed_interval: options.interval.is_some(),
            response_timeout: options.response_timeout,
            response_ceiling: options.response_ceiling,
            hedge_after: options.hedge_after,
            expires: options.granted_ttl.map(|ttl| timing::later(now, ttl)),
            ttl: options.granted_ttl,
            presumed_expired: false,
            next_send: now,
            round: None,
            last_ask: None,
            reopen_at: now,
        }
    }

    /// How long a stream may leave a renewal unanswered before it is given up: the caller's
    /// setting, else the renewal interval (TTL/3), at most the [ceiling](Timing::response_ceiling)
    /// (which alone counts until the interval is known).
    pub(crate) fn response_timeout(&self) -> Duration {
        match (self.response_timeout, self.response_ceiling) {
            (Some(t), _) => t,
            (None, Some(c)) if self.ttl.is_some() || self.fixed_interval => self.interval.min(c),
            (None, Some(c)) => c,
            (None, None) => self.interval,
        }
    }

    /// How long a renewal may go unanswered before another stream (on another member) is
    /// asked too: a quarter of the response timeout unless set.
    pub(crate) fn hedge_after(&self) -> Duration {
        self.hedge_after
            .unwrap_or(self.response_timeout() / 4)
            .max(MIN_HEDGE)
    }

    /// When the lease must be presumed expired, if known.
    pub(crate) fn expires(&self) -> Option<Instant> {
        self.expires
    }

    /// Whether the lease's TTL has run out with no renewal answered: etcd may have expired it
    /// (or will any moment), so nobody may act as its holder any more.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Whether the lease is short of time at `now`: half of its TTL or less is left before it
    /// may expire, or nothing is known of it yet (no answer, no `granted_ttl`). A hedge for
    /// such a lease is sent even past the retry budget: speculation may wait, a lease about to
    /// lapse may not.
    pub(crate) fn urgent(&self, now: Instant) -> bool {
        match (self.expires, self.ttl) {
            (Some(expires), Some(ttl)) => timing::later(now, ttl / 2) >= expires,
            _ => true,
        }
    }

    /// `true` once when the lease has [`expired`](Self::expired) (again, after an answer);
    /// renewals go on, since etcd may still hold the lease (no leader could expire it).
    pub(crate) fn expire_if_due(&mut self, now: Instant) -> bool {
        if !self.presumed_expired && self.expired(now) {
            self.presumed_expired = true;
            return true;
        }
        false
    }

    /// Whether a renewal is outstanding.
    pub(crate) fn in_round(&self) -> bool {
        self.round.is_some()
    }

    /// Starts a renewal if one is due (or `early`: the stream carrying the lease is gone, so
    /// renew on the new one at once). Returns whether a round began.
    pub(crate) fn start_round_if_due(&mut self, now: Instant, early: bool) -> bool {
        if self.round.is_none() && (early || now >= self.next_send) {
            self.round = Some(now);
            self.last_ask = None;
            return true;
        }
        false
    }

    /// A stream was opened or asked to renew at `now`.
    pub(crate) fn asked(&mut self, now: Instant) {
        self.last_ask = Some(now);
    }

    /// A stream failed: none is opened again before `now + delay` (capped at half the
    /// interval, since the lease expires on etcd's clock meanwhile).
    pub(crate) fn failed(&mut self, now: Instant, delay: Duration) {
        self.reopen_at = timing::later(now, delay.min(self.interval / 2));
    }

    /// Whether to open a stream now, given how many are open and whether every open one is
    /// waiting for an answer: the first one once the back-off is over, more (up to
    /// [`MAX_STREAMS`]) when the renewal has gone unanswered for [`hedge_after`](Self::hedge_after).
    pub(crate) fn should_open(&self, now: Instant, open: usize, all_waiting: bool) -> bool {
        if self.round.is_none() {
            return false;
        }
        if open == 0 {
            return now >= self.reopen_at;
        }
        open < MAX_STREAMS && all_waiting && self.hedge_at().is_some_and(|at| now >= at)
    }

    /// An answer with `ttl` seconds to a renewal sent at `sent`, seen at `now`. Returns
    /// whether the lease had been presumed expired (it was not, after all).
    pub(crate) fn answered(&mut self, sent: Instant, ttl: i64, now: Instant) -> bool {
        let ttl = ttl_of(ttl);
        let until = timing::later(sent, ttl);
        self.expires = Some(self.expires.map_or(until, |e| e.max(until)));
        self.ttl = Some(ttl);
        if !self.fixed_interval {
            self.interval = (ttl / 3).max(MIN_INTERVAL);
        }
        self.round = None;
        self.last_ask = None;
        self.next_send = timing::later(now, self.interval);
        self.reopen_at = now;
        // If even this answer came too late, the next `expire_if_due` reports it again.
        std::mem::replace(&mut self.presumed_expired, false)
    }

    /// The earliest time something is to be done, for a stream set of `open` streams (all of
    /// them waiting for an answer, or not) whose earliest to be given up is at `stale_at`.
    /// Never a time already past for a reason that cannot act (a hedge with no room for
    /// another stream): the driver would spin.
    pub(crate) fn wake(
        &self,
        now: Instant,
        open: usize,
        all_waiting: bool,
        stale_at: Option<Instant>,
    ) -> Instant {
        let step = match self.round {
            None => Some(self.next_send),
            Some(_) if open == 0 => Some(self.reopen_at),
            Some(_) if open < MAX_STREAMS && all_waiting => self.hedge_at(),
            Some(_) => None,
        };
        let expires = self.expires.filter(|_| !self.presumed_expired);
        [step, expires, stale_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| timing::later(now, self.interval))
    }

    /// What the driver of a caller with `outstanding` keep-alives unanswered does at `now`,
    /// with `open` streams (all waiting for an answer, or not): open the first stream (after
    /// the back-off) or a hedge (after the hedge delay, up to [`MAX_STREAMS`]); with every
    /// stream taken when a hedge is due, ask for a leader check instead (the caller then
    /// calls [`asked`](Self::asked), so that comes a hedge delay apart, not in a spin).
    pub(crate) fn step(
        &self,
        now: Instant,
        outstanding: usize,
        open: usize,
        all_waiting: bool,
    ) -> Step {
        if outstanding == 0 {
            Step::Wait
        } else if self.should_open(now, open, all_waiting) {
            Step::Open
        } else if open >= MAX_STREAMS && self.should_open(now, MAX_STREAMS - 1, all_waiting) {
            Step::LeaderCheck
        } else {
            Step::Wait
        }
    }

    /// When the driver wakes next with `open` streams, the earliest of which gives up at
    /// `stale_at`: while a keep-alive waits, as [`wake`](Self::wake) says, counted as if a
    /// stream were free (a hedge due wakes it for the leader check of [`step`](Self::step));
    /// otherwise only for a stream to give up (the caller's next keep-alive wakes it anyway).
    pub(crate) fn driver_wake(
        &self,
        now: Instant,
        open: usize,
        all_waiting: bool,
        stale_at: Option<Instant>,
    ) -> Option<Instant> {
        if !self.in_round() {
            return stale_at;
        }
        Some(self.wake(now, open.min(MAX_STREAMS - 1), all_waiting, stale_at))
    }

    /// When a caller that renews by this schedule (the tower `KeepAlive`) wakes next: the next
    /// renewal while none is outstanding, the presumed expiry until it is reported; else an
    /// interval from `now`.
    pub(crate) fn renewal_wake(&self, now: Instant) -> Instant {
        let next = (!self.in_round()).then_some(self.next_send);
        let expires = self.expires.filter(|_| !self.presumed_expired);
        [next, expires]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| timing::later(now, self.interval))
    }

    fn hedge_at(&self) -> Option<Instant> {
        let since = self.last_ask.or(self.round)?;
        Some(timing::later(since, self.hedge_after()))
    }
}

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's `lease/lessor.go`: 9,000,000,000 s);
/// a member answering with more is not believed beyond it.
const MAX_TTL: Duration = Duration::from_secs(9_000_000_000);

/// The TTL of a keep-alive answer (seconds, from the member): negative counts as 0, and more
/// than etcd ever grants as [`MAX_TTL`], so that no instant computed from it overflows.
fn ttl_of(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).min(MAX_TTL)
}

/// For the fuzz targets: a schedule taking keep-alive answers with these TTLs (seconds, from
/// the member), renewals sent `gaps` milliseconds apart, with a caller's `granted_ttl`; every
/// instant it computes must be reachable without a panic.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_answers(granted_ttl: Option<Duration>, answers: &[(i64, u64)]) {
    let t0 = Instant::now();
    let options = Timing {
        granted_ttl,
        ..Timing::default()
    };
    let mut s = Schedule::new(&options, t0);
    let mut now = t0;
    for &(ttl, gap_ms) in answers {
        now = timing::later(now, Duration::from_millis(gap_ms % 100_000));
        s.start_round_if_due(now, true);
        s.asked(now);
        s.failed(now, Duration::from_millis(gap_ms));
        let _ = s.should_open(now, 1, true);
        s.answered(now, ttl, now);
        let _ = s.expire_if_due(now);
        let wake = s.wake(now, (gap_ms % 4) as usize, gap_ms % 2 == 0, Some(now));
        assert!(
            wake <= timing::later(now, timing::FAR),
            "a wake within reach"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn granted(ttl: Duration) -> Timing {
        Timing {
            granted_ttl: Some(ttl),
            ..Timing::default()
        }
    }

    fn schedule(now: Instant) -> Schedule {
        Schedule::new(&Timing::default(), now)
    }

    #[test]
    fn renews_every_third_of_the_ttl_from_the_answer() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(s.start_round_if_due(t0, false));
        assert!(s.should_open(t0, 0, true), "first stream at once");
        s.asked(t0);
        s.answered(t0, 6, t0 + ms(5));
        assert!(!s.in_round());
        assert_eq!(s.wake(t0, 1, true, None), t0 + ms(2005));
        assert!(!s.start_round_if_due(t0 + ms(2004), false));
        assert!(s.start_round_if_due(t0 + ms(2005), false));
    }

    #[test]
    fn local_expiry_counts_from_the_send_time_and_never_moves_back() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert_eq!(
            s.expires(),
            None,
            "unknown until an answer (or granted_ttl)"
        );
        s.start_round_if_due(t0, false);
        s.answered(t0 + ms(100), 5, t0 + ms(900));
        assert_eq!(s.expires(), Some(t0 + ms(5100)));
        // A late answer to an older renewal does not shorten it.
        s.answered(t0, 5, t0 + ms(1000));
        assert_eq!(s.expires(), Some(t0 + ms(5100)));
        assert!(!s.expired(t0 + ms(5099)));
        assert!(s.expired(t0 + ms(5100)));
        // The wake-up never oversleeps the expiry.
        s.start_round_if_due(t0 + ms(5000), false);
        assert!(s.wake(t0, 1, true, None) <= t0 + ms(5100));
    }

    #[test]
    fn expiry_is_reported_once_and_undone_by_a_later_answer() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.start_round_if_due(t0, false);
        assert!(!s.answered(t0, 3, t0));
        s.start_round_if_due(t0 + ms(1000), false);
        assert!(!s.expire_if_due(t0 + ms(2999)));
        assert!(s.expire_if_due(t0 + ms(3000)));
        assert!(!s.expire_if_due(t0 + ms(3500)), "once");
        // Reported: the expiry no longer wakes the driver (it would spin), hedges still do.
        s.asked(t0 + ms(3500));
        assert_eq!(s.wake(t0, 1, true, None), t0 + ms(3750));
        // etcd answers after all (no leader could expire it): the lease lives on.
        assert!(s.answered(t0 + ms(6000), 3, t0 + ms(6010)));
        assert!(!s.expired(t0 + ms(8999)));
        assert!(s.expire_if_due(t0 + ms(9000)), "and may expire again");
    }

    #[test]
    fn a_lease_is_urgent_with_half_its_ttl_left_or_nothing_known() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(s.urgent(t0), "no answer yet: nothing says there is time");
        s.start_round_if_due(t0, false);
        s.answered(t0 + ms(100), 6, t0 + ms(200)); // may expire at t0 + 6.1 s
        assert!(!s.urgent(t0 + ms(3099)));
        assert!(s.urgent(t0 + ms(3100)), "3 s of 6 left");
        assert!(s.urgent(t0 + ms(7000)), "and past the expiry");
        // The caller's granted TTL counts until an answer.
        let opts = granted(Duration::from_secs(4));
        let g = Schedule::new(&opts, t0);
        assert!(!g.urgent(t0 + ms(1999)));
        assert!(g.urgent(t0 + ms(2000)));
    }

    #[test]
    fn granted_ttl_bounds_the_time_before_the_first_answer() {
        let t0 = Instant::now();
        let opts = granted(Duration::from_secs(3));
        let s = Schedule::new(&opts, t0);
        assert!(!s.expired(t0 + ms(2999)));
        assert!(s.expired(t0 + ms(3000)));
    }

    #[test]
    fn an_unanswered_renewal_is_hedged_on_more_streams_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.start_round_if_due(t0, false);
        s.answered(t0, 6, t0); // interval 2 s, response timeout 2 s, hedge after 500 ms
        let r = t0 + Duration::from_secs(2);
        assert!(s.start_round_if_due(r, false));
        s.asked(r);
        assert!(!s.should_open(r + ms(499), 1, true));
        assert_eq!(s.wake(t0, 1, true, None), r + ms(500));
        assert!(s.should_open(r + ms(500), 1, true));
        s.asked(r + ms(500));
        assert!(!s.should_open(r + ms(999), 2, true));
        assert!(s.should_open(r + ms(1000), 2, true));
        assert!(!s.should_open(r + ms(5000), MAX_STREAMS, true), "capped");
        // Capped, or a stream not waiting: the hedge is no reason to wake (no spinning), the
        // streams' own give-up time is.
        let stale = r + ms(2000);
        assert_eq!(s.wake(r + ms(1200), MAX_STREAMS, true, Some(stale)), stale);
        assert_eq!(s.wake(r + ms(1200), 2, false, Some(stale)), stale);
        assert_eq!(
            s.wake(r + ms(1200), MAX_STREAMS, true, None),
            r + ms(4000),
            "the expiry"
        );
        // Nothing known at all: a look again after an interval, not now.
        let mut fresh = schedule(t0);
        fresh.start_round_if_due(t0, false);
        assert_eq!(
            fresh.wake(t0 + ms(10), MAX_STREAMS, true, None),
            t0 + ms(10) + INITIAL_INTERVAL
        );
        assert!(
            !s.should_open(r + ms(5000), 2, false),
            "a stream that is not waiting (just opened, or its answer is on the way) needs no hedge"
        );
    }

    #[test]
    fn a_failed_stream_is_reopened_after_a_capped_backoff() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.start_round_if_due(t0, false);
        s.answered(t0, 3, t0); // interval 1 s
        let f = t0 + ms(200);
        s.failed(f, Duration::from_secs(10));
        assert!(
            s.start_round_if_due(f, true),
            "the lost stream's renewal starts now"
        );
        assert!(!s.should_open(f + ms(499), 0, true));
        assert_eq!(
            s.wake(t0, 0, true, None),
            f + ms(500),
            "capped at half the interval"
        );
        assert!(s.should_open(f + ms(500), 0, true));
    }

    #[test]
    fn hedge_delay_defaults_to_a_quarter_of_the_response_timeout_with_a_floor() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.answered(t0, 60, t0);
        assert_eq!(s.hedge_after(), Duration::from_secs(5));
        let opts = Timing {
            interval: Some(ms(40)),
            ..Timing::default()
        };
        assert_eq!(Schedule::new(&opts, t0).hedge_after(), MIN_HEDGE);
        let opts = Timing {
            hedge_after: Some(ms(300)),
            ..Timing::default()
        };
        assert_eq!(Schedule::new(&opts, t0).hedge_after(), ms(300));
    }

    #[test]
    fn stale_streams_and_expiry_bound_the_sleep() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.answered(t0, 30, t0);
        assert_eq!(s.wake(t0, 1, true, Some(t0 + ms(7))), t0 + ms(7));
    }

    /// A member answering with a TTL near `i64::MAX` (or negative) made `sent + ttl` panic.
    #[test]
    fn absurd_ttls_from_a_member_do_not_panic() {
        let t0 = Instant::now();
        for ttl in [i64::MAX, i64::MAX - 1, 9_000_000_001, i64::MIN, -1] {
            let mut s = schedule(t0);
            assert!(s.start_round_if_due(t0, false));
            s.answered(t0, ttl, t0 + ms(5));
            let wake = s.wake(t0 + ms(5), 1, false, None);
            assert!(wake >= t0, "{ttl}: {wake:?}");
            assert!(!s.expired(t0 + ms(5)) || ttl <= 0, "{ttl}");
            s.failed(t0 + ms(6), Duration::MAX);
            let _ = s.hedge_at();
        }
        assert_eq!(ttl_of(i64::MAX), MAX_TTL);
        assert_eq!(ttl_of(-5), Duration::ZERO);
        assert_eq!(ttl_of(60), Duration::from_secs(60));
        // A caller's granted TTL of `Duration::MAX` too.
        let opts = granted(Duration::MAX);
        let s = Schedule::new(&opts, t0);
        assert!(s.expires().is_some_and(|e| e > t0));
    }

    #[test]
    fn the_response_timeout_is_the_ceiling_until_the_interval_is_known_then_the_shorter() {
        let t0 = Instant::now();
        let ceiling = Timing {
            response_ceiling: Some(Duration::from_secs(1)),
            ..Timing::default()
        };
        let mut s = Schedule::new(&ceiling, t0);
        assert_eq!(
            s.response_timeout(),
            Duration::from_secs(1),
            "no TTL known yet"
        );
        s.answered(t0, 30, t0); // interval 10 s
        assert_eq!(s.response_timeout(), Duration::from_secs(1));
        assert_eq!(s.hedge_after(), ms(250));
        s.answered(t0, 2, t0); // interval 666 ms: a stream never waits past the next renewal
        assert_eq!(s.response_timeout(), Duration::from_secs(2) / 3);
        // Without a ceiling (no health checker), the interval; a caller's setting wins.
        let mut plain = schedule(t0);
        plain.answered(t0, 30, t0);
        assert_eq!(plain.response_timeout(), Duration::from_secs(10));
        let set = Timing {
            response_timeout: Some(ms(300)),
            ..ceiling
        };
        assert_eq!(Schedule::new(&set, t0).response_timeout(), ms(300));
    }

    #[test]
    fn the_driver_opens_hedges_then_asks_for_the_leader_and_waits_without_keep_alives() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.answered(t0, 6, t0); // response timeout 2 s, hedge after 500 ms
        assert_eq!(s.step(t0, 0, 0, true), Step::Wait, "nothing to renew");
        assert_eq!(
            s.driver_wake(t0, 0, true, None),
            None,
            "the caller wakes it"
        );
        let stale = t0 + ms(100);
        assert_eq!(s.driver_wake(t0, 1, true, Some(stale)), Some(stale));
        let r = t0 + Duration::from_secs(1);
        assert!(s.start_round_if_due(r, true));
        assert_eq!(
            s.step(r, 1, 0, true),
            Step::Open,
            "the first stream at once"
        );
        s.asked(r);
        assert_eq!(s.step(r + ms(499), 1, 1, true), Step::Wait);
        assert_eq!(s.driver_wake(r, 1, true, None), Some(r + ms(500)));
        assert_eq!(s.step(r + ms(500), 1, 1, true), Step::Open, "a hedge");
        assert_eq!(
            s.step(r + ms(500), 1, 1, false),
            Step::Wait,
            "its answer is on the way"
        );
        s.asked(r + ms(500));
        assert_eq!(s.step(r + ms(1000), 1, 2, true), Step::Open);
        s.asked(r + ms(1000));
        // Every stream taken: a leader check a hedge delay later, and the driver wakes for it.
        assert_eq!(s.step(r + ms(1499), 1, MAX_STREAMS, true), Step::Wait);
        assert_eq!(
            s.driver_wake(r + ms(1200), MAX_STREAMS, true, None),
            Some(r + ms(1500))
        );
        assert_eq!(
            s.step(r + ms(1500), 1, MAX_STREAMS, true),
            Step::LeaderCheck
        );
        s.asked(r + ms(1500));
        assert_eq!(
            s.step(r + ms(1600), 1, MAX_STREAMS, true),
            Step::Wait,
            "not in a spin"
        );
    }

    #[test]
    fn a_keeper_wakes_to_renew_and_to_presume_expiry_once() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert_eq!(s.renewal_wake(t0), t0, "the first renewal at once");
        assert!(s.start_round_if_due(t0, false));
        assert_eq!(
            s.renewal_wake(t0),
            t0 + INITIAL_INTERVAL,
            "nothing known: a look again later"
        );
        s.answered(t0, 3, t0 + ms(10)); // renew 1 s after the answer, expires 3 s after the send
        assert_eq!(s.renewal_wake(t0 + ms(10)), t0 + ms(1010));
        assert!(s.start_round_if_due(t0 + ms(1010), false));
        assert_eq!(s.renewal_wake(t0 + ms(1010)), t0 + ms(3000), "the expiry");
        assert!(s.expire_if_due(t0 + ms(3000)));
        assert_eq!(
            s.renewal_wake(t0 + ms(3000)),
            t0 + ms(4000),
            "reported: no wake for it again"
        );
    }
}
