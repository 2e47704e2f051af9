//! The watch's [`Book`]: every live watch of the caller's stream, where each stands, and how
//! the ids the caller knows map to the ids of the member serving the stream now.
//!
//! One etcd watch stream carries many watches (etcd-client's `WatchStream::watch` adds more).
//! Moved to another member, each live watch is created again from the revision after the
//! last one the caller was given (events arrive whole revision by whole revision, so nothing
//! is missed and nothing repeated; a fragmented revision is resumed past the events already
//! given). The re-creation asks for the caller's id (etcd 3.4+ honours `watch_id`); whatever
//! id the member assigns, responses are rewritten to the caller's id and the caller's cancels
//! to the member's. The "created" answers of re-creations are the drop-in's and are
//! swallowed; so are the answers to its own progress requests. A resume revision etcd has
//! compacted ends that watch with etcd's own cancel (`compact_revision` set), as the caller
//! would have seen had it re-created the watch itself.
//!
//! Progress answers are not counted one per request: etcd 3.5.8+ defers an answer until every
//! watcher of the stream is synced and coalesces the requests meanwhile into one; 3.5.13+ and
//! 3.6 drop a request made while a watcher catches up (`watch.go`, `recvLoop`;
//! `watchable_store.go`, `progressIfSync`). So any answer answers every poke of ours, and the
//! caller's requests are counted apart: while the caller waits for an answer, answers go to it
//! (one more when a poke of ours was out when it asked, so that it never gets only an answer
//! older than its request); otherwise they are ours and swallowed.
//!
//! An idle watch would resume from the revision it was created at; once etcd compacted past it
//! (Kubernetes compacts every 5 minutes), the re-creation is cancelled with `compact_revision`
//! although nothing was missed. So its resume revision advances where etcd guarantees that
//! nothing up to a revision is left: every creation asks for etcd's per-watch progress
//! notifications (`progress_notify`; sent in order, only for a synced watcher, by every
//! version; swallowed unless the caller asked for them), and a stream-wide progress answer
//! advances every watch created on the member when the member answers in order (3.4.25+,
//! 3.5.8+, 3.6: see `progress_order.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::book::{Book, Heard, Judged, Resumed};
use super::stats::StreamKind;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb::Event;

/// etcd's id for "no watch" (the answer to a progress request, a failed creation).
const NO_WATCH: i64 = -1;

/// One live watch of the caller.
#[derive(Clone, Debug)]
struct Watch {
    /// The caller's request, as sent (its `start_revision` and `watch_id` are replaced on
    /// re-creation).
    create: WatchCreateRequest,
    /// Every revision up to this one was given to the caller whole.
    last: i64,
    /// A revision given in part (fragments): its number and how many of its events.
    partial: Option<(i64, usize)>,
    /// After a re-creation, events of that partial revision the member sends again.
    skip: Option<(i64, usize)>,
    /// The member's id for it, once created there.
    server: Option<i64>,
    /// The caller asked to cancel it.
    cancel: bool,
}

impl Watch {
    /// Where a re-creation starts.
    fn resume_revision(&self) -> i64 {
        self.last.saturating_add(1)
    }

    /// The events of `events` the caller has not had, and how many were dropped.
    fn deliver(&mut self, events: Vec<Event>, fragment: bool) -> (Vec<Event>, u64) {
        let mut kept = Vec::with_capacity(events.len());
        let mut dropped = 0;
        for event in events {
            let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            if rev <= self.last {
                dropped += 1;
                continue;
            }
            if let Some((r, n)) = self.skip.as_mut() {
                if rev == *r && *n > 0 {
                    *n -= 1;
                    dropped += 1;
                    continue;
                }
                if rev > *r {
                    self.skip = None;
                }
            }
            // Every revision below this one is complete.
            self.partial = match self.partial {
                Some((r, n)) if r == rev => Some((r, n + 1)),
                Some((r, _)) if r < rev => {
                    self.last = self.last.max(r);
                    Some((rev, 1))
                }
                Some(p) => Some(p),
                None => Some((rev, 1)),
            };
            self.last = self.last.max(rev.saturating_sub(1));
            kept.push(event);
        }
        if !fragment {
            if let Some((r, _)) = self.partial.take() {
                self.last = self.last.max(r);
            }
        }
        (kept, dropped)
    }
}

