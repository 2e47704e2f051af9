//! The driver of a resumed stream: one task per watch or keep-alive stream of the caller,
//! between the caller's tonic stub and one member at a time.
//!
//! Why: a stream goes to one member, once (the balancer cannot retry or hedge what is not a
//! single request), and etcd-client never re-creates a watch or a keep-alive stream that
//! failed or went silent. Users hold one client for weeks: their streams must survive a
//! member fault as their reads do. The driver answers the caller itself, follows the stream
//! in a [`Book`], and when the serving member fails (an error, the stream ended, "no
//! leader"), hangs (a request unanswered for the stream timeout; a watch quiet for about the
//! stream timeout (jittered) is asked for a progress report, asked again after half of it, and
//! moved when nothing at all was heard for the whole timeout after the first request: etcd
//! 3.5.13+ and 3.6 drop a progress request while a watcher catches up, and anything the member
//! sends, catch-up events included, counts as an answer) or is evicted by the health
//! checker, it opens the stream on another member and sends it what the book says. The
//! caller's stream never sees the move.
//!
//! The member is chosen here (the leader for keep-alives, which etcd forwards to it anyway;
//! any healthy member for watches), never one the stream just failed on, and the balancer is
//! told to avoid every other member, so a hang is blamed on the right one. The stream on the
//! member is a [`Lane`] (`lane.rs`, as the keep-alive driver's), with no decoding limit of the
//! drop-in's own ([`Call::Unlimited`]); what is watch-only (pokes, the progress-order
//! question, the member excused while it catches up) stays here.
//!
//! The same engine drives the tower stack's [`ResumingWatch`](crate::watch::ResumingWatch)
//! (through `watch_engine.rs`): its options become the engine's [`Tuning`] (stream timeout,
//! back-off, avoidance, `hasleader`, a token renewal through its stack), and what its stream
//! goes through is published as [`Followed`] for its state.
//!
//! With resumption on, keep-alive streams have a driver of their own
//! (`keepalive_driver.rs`): keep-alives are idempotent, so a slow one is hedged on several
//! members at once rather than moved after the stream timeout; this driver then serves them
//! only with resumption off.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tonic::metadata::MetadataMap;

use super::book::{Book, Heard};
use super::choose::{place_stream, Known};
use super::frame::{self, Decoder, ReplyBody};
use super::health::StreamHealth;
use super::lane::{self, Call, Lane};
use super::latest_token::LatestToken;
use super::opening::FirstOpen;
use super::progress_order::ProgressOrders;
use super::stats::StreamStats;
use super::token_wait::{Next, TokenWait};
use super::tuning::{Followed, Tuning};
use crate::balance::{AvoidMembers, ResponseFuture};
use crate::config::Config;
use crate::event::HealthEvent;
use crate::member::Member;
use crate::stream::resume::{classify, evicted, forget_past, BoxChannel, Lost, Reopen};

/// Frames waiting for the caller.
const REPLY_BUFFER: usize = 64;

/// Reports of the member stream read ahead of the driver (the stream is read no further
/// while the caller is slow, as when the driver read it itself).
const LANE_REPORTS: usize = 1;

/// How long a member may leave a request of the stream unanswered before it counts as hung:
/// four times `hang.after` (the unary requests' bound), at least 2 s. A member in an election
/// may take about that long to answer a keep-alive; moving the stream then costs nothing.
pub(super) fn stream_timeout(config: &Config) -> Duration {
    (config.hang.after * 4).max(Duration::from_secs(2))
}

/// What every resumed stream of a channel shares.
#[derive(Clone, Debug)]
pub(crate) struct Streams {
    pub(super) channel: BoxChannel,
    pub(super) checker: StreamHealth,
    pub(super) stats: StreamStats,
    /// Off: streams pass through unchanged, on one member (as before resumption existed).
    pub(super) resume: bool,
    /// The caller's newest auth token: re-created streams carry it.
    pub(super) token: LatestToken,
    /// Which members answer a watch's progress requests in order.
    pub(super) orders: ProgressOrders,
    /// The settings of its user (the drop-in's, or a `ResumingWatch`'s options).
    pub(super) tuning: Tuning,
}

impl Streams {
    /// The streams of a drop-in channel: `channel` its balancer, `resume` off to pass streams
    /// through unchanged.
    pub(crate) fn new(
        channel: BoxChannel,
        checker: StreamHealth,
        stats: StreamStats,
        resume: bool,
    ) -> Self {
        Self {
            channel,
            checker,
            stats,
            resume,
            token: LatestToken::default(),
            orders: ProgressOrders::default(),
            tuning: Tuning::default(),
        }
    }

    /// What the streams went through, for operators.
    pub(crate) fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Whether streams are resumed on another member (off: passed through on one).
    pub(crate) fn resumes(&self) -> bool {
        self.resume
    }

    /// Keeps the newest auth token among the caller's request headers: re-created streams
    /// carry it.
    pub(crate) fn note_token(&self, headers: &mut http::HeaderMap) {
        self.token.note(headers);
    }

    /// Takes the caller's stream request, kept by `book`; the response is the driver's.
    pub(super) fn start<B: Book>(
        &self,
        req: http::Request<tonic::body::Body>,
        book: B,
    ) -> ResponseFuture {
        self.start_followed(req, book, None)
    }

