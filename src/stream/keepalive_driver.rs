//! The keep-alive engine: each keep-alive of its caller is sent to the leader, and to other
//! members too when it stays unanswered. It serves etcd-client's `Lease/LeaseKeepAlive`
//! streams through the drop-in and the tower [`KeepAlive`](crate::lease::KeepAlive), which
//! feeds it keep-alives every TTL/3 as etcd-client's keeper does (`keepalive_caller.rs`: the
//! only difference between the two is how keep-alives come in and answers go out).
//!
//! Why hedge instead of moving one stream: the loop etcd-client's docs show (send, read the
//! answer, sleep TTL/3) renews only after an answer comes, so every second an answer waits
//! comes off the lease's margin. While the leader hangs, a keep-alive sent to it waits for
//! ever, and one sent to a follower is forwarded to the hung leader and held for etcd's
//! request timeout (5 s plus two election timeouts in etcd 3.4's `LeaseRenew`), even after a
//! new leader is elected. One stream moved only after `max(4 × hang.after, 2 s)` of silence
//! answered a 5 s lease after up to 3.6 s in the soak, and lost it once. Keep-alives are
//! idempotent, so a slow one is asked again of another member on a stream of its own, and the
//! first answer wins. The pieces: the [`Schedule`] (hedge a keep-alive unanswered for a quarter
//! of the response timeout, at most [`MAX_STREAMS`] streams, a stream that leaves one
//! unanswered for the response timeout given up; the response timeout twice `hang.after`, 1 s
//! by default, or the renewal interval if shorter), the choice of member ([`place_keepalive`]:
//! the leader first, never a member that already carries a stream), the member streams
//! (`keepalive_lane.rs`, over the [`Lane`](super::lane::Lane) the watch driver uses too) and
//! the caller's keep-alives and their answers (each passed on once, in the [`KeepAliveBook`]).
//!
//! When the health state finds a new leader while a keep-alive is unanswered, it is sent to
//! that leader at once (the oldest stream makes room if need be): a new leader renews at
//! once, while the followers may still hold the keep-alive for the old one. A keep-alive
//! hedged also asks the health state for a leader check, so that news comes soon.
//!
//! Bounds on the extra keep-alives, all counted in [`StreamStats`](super::StreamStats): a
//! hedge only after the delay, at most [`MAX_STREAMS`] streams per caller stream, streams
//! re-opened after a jittered back-off (capped at the hedge delay) when every one was lost.
//! Each keep-alive of the caller is a request to the retry budget (`crate::budget`), and each
//! hedge (another stream while one is open, the keep-alive sent to a new leader while other
//! streams carry it) is drawn from it as the balancer's hedges are: past it, the keep-alive
//! waits on the streams it has. Except when the lease is short of time
//! ([`Schedule::urgent`]: half its TTL or less left, or nothing known of it yet): then a hedge
//! goes whatever the budget, so the budget never starves a lease into expiry. Those hedges
//! are bounded per lease, not by traffic: at most [`MAX_STREAMS`] streams, one more per hedge
//! delay, and only in the last half of the TTL of a keep-alive still unanswered. A stream
//! re-opened when none is left is not drawn: it is the keep-alive's only copy, not an extra
//! one, and the back-off above paces it.

//!
//! Without a health checker (a tower `KeepAlive` over a plain tonic channel) the engine knows
//! no members, leader or budget: the balancer places each stream away from the members that
//! carry one or failed lately, and hedges are bounded by [`MAX_STREAMS`] and the hedge delay.
//!
//! The first open of etcd-client's stream is bounded as a watch's is (`opening.rs`): by the
//! caller's deadline, else `retry.budget`, else once each member failed or left its opening
//! silent for the response timeout. A silent opening is not charged to its member, unlike a
//! watch's: etcd sends a keep-alive stream's headers with its first answer, and a follower
//! holds that answer while the leader hangs, so the silence may be the leader's.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tonic::metadata::MetadataMap;