/// A creation sent and not answered yet.
#[derive(Clone, Debug)]
enum Pending {
    /// The caller's.
    New(WatchCreateRequest),
    /// A re-creation of the caller's watch with this id.
    Again(i64),
}

/// Every watch of one stream.
#[derive(Debug, Default)]
pub(super) struct WatchBook {
    /// By the caller's id.
    watches: BTreeMap<i64, Watch>,
    /// The member's id → the caller's, on the member serving now.
    ids: HashMap<i64, i64>,
    /// Creations sent to the member serving now, in order (etcd answers them in order).
    pending: VecDeque<Pending>,
    /// Progress answers owed to the caller: its requests not answered yet (plus one when a
    /// poke of ours was out as it asked).
    caller_progress: usize,
    /// A poke of ours is out: any progress answer answers it.
    poked: bool,
    /// Watches were re-created from past revisions on the member serving now, and it has not
    /// said since that every watch is synced (a progress answer, a per-watch notification).
    catching_up: bool,
    /// The member serving now answers progress requests in order with events
    /// (`progress_order.rs`): an answer's revision is then every watch's.
    in_order: bool,
    /// Events dropped as duplicates, not yet counted in the stats.
    duplicates: u64,
    /// Watches created again on a new member, not yet counted.
    recreated: u64,
}

fn request(union: RequestUnion) -> WatchRequest {
    WatchRequest {
        request_union: Some(union),
    }
}

/// A creation as sent to a member: with etcd's per-watch progress notifications, whatever the
/// caller asked (they advance an idle watch's resume revision; the caller sees them only if it
/// asked for them).
fn create_notified(create: WatchCreateRequest) -> WatchRequest {
    request(RequestUnion::CreateRequest(WatchCreateRequest {
        progress_notify: true,
        ..create
    }))
}

fn cancel(watch_id: i64) -> WatchRequest {
    request(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }))
}

// === impl WatchBook ===

impl WatchBook {
    /// An id for a new watch of the caller: the member's, unless the caller uses it for
    /// another watch already (possible after a move: the new member numbers from 0).
    ///
    /// Ids come from the member: one near `i64::MAX` must not overflow `k + 1`. Past the
    /// highest id in use, the lowest free one from 0 is taken instead (the caller holds fewer
    /// watches than ids).
    fn caller_id_for(&self, server: i64) -> i64 {
        if !self.watches.contains_key(&server) {
            return server;
        }
        if let Some(next) = self
            .watches
            .keys()
            .next_back()
            .and_then(|k| k.checked_add(1))
        {
            return next;
        }
        (0..)
            .find(|id| !self.watches.contains_key(id))
            .unwrap_or(NO_WATCH)
    }

    fn created(&mut self, resp: WatchResponse) -> Judged<WatchRequest, WatchResponse> {
        let swallow = |send| Judged {
            heard: Heard::Swallow,
            send,
        };
        let forward = |resp| Judged {
            heard: Heard::Forward(resp),
            send: Vec::new(),
        };
        let Some(pending) = self.pending.pop_front() else {
            return forward(resp);
        };
        if resp.canceled {
            if crate::etcd::says_leader_lost(&resp.cancel_reason) {
                return Judged {
                    heard: Heard::Lost(format!("watch refused: {}", resp.cancel_reason)),
                    send: Vec::new(),
                };
            }
            return match pending {
                Pending::New(_) => forward(resp),
                Pending::Again(_) if crate::etcd::is_stale_token_cancel(&resp.cancel_reason) => {
                    // Refused for the stream's token, not for the watch: kept, and created
                    // again once the caller has a newer token.
                    Judged {
                        heard: Heard::TokenRefused(resp.cancel_reason),
                        send: Vec::new(),
                    }
                }
                Pending::Again(id) => {
                    // The caller's watch cannot be had again (e.g. permission revoked): it
                    // ends with etcd's reason.
                    self.watches.remove(&id);
                    forward(WatchResponse {
                        watch_id: id,
                        created: false,
                        ..resp
                    })
                }
            };
        }
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        match pending {
            Pending::New(create) => {
                let id = self.caller_id_for(resp.watch_id);
                // "From now" is the revision the member created it at.
                let last = if create.start_revision > 0 {
                    create.start_revision - 1
                } else {
                    revision
                };
                self.watches.insert(
                    id,
                    Watch {
                        create,
                        last,
                        partial: None,
                        skip: None,
                        server: Some(resp.watch_id),
                        cancel: false,
                    },
                );
                self.ids.insert(resp.watch_id, id);
                forward(WatchResponse {
                    watch_id: id,
                    ..resp
                })
            }
            Pending::Again(id) => {
                let Some(watch) = self.watches.get_mut(&id) else {
                    // Cancelled and answered meanwhile: nothing to follow.
                    return swallow(vec![cancel(resp.watch_id)]);
                };
                watch.server = Some(resp.watch_id);
                self.ids.insert(resp.watch_id, id);
                self.recreated += 1;
                let send = if watch.cancel {
                    vec![cancel(resp.watch_id)]
                } else {
                    Vec::new()
                };
                swallow(send)
            }
        }
    }
}

