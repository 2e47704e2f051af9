//! Follows one request from dispatch to verdict.

use std::sync::Arc;
use std::time::Instant;

use super::{judge, Classifier, Cluster, NotLeader, Verdict};
use crate::etcd::MethodKind;
use crate::health::{Outcome, Source};
use crate::member::MemberEntry;
use crate::timing::now;

/// Counts a request in its member's load and reports its outcome exactly once.
///
/// Dropped without a verdict (the caller gave up, a stream ended early), it only releases
/// the in-flight slot: a cancelled request says nothing about the member.
#[derive(Debug)]
pub(crate) struct Tracker {
    checker: Arc<dyn Cluster>,
    entry: Arc<MemberEntry>,
    classifier: Arc<Classifier>,
    start: Instant,
    done: bool,
}

impl Tracker {
    /// A request to `entry` starts at `start` (now: the caller's clock reading, shared with
    /// its own bookkeeping); its answers are judged by `classifier`.
    pub(crate) fn start(
        checker: Arc<dyn Cluster>,
        entry: Arc<MemberEntry>,
        classifier: Arc<Classifier>,
        start: Instant,
    ) -> Self {
        entry.load().start();
        entry.metrics().attempt_started();
        Self {
            checker,
            entry,
            classifier,
            start,
            done: false,
        }
    }

    /// The member this request went to.
    pub(crate) fn entry(&self) -> &MemberEntry {
        &self.entry
    }

    /// The health state the verdict goes to.
    pub(crate) fn checker(&self) -> &dyn Cluster {
        &*self.checker
    }

    /// Reports the verdict of an answer with gRPC status `status` to a request of `kind`, and
    /// returns it: a fact about the cluster asks for a leader check and counts for nothing;
    /// an outcome counts as [`judge`] says (a unary answer's time measures the member).
    pub(crate) fn finish_status(
        self,
        status: &tonic::Status,
        kind: MethodKind,
        not_leader: NotLeader,
    ) -> Verdict {
        let verdict = self.classifier.verdict(status, not_leader);
        match verdict {
            Verdict::Cluster { .. } => {
                self.checker.want_leader_check();
                self.finish(None, false);
            }
            Verdict::Member(outcome) => {
                self.finish(
                    outcome.and_then(|o| judge(o, kind)),
                    kind == MethodKind::Unary,
                );
            }
        }
        verdict
    }

    /// Reports the verdict of a non-gRPC HTTP answer with `status` (none unless the
    /// configured lists name it).
    pub(crate) fn finish_http(self, status: u16) {
        let outcome = self.classifier.http(status);
        self.finish(outcome, false);
    }

    /// Reports the verdict; `timed` says whether the elapsed time measures the member's speed.
    pub(crate) fn finish(mut self, outcome: Option<Outcome>, timed: bool) {
        self.done = true;
        self.entry.metrics().attempt_judged(outcome);
        let end = now();
        let rtt = timed.then(|| end.saturating_duration_since(self.start));
        if outcome == Some(Outcome::Success) {
            self.checker.answered(&self.entry, self.start);
        }
        if let Some(outcome) = outcome {
            let status = self
                .checker
                .record_outcome(&self.entry, Source::Passive, outcome, end);
            if outcome.is_failure() && !status.is_healthy() {
                self.entry.load().finish_failed(rtt, end);
                return;
            }
        }
        self.entry.load().finish(rtt, end);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.entry.metrics().attempt_ended();
        if !self.done {
            self.entry.load().finish(None, now());
        }
    }
}
