//! The balancing [`Service`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::Service;

use tokio::time::Instant;

use super::attempt::{attempt, sleep_until_opt, Attempt, Failure, Limits};
use super::hedge::{HedgeDelay, HedgeDelays};
use super::hint::mark_served;
use super::inflight::InFlight;
use super::pick::pick;
use super::retry::{jitter, may_resend, resend_is_free, Failed, Fire, Next, Plan, Schedule, Sent};
use super::route::write_target;
use super::{AvoidMembers, MakeMember, ResponseFuture};
use crate::budget::Extra;
use crate::checker::HealthChecker;
use crate::checker::{Member, MemberEntry};
use crate::etcd::{Class, Method, MethodKind};
use crate::grpc::GrpcService;
use crate::passive::{Classifier, Tracker};

/// `hasleader` (etcd's fact, see [`crate::etcd::HAS_LEADER`]) as a `HeaderName` made once:
/// inserting a `&str` name that is not a standard header copies it into a new allocation on
/// every request.
const HAS_LEADER: HeaderName = HeaderName::from_static(crate::etcd::HAS_LEADER);

/// Each member's service by member index, with the member's
/// [`returns`](MemberEntry::returns) when it was made.
type Services<S> = HashMap<usize, (u64, S)>;

/// A health-checked balancer over one service per etcd member.
///
/// `Clone + Send + Sync`; clones share members, services and health state.
pub struct Balance<M: MakeMember> {
    checker: HealthChecker,
    make: Arc<M>,
    services: Arc<RwLock<Services<M::Service>>>,
    /// When a read is slow enough to hedge, per kind of read, from the latency of the reads
    /// of that kind it served.
    hedge: Arc<HedgeDelays>,
    /// How answers count against their member.
    classifier: Arc<Classifier>,
}

// === impl Balance ===

impl<M: MakeMember> Balance<M> {
    /// A balancer over the members of `checker`, reaching each through `make`.
    ///
    /// `make` is first shown the health state ([`MakeMember::attach`]): a [`TonicConnector`](super::TonicConnector)
    /// without TLS of its own takes the checker's, so requests present the same client
    /// certificate as the probes.
    pub fn new(checker: HealthChecker, mut make: M) -> Self {
        make.attach(&checker);
        Self {
            hedge: Arc::new(HedgeDelays::new(&checker.config().hedge)),
            classifier: Arc::new(Classifier::new(&checker)),
            checker,
            make: Arc::new(make),
            services: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The shared health state.
    pub fn checker(&self) -> &HealthChecker {
        &self.checker
    }

    /// The per-member service maker.
    pub fn get_ref(&self) -> &M {
        &self.make
    }
}

impl<M: MakeMember> Balance<M>
where
    M::Service: Clone,
{
    /// The service for one member: made on first use, and made anew each time the member is
    /// put back into rotation (see [`MemberEntry::returns`]: a connection that lived through
    /// the fault may stay silent for seconds after it); services of removed members are
    /// dropped. Requests already sent keep the service they were sent on.
    fn service_for(&self, entry: &MemberEntry, live: &[Arc<MemberEntry>]) -> M::Service {
        let index = entry.member().index();
        let returns = entry.returns();
        if let Some((made_at, svc)) = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
        {
            if *made_at == returns {
                return svc.clone();
            }
        }
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        services.retain(|index, _| live.iter().any(|e| e.member().index() == *index));
        match services.get(&index) {
            Some((made_at, svc)) if *made_at == returns => return svc.clone(),
            Some(_) => tracing::debug!(
                member = %entry.member(),
                "member back in rotation: its channel is made anew"
            ),
            None => {}
        }
        let svc = self.make.make_member(entry.member());
        services.insert(index, (returns, svc.clone()));
        svc
    }
}

impl<M: MakeMember> Clone for Balance<M> {
    fn clone(&self) -> Self {
        Self {
            checker: self.checker.clone(),
            make: self.make.clone(),
            services: self.services.clone(),
            hedge: self.hedge.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<M: MakeMember> std::fmt::Debug for Balance<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("members", &self.checker.members())
            .finish_non_exhaustive()
    }
}

/// For member services that carry tonic's requests and answer with a body of `Bytes` frames
/// (as a tonic `Channel` does), `Clone + Send + Sync + 'static`, with `Send` futures and errors
/// that box.
impl<M> Service<Request<tonic::body::Body>> for Balance<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    /// Always ready: the member is chosen per request, and its own readiness is awaited in
    /// the response future, so an unhealthy member never makes the whole stack fail.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        self.dispatch(req)
    }
}

#[allow(private_bounds, reason = "private methods: the bound never shows")]
impl<M> Balance<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    /// [`Service::call`] without `&mut`: the balancer is always ready and keeps no state
    /// per caller, so a wrapper that shares it (the drop-in's channel) routes through it
    /// without a clone of its own per request.
    pub(crate) fn dispatch(&self, mut req: Request<tonic::body::Body>) -> ResponseFuture {
        if self.checker.config().require_leader {
            req.headers_mut()
                .insert(HAS_LEADER, HeaderValue::from_static("true"));
        }
        // Members the caller asked to avoid count as tried already.
        let avoid: Vec<usize> = req
            .extensions_mut()
            .remove::<AvoidMembers>()
            .map(|a| a.0.iter().map(Member::index).collect())
            .unwrap_or_default();
        let method = Method::of(req.uri().path());
        let timer = self.checker.metrics().call(req.uri().path());
        let deadline = crate::grpc::header::timeout(req.headers());
        // Two futures rather than one holding either: a unary request's is built and moved
        // into its box on every request, and would otherwise be as large as both.
        match method.kind {
            MethodKind::Unary => {
                let (parts, body) = req.into_parts();
                let replay = Replay::new(parts, method);
                let plan = Plan::new(avoid);
                let unary = self.clone().unary(replay, body, plan, deadline);
                ResponseFuture::new(timer.time(unary))
            }
            kind => {
                let pinned = req
                    .extensions_mut()
                    .remove::<super::EvenIfEjected>()
                    .map(|p| p.0.index());
                ResponseFuture::new(
                    timer.time(self.clone().stream(req, avoid, pinned, kind, deadline)),
                )
            }
        }
    }