    /// As [`start`](Self::start), publishing what the stream goes through to `followed`.
    pub(super) fn start_followed<B: Book>(
        &self,
        req: http::Request<tonic::body::Body>,
        book: B,
        followed: Option<watch::Sender<Followed>>,
    ) -> ResponseFuture {
        let (first_tx, first_rx) = oneshot::channel();
        let driver = Driver::new(self.clone(), req, book, first_tx, followed);
        tokio::spawn(driver.run());
        ResponseFuture::new(async move {
            first_rx.await.map_err(|_| {
                tower::BoxError::from(tonic::Status::unavailable(
                    "the drop-in's stream driver ended before the stream was opened",
                ))
            })
        })
    }
}

type Asking = Pin<Box<dyn Future<Output = bool> + Send>>;
type Reports<R> = mpsc::Receiver<(u64, lane::Heard<R>)>;

/// The stream's link to a member.
enum Link<B: Book> {
    /// No member; open one at `retry_at` if the book needs one.
    Down { retry_at: Instant },
    /// Waiting for the member's response headers (they come with its first message), since
    /// `since`.
    Opening { lane: Lane<B::Req>, since: Instant },
    /// Following the member.
    Open {
        lane: Lane<B::Req>,
        last_heard: Instant,
        waiting_since: Option<Instant>,
        /// Progress requests of ours since the member was last heard: when the first went.
        poked_at: Option<Instant>,
        pokes: u8,
        /// Quiet this long, the stream is poked (the stream timeout, jittered; drawn again
        /// at each poke).
        poke_after: Duration,
        /// Asking the member whether it answers progress requests in order.
        asking: Option<Asking>,
        /// Unanswered pokes are not held against the member: it catches watches up (the
        /// book says) and the health checker has it healthy.
        excused: bool,
    },
}

impl<B: Book> Link<B> {
    fn lane(&self) -> Option<&Lane<B::Req>> {
        match self {
            Link::Down { .. } => None,
            Link::Opening { lane, .. } | Link::Open { lane, .. } => Some(lane),
        }
    }

    fn member(&self) -> Option<&Member> {
        self.lane().and_then(Lane::member)
    }
}

/// What happened on the link.
enum LinkEvent<R> {
    Retry,
    /// The opening ended: open on this member (when the channel says), failed, or silent
    /// for the stream timeout (`None`).
    Opened(Option<Result<Option<Member>, tonic::Status>>),
    Message(Result<Option<R>, tonic::Status>),
    Evicted,
    Poke,
    Hung(Duration),
    /// The caller's wait for the stream to open is over (see `opening.rs`).
    OpenExpired,
    InOrder(bool),
}

/// What happened on the caller's side.
pub(super) enum CallerEvent<R> {
    Gone,
    Message(Result<Option<R>, tonic::Status>),
}

struct Driver<B: Book> {
    streams: Streams,
    book: B,
    id: u64,
    idle: Duration,
    metadata: MetadataMap,
    caller: Decoder,
    caller_done: bool,
    first: Option<oneshot::Sender<http::Response<tonic::body::Body>>>,
    reply_rx: Option<mpsc::Receiver<Frame<Bytes>>>,
    reply: mpsc::Sender<Frame<Bytes>>,
    link: Link<B>,
    /// What the member streams report, by lane id (a closed lane's reports are dropped).
    reports: Reports<B::Resp>,
    reports_tx: mpsc::Sender<(u64, lane::Heard<B::Resp>)>,
    /// The id of the last lane opened.
    next_lane: u64,
    health: Option<broadcast::Receiver<HealthEvent>>,
    /// Back-off between members and the members to avoid (shared with the tower helpers).
    reopen: Reopen,
    /// Why the last member was left, until the stream is open again.
    lost: Option<(Option<Member>, String)>,
    /// Member failures before the stream was first opened.
    failed_to_open: usize,
    /// Until when the caller waits for the stream to open.
    first_open: FirstOpen,
    /// The generation of the token the stream was last opened with.
    token_generation: u64,
    /// Refusals of the stream for its token, waiting for a newer one.
    token_wait: TokenWait,
    /// Requests of the last opening that re-create or re-send the caller's.
    again: usize,
    /// Where what the stream goes through is published, if anyone follows it.
    followed: Option<watch::Sender<Followed>>,
}

// === impl Driver ===

impl<B: Book> Driver<B> {
    fn new(
        streams: Streams,
        req: http::Request<tonic::body::Body>,
        book: B,
        first: oneshot::Sender<http::Response<tonic::body::Body>>,
        followed: Option<watch::Sender<Followed>>,
    ) -> Self {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        // The caller's deadline bounds the opening only (see `opening.rs`).
        let first_open = FirstOpen::new(
            &headers,
            streams.checker.config(),
            streams.resume,
            Instant::now(),
        );
        // A stream that outlives members has no deadline of its own; the balancer sets
        // `hasleader` itself.
        headers.remove("grpc-timeout");
        headers.remove(crate::etcd::HAS_LEADER);
        let (reply, reply_rx) = mpsc::channel(REPLY_BUFFER);
        let (reports_tx, reports) = mpsc::channel(LANE_REPORTS);
        let id = streams.stats.opened(B::KIND);
        Self {
            idle: streams
                .tuning
                .timeout
                .unwrap_or_else(|| stream_timeout(streams.checker.config())),
            reopen: Reopen::new(&streams.tuning.reopen),
            health: Some(streams.checker.subscribe()),
            streams,
            book,
            id,
            metadata: MetadataMap::from_headers(headers),
            caller: Decoder::new(body),
            caller_done: false,
            first: Some(first),
            reply_rx: Some(reply_rx),
            reply,
            link: Link::Down {
                retry_at: Instant::now(),
            },
            reports,
            reports_tx,
            next_lane: 0,
            lost: None,
            failed_to_open: 0,
            first_open,
            token_generation: 0,
            token_wait: TokenWait::default(),
            again: 0,
            followed,
        }
    }

