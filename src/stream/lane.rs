//! One member stream, run as its own task: the one way both drivers open, feed and close the
//! streams they keep on members.
//!
//! Why one primitive: a watch's stream (`driver.rs`, one at a time) and a keep-alive's hedged
//! streams (`keepalive_driver.rs`, up to three at once) are opened the same way: the caller's
//! metadata (its newest auth token), `hasleader` when asked, the members the balancer is to
//! avoid, on a chosen member even if the health state has it out of rotation, a queue of
//! requests. Each [`Lane`] reports what its member does (opened on a member, a message, the
//! end) with its id through the driver's channel, in that order; a driver drops reports of a
//! lane it closed by their id. Dropping the [`Lane`] closes the stream (its task is aborted).
//!
//! Why a task per stream: a keep-alive hedged runs several streams at once, and a task per
//! stream lets one driver `select!` over one channel of reports whatever the number.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::metadata::MetadataMap;
use tonic::Streaming;

use crate::balance::{AvoidMembers, EvenIfEjected};
use crate::member::Member;
use crate::stream::resume::{served_by, set_metadata, BoxChannel};

/// What a lane reports to its driver, with its id.
#[derive(Debug)]
pub(crate) enum Heard<Resp> {
    /// etcd's headers came: the stream is open on this member (when the channel says).
    Opened(Option<Member>),
    /// A message of the member.
    Message(Resp),
    /// The stream failed (`Some`: before or after it opened) or the member ended it (`None`:
    /// gRPC status OK). Nothing follows.
    Ended(Option<tonic::Status>),
}

/// How a lane calls its member: the gRPC method, and the decoding limit on the member's
/// messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Call {
    /// As tonic's generated client calls `service`/`method` at `path`: tonic's default decoding
    /// limit (4 MiB), the [`tonic::GrpcMethod`] extension, a channel not ready is `Unknown`.
    /// Keep-alive messages are small.
    Stub {
        path: &'static str,
        service: &'static str,
        method: &'static str,
    },
    /// The drop-in's passing-on of `path`: no decoding limit of its own. The caller's
    /// (etcd-client's `max_decoding_message_size`, 4 MiB unless raised) applies when its stub
    /// decodes what the drop-in passes on, and the drop-in cannot see it (it is not sent).
    /// tonic's default 4 MiB here ended a watch whose caller had raised its limit (a
    /// `DeleteRange` of a large prefix with `prev_kv`) with `OutOfRange`. etcd itself sends up
    /// to `i32::MAX` bytes. A channel not ready is `Unavailable`.
    Unlimited { path: &'static str },
}

/// Where and how to open a stream.
#[derive(Debug)]
pub(crate) struct Opening {
    /// The id its reports carry.
    pub(crate) id: u64,
    /// The caller's metadata (its auth token, say); `hasleader` is added when asked.
    pub(crate) metadata: MetadataMap,
    pub(crate) require_leader: bool,
    /// The member chosen for it, if the driver knows the members (the balancer's hint is
    /// [`avoid`](Self::avoid)).
    pub(crate) member: Option<Member>,
    pub(crate) avoid: AvoidMembers,
    /// Open it on [`member`](Self::member) even if the health state has that member out of
    /// rotation (a hedge's last resort, see [`EvenIfEjected`]).
    pub(crate) even_if_ejected: bool,
    /// How many requests may wait for the member to read them (a full queue means it does
    /// not read: [`Lane::send`] then fails); `None`: no bound.
    pub(crate) queue: Option<usize>,
}

/// The driver's handle on one member stream; dropping it closes the stream.
#[derive(Debug)]
pub(crate) struct Lane<Req> {
    id: u64,
    member: Option<Member>,
    /// Whether etcd's headers came.
    open: bool,
    requests: Requests<Req>,
    task: AbortHandle,
}

// === impl Lane ===