    /// Sends a stream or a long-blocking call, once: to the `pinned` member if it is one
    /// (see [`EvenIfEjected`](super::EvenIfEjected)), else to one picked as usual.
    async fn stream(
        self,
        req: Request<tonic::body::Body>,
        avoid: Vec<usize>,
        pinned: Option<usize>,
        kind: MethodKind,
        deadline: Option<Duration>,
    ) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        let config = self.checker.config();
        let entries = self.checker.entries();
        let pinned = pinned.and_then(|i| entries.iter().find(|e| e.member().index() == i));
        let entry = match pinned {
            Some(entry) => entry.clone(),
            None => match pick(&entries, config.all_unhealthy, &avoid) {
                Ok(entry) => entry,
                Err(status) => return Err(status.into()),
            },
        };
        let limits = Limits {
            deadline,
            callers_deadline: deadline.is_some(),
            hang_after: None,
            has_leader: config.require_leader,
        };
        match self.attempt_on(entry, &entries, req, kind, limits).await {
            Attempt::Answer(response) => Ok(response),
            Attempt::Failed(failure) => failure.into_result(),
        }
    }

    /// Sends a unary request and sees it through: reads are hedged (a read slower than the
    /// members' usual latency also goes to another member; the first answer wins) and retried
    /// after any member-level failure; writes are retried only when certainly not processed.
    /// Retries go to members not tried yet in this round at once, and after each round over
    /// the members wait a back-off (cut short when the health state or the leader changes),
    /// until the caller's deadline (or `retry.budget`) or `retry.max_attempts`. Every hedge,
    /// and every retry after a failure that may have cost a member work, is drawn from the
    /// retry budget (`crate::budget`); past it the request is sent once, as a single request
    /// would be.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice (see the body's first comment)"
    )]
    fn unary(
        self,
        mut replay: Replay,
        body: tonic::body::Body,
        mut plan: Plan,
        deadline: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<Response<tonic::body::Body>, tower::BoxError>>
           + Send
           + 'static {
        // An `async` block rather than an `async fn`: an `async fn` moves its arguments into
        // locals of its own, so its future would hold the kept request twice.
        async move {
            let checker = &self.checker;
            let config = checker.config();
            // Kept for the retries and hedges any attempt may need (a write is re-sent only when it
            // certainly never ran, which is known only after it was sent), in the request's head
            // this future holds anyway (see `Replay`); its body may tell a `Txn` of reads.
            replay.keep(buffer(body).await?, config.hedge.max_range_limit);
            let class = replay.method.class;
            // The clock is read once per turn of the loop below and shared by everything that turn
            // does (the schedule, the attempt's bookkeeping, its tracker): a handful of readings per
            // request instead of a dozen.
            let mut now = Instant::now();
            checker.budget().deposit(now.into_std());
            let mut schedule = Schedule::new(class, now, deadline, &config.retry, &config.hedge);
            let hang_after = (config.hang.threshold > 0).then_some(config.hang.after);
            let read_timeout = match class {
                Class::Read if !config.retry.read_attempt_timeout.is_zero() => {
                    Some(config.retry.read_attempt_timeout)
                }
                _ => None,
            };

            let mut in_flight = InFlight::new();
            // Boxed: a failure is rare, and this future is allocated on every request.
            let mut last: Option<Box<Failure>> = None;
            let mut changes: Option<tokio::sync::watch::Receiver<u64>> = None;
            loop {
                tokio::select! {
                    biased;
                    Some((slot, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                        let sent: Sent = plan.finish(slot);
                        match outcome {
                            Attempt::Answer(response) => {
                                if let Some(hedge) = self.hedge.of(replay.method.hedging) {
                                    hedge.observe(sent.at.elapsed());
                                    // The first copy answered though others were sent while it ran:
                                    // they were hedges (a retry follows a failure), and lost.
                                    let won = plan.outrun_by(&sent).next().is_some();
                                    checker.metrics().read_answered(won);
                                    if slot == 0 && plan.attempts() > 1 {
                                        hedge.hedge_lost();
                                    } else if won {
                                        hedge.hedge_won();
                                    }
                                }
                                // Attempts sent before this one and still unanswered were outrun:
                                // their members are slower than a peer right now, so the balancer
                                // should prefer others at once. Whether they *hang* is decided by
                                // letting those attempts run a little longer, detached, until
                                // `hang.after`: a member that merely lost a race answers by then.
                                for other in plan.outrun_by(&sent) {
                                    tracing::trace!(member = %other.entry.member(), waited = ?other.at.elapsed(), "outrun by a peer");
                                    other.entry.load().observe(other.at.elapsed(), crate::checker::now());
                                }
                                if let (Some(after), false) = (hang_after, in_flight.is_empty()) {
                                    let oldest = plan.oldest().unwrap_or(sent.at);
                                    let until = oldest + after + HANG_SLACK;
                                    tokio::spawn(async move {
                                        let drain = async { while in_flight.next().await.is_some() {} };
                                        let _ = tokio::time::timeout_at(until, drain).await;
                                    });
                                }
                                let mut response = response;
                                mark_served(response.extensions_mut(), sent.entry.member(), &mut replay.parts.extensions);
                                return Ok(response);
                            }
                            Attempt::Failed(failure) => {
                                let failure = failure.served_by(sent.entry.member());
                                let maybe_processed = failure.maybe_processed;
                                let failure = if may_resend(class, maybe_processed) {
                                    failure
                                } else {
                                    failure.outcome_unknown()
                                };
                                let facts = Failed {
                                    class,
                                    maybe_processed,
                                    attempts: plan.attempts(),
                                    in_flight_empty: in_flight.is_empty(),
                                    has_fresh: plan.has_fresh(&checker.entries(), config.all_unhealthy),
                                    backoff: plan.round_backoff(&config.retry, jitter()),
                                };
                                // Fresh: the next attempt may be due at once, and a stale reading
                                // would send it through a timer (a tick late).
                                now = Instant::now();
                                let mut decision = schedule.after_failure(facts, now);
                                // A retry that may cost a member work goes only when no copy is
                                // still in flight (that copy, a hedge, already is its retry; more
                                // hedges follow on its timer) and the retry budget allows it.
                                if matches!(decision.next, Next::RetryAt(_) | Next::BackOff(_))
                                    && !resend_is_free(maybe_processed, failure.status.message())
                                    && (!in_flight.is_empty() || !checker.budget().try_withdraw(now.into_std(), Extra::Retry))
                                {
                                    decision.next = schedule.refuse_retry(in_flight.is_empty());
                                }
                                if decision.round_over {
                                    // A round is over, or the cluster has no leader for the moment:
                                    // wait, but wake when health or leader changes.
                                    changes.get_or_insert_with(|| checker.changes()).borrow_and_update();
                                    plan.end_round();
                                }
                                match decision.next {
                                    Next::GiveUp => return failure.into_result(),
                                    Next::AwaitOthers | Next::AlreadySet => {}
                                    Next::RetryAt(_) | Next::BackOff(_) => {
                                        tracing::debug!(method = %replay.parts.uri.path(), attempt = plan.attempts(), status = ?failure.status, leaderless = failure.leaderless, next = ?decision.next, "retrying on another member");
                                    }
                                }
                                last = Some(Box::new(failure));
                            }
                        }
                    }
                    // One timer for the next attempt and the next hedge (the earlier of them): a
                    // smaller future, and one registration per read.
                    _ = sleep_until_opt(schedule.wake(), now) => {
                        now = Instant::now();
                        match schedule.on_timer(now, plan.attempts(), in_flight.len()) {
                            Fire::Attempt => {
                                let entries = checker.entries();
                                let target = if replay.method.leader_only {
                                    checker.leader_entry()
                                } else if class == Class::Write && config.leader.route_writes {
                                    write_target(&entries, checker.leader_entry(), now.into_std())
                                } else {
                                    None
                                };
                                let entry = match plan.choose(&entries, config.all_unhealthy, target) {
                                    Some(entry) => entry,
                                    None => match pick(&entries, config.all_unhealthy, &plan.busy()) {
                                        Ok(entry) => entry,
                                        Err(status) => {
                                            if in_flight.is_empty() {
                                                // No member may take it (fail-fast with none healthy, or no
                                                // members): after a failed attempt the caller learns what
                                                // happened to its request instead.
                                                return last.map_or_else(|| Failure::not_sent(status), |f| *f).into_result();
                                            }
                                            continue;
                                        }
                                    },
                                };
                                if plan.attempts() > 0 {
                                    checker.count_retry();
                                    replay.tally.retried(checker.metrics());
                                }
                                let limits = self.limits(schedule.end(), deadline.is_some(), read_timeout, hang_after, now);
                                in_flight.push(self.launch(&mut plan, entry, &entries, &mut replay, limits, now));
                                // A hedge goes to another member: with one known, no timer for it.
                                let hedge = self.hedge.of(replay.method.hedging).filter(|_| entries.len() > 1);
                                let delay = hedge.map(HedgeDelay::delay);
                                schedule.attempt_sent(now, in_flight.len(), delay);
                            }
                            Fire::Hedge => {
                                let entries = checker.entries();
                                // Past the budget, no hedge and no further hedge timer: the read
                                // waits out the copies it has.
                                let entry = plan.choose(&entries, config.all_unhealthy, None);
                                let hedge = self.hedge.of(replay.method.hedging);
                                if let (Some(entry), Some(hedge)) = (entry, hedge) {
                                    if checker.budget().try_withdraw(now.into_std(), Extra::Hedge) {
                                        tracing::trace!(member = %entry.member(), "hedging a slow read");
                                        checker.count_hedge();
                                        replay.tally.hedged(checker.metrics());
                                        let limits = self.limits(schedule.end(), deadline.is_some(), read_timeout, hang_after, now);
                                        in_flight.push(self.launch(&mut plan, entry, &entries, &mut replay, limits, now));
                                        schedule.hedge_sent(now, in_flight.len(), hedge.delay());
                                    }
                                }
                            }
                            Fire::Nothing => {}
                        }
                    }
                    changed = wait_changed(&mut changes), if schedule.attempt_set() && changes.is_some() => {
                        // The health state or the leader changed during a back-off: go now.
                        changes = None;
                        if changed {
                            now = Instant::now();
                            schedule.changed(now);
                        }
                    }
                }
            }
        }
    }

    /// The limits of one attempt sent `now`.
    fn limits(
        &self,
        end: Instant,
        has_deadline: bool,
        read_timeout: Option<Duration>,
        hang_after: Option<Duration>,
        now: Instant,
    ) -> Limits {
        // The caller's deadline bounds every attempt, or without one what is left of
        // `retry.budget` (a hung member must not hold a caller that set none for ever: etcd
        // client's default options set none); a read attempt may have a shorter bound.
        let remaining = end.saturating_duration_since(now);
        let (deadline, sent_on) = match read_timeout {
            Some(read) if read < remaining => (read, true),
            _ => (remaining, has_deadline),
        };
        Limits {
            deadline: Some(deadline),
            callers_deadline: sent_on,
            hang_after,
            has_leader: self.checker.config().require_leader,
        }
    }

    /// Sends one copy of a buffered request to `entry`, `now`; the future yields its slot in
    /// `plan`.
    ///
    /// The member's service and the load tracker are taken here, so the boxed future is the
    /// attempt itself (each layer of `async` around it would be one more copy of it per
    /// request).
    fn launch(
        &self,
        plan: &mut Plan,
        entry: Arc<MemberEntry>,
        entries: &Arc<Vec<Arc<MemberEntry>>>,
        replay: &mut Replay,
        limits: Limits,
        now: Instant,
    ) -> futures_util::future::BoxFuture<'static, (usize, Attempt)> {
        use futures_util::FutureExt;
        let slot = plan.start(entry.clone(), now);
        let mut req = replay.request();
        // The retry budget is ours: only a caller's deadline (or a read's own bound) goes on.
        if let Some(limit) = limits.deadline.filter(|_| limits.callers_deadline) {
            crate::grpc::header::set_timeout(req.headers_mut(), limit);
        }
        let svc = self.service_for(&entry, entries);
        let tracker = self.tracker(entry, now);
        Box::pin(attempt(svc, req, tracker, MethodKind::Unary, limits, now).map(move |a| (slot, a)))
    }

    /// One attempt on one member; `entries` is the membership `entry` was picked from.
    async fn attempt_on(
        &self,
        entry: std::sync::Arc<MemberEntry>,
        entries: &[std::sync::Arc<MemberEntry>],
        req: Request<tonic::body::Body>,
        kind: MethodKind,
        limits: Limits,
    ) -> Attempt {
        let svc = self.service_for(&entry, entries);
        let now = Instant::now();
        let tracker = self.tracker(entry, now);
        attempt(svc, req, tracker, kind, limits, now).await
    }

    /// Follows a request to `entry` from `now` on.
    fn tracker(&self, entry: Arc<MemberEntry>, now: Instant) -> Tracker {
        Tracker::start(
            self.checker.clone(),
            entry,
            self.classifier.clone(),
            now.into_std(),
        )
    }
}

