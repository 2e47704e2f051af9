//! The caller's side: a `Stream` of events, and the watch's state.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};

use super::{pump, WatchError, WatchOptions};
use crate::balance::Balance;
use crate::member::Member;
use crate::proto::mvccpb::Event;
use crate::stream::resume::{Driven, IntoBoxChannel};
use crate::stream::{Followed, StreamHealth, WatchEngine};

/// What a watch went through so far, and where it stands.
///
/// The fields shared with [`KeepAliveState`](crate::lease::KeepAliveState) have the same
/// names: [`member`](Self::member), [`reopens`](Self::reopens),
/// [`last_failure`](Self::last_failure), [`ended`](Self::ended).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WatchState {
    /// Watches created (the first one included; a re-creation counts once the new member
    /// accepted it).
    pub creations: u64,
    /// Times the watch was re-created after its stream was lost (member failure, eviction,
    /// idle timeout, a token gone stale).
    pub reopens: u64,
    /// Events dropped because their revision had already been delivered.
    pub duplicates_dropped: u64,
    /// The highest revision delivered (or confirmed by a progress notification).
    pub last_revision: i64,
    /// The member serving the current stream, when the channel says
    /// ([`ServedBy`](crate::balance::ServedBy)).
    pub member: Option<Member>,
    /// Why the last re-creation happened.
    pub last_failure: Option<String>,
    /// Set once the watch ended: the error it yielded as its last item.
    pub ended: Option<WatchError>,
}

/// A watch that re-creates itself on another member when its member fails, without gaps or
/// duplicates: from the revision after the last one delivered, on a member it did not just
/// fail on; a quiet member is found out by asking for progress notifications.
///
/// Yields `Ok(event)` in revision order; an `Err` is the last item (and is kept in
/// [`WatchState::ended`]). Dropping it cancels the watch. Implements
/// [`futures_util::Stream`]; [`next`](Self::next) is the same without the trait.
#[derive(Debug)]
pub struct ResumingWatch {
    events: mpsc::Receiver<Result<Event, WatchError>>,
    /// What the façade saw (creations, revisions, the end).
    driven: Driven<WatchState>,
    /// What the engine went through (member, moves, why, duplicates).
    followed: watch::Receiver<Followed>,
}

// === impl ResumingWatch ===

impl ResumingWatch {
    /// Watches through `channel`: a [`Balance`], a `tonic::transport::Channel` or any tower
    /// service a tonic stub can call. Must be called inside a tokio runtime.
    pub fn new(channel: impl IntoBoxChannel, options: WatchOptions) -> Self {
        let (tx, events) = mpsc::channel(options.buffer);
        let channel = channel.into_box_channel();
        let renew = pump::renew_token(channel.clone(), &options);
        let (checker, tuning) = pump::engine_setup(renew.clone(), &options);
        let (engine, followed) = WatchEngine::new(channel, checker, tuning);
        let driven = Driven::spawn(WatchState::default(), |state| {
            pump::run((engine, renew), options, tx, state)
        });
        Self {
            events,
            driven,
            followed,
        }
    }

    /// Watches through `balance`, and re-creates the watch as soon as its health checker
    /// evicts the member serving it.
    pub fn over_balance<M>(balance: &Balance<M>, mut options: WatchOptions) -> Self
    where
        M: crate::balance::MakeMember,
        Balance<M>: IntoBoxChannel,
    {
        options.reopen = options
            .reopen
            .or_health(StreamHealth::new(balance.checker().clone()));
        Self::new(balance.clone(), options)
    }

    /// The next event; `None` after the final error (or if the watch task died).
    pub async fn next(&mut self) -> Option<Result<Event, WatchError>> {
        self.events.recv().await
    }

    /// What the watch went through so far.
    pub fn state(&self) -> WatchState {
        let mut state = self.driven.state();
        let followed = self.followed.borrow();
        state.creations = state.creations.saturating_add(followed.recreated);
        state.reopens = followed.losses;
        state.duplicates_dropped = followed.duplicates;
        state.last_failure.clone_from(&followed.last_loss);
        if state.ended.is_none() {
            state.member.clone_from(&followed.member);
        }
        state
    }

    /// The member serving the watch now, if known.
    pub fn member(&self) -> Option<Member> {
        self.state().member
    }
}

impl futures_util::Stream for ResumingWatch {
    type Item = Result<Event, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}
