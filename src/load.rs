//! Per-member load: requests in flight and a peak-sensitive latency average.
//!
//! The balancer's power-of-two-choices compares `latency * (in_flight + 1)` (tower's PeakEwma
//! cost). A member that slows down (a lagging disk, a hung process before it is ejected) is
//! avoided at once, because a slow response raises the average to its value immediately and
//! only decays back over `DECAY`, or over a few dozen faster answers, whichever is sooner.
//!
//! Why answers count as well as time: an election makes every member slow at once (reads wait
//! for a leader for a second or two), and with a decay in time alone the busy members carried
//! that peak for tens of seconds, while a member re-admitted in the meantime started afresh,
//! looked twenty times cheaper and drew most of the traffic (seen after a leader's isolation
//! healed: 20 ms against 400–800 ms for over ten seconds). What a member answers now says
//! more about it than what it answered a second ago.
//!
//! Why a module of its own, beside the health state and the balancer rather than in either:
//! the health state holds one per member although only the balancer reads it (every balancer
//! over one state must see the same load, snapshots report it, and a member re-admitted
//! restarts it). It imports nothing of the crate, so both can use it without importing each
//! other.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Decay time constant of the latency average.
const DECAY: Duration = Duration::from_secs(10);
/// The least weight of one answer in the latency average: a member answering often sheds a
/// past peak within about this many answers (a recurring slow answer keeps it high).
const MIN_SAMPLE_WEIGHT: f64 = 1.0 / 32.0;
/// Latency assumed for a member before its first response.
const DEFAULT_RTT: Duration = Duration::from_millis(1);
/// Latency charged for a failed request, so a member that fails fast does not attract
/// traffic by looking quick (panic mode routes to unhealthy members too).
const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// The least latency a hang charges to its member's estimate.
const HANG_CHARGE_FLOOR: Duration = Duration::from_millis(20);
/// The `reset_at` of a load never reset.
const NEVER: u64 = u64::MAX;

/// Load of one member.
///
/// Lock-free: every request reads it twice (the power-of-two choice) and every answer writes
/// it, from every thread of the runtime, so a mutex here was two atomic read-modify-writes
/// per access and a point where all requests of the process queue. The estimate is one
/// atomic word (the nanoseconds as `f64` bits, negative while no answer was observed: the
/// sign is the `observed` flag, so the two change together) and its time another
/// (nanoseconds since `origin`). A reader that sees the two from different updates (an
/// estimate with the time of the previous one, or the reverse) decays it over a slightly
/// wrong interval, by at most the time between two answers over [`DECAY`]: noise for a load
/// heuristic. Answers fold into the estimate with a compare-and-swap, so none is lost (a
/// peak in particular) when two end at once. In one thread every method computes what the
/// mutex version did (to within a rounding of the decay: see [`decay`]).
#[derive(Debug)]
pub(crate) struct Load {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// `f64` bits of the latency estimate in nanoseconds; negative (the default's negation)
    /// while no answer was observed since [`new`](Self::new) or [`reset`](Self::reset).
    nanos: AtomicU64,
    /// When the estimate was last set, in nanoseconds since `origin`.
    at: AtomicU64,
    /// When the estimate was last [`reset`](Self::reset) (the member re-admitted), in
    /// nanoseconds since `origin`; [`NEVER`] if it never was.
    reset_at: AtomicU64,
    /// The times' zero: when the load was made (an earlier time counts as this one).
    origin: Instant,
}

/// The estimate of a load: nanoseconds, and whether an answer set them.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    nanos: f64,
    observed: bool,
}

impl Estimate {
    fn from_bits(bits: u64) -> Self {
        let v = f64::from_bits(bits);
        Self {
            nanos: v.abs(),
            observed: v.is_sign_positive(),
        }
    }

    /// An observed estimate is stored as it is, an unobserved one negated (never 0: the
    /// default is 1 ms).
    fn bits(self) -> u64 {
        if self.observed {
            self.nanos.to_bits()
        } else {
            (-self.nanos).to_bits()
        }
    }
}

