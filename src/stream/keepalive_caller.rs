//! The keep-alive engine's two callers: etcd-client's `Lease/LeaseKeepAlive` stream through the
//! drop-in, and the tower [`KeepAlive`](crate::lease::KeepAlive) in the same process.
//!
//! Why one type with two faces: the engine (`keepalive_driver.rs`) decides everything about
//! members, streams, hedges and back-off the same way for both; what differs is only how a
//! keep-alive comes in and how its answer goes out. etcd-client's keeper writes gRPC frames on
//! an HTTP/2 body and waits for the stream's headers before it sends more; the tower
//! `KeepAlive` hands keep-alives over a channel and reads each answer with the time the member
//! was asked (it counts the lease's local expiry from that send time, as etcd's lessor counts
//! from the time it took the renewal). Each keep-alive of either gets at most one answer.
//!
//! Only the drop-in's caller waits for its stream to open ([`FirstOpen`]: the caller's
//! deadline, else `retry.budget`, else once each member failed or stayed silent); the
//! in-process caller's stream is the engine itself, open from the start, and only its own
//! verdicts (lease gone, presumed expired, stopped) end it.

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::driver::{caller_event, CallerEvent};
use super::frame::{self, Decoder, ReplyBody};
use super::opening::FirstOpen;
use super::stats::{StreamKind, StreamStats};
use crate::member::Member;
use crate::metrics::StreamMeter;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

/// Frames waiting for the drop-in's caller.
const REPLY_BUFFER: usize = 64;

/// What the engine tells an in-process caller about a keep-alive it sent.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A member answered (TTL 0 or less: the lease is gone); `sent` is when the engine sent
    /// the keep-alive that member answered.
    Renewed {
        resp: LeaseKeepAliveResponse,
        sent: Instant,
    },
    /// The keep-alives failed with a status any member would give (the lease not found,
    /// permission denied): the engine ended.
    Ended(tonic::Status),
}

/// What the engine went through, for an in-process caller's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Progress {
    /// The member whose stream answered last, while it is open.
    pub(crate) member: Option<Member>,
    /// Streams open now.
    pub(crate) open: usize,
    /// Streams lost and replaced.
    pub(crate) reopens: u64,
    /// Streams opened on another member while a keep-alive was unanswered.
    pub(crate) hedges: u64,
    /// Why the last stream was lost.
    pub(crate) last_failure: Option<String>,
}

/// The in-process caller's ends of an engine: keep-alives in, answers and progress out.
/// Dropping it ends the engine.
#[derive(Debug)]
pub(crate) struct LocalEnds {
    pub(crate) requests: mpsc::Sender<LeaseKeepAliveRequest>,
    pub(crate) answers: mpsc::Receiver<Answer>,
    pub(crate) progress: watch::Receiver<Progress>,
}

/// What the caller did.
pub(super) enum CallerIn {
    /// A keep-alive.
    Request(LeaseKeepAliveRequest),
    /// The caller sends no more (it still reads answers).
    HalfClosed,
    /// The caller's stream failed.
    Failed(tonic::Status),
    /// The caller is gone: nobody reads answers any more.
    Gone,
}

/// The engine's caller (see the [module docs](self)).
pub(super) enum Caller {
    /// etcd-client's stream through the drop-in.
    Grpc(Box<Grpc>),
    /// The tower `KeepAlive`.
    Local(Local),
}

/// etcd-client's side of a keep-alive stream.
pub(super) struct Grpc {
    stats: StreamStats,
    /// The stream's number in the stats.
    id: u64,
    decoder: Decoder,
    done: bool,
    first: Option<oneshot::Sender<http::Response<tonic::body::Body>>>,
    reply_rx: Option<mpsc::Receiver<Frame<Bytes>>>,
    reply: mpsc::Sender<Frame<Bytes>>,
    first_open: FirstOpen,
    /// Member failures and silent openings before the stream was first opened.
    failed_to_open: usize,
}

/// The tower `KeepAlive`'s side.
pub(super) struct Local {
    requests: mpsc::Receiver<LeaseKeepAliveRequest>,
    answers: mpsc::Sender<Answer>,
    progress: watch::Sender<Progress>,
    meter: StreamMeter,
}

// === impl Caller ===

impl Caller {
    /// etcd-client's stream with this `body`, answered through `first` once a member opens it.
    pub(super) fn grpc(
        stats: StreamStats,
        body: tonic::body::Body,
        first: oneshot::Sender<http::Response<tonic::body::Body>>,
        first_open: FirstOpen,
    ) -> Self {
        let (reply, reply_rx) = mpsc::channel(REPLY_BUFFER);
        let id = stats.opened(StreamKind::KeepAlive);
        Self::Grpc(Box::new(Grpc {
            stats,
            id,
            decoder: Decoder::new(body),
            done: false,
            first: Some(first),
            reply_rx: Some(reply_rx),
            reply,
            first_open,
            failed_to_open: 0,
        }))
    }

    /// An in-process caller, and the ends it holds.
    pub(super) fn local() -> (Self, LocalEnds) {
        let (requests_tx, requests) = mpsc::channel(4);
        let (answers, answers_rx) = mpsc::channel(4);
        let (progress, progress_rx) = watch::channel(Progress::default());
        let caller = Self::Local(Local {
            requests,
            answers,
            progress,
            meter: StreamMeter::keep_alive(),
        });
        let ends = LocalEnds {
            requests: requests_tx,
            answers: answers_rx,
            progress: progress_rx,
        };
        (caller, ends)
    }

    /// A number for the logs.
    pub(super) fn id(&self) -> u64 {
        match self {
            Self::Grpc(g) => g.id,
            Self::Local(_) => 0,
        }
    }

