//! Per-request hints between the balancer and long-lived streams (watches, keep-alives).
//!
//! Why: a stream helper that re-opens a failed stream must (a) know which member served the
//! stream, to react when the health checker evicts that member, and (b) re-open it on another
//! member even before the health state has caught up (a hung member is not evicted by default).
//! Both travel as `http`/tonic extensions, so any tonic stub over [`Balance`](super::Balance)
//! can use them without new API on the service itself.

use crate::member::Member;

/// Response extension set by [`Balance`](super::Balance): the member that served the request.
///
/// Read it from `tonic::Response::extensions()`. For a stream it names the member that
/// carries the whole stream, and is always set. A unary answer carries it only when its
/// request asked with [`AskServedBy`]: marking every answer cost three allocations per request
/// (an answer's extensions come empty from a member, so the mark needs a map of its own), paid
/// by callers that never read it.
#[derive(Clone, Debug)]
pub struct ServedBy(pub Member);

/// Request extension read by [`Balance`](super::Balance): mark the unary answer
/// [`ServedBy`] its member (streams always are).
///
/// ```
/// let mut req = tonic::Request::new(());
/// req.extensions_mut().insert(etcd_health::extend::AskServedBy);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AskServedBy;

/// Marks an answer's `extensions` as served by `member`.
///
/// An answer's extensions come empty from the member, and a map of them costs three
/// allocations (the map, its table, the mark). So with `extensions` empty, the map of `spare`
/// (the kept request's, no longer needed once the request is answered) is taken instead,
/// emptied: one allocation, the mark's.
pub(crate) fn mark_served(
    extensions: &mut http::Extensions,
    member: &Member,
    spare: &mut http::Extensions,
) {
    if extensions.is_empty() {
        std::mem::swap(extensions, spare);
        extensions.clear();
    }
    extensions.insert(ServedBy(member.clone()));
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Other(u8);

    /// An empty answer's extensions take the spare map, emptied of what the request carried;
    /// an answer's own extensions are kept.
    #[test]
    fn marks_answers_with_the_spare_map_emptied() {
        let member = Member::new(3, "http://127.0.0.1:3".parse().expect("uri"));
        let mut spare = http::Extensions::new();
        spare.insert(Other(1));
        let mut answer = http::Extensions::new();
        mark_served(&mut answer, &member, &mut spare);
        assert_eq!(answer.get::<ServedBy>().map(|s| s.0.index()), Some(3));
        assert_eq!(answer.get::<Other>(), None, "the request's own are dropped");

        let mut answer = http::Extensions::new();
        answer.insert(Other(2));
        let mut spare = http::Extensions::new();
        spare.insert(Other(1));
        mark_served(&mut answer, &member, &mut spare);
        assert_eq!(
            answer.get::<Other>(),
            Some(&Other(2)),
            "the answer's own are kept"
        );
        assert!(answer.get::<ServedBy>().is_some());
        assert_eq!(spare.get::<Other>(), Some(&Other(1)), "spare untouched");
    }
}
