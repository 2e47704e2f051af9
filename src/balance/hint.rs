//! Per-request hints between the balancer and long-lived streams (watches, keep-alives).
//!
//! Why: a stream helper that re-opens a failed stream must (a) know which member served the
//! stream, to react when the health checker evicts that member, and (b) re-open it on another
//! member even before the health state has caught up (a hung member is not evicted by default).
//! Both travel as `http`/tonic extensions, so any tonic stub over [`Balance`](super::Balance)
//! can use them without new API on the service itself.

use crate::checker::Member;

/// Response extension set by [`Balance`](super::Balance): the member that served the request.
///
/// Read it from `tonic::Response::extensions()`. For a stream it names the member that
/// carries the whole stream.
#[derive(Clone, Debug)]
pub struct ServedBy(pub Member);

/// Request extension read by [`Balance`](super::Balance): members this request should not go
/// to, as long as another healthy member can take it (a soft preference, never a reason to
/// fail).
#[derive(Clone, Debug, Default)]
pub struct AvoidMembers(pub Vec<Member>);

impl AvoidMembers {
    /// Whether `member` (compared by index) is to be avoided.
    pub fn contains(&self, member: &Member) -> bool {
        self.0.iter().any(|m| m.index() == member.index())
    }
}

/// Request extension read by [`Balance`](super::Balance) for streams: open this one on this
/// member even while the health state has it out of rotation.
///
/// Only for a request that is idempotent and asked of other members too, when no member in
/// rotation is free to take it: the drop-in's keep-alive hedges (a member ejected for a
/// fault seconds ago, with a back-off of up to half a minute, is often back and may even
/// lead; one that is really down refuses at once, and nothing is lost either way).
#[derive(Clone, Debug)]
pub(crate) struct EvenIfEjected(pub(crate) Member);
