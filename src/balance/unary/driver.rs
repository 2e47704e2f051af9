//! The unary driver: sends the copies [`Dispatch`] decides on, sleeps until its next timer,
//! and reports each copy's end back to it.
//!
//! Why thin: every decision of a unary request (where its next copy goes, whether it is a
//! retry, a hedge or nothing, when, what the caller gets) is [`Dispatch`]'s, pure and tested
//! on made-up clocks; what is left here is what cannot be pure (the copies in flight, the
//! timer, the watch on the health state, the metrics and the hedging estimates), tested on
//! paused time over fake members. It reaches the members through [`Members`], which the
//! balancer implements, so the driver does not import the service that runs it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tokio::time::Instant;

use super::inflight::InFlight;
use super::plan::{Answered, Bounds, Dispatch, FailedCopy, HedgeVerdict, Moment};
use super::replay::{buffer, Replay};
use super::schedule::{jitter, Fire, Next};
use crate::balance::attempt::{sleep_until_opt, Attempt, Failure, Limits};
use crate::balance::hedge::HedgeDelay;
use crate::balance::route::write_target;
use crate::budget::Extra;
use crate::budget::RetryBudget;
use crate::config::Config;
use crate::etcd::{Class, Hedging};
use crate::member::MemberEntry;

/// What a request's caller gets.
type Answer = Result<Response<tonic::body::Body>, tower::BoxError>;

/// What the driver needs of the balancer: the health state, the hedging estimates, and one
/// copy of a request sent to one member.
pub(crate) trait Members: Send + Sync + 'static {
    /// The shared health state, as the driver sees it.
    type Health: Health;
    /// The shared health state.
    fn health(&self) -> &Self::Health;
    /// The hedging delay of reads of kind `hedging`; `None` for those never hedged.
    fn hedge(&self, hedging: Hedging) -> Option<&HedgeDelay>;
    /// One attempt of `req` on `entry` (picked from `entries`), sent `now`; boxed where it is
    /// made (one move of it fewer than boxing it here).
    fn attempt(
        &self,
        entry: Arc<MemberEntry>,
        entries: &[Arc<MemberEntry>],
        req: Request<tonic::body::Body>,
        limits: Limits,
        now: Instant,
    ) -> BoxFuture<'static, Attempt>;
}

/// What the driver reads of the health state and reports to it: the balancer's handle
/// implements it (in `balance/layer.rs`), so the driver does not name the checker.
pub(crate) trait Health: Send + Sync + 'static {
    /// The configuration in force.
    fn config(&self) -> &Config;
    /// The members, in index order, as they are now.
    fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>>;
    /// The member that leads, if known.
    fn leader_entry(&self) -> Option<Arc<MemberEntry>>;
    /// Wakes on every change of a member's status or of the membership.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The retry budget retries and hedges draw from.
    fn budget(&self) -> &RetryBudget;
    /// The metrics of the requests through the state.
    fn metrics(&self) -> &crate::metrics::Checker;
    /// Counts a request sent again to another member.
    fn count_retry(&self);
    /// Counts a read also sent to a second member.
    fn count_hedge(&self);
}

