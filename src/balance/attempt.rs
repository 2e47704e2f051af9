//! One attempt of a request on one member, and the verdict on it.
//!
//! Why one hand-written future ([`AttemptFuture`]) for the call, the read of a unary answer,
//! the wait with its one timer, the ejection listener and the metrics timer: every unary
//! request makes one, boxed (several attempts of a request may be in flight). In the `async`
//! form the member call had to be boxed apart (an `async fn` keeps its by-value argument and
//! the pinned local it moves it into apart, doubling the call's room, past 1 KiB); here the
//! call is held in place, once, and the timer is made only when the call waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::util::Oneshot;
use tower::ServiceExt;

use super::buffered::{Buffered, Frames};
use super::ServedBy;
use crate::etcd::MethodKind;
use crate::grpc::{sanitize, status_from, GrpcBody, GrpcService, SanitizedBody};
use crate::health::Outcome;
use crate::member::MemberEntry;
use crate::metrics::AttemptTimer;
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
    /// The attempt, with the gRPC status its metrics record: a failure's own, else `answer`
    /// (what the answer's head tells, read by the verdict already).
    fn with_code(self, answer: tonic::Code) -> (Self, tonic::Code) {
        let code = match &self {
            Attempt::Answer(_) => answer,
            Attempt::Failed(failure) => failure.status.code(),
        };
        (self, code)
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
/// Nothing is sent until the future is first polled (the service is called then).
#[inline(always)]
pub(crate) fn attempt<S: GrpcService>(
    svc: S,
    req: Request<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
    started: Instant,
) -> AttemptFuture<S> {
    let timer = tracker.entry().metrics().attempt(req.uri().path());
    let watch = Watch::new(limits, kind == MethodKind::Unary, started, tracker.entry());
    AttemptFuture {
        step: Step::Call {
            call: svc.oneshot(req),
        },
        sleep: None,
        abandoned: None,
        watch,
        kind,
        tracker: Some(tracker),
        timer,
    }
}

/// Unary answers up to this size are read whole within their attempt (see [`Buffered`]);
/// a larger one is handed on once this much arrived, the rest as it comes, and judged at its
/// end. The bound keeps a member that streams without end (and a caller without a deadline)
/// from filling memory: past it, tonic's own message size limit applies as without us.
const READ_WHOLE_UP_TO: usize = 4 << 20;

pin_project! {
    /// The future of [`attempt`]: the member call, then (for a unary gRPC answer with a body)
    /// the read of its body to its end, within the attempt's [`Watch`]; then the verdict.
    ///
    /// One timer for the deadline, the hang check and the start of the ejection listener (the
    /// earliest of them), made only once the call waits with one of them ahead; the listener
    /// (boxed, past [`WATCH_EJECTION_AFTER`]) never on the happy path.
    pub(crate) struct AttemptFuture<S: GrpcService> {
        #[pin]
        step: Step<S>,
        #[pin]
        sleep: Option<Sleep>,
        // Resolves once the member was ejected for sitting on requests; listened to past
        // `WATCH_EJECTION_AFTER` only.
        abandoned: Option<BoxFuture<'static, ()>>,
        watch: Watch,
        kind: MethodKind,
        // Taken by the verdict.
        tracker: Option<Tracker>,
        timer: AttemptTimer,
    }
}

pin_project! {
    /// Where an attempt's work is.
    #[project = StepProj]
    #[project_replace = StepOwn]
    enum Step<S: GrpcService> {
        /// The member call, until its answer's head.
        Call {
            #[pin]
            call: Oneshot<S, Request<tonic::body::Body>>,
        },
        /// A unary answer's body, read to its end (as a tonic body, which a tonic channel's
        /// already is, and which can be read without pinning it in place, so that its rest
        /// can still be handed on).
        Read {
            parts: http::response::Parts,
            body: tonic::body::Body,
            frames: Frames,
        },
        /// Judged.
        Done,
    }
}

/// What the work of an attempt came to, before the verdict.
enum Worked<B> {
    /// The head of an answer, its body unread: a stream's, a long-blocking call's, a
    /// trailers-only answer's, one that is no gRPC answer.
    Head(Response<B>),
    /// A unary answer's head, and its body read within the attempt (see [`Buffered`]).
    Whole(http::response::Parts, Read<tonic::body::Body>),
    /// The call failed.
    Unreachable(tower::BoxError),
}

/// How the read of a unary answer's body stopped (what was read stays in the step).
enum ReadEnd {
    /// At its end, with its (sanitized) trailers, if any.
    Whole(Option<http::HeaderMap>),
    /// Past [`READ_WHOLE_UP_TO`].
    Large,
    /// The answer broke off.
    Broken(tower::BoxError),
}

impl<S: GrpcService> Step<S> {
    /// Polls the call, then the read of a unary answer's body (with `whole`), to their end.
    fn poll_work(
        mut self: Pin<&mut Self>,
        whole: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Worked<S::ResponseBody>> {
        loop {
            match self.as_mut().project() {
                StepProj::Call { call } => {
                    let resp = match ready!(call.poll(cx)) {
                        Ok(resp) => resp,
                        Err(err) => {
                            self.set(Step::Done);
                            return Poll::Ready(Worked::Unreachable(err.into()));
                        }
                    };
                    let has_body = resp.status() == http::StatusCode::OK
                        && crate::grpc::header::find(resp.headers(), &crate::grpc::header::STATUS)
                            .is_none();
                    if !(whole && has_body) {
                        self.set(Step::Done);
                        return Poll::Ready(Worked::Head(resp));
                    }
                    let (parts, body) = resp.into_parts();
                    self.set(Step::Read {
                        parts,
                        body: tonic::body::Body::new(body),
                        frames: Frames::default(),
                    });
                }
                StepProj::Read { body, frames, .. } => {
                    let end = ready!(poll_read(body, frames, cx));
                    let StepOwn::Read {
                        parts,
                        body,
                        frames,
                    } = self.project_replace(Step::Done)
                    else {
                        unreachable!("the step was a read");
                    };
                    let read = match end {
                        ReadEnd::Whole(trailers) => Read::Whole(frames, trailers),
                        ReadEnd::Large => Read::Large(frames, body),
                        ReadEnd::Broken(err) => Read::Broken(err),
                    };
                    return Poll::Ready(Worked::Whole(parts, read));
                }
                StepProj::Done => panic!("an attempt polled after its end"),
            }
        }
    }
}

/// Reads `body` into `frames` to its end, or to [`READ_WHOLE_UP_TO`].
fn poll_read(
    body: &mut tonic::body::Body,
    frames: &mut Frames,
    cx: &mut Context<'_>,
) -> Poll<ReadEnd> {
    loop {
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            None => return Poll::Ready(ReadEnd::Whole(None)),
            Some(Err(err)) => return Poll::Ready(ReadEnd::Broken(err.into())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    frames.push(data);
                    if frames.len() > READ_WHOLE_UP_TO {
                        return Poll::Ready(ReadEnd::Large);
                    }
                }
                Err(frame) => {
                    if let Ok(mut trailers) = frame.into_trailers() {
                        sanitize(&mut trailers);
                        return Poll::Ready(ReadEnd::Whole(Some(trailers)));
                    }
                }
            },
        }
    }
}

