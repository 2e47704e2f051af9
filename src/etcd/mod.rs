//! Facts of etcd's protocol that more than one part of the stack needs.
//!
//! Why a module of its own: which answers mean "the cluster is electing", which methods only
//! the leader may serve and which metadata marks an answer of ours are etcd's facts, not a
//! balancer's or a probe's; one table each keeps them from drifting apart.

use tonic::Code;

/// etcd's answer on a member that knows no leader (with `hasleader`, before any handler ran).
pub(crate) const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's answer to a linearizable read whose ReadIndex was cut short by a leader change.
pub(crate) const LEADER_CHANGED: &str = "etcdserver: leader changed";
/// etcd's answer to a request only the leader may serve (`MoveLeader`), sent to a follower.
pub(crate) const NOT_LEADER: &str = "etcdserver: not leader";

/// etcd's answer to a proposal that did not commit in time; with ", possibly due to previous
/// leader failure" or "... connection lost" when it blames the leader.
pub(crate) const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";

/// Whether an answer says the member has (or just lost) no leader, or could not get a
/// proposal through one in time: a fact about the cluster at that moment (an election, or this
/// member cut off from the quorum), to be told apart by asking the other members, not a
/// failure of this member by itself.
pub(crate) fn is_leaderless(code: Code, message: &str) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::FailedPrecondition
    ) && (message.contains(NO_LEADER)
        || message.contains(LEADER_CHANGED)
        || message.contains(REQUEST_TIMED_OUT))
}

/// Whether an answer says the request went to a member that is not the leader, when only the
/// leader may serve it. etcd refuses such a request before doing anything.
pub(crate) fn is_not_leader(code: Code, message: &str) -> bool {
    code == Code::FailedPrecondition && message.contains(NOT_LEADER)
}

/// etcd's refusal of a membership change while not every member has been connected for a
/// while (`--strict-reconfig-check`): a fact about the cluster, refused before anything ran.
pub(crate) const UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";
/// etcd's admission check in front of every proposal: refused before anything ran.
pub(crate) const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// Whether etcd refused a request as a whole-cluster condition, before its handler could
/// apply anything: it says nothing against the member that answered, and a write so refused
/// was certainly not applied.
pub(crate) fn is_cluster_refusal(message: &str) -> bool {
    message == UNHEALTHY_CLUSTER || message == TOO_MANY_REQUESTS
}

/// Methods only the leader may serve; elsewhere etcd answers [`NOT_LEADER`].
pub(crate) fn is_leader_only(path: &str) -> bool {
    path == "/etcdserverpb.Maintenance/MoveLeader"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderless_answers() {
        assert!(is_leaderless(Code::Unavailable, "etcdserver: no leader"));
        assert!(is_leaderless(
            Code::Unavailable,
            "etcdserver: leader changed"
        ));
        assert!(is_leaderless(Code::Unknown, "etcdserver: leader changed"));
        assert!(is_leaderless(
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure"
        ));
        assert!(!is_leaderless(Code::DeadlineExceeded, "deadline"));
        assert!(!is_leaderless(Code::NotFound, "etcdserver: no leader"));
        assert!(is_not_leader(
            Code::FailedPrecondition,
            "etcdserver: not leader"
        ));
        assert!(is_leader_only("/etcdserverpb.Maintenance/MoveLeader"));
        assert!(is_cluster_refusal("etcdserver: unhealthy cluster"));
        assert!(is_cluster_refusal("etcdserver: too many requests"));
        assert!(!is_cluster_refusal("etcdserver: request timed out"));
        assert!(!is_leader_only("/etcdserverpb.KV/Range"));
    }
}