/// Sends a unary request and sees it through: reads are hedged (a read slower than the
/// members' usual latency also goes to another member; the first answer wins) and retried
/// after any member-level failure; writes are retried only when certainly not processed.
/// Retries go to members not tried yet in this round at once, and after each round over the
/// members wait a back-off (cut short when the health state or the leader changes), until the
/// caller's deadline (or `retry.budget`) or `retry.max_attempts`. Every hedge, and every retry
/// after a failure that may have cost a member work, is drawn from the retry budget
/// (`crate::budget`); past it the request is sent once, as a single request would be. The
/// decisions are [`Dispatch`]'s.
///
/// Not an `async fn`: an `async fn` moves its arguments into locals of its own, so its future
/// would hold the kept request twice; the [`Unary`] built here is the future's one copy.
/// `now` is when the request came (the caller's reading of the clock).
#[inline(always)]
pub(crate) fn run<B: Members>(
    members: B,
    replay: Replay,
    body: tonic::body::Body,
    avoid: Vec<usize>,
    deadline: Option<Duration>,
    now: Instant,
) -> impl Future<Output = Answer> + Send + 'static {
    let mut unary = Unary::new(members, replay, avoid, deadline, now);
    async move {
        // Kept for the retries and hedges any attempt may need (a write is re-sent only when it
        // certainly never ran, which is known only after it was sent); its body may tell a
        // `Txn` of reads.
        unary.start(buffer(body).await?);
        loop {
            tokio::select! {
                biased;
                Some((slot, outcome)) = unary.in_flight.next(), if !unary.in_flight.is_empty() => {
                    if let Some(answer) = unary.ended(slot, outcome) {
                        return answer;
                    }
                }
                // One timer for the next attempt and the next hedge (the earlier of them): a
                // smaller future, and one registration per read.
                _ = sleep_until_opt(unary.dispatch.wake(), unary.now) => {
                    if let Some(answer) = unary.fire() {
                        return answer;
                    }
                }
                changed = wait_changed(&mut unary.changes),
                    if unary.changes.is_some() && unary.dispatch.waits_for_changes() =>
                {
                    unary.changed(changed);
                }
            }
        }
    }
}

/// One unary request on its way: the kept request, the decisions, the copies in flight.
struct Unary<B> {
    members: B,
    replay: Replay,
    dispatch: Dispatch,
    in_flight: InFlight<Attempt>,
    /// The last failure, for the caller if nothing better comes. Boxed: a failure is rare, and
    /// this future is allocated on every request.
    last: Option<Box<Failure>>,
    /// The health state's changes, watched while a round's back-off runs.
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The caller set a deadline (`grpc-timeout`).
    has_deadline: bool,
    /// The clock as last read: once per turn of the loop, shared by everything that turn does
    /// (a handful of readings per request instead of a dozen).
    now: Instant,
}

// === impl Unary ===

impl<B: Members> Unary<B> {
    #[inline(always)]
    fn new(
        members: B,
        replay: Replay,
        avoid: Vec<usize>,
        deadline: Option<Duration>,
        now: Instant,
    ) -> Self {
        let config = members.health().config();
        let class = replay.method().class;
        let dispatch = Dispatch::new(class, avoid, now, deadline, &config.retry, &config.hedge);
        Self {
            members,
            replay,
            dispatch,
            in_flight: InFlight::new(),
            last: None,
            changes: None,
            has_deadline: deadline.is_some(),
            now,
        }
    }

    /// Keeps the request's body (see [`buffer`]): what it is is now known (the schedule is
    /// made anew for it), and its first attempt is due.
    fn start(&mut self, body: bytes::Bytes) {
        let checker = self.members.health();
        let config = checker.config();
        self.replay.keep(body, config.hedge.max_range_limit);
        let class = self.replay.method().class;
        // The clock as read when the request came: reading the body is over at once (tonic
        // encodes the message as it is polled).
        checker.budget().deposit(self.now.into_std());
        self.dispatch.start(class, &config.hedge);
    }

    /// The copy in `slot` ended: the caller's answer, or `None` to go on.
    fn ended(&mut self, slot: usize, outcome: Attempt) -> Option<Answer> {
        match outcome {
            Attempt::Answer(response) => Some(Ok(self.answered(slot, response))),
            Attempt::Failed(failure) => self.failed(slot, failure),
        }
    }