impl<Req> Lane<Req>
where
    Req: prost::Message + Send + 'static,
{
    /// Opens a stream through `channel` as `opening` says; its reports go to `reports`.
    pub(crate) fn open<Resp>(
        channel: &BoxChannel,
        call: Call,
        opening: Opening,
        reports: mpsc::Sender<(u64, Heard<Resp>)>,
    ) -> Self
    where
        Resp: prost::Message + Default + Send + 'static,
    {
        let (requests, queued) = match opening.queue {
            Some(n) => {
                let (tx, rx) = mpsc::channel(n.max(1));
                (Requests::Bounded(tx), Queued::Bounded(rx))
            }
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Requests::Unbounded(tx), Queued::Unbounded(rx))
            }
        };
        let mut req =
            tonic::Request::from_parts(opening.metadata, tonic::Extensions::default(), queued);
        set_metadata(&mut req, opening.require_leader, opening.avoid);
        if let (true, Some(member)) = (opening.even_if_ejected, &opening.member) {
            req.extensions_mut().insert(EvenIfEjected(member.clone()));
        }
        let task =
            tokio::spawn(run(channel.clone(), call, req, opening.id, reports)).abort_handle();
        Self {
            id: opening.id,
            member: opening.member,
            open: false,
            requests,
            task,
        }
    }

    /// The stream's id, as its reports carry it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The member the stream is on (as chosen, then as the channel says).
    pub(crate) fn member(&self) -> Option<&Member> {
        self.member.as_ref()
    }

    /// etcd's headers came, from `member` if the channel says.
    pub(crate) fn opened_on(&mut self, member: Option<Member>) {
        self.open = true;
        if member.is_some() {
            self.member = member;
        }
    }

    /// Whether etcd's headers came.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Queues `req` for the member; `false` if the stream can take it no more (closed, or its
    /// bounded queue full).
    pub(crate) fn send(&self, req: Req) -> bool {
        match &self.requests {
            Requests::Bounded(tx) => tx.try_send(req).is_ok(),
            Requests::Unbounded(tx) => tx.send(req).is_ok(),
        }
    }
}

impl<Req> Drop for Lane<Req> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The driver's side of a lane's request queue.
#[derive(Debug)]
enum Requests<T> {
    Bounded(mpsc::Sender<T>),
    Unbounded(mpsc::UnboundedSender<T>),
}

/// The member's side of a lane's request queue, as the `Stream` tonic wants.
///
/// A named type rather than `stream::unfold(..)`: a closure returning an `async` block makes
/// the lane's future fail the `Send` check of `tokio::spawn` (higher-ranked lifetimes).
#[derive(Debug)]
enum Queued<T> {
    Bounded(mpsc::Receiver<T>),
    Unbounded(mpsc::UnboundedReceiver<T>),
}

impl<T> futures_util::Stream for Queued<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &mut *self {
            Queued::Bounded(rx) => rx.poll_recv(cx),
            Queued::Unbounded(rx) => rx.poll_recv(cx),
        }
    }
}

/// The stream's task: opens it, then reports every message until it ends.
async fn run<Req, Resp>(
    channel: BoxChannel,
    call: Call,
    req: tonic::Request<Queued<Req>>,
    id: u64,
    reports: mpsc::Sender<(u64, Heard<Resp>)>,
) where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut inbound = match open(channel, call, req).await {
        Ok(resp) => {
            let _ = reports.send((id, Heard::Opened(served_by(&resp)))).await;
            resp.into_inner()
        }
        Err(status) => {
            let _ = reports.send((id, Heard::Ended(Some(status)))).await;
            return;
        }
    };
    loop {
        let report = match inbound.message().await {
            Ok(Some(resp)) => Heard::Message(resp),
            Ok(None) => Heard::Ended(None),
            Err(status) => Heard::Ended(Some(status)),
        };
        let last = matches!(report, Heard::Ended(_));
        if reports.send((id, report)).await.is_err() || last {
            return;
        }
    }
}

