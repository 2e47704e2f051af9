//! One watch stream of a fake member: which watchers it holds, which are synced, and what it
//! sends when — modelled on etcd's `serverWatchStream` (`server/etcdserver/api/v3rpc/watch.go`)
//! over its `watchableStore` (`server/storage/mvcc/watchable_store.go`, 3.5:
//! `server/mvcc/watchable_store.go`).
//!
//! A pure state machine: the serving task (`serve.rs`) feeds it the caller's requests, the
//! store's new revisions and the clock, and sends what it returns, in order.
//!
//! What is modelled, and where it comes from:
//! - A watcher created from "now" (`start_revision` 0 or in the future) is *synced* at once;
//!   one created from a past revision is *unsynced* until the store's sync loop catches it up
//!   (`watchableStore.watch`; `syncWatchersLoop` runs every 100 ms and serves at most
//!   `maxWatchersPerSync` watchers a pass, so on a busy member catching up takes longer: the
//!   fake's `catch_up` delay). A synced watcher gets each revision's events as they are written
//!   (`watchableStore.notify`); the catch-up sends all missed events in one response
//!   (`syncWatchers`), or, if its start revision was compacted, a response with
//!   `compact_revision` that etcd's send loop marks `canceled` (`sendLoop`).
//! - Progress requests (`recvLoop`, `WatchRequest_ProgressRequest`), per [`Behaviour`].
//! - Per-watcher progress notifications (`progress_notify`, `sendLoop`'s `progressTicker`):
//!   a watcher with no events since the last tick gets one if synced
//!   (`watchableStore.progress`), with the store revision, in order with its events.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_health::proto::etcdserverpb::{
    watch_request::RequestUnion, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::time::Instant;

use super::store::Store;

/// etcd's `clientv3.InvalidWatchID`: a progress answer for the whole stream.
const STREAM: i64 = -1;

/// Which etcd behaviour a fake member speaks for progress requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// etcd 3.4.0–3.4.24 and 3.5.0–3.5.7: a progress request is answered at once, by the
    /// receive loop through the control channel (`recvLoop` before `cd019255b`), with the store
    /// revision, whether or not the watchers are synced: the answer may run ahead of events
    /// still to come (the fake sends it before any pending catch-up).
    Etcd34,
    /// etcd 3.5.8–3.5.12 and 3.4.25–3.4.30 (`cd019255b`, "Guarantee order of requested
    /// progress notifications"): answered through the watch channel, in order with events, only
    /// when every watcher of the stream is synced (`progressIfSync`); otherwise *deferred*
    /// (`deferredProgress`), further requests ignored meanwhile (coalesced into one answer),
    /// and retried after each response the send loop sends — so a stream whose catch-up sends
    /// no event is never answered (fixed by `579b22cf3`).
    Etcd35Deferred,
    /// etcd 3.5.13+, 3.4.31+ and 3.6 (`579b22cf3`, "Fix progress notification for watch that
    /// doesn't get any events"): answered in order only when every watcher is synced and none
    /// starts in the future (`progressIfSync`: `rev < w.startRev`); otherwise *dropped*: the
    /// client must ask again.
    Etcd36,
}

impl Behaviour {
    /// The version a member of this behaviour reports (`Maintenance/Status`).
    pub fn version(self) -> &'static str {
        match self {
            Behaviour::Etcd34 => "3.4.23",
            Behaviour::Etcd35Deferred => "3.5.10",
            Behaviour::Etcd36 => "3.6.5",
        }
    }
}

/// One watcher of the stream.
#[derive(Clone, Debug)]
struct Watcher {
    key: Vec<u8>,
    end: Vec<u8>,
    /// The next revision it is to be sent (etcd's `minRev`).
    next: i64,
    /// Its start revision as asked (etcd's `startRev`).
    start: i64,
    /// Unsynced until this instant (`None`: synced).
    unsynced_until: Option<Instant>,
    progress_notify: bool,
    /// No events since the last progress tick (etcd's `sws.progress[id]`).
    quiet_since_tick: bool,
    prev_kv: bool,
}

/// The state of one watch stream.
#[derive(Debug)]
pub(crate) struct WatchStream {
    behaviour: Behaviour,
    catch_up: Duration,
    header: ResponseHeader,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// [`Behaviour::Etcd35Deferred`]: a progress answer owed once every watcher is synced.
    deferred: bool,
}