/// Request bodies up to this size are copied out of tonic's encoding buffer (see [`buffer`]).
const COPY_BODY_UP_TO: usize = 4096;

/// How long past `hang.after` an outrun attempt is kept, so its own hang check runs.
const HANG_SLACK: Duration = Duration::from_millis(20);

/// Waits for a change of the health state; `false` if it can no longer change.
async fn wait_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// A unary request kept to be sent again: its head and its whole body.
///
/// Why held in [`Balance::unary`]'s future rather than boxed: that future is itself boxed on
/// every request and keeps the request's head from its start anyway, so the head is kept
/// where it already is (no allocation of its own); the future stays under 1 KiB, which
/// glibc's allocator serves from a per-thread cache (larger blocks come from its shared arenas,
/// which consolidate free blocks on the way; see `docs/overhead-profile.md`).
struct Replay {
    parts: http::request::Parts,
    /// The whole body, in a buffer of its own (see [`buffer`]): what every copy after the
    /// first sends.
    body: Bytes,
    /// The body as tonic encoded it, for the first copy only (empty once sent, or when it is
    /// `body` itself): sending it leaves `body` unshared, and a `Bytes` shared for the first
    /// time allocates its reference count.
    first: Bytes,
    /// What it is (etcd's table), once [`keep`](Self::keep) read what its body says
    /// ([`Method::for_body`]: a `Txn` of reads is a read; a `Range` over many keys, like a
    /// write or an expensive read, is never hedged).
    method: Method,
    /// The call's retries and hedges (gRFC A96's per-call metrics), recorded on drop.
    tally: crate::metrics::CallTally,
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.tally.ended(self.parts.uri.path());
    }
}

