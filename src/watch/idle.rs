//! When a quiet watch stream is asked for progress, and when it is given up.
//!
//! Why a pure state: a member that hangs or is cut off does not end the stream, it only stops
//! sending. Silence alone cannot tell a quiet key from a stuck member, so the watch asks for a
//! progress notification after about half the idle timeout (up to a fifth of that earlier,
//! drawn per quiet spell: the watches of a fleet that went quiet together do not all ask at
//! once), asks again at three quarters (etcd 3.5.13+ and 3.6 drop a progress request made
//! while a watcher is catching up, `watch.go` `recvLoop` → `progressIfSync`), and gives the
//! stream up after the whole of it. Anything heard resets the clock, catch-up events
//! included. Here that rule takes `now` and the jitter sample and is tested on made-up
//! clocks; the follow loop in `task.rs` only sleeps until [`Idle::wake`] and acts on
//! [`Idle::due`].

use std::time::Duration;

use tokio::time::Instant;

/// What a quiet stream calls for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet.
    Nothing,
    /// Ask the member for a progress notification (at most twice per quiet spell).
    AskProgress,
    /// The member is presumed stuck: give the stream up.
    GiveUp,
}

/// The idle clock of one stream.
#[derive(Clone, Debug)]
pub(super) struct Idle {
    timeout: Duration,
    last_heard: Instant,
    /// When the first request of this quiet spell is due, from `last_heard`.
    ask_after: Duration,
    asked: u8,
}

// === impl Idle ===

impl Idle {
    /// A stream opened (or heard from) at `now`; `unit` is a jitter sample in `[0, 1)`.
    pub(super) fn new(timeout: Duration, now: Instant, unit: f64) -> Self {
        Self {
            timeout,
            last_heard: now,
            ask_after: Self::ask_after(timeout, unit),
            asked: 0,
        }
    }

    fn ask_after(timeout: Duration, unit: f64) -> Duration {
        crate::timing::shorten(timeout / 2, crate::timing::PERIODIC, unit)
    }

    /// The member answered and its answer was delivered at `now` (counted from after delivery:
    /// a slow caller is not a stuck member); `unit` draws the next quiet spell's jitter.
    pub(super) fn heard(&mut self, now: Instant, unit: f64) {
        self.last_heard = now;
        self.asked = 0;
        self.ask_after = Self::ask_after(self.timeout, unit);
    }

    /// What to do at `now`; a progress request is called for at most twice per quiet spell.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        if now >= self.give_up_at() {
            Due::GiveUp
        } else if self.ask_at().is_some_and(|at| now >= at) {
            self.asked += 1;
            Due::AskProgress
        } else {
            Due::Nothing
        }
    }

    /// When something may be due next.
    pub(super) fn wake(&self) -> Instant {
        self.ask_at()
            .map_or(self.give_up_at(), |at| at.min(self.give_up_at()))
    }

    /// How long the stream may stay silent.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn ask_at(&self) -> Option<Instant> {
        match self.asked {
            0 => Some(self.last_heard + self.ask_after),
            1 => Some(self.last_heard + self.timeout * 3 / 4),
            _ => None,
        }
    }

    fn give_up_at(&self) -> Instant {
        self.last_heard + self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_quiet_stream_is_asked_twice_then_given_up() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0, 0.0);
        assert_eq!(idle.wake(), t0 + ms(500));
        assert_eq!(idle.due(t0 + ms(499)), Due::Nothing);
        assert_eq!(idle.due(t0 + ms(500)), Due::AskProgress);
        assert_eq!(idle.due(t0 + ms(600)), Due::Nothing);
        assert_eq!(idle.wake(), t0 + ms(750));
        assert_eq!(idle.due(t0 + ms(750)), Due::AskProgress, "asked again");
        assert_eq!(idle.due(t0 + ms(800)), Due::Nothing, "twice at most");
        assert_eq!(idle.wake(), t0 + ms(1000));
        assert_eq!(idle.due(t0 + ms(1000)), Due::GiveUp);
    }

    #[test]
    fn the_first_request_is_jittered_earlier_never_later() {
        let t0 = Instant::now();
        let idle = Idle::new(ms(1000), t0, 0.999_999);
        assert!(idle.wake() >= t0 + ms(400) && idle.wake() < t0 + ms(401));
        let a = Idle::new(ms(1000), t0, 0.25).wake();
        let b = Idle::new(ms(1000), t0, 0.75).wake();
        assert!(a > b, "different draws, different instants");
    }

    #[test]
    fn an_answer_restarts_the_clock() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0, 0.0);
        assert_eq!(idle.due(t0 + ms(700)), Due::AskProgress);
        idle.heard(t0 + ms(900), 0.0);
        assert_eq!(idle.wake(), t0 + ms(1400));
        assert_eq!(idle.due(t0 + ms(1300)), Due::Nothing);
        assert_eq!(idle.due(t0 + ms(1400)), Due::AskProgress, "asked again");
        assert_eq!(idle.due(t0 + ms(1899)), Due::AskProgress, "and once more");
        assert_eq!(idle.due(t0 + ms(1900)), Due::GiveUp);
    }

    #[test]
    fn a_late_wake_gives_up_without_asking_first() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0, 0.0);
        assert_eq!(idle.due(t0 + ms(5000)), Due::GiveUp);
    }
}
