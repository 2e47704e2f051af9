//! Doubling, jittered backoff between re-creations of a stream.
//!
//! Why jitter: when a member dies, every client with a stream on it loses that stream at the
//! same instant; without jitter they would all re-open after the same delay, and again after
//! the doubled one, in lockstep on the members that remain. Each delay is placed by a uniform
//! draw within the upper half of its band (see [`crate::timing`]).

use std::time::Duration;

use crate::timing;

/// Doubling delay from `min` to `max`; reset once a stream proved healthy.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now, placed by `unit` (a uniform sample in `[0, 1)`) in the band
    /// `[d/2, d]` of the un-jittered delay `d`; the next `d` doubles, up to `max`.
    pub(crate) fn next_delay(&mut self, unit: f64) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        timing::shorten(d, timing::BACKOFF, unit)
    }

    /// Back to the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let seq: Vec<u128> = (0..7).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(seq, [50, 100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
    }

    #[test]
    fn jitter_takes_off_up_to_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(75));
        assert_eq!(b.next_delay(0.999_999).as_millis(), 100);
        assert_eq!(b.next_delay(0.0), Duration::from_millis(400));
    }
}
