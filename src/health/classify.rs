//! Which answers count against the member that gave them: the [`Classify`] hook and its
//! default, [`DefaultClassifier`].
//!
//! Why a hook: whether an error is the member's fault depends on the deployment. The default
//! says most gRPC errors are the application's (a missing key, a denied permission, NOSPACE)
//! and count for the member; an integrator who knows that `ResourceExhausted` from one member
//! means that member is overloaded, or who marks failures with an error detail of their own,
//! can say so without forking the crate. Why here, in the pure `health` module: the answer to
//! "what does this say of the member" is an [`Outcome`], and both the health state (which
//! holds the hook) and the passive checks (which call it) import this leaf.

use std::fmt;

use tonic::Code;

use super::Outcome;
use crate::config::Config;

/// Judges the answers members give to application requests (the passive checks).
///
/// The stack consults it for every answer that is not `OK` and is not one of etcd's answers
/// about the cluster rather than the member ("no leader", "leader changed", and "not leader"
/// for a request that needs the leader): those steer the leader checks and the re-routing of
/// leader-only requests, and are decided before the classifier is asked. `OK` is always a
/// success (read on the happy path without building a status). Transport errors (no answer at
/// all) are `TcpFailure` or `Timeout` whatever the classifier says.
///
/// The verdict feeds the member's passive counters (`Some(Outcome::Failure)` counts toward
/// `checks.passive.unhealthy.http_failures`, `Some(Outcome::Success)` is an answer the member
/// served, `None` counts neither way), and a failure verdict on a request lets the balancer
/// try another member under the retry rules (never a write that may have been applied).
///
/// Calls are synchronous, on the request's path: keep them cheap and never block.
///
/// # Example
///
/// `ResourceExhausted` (a member overloaded, or a request over its size limit) counts against
/// the member; everything else as by default:
///
/// ```
/// use std::sync::Arc;
///
/// use etcd_health::extend::{Classify, DefaultClassifier};
/// use etcd_health::observe::Outcome;
///
/// #[derive(Debug)]
/// struct Overload(DefaultClassifier);
///
/// impl Classify for Overload {
///     fn status(&self, status: &tonic::Status) -> Option<Outcome> {
///         match status.code() {
///             tonic::Code::ResourceExhausted => Some(Outcome::Failure),
///             _ => self.0.status(status),
///         }
///     }
///     fn http(&self, status: u16) -> Option<Outcome> {
///         self.0.http(status)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), etcd_health::Error> {
/// let config = etcd_health::Config::default();
/// let checker = etcd_health::HealthChecker::builder(config.clone())
///     .classifier(Arc::new(Overload(DefaultClassifier::new(&config))))
///     .build(&["http://127.0.0.1:2379"])?;
/// # drop(checker);
/// # Ok(())
/// # }
/// ```
pub trait Classify: Send + Sync + fmt::Debug {
    /// The verdict of a gRPC status (never `OK`) on the member that returned it.
    fn status(&self, status: &tonic::Status) -> Option<Outcome>;

    /// The verdict of an answer that is not gRPC at all (an HTTP status from a proxy in
    /// front of the member, with no `grpc-status`).
    fn http(&self, status: u16) -> Option<Outcome>;
}

/// The default [`Classify`]: the config's `failures.codes` and `failures.messages` are
/// failures, `DEADLINE_EXCEEDED` a timeout, etcd's whole-cluster refusals and every other
/// error the application's (a success for the member); HTTP statuses by
/// `checks.passive.healthy/unhealthy.http_statuses`.
#[derive(Clone, Debug)]
pub struct DefaultClassifier {
    codes: Vec<Code>,
    messages: Vec<String>,
    healthy_http: Vec<u16>,
    unhealthy_http: Vec<u16>,
}

impl DefaultClassifier {
    /// The classifier `config` describes.
    pub fn new(config: &Config) -> Self {
        let passive = &config.checks.passive;
        Self {
            codes: config.failures.parsed_codes(),
            messages: config.failures.messages.clone(),
            healthy_http: passive.healthy.http_statuses.clone(),
            unhealthy_http: passive.unhealthy.http_statuses.clone(),
        }
    }

    /// The verdict of a gRPC status with `code` and `message` on the member that returned
    /// it.
    pub fn outcome(&self, code: Code, message: &str) -> Outcome {
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
}

impl Classify for DefaultClassifier {
    fn status(&self, status: &tonic::Status) -> Option<Outcome> {
        Some(self.outcome(status.code(), status.message()))
    }

    fn http(&self, status: u16) -> Option<Outcome> {
        if self.unhealthy_http.contains(&status) {
            Some(Outcome::Failure)
        } else if self.healthy_http.contains(&status) {
            Some(Outcome::Success)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_level_answers_are_failures() {
        let c = DefaultClassifier::new(&Config::default());
        assert_eq!(
            c.outcome(Code::Unavailable, "etcdserver: no leader"),
            Outcome::Failure
        );
        assert_eq!(c.outcome(Code::Unavailable, "anything"), Outcome::Failure);
        assert_eq!(
            c.outcome(Code::Unknown, "context deadline exceeded"),
            Outcome::Failure
        );
        assert_eq!(
            c.outcome(Code::Unknown, "etcdserver: leader changed"),
            Outcome::Failure
        );
        assert_eq!(
            c.outcome(Code::Unavailable, "etcdserver: request timed out"),
            Outcome::Failure
        );
    }

    #[test]
    fn application_errors_are_successes() {
        let c = DefaultClassifier::new(&Config::default());
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
            assert_eq!(c.outcome(code, msg), Outcome::Success, "{code:?} {msg}");
        }
        assert_eq!(
            c.outcome(Code::DeadlineExceeded, "deadline"),
            Outcome::Timeout
        );
    }

    #[test]
    fn http_lists() {
        let c = DefaultClassifier::new(&Config::default());
        assert_eq!(c.http(500), Some(Outcome::Failure));
        assert_eq!(c.http(200), Some(Outcome::Success));
        assert_eq!(c.http(404), None);
    }
}
