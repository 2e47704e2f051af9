//! The loop behind a [`KeepAlive`](super::KeepAlive): open, renew every interval, re-open.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::{KeepAliveOptions, KeepAliveState, LeaseError};
use crate::balance::{AvoidMembers, ServedBy};
use crate::checker::{HealthEvent, Member};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::resume::{
    evicted, forget_past, is_member_failure, set_stream_metadata, AvoidList, Backoff, BoxChannel,
    Outbound,
};

/// Until the first answer tells the TTL: renew this often.
const INITIAL_INTERVAL: Duration = Duration::from_millis(500);
/// Never renew more often than this, whatever the TTL.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How one stream ended.
enum End {
    /// The member failed or went quiet: re-open elsewhere.
    Member {
        member: Option<Member>,
        reason: String,
    },
    /// The lease is gone, or keep-alives are refused for good.
    Fatal(LeaseError),
}

struct Ctx<'a> {
    lease_id: i64,
    options: &'a KeepAliveOptions,
    state: &'a watch::Sender<KeepAliveState>,
    backoff: &'a mut Backoff,
    /// The interval in force (TTL/3 once known).
    interval: Duration,
}

pub(super) async fn run(
    channel: BoxChannel,
    lease_id: i64,
    options: KeepAliveOptions,
    state: watch::Sender<KeepAliveState>,
) {
    let mut client = LeaseClient::new(channel);
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut avoid = AvoidList::new(options.avoid_for);
    let mut health = options.checker.as_ref().map(|c| c.subscribe());
    let mut ctx = Ctx {
        lease_id,
        interval: options.interval.unwrap_or(INITIAL_INTERVAL),
        options: &options,
        state: &state,
        backoff: &mut backoff,
    };
    loop {
        forget_past(&mut health);
        match ctx.attempt(&mut client, avoid.hint(), &mut health).await {
            End::Member { member, reason } => {
                // The lease expires on etcd's clock, not ours: never wait longer than half an
                // interval (TTL/6) between re-opens, whatever the backoff has grown to.
                let delay = ctx.backoff.next_delay().min(ctx.interval / 2);
                let mut reopens = 0;
                state.send_modify(|s| {
                    s.reopens = s.reopens.saturating_add(1);
                    s.member = None;
                    s.last_failure = Some(reason.clone());
                    reopens = s.reopens;
                });
                tracing::warn!(
                    lease = %format_args!("{lease_id:x}"),
                    member = member.as_ref().map(tracing::field::display),
                    %reason,
                    reopens,
                    ?delay,
                    "lease keep-alive lost its member; re-opening the stream"
                );
                if let Some(m) = member {
                    avoid.add(m);
                }
                tokio::time::sleep(delay).await;
            }
            End::Fatal(err) => {
                tracing::warn!(lease = %format_args!("{lease_id:x}"), error = %err, "lease keep-alive ended");
                state.send_modify(|s| s.lost = Some(err));
                return;
            }
        }
    }
}

impl Ctx<'_> {
    fn response_timeout(&self) -> Duration {
        self.options.response_timeout.unwrap_or(self.interval)
    }

    async fn attempt(
        &mut self,
        client: &mut LeaseClient<BoxChannel>,
        avoid: AvoidMembers,
        health: &mut Option<broadcast::Receiver<HealthEvent>>,
    ) -> End {
        let ping = LeaseKeepAliveRequest { id: self.lease_id };
        let (requests, outbound) = mpsc::channel::<LeaseKeepAliveRequest>(2);
        let _ = requests.try_send(ping);
        let mut req = tonic::Request::new(Outbound(outbound));
        set_stream_metadata(&mut req, self.options.require_leader, avoid);

        // The first keep-alive is already on its way; etcd's headers come with its answer.
        let wait = self.response_timeout();
        let mut awaiting = Some(Instant::now() + wait);
        let resp = match timeout(wait, client.lease_keep_alive(req)).await {
            Err(_) => {
                return End::Member {
                    member: None,
                    reason: format!("no answer to the keep-alive within {wait:?}"),
                }
            }
            Ok(Err(status)) => return self.status_end(None, status),
            Ok(Ok(resp)) => resp,
        };
        let member = resp.extensions().get::<ServedBy>().map(|s| s.0.clone());
        self.state.send_modify(|s| s.member = member.clone());
        let mut inbound = resp.into_inner();
        let mut next_send = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = evicted(health, member.as_ref()) => {
                    return End::Member { member, reason: "member evicted by the health checker".into() };
                }
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Some(end) = self.answered(&resp) {
                            return end;
                        }
                        awaiting = None;
                        next_send = Instant::now() + self.interval;
                    }
                    Ok(None) => {
                        return End::Member { member, reason: "the keep-alive stream ended".into() };
                    }
                    Err(status) => return self.status_end(member, status),
                },
                _ = sleep_until(awaiting.unwrap_or_else(Instant::now)), if awaiting.is_some() => {
                    return End::Member {
                        member,
                        reason: format!("no answer to the keep-alive within {:?}", self.response_timeout()),
                    };
                }
                _ = sleep_until(next_send), if awaiting.is_none() => {
                    if requests.send(ping).await.is_err() {
                        return End::Member { member, reason: "the keep-alive stream closed".into() };
                    }
                    awaiting = Some(Instant::now() + self.response_timeout());
                }
            }
        }
    }

    /// Handles one answer; `Some` ends the stream.
    fn answered(&mut self, resp: &LeaseKeepAliveResponse) -> Option<End> {
        if resp.ttl <= 0 {
            return Some(End::Fatal(LeaseError::Lost {
                lease_id: self.lease_id,
            }));
        }
        if self.options.interval.is_none() {
            let third = Duration::from_millis(resp.ttl as u64 * 1000 / 3);
            self.interval = third.max(MIN_INTERVAL);
        }
        self.backoff.reset();
        self.state.send_modify(|s| {
            s.renewals = s.renewals.saturating_add(1);
            s.ttl = Some(resp.ttl);
        });
        None
    }

    fn status_end(&self, member: Option<Member>, status: tonic::Status) -> End {
        if is_member_failure(&status) {
            End::Member {
                member,
                reason: format!("{:?}: {}", status.code(), status.message()),
            }
        } else if status.code() == tonic::Code::NotFound {
            End::Fatal(LeaseError::Lost {
                lease_id: self.lease_id,
            })
        } else {
            End::Fatal(LeaseError::Status {
                lease_id: self.lease_id,
                status,
            })
        }
    }
}
