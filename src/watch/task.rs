//! The loop behind a [`ResumingWatch`](super::ResumingWatch): create, follow, re-create.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::cursor::Cursor;
use super::{WatchError, WatchOptions, WatchStats};
use crate::balance::ServedBy;
use crate::checker::Member;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    RangeRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use crate::proto::mvccpb::Event;
use crate::resume::{
    evicted, forget_past, is_member_failure, set_stream_metadata, AvoidList, Backoff, BoxChannel,
    Outbound,
};

type Events = mpsc::Sender<Result<Event, WatchError>>;

/// How many times in a row a watch may be refused for a stale token before it gives up: more
/// means nothing in the stack renews tokens.
const MAX_STALE_TOKENS: u32 = 3;

/// How one stream ended.
enum End {
    /// The member failed (or went quiet): re-create elsewhere.
    Member {
        member: Option<Member>,
        reason: String,
    },
    /// etcd refused to create the watch for a stale token: renew it, then re-create.
    StaleToken { reason: String },
    /// Final: report and stop.
    Fatal(WatchError),
    /// The caller dropped the watch.
    Closed,
}

/// One watch stream on one member.
struct Attempt<'a> {
    options: &'a WatchOptions,
    cursor: &'a mut Cursor,
    events: &'a Events,
    stats: &'a Mutex<WatchStats>,
    backoff: &'a mut Backoff,
}

pub(super) async fn run(
    channel: BoxChannel,
    options: WatchOptions,
    events: Events,
    stats: Arc<Mutex<WatchStats>>,
) {
    let mut kv = KvClient::new(channel.clone());
    let mut client = WatchClient::new(channel);
    let mut stale_tokens = 0;
    let mut cursor = Cursor::new(options.start_revision);
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut avoid = AvoidList::new(options.avoid_for);
    let mut health = options.checker.as_ref().map(|c| c.subscribe());
    loop {
        let attempt = Attempt {
            options: &options,
            cursor: &mut cursor,
            events: &events,
            stats: &stats,
            backoff: &mut backoff,
        };
        forget_past(&mut health);
        let end = attempt.run(&mut client, avoid.hint(), &mut health).await;
        match end {
            End::StaleToken { reason } => {
                stale_tokens += 1;
                {
                    let mut s = lock(&stats);
                    s.recreations += 1;
                    s.serving = None;
                    s.last_failure = Some(reason.clone());
                }
                if stale_tokens > MAX_STALE_TOKENS {
                    let _ = events.send(Err(WatchError::Canceled { reason })).await;
                    return;
                }
                tracing::info!(
                    %reason,
                    resume_revision = cursor.next,
                    "watch refused for a stale token; renewing it, then re-creating the watch"
                );
                if let Err(err) = renew_token(&mut kv, &options).await {
                    tracing::warn!(error = %err, "watch ended");
                    let _ = events.send(Err(err)).await;
                    return;
                }
            }
            End::Member { member, reason } => {
                stale_tokens = 0;
                let delay = backoff.next_delay();
                let recreations = {
                    let mut s = lock(&stats);
                    s.recreations = s.recreations.saturating_add(1);
                    s.serving = None;
                    s.last_failure = Some(reason.clone());
                    s.recreations
                };
                tracing::warn!(
                    member = member.as_ref().map(tracing::field::display),
                    %reason,
                    resume_revision = cursor.next,
                    recreations,
                    ?delay,
                    "watch lost its member; re-creating it"
                );
                if let Some(m) = member {
                    avoid.add(m);
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = events.closed() => return,
                }
            }
            End::Fatal(err) => {
                tracing::warn!(error = %err, "watch ended");
                let _ = events.send(Err(err)).await;
                return;
            }
            End::Closed => return,
        }
    }
}

