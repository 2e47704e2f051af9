//! The loop behind a [`ResumingWatch`](super::ResumingWatch): create, follow, re-create.

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::cursor::Cursor;
use super::idle::{Due, Idle};
use super::{WatchError, WatchOptions, WatchState};
use crate::balance::AvoidMembers;
use crate::event::HealthEvent;
use crate::member::Member;
use crate::metrics::StreamMeter;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    RangeRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use crate::proto::mvccpb::Event;
use crate::resume::{
    classify, evicted, forget_past, served_by, stream_request, BoxChannel, Lost, Reopen,
};

type Events = mpsc::Sender<Result<Event, WatchError>>;
type State = watch::Sender<WatchState>;

/// How many times in a row a watch may be refused for a stale token before it gives up: more
/// means nothing in the stack renews tokens.
const MAX_STALE_TOKENS: u32 = 3;

/// How one stream ended.
enum End {
    /// The member failed (or went quiet, or was evicted): re-create elsewhere.
    Lost(Lost),
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
    state: &'a State,
    reopen: &'a mut Reopen,
    /// Its metrics, and this stream's number among the watch's streams.
    meter: &'a mut StreamMeter,
    number: u64,
}

pub(super) async fn run(channel: BoxChannel, options: WatchOptions, events: Events, state: State) {
    let mut kv = KvClient::new(channel.clone());
    let mut client = WatchClient::new(channel);
    let mut stale_tokens = 0;
    let mut cursor = Cursor::new(options.start_revision);
    let mut reopen = Reopen::new(&options.reopen);
    let mut health = options.reopen.checker.as_ref().map(|c| c.subscribe());
    let mut meter = StreamMeter::watch();
    let mut number = 0;
    loop {
        forget_past(&mut health);
        let avoid = reopen.avoid(Instant::now());
        number += 1;
        let attempt = Attempt {
            options: &options,
            cursor: &mut cursor,
            events: &events,
            state: &state,
            reopen: &mut reopen,
            meter: &mut meter,
            number,
        };
        let end = attempt.run(&mut client, avoid, &mut health).await;
        meter.serving(None);
        match end {
            End::StaleToken { reason } => {
                stale_tokens += 1;
                // Not the member's fault: nobody avoided, no back-off.
                let lost = Lost::new(None, reason.clone());
                let reopens = reopen.lost(&lost, false, Instant::now());
                lost_stream(&state, reopens, reason.clone());
                if stale_tokens > MAX_STALE_TOKENS {
                    end_with(&state, &events, WatchError::Canceled { reason }).await;
                    return;
                }
                tracing::info!(
                    %reason,
                    resume_revision = cursor.next,
                    "watch refused for a stale token; renewing it, then re-creating the watch"
                );
                if let Err(err) = renew_token(&mut kv, &options).await {
                    end_with(&state, &events, err).await;
                    return;
                }
            }
            End::Lost(lost) => {
                stale_tokens = 0;
                let reopens = reopen.lost(&lost, true, Instant::now());
                let delay = reopen.delay();
                lost_stream(&state, reopens, lost.reason.clone());
                tracing::warn!(
                    member = lost.member.as_ref().map(tracing::field::display),
                    reason = %lost.reason,
                    resume_revision = cursor.next,
                    reopens,
                    ?delay,
                    "watch lost its member; re-creating it"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = events.closed() => return,
                }
            }
            End::Fatal(err) => {
                end_with(&state, &events, err).await;
                return;
            }
            End::Closed => return,
        }
    }
}

/// Publishes the loss of a stream.
fn lost_stream(state: &State, reopens: u64, reason: String) {
    state.send_modify(|s| {
        s.reopens = reopens;
        s.member = None;
        s.last_failure = Some(reason);
    });
}