/// Calls the member as `call` says.
async fn open<Req, Resp>(
    channel: BoxChannel,
    call: Call,
    mut req: tonic::Request<Queued<Req>>,
) -> Result<tonic::Response<Streaming<Resp>>, tonic::Status>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = match call {
        Call::Stub {
            path,
            service,
            method,
        } => {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {}", e)))?;
            req.extensions_mut()
                .insert(tonic::GrpcMethod::new(service, method));
            path
        }
        Call::Unlimited { path } => {
            grpc = grpc.max_decoding_message_size(usize::MAX);
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
            path
        }
    };
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.streaming(req, PathAndQuery::from_static(path), codec)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
    use crate::stream::resume::ChannelError;

    /// Counts the calls it holds while it holds them.
    struct Held(Arc<AtomicUsize>);

    impl Drop for Held {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A channel whose calls never answer (`held` counts them) and never read their requests.
    fn silent(held: Arc<AtomicUsize>) -> BoxChannel {
        BoxCloneSyncService::new(tower::service_fn(
            move |_req: http::Request<tonic::body::Body>| {
                held.fetch_add(1, Ordering::SeqCst);
                let guard = Held(held.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<Result<http::Response<tonic::body::Body>, ChannelError>>(
                    )
                    .await
                }
            },
        ))
    }

    /// A channel whose calls are refused with `status`.
    fn refusing(status: tonic::Status) -> BoxChannel {
        BoxCloneSyncService::new(tower::service_fn(
            move |_req: http::Request<tonic::body::Body>| {
                let status = status.clone();
                async move { Ok::<_, ChannelError>(status.into_http()) }
            },
        ))
    }

    fn opening(id: u64, queue: Option<usize>) -> Opening {
        Opening {
            id,
            metadata: MetadataMap::new(),
            require_leader: false,
            member: None,
            avoid: AvoidMembers::default(),
            even_if_ejected: false,
            queue,
        }
    }

    /// Yields until `done` (at most a second).
    async fn until(done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(1), wait)
            .await
            .expect("in time");
    }

    const CALL: Call = Call::Unlimited {
        path: "/etcdserverpb.Watch/Watch",
    };

    #[tokio::test]
    async fn a_bounded_queue_the_member_does_not_read_refuses_more_and_a_dropped_lane_closes() {
        let held = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = mpsc::channel::<(u64, Heard<WatchResponse>)>(4);
        let lane = Lane::open(&silent(held.clone()), CALL, opening(7, Some(2)), tx);
        assert!(lane.send(WatchRequest::default()));
        assert!(lane.send(WatchRequest::default()));
        assert!(
            !lane.send(WatchRequest::default()),
            "full: the member does not read"
        );
        until(|| held.load(Ordering::SeqCst) == 1).await;
        drop(lane);
        until(|| held.load(Ordering::SeqCst) == 0).await;
    }

    #[tokio::test]
    async fn an_unbounded_queue_takes_everything_while_the_stream_lives() {
        let held = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = mpsc::channel::<(u64, Heard<WatchResponse>)>(4);
        let lane = Lane::open(&silent(held), CALL, opening(1, None), tx);
        assert!((0..1000).all(|_| lane.send(WatchRequest::default())));
        assert!(!lane.is_open());
    }

    #[tokio::test]
    async fn a_refused_opening_is_reported_with_the_lane_s_id() {
        let (tx, mut rx) = mpsc::channel::<(u64, Heard<WatchResponse>)>(4);
        let channel = refusing(tonic::Status::unavailable("etcdserver: no leader"));
        let _lane: Lane<WatchRequest> = Lane::open(&channel, CALL, opening(42, None), tx);
        match rx.recv().await {
            Some((42, Heard::Ended(Some(status)))) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert_eq!(status.message(), "etcdserver: no leader");
            }
            other => panic!("{other:?}"),
        }
    }
}
