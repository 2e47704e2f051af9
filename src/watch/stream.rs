//! The caller's side: a `Stream` of events.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{task, WatchError, WatchOptions};
use crate::checker::Member;
use crate::proto::mvccpb::Event;
use crate::resume::IntoBoxChannel;
use crate::Balance;

/// What a watch went through so far.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WatchStats {
    /// Watches created (the first one included).
    pub creations: u64,
    /// Re-creations after a failure (member failure, eviction, idle timeout).
    pub recreations: u64,
    /// Events dropped because their revision had already been delivered.
    pub duplicates_dropped: u64,
    /// The highest revision delivered (or confirmed by a progress notification).
    pub last_revision: i64,
    /// The member serving the current stream, when the channel says
    /// ([`ServedBy`](crate::balance::ServedBy)).
    pub serving: Option<Member>,
    /// Why the last re-creation happened.
    pub last_failure: Option<String>,
}

/// A watch that re-creates itself on another member when its member fails, without gaps or
/// duplicates (see the [module docs](super)).
///
/// Yields `Ok(event)` in revision order; an `Err` is the last item. Dropping it cancels the
/// watch. Implements [`futures_util::Stream`]; [`next`](Self::next) is the same without the
/// trait.
#[derive(Debug)]
pub struct ResumingWatch {
    events: mpsc::Receiver<Result<Event, WatchError>>,
    stats: Arc<Mutex<WatchStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl ResumingWatch {
    /// Watches through `channel`: a [`Balance`], a `tonic::transport::Channel` or any tower
    /// service a tonic stub can call. Must be called inside a tokio runtime.
    pub fn new(channel: impl IntoBoxChannel, options: WatchOptions) -> Self {
        let stats = Arc::new(Mutex::new(WatchStats::default()));
        let (tx, events) = mpsc::channel(options.buffer);
        let task = tokio::spawn(task::run(
            channel.into_box_channel(),
            options,
            tx,
            stats.clone(),
        ));
        Self {
            events,
            stats,
            task,
        }
    }

    /// Watches through `balance`, and re-creates the watch as soon as its health checker
    /// evicts the member serving it.
    pub fn over_balance<M>(balance: &Balance<M>, options: WatchOptions) -> Self
    where
        M: crate::MakeMember,
        Balance<M>: IntoBoxChannel,
    {
        let options = match options.checker {
            Some(_) => options,
            None => options.health_checker(balance.checker().clone()),
        };
        Self::new(balance.clone(), options)
    }

    /// The next event; `None` after the final error (or if the watch task died).
    pub async fn next(&mut self) -> Option<Result<Event, WatchError>> {
        self.events.recv().await
    }

    /// What the watch went through so far.
    pub fn stats(&self) -> WatchStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The member serving the watch now, if known.
    pub fn serving_member(&self) -> Option<Member> {
        self.stats().serving
    }
}

impl futures_util::Stream for ResumingWatch {
    type Item = Result<Event, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for ResumingWatch {
    /// Stops the task; dropping its stream resets the gRPC stream, which cancels the watch
    /// on the member.
    fn drop(&mut self) {
        self.task.abort();
    }
}
