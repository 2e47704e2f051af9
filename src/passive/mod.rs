//! Passive checks: every response through the stack says something about the member that
//! served it.
//!
//! Why classification matters: most gRPC errors are the application's (a missing key, a
//! compacted revision, a denied permission, NOSPACE) and say nothing about the member; counting
//! them would eject healthy members. Only connect failures, timeouts and member-level answers
//! (`Unavailable`, "no leader", "leader changed", "request timed out", `Unknown "context
//! deadline exceeded"`) count, and long-blocking calls (Watch, Lock, Campaign, lease keep-alive
//! streams) are never timeouts. The gRPC status arrives either in the response headers
//! (trailers-only answers) or in the body's trailers; both are read.

mod body;
mod classify;
mod tracker;

pub(crate) use body::judge;
pub(crate) use body::ClassifiedBody;
pub(crate) use classify::transport_error;
pub(crate) use classify::{Classifier, NotLeader, Verdict};
pub(crate) use tracker::{Judge, Tracker};

use std::time::{Duration, Instant};

use crate::health::{Outcome, Source, Status};
use crate::member::MemberEntry;

/// What a request's verdict tells the health state: the one port through which this room
/// reports. The health state implements it; this room never names the checker.
pub(crate) trait Cluster: Send + Sync + std::fmt::Debug {
    /// Notes that `entry` answered a request sent at `sent`.
    fn answered(&self, entry: &MemberEntry, sent: Instant);
    /// Feeds one outcome, seen at `now`, to a member's state machine; returns its status
    /// afterwards.
    fn record_outcome(
        &self,
        entry: &MemberEntry,
        source: Source,
        outcome: Outcome,
        now: Instant,
    ) -> Status;
    /// Asks for a leader check as soon as one can run.
    fn want_leader_check(&self);
    /// Whether a request sent to `entry` at `since` and still unanswered hangs on it.
    fn hangs(&self, entry: &MemberEntry, since: Instant) -> bool;
    /// Whether no member answered a request sent after `since`.
    fn quiet_since(&self, since: Instant) -> bool;
    /// The latency estimate of the slowest member in rotation other than `entry`.
    fn slowest_peer_latency(&self, entry: &MemberEntry) -> Option<Duration>;
    /// Counts a hang against a member.
    fn record_hang(&self, entry: &MemberEntry);
}
