//! The tower [`KeepAlive`](super::KeepAlive)'s keeper: what etcd-client's keeper loop is to the
//! drop-in, over the same keep-alive engine (`stream/keepalive_driver.rs`).
//!
//! Why a keeper of its own: the engine decides where keep-alives go, how many streams carry
//! them, when one is hedged or given up and how a lost stream is replaced; the keeper decides
//! what etcd-client's keeper decides for itself: when to renew (every TTL/3, from the last
//! answer; at once when the engine has no stream left), and when the lease must be presumed
//! expired (its TTL run out since the *send* time of the last keep-alive answered, as the
//! engine reports it). Both are pure rules of the [`Schedule`]; this loop only sends, reads
//! and sleeps. One keep-alive is outstanding at a time: the engine re-sends and hedges it.

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::{KeepAliveOptions, KeepAliveState, LeaseError};
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::stream::resume::BoxChannel;
use crate::stream::{spawn_local, Answer, LocalEnds, Progress, Schedule};

pub(super) async fn run(
    channel: BoxChannel,
    lease_id: i64,
    options: KeepAliveOptions,
    state: watch::Sender<KeepAliveState>,
) {
    let timing = options.timing();
    let mut keeper = Keeper {
        engine: spawn_local(channel, &options.reopen, timing),
        lease_id,
        schedule: Schedule::new(&timing, Instant::now()),
        state: &state,
    };
    let err = keeper.keep().await;
    drop(keeper);
    tracing::warn!(lease = %format_args!("{lease_id:x}"), error = %err, "lease keep-alive ended");
    state.send_modify(|s| {
        s.member = None;
        s.ended = Some(err);
    });
}

struct Keeper<'a> {
    engine: LocalEnds,
    lease_id: i64,
    schedule: Schedule,
    state: &'a watch::Sender<KeepAliveState>,
}

// === impl Keeper ===

impl Keeper<'_> {
    /// Keeps the lease alive until it is lost; returns why.
    async fn keep(&mut self) -> LeaseError {
        loop {
            let now = Instant::now();
            if self.schedule.expire_if_due(now) {
                self.presumed_expired(now);
            }
            let no_stream = self.engine.progress.borrow().open == 0;
            if self.schedule.start_round_if_due(now, no_stream) {
                let request = LeaseKeepAliveRequest { id: self.lease_id };
                if self.engine.requests.send(request).await.is_err() {
                    return self.status(tonic::Status::internal("the keep-alive engine ended"));
                }
            }
            let wake = self.schedule.renewal_wake(now);
            tokio::select! {
                answer = self.engine.answers.recv() => match answer {
                    Some(Answer::Renewed { resp, sent }) => {
                        if let Some(err) = self.renewed(&resp, sent) {
                            return err;
                        }
                    }
                    Some(Answer::Ended(status)) if status.code() == tonic::Code::NotFound => {
                        return LeaseError::Lost { lease_id: self.lease_id };
                    }
                    Some(Answer::Ended(status)) => return self.status(status),
                    None => {
                        return self.status(tonic::Status::internal("the keep-alive engine ended"));
                    }
                },
                Ok(()) = self.engine.progress.changed() => {
                    let progress = self.engine.progress.borrow_and_update().clone();
                    self.progressed(progress);
                }
                () = sleep_until(wake) => {}
            }
        }
    }

    /// A member answered the keep-alive sent at `sent`; `Some` ends the helper.
    fn renewed(&mut self, resp: &LeaseKeepAliveResponse, sent: Instant) -> Option<LeaseError> {
        if resp.ttl <= 0 {
            return Some(LeaseError::Lost {
                lease_id: self.lease_id,
            });
        }
        let ttl = resp.ttl;
        if self.schedule.answered(sent, ttl, Instant::now()) {
            tracing::warn!(
                lease = %format_args!("{:x}", self.lease_id),
                ttl,
                "lease renewed after it was presumed expired: etcd still held it"
            );
        }
        self.state.send_modify(|s| {
            s.renewals = s.renewals.saturating_add(1);
            s.ttl = Some(ttl);
            s.expires = self.schedule.expires().map(Instant::into_std);
            s.presumed_expired = false;
        });
        None
    }

    /// What the engine went through, copied into the state.
    fn progressed(&self, p: Progress) {
        self.state.send_modify(|s| {
            s.member = p.member;
            s.reopens = p.reopens;
            s.hedges = p.hedges;
            s.last_failure = p.last_failure;
        });
    }

    fn status(&self, status: tonic::Status) -> LeaseError {
        LeaseError::Status {
            lease_id: self.lease_id,
            status,
        }
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
            "lease presumed expired: no keep-alive answered within its TTL; still renewing"
        );
    }
}
