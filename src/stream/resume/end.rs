//! Member failure or final answer?

use tonic::Code;

use crate::member::Member;

/// A stream lost its member (failed with a member failure, ended, went quiet, or its member
/// was evicted): the helper opens it again, elsewhere.
#[derive(Clone, Debug)]
pub(crate) struct Lost {
    /// The member the stream was on, when known.
    pub(crate) member: Option<Member>,
    /// Why, for the caller's state and the logs.
    pub(crate) reason: String,
}

// === impl Lost ===

impl Lost {
    pub(crate) fn new(member: Option<Member>, reason: impl Into<String>) -> Self {
        Self {
            member,
            reason: reason.into(),
        }
    }

    /// The health checker evicted the stream's member.
    pub(crate) fn evicted(member: Option<Member>) -> Self {
        Self::new(member, "member evicted by the health checker")
    }
}

/// What a stream that failed with `status` on `member` means: a member failure is [`Lost`]
/// (open the stream elsewhere); anything else is etcd's answer about the request itself and
/// is handed back, for the helper to end with.
pub(crate) fn classify(
    status: tonic::Status,
    member: Option<Member>,
) -> Result<Lost, tonic::Status> {
    if is_member_failure(&status) {
        Ok(Lost::new(
            member,
            format!("{:?}: {}", status.code(), status.message()),
        ))
    } else {
        Err(status)
    }
}

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

    #[test]
    fn a_member_failure_is_lost_on_its_member_an_answer_comes_back() {
        let m = Member::new(2, "http://m2:2379".parse().expect("uri"));
        let lost = classify(tonic::Status::unavailable("etcdserver: no leader"), Some(m))
            .expect("a member failure");
        assert_eq!(lost.member.map(|m| m.index()), Some(2));
        assert_eq!(lost.reason, "Unavailable: etcdserver: no leader");
        let answer = classify(tonic::Status::not_found("requested lease not found"), None)
            .expect_err("an answer");
        assert_eq!(answer.code(), Code::NotFound);
    }
}
