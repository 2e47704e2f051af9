//! State changes published to subscribers.

use super::Member;
use crate::health::Transition;

/// A change in the health state, as sent by [`HealthChecker::subscribe`](super::HealthChecker::subscribe).
#[derive(Clone, Debug)]
pub struct HealthEvent {
    /// The member concerned.
    pub member: Member,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a member.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The member joined the health state.
    Added,
    /// The member left the health state.
    Removed,
    /// The member's status changed.
    StatusChanged(Transition),
    /// Every member is unhealthy: the stack now follows the configured
    /// [`AllUnhealthyPolicy`](crate::config::AllUnhealthyPolicy).
    AllUnhealthy,
}