    /// Executes the stream: waits for the next event and acts on it, until the stream ends.
    /// The decisions are taken by pure functions ([`wants_member`], [`quiet_deadlines`],
    /// [`excused`], [`hung_reason`]) and the book.
    async fn run(mut self) {
        loop {
            let event = self.next_event().await;
            if !self.step(event).await {
                self.serve(None);
                return;
            }
        }
    }

    /// The next thing that happens: on the caller's side (`Ok`) or on the link (`Err`).
    async fn next_event(&mut self) -> Result<CallerEvent<B::Req>, LinkEvent<B::Resp>> {
        let wants = wants_member(
            self.book.needs_member(),
            self.first.is_some(),
            self.caller_done,
        );
        let open_by = self.first.as_ref().and(self.first_open.deadline());
        let token_after = self.token_wait.waits_for(self.streams.token.generation());
        let caller = caller_event::<B::Req>(
            &mut self.caller,
            self.caller_done,
            &mut self.first,
            &self.reply,
        );
        let link = link_event(
            &mut self.link,
            &mut self.reports,
            &mut self.health,
            wants,
            self.streams.resume,
            B::POKES,
            self.idle,
        );
        tokio::select! {
            c = caller => Ok(c),
            l = link => Err(l),
            _ = sleep_until_opt(open_by) => Err(LinkEvent::OpenExpired),
            _ = token_newer(&self.streams.token, token_after) => Err(LinkEvent::Retry),
        }
    }

    /// Acts on one event; `false` ends the stream.
    async fn step(&mut self, event: Result<CallerEvent<B::Req>, LinkEvent<B::Resp>>) -> bool {
        match event {
            Ok(CallerEvent::Gone) => false,
            Ok(CallerEvent::Message(m)) => self.on_caller(m).await,
            Err(LinkEvent::Retry) => self.retry().await,
            Err(LinkEvent::OpenExpired) => {
                let last = self.lost.as_ref().map(|(_, reason)| reason.as_str());
                let status = self.first_open.expired(last);
                tracing::warn!(stream = ?B::KIND, id = self.id, %status, "stream not opened in time");
                self.finish(status).await;
                false
            }
            Err(LinkEvent::Opened(o)) => self.opened(o).await,
            Err(LinkEvent::Message(m)) => self.on_member(m).await,
            Err(LinkEvent::Evicted) => {
                self.lose("member evicted by the health checker".into());
                true
            }
            Err(LinkEvent::Poke) => {
                self.poke();
                true
            }
            Err(LinkEvent::InOrder(in_order)) => {
                if let Link::Open { asking, .. } = &mut self.link {
                    *asking = None;
                }
                self.book.progress_in_order(in_order);
                true
            }
            Err(LinkEvent::Hung(waited)) => {
                self.lose(hung_reason(B::POKES, waited));
                true
            }
        }
    }

    /// The quiet stream's member is asked for progress (see [`quiet_deadlines`]).
    fn poke(&mut self) {
        let catching_up = self.book.catching_up();
        let checker = &self.streams.checker;
        if let Link::Open {
            lane,
            poked_at,
            pokes,
            poke_after,
            excused: excuse,
            ..
        } = &mut self.link
        {
            poked_at.get_or_insert_with(Instant::now);
            *pokes = pokes.saturating_add(1);
            *excuse = catching_up && excused(lane.member(), &checker.snapshot());
            *poke_after = poke_after_for(self.idle);
            if let Some(req) = self.book.poke() {
                lane.send(req);
            }
        }
    }

    /// A message (or the end) of the caller's requests; `false` ends the stream.
    async fn on_caller(&mut self, msg: Result<Option<B::Req>, tonic::Status>) -> bool {
        let req = match msg {
            Ok(Some(req)) => req,
            Ok(None) => {
                // etcd keeps serving a half-closed stream; so does the drop-in.
                self.caller_done = true;
                if self.first.is_some() && !self.book.needs_member() {
                    self.finish(tonic::Status::ok("")).await;
                    return false;
                }
                return true;
            }
            Err(status) => {
                tracing::warn!(stream = ?B::KIND, id = self.id, %status, "the caller's stream failed");
                self.finish(status).await;
                return false;
            }
        };
        if !self.streams.resume {
            if let Some(lane) = self.link.lane() {
                lane.send(req);
            } else {
                // Not open yet: the first open sends what the book holds.
                self.book.on_caller(req);
            }
            return true;
        }
        if self.book.prefer_leader() && self.book.outstanding() == 0 {
            self.move_to_leader();
        }
        let send = self.book.on_caller(req);
        if let Some(lane) = self.link.lane() {
            for r in send {
                lane.send(r);
            }
            self.note_sent();
        }
        true
    }

