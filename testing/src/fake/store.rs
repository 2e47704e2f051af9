//! The key-value history every fake member of one [`FakeCluster`](super::FakeCluster) serves:
//! one store, as if the members were a perfectly replicated cluster (the fake models watch
//! streams, not raft).
//!
//! It keeps what etcd's mvcc keeps: the current revision, the events of every revision since
//! the last compaction, and the compaction revision (`server/storage/mvcc/kvstore.go`).

use std::collections::BTreeMap;

use etcd_health::proto::mvccpb::{event::EventType, Event, KeyValue};
use tokio::sync::watch;

/// Why a request on the store failed, with etcd's own messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// `mvcc: required revision has been compacted`.
    Compacted,
    /// `mvcc: required revision is a future revision`.
    Future,
}

impl StoreError {
    /// etcd's message (`server/storage/mvcc/kvstore.go`: `ErrCompacted`, `ErrFutureRev`).
    pub(crate) fn message(&self) -> &'static str {
        match self {
            StoreError::Compacted => "etcdserver: mvcc: required revision has been compacted",
            StoreError::Future => "etcdserver: mvcc: required revision is a future revision",
        }
    }
}

/// The shared history.
#[derive(Debug)]
pub(crate) struct Store {
    rev: i64,
    compacted: i64,
    /// Events in revision order, none below `compacted`.
    log: Vec<Event>,
    /// Live keys now.
    live: BTreeMap<Vec<u8>, KeyValue>,
    /// The current revision, for the watch streams to wake on.
    notify: watch::Sender<i64>,
}

/// Whether `key` is in `[start, end)` as etcd reads a range (`end` empty: the key alone;
/// `end == [0]`: every key from `start`).
pub(crate) fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

// === impl Store ===

impl Store {
    /// A store at revision 1, as a new etcd cluster.
    pub(crate) fn new() -> Self {
        Self {
            rev: 1,
            compacted: 0,
            log: Vec::new(),
            live: BTreeMap::new(),
            notify: watch::channel(1).0,
        }
    }

    /// The current revision.
    pub(crate) fn rev(&self) -> i64 {
        self.rev
    }

    /// The compaction revision (0: never compacted).
    pub(crate) fn compacted(&self) -> i64 {
        self.compacted
    }

    /// Wakes on every new revision.
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.notify.subscribe()
    }

    /// Puts `key = value`; returns the new revision and the previous value.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> (i64, Option<KeyValue>) {
        self.rev += 1;
        let prev = self.live.get(&key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            create_revision: prev.as_ref().map_or(self.rev, |p| p.create_revision),
            mod_revision: self.rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease: 0,
        };
        self.live.insert(key, kv.clone());
        self.log.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        self.notify.send_replace(self.rev);
        (self.rev, prev)
    }

    /// Deletes the keys of `[key, end)`; returns the revision after it and what was deleted
    /// (no revision is used when nothing was).
    pub(crate) fn delete(&mut self, key: &[u8], end: &[u8]) -> (i64, Vec<KeyValue>) {
        let gone: Vec<KeyValue> = self
            .live
            .values()
            .filter(|kv| in_range(&kv.key, key, end))
            .cloned()
            .collect();
        if gone.is_empty() {
            return (self.rev, gone);
        }
        self.rev += 1;
        for prev in &gone {
            self.live.remove(&prev.key);
            self.log.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: prev.key.clone(),
                    mod_revision: self.rev,
                    ..Default::default()
                }),
                prev_kv: Some(prev.clone()),
            });
        }
        self.notify.send_replace(self.rev);
        (self.rev, gone)
    }

    /// The live keys of `[key, end)` now.
    pub(crate) fn range(&self, key: &[u8], end: &[u8]) -> Vec<KeyValue> {
        self.live
            .values()
            .filter(|kv| in_range(&kv.key, key, end))
            .cloned()
            .collect()
    }

    /// Forgets the history below `rev` (etcd's `Compact`).
    pub(crate) fn compact(&mut self, rev: i64) -> Result<(), StoreError> {
        if rev <= self.compacted {
            return Err(StoreError::Compacted);
        }
        if rev > self.rev {
            return Err(StoreError::Future);
        }
        self.compacted = rev;
        self.log
            .retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= rev));
        Ok(())
    }

    /// The events of `[key, end)` with revisions in `from..=self.rev()`; `Err` if `from` was
    /// compacted (etcd: a watcher whose `minRev` is below the compaction revision).
    pub(crate) fn events(&self, key: &[u8], end: &[u8], from: i64) -> Result<Vec<Event>, i64> {
        if from < self.compacted {
            return Err(self.compacted);
        }
        let start = self
            .log
            .partition_point(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision) < from);
        Ok(self.log[start..]
            .iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| in_range(&kv.key, key, end)))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revs(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    }

    #[test]
    fn events_since_a_revision_and_compaction() {
        let mut s = Store::new();
        s.put(b"a".to_vec(), b"1".to_vec());
        s.put(b"b".to_vec(), b"1".to_vec());
        s.put(b"a".to_vec(), b"2".to_vec());
        assert_eq!(s.rev(), 4);
        assert_eq!(revs(&s.events(b"a", b"", 0).unwrap()), vec![2, 4]);
        assert_eq!(revs(&s.events(b"a", b"", 3).unwrap()), vec![4]);
        assert_eq!(revs(&s.events(b"a", &[0], 0).unwrap()), vec![2, 3, 4]);
        assert_eq!(s.compact(3), Ok(()));
        assert_eq!(s.events(b"a", b"", 2), Err(3));
        assert_eq!(revs(&s.events(b"a", b"", 3).unwrap()), vec![4]);
        assert_eq!(s.compact(3), Err(StoreError::Compacted));
        assert_eq!(s.compact(9), Err(StoreError::Future));
        let (rev, gone) = s.delete(b"a", b"c");
        assert_eq!((rev, gone.len()), (5, 2));
        assert_eq!(s.delete(b"a", b"").0, 5, "nothing deleted: no revision");
        assert!(s.range(b"a", &[0]).is_empty());
    }
}
