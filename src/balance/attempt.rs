//! One attempt of a request on one member, and the verdict on it.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use tower::ServiceExt;

use super::buffered::Buffered;
use super::ServedBy;
use crate::etcd::MethodKind;
use crate::grpc::{sanitize, status_of, GrpcBody, GrpcService, SanitizedBody};
use crate::health::Outcome;
use crate::passive::{
    judge, never_connected, transport_error, ClassifiedBody, NotLeader, Tracker, Verdict,
};

/// How one attempt ended.
pub(crate) enum Attempt {
    /// An answer for the caller: a success, an application error, or a stream.
    Answer(Response<tonic::body::Body>),
    /// The member failed the request.
    Failed(Failure),
}

/// A member-level failure of one attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the caller gets if the request is not retried.
    pub(crate) status: tonic::Status,
    /// The member's own trailers-only answer, if it gave one (returned as is when the
    /// request is not retried, so callers see exactly what etcd said).
    pub(crate) response: Option<Response<tonic::body::Body>>,
    /// Whether the member may have processed the request. `false` only when that is
    /// certain: no connection could be made, or etcd refused it before its handler ran.
    pub(crate) maybe_processed: bool,
    /// The member knew no leader, lost it mid-request, or is not the leader a request needs:
    /// a state of the cluster, which a leader check tells apart from a member failure.
    pub(crate) leaderless: bool,
}

impl Failure {
    /// The failure as the caller sees it.
    pub(crate) fn into_result(self) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        match self.response {
            Some(response) => Ok(response),
            None => Err(self.status.into()),
        }
    }

    /// A request that never left: no member could take it.
    pub(crate) fn not_sent(status: tonic::Status) -> Self {
        Self {
            status,
            response: None,
            maybe_processed: false,
            leaderless: false,
        }
    }

    /// Marks a write that may have been applied as *outcome unknown* (see
    /// [`crate::outcome_unknown`]), in the status and in etcd's own answer.
    pub(crate) fn outcome_unknown(mut self) -> Self {
        crate::error::mark_outcome_unknown(self.status.metadata_mut());
        if let Some(response) = &mut self.response {
            crate::error::mark_outcome_unknown_headers(response.headers_mut());
        }
        let message = format!(
            "{}{}",
            crate::error::OUTCOME_UNKNOWN_PREFIX,
            self.status.message()
        );
        let metadata = self.status.metadata().clone();
        self.status = tonic::Status::with_metadata(self.status.code(), message, metadata);
        self
    }
}

/// Limits of one attempt.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// The attempt fails with `DeadlineExceeded` after this long.
    pub(crate) deadline: Option<Duration>,
    /// Still unanswered after this long while a peer answered: a hang of this member.
    pub(crate) hang_after: Option<Duration>,
    /// Whether the request carried `hasleader`.
    pub(crate) has_leader: bool,
}

/// Sends `req` to one member, `started` now, and judges the answer for the passive counters.
///
/// Not an `async fn` itself: the call is made here and boxed on its own, and
/// [`judge_attempt`] holds a pointer to it. An `async fn` taking the service and the request
/// would keep them apart from the call it moves them into, the request twice over; this way
/// both blocks stay under 1 KiB, which glibc serves from the thread's cache (see `Replay` in
/// the service).
pub(crate) fn attempt<S: GrpcService>(
    svc: S,
    req: Request<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
    started: Instant,
) -> impl std::future::Future<Output = Attempt> + Send {
    judge_attempt(Box::pin(svc.oneshot(req)), tracker, kind, limits, started)
}