/// Makes whatever authenticates requests on the channel (the [`Auth`](crate::auth::Auth)
/// layer, or a stack of the caller's own) renew its token: a watch refused for a stale token
/// says nothing that layer can see, but a unary request refused the same way does. A cheap
/// read of the watched key, which the watch's user may read.
async fn renew_token(
    kv: &mut KvClient<BoxChannel>,
    options: &WatchOptions,
) -> Result<(), WatchError> {
    let mut req = tonic::Request::new(RangeRequest {
        key: options.key.clone(),
        limit: 1,
        keys_only: true,
        serializable: true,
        ..Default::default()
    });
    req.set_timeout(options.idle_timeout);
    match kv.range(req).await {
        Err(status) if crate::etcd::is_stale_token(status.code(), status.message()) => {
            // Nothing on this channel renews tokens: re-creating would be refused again.
            Err(WatchError::Status(status))
        }
        // Any other outcome: re-create (a member failure is the next attempt's business).
        _ => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn request(union: RequestUnion) -> WatchRequest {
    WatchRequest {
        request_union: Some(union),
    }
}

impl Attempt<'_> {
    async fn run(
        self,
        client: &mut WatchClient<BoxChannel>,
        avoid: crate::balance::AvoidMembers,
        health: &mut Option<tokio::sync::broadcast::Receiver<crate::checker::HealthEvent>>,
    ) -> End {
        let options = self.options;
        let idle = options.idle_timeout;
        let (requests, outbound) = mpsc::channel::<WatchRequest>(4);
        let create = request(RequestUnion::CreateRequest(WatchCreateRequest {
            key: options.key.clone(),
            range_end: options.range_end.clone(),
            start_revision: self.cursor.next,
            progress_notify: true,
            prev_kv: options.prev_kv,
            ..Default::default()
        }));
        let _ = requests.try_send(create);
        let mut req = tonic::Request::new(Outbound(outbound));
        set_stream_metadata(&mut req, options.require_leader, avoid);

        // etcd sends the response headers with the first message (the "created" answer), so
        // a stuck member is caught here by the same idle timeout.
        let opened = tokio::select! {
            r = timeout(idle, client.watch(req)) => r,
            _ = self.events.closed() => return End::Closed,
        };
        let resp = match opened {
            Err(_) => {
                return End::Member {
                    member: None,
                    reason: format!("no answer to the watch request within {idle:?}"),
                }
            }
            Ok(Err(status)) => return self.status_end(None, status),
            Ok(Ok(resp)) => resp,
        };
        let member = resp.extensions().get::<ServedBy>().map(|s| s.0.clone());
        lock(self.stats).serving = member.clone();
        let mut inbound = resp.into_inner();
        self.follow(&mut inbound, &requests, member, health).await
    }

    async fn follow(
        mut self,
        inbound: &mut tonic::Streaming<WatchResponse>,
        requests: &mpsc::Sender<WatchRequest>,
        member: Option<Member>,
        health: &mut Option<tokio::sync::broadcast::Receiver<crate::checker::HealthEvent>>,
    ) -> End {
        let idle = self.options.idle_timeout;
        let mut last_seen = Instant::now();
        let mut progress_asked = false;
        let mut watch_id: Option<i64> = None;
        loop {
            let ask_at = last_seen + idle / 2;
            let give_up_at = last_seen + idle;
            tokio::select! {
                biased;
                _ = self.events.closed() => {
                    if let Some(id) = watch_id {
                        let _ = requests.try_send(request(RequestUnion::CancelRequest(
                            WatchCancelRequest { watch_id: id },
                        )));
                    }
                    return End::Closed;
                }
                _ = evicted(health, member.as_ref()) => {
                    return End::Member { member, reason: "member evicted by the health checker".into() };
                }
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Some(end) = self.handle(resp, &member, &mut watch_id).await {
                            return end;
                        }
                        // Counted from after delivery: a slow caller is not a stuck member.
                        last_seen = Instant::now();
                        progress_asked = false;
                    }
                    Ok(None) => {
                        return End::Member { member, reason: "the watch stream ended".into() };
                    }
                    Err(status) => return self.status_end(member, status),
                },
                _ = sleep_until(ask_at), if !progress_asked => {
                    progress_asked = true;
                    let _ = requests.try_send(request(RequestUnion::ProgressRequest(
                        WatchProgressRequest {},
                    )));
                }
                _ = sleep_until(give_up_at) => {
                    return End::Member {
                        member,
                        reason: format!("no event or progress notification within {idle:?}"),
                    };
                }
            }
        }
    }

    /// Handles one response; `Some` ends the stream.
    async fn handle(
        &mut self,
        resp: WatchResponse,
        member: &Option<Member>,
        watch_id: &mut Option<i64>,
    ) -> Option<End> {
        let header_revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.compact_revision != 0 {
            return Some(End::Fatal(WatchError::Compacted {
                requested: self.cursor.next,
                compacted: resp.compact_revision,
            }));
        }
        if resp.canceled {
            let reason = resp.cancel_reason;
            if crate::etcd::says_leader_lost(&reason) {
                return Some(End::Member {
                    member: member.clone(),
                    reason: format!("watch canceled: {reason}"),
                });
            }
            if crate::etcd::is_stale_token_cancel(&reason) {
                return Some(End::StaleToken {
                    reason: format!("watch canceled: {reason}"),
                });
            }
            return Some(End::Fatal(WatchError::Canceled { reason }));
        }
        if resp.created {
            *watch_id = Some(resp.watch_id);
            self.cursor.created(header_revision);
            self.backoff.reset();
            let creations = {
                let mut s = lock(self.stats);
                s.creations = s.creations.saturating_add(1);
                s.creations
            };
            if creations > 1 {
                tracing::info!(
                    member = member.as_ref().map(tracing::field::display),
                    from_revision = self.cursor.next,
                    "watch re-created"
                );
            }
        }
        if resp.events.is_empty() {
            // A progress notification for our watch (sent in order with its events) says
            // nothing up to its revision is left. The answer to a progress *request* carries
            // watch id -1 and, in etcd 3.4, may run ahead of events still queued: it only
            // proves the member is alive.
            if !resp.created && Some(resp.watch_id) == *watch_id && header_revision > 0 {
                self.cursor.delivered(header_revision);
                lock(self.stats).last_revision = self.cursor.last;
            }
            return None;
        }
        let mut newest = self.cursor.last;
        let mut dropped = 0;
        for event in resp.events {
            let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            if !self.cursor.is_new(rev) {
                dropped += 1;
                continue;
            }
            newest = newest.max(rev);
            if self.events.send(Ok(event)).await.is_err() {
                return Some(End::Closed);
            }
        }
        self.cursor.delivered(newest);
        let mut s = lock(self.stats);
        s.last_revision = self.cursor.last;
        s.duplicates_dropped = s.duplicates_dropped.saturating_add(dropped);
        None
    }

    fn status_end(&self, member: Option<Member>, status: tonic::Status) -> End {
        if is_member_failure(&status) {
            End::Member {
                member,
                reason: format!("{:?}: {}", status.code(), status.message()),
            }
        } else {
            End::Fatal(WatchError::Status(status))
        }
    }
}
