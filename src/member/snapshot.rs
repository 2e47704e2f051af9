//! A point-in-time copy of every member's state, for dashboards, logs and tests.

use std::time::{Duration, SystemTime};

use crate::health::{Counters, Outcome, Source, Status};
use crate::member::{Member, Origin};

/// One member's state at the time of [`HealthChecker::snapshot`](crate::HealthChecker::snapshot).
#[derive(Clone, Debug)]
pub struct MemberSnapshot {
    /// The member.
    pub member: Member,
    /// Whether it was given (a seed) or found by discovery, and how.
    pub origin: Origin,
    /// In or out of rotation.
    pub status: Status,
    /// Consecutive-outcome counters.
    pub counters: Counters,
    /// Outcomes since the member was added: successes, http_failures, tcp_failures, timeouts,
    /// hangs.
    pub totals: [u64; 5],
    /// Consecutive ejections not yet forgiven.
    pub ejections: u32,
    /// All ejections since the member was added.
    pub ejections_total: u64,
    /// While unhealthy: how long until a success may re-admit the member.
    pub ejected_for: Option<Duration>,
    /// How long the member has had its current status.
    pub status_age: Duration,
    /// The last outcome recorded, its source and how long ago.
    pub last_outcome: Option<(Source, Outcome, Duration)>,
    /// The last active probe: its outcome, a detail message and its wall-clock time.
    pub last_probe: Option<ProbeReport>,
    /// Requests in flight to the member through the stack.
    pub in_flight: usize,
    /// Requests sent to the member through the stack.
    pub requests: u64,
    /// Smoothed response latency (peak-sensitive EWMA), if any request completed.
    pub latency: Option<Duration>,
}

/// The result of one active probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// Its verdict.
    pub outcome: Outcome,
    /// What the probe saw, e.g. `status 503` or `no leader`.
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
    /// When it finished.
    pub at: SystemTime,
}
