//! Jitter for timers that many clients share, and instants that values from the wire can
//! never overflow.
//!
//! Why one place: a fleet of clients runs the same code with the same configuration, so every
//! periodic or back-off timer they share fires in lockstep unless each draws its own jitter.
//! After a member dies, thousands of watches re-opened at the same millisecond, or thousands of
//! probes each second on the second, are a load spike on the members that survive (the
//! thundering herd). Every such timer here draws a uniform sample from [`unit`](fn@unit) and
//! places its delay with [`shorten`]: jitter only ever takes time *off* (up to a fraction), so a
//! configured interval or cap is still the longest wait, and a schedule that takes the sample
//! as an argument stays a pure function, tested on made-up draws.
//!
//! Why [`later`]: `Instant + Duration` panics on overflow, and some durations come from the
//! wire or the caller (a `grpc-timeout` header, a lease TTL from a member, a TTL the caller
//! set). Added with [`later`], an absurd one means "far in the future", never a panic.
//!
//! Why [`now`] is here: the whole stack reads one clock, tokio's, so tests on paused time move
//! every timer at once; the pure states take the instant as an argument instead.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

/// The clock of the health state and its drivers: tokio's, so tests can pause and advance it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock time for reports.
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The fraction of a periodic interval (a probe, a leader check, a DNS re-resolution, a
/// discovery round) jitter may take off: up to a fifth, as gRPC's own periodic timers spread.
pub(crate) const PERIODIC: f64 = 0.2;

/// The fraction of a back-off (a stream's re-open, a failed authentication's pause) jitter may
/// take off: up to half ("equal jitter"), so re-opens after one shared event spread over half
/// the back-off while the back-off still doubles.
pub(crate) const BACKOFF: f64 = 0.5;

/// How far ahead "never, in practice" is: an overflowing instant is this far from its start.
/// (About 30 years, as tokio's own far-future instant.)
pub(crate) const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A uniform sample in `[0, 1)`, drawn from the thread's generator.
pub(crate) fn unit() -> f64 {
    rand::rng().random::<f64>()
}

/// `full` with up to `fraction` of it taken off, placed by `unit` (a sample in `[0, 1)`):
/// a value in `[full * (1 - fraction), full]`. Never longer than `full`; out-of-range or
/// non-finite inputs are clamped (a NaN counts as 0).
pub(crate) fn shorten(full: Duration, fraction: f64, unit: f64) -> Duration {
    let clamp = |x: f64| {
        if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    full.mul_f64(1.0 - clamp(fraction) * clamp(unit))
}

/// [`shorten`] with a fresh sample: the delay to wait now for a timer many clients share.
pub(crate) fn jittered(full: Duration, fraction: f64) -> Duration {
    shorten(full, fraction, unit())
}

/// An instant type `later` can add durations to without panicking.
pub(crate) trait Later: Copy {
    /// `self + d`, or `None` on overflow.
    fn checked_later(self, d: Duration) -> Option<Self>;
}

impl Later for std::time::Instant {
    fn checked_later(self, d: Duration) -> Option<Self> {
        self.checked_add(d)
    }
}

impl Later for tokio::time::Instant {
    fn checked_later(self, d: Duration) -> Option<Self> {
        self.checked_add(d)
    }
}

/// `at + d`, with `d` capped at [`FAR`]: a duration from the wire or the caller never panics.
/// (Should even `at + FAR` overflow, which no real clock reading does, `at` itself is
/// returned.)
pub(crate) fn later<I: Later>(at: I, d: Duration) -> I {
    at.checked_later(d.min(FAR)).unwrap_or(at)
}

/// Sleeps until `at`, or for ever when `None`: a driver's wait for the next deadline its pure
/// schedule names (`poll_timeout`), beside the events it also waits for.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn shorten_takes_off_up_to_the_fraction() {
        assert_eq!(shorten(ms(1000), 0.5, 0.0), ms(1000));
        assert_eq!(shorten(ms(1000), 0.5, 0.5), ms(750));
        assert_eq!(shorten(ms(1000), 0.2, 0.999_999_9).as_millis(), 800);
        assert_eq!(shorten(ms(1000), 0.0, 0.7), ms(1000), "no jitter");
        assert_eq!(shorten(ms(1000), f64::NAN, 0.5), ms(1000));
        assert_eq!(shorten(ms(1000), 0.5, f64::INFINITY), ms(1000));
        assert_eq!(shorten(ms(1000), 7.0, 2.0), Duration::ZERO, "clamped to 1");
    }

    #[test]
    fn draws_spread_a_fleet() {
        // 1000 clients drawing their own sample: their delays cover the band, not one point.
        let delays: Vec<Duration> = (0..1000).map(|_| jittered(ms(1000), BACKOFF)).collect();
        let min = *delays.iter().min().unwrap();
        let max = *delays.iter().max().unwrap();
        assert!(min >= ms(500) && max <= ms(1000), "{min:?}..{max:?}");
        assert!(
            max - min >= ms(400),
            "spread over the band: {min:?}..{max:?}"
        );
        // No single 10 ms slot holds more than a few percent of them.
        let mut slots = [0u32; 51];
        for d in &delays {
            slots[((d.as_millis() - 500) / 10) as usize] += 1;
        }
        assert!(slots.iter().all(|&n| n < 60), "{slots:?}");
    }

    #[test]
    fn later_saturates() {
        let now = std::time::Instant::now();
        assert_eq!(later(now, ms(5)), now + ms(5));
        assert_eq!(later(now, Duration::MAX), now + FAR);
        let now = tokio::time::Instant::now();
        assert_eq!(later(now, Duration::from_secs(u64::MAX)), now + FAR);
    }

    proptest! {
        #[test]
        fn never_longer_nor_below_the_band(full in 0u64..10_000_000, fraction in 0.0f64..=1.0, unit in 0.0f64..1.0) {
            let d = shorten(Duration::from_micros(full), fraction, unit);
            prop_assert!(d <= Duration::from_micros(full));
            prop_assert!(d >= Duration::from_micros(full).mul_f64(1.0 - fraction).saturating_sub(Duration::from_nanos(1)));
        }

        #[test]
        fn later_never_panics(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let now = std::time::Instant::now();
            let at = later(now, Duration::new(secs, nanos));
            prop_assert!(at >= now);
        }
    }
}