impl<S: GrpcService> Future for AttemptFuture<S> {
    type Output = Attempt;

    /// The work first, then (while it waits) the ejection listener, then the timer; after the
    /// timer fired, the work again. A deadline passes only while the work waits.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Attempt> {
        let mut this = self.project();
        this.timer.polled();
        let whole = *this.kind == MethodKind::Unary;
        loop {
            if let Poll::Ready(worked) = this.step.as_mut().poll_work(whole, cx) {
                let tracker = this.tracker.take().expect("an attempt judged once");
                let (attempt, code) = judge_worked(worked, tracker, *this.kind, this.watch.limits);
                this.timer.end(code);
                return Poll::Ready(attempt);
            }
            if let Some(listener) = this.abandoned.as_mut() {
                if listener.as_mut().poll(cx).is_ready() {
                    let tracker = this.tracker.take().expect("an attempt judged once");
                    let attempt = abandoned(tracker, this.watch.started.elapsed());
                    this.step.set(Step::Done);
                    return Poll::Ready(ended(this.timer, attempt));
                }
            }
            match this.watch.wake() {
                None => return Poll::Pending,
                // A time already reached by the watch's latest reading of the clock fires at
                // once: a tokio timer would first wait for its next tick (up to a millisecond).
                Some(at) if at <= this.watch.now => {}
                Some(at) => {
                    match this.sleep.as_mut().as_pin_mut() {
                        Some(sleep) if sleep.deadline() == at => {}
                        Some(sleep) => sleep.reset(at),
                        None => this.sleep.set(Some(tokio::time::sleep_until(at))),
                    }
                    if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                }
            }
            // The timer fired.
            this.watch.now = Instant::now();
            if this.watch.deadline.is_some_and(|d| d <= this.watch.now) {
                let tracker = this.tracker.take().expect("an attempt judged once");
                let attempt = this.watch.timed_out(tracker, *this.kind);
                // The call given up goes now (its stream reset), as the attempt ends.
                this.step.set(Step::Done);
                return Poll::Ready(ended(this.timer, attempt));
            }
            let tracker = this.tracker.as_ref().expect("an attempt judged once");
            if this.watch.watch_from.is_some_and(|at| at <= this.watch.now) {
                this.watch.watch_from = None;
                let entry = tracker.shared_entry().clone();
                let seen = this.watch.abandons;
                *this.abandoned = Some(Box::pin(async move { entry.abandoned_after(seen).await }));
            }
            this.watch.check_hang(tracker);
        }
    }
}

