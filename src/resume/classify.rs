//! Member failure or final answer?

use tonic::Code;

use crate::etcd::HAS_LEADER;

/// Whether a stream that failed with `status` should be re-opened on another member.
///
/// Member-level failures (unreachable, reset, timeouts, "no leader") are; answers about the
/// request itself (bad argument, permission, auth, not found) are not: they would fail the
/// same way everywhere, so retrying them only spins.
pub(crate) fn is_member_failure(status: &tonic::Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted => true,
        Code::FailedPrecondition => crate::etcd::says_leader_lost(status.message()),
        _ => false,
    }
}

/// Adds `hasleader: true` (when asked) and the members to avoid to a stream request.
pub(crate) fn set_stream_metadata<T>(
    req: &mut tonic::Request<T>,
    require_leader: bool,
    avoid: crate::balance::AvoidMembers,
) {
    if require_leader {
        req.metadata_mut().insert(
            HAS_LEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    if !avoid.0.is_empty() {
        req.extensions_mut().insert(avoid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_failures_are_retried_answers_are_not() {
        assert!(is_member_failure(&tonic::Status::unavailable(
            "etcdserver: no leader"
        )));
        assert!(is_member_failure(&tonic::Status::unknown(
            "h2 protocol error"
        )));
        assert!(!is_member_failure(&tonic::Status::permission_denied("x")));
        assert!(!is_member_failure(&tonic::Status::invalid_argument("x")));
        assert!(!is_member_failure(&tonic::Status::failed_precondition(
            "mvcc: x"
        )));
    }
}