    fn answered(
        &mut self,
        slot: usize,
        response: Response<tonic::body::Body>,
    ) -> Response<tonic::body::Body> {
        let Answered { sent, won, hedge } = self.dispatch.answered(slot);
        if let Some(delay) = self.members.hedge(self.replay.method().hedging) {
            delay.observe(sent.at.elapsed());
            self.members.health().metrics().read_answered(won);
            match hedge {
                Some(HedgeVerdict::Lost) => delay.hedge_lost(),
                Some(HedgeVerdict::Won) => delay.hedge_won(),
                None => {}
            }
        }
        // Copies sent before this one and still unanswered were outrun: their members are
        // slower than a peer right now, so the balancer should prefer others at once. Whether
        // they *hang* is decided by letting those copies run a little longer, detached, until
        // `hang.after`: a member that merely lost a race answers by then.
        for other in self.dispatch.outrun_by(&sent) {
            tracing::trace!(member = %other.entry.member(), waited = ?other.at.elapsed(), "outrun by a peer");
            let now = crate::timing::now();
            other.entry.load().observe(other.at.elapsed(), now);
        }
        let (in_flight, hang_after) = (self.in_flight.len(), self.bounds().hang_after);
        if let Some(until) = self.dispatch.drain_until(&sent, hang_after, in_flight) {
            let mut in_flight = std::mem::take(&mut self.in_flight);
            tokio::spawn(async move {
                let drain = async { while in_flight.next().await.is_some() {} };
                let _ = tokio::time::timeout_at(until, drain).await;
            });
        }
        self.replay.answer(response, sent.entry.member())
    }

    fn failed(&mut self, slot: usize, failure: Failure) -> Option<Answer> {
        let checker = self.members.health();
        let config = checker.config();
        let entries = checker.entries();
        // Fresh: the next attempt may be due at once, and a stale reading would send it
        // through a timer (a tick late).
        let now = Instant::now();
        self.now = now;
        let moment = Moment {
            entries: &entries,
            policy: config.all_unhealthy,
            in_flight: self.in_flight.len(),
            now,
        };
        let copy = FailedCopy {
            maybe_processed: failure.maybe_processed,
            message: failure.status.message(),
        };
        let withdraw = || checker.budget().try_withdraw(now.into_std(), Extra::Retry);
        let (sent, decision) =
            self.dispatch
                .failed(slot, copy, moment, &config.retry, jitter(), withdraw);
        let mut failure = match self.replay.marks_served() {
            true => failure.served_by(sent.entry.member()),
            false => failure,
        };
        if self.dispatch.outcome_unknown(failure.maybe_processed) {
            failure = failure.outcome_unknown();
        }
        if decision.round_over {
            // A round is over, or the cluster has no leader for the moment: wait, but wake
            // when health or leader changes.
            let changes = self.changes.get_or_insert_with(|| checker.changes());
            changes.borrow_and_update();
        }
        match decision.next {
            Next::GiveUp => return Some(failure.into_result()),
            Next::AwaitOthers | Next::AlreadySet => {}
            Next::RetryAt(_) | Next::BackOff(_) => {
                tracing::debug!(method = %self.replay.path(), attempt = self.dispatch.attempts(), status = ?failure.status, leaderless = failure.leaderless, next = ?decision.next, "retrying on another member");
            }
        }
        self.last = Some(Box::new(failure));
        None
    }

    /// The timer fired: sends what [`Dispatch::on_timer`] says is due.
    fn fire(&mut self) -> Option<Answer> {
        self.now = Instant::now();
        let now = self.now;
        let checker = self.members.health();
        let policy = checker.config().all_unhealthy;
        let hedging = self.replay.method().hedging;
        let fire = self.dispatch.on_timer(now, self.in_flight.len());
        let (entries, entry, delay) = match fire {
            Fire::Attempt => {
                let entries = checker.entries();
                let preferred = self.preferred(&entries, now);
                let entry = match self
                    .dispatch
                    .member_for_attempt(&entries, policy, preferred, now)
                {
                    Ok(entry) => entry,
                    // No member may take it (fail-fast with none healthy, or no members):
                    // after a failed attempt the caller learns what happened to its request
                    // instead.
                    Err(status) if self.in_flight.is_empty() => {
                        let last = self.last.take();
                        return Some(
                            last.map_or_else(|| Failure::not_sent(status), |f| *f)
                                .into_result(),
                        );
                    }
                    Err(_) => return None,
                };
                if self.dispatch.attempts() > 0 {
                    checker.count_retry();
                    self.replay.retried(checker.metrics());
                }
                // A hedge goes to another member: with one known, no timer for it.
                let hedge = self.members.hedge(hedging).filter(|_| entries.len() > 1);
                (entries, entry, hedge.map(HedgeDelay::delay))
            }
            Fire::Hedge => {
                let entries = checker.entries();
                // Past the budget, no hedge and no further hedge timer: the read waits out the
                // copies it has.
                let entry = self.dispatch.member_for_hedge(&entries, policy, now);
                let (Some(entry), Some(hedge)) = (entry, self.members.hedge(hedging)) else {
                    return None;
                };
                if !checker.budget().try_withdraw(now.into_std(), Extra::Hedge) {
                    return None;
                }
                tracing::trace!(member = %entry.member(), "hedging a slow read");
                checker.count_hedge();
                self.replay.hedged(checker.metrics());
                (entries, entry, Some(hedge.delay()))
            }
            Fire::Nothing => return None,
        };
        self.send(fire, entry, &entries, delay);
        None
    }

