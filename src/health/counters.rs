//! The four counters and their thresholds.

use super::Outcome;
use crate::config::{ActiveChecks, PassiveChecks};

/// Consecutive observations of each kind, as lua-resty-healthcheck keeps them.
///
/// A success resets the three failure counters; any failure resets `successes`. Counters
/// saturate at 255 rather than wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Consecutive successes.
    pub successes: u8,
    /// Consecutive member-level failures.
    pub http_failures: u8,
    /// Consecutive connect failures.
    pub tcp_failures: u8,
    /// Consecutive timeouts.
    pub timeouts: u8,
    /// Consecutive hangs (see [`Outcome::Hang`]).
    pub hangs: u8,
}

impl Counters {
    /// Counts one outcome and returns the new value of the counter it incremented.
    pub fn count(&mut self, outcome: Outcome) -> u8 {
        let counter = match outcome {
            Outcome::Success => {
                self.http_failures = 0;
                self.tcp_failures = 0;
                self.timeouts = 0;
                self.hangs = 0;
                &mut self.successes
            }
            failure => {
                self.successes = 0;
                match failure {
                    Outcome::Failure => &mut self.http_failures,
                    Outcome::TcpFailure => &mut self.tcp_failures,
                    Outcome::Hang => &mut self.hangs,
                    _ => &mut self.timeouts,
                }
            }
        };
        *counter = counter.saturating_add(1);
        *counter
    }

    /// Resets every counter (on a status change, as lua-resty-healthcheck does).
    pub fn reset(&mut self) {
        *self = Counters::default();
    }
}

/// How many consecutive outcomes of each kind flip a member's status; 0 disables a kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes that make an unhealthy member healthy.
    pub successes: u8,
    /// Member-level failures that make a healthy member unhealthy.
    pub http_failures: u8,
    /// Connect failures that make a healthy member unhealthy.
    pub tcp_failures: u8,
    /// Timeouts that make a healthy member unhealthy.
    pub timeouts: u8,
    /// Hangs that make a healthy member unhealthy (passive only: `hang.threshold`).
    pub hangs: u8,
}

impl Thresholds {
    /// The threshold that applies to an outcome.
    pub fn for_outcome(&self, outcome: Outcome) -> u8 {
        match outcome {
            Outcome::Success => self.successes,
            Outcome::Failure => self.http_failures,
            Outcome::TcpFailure => self.tcp_failures,
            Outcome::Timeout => self.timeouts,
            Outcome::Hang => self.hangs,
        }
    }

    /// Whether `count` consecutive outcomes of this kind reach an enabled threshold.
    pub fn reached(&self, outcome: Outcome, count: u8) -> bool {
        let threshold = self.for_outcome(outcome);
        threshold != 0 && count >= threshold
    }

    /// The thresholds of the active checks.
    pub fn active(checks: &ActiveChecks) -> Self {
        Self {
            successes: checks.healthy.successes,
            http_failures: checks.unhealthy.http_failures,
            tcp_failures: checks.unhealthy.tcp_failures,
            timeouts: checks.unhealthy.timeouts,
            hangs: 0,
        }
    }

    /// The thresholds of the passive checks, with `hangs` from `hang.threshold`.
    pub fn passive(checks: &PassiveChecks, hangs: u8) -> Self {
        Self {
            successes: checks.healthy.successes,
            http_failures: checks.unhealthy.http_failures,
            tcp_failures: checks.unhealthy.tcp_failures,
            timeouts: checks.unhealthy.timeouts,
            hangs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_resets_failures_and_failure_resets_successes() {
        let mut c = Counters::default();
        assert_eq!(c.count(Outcome::Timeout), 1);
        assert_eq!(c.count(Outcome::TcpFailure), 1);
        assert_eq!(c.count(Outcome::Timeout), 2);
        assert_eq!(c.count(Outcome::Success), 1);
        assert_eq!((c.http_failures, c.tcp_failures, c.timeouts), (0, 0, 0));
        assert_eq!(c.count(Outcome::Success), 2);
        assert_eq!(c.count(Outcome::Failure), 1);
        assert_eq!(c.successes, 0);
    }

    #[test]
    fn counters_saturate() {
        let mut c = Counters::default();
        for _ in 0..300 {
            c.count(Outcome::Timeout);
        }
        assert_eq!(c.timeouts, 255);
    }

    #[test]
    fn zero_threshold_disables() {
        let t = Thresholds {
            successes: 1,
            http_failures: 0,
            tcp_failures: 2,
            timeouts: 1,
            hangs: 0,
        };
        assert!(!t.reached(Outcome::Failure, 200));
        assert!(!t.reached(Outcome::TcpFailure, 1));
        assert!(t.reached(Outcome::TcpFailure, 2));
        assert!(t.reached(Outcome::Timeout, 1));
    }
}