/// The body of [`attempt`]: awaits `call` within the limits, then judges its answer.
async fn judge_attempt<F, B, E>(
    mut call: F,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
    started: Instant,
) -> Attempt
where
    F: std::future::Future<Output = Result<Response<B>, E>> + Send + Unpin,
    B: GrpcBody + Send + 'static,
    E: Into<tower::BoxError>,
{
    let unary = kind == MethodKind::Unary;
    let deadline = limits.deadline.map(|d| started + d);
    let mut hang_check = limits
        .hang_after
        .filter(|_| unary)
        .map(|a| (a, started + a));
    // The clock as last read: when the attempt started, then when a timer fired.
    let mut now = started;
    let result = loop {
        // One timer for both limits (the earlier of them): one registration per attempt, and
        // a smaller future.
        let wake = earliest(deadline, hang_check.map(|(_, at)| at));
        tokio::select! {
            biased;
            r = &mut call => break r.map_err(Into::into),
            _ = sleep_until_opt(wake, now) => {
                now = Instant::now();
                if deadline.is_some_and(|d| d <= now) {
                    let d = limits.deadline.unwrap_or_default();
                    let member = tracker.entry().member().clone();
                    tracker.finish(judge(Outcome::Timeout, kind), unary);
                    return Attempt::Failed(Failure {
                        status: tonic::Status::deadline_exceeded(format!(
                            "etcd-health: {member} did not answer within {d:?}"
                        )),
                        response: None,
                        maybe_processed: true,
                        leaderless: false,
                    });
                }
                let Some((after, at)) = hang_check else { continue };
                if at > now {
                    continue;
                }
                let checker = tracker.checker();
                let entry = tracker.entry();
                let since = started.into_std();
                if checker.hangs(entry, since) {
                    let waited = started.elapsed();
                    tracing::debug!(member = %entry.member(), ?waited, "request hangs while peers answer");
                    // Charged to its latency first, so the balancer prefers its peers at once.
                    let slowest_peer = checker.slowest_peer_latency(entry);
                    entry.load().charge_hang(waited, slowest_peer, crate::checker::now());
                    checker.record_hang(entry);
                    hang_check = None;
                } else {
                    // Nobody answers (an election), this member answers others, or the leader
                    // changed while it waited: look again later.
                    hang_check = Some((after, now + after));
                }
            }
        }
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            let outcome = transport_error(err.as_ref());
            let maybe_processed = !never_connected(err.as_ref());
            let why = crate::grpc::describe(err.as_ref());
            let member = tracker.entry().member().clone();
            tracker.finish(judge(outcome, kind), false);
            let status = match outcome {
                Outcome::Timeout => tonic::Status::deadline_exceeded(format!(
                    "etcd-health: {member} did not answer in time: {why}"
                )),
                _ => tonic::Status::unavailable(format!(
                    "etcd-health: {member} is unreachable: {why}"
                )),
            };
            return Attempt::Failed(Failure {
                status,
                response: None,
                maybe_processed,
                leaderless: false,
            });
        }
    };
    let (mut parts, body) = resp.into_parts();
    // Nothing of the member's reaches tonic's status parser unchecked: it panics on some input.
    sanitize(&mut parts.headers);
    let body = SanitizedBody::new(body);
    parts
        .extensions
        .insert(ServedBy(tracker.entry().member().clone()));
    if parts.status != http::StatusCode::OK {
        tracker.finish_http(parts.status.as_u16());
        return Attempt::Answer(Response::from_parts(parts, tonic::body::Body::new(body)));
    }
    if let Some(status) = status_of(&parts.headers) {
        // A trailers-only answer: etcd's errors come this way, before any message.
        return judge_status(
            status,
            parts,
            tonic::body::Body::new(body),
            tracker,
            kind,
            limits,
        );
    }
    if unary && announces_trailers(&parts.headers) {
        // etcd serving gRPC through Go's HTTP handler (its TLS listener shares the port with
        // HTTP) answers errors in trailers after the headers, not trailers-only: read this
        // unary answer to its end, so an error is judged here, where it can still be retried.
        let rest = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // Boxed: this rare path's future would otherwise make every attempt's as large.
        return match Box::pin(read_to_end(body, rest)).await {
            Ok((data, mut trailers)) => {
                let status = trailers.as_ref().and_then(status_of);
                if data.is_empty() && status.as_ref().is_some_and(|s| s.code() != tonic::Code::Ok) {
                    // An error and nothing else: handed on in the standard trailers-only form,
                    // so everything that reads a status from the headers (the auth layer, the
                    // drop-in's token mapping, outcome marks) sees it as it would without TLS.
                    parts.headers.extend(trailers.take().unwrap_or_default());
                }
                let body = tonic::body::Body::new(Buffered::new(data, trailers));
                match status {
                    Some(status) => judge_status(status, parts, body, tracker, kind, limits),
                    None => {
                        tracker.finish(judge(Outcome::Success, kind), unary);
                        Attempt::Answer(Response::from_parts(parts, body))
                    }
                }
            }
            Err((outcome, why)) => {
                let member = tracker.entry().member().clone();
                tracker.finish(judge(outcome, kind), false);
                Attempt::Failed(Failure {
                    status: tonic::Status::unavailable(format!(
                        "etcd-health: {member} broke off its answer: {why}"
                    )),
                    response: None,
                    maybe_processed: true,
                    leaderless: false,
                })
            }
        };
    }
    let body = match kind {
        MethodKind::Stream => {
            // The stream is open: the member serves it.
            tracker.finish(Some(Outcome::Success), false);
            tonic::body::Body::new(body)
        }
        _ => tonic::body::Body::new(ClassifiedBody::new(body, tracker, kind)),
    };
    Attempt::Answer(Response::from_parts(parts, body))
}