    /// The member the next attempt should go to, if any: the leader for a request only it may
    /// serve, where a write goes (`leader.route_writes`, see `route.rs`).
    fn preferred(&self, entries: &[Arc<MemberEntry>], now: Instant) -> Option<Arc<MemberEntry>> {
        let checker = self.members.health();
        let method = self.replay.method();
        if method.leader_only {
            checker.leader_entry()
        } else if method.class == Class::Write && checker.config().leader.route_writes {
            write_target(entries, checker.leader_entry(), now.into_std())
        } else {
            None
        }
    }

    /// Sends a copy of the request to `entry`, now.
    fn send(
        &mut self,
        fire: Fire,
        entry: Arc<MemberEntry>,
        entries: &[Arc<MemberEntry>],
        hedge_delay: Option<Duration>,
    ) {
        let now = self.now;
        let limits = self.dispatch.limits(&self.bounds(), now);
        let in_flight = self.in_flight.len();
        let slot = self
            .dispatch
            .sent(fire, entry.clone(), now, in_flight, hedge_delay);
        let mut req = self.replay.request();
        // The retry budget is ours: only a caller's deadline (or a read's own bound) goes on.
        if let Some(limit) = limits.deadline.filter(|_| limits.callers_deadline) {
            crate::grpc::header::set_timeout(req.headers_mut(), limit);
        }
        let attempt = self.members.attempt(entry, entries, req, limits, now);
        self.in_flight.push(slot, attempt);
    }

    /// What bounds each copy of this request (see [`Bounds`]).
    fn bounds(&self) -> Bounds {
        let config = self.members.health().config();
        Bounds::new(config, self.replay.method().class, self.has_deadline)
    }

    /// The health state or the leader changed during a back-off (`changed`; `false` if it can
    /// no longer change): go now.
    fn changed(&mut self, changed: bool) {
        self.changes = None;
        if changed {
            self.now = Instant::now();
            self.dispatch.changed(self.now);
        }
    }
}

