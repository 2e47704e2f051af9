//! One keep-alive stream to one member, run as its own task.
//!
//! Why a task per stream: while one member holds a keep-alive, others must be asked too, so
//! several streams live at once; each reports what it hears to the driver through a channel,
//! and dies with its [`Lane`] handle.
//!
//! The keep-alive engine (`keepalive_driver.rs`, behind both the drop-in's `LeaseKeepAlive`
//! streams and the tower [`KeepAlive`](crate::lease::KeepAlive)) hedges a slow keep-alive over
//! several lanes. Each keep-alive sent carries a `tag` of the driver's (the
//! drop-in numbers the caller's requests with it, to pass each answer on once); a lane's
//! answers come in the order its keep-alives were sent.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use crate::balance::{AvoidMembers, EvenIfEjected};
use crate::member::Member;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::stream::resume::{served_by, set_metadata, BoxChannel, Outbound};

/// What a stream reports to the driver.
#[derive(Debug)]
pub(crate) enum Heard {
    /// etcd's headers came: the stream is open on this member (when the channel says).
    Opened(Option<Member>),
    /// A keep-alive was answered (`ttl` 0 or less: the lease is gone).
    Answer(LeaseKeepAliveResponse),
    /// The stream failed or ended.
    Ended(tonic::Status),
}

/// A keep-alive a lane sent and has not had answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// When it was sent.
    pub(crate) at: Instant,
    /// The driver's tag for it.
    pub(crate) tag: u64,
}

/// The driver's handle on one stream; dropping it ends the stream.
#[derive(Debug)]
pub(crate) struct Lane {
    id: u64,
    member: Option<Member>,
    /// Whether etcd's headers came.
    open: bool,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    /// Keep-alives not answered yet, oldest first (etcd answers a stream's keep-alives one at
    /// a time, in order).
    sent: VecDeque<Sent>,
    task: AbortHandle,
}

/// Where and how to open a stream.
pub(crate) struct Opening {
    pub(crate) id: u64,
    /// The caller's metadata (its auth token, say); `hasleader` is added when asked.
    pub(crate) metadata: MetadataMap,
    pub(crate) require_leader: bool,
    /// The member chosen for it, if the helper knows the members.
    pub(crate) member: Option<Member>,
    pub(crate) avoid: AvoidMembers,
    /// Open it on [`member`](Self::member) even if the health state has that member out of
    /// rotation (a hedge's last resort, see [`EvenIfEjected`]).
    pub(crate) even_if_ejected: bool,
    /// How many keep-alives may wait for the member to read them (a full queue means it does
    /// not read: [`Lane::renew`] then fails).
    pub(crate) queue: usize,
}

impl Lane {
    /// Opens a stream with `first` on its way (each keep-alive with its tag).
    pub(crate) fn open(
        client: &LeaseClient<BoxChannel>,
        opening: Opening,
        first: impl IntoIterator<Item = (LeaseKeepAliveRequest, u64)>,
        heard: mpsc::Sender<(u64, Heard)>,
        now: Instant,
    ) -> Self {
        let (requests, outbound) = mpsc::channel(opening.queue.max(1));
        let mut req = tonic::Request::from_parts(
            opening.metadata,
            tonic::Extensions::default(),
            Outbound(outbound),
        );
        set_metadata(&mut req, opening.require_leader, opening.avoid);
        if let (true, Some(member)) = (opening.even_if_ejected, &opening.member) {
            req.extensions_mut().insert(EvenIfEjected(member.clone()));
        }
        let task = tokio::spawn(run(client.clone(), req, opening.id, heard)).abort_handle();
        let mut lane = Self {
            id: opening.id,
            member: opening.member,
            open: false,
            requests,
            sent: VecDeque::new(),
            task,
        };
        for (request, tag) in first {
            lane.renew(request, tag, now);
        }
        lane
    }

    /// The stream's id, as its reports carry it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The member the stream is on (as chosen, then as etcd's answer says).
    pub(crate) fn member(&self) -> Option<&Member> {
        self.member.as_ref()
    }

    /// The balancer says which member took the stream.
    pub(crate) fn opened_on(&mut self, member: Option<Member>) {
        self.open = true;
        if member.is_some() {
            self.member = member;
        }
    }

    /// Whether etcd's headers came (etcd sends them with the first answer).
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Sends a keep-alive tagged `tag`; `false` if the stream can take none (closed, or full
    /// of unanswered ones).
    pub(crate) fn renew(&mut self, request: LeaseKeepAliveRequest, tag: u64, now: Instant) -> bool {
        let ok = self.requests.try_send(request).is_ok();
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
pub(crate) fn take_on_member(lanes: &mut Vec<Lane>, index: usize) -> Option<Lane> {
    let pos = lanes
        .iter()
        .position(|l| l.member().is_some_and(|m| m.index() == index))?;
    Some(lanes.remove(pos))
}

/// Removes and returns the first of `lanes` that has left a keep-alive unanswered for `limit`
/// at `now`: the engine gives such a stream up.
pub(crate) fn take_stale(lanes: &mut Vec<Lane>, now: Instant, limit: Duration) -> Option<Lane> {
    let pos = lanes
        .iter()
        .position(|l| l.waiting_since().is_some_and(|t| now >= t + limit))?;
    Some(lanes.remove(pos))
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream's task: opens it, then reports every answer until it ends.
async fn run(
    mut client: LeaseClient<BoxChannel>,
    req: tonic::Request<Outbound<LeaseKeepAliveRequest>>,
    id: u64,
    heard: mpsc::Sender<(u64, Heard)>,
) {
    let mut inbound = match client.lease_keep_alive(req).await {
        Ok(resp) => {
            let _ = heard.send((id, Heard::Opened(served_by(&resp)))).await;
            resp.into_inner()
        }
        Err(status) => {
            let _ = heard.send((id, Heard::Ended(status))).await;
            return;
        }
    };
    loop {
        let report = match inbound.message().await {
            Ok(Some(resp)) => Heard::Answer(resp),
            Ok(None) => Heard::Ended(tonic::Status::unavailable("the keep-alive stream ended")),
            Err(status) => Heard::Ended(status),
        };
        let last = matches!(report, Heard::Ended(_));
        if heard.send((id, report)).await.is_err() || last {
            return;
        }
    }
}
