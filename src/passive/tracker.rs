//! Follows one request from dispatch to verdict.

use std::sync::Arc;
use std::time::Instant;

use crate::checker::{now, Inner, MemberEntry, FAILURE_PENALTY};
use crate::health::{Outcome, Source};

/// Counts a request in its member's load and reports its outcome exactly once.
///
/// Dropped without a verdict (the caller gave up, a stream ended early), it only releases
/// the in-flight slot: a cancelled request says nothing about the member.
#[derive(Debug)]
pub(crate) struct Tracker {
    inner: Arc<Inner>,
    entry: Arc<MemberEntry>,
    start: Instant,
    done: bool,
}

impl Tracker {
    pub(crate) fn start(inner: Arc<Inner>, entry: Arc<MemberEntry>) -> Self {
        entry.load.start();
        Self {
            inner,
            entry,
            start: now(),
            done: false,
        }
    }

    /// The member this request went to.
    pub(crate) fn entry(&self) -> &MemberEntry {
        &self.entry
    }

    /// The passive classifier in force.
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Reports the verdict; `timed` says whether the elapsed time measures the member's speed.
    pub(crate) fn finish(mut self, outcome: Option<Outcome>, timed: bool) {
        self.done = true;
        let end = now();
        let mut rtt = timed.then(|| end.saturating_duration_since(self.start));
        if outcome == Some(Outcome::Success) {
            self.inner.answered(&self.entry, self.start);
        }
        if let Some(outcome) = outcome {
            let status = self.inner.record(&self.entry, Source::Passive, outcome);
            if outcome.is_failure() && !status.is_healthy() {
                // Panic mode still routes here: a member that fails fast must not look fast.
                rtt = Some(rtt.unwrap_or_default().max(FAILURE_PENALTY));
            }
        }
        self.entry.load.finish(rtt, end);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.done {
            self.entry.load.finish(None, now());
        }
    }
}
