//! What the drop-in's resumed streams did, for users to read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::member::Member;

/// The kind of a resumed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// `Watch/Watch`.
    Watch,
    /// `Lease/LeaseKeepAlive`.
    KeepAlive,
}

impl StreamKind {
    /// Its name in metric labels.
    fn label(self) -> &'static str {
        match self {
            StreamKind::Watch => "watch",
            StreamKind::KeepAlive => "keep_alive",
        }
    }
}

/// Counters of the drop-in's watch and keep-alive streams since the channel was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Watch streams the caller opened.
    pub watch_streams: u64,
    /// Times a watch stream moved to another member.
    pub watch_resumptions: u64,
    /// Watches re-created on the new member (one stream may carry several).
    pub watches_recreated: u64,
    /// Events dropped because the caller had them already (a re-created watch that overlapped).
    pub duplicate_events_dropped: u64,
    /// Keep-alive streams the caller opened.
    pub keep_alive_streams: u64,
    /// Times a keep-alive stream moved to another member after its member failed or was
    /// slow (another member answered a keep-alive first).
    pub keep_alive_resumptions: u64,
    /// Keep-alive requests sent again on another member (they had no answer yet): on a
    /// stream opened to hedge a slow one, or to replace a lost one.
    pub keep_alives_resent: u64,
    /// Times an idle keep-alive stream moved to the leader the health state found.
    pub keep_alive_moves_to_leader: u64,
    /// Keep-alive streams opened on another member while one was waiting for an answer (at
    /// most 3 streams at once per caller stream, the next one a delay after the last).
    pub keep_alive_hedges: u64,
    /// Answers to a keep-alive that another member had answered already, not passed on.
    pub duplicate_keep_alive_answers: u64,
    /// Times a stream opened again on another member was refused for its auth token (it then
    /// waits for etcd-client's next token and is opened again with it).
    pub token_refusals: u64,
}

/// One open stream and the member that carries it.
#[derive(Clone, Debug)]
pub struct ServingStream {
    /// The stream's number, in the order the caller opened them.
    pub id: u64,
    /// What it carries.
    pub kind: StreamKind,
    /// The member serving it now.
    pub member: Member,
}

/// Live view of the drop-in's stream resumption: [`counts`](Self::counts) and
/// [`serving`](Self::serving). Cheap to clone; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: AtomicU64,
    watch_streams: AtomicU64,
    watch_resumptions: AtomicU64,
    watches_recreated: AtomicU64,
    duplicate_events_dropped: AtomicU64,
    keep_alive_streams: AtomicU64,
    keep_alive_resumptions: AtomicU64,
    keep_alives_resent: AtomicU64,
    keep_alive_moves_to_leader: AtomicU64,
    keep_alive_hedges: AtomicU64,
    duplicate_keep_alive_answers: AtomicU64,
    token_refusals: AtomicU64,
    serving: Mutex<BTreeMap<u64, (StreamKind, Member)>>,
}

// === impl StreamStats ===

impl StreamStats {
    /// The counters now.
    pub fn counts(&self) -> StreamCounts {
        let i = &self.inner;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamCounts {
            watch_streams: get(&i.watch_streams),
            watch_resumptions: get(&i.watch_resumptions),
            watches_recreated: get(&i.watches_recreated),
            duplicate_events_dropped: get(&i.duplicate_events_dropped),
            keep_alive_streams: get(&i.keep_alive_streams),
            keep_alive_resumptions: get(&i.keep_alive_resumptions),
            keep_alives_resent: get(&i.keep_alives_resent),
            keep_alive_moves_to_leader: get(&i.keep_alive_moves_to_leader),
            keep_alive_hedges: get(&i.keep_alive_hedges),
            duplicate_keep_alive_answers: get(&i.duplicate_keep_alive_answers),
            token_refusals: get(&i.token_refusals),
        }
    }

    /// The open streams and their members, oldest first.
    pub fn serving(&self) -> Vec<ServingStream> {
        self.lock()
            .iter()
            .map(|(id, (kind, member))| ServingStream {
                id: *id,
                kind: *kind,
                member: member.clone(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (StreamKind, Member)>> {
        self.inner.serving.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn opened(&self, kind: StreamKind) -> u64 {
        crate::metrics::stream_opened(kind.label());
        match kind {
            StreamKind::Watch => &self.inner.watch_streams,
            StreamKind::KeepAlive => &self.inner.keep_alive_streams,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn resumed(&self, kind: StreamKind, resent: usize) {
        let (resumptions, again) = match kind {
            StreamKind::Watch => (&self.inner.watch_resumptions, &self.inner.watches_recreated),
            StreamKind::KeepAlive => (
                &self.inner.keep_alive_resumptions,
                &self.inner.keep_alives_resent,
            ),
        };
        resumptions.fetch_add(1, Ordering::Relaxed);
        again.fetch_add(resent as u64, Ordering::Relaxed);
        crate::metrics::stream_resumed(kind.label());
    }

    /// A keep-alive went to a member again (another stream than the first it went on).
    pub(super) fn keep_alive_resent(&self) {
        self.inner
            .keep_alives_resent
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A keep-alive stream was opened on another member while one was waiting for an answer.
    pub(super) fn keep_alive_hedged(&self) {
        crate::metrics::keep_alive_hedged();
        self.inner.keep_alive_hedges.fetch_add(1, Ordering::Relaxed);
    }

    /// Another member than the one serving the keep-alive stream answered first.
    pub(super) fn keep_alive_moved(&self) {
        crate::metrics::stream_resumed(StreamKind::KeepAlive.label());
        self.inner
            .keep_alive_resumptions
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A keep-alive answered twice; the second answer was swallowed.
    pub(super) fn duplicate_keep_alive_answer(&self) {
        self.inner
            .duplicate_keep_alive_answers
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A stream opened again was refused for its auth token.
    pub(super) fn token_refused(&self) {
        self.inner.token_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn moved_to_leader(&self) {
        self.inner
            .keep_alive_moves_to_leader
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn duplicates(&self, n: u64) {
        if n > 0 {
            self.inner
                .duplicate_events_dropped
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn serve(&self, id: u64, kind: StreamKind, member: Option<Member>) {
        let mut serving = self.lock();
        let (was, is) = match member {
            Some(m) => (serving.insert(id, (kind, m)).is_some(), true),
            None => (serving.remove(&id).is_some(), false),
        };
        crate::metrics::streams_open(
            kind.label(),
            f64::from(u8::from(is)) - f64::from(u8::from(was)),
        );
    }
}