impl Replay {
    /// A request whose body is still to be read (see [`keep`](Self::keep)).
    fn new(parts: http::request::Parts, method: Method) -> Self {
        Self {
            parts,
            body: Bytes::new(),
            first: Bytes::new(),
            method,
            tally: crate::metrics::CallTally::default(),
        }
    }

    /// Keeps the request's body, as [`buffer`] read it, and learns what the body says of the
    /// method ([`Method::for_body`]; `max_range_limit` decides whether a range may be hedged;
    /// other methods' bodies are not read). Not inlined: the decoders' locals would otherwise
    /// take room in the request's future, which is at its size limit.
    #[inline(never)]
    fn keep(&mut self, (body, first): (Bytes, Bytes), max_range_limit: u64) {
        // Read from tonic's frame when there is one: sharing it allocates nothing more.
        let frame = if first.is_empty() { &body } else { &first };
        self.method = self.method.for_body(frame, max_range_limit);
        self.body = body;
        self.first = first;
    }

    /// A copy to send.
    fn request(&mut self) -> Request<tonic::body::Body> {
        let body = match std::mem::take(&mut self.first) {
            first if first.is_empty() => self.body.clone(),
            first => first,
        };
        replay_with(&self.parts, body)
    }
}

/// A copy of a buffered unary request, to send (again).
pub(crate) fn replay(parts: &http::request::Parts, body: &Bytes) -> Request<tonic::body::Body> {
    replay_with(parts, body.clone())
}

