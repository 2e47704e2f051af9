//! One keep-alive stream to one member, run as its own task.
//!
//! Why a task per stream: while one member holds a keep-alive, others must be asked too, so
//! several streams live at once; each reports what it hears to the driver through a channel,
//! and dies with its [`Lane`] handle.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::balance::AvoidMembers;
use crate::checker::Member;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::LeaseKeepAliveRequest;
use crate::resume::{served_by, stream_request, BoxChannel, Outbound};

/// What a stream reports to the driver.
#[derive(Debug)]
pub(super) enum Heard {
    /// etcd's headers came: the stream is open on this member (when the channel says).
    Opened(Option<Member>),
    /// A keep-alive was answered with `ttl` (seconds; 0 or less: the lease is gone) by a
    /// member at raft term `term` (0: the answer named none).
    Answer { ttl: i64, term: u64 },
    /// The stream failed or ended.
    Ended(tonic::Status),
}

/// The driver's handle on one stream; dropping it ends the stream.
#[derive(Debug)]
pub(super) struct Lane {
    id: u64,
    member: Option<Member>,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    /// Send times of keep-alives not answered yet, oldest first (etcd answers a stream's
    /// keep-alives one at a time, in order).
    sent: VecDeque<Instant>,
    task: AbortHandle,
}

/// Where and how to open a stream.
pub(super) struct Opening {
    pub(super) id: u64,
    pub(super) lease_id: i64,
    pub(super) require_leader: bool,
    /// The member chosen for it, if the helper knows the members.
    pub(super) member: Option<Member>,
    pub(super) avoid: AvoidMembers,
}

impl Lane {
    /// Opens a stream with its first keep-alive on its way.
    pub(super) fn open(
        client: &LeaseClient<BoxChannel>,
        opening: Opening,
        heard: mpsc::Sender<(u64, Heard)>,
        now: Instant,
    ) -> Self {
        let first = LeaseKeepAliveRequest {
            id: opening.lease_id,
        };
        let (requests, req) = stream_request(first, opening.require_leader, opening.avoid);
        let task = tokio::spawn(run(client.clone(), req, opening.id, heard)).abort_handle();
        Self {
            id: opening.id,
            member: opening.member,
            requests,
            sent: VecDeque::from([now]),
            task,
        }
    }

    /// The stream's id, as its reports carry it.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// The member the stream is on (as chosen, then as etcd's answer says).
    pub(super) fn member(&self) -> Option<&Member> {
        self.member.as_ref()
    }

    /// The balancer says which member took the stream.
    pub(super) fn opened_on(&mut self, member: Option<Member>) {
        if member.is_some() {
            self.member = member;
        }
    }

    /// Sends a keep-alive; `false` if the stream can take none (closed, or full of
    /// unanswered ones).
    pub(super) fn renew(&mut self, lease_id: i64, now: Instant) -> bool {
        let ok = self
            .requests
            .try_send(LeaseKeepAliveRequest { id: lease_id })
            .is_ok();
        if ok {
            self.sent.push_back(now);
        }
        ok
    }

    /// An answer came: the send time of the keep-alive it answers.
    pub(super) fn answered(&mut self) -> Option<Instant> {
        self.sent.pop_front()
    }

    /// Since when the stream has left a keep-alive unanswered.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        self.sent.front().copied()
    }
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
            Ok(Some(resp)) => Heard::Answer {
                ttl: resp.ttl,
                term: resp.header.map_or(0, |h| h.raft_term),
            },
            Ok(None) => Heard::Ended(tonic::Status::unavailable("the keep-alive stream ended")),
            Err(status) => Heard::Ended(status),
        };
        let last = matches!(report, Heard::Ended(_));
        if heard.send((id, report)).await.is_err() || last {
            return;
        }
    }
}
