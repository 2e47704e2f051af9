//! The pure per-member health state machine.
//!
//! Why pure: failure detection is where subtle bugs hide (a counter not reset, a member
//! re-admitted too early), and it must be testable without sleeping or talking to etcd. Like
//! quinn-proto, everything here takes `now: Instant` as an argument and performs no I/O; the
//! probe scheduler and the passive classifier feed it [`Outcome`]s, and the balancer reads its
//! verdict.
//!
//! Public are only the words the snapshots and events speak ([`Status`], [`Outcome`],
//! [`Source`], [`Counters`], [`Transition`]) and the hook that turns answers into outcomes
//! ([`Classify`]); the machine itself is the crate's to change.
//!
//! Semantics follow lua-resty-healthcheck, which the seed design builds on: four counters per
//! member (successes, http_failures, tcp_failures, timeouts); a success resets the failure
//! counters and a failure resets the successes; a threshold of 0 disables its counter. On top
//! of that, as in Envoy's outlier detection, an ejected member stays out for an ejection time
//! that grows with repeated ejections (with jitter, capped), so a flapping member cannot
//! oscillate in and out of rotation.

mod classify;
mod counters;
mod ejection;
mod outcome;
mod state;

pub use classify::{Classify, DefaultClassifier};
pub use counters::Counters;
pub(crate) use counters::Thresholds;
pub(crate) use ejection::Ejection;
pub use outcome::{Outcome, Source};
pub(crate) use state::HealthState;
pub use state::{Status, Transition};