/// Waits for a change of the health state; `false` if it can no longer change.
async fn wait_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tower::ServiceExt;

    use crate::balance::Balance;
    use crate::checker::HealthChecker;
    use crate::config::{AllUnhealthyPolicy, Config};
    use crate::health::{Outcome, Source, Status};
    use crate::member::Member;

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
            req.extensions_mut().insert(crate::balance::AskServedBy);
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
        first.extensions_mut().insert(crate::balance::AskServedBy);
        let resp = balance.clone().oneshot(first).await.expect("read");
        let served = resp.extensions().get::<crate::balance::ServedBy>();
        assert_eq!(served.expect("served").0.index(), 1);
        assert_eq!(calls[0].load(Ordering::Relaxed), 1, "member 0 was tried");
        for n in 0..20 {
            let mut read = range();
            read.extensions_mut().insert(crate::balance::AskServedBy);
            let resp = balance.clone().oneshot(read).await.expect("read");
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

    /// The two futures boxed on every unary request stay under 1 KiB: glibc serves blocks up
    /// to that size from a per-thread cache, larger ones from its shared arenas, and a
    /// profile of the calling thread had its consolidation of free blocks in it (see
    /// `Replay`).
    #[tokio::test]
    async fn per_request_futures_stay_under_a_kibibyte() {
        use crate::balance::MakeMember;
        use crate::etcd::{Method, MethodKind};
        use crate::passive::{Classifier, Judge, Tracker};
        let checker =
            HealthChecker::new(&["http://127.0.0.1:1"], Config::default()).expect("checker");
        let balance = Balance::new(checker.clone(), crate::balance::TonicConnector::default());
        let method = Method::of("/etcdserverpb.KV/Range");
        let (parts, body) = range().into_parts();
        let replay = super::Replay::new(parts, method, false);
        let now = tokio::time::Instant::now();
        let unary = super::run(balance.clone(), replay, body, vec![], None, now);
        let entries = checker.entries();
        let entry = entries[0].clone();
        // The attempt as it is made, before its box: a channel's call in it.
        let svc = crate::balance::TonicConnector::default().make_member(entry.member());
        let classifier = Classifier::new(None, checker.config());
        let judge = Arc::new(Judge::new(checker.verdicts(), classifier));
        let tracker = Tracker::start(judge, entry, now.into_std());
        let limits = Default::default();
        let attempt =
            crate::balance::attempt::attempt(svc, range(), tracker, MethodKind::Unary, limits, now);
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

    /// A write every member refused before it ran ("no leader", behind `hasleader`) waits out
    /// a round's back-off, unless the health state changes first: then it goes at once, to a
    /// member still in rotation.
    #[tokio::test(start_paused = true)]
    async fn a_health_change_cuts_a_rounds_back_off_short() {
        use std::sync::atomic::AtomicBool;
        let mut config = Config::default();
        config.retry.backoff = Duration::from_secs(1);
        config.retry.max_backoff = Duration::from_secs(2);
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, config).expect("checker");
        let calls = Arc::new(AtomicUsize::new(0));
        let leaderless = Arc::new(AtomicBool::new(true));
        let (counted, refusing) = (calls.clone(), leaderless.clone());
        let make = move |_: &Member| {
            let (calls, leaderless) = (counted.clone(), refusing.clone());
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls.fetch_add(1, Ordering::Relaxed);
                let mut resp = http::Response::new(tonic::body::Body::empty());
                let status = if leaderless.load(Ordering::Relaxed) {
                    "14"
                } else {
                    "0"
                };
                let headers = resp.headers_mut();
                headers.insert("grpc-status", http::HeaderValue::from_static(status));
                headers.insert(
                    "grpc-message",
                    http::HeaderValue::from_static("etcdserver: no leader"),
                );
                async move { Ok::<_, tower::BoxError>(resp) }
            })
        };
        let balance: Stack =
            tower::util::BoxCloneSyncService::new(Balance::new(checker.clone(), make));
        let put = || {
            let mut put = put_within_300ms();
            put.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static("5S"));
            put.extensions_mut().insert(crate::balance::AskServedBy);
            put
        };

        // No change: the round's back-off (1 s, up to half of it taken off) is waited out.
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(balance.clone().oneshot(put()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::Relaxed), 3, "one round, at once");
        leaderless.store(false, Ordering::Relaxed);
        waiting.await.expect("task").expect("answered");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(calls.load(Ordering::Relaxed), 4);

        // A member ejected during the back-off: the next attempt goes at once.
        leaderless.store(true, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(balance.clone().oneshot(put()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::Relaxed), 7, "one round, at once");
        leaderless.store(false, Ordering::Relaxed);
        let member = checker.members()[0].clone();
        assert_eq!(
            checker.record(&member, Source::Passive, Outcome::TcpFailure),
            Some(Status::Unhealthy)
        );
        let resp = waiting.await.expect("task").expect("answered");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(10),
            "at the change"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 8);
        let served = resp.extensions().get::<crate::balance::ServedBy>();
        assert_ne!(
            served.expect("served").0.index(),
            0,
            "not the ejected member"
        );
    }
}
