//! The façade's task: one `Watch/Watch` call through the stream engine, its answers turned
//! into the caller's items.
//!
//! Why so little here: moving the watch between members, asking a quiet member for progress,
//! resuming without gap or duplicate and waiting out token refusals are the engine's
//! (`src/stream/driver.rs` over the pure `WatchBook`), shared with etcd-client's watches
//! over the drop-in. What is the façade's own is the options' mapping onto the engine's
//! settings ([`engine_setup`]), the translation of answers (`answer.rs`) and the renewal of a
//! token the stack below adds ([`renew_token`]).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::answer::{Position, Verdict};
use super::{WatchError, WatchOptions, WatchState};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};
use crate::stream::resume::{BoxChannel, Outbound};
use crate::stream::{Renew, StreamHealth, Tuning, WatchEngine};

type Events = mpsc::Sender<Result<crate::proto::mvccpb::Event, WatchError>>;
type State = watch::Sender<WatchState>;

/// How many times in a row the watch's first creation may be refused for a stale token
/// before it gives up: more means nothing in the stack renews tokens. (Re-creations on
/// another member are the engine's, within its own bound.)
const MAX_STALE_TOKENS: u32 = 3;

/// The health state the engine chooses members with, and its settings, from `options`.
///
/// - the stream timeout is half the idle timeout: the engine asks a member quiet for about
///   that long for progress (jittered up to a fifth earlier), asks again a quarter of the idle
///   timeout later, and moves the watch when nothing was heard for the stream timeout after
///   its first request: about the whole idle timeout of silence, as before;
/// - back-off, avoidance and `hasleader` as the options say;
/// - without a health checker in the options, a private one with no members: the engine then
///   leaves the choice of member to the channel (and its avoid hints to a
///   [`Balance`](crate::Balance)), follows no evictions, and bounds the first opening by
///   `retry.budget` alone.
pub(super) fn engine_setup(renew: Renew, options: &WatchOptions) -> (StreamHealth, Tuning) {
    let tuning = Tuning {
        timeout: Some((options.idle_timeout / 2).max(Duration::from_millis(5))),
        reopen: options.reopen.clone(),
        require_leader: options.reopen.require_leader,
        first_open_failures: options.reopen.checker.is_none().then_some(usize::MAX),
        renew: Some(renew),
    };
    let checker = options
        .reopen
        .checker
        .clone()
        .unwrap_or_else(StreamHealth::memberless);
    (checker, tuning)
}

/// Makes whatever authenticates requests on the channel (the [`Auth`](crate::auth::Auth)
/// layer, or a stack of the caller's own) renew its token: a watch refused for a stale token
/// says nothing that layer can see, but a unary request refused the same way does. A cheap
/// read of the watched key, which the watch's user may read; refused for a stale token in
/// turn, nothing on the channel renews tokens: that refusal ends the watch.
pub(super) fn renew_token(channel: BoxChannel, options: &WatchOptions) -> Renew {
    let key = options.key.clone();
    let bound = options.idle_timeout;
    std::sync::Arc::new(move || {
        let mut kv = KvClient::new(channel.clone());
        let mut req = tonic::Request::new(RangeRequest {
            key: key.clone(),
            limit: 1,
            keys_only: true,
            serializable: true,
            ..Default::default()
        });
        req.set_timeout(bound);
        Box::pin(async move {
            match kv.range(req).await {
                Err(status) if crate::etcd::is_stale_token(status.code(), status.message()) => {
                    Err(status)
                }
                _ => Ok(()),
            }
        })
    })
}

/// The watch's creation, as the caller's options say.
fn create(options: &WatchOptions) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: options.key.clone(),
            range_end: options.range_end.clone(),
            start_revision: options.start_revision,
            progress_notify: true,
            prev_kv: options.prev_kv,
            ..Default::default()
        })),
    }
}

/// Opens the watch through `engine` and hands its events to `events` until the watch ends or
/// the caller leaves; `renew` renews the stack's token when the first creation is refused for
/// it.
pub(super) async fn run(
    (engine, renew): (WatchEngine, Renew),
    options: WatchOptions,
    events: Events,
    state: State,
) {
    let (requests, outbound) = mpsc::channel(1);
    let _ = requests.try_send(create(&options));
    // No limit of the façade's own: etcd sends up to `i32::MAX` bytes.
    let mut client = WatchClient::new(engine).max_decoding_message_size(usize::MAX);
    let opened = tokio::select! {
        r = client.watch(Outbound(outbound)) => r,
        _ = events.closed() => return,
    };
    let mut inbound = match opened {
        Ok(resp) => resp.into_inner(),
        Err(status) => return end_with(&state, &events, WatchError::Status(status)).await,
    };
    let mut position = Position::new(options.start_revision);
    let mut stale_tokens = 0;
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = events.closed() => return,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => return,
            Err(status) => return end_with(&state, &events, WatchError::Status(status)).await,
        };
        match position.judge(resp) {
            Verdict::End(WatchError::Canceled { reason })
                if crate::etcd::is_stale_token_cancel(&reason)
                    && !position.created()
                    && stale_tokens < MAX_STALE_TOKENS =>
            {
                stale_tokens += 1;
                tracing::info!(%reason, "watch refused for a stale token; renewing it, then creating the watch again");
                if let Err(status) = renew().await {
                    return end_with(&state, &events, WatchError::Status(status)).await;
                }
                let _ = requests.send(create(&options)).await;
            }
            Verdict::End(err) => return end_with(&state, &events, err).await,
            Verdict::Events(list) => {
                state.send_modify(|s| {
                    s.creations = u64::from(position.created());
                    s.last_revision = position.last();
                });
                for event in list {
                    if events.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
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
