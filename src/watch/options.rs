//! What to watch and how hard to try.

use std::time::Duration;

use crate::stream::resume::{reopen_setters, ReopenOptions};

/// What a [`ResumingWatch`](super::ResumingWatch) watches, and its failure handling.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub(super) key: Vec<u8>,
    pub(super) range_end: Vec<u8>,
    pub(super) start_revision: i64,
    pub(super) prev_kv: bool,
    pub(super) idle_timeout: Duration,
    pub(super) reopen: ReopenOptions,
    pub(super) buffer: usize,
}

impl WatchOptions {
    /// Watches `key` alone, from now on.
    ///
    /// Defaults: idle timeout 10 s, backoff 50 ms doubling to 1 s, `hasleader` sent, a failed
    /// member avoided for 10 s, 256 events buffered.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            range_end: Vec::new(),
            start_revision: 0,
            prev_kv: false,
            idle_timeout: Duration::from_secs(10),
            reopen: ReopenOptions::default(),
            buffer: 256,
        }
    }

    /// Watches every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.range_end = prefix_end(&self.key);
        self
    }

    /// Watches the range `[key, range_end)` (etcd's convention: `"\0"` means every key from
    /// `key` on).
    pub fn with_range_end(mut self, range_end: impl Into<Vec<u8>>) -> Self {
        self.range_end = range_end.into();
        self
    }

    /// Starts at `revision` (inclusive) instead of now; a compacted one is an error.
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision.max(0);
        self
    }

    /// Asks etcd for the previous key-value with every event.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// After about this long without any response (event or progress notification), the
    /// member is presumed stuck and the watch re-created elsewhere. Half of it is the stream
    /// engine's stream timeout: a quiet stream is asked for progress after about half of it
    /// (jittered up to a fifth earlier), asked again a quarter later (etcd 3.5.13+ drops a
    /// request made while the watch catches up), and moved when nothing was heard for half of
    /// it after the first request; an opening or a creation left unanswered for half of it
    /// moves too. A healthy member that is catching the watch up is not moved for its silence.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    reopen_setters!(
        ResumingWatch,
        "A watch proves healthy once etcd answers `created`."
    );

    /// How many events may wait for the caller (at least 1).
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }
}

/// The end of the range of keys starting with `key`.
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
