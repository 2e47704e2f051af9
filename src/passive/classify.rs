//! Which answers count against a member.

use std::sync::Arc;

use tonic::Code;

use crate::config::Config;
use crate::health::{Classify, DefaultClassifier, Outcome};

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
    /// The member's outcome, by the classifier (`None`: counts neither way).
    Member(Option<Outcome>),
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

/// Judges gRPC and HTTP answers: etcd's facts about the cluster here, the rest by the
/// health state's [`Classify`] hook (by default the configured lists, [`DefaultClassifier`]).
#[derive(Clone, Debug)]
pub(crate) struct Classifier {
    hook: Arc<dyn Classify>,
}

impl Classifier {
    /// The classifier of a health state's stacks: its `hook`, else the default from its
    /// `config`.
    pub(crate) fn new(hook: Option<Arc<dyn Classify>>, config: &Config) -> Self {
        Self::with_hook(hook.unwrap_or_else(|| Arc::new(DefaultClassifier::new(config))))
    }

    /// A classifier asking `hook`.
    pub(crate) fn with_hook(hook: Arc<dyn Classify>) -> Self {
        Self { hook }
    }

    /// What a gRPC status says: a fact about the cluster, or the member's outcome (by the
    /// hook; `None`: neither way).
    pub(crate) fn verdict(&self, status: &tonic::Status, not_leader: NotLeader) -> Verdict {
        let (code, message) = (status.code(), status.message());
        let not_leader =
            not_leader == NotLeader::Cluster && crate::etcd::is_not_leader(code, message);
        if not_leader || crate::etcd::is_leaderless(code, message) {
            return Verdict::Cluster { not_leader };
        }
        if code == Code::Ok {
            return Verdict::Member(Some(Outcome::Success));
        }
        Verdict::Member(self.hook.status(status))
    }

    /// The verdict of a non-gRPC HTTP status (by the hook).
    pub(crate) fn http(&self, status: u16) -> Option<Outcome> {
        self.hook.http(status)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn classifier() -> Classifier {
        Classifier::with_hook(Arc::new(DefaultClassifier::new(&Config::default())))
    }

    fn st(code: Code, message: &str) -> tonic::Status {
        tonic::Status::new(code, message)
    }

    #[test]
    fn cluster_facts_are_no_verdict_on_the_member() {
        let c = classifier();
        let cluster = |not_leader| Verdict::Cluster { not_leader };
        for how in [NotLeader::Cluster, NotLeader::Classified] {
            assert_eq!(
                c.verdict(&st(Code::Unavailable, "etcdserver: no leader"), how),
                cluster(false)
            );
            assert_eq!(
                c.verdict(&st(Code::Unknown, "etcdserver: leader changed"), how),
                cluster(false)
            );
            assert_eq!(
                c.verdict(
                    &st(Code::NotFound, "etcdserver: requested lease not found"),
                    how
                ),
                Verdict::Member(Some(Outcome::Success))
            );
            assert_eq!(
                c.verdict(&st(Code::Unavailable, "connection refused"), how),
                Verdict::Member(Some(Outcome::Failure))
            );
        }
        let not_leader =
            |how| c.verdict(&st(Code::FailedPrecondition, "etcdserver: not leader"), how);
        assert_eq!(not_leader(NotLeader::Cluster), cluster(true));
        assert_eq!(
            not_leader(NotLeader::Classified),
            Verdict::Member(Some(Outcome::Success))
        );
    }

    /// A hook's verdict stands, "neither" included; cluster facts never reach it.
    #[test]
    fn the_hook_decides_member_answers() {
        #[derive(Debug)]
        struct Strict;
        impl Classify for Strict {
            fn status(&self, status: &tonic::Status) -> Option<Outcome> {
                match status.code() {
                    Code::ResourceExhausted => Some(Outcome::Failure),
                    Code::NotFound => None,
                    _ => panic!("asked about {status:?}"),
                }
            }
            fn http(&self, _: u16) -> Option<Outcome> {
                Some(Outcome::Timeout)
            }
        }
        let c = Classifier::with_hook(Arc::new(Strict));
        let how = NotLeader::Cluster;
        assert_eq!(
            c.verdict(&st(Code::ResourceExhausted, "too big"), how),
            Verdict::Member(Some(Outcome::Failure))
        );
        assert_eq!(
            c.verdict(&st(Code::NotFound, "x"), how),
            Verdict::Member(None)
        );
        assert_eq!(
            c.verdict(&st(Code::Unavailable, "etcdserver: no leader"), how),
            Verdict::Cluster { not_leader: false }
        );
        assert_eq!(
            c.verdict(&st(Code::Ok, ""), how),
            Verdict::Member(Some(Outcome::Success))
        );
        assert_eq!(c.http(502), Some(Outcome::Timeout));
    }
}