impl WatchBook {
    /// An in-order progress answer at `revision`: every watch created on the member serving
    /// now has been sent everything up to it (`progressIfSync` answers only when every watcher
    /// of the stream is synced, after the events it queued). A watch whose creation is not
    /// answered yet is left alone: etcd holds its events back until then.
    fn progressed(&mut self, revision: i64) {
        for watch in self.watches.values_mut() {
            if watch.server.is_some() && watch.partial.is_none() && watch.skip.is_none() {
                watch.last = watch.last.max(revision);
            }
        }
    }
}

impl Book for WatchBook {
    type Req = WatchRequest;
    type Resp = WatchResponse;
    const KIND: StreamKind = StreamKind::Watch;
    const POKES: bool = true;
    const PATH: &'static str = "/etcdserverpb.Watch/Watch";

    fn on_caller(&mut self, req: WatchRequest) -> Vec<WatchRequest> {
        match &req.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                self.pending.push_back(Pending::New(create.clone()));
                vec![create_notified(create.clone())]
            }
            Some(RequestUnion::CancelRequest(c)) => match self.watches.get_mut(&c.watch_id) {
                Some(watch) => {
                    watch.cancel = true;
                    // Not created again yet: cancelled once it is.
                    watch.server.map(cancel).into_iter().collect()
                }
                None => vec![req],
            },
            Some(RequestUnion::ProgressRequest(_)) => {
                // With a poke of ours out, the next answer may be the poke's (older than this
                // request, on etcd 3.4): the caller gets the one after it too.
                self.caller_progress += 1 + usize::from(self.poked);
                self.poked = false;
                vec![req]
            }
            None => vec![req],
        }
    }

    fn on_member(&mut self, resp: WatchResponse) -> Judged<WatchRequest, WatchResponse> {
        let forward = |resp| Judged {
            heard: Heard::Forward(resp),
            send: Vec::new(),
        };
        if resp.created {
            return self.created(resp);
        }
        if resp.watch_id == NO_WATCH && !resp.canceled && resp.events.is_empty() {
            // The answer to a progress request: to every one out, whoever asked.
            self.poked = false;
            self.catching_up = false;
            if self.in_order {
                self.progressed(resp.header.as_ref().map_or(0, |h| h.revision));
            }
            if self.caller_progress > 0 {
                self.caller_progress -= 1;
                return forward(resp);
            }
            return Judged {
                heard: Heard::Swallow,
                send: Vec::new(),
            };
        }
        let Some(&id) = self.ids.get(&resp.watch_id) else {
            return forward(resp);
        };
        if resp.canceled {
            if resp.compact_revision == 0 && crate::etcd::says_leader_lost(&resp.cancel_reason) {
                return Judged {
                    heard: Heard::Lost(format!("watch canceled: {}", resp.cancel_reason)),
                    send: Vec::new(),
                };
            }
            self.ids.remove(&resp.watch_id);
            self.watches.remove(&id);
            return forward(WatchResponse {
                watch_id: id,
                ..resp
            });
        }
        let single = self.watches.len() == 1;
        let Some(watch) = self.watches.get_mut(&id) else {
            return forward(resp);
        };
        if resp.events.is_empty() {
            // A progress notification of this watch, in order with its events: nothing up to
            // its revision is left.
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            if watch.partial.is_none() && watch.skip.is_none() {
                watch.last = watch.last.max(revision);
            }
            // Sent only for a synced watcher: with one watch, the stream is synced.
            if single {
                self.catching_up = false;
            }
            if !watch.create.progress_notify {
                // Asked for by the drop-in, not the caller.
                return Judged {
                    heard: Heard::Swallow,
                    send: Vec::new(),
                };
            }
            return forward(WatchResponse {
                watch_id: id,
                ..resp
            });
        }
        let mut resp = resp;
        let events = std::mem::take(&mut resp.events);
        let (events, dropped) = watch.deliver(events, resp.fragment);
        self.duplicates += dropped;
        if events.is_empty() {
            return Judged {
                heard: Heard::Swallow,
                send: Vec::new(),
            };
        }
        forward(WatchResponse {
            watch_id: id,
            events,
            ..resp
        })
    }

    fn resume(&mut self) -> Resumed<WatchRequest> {
        self.ids.clear();
        let new: Vec<WatchCreateRequest> = self
            .pending
            .drain(..)
            .filter_map(|p| match p {
                Pending::New(create) => Some(create),
                Pending::Again(_) => None,
            })
            .collect();
        let mut requests = Vec::new();
        for (&id, watch) in &mut self.watches {
            watch.server = None;
            watch.skip = watch.partial;
            requests.push(create_notified(WatchCreateRequest {
                start_revision: watch.resume_revision(),
                watch_id: id,
                ..watch.create.clone()
            }));
            self.pending.push_back(Pending::Again(id));
        }
        let again = requests.len();
        for create in new {
            requests.push(create_notified(create.clone()));
            self.pending.push_back(Pending::New(create));
        }
        // The new member is asked once for the caller (etcd 3.5.8+ answers many requests
        // with one anyway); until it answers, our pokes ask for the caller too.
        self.poked = false;
        self.in_order = false;
        self.catching_up = again > 0;
        if self.caller_progress > 0 {
            requests.push(request(RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )));
            self.caller_progress = 1;
        }
        Resumed { requests, again }
    }

    fn needs_member(&self) -> bool {
        !self.watches.is_empty() || !self.pending.is_empty() || self.caller_progress > 0
    }

    /// Creations only: a progress request may go unanswered on a healthy member (etcd 3.5.13+
    /// drops it while a watcher catches up), so the driver, not the book, times pokes out.
    fn outstanding(&self) -> usize {
        self.pending.len()
    }

    fn catching_up(&self) -> bool {
        self.catching_up
    }

    fn progress_in_order(&mut self, in_order: bool) {
        self.in_order = in_order;
    }

    fn poke(&mut self) -> Option<WatchRequest> {
        self.poked = true;
        Some(request(RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )))
    }

    fn prefer_leader(&self) -> bool {
        false
    }

    fn resume_revision(&self) -> Option<i64> {
        self.watches.values().map(Watch::resume_revision).min()
    }

    fn take_duplicates(&mut self) -> u64 {
        std::mem::take(&mut self.duplicates)
    }

    fn take_recreated(&mut self) -> u64 {
        std::mem::take(&mut self.recreated)
    }
}

