//! The driver behind a [`KeepAlive`](super::KeepAlive): runs the [`Schedule`], opens and
//! closes the [`Lane`]s it asks for, and tells the caller what happened.

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::{KeepAliveOptions, KeepAliveState, LeaseError};
use crate::checker::{HealthEvent, Member};
use crate::dropin::keepalive_choose::{place, Known};
use crate::dropin::keepalive_lane::{take_on_member, take_stale, Heard, Lane, Opening};
use crate::dropin::keepalive_schedule::Schedule;
use crate::leader::behind_the_leader;
use crate::metrics::StreamMeter;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::LeaseKeepAliveRequest;
use crate::resume::{classify, next_eviction, BoxChannel, Lost, Reopen};

/// Keep-alives a stream may hold unread by its member: one at a time is sent, so a full
/// queue means the member does not read.
const LANE_QUEUE: usize = 4;

/// The raft term an answer names (0: none).
fn raft_term(resp: &crate::proto::etcdserverpb::LeaseKeepAliveResponse) -> u64 {
    resp.header.as_ref().map_or(0, |h| h.raft_term)
}

pub(super) async fn run(
    channel: BoxChannel,
    lease_id: i64,
    options: KeepAliveOptions,
    state: watch::Sender<KeepAliveState>,
) {
    let now = Instant::now();
    let (heard_tx, heard) = mpsc::channel(16);
    let mut driver = Driver {
        client: LeaseClient::new(channel),
        lease_id,
        schedule: Schedule::new(&options, now),
        reopen: Reopen::new(&options.reopen),
        health: options.reopen.checker.as_ref().map(|c| c.subscribe()),
        lanes: Vec::new(),
        next_id: 0,
        heard_tx,
        heard,
        state: &state,
        options: &options,
        meter: StreamMeter::keep_alive(),
    };
    let err = driver.drive().await;
    drop(driver);
    tracing::warn!(lease = %format_args!("{lease_id:x}"), error = %err, "lease keep-alive ended");
    state.send_modify(|s| {
        s.member = None;
        s.ended = Some(err);
    });
}

struct Driver<'a> {
    client: LeaseClient<BoxChannel>,
    lease_id: i64,
    schedule: Schedule,
    reopen: Reopen,
    health: Option<broadcast::Receiver<HealthEvent>>,
    /// Open streams; the first is the one that answered last (renewals go there first).
    lanes: Vec<Lane>,
    next_id: u64,
    heard_tx: mpsc::Sender<(u64, Heard)>,
    heard: mpsc::Receiver<(u64, Heard)>,
    state: &'a watch::Sender<KeepAliveState>,
    options: &'a KeepAliveOptions,
    /// Its metrics: the stream serving it is the first lane's.
    meter: StreamMeter,
}

// === impl Driver ===