    /// An idle stream that prefers the leader and is served by another member moves to the
    /// leader the health state knows (nothing is in flight: nothing to send again).
    fn move_to_leader(&mut self) {
        let Some(member) = self
            .link
            .lane()
            .filter(|l| l.is_open())
            .and_then(Lane::member)
        else {
            return;
        };
        let Some(leader) = self.streams.checker.leader().leader_index else {
            return;
        };
        if leader == member.index() {
            return;
        }
        // Only to a leader in rotation that the stream has not just failed on (it would be
        // opened elsewhere again, and moved again at the next request).
        let avoided = self.reopen.avoid(Instant::now());
        let welcome = self.streams.checker.snapshot().iter().any(|s| {
            s.member.index() == leader && s.status.is_healthy() && !avoided.contains(&s.member)
        });
        if !welcome {
            return;
        }
        tracing::info!(
            stream = ?B::KIND,
            id = self.id,
            from = %member,
            to_index = leader,
            "stream idle on a follower; moving it to the leader"
        );
        self.streams.stats.moved_to_leader();
        self.serve(None);
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
    }

    /// A request went to the member: its answer is awaited from now if nothing was.
    fn note_sent(&mut self) {
        if let Link::Open { waiting_since, .. } = &mut self.link {
            if self.book.outstanding() > 0 && waiting_since.is_none() {
                *waiting_since = Some(Instant::now());
            }
        }
    }

    /// Opens the stream on a member chosen now, sending what the book says.
    fn open(&mut self) {
        let (target, hint) = place_stream(
            &Known::of(&self.streams.checker),
            self.book.prefer_leader(),
            &self.reopen.avoid(Instant::now()),
        );
        self.token_generation = self.streams.token.generation();
        self.next_lane = self.next_lane.wrapping_add(1);
        let lane = Lane::open(
            &self.streams.channel,
            Call::Unlimited { path: B::PATH },
            lane::Opening {
                id: self.next_lane,
                metadata: self.streams.token.freshen(&self.metadata),
                require_leader: self.streams.tuning.require_leader,
                member: target,
                avoid: hint,
                even_if_ejected: false,
                queue: None,
            },
            self.reports_tx.clone(),
        );
        let resumed = self.book.resume();
        self.again = resumed.again;
        for r in resumed.requests {
            lane.send(r);
        }
        self.link = Link::Opening {
            lane,
            since: Instant::now(),
        };
    }

    async fn opened(&mut self, opened: Option<Result<Option<Member>, tonic::Status>>) -> bool {
        let Link::Opening { mut lane, since } = std::mem::replace(
            &mut self.link,
            Link::Down {
                retry_at: Instant::now(),
            },
        ) else {
            return true;
        };
        let target = lane.member().cloned();
        let served_by = match opened {
            None => {
                drop(lane);
                let reason = format!("no answer to the stream's requests within {:?}", self.idle);
                return self.silent(target, since, reason).await;
            }
            Some(Err(status))
                if self.streams.resume
                    && self.first.is_none()
                    && crate::etcd::is_stale_token(status.code(), status.message()) =>
            {
                // Opened again (the caller's own opening is its to renew) and refused for the
                // token: wait for a newer one.
                return self
                    .token_refused(target, status.message().to_owned())
                    .await;
            }
            Some(Err(status)) => {
                let first = self.first.is_some();
                let members = self.first_open_failures();
                let status = if self.streams.resume {
                    // Before the caller has a stream, as many member failures as members:
                    // the last one is its answer.
                    match classify(status.clone(), target) {
                        Ok(lost) => {
                            self.failed_to_open += usize::from(first);
                            if !first || self.failed_to_open <= members {
                                self.drop_member(lost.member, lost.reason);
                                return true;
                            }
                            status
                        }
                        Err(status) => status,
                    }
                } else {
                    status
                };
                self.finish(status).await;
                return false;
            }
            Some(Ok(served_by)) => served_by,
        };
        lane.opened_on(served_by);
        let member = lane.member().cloned();
        forget_past(&mut self.health);
        self.serve(member.clone());
        let now = Instant::now();
        let waiting_since = (self.book.outstanding() > 0).then_some(now);
        let asking = self.ask_order(member.as_ref(), now);
        if let Some((from, reason)) = self.lost.take() {
            self.streams.stats.resumed(B::KIND, self.again);
            tracing::info!(
                stream = ?B::KIND,
                id = self.id,
                from = from.as_ref().map(tracing::field::display),
                to = member.as_ref().map(tracing::field::display),
                %reason,
                resume_revision = self.book.resume_revision(),
                sent_again = self.again,
                "stream resumed on another member"
            );
        }
        self.link = Link::Open {
            lane,
            last_heard: now,
            waiting_since,
            poked_at: None,
            pokes: 0,
            poke_after: poke_after_for(self.idle),
            asking,
            excused: false,
        };
        if let (Some(first), Some(rx)) = (self.first.take(), self.reply_rx.take()) {
            if first.send(frame::response(ReplyBody::new(rx))).is_err() {
                return false;
            }
        }
        true
    }