/// Judges an answer whose gRPC status is known (from a trailers-only answer, or from the
/// trailers of a unary answer read to its end).
fn judge_status(
    status: tonic::Status,
    parts: http::response::Parts,
    body: tonic::body::Body,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> Attempt {
    let outcome = match tracker.finish_status(&status, kind, NotLeader::Cluster) {
        Verdict::Cluster { not_leader } => {
            // Not this member's failure by itself: a leader check tells an election (nobody
            // to blame) from a member cut off from the quorum, or finds the leader.
            let response = Response::from_parts(parts, body);
            return Attempt::Failed(Failure {
                maybe_processed: !(not_leader
                    || refused_before_handler(&status, limits.has_leader)),
                status,
                response: Some(response),
                leaderless: true,
            });
        }
        Verdict::Member(outcome) => outcome,
    };
    let response = Response::from_parts(parts, body);
    if !outcome.is_failure() {
        return Attempt::Answer(response);
    }
    let maybe_processed = !refused_before_handler(&status, limits.has_leader);
    Attempt::Failed(Failure {
        status,
        response: Some(response),
        maybe_processed,
        leaderless: false,
    })
}

/// Whether the headers announce trailers (`Trailer: Grpc-Status`, as Go's HTTP server sends).
fn announces_trailers(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRAILER)
}

/// Reads a body to its end, within `limit`; its data and (sanitized) trailers.
async fn read_to_end<B: GrpcBody>(
    body: B,
    limit: Option<Duration>,
) -> Result<(Bytes, Option<http::HeaderMap>), (Outcome, String)> {
    let collect = http_body_util::BodyExt::collect(body);
    let collected = match limit {
        Some(limit) => tokio::time::timeout(limit, collect).await.map_err(|_| {
            let why = format!("no end of the answer within {limit:?}");
            (Outcome::Timeout, why)
        })?,
        None => collect.await,
    }
    .map_err(|e| {
        (
            Outcome::TcpFailure,
            crate::grpc::describe(e.into().as_ref()),
        )
    })?;
    let mut trailers = collected.trailers().cloned();
    if let Some(t) = &mut trailers {
        sanitize(t);
    }
    Ok((collected.to_bytes(), trailers))
}

/// The earlier of two optional instants.
pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `at`, or for ever without one. A time already reached by `now` (the caller's
/// latest reading of the clock: the happy path reads it a few times per request, not once per
/// step) is ready at once: a tokio timer would first wait for its next tick (up to a
/// millisecond), which on the happy path is most of a request's latency.
pub(super) async fn sleep_until_opt(at: Option<Instant>, now: Instant) {
    match at {
        Some(at) if at <= now => {}
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether etcd refused the request before its handler ran, so it cannot have been applied:
/// "no leader" from the `hasleader` interceptor (only when we sent `hasleader`), and "too
/// many requests" from the admission check in front of every proposal.
fn refused_before_handler(status: &tonic::Status, has_leader: bool) -> bool {
    let msg = status.message();
    (has_leader && status.code() == tonic::Code::Unavailable && msg == crate::etcd::NO_LEADER)
        || crate::etcd::is_cluster_refusal(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pre_handler_refusals_are_safe_to_resend() {
        let no_leader = tonic::Status::unavailable("etcdserver: no leader");
        assert!(refused_before_handler(&no_leader, true));
        assert!(!refused_before_handler(&no_leader, false));
        let timed_out = tonic::Status::unavailable("etcdserver: request timed out");
        assert!(!refused_before_handler(&timed_out, true));
        let leader_changed = tonic::Status::unavailable("etcdserver: leader changed");
        assert!(!refused_before_handler(&leader_changed, true));
        let busy = tonic::Status::resource_exhausted("etcdserver: too many requests");
        assert!(refused_before_handler(&busy, false));
    }

    #[test]
    fn connect_errors_are_never_sent() {
        let err = tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(never_connected(&err));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!never_connected(&reset));
    }
}
