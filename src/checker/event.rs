//! State changes published to subscribers.

use super::{Member, Origin};
use crate::health::Transition;

/// A change in the health state, as sent by [`HealthChecker::subscribe`](super::HealthChecker::subscribe).
#[derive(Clone, Debug)]
pub struct HealthEvent {
    /// The member concerned. For [`EventKind::LeaderChanged`], the new leader when it is one
    /// of ours, else the member whose answer showed the change.
    pub member: Member,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a member.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The member joined the health state.
    Added {
        /// Given by the caller, or found by discovery (and how).
        origin: Origin,
        /// Why, e.g. `listed by MemberList as m3 (8e9e05c52164694d)`.
        reason: String,
    },
    /// The member left the health state; requests in flight to it finish.
    Removed {
        /// How it had entered it.
        origin: Origin,
        /// Why, e.g. `no longer listed by MemberList (removed from the cluster)`.
        reason: String,
    },
    /// The member's status changed.
    StatusChanged(Transition),
    /// Every member is unhealthy: the stack now follows the configured
    /// [`AllUnhealthyPolicy`](crate::config::AllUnhealthyPolicy).
    AllUnhealthy,
    /// A leader check found a new leader (`leader_id`, at `term`), or that no member knows a
    /// leader (`leader_id: None`: an election; requests wait for its end within their
    /// deadlines, and nobody is ejected for it).
    LeaderChanged {
        /// The etcd id of the leader, `None` while no member knows one.
        leader_id: Option<u64>,
        /// The highest raft term seen.
        term: u64,
    },
}