/// What is left of an estimate after `elapsed` without an answer: `exp(-elapsed / DECAY)`.
///
/// Answers come microseconds to milliseconds apart, where the exponent is tiny: up to 100 ms
/// its Taylor series to the sixth power is exact to within a rounding (the first term left
/// out is below `2e-18`), and a few multiplications cost less than `exp`.
fn decay(elapsed: f64) -> f64 {
    let x = elapsed / DECAY.as_secs_f64();
    if x < 1e-2 {
        let tail = 1.0 - x / 5.0 * (1.0 - x / 6.0);
        1.0 - x * (1.0 - x / 2.0 * (1.0 - x / 3.0 * (1.0 - x / 4.0 * tail)))
    } else {
        (-x).exp()
    }
}

// === impl Load ===

impl Load {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            nanos: AtomicU64::new(
                Estimate {
                    nanos: DEFAULT_RTT.as_nanos() as f64,
                    observed: false,
                }
                .bits(),
            ),
            at: AtomicU64::new(0),
            reset_at: AtomicU64::new(NEVER),
            origin: now,
        }
    }

    /// `now` in nanoseconds since `origin`.
    fn tick(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Seconds from the estimate's time to `now` (0 if it is later).
    fn elapsed(&self, now: u64) -> f64 {
        let at = self.at.load(Ordering::Relaxed);
        Duration::from_nanos(now.saturating_sub(at)).as_secs_f64()
    }

    fn estimate_now(&self) -> Estimate {
        Estimate::from_bits(self.nanos.load(Ordering::Relaxed))
    }

    /// A request starts; pair with [`Load::finish`].
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ends after `rtt`; `rtt` is `None` when it did not complete (its time says
    /// nothing about the member's speed, e.g. a long-blocking call).
    pub(crate) fn finish(&self, rtt: Option<Duration>, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(rtt) = rtt {
            let now = self.tick(now);
            let sample = rtt.as_nanos() as f64;
            let elapsed = self.elapsed(now);
            // The weight of an answer `elapsed` after the last: `1 - exp(-x)` is below `x`,
            // so up to `x = MIN_SAMPLE_WEIGHT` (0.3 s) it is the least weight, without `exp`.
            let x = elapsed / DECAY.as_secs_f64();
            let weight = if x <= MIN_SAMPLE_WEIGHT {
                MIN_SAMPLE_WEIGHT
            } else {
                (1.0 - (-x).exp()).max(MIN_SAMPLE_WEIGHT)
            };
            let _ = self
                .nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    let e = Estimate::from_bits(bits);
                    let nanos = if sample > e.nanos || !e.observed {
                        sample
                    } else {
                        e.nanos * (1.0 - weight) + sample * weight
                    };
                    Some(
                        Estimate {
                            nanos,
                            observed: true,
                        }
                        .bits(),
                    )
                });
            self.at.store(now, Ordering::Relaxed);
        }
    }

    /// A request failed on a member out of rotation after `rtt` (`None`: not timed): panic
    /// mode still routes there, so a member that fails fast must not look fast. Ends it as
    /// [`finish`](Self::finish) does, with at least the failure penalty.
    pub(crate) fn finish_failed(&self, rtt: Option<Duration>, now: Instant) {
        self.finish(Some(rtt.unwrap_or_default().max(FAILURE_PENALTY)), now);
    }

    /// Charges a hang (a request unanswered for `waited` while peers answered) to the
    /// estimate: up to a few times `slowest_peer`'s latency (the slowest member in rotation
    /// besides this one), not the whole wait. Enough for the balancer to prefer the peers at
    /// once, while a member that merely had one slow moment is not starved for the tens of
    /// seconds a 0.5 s sample takes to decay (a member that really hangs hangs again and is
    /// ejected).
    pub(crate) fn charge_hang(
        &self,
        waited: Duration,
        slowest_peer: Option<Duration>,
        now: Instant,
    ) {
        let slowest_peer = slowest_peer.unwrap_or(HANG_CHARGE_FLOOR);
        let charge = waited.min((slowest_peer * 4).max(HANG_CHARGE_FLOOR));
        self.observe(charge, now);
    }

    /// Takes `waited` as a latency sample without ending a request: a request still
    /// unanswered after that long (a hang) makes the member as costly as it at once.
    pub(crate) fn observe(&self, waited: Duration, now: Instant) {
        let sample = waited.as_nanos() as f64;
        let raised = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let e = Estimate::from_bits(bits);
                (sample > e.nanos || !e.observed).then(|| {
                    Estimate {
                        nanos: sample,
                        observed: true,
                    }
                    .bits()
                })
            });
        if raised.is_ok() {
            self.at.store(self.tick(now), Ordering::Relaxed);
        }
    }

    /// The balancer's cost of sending one more request here, at `now`.
    ///
    /// The estimate decays toward zero while no response comes in (as tower's PeakEwma
    /// does), so a member that was slow once is tried again eventually.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let e = self.estimate_now();
        let decayed = e.nanos * decay(self.elapsed(self.tick(now)));
        decayed * (self.in_flight.load(Ordering::Relaxed) + 1) as f64
    }

    /// Forgets the latency history when a member is re-admitted after recovery, starting it
    /// at `like` (the slowest healthy peer's estimate) rather than at a default that would make
    /// it the cheapest member: a member that just came back is often still catching up with
    /// the log, and sending it every request at once would stall them all (slow start). Its
    /// first answers are averaged into `like`, not put in its place, so it earns its share
    /// over a few dozen answers; with no peer estimate, the first answer sets it.
    pub(crate) fn reset(&self, like: Option<Duration>, now: Instant) {
        let now = self.tick(now);
        let e = Estimate {
            nanos: like.unwrap_or(DEFAULT_RTT).as_nanos() as f64,
            observed: like.is_some(),
        };
        self.nanos.store(e.bits(), Ordering::Relaxed);
        self.at.store(now, Ordering::Relaxed);
        self.reset_at.store(now, Ordering::Relaxed);
    }

    /// How long ago the estimate was [`reset`](Self::reset) (the member re-admitted), at
    /// `now`; `None` if it never was.
    pub(crate) fn since_reset(&self, now: Instant) -> Option<Duration> {
        let at = self.reset_at.load(Ordering::Relaxed);
        (at != NEVER).then(|| Duration::from_nanos(self.tick(now).saturating_sub(at)))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The latency estimate at `now`, decayed as in [`cost`](Self::cost) (without the
    /// requests in flight); `None` before the first answer.
    pub(crate) fn estimate(&self, now: Instant) -> Option<Duration> {
        let e = self.estimate_now();
        let decayed = e.nanos * decay(self.elapsed(self.tick(now)));
        e.observed.then(|| Duration::from_nanos(decayed as u64))
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        let e = self.estimate_now();
        e.observed.then(|| Duration::from_nanos(e.nanos as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request that started and was answered after `rtt`, ending `at`.
    fn answered(l: &Load, rtt: Duration, at: Instant) {
        l.start();
        l.finish(Some(rtt), at);
    }

    /// Answers `n` requests of `rtt` each, one every millisecond from `from`; returns when
    /// the last one ended.
    fn answer(l: &Load, n: u32, rtt: Duration, from: Instant) -> Instant {
        let mut at = from;
        for _ in 0..n {
            at += Duration::from_millis(1);
            answered(l, rtt, at);
        }
        at
    }

    #[test]
    fn peak_is_taken_at_once_and_decays() {
        let t0 = Instant::now();
        let l = Load::new(t0);
        answered(&l, Duration::from_millis(2), t0);
        answered(&l, Duration::from_millis(50), t0);
        assert_eq!(l.latency(), Some(Duration::from_millis(50)));
        answered(&l, Duration::from_millis(2), t0 + Duration::from_secs(10));
        let after = l.latency().unwrap();
        assert!(after < Duration::from_millis(25) && after > Duration::from_millis(2));
    }

    #[test]
    fn a_busy_member_sheds_a_past_peak_within_a_few_dozen_answers() {
        // An election: every member answers after 800 ms once, then 15 ms again, a thousand
        // answers a second. A decay in time alone kept ~790 ms after these 100 answers.
        let t0 = Instant::now();
        let l = Load::new(t0);
        answered(&l, Duration::from_millis(800), t0);
        answer(&l, 100, Duration::from_millis(15), t0);
        let after = l.latency().unwrap();
        assert!(after < Duration::from_millis(50), "{after:?}");
    }

    #[test]
    fn a_recurring_slow_answer_keeps_the_estimate_high() {
        let t0 = Instant::now();
        let l = Load::new(t0);
        let mut at = t0;
        for _ in 0..20 {
            at = answer(&l, 1, Duration::from_millis(100), at);
            at = answer(&l, 9, Duration::from_millis(5), at);
        }
        let estimate = l.latency().unwrap();
        assert!(estimate > Duration::from_millis(60), "{estimate:?}");
    }

    #[test]
    fn a_re_admitted_member_starts_at_its_peers_estimate_and_earns_its_own() {
        let t0 = Instant::now();
        let l = Load::new(t0);
        l.reset(Some(Duration::from_millis(400)), t0);
        assert_eq!(l.latency(), Some(Duration::from_millis(400)));
        let at = answer(&l, 1, Duration::from_millis(20), t0);
        let first = l.latency().unwrap();
        assert!(
            first > Duration::from_millis(300),
            "one answer is averaged in: {first:?}"
        );
        answer(&l, 200, Duration::from_millis(20), at);
        let earned = l.latency().unwrap();
        assert!(earned < Duration::from_millis(25), "{earned:?}");
        // With no peer to be like, the first answer sets the estimate.
        l.reset(None, t0);
        answer(&l, 1, Duration::from_millis(20), t0);
        assert_eq!(l.latency(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn in_flight_raises_cost() {
        let t0 = Instant::now();
        let l = Load::new(t0);
        let idle = l.cost(t0);
        l.start();
        l.start();
        assert_eq!(l.cost(t0), idle * 3.0);
        assert!(l.cost(t0 + Duration::from_secs(10)) < idle * 3.0 * 0.5);
        l.reset(None, t0);
        assert_eq!(l.latency(), None);
        // Two requests are still in flight: cost = estimate * 3.
        assert_eq!(l.cost(t0), idle * 3.0, "back to the default estimate");
        l.reset(Some(Duration::from_millis(7)), t0);
        assert_eq!(l.cost(t0), 3.0 * Duration::from_millis(7).as_nanos() as f64);
        l.finish(None, t0);
        assert_eq!(l.in_flight(), 1);
        assert_eq!(l.requests(), 2);
    }

    /// Requests picked, started and answered from several threads at once: every one is
    /// counted, and the cost stays finite and positive whatever the interleaving.
    #[test]
    fn many_threads_share_one_load() {
        let t0 = Instant::now();
        let l = Load::new(t0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        let now = t0 + Duration::from_micros(i * 10 + t);
                        let cost = l.cost(now);
                        assert!(cost.is_finite() && cost > 0.0, "{cost}");
                        l.start();
                        let rtt = Duration::from_micros(100 + (i * 7 + t * 13) % 900);
                        if i % 100 == 0 {
                            l.observe(rtt * 3, now);
                        }
                        l.finish(Some(rtt), now + rtt);
                    }
                });
            }
        });
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.requests(), 40_000);
        let cost = l.cost(t0 + Duration::from_millis(100));
        assert!(cost.is_finite() && cost > 0.0, "{cost}");
        let latency = l.latency().unwrap();
        assert!(
            latency >= Duration::from_micros(100) && latency <= Duration::from_millis(3),
            "{latency:?}"
        );
    }

    #[test]
    fn the_decay_is_exp_to_within_a_rounding() {
        for nanos in [
            0,
            1,
            1_000,
            999_999,
            10_000_000,
            99_999_999,
            100_000_000,
            3_000_000_000,
        ] {
            let elapsed = Duration::from_nanos(nanos).as_secs_f64();
            let exact = (-elapsed / DECAY.as_secs_f64()).exp();
            let ours = decay(elapsed);
            assert!(
                (ours - exact).abs() <= 4.0 * f64::EPSILON,
                "{nanos}: {ours} {exact}"
            );
        }
        assert_eq!(decay(0.0), 1.0);
    }
}
