//! One attempt of a request on one member, and the verdict on it.

use std::time::Duration;

use tokio::time::Instant;

use http::{Request, Response};
use tower::ServiceExt;

use super::buffered::{Buffered, Frames};
use super::ServedBy;
use crate::etcd::MethodKind;
use crate::grpc::{sanitize, status_of, GrpcBody, GrpcService, SanitizedBody};
use crate::health::Outcome;
use crate::member::MemberEntry;
use crate::passive::{judge, transport_error, ClassifiedBody, NotLeader, Tracker, Verdict};

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
    /// certain: HTTP/2 says it never reached the member ([`crate::grpc::unsent`]), or etcd
    /// refused it before its handler ran.
    pub(crate) maybe_processed: bool,
    /// The member knew no leader, lost it mid-request, or is not the leader a request needs:
    /// a state of the cluster, which a leader check tells apart from a member failure.
    pub(crate) leaderless: bool,
}

impl Attempt {
    /// The gRPC status the attempt ended with, as far as its head tells (for the metrics).
    fn code(&self) -> tonic::Code {
        match self {
            Attempt::Answer(response) => {
                status_of(response.headers()).map_or(tonic::Code::Ok, |s| s.code())
            }
            Attempt::Failed(failure) => failure.status.code(),
        }
    }
}

impl Failure {
    /// Marks the member's own answer, if any, as served by `member`.
    pub(crate) fn served_by(mut self, member: &crate::member::Member) -> Self {
        if let Some(response) = &mut self.response {
            response.extensions_mut().insert(ServedBy(member.clone()));
        }
        self
    }

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
    /// Whether `deadline` comes from the caller (and is sent on as `grpc-timeout`) rather
    /// than from `retry.budget`.
    pub(crate) callers_deadline: bool,
    /// Still unanswered after this long while a peer answered: a hang of this member.
    pub(crate) hang_after: Option<Duration>,
    /// Whether the request carried `hasleader`.
    pub(crate) has_leader: bool,
}

/// Sends `req` to one member, `started` now, and judges the answer for the passive counters.
/// A stream's answer is marked [`ServedBy`] its member; a unary one, when its request asked, by
/// the request's driver (see [`mark_served`](super::hint::mark_served)), which knows when no
/// other copy needs the kept request any more.
///
/// Not an `async fn` itself: the call (with the read of a unary answer, see [`fetch`]) is
/// made here and boxed on its own, and [`judge_attempt`] holds a pointer to it. An `async fn`
/// taking the service and the request would keep them apart from the call it moves them
/// into, the request twice over; this way both blocks stay under 1 KiB, which glibc serves
/// from the thread's cache (see `Replay` in the service).
pub(crate) fn attempt<S: GrpcService>(
    svc: S,
    req: Request<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
    started: Instant,
) -> impl std::future::Future<Output = Attempt> + Send {
    let timer = tracker.entry().metrics().attempt(req.uri().path());
    let call = fetch(svc.oneshot(req), kind == MethodKind::Unary);
    timer.time(
        judge_attempt(Box::pin(call), tracker, kind, limits, started),
        Attempt::code,
    )
}

/// Unary answers up to this size are read whole within their attempt (see [`Buffered`]);
/// a larger one is handed on once this much arrived, the rest as it comes, and judged at its
/// end. The bound keeps a member that streams without end (and a caller without a deadline)
/// from filling memory: past it, tonic's own message size limit applies as without us.
const READ_WHOLE_UP_TO: usize = 4 << 20;

/// What came back from a member.
enum Fetched<B> {
    /// The head of an answer, its body unread: a stream's, a long-blocking call's, a
    /// trailers-only answer's, one that is no gRPC answer.
    Head(Response<B>),
    /// A unary answer's head, and its body read within the attempt (see [`Buffered`]).
    Whole(http::response::Parts, Read<tonic::body::Body>),
}