use super::book::Book;
use super::choose::{last_resort, place_keepalive, Known};
use super::driver::{stream_timeout, Streams};
use super::health::{health_news, HealthNews, StreamHealth};
use super::keepalive_book::KeepAliveBook;
use super::keepalive_caller::{Caller, CallerIn, LocalEnds};
use super::keepalive_lane::{take_on_member, take_stale, KeepAliveLane};
use super::keepalive_schedule::{Schedule, Step, Timing, MAX_STREAMS};
use super::lane::{Heard, Opening};
use super::latest_token::LatestToken;
use super::opening::FirstOpen;
use super::stats::StreamKind;
use crate::balance::AvoidMembers;
use crate::balance::ResponseFuture;
use crate::budget::Extra;
use crate::event::HealthEvent;
use crate::member::Member;
use crate::proto::etcdserverpb::LeaseKeepAliveResponse;
use crate::stream::resume::{classify, BoxChannel, Lost, Reopen, ReopenOptions};
use crate::timing;

/// How long a member the stream failed on is avoided.
const AVOID_FOR: Duration = Duration::from_secs(10);

/// Keep-alives a stream may hold unread by its member (the caller may keep several leases on
/// one stream, or send before an answer).
const LANE_QUEUE: usize = 64;

/// How long one stream may leave a keep-alive unanswered before it is given up, at most: twice
/// `hang.after` (the unary requests' bound), half the plain stream timeout. Other members are
/// asked from a quarter of it on.
pub(super) fn response_timeout(config: &crate::config::Config) -> Duration {
    stream_timeout(config) / 2
}

/// The wait before a stream is opened again when every one was lost: the back-off (jittered
/// already, see [`Reopen::delay`]), capped at the hedge delay jittered the same way (one
/// attempt per hedge delay is what a hedge costs too). `unit` places the cap's jitter.
fn reopen_delay(backoff: Duration, hedge_after: Duration, unit: f64) -> Duration {
    backoff.min(timing::shorten(hedge_after, timing::BACKOFF, unit))
}

/// Takes the caller's keep-alive stream request; the response is the driver's.
pub(super) fn start(streams: Streams, req: http::Request<tonic::body::Body>) -> ResponseFuture {
    let (first_tx, first_rx) = oneshot::channel();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    let config = streams.checker.config();
    // The caller's deadline bounds the opening only (see `opening.rs`).
    let first_open = FirstOpen::new(&headers, config, true, Instant::now());
    // A stream that outlives members has no deadline of its own; the balancer sets
    // `hasleader` itself.
    headers.remove("grpc-timeout");
    headers.remove(crate::etcd::HAS_LEADER);
    let timing = Timing {
        response_ceiling: Some(response_timeout(config)),
        ..Timing::default()
    };
    let env = Env {
        channel: streams.channel.clone(),
        checker: Some(streams.checker.clone()),
        metadata: MetadataMap::from_headers(headers),
        token: Some(streams.token.clone()),
        require_leader: false,
    };
    let reopen = ReopenOptions {
        avoid_for: AVOID_FOR,
        ..ReopenOptions::default()
    };
    let caller = Caller::grpc(streams.stats.clone(), body, first_tx, first_open);
    tokio::spawn(Driver::new(env, caller, &timing, &reopen).run());
    ResponseFuture::new(async move {
        first_rx.await.map_err(|_| {
            tower::BoxError::from(tonic::Status::unavailable(
                "the drop-in's keep-alive driver ended before the stream was opened",
            ))
        })
    })
}

