//! Whether an answer comes from a member that still believes in a leader the cluster has
//! replaced.
//!
//! Why its own file: a lease renewed by a deposed leader renews nothing, and every stream that
//! carries keep-alives (the keep-alive engine behind the tower
//! [`KeepAlive`](crate::lease::KeepAlive) and etcd-client's keep-alives, and the drop-in's plain
//! driver with stream resumption off) must judge such answers the same way.

/// Whether an answer given at raft term `answered_at` comes from a member behind the leader
/// the health checker knows, leading at `leader_term`: a deposed leader that does not know it
/// yet (etcd renews a lease on whichever member still believes it leads, and for up to an
/// election timeout two do), or a follower that forwarded to one. Its renewal renews nothing
/// the real leader sees, and its TTL 0 may only mean it never applied the grant: neither
/// counts. Term 0 (no header) and no known leader tell nothing: the answer counts.
///
/// The leader's term, not the highest term seen: without pre-vote (etcd 3.4's default) a
/// member cut off from the others keeps raising its term with elections nobody joins, and
/// every true answer would look old against it.
pub(crate) fn behind_the_leader(answered_at: u64, leader_term: Option<u64>) -> bool {
    answered_at != 0 && leader_term.is_some_and(|t| answered_at < t)
}

#[cfg(test)]
mod tests {
    use super::behind_the_leader;

    #[test]
    fn only_an_answer_below_the_known_leaders_term_is_behind() {
        assert!(behind_the_leader(44, Some(45)), "a deposed leader's answer");
        assert!(
            !behind_the_leader(45, Some(45)),
            "the leader's or a current follower's"
        );
        assert!(
            !behind_the_leader(46, Some(45)),
            "a newer term than the checker knows: the member knows better"
        );
        assert!(
            !behind_the_leader(0, Some(45)),
            "no header: nothing to judge"
        );
        assert!(
            !behind_the_leader(44, None),
            "no leader known: nothing to judge"
        );
    }
}