/// For the fuzz targets: a watch book fed the caller's creations and the member's answers
/// (watch ids, revisions, flags from arbitrary numbers), moved to another member now and then;
/// nothing may panic, and every resume revision is past the last delivered one.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_watch_book(steps: &[(u8, i64, i64)]) {
    let mut b = WatchBook::default();
    for &(op, a, c) in steps {
        match op % 6 {
            0 => {
                b.on_caller(request(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"k".to_vec(),
                    start_revision: c,
                    watch_id: a,
                    ..Default::default()
                })));
            }
            1 => {
                b.on_member(WatchResponse {
                    header: Some(crate::proto::etcdserverpb::ResponseHeader {
                        revision: c,
                        ..Default::default()
                    }),
                    watch_id: a,
                    created: true,
                    ..Default::default()
                });
            }
            2 | 3 => {
                let event = Event {
                    kv: Some(crate::proto::mvccpb::KeyValue {
                        mod_revision: c,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                b.on_member(WatchResponse {
                    watch_id: a,
                    fragment: op % 6 == 3,
                    events: vec![event],
                    ..Default::default()
                });
            }
            4 => {
                b.on_caller(cancel(a));
                b.on_member(WatchResponse {
                    watch_id: a,
                    canceled: true,
                    compact_revision: c,
                    ..Default::default()
                });
            }
            _ => {
                let _ = b.resume();
                let _ = b.resume_revision();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::KeyValue;

    fn create(key: &str, start_revision: i64) -> WatchRequest {
        request(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            start_revision,
            ..Default::default()
        }))
    }

    fn header(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision,
            ..Default::default()
        })
    }

    fn created(watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: header(revision),
            watch_id,
            created: true,
            ..Default::default()
        }
    }

    fn events(watch_id: i64, revs: &[i64], fragment: bool) -> WatchResponse {
        WatchResponse {
            header: header(*revs.last().unwrap_or(&0)),
            watch_id,
            fragment,
            events: revs
                .iter()
                .map(|r| Event {
                    kv: Some(KeyValue {
                        mod_revision: *r,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn revs(heard: &Heard<WatchResponse>) -> (i64, Vec<i64>) {
        match heard {
            Heard::Forward(r) => (
                r.watch_id,
                r.events
                    .iter()
                    .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
                    .collect(),
            ),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn creates(r: &Resumed<WatchRequest>) -> Vec<(i64, i64)> {
        r.requests
            .iter()
            .filter_map(|r| match &r.request_union {
                Some(RequestUnion::CreateRequest(c)) => Some((c.watch_id, c.start_revision)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn watches_are_created_again_after_the_last_delivered_revision_and_keep_their_ids() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_caller(create("b", 5));
        assert_eq!(
            b.on_member(created(0, 10)).heard,
            Heard::Forward(created(0, 10))
        );
        b.on_member(created(1, 10));
        assert_eq!(
            revs(&b.on_member(events(0, &[11, 12], false)).heard),
            (0, vec![11, 12])
        );
        assert_eq!(b.resume_revision(), Some(5), "b has delivered nothing");

        let r = b.resume();
        assert_eq!(creates(&r), vec![(0, 13), (1, 5)]);
        assert_eq!(r.again, 2);
        // The new member numbers them otherwise: its ids are mapped back, creations swallowed.
        assert_eq!(b.on_member(created(7, 20)).heard, Heard::Swallow);
        assert_eq!(b.on_member(created(8, 20)).heard, Heard::Swallow);
        // Overlap is dropped, the rest delivered once under the caller's id.
        assert_eq!(
            revs(&b.on_member(events(7, &[12, 13], false)).heard),
            (0, vec![13])
        );
        assert_eq!(b.take_duplicates(), 1);
        assert_eq!(
            revs(&b.on_member(events(8, &[6], false)).heard),
            (1, vec![6])
        );
        // The caller's cancel goes out under the member's id; etcd's answer comes back
        // under the caller's.
        let sent = b.on_caller(request(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 0,
        })));
        assert_eq!(sent, vec![cancel(7)]);
        let canceled = WatchResponse {
            watch_id: 7,
            canceled: true,
            ..Default::default()
        };
        match b.on_member(canceled).heard {
            Heard::Forward(r) => assert!(r.canceled && r.watch_id == 0, "{r:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            creates(&b.resume()),
            vec![(1, 7)],
            "only live watches again"
        );
    }

    #[test]
    fn a_compacted_resume_revision_hands_the_caller_etcd_s_cancel() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.resume();
        assert_eq!(b.on_member(created(0, 50)).heard, Heard::Swallow);
        let compacted = WatchResponse {
            header: header(50),
            watch_id: 0,
            canceled: true,
            compact_revision: 40,
            cancel_reason: "mvcc: required revision has been compacted".into(),
            ..Default::default()
        };
        match b.on_member(compacted).heard {
            Heard::Forward(r) => assert_eq!((r.watch_id, r.compact_revision), (0, 40)),
            other => panic!("{other:?}"),
        }
        assert!(!b.needs_member());
    }

    #[test]
    fn no_leader_moves_the_stream_and_progress_answers_to_our_requests_are_swallowed() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.on_caller(request(RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )));
        assert!(b.poke().is_some());
        let progress = WatchResponse {
            header: header(10),
            watch_id: NO_WATCH,
            ..Default::default()
        };
        assert!(
            matches!(b.on_member(progress.clone()).heard, Heard::Forward(_)),
            "the caller's"
        );
        assert_eq!(b.on_member(progress).heard, Heard::Swallow, "ours");
        let lost = WatchResponse {
            watch_id: 0,
            canceled: true,
            cancel_reason: "etcdserver: no leader".into(),
            ..Default::default()
        };
        assert!(matches!(b.on_member(lost).heard, Heard::Lost(_)));
        assert!(b.needs_member());
    }

    #[test]
    fn a_re_creation_refused_for_its_token_keeps_the_watch_a_permission_refusal_ends_it() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.on_member(events(0, &[11], false));
        b.resume();
        // etcd 3.5+ answers a refused creation with watch id -1; 3.4 with the id asked for.
        let refused = |reason: &str| WatchResponse {
            header: header(20),
            watch_id: NO_WATCH,
            created: true,
            canceled: true,
            cancel_reason: reason.into(),
            ..Default::default()
        };
        assert_eq!(
            b.on_member(refused("etcdserver: invalid auth token")).heard,
            Heard::TokenRefused("etcdserver: invalid auth token".into())
        );
        assert!(b.needs_member());
        assert_eq!(
            creates(&b.resume()),
            vec![(0, 12)],
            "created again, from 12"
        );
        match b.on_member(refused("etcdserver: permission denied")).heard {
            Heard::Forward(r) => assert!(r.canceled && r.watch_id == 0, "{r:?}"),
            other => panic!("{other:?}"),
        }
        assert!(!b.needs_member(), "a watch refused for its permission ends");
    }

    #[test]
    fn a_fragmented_revision_resumes_past_the_events_given() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        assert_eq!(
            revs(&b.on_member(events(0, &[11, 12, 12], true)).heard).1,
            vec![11, 12, 12]
        );
        let r = b.resume();
        assert_eq!(creates(&r), vec![(0, 12)], "revision 12 is not whole yet");
        b.on_member(created(0, 20));
        // The member sends revision 12 from its start: the two given are skipped.
        assert_eq!(
            revs(&b.on_member(events(0, &[12, 12, 12, 13], false)).heard).1,
            vec![12, 13]
        );
        assert_eq!(b.resume_revision(), Some(14));
    }

    #[test]
    fn a_new_watch_never_takes_an_id_the_caller_uses() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_caller(create("b", 0));
        b.on_member(created(0, 10));
        b.on_member(created(1, 10));
        b.on_caller(request(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 0,
        })));
        b.on_member(WatchResponse {
            watch_id: 0,
            canceled: true,
            ..Default::default()
        });
        b.resume();
        // A member that ignores the requested id numbers the re-creation 0.
        b.on_member(created(0, 11));
        b.on_caller(create("c", 0));
        match b.on_member(created(1, 11)).heard {
            Heard::Forward(r) => assert_eq!(r.watch_id, 2, "1 is the caller's watch b"),
            other => panic!("{other:?}"),
        }
        assert_eq!(revs(&b.on_member(events(0, &[12], false)).heard).0, 1);
        assert_eq!(revs(&b.on_member(events(1, &[12], false)).heard).0, 2);
    }

    /// Watch ids come from the member: a caller id past `i64::MAX` was `k + 1`, a panic.
    #[test]
    fn watch_ids_near_i64_max_do_not_overflow() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        assert_eq!(revs(&b.on_member(created(i64::MAX, 5)).heard).0, i64::MAX);
        // Revisions near the ends of i64 from the member: no overflow either.
        let j = b.on_member(events(i64::MAX, &[i64::MAX], false));
        assert_eq!(revs(&j.heard), (i64::MAX, vec![i64::MAX]));
        let _ = b.on_member(events(i64::MAX, &[i64::MIN], false));
        // A second watch the member numbers the same (after a move, say): a free id is found.
        b.on_caller(create("b", 0));
        let second = revs(&b.on_member(created(i64::MAX, 6)).heard).0;
        assert_ne!(second, i64::MAX);
        assert_eq!(second, 0, "the lowest free id");
        b.on_caller(create("c", 0));
        let third = revs(&b.on_member(created(i64::MAX, 7)).heard).0;
        assert_eq!(third, 1);
        let r = b.resume();
        assert!(
            creates(&r).contains(&(i64::MAX, i64::MAX)),
            "{:?}",
            creates(&r)
        );
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;

    fn create(key: &str, start_revision: i64) -> WatchRequest {
        request(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            start_revision,
            ..Default::default()
        }))
    }

    fn created(watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            watch_id,
            created: true,
            ..Default::default()
        }
    }

    fn answer(watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            watch_id,
            ..Default::default()
        }
    }

    fn callers() -> WatchRequest {
        request(RequestUnion::ProgressRequest(WatchProgressRequest {}))
    }

    fn forwarded(j: &Judged<WatchRequest, WatchResponse>) -> bool {
        matches!(j.heard, Heard::Forward(_))
    }

    fn starts(r: &Resumed<WatchRequest>) -> Vec<i64> {
        r.requests
            .iter()
            .filter_map(|r| match &r.request_union {
                Some(RequestUnion::CreateRequest(c)) => Some(c.start_revision),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_answer_answers_every_poke_and_pokes_are_not_held_against_the_member() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.poke();
        b.poke();
        assert_eq!(
            b.outstanding(),
            0,
            "pokes are timed by the driver, not the book"
        );
        assert!(!forwarded(&b.on_member(answer(NO_WATCH, 10))), "ours");
        assert!(!b.poked, "one answer for both (etcd 3.5.8+ coalesces)");
    }

    #[test]
    fn the_caller_s_request_is_never_taken_as_ours() {
        // etcd 3.5.13+ dropped our poke (a watcher was catching up) and answers the caller's.
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.poke();
        b.on_caller(callers());
        assert!(
            forwarded(&b.on_member(answer(NO_WATCH, 12))),
            "the caller's"
        );
        // etcd 3.4 answers both, ours first (older than the caller's request): the caller
        // gets the second as well.
        assert!(forwarded(&b.on_member(answer(NO_WATCH, 13))));
        assert!(
            !forwarded(&b.on_member(answer(NO_WATCH, 13))),
            "then ours again"
        );
        // Asked with no poke out: exactly one answer is the caller's.
        b.on_caller(callers());
        b.poke();
        assert!(forwarded(&b.on_member(answer(NO_WATCH, 14))));
        assert!(!forwarded(&b.on_member(answer(NO_WATCH, 14))));
    }

    #[test]
    fn a_caller_waiting_for_progress_is_asked_for_again_on_the_next_member() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.on_caller(callers());
        b.on_caller(callers());
        let r = b.resume();
        let asks = r
            .requests
            .iter()
            .filter(|r| matches!(r.request_union, Some(RequestUnion::ProgressRequest(_))))
            .count();
        assert_eq!(asks, 1, "one request, one answer owed");
        b.on_member(created(0, 11));
        assert!(forwarded(&b.on_member(answer(NO_WATCH, 11))));
        assert!(!forwarded(&b.on_member(answer(NO_WATCH, 11))));
    }

    #[test]
    fn an_in_order_answer_advances_every_created_watch() {
        let mut b = WatchBook::default();
        b.on_caller(create("a", 0));
        b.on_member(created(0, 10));
        b.poke();
        b.on_member(answer(NO_WATCH, 50));
        assert_eq!(
            b.resume_revision(),
            Some(11),
            "a member that may answer out of order (etcd 3.4.23) advances nothing"
        );
        b.resume();
        b.on_member(created(0, 60));
        b.progress_in_order(true);
        b.on_caller(create("b", 0)); // not created yet when the answer comes
        b.poke();
        b.on_member(answer(NO_WATCH, 70));
        assert_eq!(b.watches[&0].last, 70);
        b.on_member(created(1, 71));
        assert_eq!(
            b.watches[&1].last, 71,
            "created after the answer, from its own revision"
        );
        assert_eq!(starts(&b.resume()), vec![71, 72]);
    }

    #[test]
    fn per_watch_notifications_are_asked_for_and_advance_the_watch_unseen() {
        let mut b = WatchBook::default();
        let sent = b.on_caller(create("a", 0));
        match &sent[0].request_union {
            Some(RequestUnion::CreateRequest(c)) => assert!(c.progress_notify),
            other => panic!("{other:?}"),
        }
        b.on_member(created(0, 10));
        assert!(
            !forwarded(&b.on_member(answer(0, 40))),
            "the caller did not ask"
        );
        assert_eq!(b.resume_revision(), Some(41));
        let r = b.resume();
        match &r.requests[0].request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                assert!(c.progress_notify);
                assert_eq!(c.start_revision, 41);
            }
            other => panic!("{other:?}"),
        }
        // A caller that asked for them sees them.
        let mut b = WatchBook::default();
        b.on_caller(request(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"a".to_vec(),
            progress_notify: true,
            ..Default::default()
        })));
        b.on_member(created(0, 10));
        assert!(forwarded(&b.on_member(answer(0, 40))));
    }
}