/// Ends the watch with `err`: its last item, and its state's `ended`.
async fn end_with(state: &State, events: &Events, err: WatchError) {
    tracing::warn!(error = %err, "watch ended");
    state.send_modify(|s| {
        s.member = None;
        s.ended = Some(err.clone());
    });
    let _ = events.send(Err(err)).await;
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

fn request(union: RequestUnion) -> WatchRequest {
    WatchRequest {
        request_union: Some(union),
    }
}

// === impl Attempt ===

impl Attempt<'_> {
    async fn run(
        self,
        client: &mut WatchClient<BoxChannel>,
        avoid: AvoidMembers,
        health: &mut Option<broadcast::Receiver<HealthEvent>>,
    ) -> End {
        let options = self.options;
        let idle = options.idle_timeout;
        let create = request(RequestUnion::CreateRequest(WatchCreateRequest {
            key: options.key.clone(),
            range_end: options.range_end.clone(),
            start_revision: self.cursor.next,
            progress_notify: true,
            prev_kv: options.prev_kv,
            ..Default::default()
        }));
        let (requests, req) = stream_request(create, options.reopen.require_leader, avoid);

        // etcd sends the response headers with the first message (the "created" answer), so
        // a stuck member is caught here by the same idle timeout.
        let opened = tokio::select! {
            r = timeout(idle, client.watch(req)) => r,
            _ = self.events.closed() => return End::Closed,
        };
        let resp = match opened {
            Err(_) => {
                return End::Lost(Lost::new(
                    None,
                    format!("no answer to the watch request within {idle:?}"),
                ))
            }
            Ok(Err(status)) => return status_end(status, None),
            Ok(Ok(resp)) => resp,
        };
        let member = served_by(&resp);
        self.meter.serving(Some(self.number));
        self.state.send_modify(|s| {
            s.member = member.clone();
        });
        let mut inbound = resp.into_inner();
        self.follow(&mut inbound, &requests, member, health).await
    }

    async fn follow(
        mut self,
        inbound: &mut tonic::Streaming<WatchResponse>,
        requests: &mpsc::Sender<WatchRequest>,
        member: Option<Member>,
        health: &mut Option<broadcast::Receiver<HealthEvent>>,
    ) -> End {
        let mut idle = Idle::new(
            self.options.idle_timeout,
            Instant::now(),
            crate::timing::unit(),
        );
        let mut watch_id: Option<i64> = None;
        loop {
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
                _ = evicted(health, member.as_ref()) => return End::Lost(Lost::evicted(member)),
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Some(end) = self.handle(resp, &member, &mut watch_id).await {
                            return end;
                        }
                        idle.heard(Instant::now(), crate::timing::unit());
                    }
                    Ok(None) => return End::Lost(Lost::new(member, "the watch stream ended")),
                    Err(status) => return status_end(status, member),
                },
                _ = sleep_until(idle.wake()) => match idle.due(Instant::now()) {
                    Due::Nothing => {}
                    Due::AskProgress => {
                        let _ = requests.try_send(request(RequestUnion::ProgressRequest(
                            WatchProgressRequest {},
                        )));
                    }
                    Due::GiveUp => {
                        let reason = format!(
                            "no event or progress notification within {:?}",
                            idle.timeout()
                        );
                        return End::Lost(Lost::new(member, reason));
                    }
                },
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
                return Some(End::Lost(Lost::new(
                    member.clone(),
                    format!("watch canceled: {reason}"),
                )));
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
            self.reopen.healthy();
            let mut creations = 0;
            self.state.send_modify(|s| {
                s.creations = s.creations.saturating_add(1);
                creations = s.creations;
            });
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
                let last = self.cursor.last;
                self.state.send_modify(|s| s.last_revision = last);
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
        let last = self.cursor.last;
        self.state.send_modify(|s| {
            s.last_revision = last;
            s.duplicates_dropped = s.duplicates_dropped.saturating_add(dropped);
        });
        None
    }
}

/// A stream that failed with `status`: lost on its member, or the watch's end.
fn status_end(status: tonic::Status, member: Option<Member>) -> End {
    match classify(status, member) {
        Ok(lost) => End::Lost(lost),
        Err(status) => End::Fatal(WatchError::Status(status)),
    }
}