impl Driver<'_> {
    /// Keeps the lease alive until it is lost; returns why.
    async fn drive(&mut self) -> LeaseError {
        loop {
            let now = Instant::now();
            if self.schedule.expire_if_due(now) {
                self.presumed_expired(now);
            }
            self.give_up_stale(now);
            if self.schedule.start_round_if_due(now, self.lanes.is_empty()) {
                self.renew_on_first(now);
            }
            let all_waiting = self.lanes.iter().all(|l| l.waiting_since().is_some());
            if self
                .schedule
                .should_open(now, self.lanes.len(), all_waiting)
            {
                self.open(now);
            }

            let stale_at = self
                .lanes
                .iter()
                .filter_map(Lane::waiting_since)
                .min()
                .map(|t| t + self.schedule.response_timeout());
            let wake = self
                .schedule
                .wake(now, self.lanes.len(), all_waiting, stale_at);
            tokio::select! {
                Some((id, heard)) = self.heard.recv() => {
                    if let Some(err) = self.heard(id, heard) {
                        return err;
                    }
                }
                evicted = next_eviction(&mut self.health) => self.evicted(evicted),
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Sends the due renewal on the stream that answered last, if it can take it.
    fn renew_on_first(&mut self, now: Instant) {
        let request = self.request();
        if let Some(first) = self.lanes.first_mut() {
            if first.renew(request, 0, now) {
                self.schedule.asked(now);
            } else {
                let lane = self.lanes.remove(0);
                let lost = Lost::new(lane.member().cloned(), "the keep-alive stream closed");
                self.lost_lane(lane, lost, false, now);
            }
        }
    }

    /// Opens one more stream, where [`place`] says.
    fn open(&mut self, now: Instant) {
        let open_on: Vec<Member> = self
            .lanes
            .iter()
            .filter_map(|l| l.member().cloned())
            .collect();
        let avoided = self.reopen.avoid(now);
        let known = self.options.reopen.checker.as_ref().map(Known::of);
        let roll = rand::random::<u32>() as usize;
        let (member, avoid) = place(known.as_ref(), &open_on, avoided, roll);
        let hedge = !self.lanes.is_empty();
        self.next_id = self.next_id.wrapping_add(1);
        let lane = Lane::open(
            &self.client,
            Opening {
                id: self.next_id,
                metadata: tonic::metadata::MetadataMap::new(),
                require_leader: self.options.reopen.require_leader,
                member: member.clone(),
                avoid,
                even_if_ejected: false,
                queue: LANE_QUEUE,
            },
            [(self.request(), 0)],
            self.heard_tx.clone(),
            now,
        );
        self.schedule.asked(now);
        self.lanes.push(lane);
        if hedge {
            self.state
                .send_modify(|s| s.hedges = s.hedges.saturating_add(1));
            tracing::debug!(
                lease = %format_args!("{:x}", self.lease_id),
                member = member.as_ref().map(tracing::field::display),
                open = self.lanes.len(),
                "keep-alive unanswered; asking another member too"
            );
        }
    }

    /// Handles a report of stream `id`; `Some` ends the helper.
    fn heard(&mut self, id: u64, heard: Heard) -> Option<LeaseError> {
        let now = Instant::now();
        let pos = self.lanes.iter().position(|l| l.id() == id)?;
        match heard {
            Heard::Opened(member) => {
                self.lanes[pos].opened_on(member);
                if pos == 0 && !self.schedule.in_round() {
                    self.publish_member();
                }
            }
            Heard::Answer(resp) if self.behind(raft_term(&resp)) => {
                let term = raft_term(&resp);
                // Not a renewal (see `behind_the_leader`): the round stays open, its clock
                // running, and the stream goes so the next keep-alive asks another member.
                let lane = self.lanes.remove(pos);
                let reason = format!(
                    "answered at raft term {term}, behind the leader's term {}: a renewal there \
                     renews nothing",
                    self.leader_term().unwrap_or_default()
                );
                let lost = Lost::new(lane.member().cloned(), reason);
                self.lost_lane(lane, lost, true, now);
            }
            Heard::Answer(resp) if resp.ttl <= 0 => {
                return Some(LeaseError::Lost {
                    lease_id: self.lease_id,
                });
            }
            Heard::Answer(resp) => {
                let ttl = resp.ttl;
                let sent = self.lanes[pos].answered().map_or(now, |s| s.at);
                if self.schedule.answered(sent, ttl, now) {
                    tracing::warn!(
                        lease = %format_args!("{:x}", self.lease_id),
                        ttl,
                        "lease renewed after it was presumed expired: etcd still held it"
                    );
                }
                self.reopen.healthy();
                // The answering stream carries the lease from now on; the others, asked only
                // because it was slow (or they were), are closed.
                let lane = self.lanes.swap_remove(pos);
                self.lanes.clear();
                self.lanes.push(lane);
                self.state.send_modify(|s| {
                    s.renewals = s.renewals.saturating_add(1);
                    s.ttl = Some(ttl);
                    s.expires = self.schedule.expires().map(Instant::into_std);
                    s.presumed_expired = false;
                });
                self.publish_member();
            }
            Heard::Ended(status) => {
                let lane = self.lanes.remove(pos);
                match classify(status, lane.member().cloned()) {
                    Ok(lost) => self.lost_lane(lane, lost, true, now),
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        return Some(LeaseError::Lost {
                            lease_id: self.lease_id,
                        });
                    }
                    Err(status) => {
                        return Some(LeaseError::Status {
                            lease_id: self.lease_id,
                            status,
                        });
                    }
                }
            }
        }
        None
    }

    /// The keep-alive of this lease.
    fn request(&self) -> LeaseKeepAliveRequest {
        LeaseKeepAliveRequest { id: self.lease_id }
    }

    /// The term of the leader the health checker knows, if it knows one.
    fn leader_term(&self) -> Option<u64> {
        let checker = self.options.reopen.checker.as_ref()?;
        checker.leader().leader_term
    }

    /// Whether an answer at raft `term` comes from a member behind that leader.
    fn behind(&self, term: u64) -> bool {
        behind_the_leader(term, self.leader_term())
    }

    /// The health checker evicted a member: its streams go at once.
    fn evicted(&mut self, index: usize) {
        let now = Instant::now();
        while let Some(lane) = take_on_member(&mut self.lanes, index) {
            let lost = Lost::evicted(lane.member().cloned());
            self.lost_lane(lane, lost, true, now);
        }
    }

    /// Streams that left a keep-alive unanswered for the response timeout are given up. Their
    /// member is not avoided: while the cluster elects a leader, every member is slow.
    fn give_up_stale(&mut self, now: Instant) {
        let limit = self.schedule.response_timeout();
        while let Some(lane) = take_stale(&mut self.lanes, now, limit) {
            let reason = format!("no answer to the keep-alive within {limit:?}");
            let lost = Lost::new(lane.member().cloned(), reason);
            self.lost_lane(lane, lost, false, now);
        }
    }

    /// Books a stream lost (already removed from the open ones); its member is avoided for a
    /// while if `avoid`.
    fn lost_lane(&mut self, lane: Lane, lost: Lost, avoid: bool, now: Instant) {
        drop(lane);
        let reopens = self.reopen.lost(&lost, avoid, now);
        if self.lanes.is_empty() {
            self.schedule.failed(now, self.reopen.delay());
        }
        self.state.send_modify(|s| {
            s.reopens = reopens;
            s.last_failure = Some(lost.reason.clone());
        });
        self.publish_member();
        tracing::warn!(
            lease = %format_args!("{:x}", self.lease_id),
            member = lost.member.as_ref().map(tracing::field::display),
            reason = %lost.reason,
            reopens,
            open = self.lanes.len(),
            "lease keep-alive stream lost"
        );
    }

    /// The state's `member`: the one whose stream answered last, while it is open.
    fn publish_member(&mut self) {
        let first = self.lanes.first();
        self.meter.serving(first.map(Lane::id));
        let member = first.and_then(|l| l.member().cloned());
        self.state.send_modify(|s| s.member = member);
    }

    /// The TTL ran out with no keep-alive answered: the caller is told (and stops acting as
    /// the holder); renewals go on, since etcd may still hold the lease.
    fn presumed_expired(&self, now: Instant) {
        let late = self
            .schedule
            .expires()
            .map(|e| now.saturating_duration_since(e));
        let mut expiries = 0;
        self.state.send_modify(|s| {
            s.presumed_expired = true;
            s.expiries = s.expiries.saturating_add(1);
            expiries = s.expiries;
        });
        tracing::warn!(
            lease = %format_args!("{:x}", self.lease_id),
            ?late,
            expiries,
            open = self.lanes.len(),
            "lease presumed expired: no keep-alive answered within its TTL; still renewing"
        );
    }
}