// === impl WatchStream ===

impl WatchStream {
    /// A new stream; unsynced watchers take `catch_up` to be caught up. `header` carries the
    /// member's ids (its revision is set per response).
    pub(crate) fn new(behaviour: Behaviour, catch_up: Duration, header: ResponseHeader) -> Self {
        Self {
            behaviour,
            catch_up,
            header,
            watchers: BTreeMap::new(),
            next_id: 0,
            deferred: false,
        }
    }

    fn header(&self, rev: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: rev,
            ..self.header
        })
    }

    /// When the next unsynced watcher is to be caught up.
    pub(crate) fn next_catch_up(&self) -> Option<Instant> {
        self.watchers
            .values()
            .filter_map(|w| w.unsynced_until)
            .min()
    }

    fn all_synced(&self, rev: i64, future_counts: bool) -> bool {
        self.watchers
            .values()
            .all(|w| w.unsynced_until.is_none() && !(future_counts && rev < w.start))
    }

    /// A request of the client at `now`: what to send.
    pub(crate) fn on_request(
        &mut self,
        req: WatchRequest,
        store: &Store,
        now: Instant,
    ) -> Vec<WatchResponse> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c, store, now),
            Some(RequestUnion::CancelRequest(c)) => {
                // `recvLoop`: cancel, answered on the control channel.
                if self.watchers.remove(&c.watch_id).is_some() {
                    vec![WatchResponse {
                        header: self.header(store.rev()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => self.progress_request(store, now),
            None => Vec::new(),
        }
    }

    fn create(&mut self, c: WatchCreateRequest, store: &Store, now: Instant) -> Vec<WatchResponse> {
        let rev = store.rev();
        // `recvLoop`: a negative start revision is refused (3.5.15+/3.6: "Reject watch request
        // with -1 revision"); a requested id in use is refused with "duplicate watch ID".
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if c.start_revision < 0 || self.watchers.contains_key(&id) {
            let reason = if c.start_revision < 0 {
                "mvcc: watch revision is negative"
            } else {
                "mvcc: duplicate watch ID"
            };
            return vec![WatchResponse {
                header: self.header(rev),
                watch_id: STREAM,
                created: true,
                canceled: true,
                cancel_reason: reason.into(),
                ..Default::default()
            }];
        }
        // `watchableStore.watch`: synced iff from now or from the future.
        let synced = c.start_revision == 0 || c.start_revision > rev;
        let next = if synced {
            (rev + 1).max(c.start_revision)
        } else {
            c.start_revision
        };
        self.watchers.insert(
            id,
            Watcher {
                key: c.key,
                end: c.range_end,
                next,
                start: c.start_revision,
                unsynced_until: (!synced).then_some(now + self.catch_up),
                progress_notify: c.progress_notify,
                quiet_since_tick: true,
                prev_kv: c.prev_kv,
            },
        );
        vec![WatchResponse {
            header: self.header(rev),
            watch_id: id,
            created: true,
            ..Default::default()
        }]
    }

    fn progress_request(&mut self, store: &Store, now: Instant) -> Vec<WatchResponse> {
        let rev = store.rev();
        let answer = WatchResponse {
            header: self.header(rev),
            watch_id: STREAM,
            ..Default::default()
        };
        match self.behaviour {
            // Answered at once, ahead of any catch-up still to come.
            Behaviour::Etcd34 => vec![answer],
            Behaviour::Etcd35Deferred => {
                if self.deferred {
                    // "Ignore if deferred progress notification is already in progress".
                    return Vec::new();
                }
                let mut out = self.deliver(store, now);
                if self.all_synced(rev, false) {
                    out.push(answer);
                } else {
                    self.deferred = true;
                }
                out
            }
            Behaviour::Etcd36 => {
                let mut out = self.deliver(store, now);
                if self.all_synced(rev, true) {
                    out.push(answer);
                }
                out
            }
        }
    }

    /// The store moved on, or the clock did: events for synced watchers, catch-ups due.
    pub(crate) fn deliver(&mut self, store: &Store, now: Instant) -> Vec<WatchResponse> {
        let rev = store.rev();
        let mut out = Vec::new();
        let mut compacted = Vec::new();
        let at_rev = self.header(rev);
        for (&id, w) in &mut self.watchers {
            if w.unsynced_until.is_some_and(|t| now < t) {
                continue;
            }
            w.unsynced_until = None;
            if w.next > rev {
                continue;
            }
            match store.events(&w.key, &w.end, w.next) {
                Err(compact_revision) => {
                    // `syncWatchers` → `chooseAll`: a compacted start revision; `sendLoop`
                    // sets `canceled` when `CompactRevision != 0`.
                    out.push(WatchResponse {
                        header: at_rev,
                        watch_id: id,
                        canceled: true,
                        compact_revision,
                        ..Default::default()
                    });
                    compacted.push(id);
                }
                Ok(mut events) => {
                    w.next = rev + 1;
                    if events.is_empty() {
                        continue;
                    }
                    if !w.prev_kv {
                        for e in &mut events {
                            e.prev_kv = None;
                        }
                    }
                    w.quiet_since_tick = false;
                    out.push(WatchResponse {
                        header: at_rev,
                        watch_id: id,
                        events,
                        ..Default::default()
                    });
                }
            }
        }
        for id in compacted {
            self.watchers.remove(&id);
        }
        // `sendLoop` (3.5.8–3.5.12): after each response sent, a deferred answer is retried.
        if self.deferred && !out.is_empty() && self.all_synced(rev, false) {
            self.deferred = false;
            out.push(WatchResponse {
                header: self.header(rev),
                watch_id: STREAM,
                ..Default::default()
            });
        }
        out
    }

    /// `sendLoop`'s progress ticker: a per-watcher notification for each `progress_notify`
    /// watcher that had no events since the last tick and is synced.
    pub(crate) fn tick(&mut self, store: &Store, now: Instant) -> Vec<WatchResponse> {
        let mut out = self.deliver(store, now);
        let rev = store.rev();
        let header = self.header(rev);
        for (&id, w) in &mut self.watchers {
            if w.progress_notify && w.quiet_since_tick && w.unsynced_until.is_none() {
                // 3.5.13+/3.6 also skip a watcher that starts in the future.
                if !(self.behaviour == Behaviour::Etcd36 && rev < w.start) {
                    out.push(WatchResponse {
                        header,
                        watch_id: id,
                        ..Default::default()
                    });
                }
            }
            w.quiet_since_tick = true;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_health::proto::etcdserverpb::WatchProgressRequest;

    fn create(key: &str, start_revision: i64) -> WatchRequest {
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.into(),
                start_revision,
                ..Default::default()
            })),
        }
    }

    fn progress() -> WatchRequest {
        WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        }
    }

    /// (watch id, header revision, event revisions, compact revision) of each response.
    fn seen(out: &[WatchResponse]) -> Vec<(i64, i64, Vec<i64>, i64)> {
        out.iter()
            .map(|r| {
                (
                    r.watch_id,
                    r.header.as_ref().unwrap().revision,
                    r.events
                        .iter()
                        .map(|e| e.kv.as_ref().unwrap().mod_revision)
                        .collect(),
                    r.compact_revision,
                )
            })
            .collect()
    }

    /// A store at revision 11 with `a` written at 2 and 11, `b` in between.
    fn store() -> Store {
        let mut s = Store::new();
        s.put(b"a".to_vec(), b"1".to_vec());
        for _ in 0..8 {
            s.put(b"b".to_vec(), b"x".to_vec());
        }
        s.put(b"a".to_vec(), b"2".to_vec());
        s
    }

    fn stream(b: Behaviour) -> WatchStream {
        WatchStream::new(b, Duration::from_secs(1), ResponseHeader::default())
    }

    #[test]
    fn a_synced_stream_answers_in_order_with_the_store_revision_on_every_version() {
        for b in [
            Behaviour::Etcd34,
            Behaviour::Etcd35Deferred,
            Behaviour::Etcd36,
        ] {
            let mut s = store();
            let now = Instant::now();
            let mut w = stream(b);
            assert_eq!(
                seen(&w.on_request(create("a", 0), &s, now)),
                vec![(0, 11, vec![], 0)]
            );
            s.put(b"a".to_vec(), b"3".to_vec());
            s.put(b"b".to_vec(), b"3".to_vec());
            let out = if b == Behaviour::Etcd34 {
                let mut out = w.deliver(&s, now);
                out.extend(w.on_request(progress(), &s, now));
                out
            } else {
                w.on_request(progress(), &s, now)
            };
            assert_eq!(
                seen(&out),
                vec![(0, 13, vec![12], 0), (-1, 13, vec![], 0)],
                "{b:?}"
            );
        }
    }

    #[test]
    fn etcd_3_4_answers_at_once_ahead_of_a_catch_up() {
        let s = store();
        let now = Instant::now();
        let mut w = stream(Behaviour::Etcd34);
        w.on_request(create("a", 1), &s, now);
        assert_eq!(
            seen(&w.on_request(progress(), &s, now)),
            vec![(-1, 11, vec![], 0)],
            "revision 11 announced before events 2 and 11 are sent"
        );
        assert_eq!(
            seen(&w.deliver(&s, now + Duration::from_secs(1))),
            vec![(0, 11, vec![2, 11], 0)]
        );
    }

    #[test]
    fn etcd_3_5_8_defers_and_coalesces_until_synced() {
        let s = store();
        let t0 = Instant::now();
        let mut w = stream(Behaviour::Etcd35Deferred);
        w.on_request(create("a", 1), &s, t0);
        assert!(w.on_request(progress(), &s, t0).is_empty(), "deferred");
        assert!(w.on_request(progress(), &s, t0).is_empty(), "coalesced");
        assert_eq!(w.next_catch_up(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            seen(&w.deliver(&s, t0 + Duration::from_secs(1))),
            vec![(0, 11, vec![2, 11], 0), (-1, 11, vec![], 0)],
            "one answer, after the catch-up"
        );
    }

    #[test]
    fn etcd_3_5_8_never_answers_when_the_catch_up_sends_no_event() {
        let s = store();
        let t0 = Instant::now();
        let mut w = stream(Behaviour::Etcd35Deferred);
        w.on_request(create("quiet", 1), &s, t0);
        assert!(w.on_request(progress(), &s, t0).is_empty());
        assert!(w.deliver(&s, t0 + Duration::from_secs(1)).is_empty());
        assert!(
            w.on_request(progress(), &s, t0 + Duration::from_secs(2))
                .is_empty(),
            "still deferred: ignored"
        );
    }

    #[test]
    fn etcd_3_6_drops_a_request_while_a_watcher_catches_up() {
        let s = store();
        let t0 = Instant::now();
        let mut w = stream(Behaviour::Etcd36);
        w.on_request(create("quiet", 1), &s, t0);
        assert!(w.on_request(progress(), &s, t0).is_empty(), "dropped");
        assert!(w.deliver(&s, t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            seen(&w.on_request(progress(), &s, t0 + Duration::from_secs(1))),
            vec![(-1, 11, vec![], 0)],
            "asked again once synced: answered"
        );
        // A watcher starting in the future holds answers back.
        w.on_request(create("x", 50), &s, t0);
        assert!(w.on_request(progress(), &s, t0).is_empty());
    }

    #[test]
    fn a_compacted_start_revision_is_canceled_at_catch_up() {
        let mut s = store();
        s.compact(5).unwrap();
        let t0 = Instant::now();
        let mut w = stream(Behaviour::Etcd36);
        assert_eq!(
            seen(&w.on_request(create("a", 3), &s, t0)),
            vec![(0, 11, vec![], 0)]
        );
        let out = w.deliver(&s, t0 + Duration::from_secs(1));
        assert_eq!(seen(&out), vec![(0, 11, vec![], 5)]);
        assert!(out[0].canceled);
        assert!(w.watchers.is_empty());
    }

    #[test]
    fn per_watcher_notifications_only_for_quiet_synced_watchers() {
        let mut s = store();
        let t0 = Instant::now();
        let mut w = stream(Behaviour::Etcd36);
        let notify = |key: &str| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.into(),
                progress_notify: true,
                ..Default::default()
            })),
        };
        w.on_request(notify("a"), &s, t0);
        w.on_request(notify("b"), &s, t0);
        s.put(b"a".to_vec(), b"9".to_vec());
        assert_eq!(
            seen(&w.tick(&s, t0)),
            vec![(0, 12, vec![12], 0), (1, 12, vec![], 0)],
            "a had an event since the last tick: no notification"
        );
        assert_eq!(
            seen(&w.tick(&s, t0)),
            vec![(0, 12, vec![], 0), (1, 12, vec![], 0)]
        );
    }
}