    async fn on_member(&mut self, msg: Result<Option<B::Resp>, tonic::Status>) -> bool {
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                if !self.streams.resume {
                    self.finish(tonic::Status::ok("")).await;
                    return false;
                }
                self.lose("the member ended the stream".into());
                return true;
            }
            Err(status) => {
                let status = if self.streams.resume {
                    match classify(status, self.link.member().cloned()) {
                        Ok(lost) => {
                            self.drop_member(lost.member, lost.reason);
                            return true;
                        }
                        Err(status) => status,
                    }
                } else {
                    status
                };
                self.finish(status).await;
                return false;
            }
        };
        if self.streams.resume && B::JUDGES_TERMS {
            let leader_term = self.streams.checker.leader().leader_term;
            if let Some(reason) = self.book.behind(&resp, leader_term) {
                self.lose(reason);
                return true;
            }
        }
        self.reopen.healthy();
        let heard = if self.streams.resume {
            let judged = self.book.on_member(resp);
            if let Some(lane) = self.link.lane() {
                for r in judged.send {
                    lane.send(r);
                }
            }
            self.book_counts();
            judged.heard
        } else {
            Heard::Forward(resp)
        };
        match heard {
            Heard::Forward(resp) => {
                if self
                    .reply
                    .send(Frame::data(frame::encode(&resp)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            Heard::Swallow => {}
            Heard::Lost(reason) => {
                self.lose(reason);
                return true;
            }
            Heard::TokenRefused(reason) => {
                let member = self.link.member().cloned();
                return self.token_refused(member, reason).await;
            }
        }
        self.token_wait.accepted();
        // Counted from after delivery: a slow caller is not a hung member.
        let outstanding = self.book.outstanding() > 0;
        if let Link::Open {
            last_heard,
            waiting_since,
            poked_at,
            pokes,
            ..
        } = &mut self.link
        {
            let now = Instant::now();
            *last_heard = now;
            *poked_at = None;
            *pokes = 0;
            *waiting_since = outstanding.then_some(now);
        }
        true
    }

    /// Whether the member a watch stream just opened on answers progress requests in order:
    /// known, told to the book at once; else a question to ask it.
    fn ask_order(&mut self, member: Option<&Member>, now: Instant) -> Option<Asking> {
        if !(B::POKES && self.streams.resume) {
            return None;
        }
        let member = member?.clone();
        if let Some(in_order) = self.streams.orders.known(&member, now) {
            self.book.progress_in_order(in_order);
            return None;
        }
        let others = AvoidMembers(
            self.streams
                .checker
                .snapshot()
                .into_iter()
                .map(|s| s.member)
                .filter(|m| m.index() != member.index())
                .collect(),
        );
        let orders = self.streams.orders.clone();
        let channel = self.streams.channel.clone();
        let bound = self.idle;
        Some(Box::pin(async move {
            orders.ask(channel, member, others, bound).await
        }))
    }

    /// The member serving the stream is lost: drop it and open again after a back-off.
    fn lose(&mut self, reason: String) {
        let member = self.link.member().cloned();
        self.drop_member(member, reason);
    }

    fn drop_member(&mut self, member: Option<Member>, reason: String) {
        let lost = Lost::new(member, reason);
        self.reopen.lost(&lost, true, Instant::now());
        let Lost { member, reason } = lost;
        let delay = self.reopen.delay();
        tracing::warn!(
            stream = ?B::KIND,
            id = self.id,
            member = member.as_ref().map(tracing::field::display),
            %reason,
            resume_revision = self.book.resume_revision(),
            ?delay,
            "stream lost its member; moving it to another one"
        );
        self.left(member, reason);
        self.link = Link::Down {
            retry_at: Instant::now() + delay,
        };
    }

    /// The opening on `target`, sent at `since`, was not answered within the stream timeout:
    /// charged to the member, and the stream is opened elsewhere, unless the caller has been
    /// waiting for its stream through a silence or failure of each member already (then this
    /// is its answer).
    async fn silent(&mut self, target: Option<Member>, since: Instant, reason: String) -> bool {
        if let Some(member) = &target {
            self.streams.checker.charge_silent(member, since);
        }
        if self.streams.resume && self.first.is_some() {
            self.failed_to_open += 1;
            if self.failed_to_open > self.first_open_failures() {
                let on = target.map_or(String::new(), |m| format!(" on {m}"));
                let status = tonic::Status::unavailable(format!(
                    "etcd-health: no member opened the stream: {reason}{on}, after each member \
                     failed or stayed silent"
                ));
                self.finish(status).await;
                return false;
            }
        }
        self.drop_member(target, reason);
        true
    }

    /// The stream, opened again on `member`, was refused for its auth token: it waits for the
    /// caller's next token (see `token_wait.rs`), or ends past the bound. The member is not
    /// blamed: any member would refuse that token.
    async fn token_refused(&mut self, member: Option<Member>, reason: String) -> bool {
        if !LatestToken::carried_by(&self.metadata) && self.streams.tuning.renew.is_some() {
            // A layer below adds the token: have it renewed, then wait as for a newer token.
            if let Err(status) = self.renew().await {
                self.finish(status).await;
                return false;
            }
        } else if !LatestToken::carried_by(&self.metadata) {
            // Opened without a token (auth enabled since): no newer token will come.
            let status = tonic::Status::unauthenticated(format!(
                "{reason} (etcd-health: the stream carries no auth token; give etcd-client a \
                 user with ConnectOptions::with_user)"
            ));
            self.finish(status).await;
            return false;
        }
        let generation = self.token_generation;
        let refused =
            self.token_wait
                .refused(generation, &reason, Instant::now(), crate::timing::unit());
        let backoff = match refused {
            Ok(backoff) => backoff,
            Err(status) => {
                tracing::warn!(stream = ?B::KIND, id = self.id, %status, "stream refused for its auth token too often; ending it");
                self.finish(status).await;
                return false;
            }
        };
        tracing::warn!(
            stream = ?B::KIND,
            id = self.id,
            member = member.as_ref().map(tracing::field::display),
            %reason,
            ?backoff,
            "stream refused for its auth token; waiting for the caller's next token"
        );
        self.streams.stats.token_refused();
        self.left(member, reason);
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
        true
    }

    /// The back-off is over: open the stream, unless it waits for a newer token.
    async fn retry(&mut self) -> bool {
        match self
            .token_wait
            .next(self.streams.token.generation(), Instant::now())
        {
            Next::Open => {
                self.open();
                true
            }
            Next::WaitUntil(at) => {
                self.link = Link::Down { retry_at: at };
                true
            }
            Next::GiveUp(status) => {
                tracing::warn!(stream = ?B::KIND, id = self.id, %status, "no newer auth token came; ending the stream");
                self.finish(status).await;
                false
            }
        }
    }

    /// Has the layer that adds the stream's token renew it (within the stream timeout), and
    /// notes the renewal as a newer token.
    async fn renew(&mut self) -> Result<(), tonic::Status> {
        let Some(renew) = self.streams.tuning.renew.clone() else {
            return Ok(());
        };
        tracing::info!(stream = ?B::KIND, id = self.id, "renewing the auth token below the stream");
        // Any other outcome than a refusal: open again (a member failure is the next
        // opening's business).
        if let Ok(Err(status)) = timeout(self.idle, renew()).await {
            return Err(status);
        }
        self.streams.token.renewed();
        Ok(())
    }

    /// How many member failures the first opening may meet before the last is the answer.
    fn first_open_failures(&self) -> usize {
        self.streams
            .tuning
            .first_open_failures
            .unwrap_or_else(|| self.streams.checker.members().len().max(1))
    }

    /// `member` serves the stream now (`None`: nobody).
    fn serve(&self, member: Option<Member>) {
        self.streams.stats.serve(self.id, B::KIND, member.clone());
        if let Some(followed) = &self.followed {
            followed.send_modify(|f| f.member = member);
        }
    }

    /// The stream left `member`, for `reason`.
    fn left(&mut self, member: Option<Member>, reason: String) {
        self.serve(None);
        if let Some(followed) = &self.followed {
            followed.send_modify(|f| {
                f.losses = f.losses.saturating_add(1);
                f.last_loss = Some(reason.clone());
            });
        }
        self.lost = Some((member, reason));
    }

    /// Counts what the book dropped and created again.
    fn book_counts(&mut self) {
        let duplicates = self.book.take_duplicates();
        let recreated = self.book.take_recreated();
        self.streams.stats.duplicates(duplicates);
        if let (Some(followed), true) = (&self.followed, duplicates + recreated > 0) {
            followed.send_modify(|f| {
                f.duplicates = f.duplicates.saturating_add(duplicates);
                f.recreated = f.recreated.saturating_add(recreated);
            });
        }
    }

    /// Ends the caller's stream with `status`.
    async fn finish(&mut self, status: tonic::Status) {
        if let Some(first) = self.first.take() {
            let _ = first.send(status.into_http());
            return;
        }
        let _ = self
            .reply
            .send(Frame::trailers(frame::trailers(&status)))
            .await;
    }
}

/// The next message of the caller, or its leaving.
pub(super) async fn caller_event<Req: prost::Message + Default>(
    caller: &mut Decoder,
    done: bool,
    first: &mut Option<oneshot::Sender<http::Response<tonic::body::Body>>>,
    reply: &mpsc::Sender<Frame<Bytes>>,
) -> CallerEvent<Req> {
    let gone = async {
        match first {
            Some(first) => first.closed().await,
            None => reply.closed().await,
        }
    };
    tokio::select! {
        _ = gone => CallerEvent::Gone,
        m = caller.next::<Req>(), if !done => CallerEvent::Message(m),
    }
}

/// The next thing that happens on the link.
async fn link_event<B: Book>(
    link: &mut Link<B>,
    reports: &mut Reports<B::Resp>,
    health: &mut Option<broadcast::Receiver<HealthEvent>>,
    wants: bool,
    resume: bool,
    pokes: bool,
    idle: Duration,
) -> LinkEvent<B::Resp> {
    match link {
        Link::Down { retry_at } => {
            if !wants {
                return std::future::pending().await;
            }
            sleep_until(*retry_at).await;
            LinkEvent::Retry
        }
        Link::Opening { lane, since } => {
            let silent_at = resume.then(|| *since + idle);
            tokio::select! {
                biased;
                o = opening(reports, lane.id()) => LinkEvent::Opened(Some(o)),
                _ = sleep_until_opt(silent_at) => LinkEvent::Opened(None),
            }
        }
        Link::Open {
            lane,
            last_heard,
            waiting_since,
            poked_at,
            pokes: sent,
            poke_after,
            asking,
            excused,
            ..
        } => {
            let (poke_at, hang_at) = if resume {
                quiet_deadlines(
                    pokes,
                    *last_heard,
                    *waiting_since,
                    (*poked_at).map(|first| (first, *sent)),
                    *poke_after,
                    idle,
                    *excused,
                )
            } else {
                (None, None)
            };
            tokio::select! {
                biased;
                m = message(reports, lane.id()) => LinkEvent::Message(m),
                _ = evicted(health, lane.member()), if resume => LinkEvent::Evicted,
                _ = sleep_until_opt(hang_at) => LinkEvent::Hung(idle),
                _ = sleep_until_opt(poke_at) => LinkEvent::Poke,
                o = async { asking.as_mut().expect("guarded").await }, if asking.is_some() => {
                    LinkEvent::InOrder(o)
                }
            }
        }
    }
}

/// How the opening of lane `id` ended: open (on this member, when the channel says) or
/// failed. Reports of lanes closed before are dropped.
async fn opening<R>(reports: &mut Reports<R>, id: u64) -> Result<Option<Member>, tonic::Status> {
    loop {
        match reports.recv().await {
            Some((lane, lane::Heard::Opened(member))) if lane == id => return Ok(member),
            Some((lane, lane::Heard::Ended(status))) if lane == id => {
                return Err(status
                    .unwrap_or_else(|| tonic::Status::unavailable("the member ended the stream")))
            }
            // The driver holds a sender: never `None`.
            Some(_) => {}
            None => return std::future::pending().await,
        }
    }
}

/// The next message of open lane `id`, or its end (`Ok(None)`: the member ended it). Reports of
/// lanes closed before are dropped.
async fn message<R>(reports: &mut Reports<R>, id: u64) -> Result<Option<R>, tonic::Status> {
    loop {
        match reports.recv().await {
            Some((lane, lane::Heard::Message(resp))) if lane == id => return Ok(Some(resp)),
            Some((lane, lane::Heard::Ended(None))) if lane == id => return Ok(None),
            Some((lane, lane::Heard::Ended(Some(status)))) if lane == id => return Err(status),
            Some(_) => {}
            None => return std::future::pending().await,
        }
    }
}

/// Resolves once the caller's token is newer than `after`; never without one to wait for.
async fn token_newer(token: &LatestToken, after: Option<u64>) {
    match after {
        Some(after) => token.changed_after(after).await,
        None => std::future::pending().await,
    }
}

/// How long a quiet watch stream waits before its first progress request: the stream timeout,
/// less up to a fifth (jitter: the streams of a fleet that went quiet together do not all ask
/// at once).
fn poke_after_for(idle: Duration) -> Duration {
    crate::timing::jittered(idle, crate::timing::PERIODIC)
}

/// When an open stream pokes its member next, and when it counts it hung: a request
/// unanswered for `idle` (from `waiting_since`); a stream that `pokes` is poked once quiet for
/// `poke_after`, poked again half `idle` later (etcd 3.5.13+ drops a request made while a
/// watcher catches up), and hung when nothing was heard for `idle` after the first poke
/// (`poked`: when, and how many pokes so far). An `excused` member (catching watches up, and
/// healthy) is not hung for its silence: it is poked again every `idle`, until it answers or
/// the health checker evicts it. Anything heard resets it all (catch-up events count: the
/// member is working).
fn quiet_deadlines(
    pokes: bool,
    last_heard: Instant,
    waiting_since: Option<Instant>,
    poked: Option<(Instant, u8)>,
    poke_after: Duration,
    idle: Duration,
    excused: bool,
) -> (Option<Instant>, Option<Instant>) {
    let poke_at = match (pokes, poked) {
        (false, _) => None,
        (true, None) => Some(last_heard + poke_after),
        (true, Some((first, 1))) => Some(first + idle / 2),
        (true, Some((first, n))) if excused => {
            Some(first + idle / 2 + idle * u32::from(n.saturating_sub(1)))
        }
        (true, Some(_)) => None,
    };
    let poke_hang = poked.filter(|_| !excused).map(|(first, _)| first);
    let hang_at = [waiting_since, poke_hang]
        .into_iter()
        .flatten()
        .map(|t| t + idle)
        .min();
    (poke_at, hang_at)
}

/// Whether the stream needs a member now: the book has something to send or follow, or the
/// caller, done sending, still waits for its stream to open (it gets its answer from one).
fn wants_member(book_needs: bool, caller_waits: bool, caller_done: bool) -> bool {
    book_needs || caller_waits && caller_done
}

/// Whether `member`, serving a stream whose book is catching watches up, may leave pokes
/// unanswered without being held hung: the health state (`snapshot`) has it healthy.
fn excused(member: Option<&Member>, snapshot: &[crate::member::MemberSnapshot]) -> bool {
    member.is_some_and(|m| {
        snapshot
            .iter()
            .any(|s| s.member.index() == m.index() && s.status.is_healthy())
    })
}

/// Why a stream is given up as hung after `waited` (a stream that `pokes` was asked for
/// progress too).
fn hung_reason(pokes: bool, waited: Duration) -> String {
    if pokes {
        format!("no answer, not even to a progress request, within {waited:?}")
    } else {
        format!("no answer to a sent request within {waited:?}")
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::HealthChecker;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_quiet_watch_is_poked_twice_and_hung_an_idle_after_the_first_poke() {
        let t0 = Instant::now();
        let idle = ms(2000);
        // Quiet since t0: the first poke after `poke_after`.
        let (poke, hang) = quiet_deadlines(true, t0, None, None, ms(1800), idle, false);
        assert_eq!((poke, hang), (Some(t0 + ms(1800)), None));
        // Poked at 1.8 s, unanswered: again at 2.8 s, hung at 3.8 s.
        let first = t0 + ms(1800);
        let (poke, hang) = quiet_deadlines(true, t0, None, Some((first, 1)), ms(1800), idle, false);
        assert_eq!((poke, hang), (Some(first + ms(1000)), Some(first + idle)));
        let (poke, _) = quiet_deadlines(true, t0, None, Some((first, 2)), ms(1800), idle, false);
        assert_eq!(poke, None, "twice per quiet spell at most");
    }

    /// Whatever the member sends resets the clock (the driver forgets its pokes): the next
    /// poke is a whole quiet spell after the answer, and nothing is hung meanwhile.
    #[test]
    fn an_answer_restarts_the_quiet_clock() {
        let t0 = Instant::now();
        let idle = ms(2000);
        let heard = t0 + ms(2500);
        let (poke, hang) = quiet_deadlines(true, heard, None, None, ms(1800), idle, false);
        assert_eq!((poke, hang), (Some(heard + ms(1800)), None));
    }

    #[test]
    fn a_healthy_member_catching_watches_up_is_asked_again_and_never_hung_for_silence() {
        let t0 = Instant::now();
        let idle = ms(2000);
        let first = t0 + ms(1800);
        let (poke, hang) = quiet_deadlines(true, t0, None, Some((first, 2)), ms(1800), idle, true);
        assert_eq!((poke, hang), (Some(first + ms(3000)), None));
        let (poke, _) = quiet_deadlines(true, t0, None, Some((first, 5)), ms(1800), idle, true);
        assert_eq!(poke, Some(first + ms(9000)), "one poke per stream timeout");
        // A creation left unanswered still counts.
        let (_, hang) = quiet_deadlines(true, t0, Some(t0), Some((first, 2)), ms(1800), idle, true);
        assert_eq!(hang, Some(t0 + idle));
    }

    #[test]
    fn a_creation_unanswered_hangs_the_stream_whatever_the_pokes() {
        let t0 = Instant::now();
        let (_, hang) = quiet_deadlines(true, t0, Some(t0), None, ms(1800), ms(2000), false);
        assert_eq!(hang, Some(t0 + ms(2000)));
        let (poke, hang) = quiet_deadlines(false, t0, Some(t0), None, ms(1800), ms(2000), false);
        assert_eq!(
            (poke, hang),
            (None, Some(t0 + ms(2000))),
            "keep-alives do not poke"
        );
    }

    #[test]
    fn a_member_is_wanted_for_the_books_work_or_a_caller_waiting_with_nothing_more_to_send() {
        assert!(wants_member(true, false, false));
        assert!(wants_member(true, true, true));
        assert!(
            wants_member(false, true, true),
            "half-closed before opening: the caller waits for its stream"
        );
        assert!(
            !wants_member(false, true, false),
            "the caller may still send what needs one"
        );
        assert!(
            !wants_member(false, false, true),
            "opened once, nothing to follow"
        );
    }

    #[tokio::test]
    async fn only_a_member_the_health_state_has_healthy_is_excused_for_silence() {
        use crate::member::MemberSnapshot;
        let uri = |p: u16| format!("http://127.0.0.1:{p}").parse().expect("uri");
        let checker =
            HealthChecker::with_uris([uri(1), uri(2)], Config::default()).expect("checker");
        let snapshot: Vec<MemberSnapshot> = checker.snapshot();
        let members: Vec<Member> = snapshot.iter().map(|s| s.member.clone()).collect();
        assert!(excused(Some(&members[0]), &snapshot), "{snapshot:?}");
        assert!(
            !excused(None, &snapshot),
            "an unknown member is not excused"
        );
        assert!(
            !excused(Some(&members[1]), &snapshot[..1]),
            "not in the health state"
        );
    }

    #[test]
    fn a_hung_stream_says_whether_it_was_asked_for_progress() {
        assert_eq!(
            hung_reason(true, ms(2000)),
            "no answer, not even to a progress request, within 2s"
        );
        assert_eq!(
            hung_reason(false, ms(2000)),
            "no answer to a sent request within 2s"
        );
    }

    #[test]
    fn pokes_are_jittered_within_a_fifth_below_the_stream_timeout() {
        let idle = ms(2000);
        let draws: Vec<Duration> = (0..200).map(|_| poke_after_for(idle)).collect();
        assert!(draws.iter().all(|d| *d >= ms(1600) && *d <= idle));
        assert!(draws.iter().max() > draws.iter().min(), "spread");
    }
}