/// Starts an engine for an in-process caller (the tower `KeepAlive`) keeping leases alive
/// through `channel`, with `reopen`'s back-off, avoidance, `hasleader` and health checker (its
/// config's `hang.after` bounds the response timeout) and `timing`'s settings.
pub(crate) fn spawn_local(
    channel: BoxChannel,
    reopen: &ReopenOptions,
    timing: Timing,
) -> LocalEnds {
    let checker = reopen.checker.clone();
    let timing = Timing {
        response_ceiling: checker.as_ref().map(|c| response_timeout(c.config())),
        ..timing
    };
    let env = Env {
        channel,
        checker,
        metadata: MetadataMap::new(),
        token: None,
        require_leader: reopen.require_leader,
    };
    let (caller, ends) = Caller::local();
    tokio::spawn(Driver::new(env, caller, &timing, reopen).run());
    ends
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the driver waited for.
enum Event {
    Caller(CallerIn),
    Heard(u64, Heard<LeaseKeepAliveResponse>),
    Health(HealthNews),
    OpenExpired,
    Tick,
}

/// Where the engine's streams go and what they carry, per caller.
struct Env {
    /// Where the streams are opened.
    channel: BoxChannel,
    /// The health state: members, leader, budget, evictions (none over a plain channel).
    checker: Option<StreamHealth>,
    /// The caller's metadata (its auth token, say).
    metadata: MetadataMap,
    /// The caller's newest auth token, for streams opened later.
    token: Option<LatestToken>,
    /// Whether the streams carry `hasleader` themselves (the drop-in's balancer adds it).
    require_leader: bool,
}

struct Driver {
    env: Env,
    caller: Caller,
    book: KeepAliveBook,
    schedule: Schedule,
    reopen: Reopen,
    /// Open streams; the first is the one that answered last (new keep-alives go there).
    lanes: Vec<KeepAliveLane>,
    next_lane: u64,
    heard_tx: mpsc::Sender<(u64, Heard<LeaseKeepAliveResponse>)>,
    heard: mpsc::Receiver<(u64, Heard<LeaseKeepAliveResponse>)>,
    health: Option<broadcast::Receiver<HealthEvent>>,
    /// The stream whose answer was passed on last.
    serving: Option<u64>,
    /// Why the serving stream was left, until another answers.
    left: Option<String>,
    /// Why the last stream was lost.
    last_failure: Option<String>,
    /// The next stream to answer took over from an idle one moved to the leader.
    to_leader: bool,
    /// Since when a keep-alive of the caller has waited (for the logs).
    round_since: Option<Instant>,
}

// === impl Driver ===

impl Driver {
    fn new(env: Env, caller: Caller, timing: &Timing, reopen: &ReopenOptions) -> Self {
        let (heard_tx, heard) = mpsc::channel(16);
        Self {
            health: env.checker.as_ref().map(StreamHealth::subscribe),
            env,
            caller,
            book: KeepAliveBook::default(),
            schedule: Schedule::new(timing, Instant::now()),
            reopen: Reopen::new(reopen),
            lanes: Vec::new(),
            next_lane: 0,
            heard_tx,
            heard,
            serving: None,
            left: None,
            last_failure: None,
            to_leader: false,
            round_since: None,
        }
    }

    async fn run(mut self) {
        loop {
            let wake = match self.step(Instant::now()) {
                Ok(wake) => wake,
                Err(status) => {
                    self.caller.finish(status).await;
                    break;
                }
            };
            let open_by = self.caller.open_by();
            let event = tokio::select! {
                c = self.caller.next() => Event::Caller(c),
                Some((lane, heard)) = self.heard.recv() => Event::Heard(lane, heard),
                news = health_news(&mut self.health) => Event::Health(news),
                () = sleep_until_opt(open_by) => Event::OpenExpired,
                () = sleep_until_opt(wake) => Event::Tick,
            };
            let go_on = match event {
                Event::Caller(c) => self.on_caller(c).await,
                Event::Heard(lane, heard) => self.heard(lane, heard).await,
                Event::Health(HealthNews::Evicted(index)) => self.evicted(index),
                Event::Health(HealthNews::Leader) => self.send_to_new_leader(),
                Event::OpenExpired => {
                    let status = self.caller.open_expired(self.last_failure.as_deref());
                    tracing::warn!(id = self.caller.id(), %status, "keep-alive stream not opened in time");
                    self.caller.finish(status).await;
                    false
                }
                Event::Tick => true,
            };
            if !go_on {
                break;
            }
        }
        self.caller.serve(None, None, 0);
    }

    /// Does what the schedule says is due at `now` (see [`Schedule::step`]); returns when to
    /// wake next, or the caller's answer if its stream cannot be opened.
    fn step(&mut self, now: Instant) -> Result<Option<Instant>, tonic::Status> {
        // Only while a keep-alive waits: a caller that stopped renewing is not warned.
        if self.schedule.in_round() && self.schedule.expire_if_due(now) {
            tracing::warn!(
                id = self.caller.id(),
                open = self.lanes.len(),
                "no keep-alive answered within the lease's TTL: etcd may expire it"
            );
        }
        self.give_up_stale(now)?;
        let all_waiting = self.lanes.iter().all(|l| l.waiting_since().is_some());
        match self
            .schedule
            .step(now, self.book.outstanding(), self.lanes.len(), all_waiting)
        {
            Step::Open => self.open(now),
            Step::LeaderCheck => {
                // No stream more, but the health state is asked for the leader again (see
                // `open`), a hedge delay apart.
                self.schedule.asked(now);
                self.want_leader_check();
            }
            Step::Wait => {}
        }
        let all_waiting = self.lanes.iter().all(|l| l.waiting_since().is_some());
        let stale_at = self
            .lanes
            .iter()
            .filter_map(KeepAliveLane::waiting_since)
            .min()
            .map(|t| t + self.schedule.response_timeout());
        Ok(self
            .schedule
            .driver_wake(now, self.lanes.len(), all_waiting, stale_at))
    }

    /// What the caller did; `false` ends the engine.
    async fn on_caller(&mut self, msg: CallerIn) -> bool {
        let req = match msg {
            CallerIn::Request(req) => req,
            CallerIn::HalfClosed => {
                // etcd keeps serving a half-closed stream; so does the drop-in.
                if self.caller.opening() && self.book.outstanding() == 0 {
                    self.caller.finish(tonic::Status::ok("")).await;
                    return false;
                }
                return true;
            }
            CallerIn::Failed(status) => {
                tracing::warn!(id = self.caller.id(), %status, "the caller's keep-alive stream failed");
                self.caller.finish(status).await;
                return false;
            }
            CallerIn::Gone => return false,
        };
        let now = Instant::now();
        // A request of the application, as a unary one is: what its hedges are drawn against.
        if let Some(checker) = &self.env.checker {
            checker.budget().deposit(now.into_std());
        }
        if self.book.outstanding() == 0 {
            self.move_to_leader();
        }
        let tag = self.book.ask(req);
        if self.schedule.start_round_if_due(now, true) {
            self.round_since = Some(now);
        }
        if let Some(first) = self.lanes.first_mut() {
            if first.renew(req, tag, now) {
                self.book.sent(tag);
                self.schedule.asked(now);
            } else {
                let lane = self.lanes.remove(0);
                let lost = Lost::new(lane.member().cloned(), "the keep-alive stream closed");
                self.lost_lane(lane, lost, false, now);
            }
        }
        true
    }

    /// An idle stream on a follower moves to the leader the health state knows, when it is in
    /// rotation and was not just failed on (nothing is in flight: nothing is sent again).
    fn move_to_leader(&mut self) {
        let Some(checker) = &self.env.checker else {
            return;
        };
        let Some(member) = self.lanes.first().and_then(|l| l.member().cloned()) else {
            return;
        };
        let known = Known::of(checker);
        let Some(leader) = known.leader.filter(|&l| l != member.index()) else {
            return;
        };
        let (chosen, _) = place_keepalive(Some(&known), &[], self.reopen.avoid(Instant::now()));
        if chosen.map(|m| m.index()) != Some(leader) {
            return;
        }
        tracing::info!(
            stream = ?StreamKind::KeepAlive,
            id = self.caller.id(),
            from = %member,
            to_index = leader,
            "stream idle on a follower; moving it to the leader"
        );
        self.caller.moved_to_leader();
        self.lanes.clear();
        self.caller.serve(None, None, 0);
        self.to_leader = true;
    }

    /// Opens one more stream, where [`place_keepalive`] says, with every unanswered keep-alive.
    /// A hedge with no member in rotation free takes one out of rotation ([`last_resort`]).
    fn open(&mut self, now: Instant) {
        let open_on: Vec<_> = self
            .lanes
            .iter()
            .filter_map(|l| l.member().cloned())
            .collect();
        let known = self.env.checker.as_ref().map(Known::of);
        let avoided = self.reopen.avoid(now);
        let (member, avoid) = place_keepalive(known.as_ref(), &open_on, avoided.clone());
        // Asked now either way: the next hedge is a delay away, so a hedge with no member
        // to take it (or no budget for it) does not spin.
        self.schedule.asked(now);
        if !self.lanes.is_empty() && !self.may_hedge(now) {
            return;
        }
        let Some(known) = known.filter(|_| !self.lanes.is_empty() && member.is_none()) else {
            self.open_lane(now, member, avoid, false);
            return;
        };
        if let Some(member) = last_resort(&known, &open_on, &avoided) {
            self.open_lane(now, Some(member), AvoidMembers::default(), true);
        }
    }

    /// Whether one more copy of the unanswered keep-alives may go out now: drawn from the retry
    /// budget, or free while the lease is short of time (see the [module docs](self)).
    fn may_hedge(&self, now: Instant) -> bool {
        let Some(checker) = &self.env.checker else {
            return true;
        };
        if self.schedule.urgent(now) {
            return true;
        }
        let granted = checker.budget().try_withdraw(now.into_std(), Extra::Hedge);
        if !granted {
            tracing::debug!(
                id = self.caller.id(),
                open = self.lanes.len(),
                "keep-alive not hedged: the retry budget is spent and the lease has time"
            );
        }
        granted
    }

    /// Asks the health state for a leader check, if there is one.
    fn want_leader_check(&self) {
        if let Some(checker) = &self.env.checker {
            checker.want_leader_check();
        }
    }

    /// Opens a stream on `member` (the balancer's choice if `None`) with every unanswered
    /// keep-alive; with `even_if_ejected`, on that member whatever its health.
    fn open_lane(
        &mut self,
        now: Instant,
        member: Option<Member>,
        avoid: AvoidMembers,
        even_if_ejected: bool,
    ) {
        let hedge = !self.lanes.is_empty();
        self.next_lane = self.next_lane.wrapping_add(1);
        // What goes to a member again renews each lease once (see `KeepAliveBook`).
        self.book.coalesce();
        let requests: Vec<_> = self.book.unanswered().collect();
        for (_, tag) in &requests {
            self.note_sent(*tag);
        }
        let metadata = match &self.env.token {
            Some(token) => token.freshen(&self.env.metadata),
            None => self.env.metadata.clone(),
        };
        let lane = KeepAliveLane::open(
            &self.env.channel,
            Opening {
                id: self.next_lane,
                metadata,
                require_leader: self.env.require_leader,
                member: member.clone(),
                avoid,
                even_if_ejected,
                queue: Some(LANE_QUEUE),
            },
            requests,
            self.heard_tx.clone(),
            now,
        );
        self.lanes.push(lane);
        self.caller.open_streams(self.lanes.len());
        if hedge {
            self.caller.hedged();
            // A keep-alive this slow may be waiting for a leader that hangs: the sooner the
            // health state knows the next one, the sooner it is asked there.
            self.want_leader_check();
            tracing::debug!(
                id = self.caller.id(),
                member = member.as_ref().map(tracing::field::display),
                open = self.lanes.len(),
                even_if_ejected,
                "keep-alive unanswered; asking another member too"
            );
        }
    }

    /// The keep-alive tagged `tag` went to a member; counted if it had gone to one before.
    fn note_sent(&mut self, tag: u64) {
        if self.book.sent(tag) {
            self.caller.resent();
        }
    }

    /// A new leader is known: an unanswered keep-alive is sent to it at once on a fresh
    /// stream, whatever its health (the health state may have ejected it for a fault before
    /// it was elected; only the leader renews). A stream already on that member was sent its
    /// keep-alive while it was a follower, which forwards it to the old leader and may hold
    /// it for etcd's request timeout: it makes room, as does the stream waiting longest if
    /// every one is taken.
    fn send_to_new_leader(&mut self) -> bool {
        let Some(checker) = self.env.checker.clone() else {
            return true;
        };
        if self.book.outstanding() == 0 {
            return true;
        }
        let Some(leader) = checker.leader().leader_index else {
            return true;
        };
        let members = checker.members();
        let Some(member) = members.iter().find(|m| m.index() == leader).cloned() else {
            return true;
        };
        let now = Instant::now();
        let on_leader = |l: &KeepAliveLane| l.member().is_some_and(|m| m.index() == leader);
        // With other streams carrying the keep-alive, the new leader's is one copy more.
        if self.lanes.iter().any(|l| !on_leader(l)) && !self.may_hedge(now) {
            return true;
        }
        while let Some(lane) = take_on_member(&mut self.lanes, leader) {
            let lost = Lost::new(
                lane.member().cloned(),
                "a new leader is known; the keep-alive goes to it on a fresh stream",
            );
            self.lost_lane(lane, lost, false, now);
        }
        if self.lanes.len() >= MAX_STREAMS {
            let oldest = (0..self.lanes.len())
                .min_by_key(|&i| self.lanes[i].waiting_since())
                .unwrap_or(0);
            let lane = self.lanes.remove(oldest);
            let lost = Lost::new(lane.member().cloned(), "a new leader is known; making room");
            self.lost_lane(lane, lost, false, now);
        }
        tracing::info!(id = self.caller.id(), leader = %member, "new leader; keep-alive sent to it");
        let others = members
            .into_iter()
            .filter(|m| m.index() != leader)
            .collect();
        self.schedule.asked(now);
        self.open_lane(now, Some(member), AvoidMembers(others), true);
        true
    }

    /// A report of stream `lane`; `false` ends the engine.
    async fn heard(&mut self, lane: u64, heard: Heard<LeaseKeepAliveResponse>) -> bool {
        let now = Instant::now();
        let Some(pos) = self.lanes.iter().position(|l| l.id() == lane) else {
            // A stream closed meanwhile.
            return true;
        };
        match heard {
            Heard::Opened(member) => {
                self.lanes[pos].opened_on(member);
                if self.serving.is_none() && pos == 0 {
                    let member = self.lanes[pos].member().cloned();
                    self.caller.serve(Some(lane), member, self.lanes.len());
                }
                self.caller.opened()
            }
            Heard::Message(resp) => self.answered(pos, resp, now).await,
            Heard::Ended(status) => {
                let status = status
                    .unwrap_or_else(|| tonic::Status::unavailable("the keep-alive stream ended"));
                let lane = self.lanes.remove(pos);
                match classify(status.clone(), lane.member().cloned()) {
                    Ok(lost) => {
                        // Before the caller has a stream, as many member failures as
                        // members: the last one is its answer.
                        if self.caller.failed_to_open(self.members()) {
                            self.caller.finish(status).await;
                            return false;
                        }
                        self.lost_lane(lane, lost, true, now);
                        true
                    }
                    Err(status) => {
                        self.caller.finish(status).await;
                        false
                    }
                }
            }
        }
    }

    /// How many members the health state knows (1 without one).
    fn members(&self) -> usize {
        self.env.checker.as_ref().map_or(1, |c| c.members().len())
    }

    /// An answer on the stream at `pos`: passed on if it is the first to its keep-alive.
    async fn answered(&mut self, pos: usize, resp: LeaseKeepAliveResponse, now: Instant) -> bool {
        let leader_term = self
            .env
            .checker
            .as_ref()
            .and_then(|c| c.leader().leader_term);
        if let Some(reason) = KeepAliveBook::behind_the_leader(&resp, leader_term) {
            // Not a renewal: the keep-alive stays unanswered, its member is left.
            let lane = self.lanes.remove(pos);
            let lost = Lost::new(lane.member().cloned(), reason);
            self.lost_lane(lane, lost, true, now);
            return true;
        }
        self.reopen.healthy();
        let Some(sent) = self.lanes[pos].answered() else {
            return true;
        };
        if !self.book.answer(sent.tag) {
            self.caller.duplicate();
            return true;
        }
        let waited = now.saturating_duration_since(self.round_since.unwrap_or(sent.at));
        if waited >= self.schedule.hedge_after() {
            tracing::info!(
                id = self.caller.id(),
                ?waited,
                member = self.lanes[pos].member().map(tracing::field::display),
                open = self.lanes.len(),
                "slow keep-alive answered"
            );
        }
        if self.schedule.answered(sent.at, resp.ttl, now) {
            tracing::warn!(
                id = self.caller.id(),
                ttl = resp.ttl,
                "lease renewed after it was presumed expired: etcd still held it"
            );
        }
        // This stream carries the keep-alives from now on; the others, asked only because
        // it was slow (or they were), are closed, and what they alone carried goes here.
        let mut lane = self.lanes.swap_remove(pos);
        self.lanes.clear();
        let missing: Vec<_> = self
            .book
            .unanswered()
            .filter(|(_, tag)| !lane.carries(*tag))
            .collect();
        for (req, tag) in missing {
            if lane.renew(req, tag, now) {
                self.note_sent(tag);
            }
        }
        if self.serving != Some(lane.id()) {
            if self.serving.is_some() && !std::mem::take(&mut self.to_leader) {
                self.caller.moved();
                tracing::info!(
                    stream = ?StreamKind::KeepAlive,
                    id = self.caller.id(),
                    to = lane.member().map(tracing::field::display),
                    reason = self.left.as_deref().unwrap_or("another member answered first"),
                    "keep-alive stream resumed on another member"
                );
            }
            self.serving = Some(lane.id());
            self.left = None;
        }
        self.caller
            .serve(Some(lane.id()), lane.member().cloned(), 1);
        self.lanes.push(lane);
        self.round_since = None;
        if self.book.outstanding() > 0 && self.schedule.start_round_if_due(now, true) {
            self.round_since = Some(now);
            self.schedule.asked(now);
        }
        self.caller.answer(resp, sent.at).await
    }

    /// The health checker evicted a member: its streams go at once.
    fn evicted(&mut self, index: usize) -> bool {
        let now = Instant::now();
        while let Some(lane) = take_on_member(&mut self.lanes, index) {
            let lost = Lost::evicted(lane.member().cloned());
            self.lost_lane(lane, lost, true, now);
        }
        true
    }

    /// Streams that left a keep-alive unanswered for the response timeout are given up. Their
    /// member is not avoided: while the cluster elects a leader, every member is slow. One that
    /// was never opened while the caller waits for its stream counts as a failed opening; the
    /// caller's answer once each member failed or stayed silent.
    fn give_up_stale(&mut self, now: Instant) -> Result<(), tonic::Status> {
        let limit = self.schedule.response_timeout();
        while let Some(lane) = take_stale(&mut self.lanes, now, limit) {
            let reason = format!("no answer to a keep-alive within {limit:?}");
            if !lane.is_open() && self.caller.failed_to_open(self.members()) {
                let on = lane.member().map_or(String::new(), |m| format!(" on {m}"));
                return Err(tonic::Status::unavailable(format!(
                    "etcd-health: no member opened the keep-alive stream: {reason}{on}, after \
                     each member failed or stayed silent"
                )));
            }
            let lost = Lost::new(lane.member().cloned(), reason);
            self.lost_lane(lane, lost, false, now);
        }
        Ok(())
    }

    /// Books a stream lost (already removed from the open ones); its member is avoided for a
    /// while if `avoid`. With none left, the next opens after a jittered back-off.
    fn lost_lane(&mut self, lane: KeepAliveLane, lost: Lost, avoid: bool, now: Instant) {
        let was_serving = self.serving == Some(lane.id());
        drop(lane);
        let reopens = self.reopen.lost(&lost, avoid, now);
        self.caller.lost(reopens, &lost.reason);
        if self.lanes.is_empty() {
            // At most a hedge delay: while the cluster elects a leader, members refuse the
            // stream at once ("no leader"), and the keep-alive must reach the new leader soon
            // after the election, not after a back-off grown during it.
            let delay = reopen_delay(
                self.reopen.delay(),
                self.schedule.hedge_after(),
                timing::unit(),
            );
            self.schedule.failed(now, delay);
            self.caller.serve(None, None, 0);
        } else {
            self.caller.open_streams(self.lanes.len());
        }
        if was_serving {
            self.left = Some(lost.reason.clone());
        }
        tracing::warn!(
            stream = ?StreamKind::KeepAlive,
            id = self.caller.id(),
            member = lost.member.as_ref().map(tracing::field::display),
            reason = %lost.reason,
            reopens,
            open = self.lanes.len(),
            unanswered = self.book.outstanding(),
            "keep-alive stream lost"
        );
        self.last_failure = Some(lost.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_opens_wait_the_back_off_but_never_more_than_a_hedge_delay() {
        let hedge = Duration::from_millis(250);
        let ms = Duration::from_millis;
        assert_eq!(reopen_delay(ms(100), hedge, 0.0), ms(100));
        assert_eq!(reopen_delay(Duration::from_secs(1), hedge, 0.0), hedge);
        assert_eq!(
            reopen_delay(Duration::from_secs(1), hedge, 0.999),
            timing::shorten(hedge, timing::BACKOFF, 0.999),
            "the cap jittered too: down to half"
        );
        assert!(reopen_delay(Duration::from_secs(1), hedge, 0.999) >= ms(125));
    }

    #[test]
    fn a_lane_is_given_up_after_twice_hang_after_and_hedged_after_a_quarter_of_that() {
        let config = crate::config::Config::default();
        let timeout = response_timeout(&config);
        assert_eq!(timeout, Duration::from_secs(1));
        let options = Timing {
            response_ceiling: Some(timeout),
            ..Timing::default()
        };
        let s = Schedule::new(&options, Instant::now());
        assert_eq!(s.response_timeout(), timeout);
        assert_eq!(s.hedge_after(), Duration::from_millis(250));
    }
}
