//! What the engine's answers mean to the caller of a [`ResumingWatch`](super::ResumingWatch).
//!
//! Why a pure state: the engine (the drop-in's, `src/stream/driver.rs`) hands the
//! façade etcd's own `WatchResponse`s, already rid of duplicates, re-creations and its own
//! progress answers. What is left is a small translation (events to items, a cancel to the
//! watch's final error) plus the revision the watch stands at, for
//! [`WatchError::Compacted`]'s `requested` and [`WatchState::last_revision`](super::WatchState),
//! tested here without a stream.

use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::Event;

use super::WatchError;

/// One answer of the engine, judged.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Events for the caller, in order (possibly none: a creation, a progress notification).
    Events(Vec<Event>),
    /// The watch ends with this error.
    End(WatchError),
}

/// Where the watch stands.
#[derive(Clone, Debug)]
pub(super) struct Position {
    /// The revision the watch (re)starts from: the start revision, else the one after its
    /// creation's, then the one after the last delivered or confirmed. 0 until created.
    next: i64,
    /// The highest revision delivered, or confirmed by a progress notification.
    last: i64,
    /// Creations the caller's watch saw (the engine's re-creations are counted apart).
    created: u64,
}

// === impl Position ===

impl Position {
    /// A watch starting at `start_revision` (0: from now).
    pub(super) fn new(start_revision: i64) -> Self {
        Self {
            next: start_revision.max(0),
            last: start_revision.saturating_sub(1).max(0),
            created: 0,
        }
    }

    /// The highest revision delivered or confirmed.
    pub(super) fn last(&self) -> i64 {
        self.last
    }

    /// Whether etcd answered the watch's creation.
    pub(super) fn created(&self) -> bool {
        self.created > 0
    }

    /// Judges one answer of the engine.
    pub(super) fn judge(&mut self, resp: WatchResponse) -> Verdict {
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.compact_revision != 0 {
            return Verdict::End(WatchError::Compacted {
                requested: self.next,
                compacted: resp.compact_revision,
            });
        }
        if resp.canceled {
            return Verdict::End(WatchError::Canceled {
                reason: resp.cancel_reason,
            });
        }
        if resp.created {
            self.created = self.created.saturating_add(1);
            if self.next == 0 {
                self.confirm(revision);
            }
        }
        if resp.events.is_empty() {
            // A progress notification of the watch (in order with its events): nothing up to
            // its revision is left.
            if !resp.created {
                self.confirm(revision);
            }
            return Verdict::Events(Vec::new());
        }
        let newest = resp
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
            .max()
            .unwrap_or(0);
        if !resp.fragment {
            self.confirm(newest);
        }
        Verdict::Events(resp.events)
    }

    /// Every event up to `revision` was delivered (or there was none).
    fn confirm(&mut self, revision: i64) {
        if revision > self.last || self.next == 0 {
            self.last = self.last.max(revision);
            // Saturating: revisions come from the member.
            self.next = self.last.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::KeyValue;

    fn at(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision,
            ..Default::default()
        })
    }

    fn event(rev: i64) -> Event {
        Event {
            kv: Some(KeyValue {
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn created(revision: i64) -> WatchResponse {
        WatchResponse {
            header: at(revision),
            created: true,
            ..Default::default()
        }
    }

    fn events(revs: &[i64]) -> WatchResponse {
        WatchResponse {
            header: at(revs.iter().copied().max().unwrap_or(0)),
            events: revs.iter().map(|r| event(*r)).collect(),
            ..Default::default()
        }
    }

    fn revs(v: Verdict) -> Vec<i64> {
        match v {
            Verdict::Events(e) => e
                .iter()
                .map(|e| e.kv.as_ref().expect("kv").mod_revision)
                .collect(),
            Verdict::End(err) => panic!("{err}"),
        }
    }

    fn compacted(p: &mut Position, at: i64) -> i64 {
        match p.judge(WatchResponse {
            canceled: true,
            compact_revision: at,
            ..Default::default()
        }) {
            Verdict::End(WatchError::Compacted { requested, .. }) => requested,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resumes_after_the_last_delivered_revision() {
        let mut p = Position::new(10);
        assert_eq!((p.next, p.last), (10, 9));
        assert!(revs(p.judge(created(100))).is_empty());
        assert_eq!(
            p.next, 10,
            "a start revision is kept over the create header"
        );
        assert!(p.created());
        assert_eq!(revs(p.judge(events(&[11, 12]))), [11, 12]);
        assert_eq!(p.last(), 12);
        assert_eq!(compacted(&mut p, 20), 13);
    }

    #[test]
    fn from_now_pins_the_create_revision() {
        let mut p = Position::new(0);
        p.judge(created(41));
        assert_eq!((p.next, p.last), (42, 41));
    }

    #[test]
    fn a_compacted_start_revision_is_the_error_naming_it() {
        let mut p = Position::new(7);
        assert_eq!(compacted(&mut p, 9), 7);
        assert!(!p.created(), "etcd refused to create it");
    }

    #[test]
    fn a_progress_notification_confirms_its_revision_a_fragment_does_not() {
        let mut p = Position::new(0);
        p.judge(created(5));
        p.judge(WatchResponse {
            header: at(9),
            ..Default::default()
        });
        assert_eq!(p.last(), 9);
        let mut part = events(&[10]);
        part.fragment = true;
        p.judge(part);
        assert_eq!(p.last(), 9, "revision 10 may have more events to come");
        p.judge(events(&[10]));
        assert_eq!(p.last(), 10);
    }

    #[test]
    fn a_cancel_for_another_reason_ends_the_watch_with_etcds_reason() {
        let mut p = Position::new(0);
        let end = p.judge(WatchResponse {
            canceled: true,
            cancel_reason: "etcdserver: permission denied".into(),
            ..Default::default()
        });
        assert!(
            matches!(end, Verdict::End(WatchError::Canceled { ref reason }) if reason.contains("permission")),
            "{end:?}"
        );
    }

    /// Revisions come from the member (and the start revision from the caller): none near
    /// the ends of `i64` may overflow `+ 1` / `- 1`.
    #[test]
    fn revisions_near_the_ends_of_i64_saturate() {
        let p = Position::new(i64::MIN);
        assert_eq!((p.next, p.last), (0, 0));
        let mut p = Position::new(0);
        p.judge(created(i64::MAX));
        assert_eq!((p.next, p.last), (i64::MAX, i64::MAX));
        let mut p = Position::new(1);
        p.judge(events(&[i64::MAX]));
        assert_eq!(p.next, i64::MAX);
        let e = WatchError::Compacted {
            requested: 1,
            compacted: i64::MIN,
        };
        assert!(e.to_string().contains(&i64::MIN.to_string()));
    }
}
