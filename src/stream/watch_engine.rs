//! The stream engine's entry for one watch of the tower stack
//! ([`ResumingWatch`](crate::watch::ResumingWatch)).
//!
//! Why: the drop-in's engine (`driver.rs` over the pure `WatchBook`) is the one that
//! knows etcd 3.5/3.6 (progress answers coalesced or dropped, catch-up, a compaction-safe
//! resume revision, token refusals, the caller's decode limit). The tower stack's watch is a
//! thin façade over it rather than a second engine: it speaks to [`WatchEngine`] as
//! etcd-client speaks to the drop-in, a tonic `Watch/Watch` call whose requests are its
//! `WatchRequest`s and whose answers are the engine's `WatchResponse`s, over any channel
//! (a [`Balance`](crate::Balance) names the member serving each stream and honours the
//! engine's choice of member; another channel leaves the choice to itself).

use std::task::{Context, Poll};

use tokio::sync::watch;
use tower::Service;

use super::driver::Streams;
use super::health::StreamHealth;
use super::stats::StreamStats;
use super::tuning::{Followed, Tuning};
use super::watch_book::WatchBook;
use crate::balance::ResponseFuture;
use crate::stream::resume::BoxChannel;

/// A tower service that takes one `Watch/Watch` call and drives it with the engine, publishing
/// what the stream goes through.
#[derive(Debug)]
pub(crate) struct WatchEngine {
    streams: Streams,
    followed: Option<watch::Sender<Followed>>,
}

// === impl WatchEngine ===

impl WatchEngine {
    /// The engine over `channel`, choosing members and following evictions with `checker`,
    /// set by `tuning`; the receiver follows the stream it will drive.
    pub(crate) fn new(
        channel: BoxChannel,
        checker: StreamHealth,
        tuning: Tuning,
    ) -> (Self, watch::Receiver<Followed>) {
        let (tx, rx) = watch::channel(Followed::default());
        let streams = Streams {
            channel,
            checker,
            stats: StreamStats::default(),
            resume: true,
            token: Default::default(),
            orders: Default::default(),
            tuning,
        };
        (
            Self {
                streams,
                followed: Some(tx),
            },
            rx,
        )
    }
}

impl Service<http::Request<tonic::body::Body>> for WatchEngine {
    type Response = http::Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// Drives the call's stream (the first call's followed; any later one, unfollowed).
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.streams
            .start_followed(req, WatchBook::default(), self.followed.take())
    }
}
