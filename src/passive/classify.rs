//! Which answers count against a member.

use tonic::Code;

use crate::config::Config;
use crate::health::Outcome;

/// What a gRPC status says of the member that answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A fact about the cluster at that moment, not a failure of this member by itself: it
    /// knows no leader or just lost it (see [`crate::etcd::is_leaderless`]), or it is not the
    /// leader a request needs (`not_leader`). A leader check tells an election from a member
    /// cut off from the quorum.
    Cluster {
        /// The answer was etcd's "not leader".
        not_leader: bool,
    },
    /// The member's outcome, by the configured lists.
    Member(Outcome),
}

/// How a "not leader" answer (a leader-only request sent to a follower) is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotLeader {
    /// As a fact about the cluster: the balancer judges an answer it can still act on, and
    /// re-sends the request to the leader, which a leader check must find first.
    Cluster,
    /// As any other status, by the configured lists: an answer read from a body's trailers
    /// has already reached the caller, and nothing is re-routed on it.
    Classified,
}

/// Judges gRPC and HTTP answers by the configured lists.
#[derive(Clone, Debug)]
pub(crate) struct Classifier {
    codes: Vec<Code>,
    messages: Vec<String>,
    healthy_http: Vec<u16>,
    unhealthy_http: Vec<u16>,
}

impl Classifier {
    pub(crate) fn new(config: &Config) -> Self {
        let passive = &config.checks.passive;
        Self {
            codes: config.failures.parsed_codes(),
            messages: config.failures.messages.clone(),
            healthy_http: passive.healthy.http_statuses.clone(),
            unhealthy_http: passive.unhealthy.http_statuses.clone(),
        }
    }

    /// What a gRPC status says: a fact about the cluster, or the member's outcome
    /// ([`status`](Self::status)).
    pub(crate) fn verdict(&self, code: Code, message: &str, not_leader: NotLeader) -> Verdict {
        let not_leader =
            not_leader == NotLeader::Cluster && crate::etcd::is_not_leader(code, message);
        if not_leader || crate::etcd::is_leaderless(code, message) {
            return Verdict::Cluster { not_leader };
        }
        Verdict::Member(self.status(code, message))
    }

    /// The verdict of a gRPC status on the member that returned it.
    pub(crate) fn status(&self, code: Code, message: &str) -> Outcome {
        if code == Code::Ok || crate::etcd::is_cluster_refusal(message) {
            // A whole-cluster refusal (membership change during a reconfiguration, the
            // proposal queue full) says nothing against the member that answered.
            return Outcome::Success;
        }
        if self.codes.contains(&code) || self.messages.iter().any(|m| message.contains(m.as_str()))
        {
            return Outcome::Failure;
        }
        if code == Code::DeadlineExceeded {
            return Outcome::Timeout;
        }
        // An application error: the member served the request.
        Outcome::Success
    }

    /// The verdict of a non-gRPC HTTP status, if it is in either list.
    pub(crate) fn http(&self, status: u16) -> Option<Outcome> {
        if self.unhealthy_http.contains(&status) {
            Some(Outcome::Failure)
        } else if self.healthy_http.contains(&status) {
            Some(Outcome::Success)
        } else {
            None
        }
    }
}

/// The verdict of a transport error (the request got no answer at all): a timeout if a
/// deadline ran out anywhere in the chain, else a connection failure.
pub(crate) fn transport_error(err: &(dyn std::error::Error + 'static)) -> Outcome {
    let timed_out = crate::grpc::chain(err).any(|e| {
        e.is::<tonic::TimeoutExpired>()
            || e.is::<tokio::time::error::Elapsed>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out {
        Outcome::Timeout
    } else {
        Outcome::TcpFailure
    }
}

/// Whether a transport error happened before any byte of the request could be sent: the
/// connection to the member could not be made.
pub(crate) fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::grpc::chain(err).any(|e| e.is::<tonic::ConnectError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::new(&Config::default())
    }

    #[test]
    fn member_level_answers_are_failures() {
        let c = classifier();
        assert_eq!(
            c.status(Code::Unavailable, "etcdserver: no leader"),
            Outcome::Failure
        );
        assert_eq!(c.status(Code::Unavailable, "anything"), Outcome::Failure);
        assert_eq!(
            c.status(Code::Unknown, "context deadline exceeded"),
            Outcome::Failure
        );
        assert_eq!(
            c.status(Code::Unknown, "etcdserver: leader changed"),
            Outcome::Failure
        );
        assert_eq!(
            c.status(Code::Unavailable, "etcdserver: request timed out"),
            Outcome::Failure
        );
    }

    #[test]
    fn application_errors_are_successes() {
        let c = classifier();
        for (code, msg) in [
            (Code::NotFound, "etcdserver: requested lease not found"),
            (Code::InvalidArgument, "etcdserver: key is not provided"),
            (Code::PermissionDenied, "etcdserver: permission denied"),
            (
                Code::FailedPrecondition,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (Code::Ok, ""),
            (Code::Unavailable, "etcdserver: unhealthy cluster"),
        ] {
            assert_eq!(c.status(code, msg), Outcome::Success, "{code:?} {msg}");
        }
        assert_eq!(
            c.status(Code::DeadlineExceeded, "deadline"),
            Outcome::Timeout
        );
    }

    #[test]
    fn cluster_facts_are_no_verdict_on_the_member() {
        let c = classifier();
        let cluster = |not_leader| Verdict::Cluster { not_leader };
        for how in [NotLeader::Cluster, NotLeader::Classified] {
            assert_eq!(
                c.verdict(Code::Unavailable, "etcdserver: no leader", how),
                cluster(false)
            );
            assert_eq!(
                c.verdict(Code::Unknown, "etcdserver: leader changed", how),
                cluster(false)
            );
            assert_eq!(
                c.verdict(Code::NotFound, "etcdserver: requested lease not found", how),
                Verdict::Member(Outcome::Success)
            );
            assert_eq!(
                c.verdict(Code::Unavailable, "connection refused", how),
                Verdict::Member(Outcome::Failure)
            );
        }
        let not_leader = |how| c.verdict(Code::FailedPrecondition, "etcdserver: not leader", how);
        assert_eq!(not_leader(NotLeader::Cluster), cluster(true));
        assert_eq!(
            not_leader(NotLeader::Classified),
            Verdict::Member(Outcome::Success)
        );
    }

    #[test]
    fn http_lists() {
        let c = classifier();
        assert_eq!(c.http(500), Some(Outcome::Failure));
        assert_eq!(c.http(200), Some(Outcome::Success));
        assert_eq!(c.http(404), None);
    }
}