/// Records the end of a failed attempt with its status, and returns it.
fn ended(timer: &mut AttemptTimer, attempt: Attempt) -> Attempt {
    let (attempt, code) = attempt.with_code(tonic::Code::Ok);
    timer.end(code);
    attempt
}

/// The verdict on an attempt's work, and the gRPC status its metrics record.
fn judge_worked<B: GrpcBody + Send + 'static>(
    worked: Worked<B>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> (Attempt, tonic::Code) {
    match worked {
        Worked::Head(resp) => judge_head(resp, tracker, kind, limits),
        Worked::Whole(mut parts, read) => {
            sanitize(&mut parts.headers);
            judge_whole(parts, read, tracker, kind, limits)
        }
        Worked::Unreachable(err) => {
            unreachable_member(err, tracker, kind).with_code(tonic::Code::Ok)
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
/// stream's or a long-blocking call's (judged as its body ends). With the gRPC status its
/// head tells, for the metrics.
fn judge_head<B: GrpcBody + Send + 'static>(
    resp: Response<B>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> (Attempt, tonic::Code) {
    let (mut parts, body) = resp.into_parts();
    // Nothing of the member's reaches tonic's status parser unchecked: it panics on some input.
    sanitize(&mut parts.headers);
    let body = SanitizedBody::new(body);
    if kind != MethodKind::Unary {
        parts
            .extensions
            .insert(ServedBy(tracker.entry().member().clone()));
    }
    let code = crate::grpc::header::find(&parts.headers, &crate::grpc::header::STATUS);
    if parts.status != http::StatusCode::OK {
        let code = code.map_or(tonic::Code::Ok, |c| tonic::Code::from_bytes(c.as_bytes()));
        tracker.finish_http(parts.status.as_u16());
        let answer = Response::from_parts(parts, tonic::body::Body::new(body));
        return Attempt::Answer(answer).with_code(code);
    }
    if let Some(code) = code {
        // A trailers-only answer: etcd's errors come this way, before any message.
        let status = status_from(code, &parts.headers);
        let code = status.code();
        let body = tonic::body::Body::new(body);
        return judge_status(status, parts, body, tracker, kind, limits).with_code(code);
    }
    let body = match kind {
        MethodKind::Stream => {
            // The stream is open: the member serves it.
            tracker.finish(Some(Outcome::Success), false);
            tonic::body::Body::new(body)
        }
        _ => tonic::body::Body::new(ClassifiedBody::new(body, tracker, kind)),
    };
    (
        Attempt::Answer(Response::from_parts(parts, body)),
        tonic::Code::Ok,
    )
}

/// Judges a unary answer read within its attempt. Its status is in its trailers; etcd
/// serving gRPC through Go's HTTP handler (its TLS listener shares the port with HTTP)
/// answers errors that way too, after the head, not trailers-only. With the gRPC status the
/// answer's head tells, for the metrics (its head carries none, unless an error without a
/// message is handed on trailers-only, below).
fn judge_whole(
    mut parts: http::response::Parts,
    read: Read<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    limits: Limits,
) -> (Attempt, tonic::Code) {
    let (frames, mut trailers) = match read {
        Read::Whole(frames, trailers) => (frames, trailers),
        Read::Large(frames, rest) => {
            let rest = ClassifiedBody::new(SanitizedBody::new(rest), tracker, kind);
            let body = Buffered::then(frames, tonic::body::Body::new(rest));
            let answer = Response::from_parts(parts, tonic::body::Body::new(body));
            return (Attempt::Answer(answer), tonic::Code::Ok);
        }
        Read::Broken(err) => {
            let member = tracker.entry().member().clone();
            let why = crate::grpc::describe(err.as_ref());
            tracker.finish(judge(transport_error(err.as_ref()), kind), false);
            let failed = Attempt::Failed(Failure {
                status: tonic::Status::unavailable(format!(
                    "etcd-health: {member} broke off its answer: {why}"
                )),
                response: None,
                maybe_processed: true,
                leaderless: false,
            });
            return failed.with_code(tonic::Code::Ok);
        }
    };
    // `grpc-status` read once: the common case ("0") without building a `tonic::Status` (an
    // allocation on every answer).
    let status = match trailers.as_ref() {
        Some(t) => match crate::grpc::header::find(t, &crate::grpc::header::STATUS) {
            Some(code) if code.as_bytes() == b"0" => {
                tracker.finish(Some(Outcome::Success), true);
                let body = tonic::body::Body::new(Buffered::new(frames, trailers));
                let answer = Response::from_parts(parts, body);
                return (Attempt::Answer(answer), tonic::Code::Ok);
            }
            code => code.map(|code| status_from(code, t)),
        },
        None => None,
    };
    match status {
        Some(status) => {
            let mut code = tonic::Code::Ok;
            if frames.is_empty() {
                // An error and nothing else: handed on in the standard trailers-only form, so
                // everything that reads a status from the headers (the auth layer, the
                // drop-in's token mapping, outcome marks) sees it as it would without TLS.
                parts.headers.extend(trailers.take().unwrap_or_default());
                code = status.code();
            }
            let body = tonic::body::Body::new(Buffered::new(frames, trailers));
            judge_status(status, parts, body, tracker, kind, limits).with_code(code)
        }
        None => {
            // Trailers without a status: the member answered (as a body judged at its end
            // counts it). No trailers at all: tonic reports the broken answer; nothing to
            // judge the member by.
            let outcome = trailers.is_some().then_some(Outcome::Success);
            tracker.finish(outcome, outcome.is_some());
            let body = tonic::body::Body::new(Buffered::new(frames, trailers));
            let answer = Response::from_parts(parts, body);
            (Attempt::Answer(answer), tonic::Code::Ok)
        }
    }
}

/// A unary attempt still unanswered after this long starts listening for its member's
/// ejection (see [`Watch`]); one answered sooner (the happy path) never registers for it.
const WATCH_EJECTION_AFTER: Duration = Duration::from_millis(100);

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

    /// When the attempt's one timer is due: the earliest of the deadline, the next hang check
    /// and the start of the ejection listener.
    fn wake(&self) -> Option<Instant> {
        earliest(
            earliest(self.deadline, self.hang_check.map(|(_, at)| at)),
            self.watch_from,
        )
    }

    /// Charges a wait past `hang_after` while peers answer to the member, once (the attempt
    /// goes on); before that, looks again later.
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
