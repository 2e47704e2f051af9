//! When a quiet watch stream is asked for progress, and when it is given up.
//!
//! Why a pure state: a member that hangs or is cut off does not end the stream, it only stops
//! sending. Silence alone cannot tell a quiet key from a stuck member, so the watch asks for a
//! progress notification after half the idle timeout and gives the stream up after the whole
//! of it. Here that rule takes `now` and is tested on made-up clocks; the follow loop in
//! `task.rs` only sleeps until [`Idle::wake`] and acts on [`Idle::due`].

use std::time::Duration;

use tokio::time::Instant;

/// What a quiet stream calls for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet.
    Nothing,
    /// Ask the member for a progress notification (once per quiet spell).
    AskProgress,
    /// The member is presumed stuck: give the stream up.
    GiveUp,
}

/// The idle clock of one stream.
#[derive(Clone, Debug)]
pub(super) struct Idle {
    timeout: Duration,
    last_heard: Instant,
    asked: bool,
}

// === impl Idle ===

impl Idle {
    /// A stream opened (or heard from) at `now`.
    pub(super) fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            last_heard: now,
            asked: false,
        }
    }

    /// The member answered and its answer was delivered at `now` (counted from after delivery:
    /// a slow caller is not a stuck member).
    pub(super) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.asked = false;
    }

    /// What to do at `now`; a progress request is called for once per quiet spell.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        if now >= self.give_up_at() {
            Due::GiveUp
        } else if !self.asked && now >= self.ask_at() {
            self.asked = true;
            Due::AskProgress
        } else {
            Due::Nothing
        }
    }

    /// When something may be due next.
    pub(super) fn wake(&self) -> Instant {
        if self.asked {
            self.give_up_at()
        } else {
            self.ask_at()
        }
    }

    /// How long the stream may stay silent.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn ask_at(&self) -> Instant {
        self.last_heard + self.timeout / 2
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
    fn a_quiet_stream_is_asked_once_then_given_up() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0);
        assert_eq!(idle.wake(), t0 + ms(500));
        assert_eq!(idle.due(t0 + ms(499)), Due::Nothing);
        assert_eq!(idle.due(t0 + ms(500)), Due::AskProgress);
        assert_eq!(idle.due(t0 + ms(600)), Due::Nothing, "asked once");
        assert_eq!(idle.wake(), t0 + ms(1000));
        assert_eq!(idle.due(t0 + ms(1000)), Due::GiveUp);
    }

    #[test]
    fn an_answer_restarts_the_clock() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0);
        assert_eq!(idle.due(t0 + ms(700)), Due::AskProgress);
        idle.heard(t0 + ms(900));
        assert_eq!(idle.wake(), t0 + ms(1400));
        assert_eq!(idle.due(t0 + ms(1300)), Due::Nothing);
        assert_eq!(idle.due(t0 + ms(1400)), Due::AskProgress, "asked again");
        assert_eq!(idle.due(t0 + ms(1899)), Due::Nothing);
        assert_eq!(idle.due(t0 + ms(1900)), Due::GiveUp);
    }

    #[test]
    fn a_late_wake_gives_up_without_asking_first() {
        let t0 = Instant::now();
        let mut idle = Idle::new(ms(1000), t0);
        assert_eq!(idle.due(t0 + ms(5000)), Due::GiveUp);
    }
}
