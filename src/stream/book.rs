//! What a resumed stream must remember to move to another member unseen.
//!
//! Why a trait: the watch and the lease keep-alive differ in what they remember (live watches
//! and their revisions; unanswered keep-alives) but not in how a member is lost and another
//! one found. [`super::driver`] does the latter for any [`Book`]; each book is a pure
//! state machine, unit-tested without a cluster.

use super::stats::StreamKind;

/// What to do with one answer of the member.
#[derive(Debug, PartialEq)]
pub(super) enum Heard<Resp> {
    /// Hand it to the caller (possibly rewritten).
    Forward(Resp),
    /// The caller must not see it (an answer to a request of ours).
    Swallow,
    /// The member cannot serve the stream any more (e.g. it lost its leader): move.
    Lost(String),
    /// The member refused to create again what the stream had, for the stream's auth token
    /// (etcd's reason): open it again once the caller has a newer token (`token_wait.rs`).
    TokenRefused(String),
}

/// An answer of the member, judged, and what to send it next.
#[derive(Debug)]
pub(super) struct Judged<Req, Resp> {
    pub(super) heard: Heard<Resp>,
    pub(super) send: Vec<Req>,
}

/// What a new member is sent to take the stream over.
#[derive(Debug)]
pub(super) struct Resumed<Req> {
    pub(super) requests: Vec<Req>,
    /// How many of them re-create or re-send what the caller had on the lost member.
    pub(super) again: usize,
}

/// The state of one resumed stream.
pub(super) trait Book: Send + 'static {
    /// The caller's messages.
    type Req: prost::Message + Default + Clone + Send + Sync + 'static;
    /// The member's messages.
    type Resp: prost::Message + Default + Send + 'static;
    /// Which stream this is.
    const KIND: StreamKind;
    /// Its gRPC path.
    const PATH: &'static str;
    /// Whether [`poke`](Self::poke) gives a request.
    const POKES: bool;
    /// Whether [`behind`](Self::behind) judges answers (it costs a look at the leader state
    /// per answer).
    const JUDGES_TERMS: bool = false;

    /// Remembers a message of the caller; returns what to send the member now (if a member
    /// serves the stream).
    fn on_caller(&mut self, req: Self::Req) -> Vec<Self::Req>;
    /// Whether an answer comes from a member behind the leader the health state knows
    /// (leading at `leader_term`) and must not count: why, if so. It is then neither passed
    /// on nor judged, and the stream moves with what it asked still outstanding.
    fn behind(&self, resp: &Self::Resp, leader_term: Option<u64>) -> Option<String> {
        let _ = (resp, leader_term);
        None
    }
    /// Judges an answer of the member.
    fn on_member(&mut self, resp: Self::Resp) -> Judged<Self::Req, Self::Resp>;
    /// Forgets what was in flight on the lost member; returns what the next one is sent.
    fn resume(&mut self) -> Resumed<Self::Req>;
    /// Whether a member is needed now (something to send or to follow).
    fn needs_member(&self) -> bool;
    /// Requests sent to the member and not answered yet.
    fn outstanding(&self) -> usize;
    /// Whether the member serving now answers [`poke`](Self::poke)s in order with the stream's
    /// other answers (told after each open; assume not until told).
    fn progress_in_order(&mut self, in_order: bool) {
        let _ = in_order;
    }
    /// Whether the member may rightly leave a [`poke`](Self::poke) unanswered now: it is
    /// catching something up (etcd 3.5.8+ answers a watch stream's progress request only once
    /// every watcher is synced).
    fn catching_up(&self) -> bool {
        false
    }
    /// A request of ours that a live member answers at once, to tell a quiet member from a
    /// hung one (it counts as outstanding until answered); `None` if the stream has none.
    fn poke(&mut self) -> Option<Self::Req>;
    /// Whether the leader should serve the stream.
    fn prefer_leader(&self) -> bool;
    /// For the logs: the revision the stream resumes from, if it has one.
    fn resume_revision(&self) -> Option<i64> {
        None
    }
    /// Events dropped as duplicates since the last call.
    fn take_duplicates(&mut self) -> u64 {
        0
    }
    /// What the stream had on a lost member and a new member accepted again, since the last
    /// call.
    fn take_recreated(&mut self) -> u64 {
        0
    }
}
