//! One keep-alive stream to one member: a [`Lane`] and the keep-alives it carries.
//!
//! The keep-alive engine (`keepalive_driver.rs`, behind both the drop-in's `LeaseKeepAlive`
//! streams and the tower [`KeepAlive`](crate::lease::KeepAlive)) hedges a slow keep-alive over
//! several lanes. Each keep-alive sent carries a `tag` of the driver's (the
//! drop-in numbers the caller's requests with it, to pass each answer on once); a lane's
//! answers come in the order its keep-alives were sent, so the oldest unanswered one is the
//! one an answer answers.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lane::{Call, Heard, Lane, Opening};
use crate::member::Member;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::stream::resume::BoxChannel;

/// How a keep-alive stream is called: as etcd-client's generated stub does.
const CALL: Call = Call::Stub {
    path: "/etcdserverpb.Lease/LeaseKeepAlive",
    service: "etcdserverpb.Lease",
    method: "LeaseKeepAlive",
};

/// A keep-alive a lane sent and has not had answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// When it was sent.
    pub(crate) at: Instant,
    /// The driver's tag for it.
    pub(crate) tag: u64,
}

/// The driver's handle on one keep-alive stream; dropping it ends the stream.
#[derive(Debug)]
pub(crate) struct KeepAliveLane {
    lane: Lane<LeaseKeepAliveRequest>,
    /// Keep-alives not answered yet, oldest first (etcd answers a stream's keep-alives one at
    /// a time, in order).
    sent: VecDeque<Sent>,
}

// === impl KeepAliveLane ===

impl KeepAliveLane {
    /// Opens a stream with `first` on its way (each keep-alive with its tag).
    pub(crate) fn open(
        channel: &BoxChannel,
        opening: Opening,
        first: impl IntoIterator<Item = (LeaseKeepAliveRequest, u64)>,
        reports: mpsc::Sender<(u64, Heard<LeaseKeepAliveResponse>)>,
        now: Instant,
    ) -> Self {
        let mut lane = Self {
            lane: Lane::open(channel, CALL, opening, reports),
            sent: VecDeque::new(),
        };
        for (request, tag) in first {
            lane.renew(request, tag, now);
        }
        lane
    }

    /// The stream's id, as its reports carry it.
    pub(crate) fn id(&self) -> u64 {
        self.lane.id()
    }

    /// The member the stream is on (as chosen, then as etcd's answer says).
    pub(crate) fn member(&self) -> Option<&Member> {
        self.lane.member()
    }

    /// The balancer says which member took the stream.
    pub(crate) fn opened_on(&mut self, member: Option<Member>) {
        self.lane.opened_on(member);
    }

    /// Whether etcd's headers came (etcd sends them with the first answer).
    pub(crate) fn is_open(&self) -> bool {
        self.lane.is_open()
    }

    /// Sends a keep-alive tagged `tag`; `false` if the stream can take none (closed, or full
    /// of unanswered ones).
    pub(crate) fn renew(&mut self, request: LeaseKeepAliveRequest, tag: u64, now: Instant) -> bool {
        let ok = self.lane.send(request);
        if ok {
            self.sent.push_back(Sent { at: now, tag });
        }
        ok
    }

    /// An answer came: the keep-alive it answers.
    pub(crate) fn answered(&mut self) -> Option<Sent> {
        self.sent.pop_front()
    }

    /// Since when the stream has left a keep-alive unanswered.
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        self.sent.front().map(|s| s.at)
    }

    /// Whether the keep-alive tagged `tag` was sent here and is not answered yet.
    pub(crate) fn carries(&self, tag: u64) -> bool {
        self.sent.iter().any(|s| s.tag == tag)
    }
}

/// Removes and returns the first of `lanes` open on member `index`: the health checker evicted
/// it, so the engine closes its streams at once.
pub(crate) fn take_on_member(
    lanes: &mut Vec<KeepAliveLane>,
    index: usize,
) -> Option<KeepAliveLane> {
    let pos = lanes
        .iter()
        .position(|l| l.member().is_some_and(|m| m.index() == index))?;
    Some(lanes.remove(pos))
}

/// Removes and returns the first of `lanes` that has left a keep-alive unanswered for `limit`
/// at `now`: the engine gives such a stream up.
pub(crate) fn take_stale(
    lanes: &mut Vec<KeepAliveLane>,
    now: Instant,
    limit: Duration,
) -> Option<KeepAliveLane> {
    let pos = lanes
        .iter()
        .position(|l| l.waiting_since().is_some_and(|t| now >= t + limit))?;
    Some(lanes.remove(pos))
}