    /// The next thing the caller does.
    pub(super) async fn next(&mut self) -> CallerIn {
        match self {
            Self::Grpc(g) => {
                match caller_event::<LeaseKeepAliveRequest>(
                    &mut g.decoder,
                    g.done,
                    &mut g.first,
                    &g.reply,
                )
                .await
                {
                    CallerEvent::Gone => CallerIn::Gone,
                    CallerEvent::Message(Ok(Some(req))) => CallerIn::Request(req),
                    CallerEvent::Message(Ok(None)) => {
                        g.done = true;
                        CallerIn::HalfClosed
                    }
                    CallerEvent::Message(Err(status)) => CallerIn::Failed(status),
                }
            }
            Self::Local(l) => tokio::select! {
                () = l.answers.closed() => CallerIn::Gone,
                r = l.requests.recv() => r.map_or(CallerIn::Gone, CallerIn::Request),
            },
        }
    }

    /// Whether the caller still waits for its stream to open.
    pub(super) fn opening(&self) -> bool {
        matches!(self, Self::Grpc(g) if g.first.is_some())
    }

    /// Until when the caller waits for its stream to open, while it does.
    pub(super) fn open_by(&self) -> Option<Instant> {
        match self {
            Self::Grpc(g) => g.first.as_ref().and(g.first_open.deadline()),
            Self::Local(_) => None,
        }
    }

    /// The caller's answer when no member opened its stream by [`open_by`](Self::open_by).
    pub(super) fn open_expired(&self, last: Option<&str>) -> tonic::Status {
        match self {
            Self::Grpc(g) => g.first_open.expired(last),
            Self::Local(_) => tonic::Status::deadline_exceeded("never: no opening to wait for"),
        }
    }

    /// A member failed or stayed silent before the caller's stream was open: `true` once that
    /// happened more often than there are `members` (then the last failure is the answer).
    pub(super) fn failed_to_open(&mut self, members: usize) -> bool {
        match self {
            Self::Grpc(g) if g.first.is_some() => {
                g.failed_to_open += 1;
                g.failed_to_open > members.max(1)
            }
            _ => false,
        }
    }

    /// A member opened a stream: the drop-in's caller gets its response; `false` if it is gone.
    pub(super) fn opened(&mut self) -> bool {
        match self {
            Self::Grpc(g) => match (g.first.take(), g.reply_rx.take()) {
                (Some(first), Some(rx)) => first.send(frame::response(ReplyBody::new(rx))).is_ok(),
                _ => true,
            },
            Self::Local(_) => true,
        }
    }

    /// Passes a member's answer to a keep-alive sent at `sent` on; `false` if the caller is gone.
    pub(super) async fn answer(&mut self, resp: LeaseKeepAliveResponse, sent: Instant) -> bool {
        match self {
            Self::Grpc(g) => g
                .reply
                .send(Frame::data(frame::encode(&resp)))
                .await
                .is_ok(),
            Self::Local(l) => l.answers.send(Answer::Renewed { resp, sent }).await.is_ok(),
        }
    }

    /// Ends the caller's stream with `status`.
    pub(super) async fn finish(&mut self, status: tonic::Status) {
        match self {
            Self::Grpc(g) => {
                if let Some(first) = g.first.take() {
                    let _ = first.send(status.into_http());
                    return;
                }
                let _ = g
                    .reply
                    .send(Frame::trailers(frame::trailers(&status)))
                    .await;
            }
            Self::Local(l) => {
                let _ = l.answers.send(Answer::Ended(status)).await;
            }
        }
    }

    /// Stream `lane` on `member` serves the caller now (`None`: none does); `open` streams.
    pub(super) fn serve(&mut self, lane: Option<u64>, member: Option<Member>, open: usize) {
        match self {
            Self::Grpc(g) => g.stats.serve(g.id, StreamKind::KeepAlive, member),
            Self::Local(l) => {
                l.meter.serving(lane);
                l.progress.send_modify(|p| {
                    p.member = member;
                    p.open = open;
                });
            }
        }
    }

    /// Streams open now (an in-process caller renews at once when none is).
    pub(super) fn open_streams(&mut self, open: usize) {
        if let Self::Local(l) = self {
            l.progress.send_if_modified(|p| {
                let changed = p.open != open;
                p.open = open;
                changed
            });
        }
    }

    /// Another stream was opened while a keep-alive waited.
    pub(super) fn hedged(&mut self) {
        match self {
            Self::Grpc(g) => g.stats.keep_alive_hedged(),
            Self::Local(l) => {
                crate::metrics::keep_alive_hedged();
                l.progress
                    .send_modify(|p| p.hedges = p.hedges.saturating_add(1));
            }
        }
    }

    /// A stream was lost (`reopens` so far, why).
    pub(super) fn lost(&mut self, reopens: u64, reason: &str) {
        if let Self::Local(l) = self {
            l.progress.send_modify(|p| {
                p.reopens = reopens;
                p.last_failure = Some(reason.to_owned());
            });
        }
    }

    /// A keep-alive went to a member again.
    pub(super) fn resent(&self) {
        if let Self::Grpc(g) = self {
            g.stats.keep_alive_resent();
        }
    }

    /// A keep-alive was answered twice; the second answer was swallowed.
    pub(super) fn duplicate(&self) {
        if let Self::Grpc(g) = self {
            g.stats.duplicate_keep_alive_answer();
        }
    }

    /// Another member than the one serving answered first.
    pub(super) fn moved(&self) {
        if let Self::Grpc(g) = self {
            g.stats.keep_alive_moved();
        }
    }

    /// An idle stream on a follower was moved to the leader.
    pub(super) fn moved_to_leader(&self) {
        if let Self::Grpc(g) = self {
            g.stats.moved_to_leader();
        }
    }
}