/// A request of `parts`' head and `body`.
fn replay_with(parts: &http::request::Parts, body: Bytes) -> Request<tonic::body::Body> {
    let mut req = Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

/// The whole body of a unary request in a buffer of its own, and tonic's frame that carried it
/// (empty when it is the buffer itself, or when there were several).
///
/// tonic encodes a unary message as one data frame, split off its 8 KiB encoding buffer: that
/// `Bytes` keeps the whole buffer alive for as long as it is. A small message is therefore
/// copied to be kept (a few dozen bytes for a typical etcd request, against 8 KiB held per
/// request in flight), and the frame itself goes with the first copy of the request (hyper
/// drops it once written, as behind a raw channel); a large one fills its buffer anyway and is
/// kept as it is. More frames are joined.
async fn buffer(body: tonic::body::Body) -> Result<(Bytes, Bytes), tower::BoxError> {
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        // A unary request has no trailers: data frames only.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
            (Some(first), None) => {
                let mut both = bytes::BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(first);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(match (joined, first) {
        (Some(joined), _) => (joined.freeze(), Bytes::new()),
        (None, Some(first)) if first.len() <= COPY_BODY_UP_TO => {
            (Bytes::copy_from_slice(&first), first)
        }
        (None, first) => (first.unwrap_or_default(), Bytes::new()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tower::ServiceExt;

    use crate::balance::Balance;
    use crate::checker::HealthChecker;
    use crate::checker::Member;
    use crate::config::{AllUnhealthyPolicy, Config};
    use crate::health::{Outcome, Source, Status};

    /// A balancer over `n` members, all ejected, whose services count their calls.
    fn all_ejected(n: u16, policy: AllUnhealthyPolicy) -> (Stack, Arc<AtomicUsize>) {
        all_ejected_with(n, policy, 3)
    }

    fn all_ejected_with(
        n: u16,
        policy: AllUnhealthyPolicy,
        max_attempts: u8,
    ) -> (Stack, Arc<AtomicUsize>) {
        let mut config = Config {
            all_unhealthy: policy,
            ..Config::default()
        };
        config.retry.max_attempts = max_attempts;
        config.checks.active.unhealthy.interval = Duration::ZERO;
        let endpoints: Vec<String> = (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, config).expect("checker");
        for m in checker.members() {
            let status = checker.record(&m, Source::Passive, Outcome::TcpFailure);
            assert_eq!(status, Some(Status::Unhealthy));
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let make = move |_: &Member| {
            let calls = counted.clone();
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls.fetch_add(1, Ordering::Relaxed);
                async {
                    Err::<http::Response<tonic::body::Body>, _>(tower::BoxError::from(
                        tonic::Status::unavailable("refused"),
                    ))
                }
            })
        };
        let balance = Balance::new(checker, make);
        (tower::util::BoxCloneSyncService::new(balance), calls)
    }

    /// A member put back into rotation is reached through a service made anew (its old
    /// connection may stay silent after the fault); one that stays in rotation, or stays out,
    /// keeps its own.
    #[tokio::test]
    async fn a_member_back_in_rotation_gets_a_new_service() {
        let mut config = Config::default();
        config.ejection.base = Duration::ZERO;
        config.ejection.jitter = 0.0;
        let checker = HealthChecker::new(&["http://127.0.0.1:1", "http://127.0.0.1:2"], config)
            .expect("checker");
        let made = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let record = made.clone();
        let make = move |m: &Member| {
            record.lock().unwrap().push(m.index());
            tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
                Err::<http::Response<tonic::body::Body>, tower::BoxError>("unused".into())
            })
        };
        let balance = Balance::new(checker.clone(), make);
        let entries = checker.entries();
        let (first, second) = (&entries[0], &entries[1]);
        let services = |balance: &Balance<_>| {
            let _ = balance.service_for(first, &entries);
            let _ = balance.service_for(second, &entries);
        };
        services(&balance);
        services(&balance);
        assert_eq!(*made.lock().unwrap(), [0, 1], "each made once");

        let member = first.member().clone();
        let status = checker.record(&member, Source::Passive, Outcome::TcpFailure);
        assert_eq!(status, Some(Status::Unhealthy));
        services(&balance);
        assert_eq!(
            *made.lock().unwrap(),
            [0, 1],
            "an ejected member keeps its service"
        );

        let status = checker.record(&member, Source::Active, Outcome::Success);
        assert_eq!(status, Some(Status::Healthy));
        services(&balance);
        services(&balance);
        assert_eq!(
            *made.lock().unwrap(),
            [0, 1, 0],
            "made anew once on re-admission; the other member's kept"
        );
    }

    type Stack = tower::util::BoxCloneSyncService<
        http::Request<tonic::body::Body>,
        http::Response<tonic::body::Body>,
        tower::BoxError,
    >;

    /// A one-key read, as tonic frames it.
    fn range() -> http::Request<tonic::body::Body> {
        range_of(b"k", b"", 0)
    }

    /// A `Range` over `[key, range_end)` returning at most `limit` keys, as tonic frames it.
    fn range_of(key: &[u8], range_end: &[u8], limit: i64) -> http::Request<tonic::body::Body> {
        use prost::Message;
        let msg = crate::proto::etcdserverpb::RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            limit,
            ..Default::default()
        }
        .encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        http::Request::builder()
            .uri("/etcdserverpb.KV/Range")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from(framed),
            )))
            .expect("request")
    }

    /// Three members: 0 never answers, 1 and 2 answer after 5 ms; with the calls each got.
    fn one_hung_of_three(config: Config) -> (HealthChecker, Stack, Arc<[AtomicUsize; 3]>) {
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, config).expect("checker");
        let calls: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let counted = calls.clone();
        let make = move |m: &Member| {
            let index = m.index();
            let calls = counted.clone();
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls[index].fetch_add(1, Ordering::Relaxed);
                async move {
                    if index == 0 {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let mut resp = http::Response::new(tonic::body::Body::empty());
                    resp.headers_mut()
                        .insert("grpc-status", http::HeaderValue::from_static("0"));
                    Ok::<_, tower::BoxError>(resp)
                }
            })
        };
        let balance = Balance::new(checker.clone(), make);
        (
            checker,
            tower::util::BoxCloneSyncService::new(balance),
            calls,
        )
    }

    /// Sends `reads` at once, each with a deadline of 300 ms: some go to the hung member 0.
    /// Returns how many failed, each with `DeadlineExceeded`.
    async fn at_once(
        balance: &Stack,
        reads: impl Fn() -> http::Request<tonic::body::Body>,
    ) -> usize {
        let read = |mut req: http::Request<tonic::body::Body>| {
            req.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
            balance.clone().oneshot(req)
        };
        let results = futures_util::future::join_all((0..30).map(|_| read(reads()))).await;
        let mut failed = 0;
        for r in results {
            if let Err(err) = r {
                let status = err.downcast::<tonic::Status>().expect("a status");
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
                failed += 1;
            }
        }
        failed
    }

    /// Past the retry budget a read is sent once: no hedge while its member hangs, no retry
    /// after a failure that may have cost the member work; a retry after a refused
    /// connection, which costs the members nothing, still goes.
    #[tokio::test(start_paused = true)]
    async fn past_the_budget_a_read_is_sent_once() {
        let mut config = Config::default();
        config.retry.extra_ratio = 0.0;
        config.retry.extra_min_per_second = 0;
        let (checker, balance, calls) = one_hung_of_three(config.clone());
        let failed = at_once(&balance, range).await;
        let sent = calls.each_ref().map(|c| c.load(Ordering::Relaxed));
        assert!(sent[0] >= 1, "{sent:?}");
        assert_eq!(failed, sent[0], "each read sent to the hung member failed");
        assert_eq!(sent.iter().sum::<usize>(), 30, "each read sent once");
        let budget = checker.retry_budget();
        assert_eq!(
            (budget.requests, budget.extra, budget.remaining),
            (30, 0, 0)
        );
        assert_eq!(budget.refused, sent[0] as u64, "{budget:?}");
        assert_eq!(checker.hedges(), 0);

        // A member that fails the read after it may have started it: no retry.
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let failing = |refused: bool| {
            let checker = HealthChecker::new(&endpoints, config.clone()).expect("checker");
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = calls.clone();
            let make = move |_: &Member| {
                let calls = counted.clone();
                tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let err: tower::BoxError = if refused {
                            Box::new(tonic::ConnectError(Box::new(std::io::Error::from(
                                std::io::ErrorKind::ConnectionRefused,
                            ))))
                        } else {
                            Box::new(tonic::Status::unavailable("reset mid-request"))
                        };
                        Err::<http::Response<tonic::body::Body>, _>(err)
                    }
                })
            };
            let balance: Stack = tower::util::BoxCloneSyncService::new(Balance::new(checker, make));
            (balance, calls)
        };
        let (balance, calls) = failing(false);
        let mut req = range();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
        balance.oneshot(req).await.expect_err("fails");
        assert_eq!(calls.load(Ordering::Relaxed), 1, "not retried");
        // Refused connections: retried over every member, round after round, for free.
        let (balance, calls) = failing(true);
        let mut req = range();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
        balance.oneshot(req).await.expect_err("fails");
        assert!(calls.load(Ordering::Relaxed) >= 6, "{calls:?}");
    }

    /// gRFC A96's per-call histograms: each hedged read records its hedges once (their sum
    /// is the stack's hedge count), a read retried over refused connections its retries once,
    /// and a read answered at once records nothing.
    #[cfg(feature = "metrics")]
    #[tokio::test(start_paused = true)]
    async fn each_call_records_its_retries_and_hedges_once() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let _recorder = metrics::set_default_local_recorder(&recorder);
        // The per-call samples recorded since the last call (a snapshot drains them).
        let samples = || -> [Vec<f64>; 2] {
            let snapshot = recorder.snapshotter().snapshot().into_vec();
            [crate::metrics::CALL_HEDGES, crate::metrics::CALL_RETRIES].map(|name| {
                snapshot
                    .iter()
                    .filter(|(key, ..)| key.key().name() == name)
                    .flat_map(|(key, _, _, value)| -> Vec<f64> {
                        let labels: Vec<_> = key.key().labels().map(|l| l.value()).collect();
                        assert_eq!(labels, ["etcdserverpb.KV/Range"], "{name}");
                        match value {
                            DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect(),
                            other => panic!("{other:?}"),
                        }
                    })
                    .collect()
            })
        };

        let (checker, balance, calls) = one_hung_of_three(Config::default());
        assert_eq!(at_once(&balance, range).await, 0);
        let hedged = calls[0].load(Ordering::Relaxed);
        let [hedges, retries] = samples();
        assert!(hedged >= 1 && !hedges.is_empty(), "{hedged} {hedges:?}");
        assert!(hedges.len() <= 30, "at most once per call: {hedges:?}");
        assert_eq!(hedges.iter().sum::<f64>(), checker.hedges() as f64);
        assert_eq!(retries.iter().sum::<f64>(), checker.retries() as f64);

        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
        let refused = |_: &Member| {
            tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
                let err: tower::BoxError = Box::new(tonic::ConnectError(Box::new(
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                )));
                Err::<http::Response<tonic::body::Body>, _>(err)
            })
        };
        let balance: Stack =
            tower::util::BoxCloneSyncService::new(Balance::new(checker.clone(), refused));
        let mut req = range();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
        balance.oneshot(req).await.expect_err("fails");
        assert!(checker.retries() >= 2, "{}", checker.retries());
        let [hedges, retries] = samples();
        // (Its attempts each fail at once, and the hedge timer fires between them too.)
        let hedged: &[f64] = if checker.hedges() == 0 {
            &[]
        } else {
            &[checker.hedges() as f64]
        };
        assert_eq!(hedges, hedged);
        assert_eq!(
            retries,
            [checker.retries() as f64],
            "one call, its retries once"
        );
    }

    /// A `Range` with no limit over a prefix, or a larger limit than `hedge.max_range_limit`,
    /// is never hedged; a small one is.
    #[tokio::test(start_paused = true)]
    async fn large_ranges_are_never_hedged() {
        let (checker, balance, calls) = one_hung_of_three(Config::default());
        let failed = at_once(&balance, || range_of(b"a", b"b", 0)).await;
        let failed_too = at_once(&balance, || range_of(b"a", b"b", 1001)).await;
        let sent = calls[0].load(Ordering::Relaxed);
        assert!(sent >= 2, "{sent}");
        assert_eq!(
            failed + failed_too,
            sent,
            "each sent to the hung member failed"
        );
        assert_eq!(checker.hedges(), 0);
        // Fresh members (the hung one may be ejected by now): a small range is hedged.
        let (checker, balance, calls) = one_hung_of_three(Config::default());
        let failed = at_once(&balance, || range_of(b"a", b"b", 1000)).await;
        assert_eq!(failed, 0);
        let sent = calls[0].load(Ordering::Relaxed);
        assert!(sent >= 1, "{sent}");
        assert_eq!(checker.hedges(), sent as u64);
        assert_eq!(checker.retry_budget().extra, sent as u64);
    }

    /// A put the caller gives 300 ms.
    fn put_within_300ms() -> http::Request<tonic::body::Body> {
        let mut put = http::Request::builder()
            .uri("/etcdserverpb.KV/Put")
            .body(tonic::body::Body::empty())
            .expect("request");
        put.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
        put
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_answers_at_once_without_waiting_to_retry() {
        let (balance, calls) = all_ejected(3, AllUnhealthyPolicy::FailFast);
        let started = tokio::time::Instant::now();
        let err = balance.oneshot(range()).await.expect_err("nothing healthy");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("no healthy etcd member"),
            "{status:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 0, "nothing sent");
        assert_eq!(started.elapsed(), Duration::ZERO, "no back-off slept");
    }

    #[tokio::test(start_paused = true)]
    async fn panic_mode_still_tries_and_retries() {
        let (balance, calls) = all_ejected(3, AllUnhealthyPolicy::TryAll);
        let started = tokio::time::Instant::now();
        balance
            .oneshot(range())
            .await
            .expect_err("every member refuses");
        assert_eq!(calls.load(Ordering::Relaxed), 3, "retry.max_attempts");
        assert_eq!(started.elapsed(), Duration::ZERO, "one round: no back-off");
    }

    /// Reads are retried until the caller's deadline, in rounds over the members with a
    /// back-off after each, not a fixed 3 times (an election lasts about a second).
    #[tokio::test(start_paused = true)]
    async fn reads_retry_until_the_deadline() {
        let (balance, calls) = all_ejected_with(3, AllUnhealthyPolicy::TryAll, 100);
        let started = tokio::time::Instant::now();
        let mut req = range();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("1S"));
        balance
            .oneshot(req)
            .await
            .expect_err("every member refuses");
        let elapsed = started.elapsed();
        let n = calls.load(Ordering::Relaxed);
        // Rounds of 3 at once; back-offs of 12.5-25 ms, 25-50 ms, then 50-100 ms: about 11 to
        // 20 rounds fit in one second.
        assert!((30..=66).contains(&n), "{n} attempts in {elapsed:?}");
        assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
        assert!(elapsed <= Duration::from_secs(1), "{elapsed:?}");
    }

    /// A member that never answers: reads sent to it are hedged to a peer after the hedging
    /// delay and answered; it is ejected after `hang.threshold` such hangs; writes are never
    /// hedged.
    #[tokio::test(start_paused = true)]
    async fn slow_reads_are_hedged_and_a_hung_member_is_ejected() {
        let config = Config::default();
        let (checker, balance, calls) = one_hung_of_three(config.clone());
        let read = |balance: Stack| async move {
            let mut req = range();
            req.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static("2S"));
            let started = tokio::time::Instant::now();
            balance.oneshot(req).await.expect("answered by a peer");
            started.elapsed()
        };
        // 30 readers at once: some reads land on the hung member and are hedged.
        let reads = futures_util::future::join_all((0..30).map(|_| read(balance.clone()))).await;
        let slowest = reads.iter().max().copied().unwrap_or_default();
        let sent: Vec<usize> = calls.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert!(sent[0] >= 2, "{sent:?}");
        assert!(slowest >= config.hedge.min_delay, "hedged: {slowest:?}");
        assert!(slowest < Duration::from_millis(150), "{slowest:?}");
        // The outrun attempts run on until `hang.after`, then count as hangs.
        tokio::time::sleep(config.hang.after + Duration::from_millis(50)).await;
        let hung = &checker.snapshot()[0];
        assert_eq!(hung.status, Status::Unhealthy, "{hung:?}");
        assert!(
            hung.totals[4] >= u64::from(config.hang.threshold),
            "{hung:?}"
        );
        assert!(checker.hedges() >= 2);
        let to_hung = calls[0].load(Ordering::Relaxed);
        futures_util::future::join_all((0..30).map(|_| read(balance.clone()))).await;
        assert_eq!(
            calls[0].load(Ordering::Relaxed),
            to_hung,
            "no reads once ejected"
        );

        // A write is never hedged: sent to the hung member, it waits for its deadline and
        // fails as *outcome unknown*.
        checker.record(&checker.members()[1], Source::Passive, Outcome::TcpFailure);
        checker.record(&checker.members()[2], Source::Passive, Outcome::TcpFailure);
        let c = Config::default();
        assert!(c.ejection.base >= Duration::from_secs(1));
        // Re-admit member 0 by hand so the write goes there (the others are ejected now).
        tokio::time::advance(c.ejection.base * 2).await;
        checker.record(&checker.members()[0], Source::Active, Outcome::Success);
        let before = calls[0].load(Ordering::Relaxed);
        let err = balance
            .clone()
            .oneshot(put_within_300ms())
            .await
            .expect_err("no answer");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(crate::error::outcome_unknown(&status), "{status:?}");
        assert_eq!(calls[0].load(Ordering::Relaxed), before + 1, "sent once");
        let others = calls[1].load(Ordering::Relaxed) + calls[2].load(Ordering::Relaxed);
        assert_eq!(others, 60, "the write was never hedged");
    }

    /// A caller without a deadline: an attempt on a member that never answers ends when the
    /// member is ejected for hanging (a write as *outcome unknown*, sent once; a read retried
    /// on another member at once), and with nothing to eject it, at `retry.budget`.
    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_attempts_end_at_ejection_or_at_the_budget() {
        let config = Config::default();
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, config.clone()).expect("checker");
        let calls: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let counted = calls.clone();
        let make = move |m: &Member| {
            let index = m.index();
            let calls = counted.clone();
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls[index].fetch_add(1, Ordering::Relaxed);
                async move {
                    if index == 0 {
                        std::future::pending::<()>().await;
                    }
                    let mut resp = http::Response::new(tonic::body::Body::empty());
                    resp.headers_mut()
                        .insert("grpc-status", http::HeaderValue::from_static("0"));
                    Ok::<_, tower::BoxError>(resp)
                }
            })
        };
        let balance: Stack =
            tower::util::BoxCloneSyncService::new(Balance::new(checker.clone(), make));
        let members = checker.members();
        // Sent to member 0, no deadline.
        let to_hung = |uri: &str| {
            let mut req = http::Request::builder()
                .uri(uri)
                .body(tonic::body::Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(crate::balance::AvoidMembers(vec![
                    members[1].clone(),
                    members[2].clone(),
                ]));
            req
        };
        let started = tokio::time::Instant::now();
        let put = tokio::spawn(balance.clone().oneshot(to_hung("/etcdserverpb.KV/Put")));
        let read = tokio::spawn(balance.clone().oneshot(to_hung("/etcdserverpb.KV/Range")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!put.is_finished() && !read.is_finished());
        for _ in 0..config.hang.threshold {
            checker.record(&members[0], Source::Passive, Outcome::Hang);
        }
        assert_eq!(checker.snapshot()[0].status, Status::Unhealthy);
        let err = put.await.expect("task").expect_err("abandoned");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(crate::error::outcome_unknown(&status), "{status:?}");
        assert!(status.message().contains("was ejected"), "{status:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(1), "ended at once");
        let resp = read.await.expect("task").expect("read retried elsewhere");
        let served = resp.extensions().get::<crate::balance::ServedBy>();
        assert_ne!(served.expect("served").0.index(), 0);
        // The members it was told to avoid count as tried: one round's back-off at most.
        assert!(started.elapsed() <= Duration::from_millis(1025));
        assert_eq!(calls[0].load(Ordering::Relaxed), 2, "each sent once to it");
        let others = calls[1].load(Ordering::Relaxed) + calls[2].load(Ordering::Relaxed);
        assert_eq!(others, 1, "the read alone went elsewhere");

        // Back in rotation, nothing ejects it: the write ends at `retry.budget`.
        tokio::time::advance(config.ejection.max * 2).await;
        checker.record(&members[0], Source::Active, Outcome::Success);
        let started = tokio::time::Instant::now();
        let err = balance
            .clone()
            .oneshot(to_hung("/etcdserverpb.KV/Put"))
            .await
            .expect_err("bounded");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(crate::error::outcome_unknown(&status), "{status:?}");
        assert!(status.message().contains("retry.budget"), "{status:?}");
        assert_eq!(started.elapsed(), config.retry.budget);
        assert_eq!(calls[0].load(Ordering::Relaxed), 3, "sent once");
    }

    /// An answer whose head arrived but whose body broke off (a member killed mid-answer) is
    /// a failed attempt: a read goes to another member, a write fails as *outcome unknown*
    /// and is not sent again; an answer that stops after its head is bounded by the deadline.
    #[tokio::test(start_paused = true)]
    async fn answers_broken_off_after_their_head_are_failed_attempts() {
        use bytes::Bytes;
        use http_body::Frame;
        use std::sync::atomic::AtomicBool;
        let endpoints: Vec<String> = (1..=2).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
        let calls: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        // Member 0's answers break off after the head, or (when set) stop there for ever.
        let stall = Arc::new(AtomicBool::new(false));
        let (counted, stalls) = (calls.clone(), stall.clone());
        let make = move |m: &Member| {
            let index = m.index();
            let (calls, stall) = (counted.clone(), stalls.clone());
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls[index].fetch_add(1, Ordering::Relaxed);
                let body = match (index, stall.load(Ordering::Relaxed)) {
                    (0, false) => {
                        let broken: Vec<Result<Frame<Bytes>, tonic::Status>> =
                            vec![Err(tonic::Status::unknown(
                                "h2 protocol error: error reading a body from connection",
                            ))];
                        tonic::body::Body::new(http_body_util::StreamBody::new(
                            futures_util::stream::iter(broken),
                        ))
                    }
                    (0, true) => tonic::body::Body::new(http_body_util::StreamBody::new(
                        futures_util::stream::pending::<Result<Frame<Bytes>, tonic::Status>>(),
                    )),
                    _ => {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let whole: Vec<Result<Frame<Bytes>, tonic::Status>> = vec![
                            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        tonic::body::Body::new(http_body_util::StreamBody::new(
                            futures_util::stream::iter(whole),
                        ))
                    }
                };
                async move { Ok::<_, tower::BoxError>(http::Response::new(body)) }
            })
        };
        let balance: Stack =
            tower::util::BoxCloneSyncService::new(Balance::new(checker.clone(), make));
        // Sent to member 0 first: its broken answer is retried on member 1.
        let mut first = range();
        first
            .extensions_mut()
            .insert(crate::balance::AvoidMembers(vec![
                checker.members()[1].clone()
            ]));
        let resp = balance.clone().oneshot(first).await.expect("read");
        let served = resp.extensions().get::<crate::balance::ServedBy>();
        assert_eq!(served.expect("served").0.index(), 1);
        assert_eq!(calls[0].load(Ordering::Relaxed), 1, "member 0 was tried");
        for n in 0..20 {
            let resp = balance.clone().oneshot(range()).await.expect("read");
            let served = resp
                .extensions()
                .get::<crate::balance::ServedBy>()
                .expect("served");
            assert_eq!(served.0.index(), 1, "read {n}");
        }

        // Only member 0 left: a write is sent once and fails as outcome unknown.
        checker.record(&checker.members()[1], Source::Passive, Outcome::TcpFailure);
        tokio::time::advance(Config::default().ejection.max * 2).await;
        checker.record(&checker.members()[0], Source::Active, Outcome::Success);
        let before = calls.each_ref().map(|c| c.load(Ordering::Relaxed));
        let err = balance
            .clone()
            .oneshot(put_within_300ms())
            .await
            .expect_err("broken");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("broke off"), "{status:?}");
        assert!(crate::error::outcome_unknown(&status), "{status:?}");
        assert_eq!(calls[0].load(Ordering::Relaxed), before[0] + 1, "sent once");
        assert_eq!(calls[1].load(Ordering::Relaxed), before[1], "not elsewhere");

        // An answer that stops after its head ends at the deadline, as outcome unknown.
        stall.store(true, Ordering::Relaxed);
        tokio::time::advance(Config::default().ejection.max * 2).await;
        for _ in 0..10 {
            checker.record(&checker.members()[0], Source::Active, Outcome::Success);
        }
        assert_eq!(checker.snapshot()[0].status, Status::Healthy);
        let before = calls.each_ref().map(|c| c.load(Ordering::Relaxed));
        let started = tokio::time::Instant::now();
        let err = balance
            .clone()
            .oneshot(put_within_300ms())
            .await
            .expect_err("stalled");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(crate::error::outcome_unknown(&status), "{status:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(calls[0].load(Ordering::Relaxed), before[0] + 1, "sent once");
        assert_eq!(calls[1].load(Ordering::Relaxed), before[1], "not elsewhere");
    }

    /// A small body is copied out of the frame that carried it (which may pin a large
    /// buffer), and the frame handed on for the first copy; a large one is kept as it is;
    /// several frames are joined.
    #[tokio::test]
    async fn buffers_request_bodies() {
        use bytes::Bytes;
        let small = Bytes::from(vec![7u8; 10]);
        let (kept, first) = super::buffer(tonic::body::Body::new(http_body_util::Full::new(
            small.clone(),
        )))
        .await
        .expect("body");
        assert_eq!(kept, small);
        assert_ne!(kept.as_ptr(), small.as_ptr(), "copied");
        assert_eq!(
            first.as_ptr(),
            small.as_ptr(),
            "the frame, for the first copy"
        );

        let large = Bytes::from(vec![7u8; super::COPY_BODY_UP_TO + 1]);
        let (kept, first) = super::buffer(tonic::body::Body::new(http_body_util::Full::new(
            large.clone(),
        )))
        .await
        .expect("body");
        assert_eq!(kept.as_ptr(), large.as_ptr(), "kept");
        assert!(first.is_empty());

        let frames: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"cd"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"e"))),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let (kept, first) = super::buffer(tonic::body::Body::new(body))
            .await
            .expect("body");
        assert_eq!(kept, Bytes::from_static(b"abcde"));
        assert!(first.is_empty());
        assert_eq!(
            super::buffer(tonic::body::Body::empty())
                .await
                .expect("body"),
            (Bytes::new(), Bytes::new())
        );
    }

    /// Every copy of a kept request carries the whole body: the first tonic's own frame, the
    /// others the kept buffer.
    #[tokio::test]
    async fn every_copy_of_a_kept_request_carries_its_body() {
        use http_body_util::BodyExt;
        let (parts, body) = range().into_parts();
        let mut replay = super::Replay::new(parts, crate::etcd::Method::of("/etcdserverpb.KV/Put"));
        let kept = super::buffer(body).await.expect("body");
        let whole = kept.0.clone();
        assert!(whole.len() > 5, "a framed message");
        replay.keep(kept, 0);
        for _ in 0..3 {
            let req = replay.request();
            assert_eq!(req.uri().path(), "/etcdserverpb.KV/Range");
            let got = req.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(got, whole);
        }
    }

    /// The two futures boxed on every unary request stay under 1 KiB: glibc serves blocks up
    /// to that size from a per-thread cache, larger ones from its shared arenas, and a
    /// profile of the calling thread had its consolidation of free blocks in it (see
    /// `Replay`).
    #[tokio::test]
    async fn per_request_futures_stay_under_a_kibibyte() {
        use crate::etcd::{Method, MethodKind};
        let checker =
            HealthChecker::new(&["http://127.0.0.1:1"], Config::default()).expect("checker");
        let balance = Balance::new(checker.clone(), crate::balance::TonicConnector::default());
        let method = Method::of("/etcdserverpb.KV/Range");
        let (parts, body) = range().into_parts();
        let replay = super::Replay::new(parts, method);
        let plan = super::Plan::new(vec![]);
        let unary = balance.clone().unary(replay, body, plan, None);
        let entries = checker.entries();
        let entry = entries[0].clone();
        let svc = balance.service_for(&entry, &entries);
        let now = tokio::time::Instant::now();
        let attempt = super::attempt(
            svc,
            range(),
            balance.tracker(entry, now),
            MethodKind::Unary,
            Default::default(),
            now,
        );
        let sizes = (
            std::mem::size_of_val(&unary),
            std::mem::size_of_val(&attempt),
        );
        println!("unary, attempt: {sizes:?}");
        assert!(
            sizes.0 < 1024 && sizes.1 < 1024,
            "unary, attempt: {sizes:?}"
        );
    }
}