/// Awaits `call`; with `whole`, reads a gRPC answer with a body to its end too.
async fn fetch<F, B, E>(call: F, whole: bool) -> Result<Fetched<B>, E>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
    B: GrpcBody + Send + 'static,
{
    let resp = call.await?;
    let has_body = resp.status() == http::StatusCode::OK
        && !resp.headers().contains_key(crate::grpc::header::STATUS);
    if !(whole && has_body) {
        return Ok(Fetched::Head(resp));
    }
    let (parts, body) = resp.into_parts();
    // As a tonic body, which a tonic channel's already is (no allocation then), and which
    // can be read without pinning it in place (so its rest can still be handed on).
    let body = tonic::body::Body::new(body);
    Ok(Fetched::Whole(parts, read_whole(body).await))
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
    F: std::future::Future<Output = Result<Fetched<B>, E>> + Send + Unpin,
    B: GrpcBody + Send + 'static,
    E: Into<tower::BoxError>,
{
    let mut watch = Watch::new(limits, kind == MethodKind::Unary, started, tracker.entry());
    let fetched = match watch.run(&mut call, &tracker).await {
        Waited::Done(Ok(fetched)) => fetched,
        Waited::Done(Err(err)) => return unreachable_member(err.into(), tracker, kind),
        Waited::TimedOut => return watch.timed_out(tracker, kind),
        Waited::Abandoned => return abandoned(tracker, started.elapsed()),
    };
    match fetched {
        Fetched::Head(resp) => judge_head(resp, tracker, kind, limits),
        Fetched::Whole(mut parts, read) => {
            sanitize(&mut parts.headers);
            judge_whole(parts, read, tracker, kind, limits)
        }
    }
}

/// The verdict when no answer came: the call failed.
fn unreachable_member(err: tower::BoxError, tracker: Tracker, kind: MethodKind) -> Attempt {
    let outcome = transport_error(err.as_ref());
    // A refused stream, a stream above the member's GOAWAY, a request never written: the
    // member never saw it, so even a write goes to another member (`grpc::unsent`).
    let unsent = crate::grpc::unsent(err.as_ref());
    let maybe_processed = unsent.is_none();
    let why = crate::grpc::describe(err.as_ref());
    let member = tracker.entry().member().clone();
    if let Some(unsent) = unsent {
        tracing::debug!(%member, ?unsent, error = %why, "the member never processed the request");
    }
    tracker.finish(judge(outcome, kind), false);
    let status = match outcome {
        Outcome::Timeout => tonic::Status::deadline_exceeded(format!(
            "etcd-health: {member} did not answer in time: {why}"
        )),
        _ => tonic::Status::unavailable(format!("etcd-health: {member} is unreachable: {why}")),
    };
    Attempt::Failed(Failure {
        status,
        response: None,
        maybe_processed,
        leaderless: false,
    })
}

/// The verdict when the member was ejected for sitting on requests while this one waited
/// (see [`MemberEntry::abandon`](crate::member::MemberEntry)): it may have been processed, so
/// a write ends as *outcome unknown* and a read goes to another member. Nothing more is charged
/// to the member: its ejection already was.
fn abandoned(tracker: Tracker, waited: Duration) -> Attempt {
    let member = tracker.entry().member().clone();
    tracker.finish(None, false);
    Attempt::Failed(Failure {
        status: tonic::Status::unavailable(format!(
            "etcd-health: {member} was ejected (it hangs or lost the leader) while this request waited {waited:?} for it"
        )),
        response: None,
        maybe_processed: true,
        leaderless: false,
    })
}

/// Judges an answer by its head: a trailers-only answer, one that is no gRPC answer, a
/// stream's or a long-blocking call's (judged as its body ends).
fn judge_head<B: GrpcBody + Send + 'static>(
    resp: Response<B>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> Attempt {
    let (mut parts, body) = resp.into_parts();
    // Nothing of the member's reaches tonic's status parser unchecked: it panics on some input.
    sanitize(&mut parts.headers);
    let body = SanitizedBody::new(body);
    if kind != MethodKind::Unary {
        parts
            .extensions
            .insert(ServedBy(tracker.entry().member().clone()));
    }
    if parts.status != http::StatusCode::OK {
        tracker.finish_http(parts.status.as_u16());
        return Attempt::Answer(Response::from_parts(parts, tonic::body::Body::new(body)));
    }
    if let Some(status) = status_of(&parts.headers) {
        // A trailers-only answer: etcd's errors come this way, before any message.
        let body = tonic::body::Body::new(body);
        return judge_status(status, parts, body, tracker, kind, limits);
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

/// Judges a unary answer read within its attempt. Its status is in its trailers; etcd
/// serving gRPC through Go's HTTP handler (its TLS listener shares the port with HTTP)
/// answers errors that way too, after the head, not trailers-only.
fn judge_whole(
    mut parts: http::response::Parts,
    read: Read<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> Attempt {
    let (frames, mut trailers) = match read {
        Read::Whole(frames, trailers) => (frames, trailers),
        Read::Large(frames, rest) => {
            let rest = ClassifiedBody::new(SanitizedBody::new(rest), tracker, kind);
            let body = Buffered::then(frames, tonic::body::Body::new(rest));
            return Attempt::Answer(Response::from_parts(parts, tonic::body::Body::new(body)));
        }
        Read::Broken(err) => {
            let member = tracker.entry().member().clone();
            let why = crate::grpc::describe(err.as_ref());
            tracker.finish(judge(transport_error(err.as_ref()), kind), false);
            return Attempt::Failed(Failure {
                status: tonic::Status::unavailable(format!(
                    "etcd-health: {member} broke off its answer: {why}"
                )),
                response: None,
                maybe_processed: true,
                leaderless: false,
            });
        }
    };
    let ok = trailers
        .as_ref()
        .and_then(|t| t.get(crate::grpc::header::STATUS))
        .is_some_and(|v| v.as_bytes() == b"0");
    if ok {
        // The common case, read without building a `tonic::Status` (an allocation on every
        // answer).
        tracker.finish(Some(Outcome::Success), true);
        let body = tonic::body::Body::new(Buffered::new(frames, trailers));
        return Attempt::Answer(Response::from_parts(parts, body));
    }
    match trailers.as_ref().and_then(status_of) {
        Some(status) => {
            if frames.is_empty() {
                // An error and nothing else: handed on in the standard trailers-only form, so
                // everything that reads a status from the headers (the auth layer, the
                // drop-in's token mapping, outcome marks) sees it as it would without TLS.
                parts.headers.extend(trailers.take().unwrap_or_default());
            }
            let body = tonic::body::Body::new(Buffered::new(frames, trailers));
            judge_status(status, parts, body, tracker, kind, limits)
        }
        None => {
            // Trailers without a status: the member answered (as a body judged at its end
            // counts it). No trailers at all: tonic reports the broken answer; nothing to
            // judge the member by.
            let outcome = trailers.is_some().then_some(Outcome::Success);
            tracker.finish(outcome, outcome.is_some());
            let body = tonic::body::Body::new(Buffered::new(frames, trailers));
            Attempt::Answer(Response::from_parts(parts, body))
        }
    }
}

/// A unary attempt still unanswered after this long starts listening for its member's
/// ejection (see [`Watch`]); one answered sooner (the happy path) never registers for it.
const WATCH_EJECTION_AFTER: Duration = Duration::from_millis(100);

/// How the wait of an attempt ended.
enum Waited<T> {
    /// The work finished.
    Done(T),
    /// The deadline passed first.
    TimedOut,
    /// The member was ejected for sitting on requests meanwhile.
    Abandoned,
}

/// An attempt's limits while it waits: the deadline, the check for a hang while peers
/// answer, and (for a unary attempt past [`WATCH_EJECTION_AFTER`]) its member's ejection. One
/// timer for all (the earliest of them): one registration per attempt, and a smaller future.
struct Watch {
    limits: Limits,
    deadline: Option<Instant>,
    /// How long a wait counts as a hang, and when it is next checked.
    hang_check: Option<(Duration, Instant)>,
    /// When to start listening for the member's ejection; `None` once listening (or never,
    /// for a stream).
    watch_from: Option<Instant>,
    /// The member's [`abandons`](crate::member::MemberEntry::abandons) when the attempt
    /// started.
    abandons: u64,
    started: Instant,
    /// The clock as last read: when the attempt started, then when a timer fired.
    now: Instant,
}

impl Watch {
    fn new(limits: Limits, unary: bool, started: Instant, entry: &MemberEntry) -> Self {
        Self {
            limits,
            deadline: limits.deadline.map(|d| crate::timing::later(started, d)),
            hang_check: limits
                .hang_after
                .filter(|_| unary)
                .map(|a| (a, crate::timing::later(started, a))),
            watch_from: unary.then_some(crate::timing::later(started, WATCH_EJECTION_AFTER)),
            abandons: entry.abandons(),
            started,
            now: started,
        }
    }

    /// Awaits `work`, within the deadline. A wait past `hang_after` while peers answer is
    /// charged to the member once (the attempt goes on); a unary attempt ends at once when its
    /// member is ejected for sitting on requests.
    async fn run<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        tracker: &Tracker,
    ) -> Waited<T> {
        let mut work = std::pin::pin!(work);
        // Not polled (no registration, no lock) until the attempt has waited a while.
        let abandoned = tracker.entry().abandoned_after(self.abandons);
        let mut abandoned = std::pin::pin!(abandoned);
        let mut listening = false;
        loop {
            let wake = earliest(
                earliest(self.deadline, self.hang_check.map(|(_, at)| at)),
                self.watch_from,
            );
            tokio::select! {
                biased;
                r = &mut work => return Waited::Done(r),
                _ = &mut abandoned, if listening => return Waited::Abandoned,
                _ = sleep_until_opt(wake, self.now) => {
                    self.now = Instant::now();
                    if self.deadline.is_some_and(|d| d <= self.now) {
                        return Waited::TimedOut;
                    }
                    if self.watch_from.is_some_and(|at| at <= self.now) {
                        self.watch_from = None;
                        listening = true;
                    }
                    self.check_hang(tracker);
                }
            }
        }
    }

    fn check_hang(&mut self, tracker: &Tracker) {
        let Some((after, at)) = self.hang_check else {
            return;
        };
        if at > self.now {
            return;
        }
        let checker = tracker.checker();
        let entry = tracker.entry();
        if checker.hangs(entry, self.started.into_std()) {
            let waited = self.started.elapsed();
            tracing::debug!(member = %entry.member(), ?waited, "request hangs while peers answer");
            // Charged to its latency first, so the balancer prefers its peers at once.
            let slowest_peer = checker.slowest_peer_latency(entry);
            entry
                .load()
                .charge_hang(waited, slowest_peer, crate::timing::now());
            checker.record_hang(entry);
            self.hang_check = None;
        } else {
            // Nobody answers (an election), this member answers others, or the leader
            // changed while it waited: look again later.
            if checker.quiet_since(self.started.into_std()) {
                // Nothing else answered either: no peer's answer can tell a hung member from a
                // stalled cluster (a quiet client's one request to a leader that hangs). A
                // leader check can: it finds a member that lost the leadership and went
                // silent. (The scheduler runs one round at a time, no more often than
                // `leader.election_interval`.)
                checker.want_leader_check();
            }
            self.hang_check = Some((after, self.now + after));
        }
    }

    /// The attempt's verdict when its deadline passed.
    fn timed_out(&self, tracker: Tracker, kind: MethodKind) -> Attempt {
        let d = self.limits.deadline.unwrap_or_default();
        let member = tracker.entry().member().clone();
        tracker.finish(judge(Outcome::Timeout, kind), kind == MethodKind::Unary);
        let whose = match self.limits.callers_deadline {
            true => "",
            false => " (retry.budget: the request carried no deadline)",
        };
        Attempt::Failed(Failure {
            status: tonic::Status::deadline_exceeded(format!(
                "etcd-health: {member} did not answer within {d:?}{whose}"
            )),
            response: None,
            maybe_processed: true,
            leaderless: false,
        })
    }
}

/// A unary answer's body as read within its attempt.
enum Read<B> {
    /// To its end: its data, and its (sanitized) trailers.
    Whole(Frames, Option<http::HeaderMap>),
    /// More than [`READ_WHOLE_UP_TO`]: what was read, and the rest to hand on as it comes.
    Large(Frames, B),
    /// The answer broke off.
    Broken(tower::BoxError),
}

/// Reads `body` to its end, or to [`READ_WHOLE_UP_TO`].
async fn read_whole<B: GrpcBody + Unpin>(mut body: B) -> Read<B> {
    use http_body_util::BodyExt;
    let mut frames = Frames::default();
    loop {
        match body.frame().await {
            None => return Read::Whole(frames, None),
            Some(Err(err)) => return Read::Broken(err.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    frames.push(data);
                    if frames.len() > READ_WHOLE_UP_TO {
                        return Read::Large(frames, body);
                    }
                }
                Err(frame) => {
                    if let Ok(mut trailers) = frame.into_trailers() {
                        sanitize(&mut trailers);
                        return Read::Whole(frames, Some(trailers));
                    }
                }
            },
        }
    }
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
    if !outcome.is_some_and(Outcome::is_failure) {
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
}
