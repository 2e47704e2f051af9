//! Follows one request from dispatch to verdict.

use std::sync::Arc;
use std::time::Instant;

use super::{judge, Classifier, Cluster, NotLeader, Verdict};
use crate::etcd::MethodKind;
use crate::health::{Outcome, Source};
use crate::member::MemberEntry;
use crate::timing::now;

/// What judges the answers of every request through one balancer: the classifier, and the
/// health state its verdicts go to.
///
/// Why one value: each request's [`Tracker`] holds it, and one shared pointer is one
/// reference count to take and give back per attempt, where the two apart took two.
#[derive(Debug)]
pub(crate) struct Judge {
    checker: Arc<dyn Cluster>,
    classifier: Classifier,
}

impl Judge {
    /// Answers judged by `classifier`, verdicts reported to `checker`.
    pub(crate) fn new(checker: Arc<dyn Cluster>, classifier: Classifier) -> Self {
        Self {
            checker,
            classifier,
        }
    }
}

/// Counts a request in its member's load and reports its outcome exactly once.
///
/// Dropped without a verdict (the caller gave up, a stream ended early), it only releases
/// the in-flight slot: a cancelled request says nothing about the member.
#[derive(Debug)]
pub(crate) struct Tracker {
    judge: Arc<Judge>,
    entry: Arc<MemberEntry>,
    start: Instant,
    done: bool,
}

impl Tracker {
    /// A request to `entry` starts at `start` (now: the caller's clock reading, shared with
    /// its own bookkeeping); its answers are judged by `judge`.
    pub(crate) fn start(judge: Arc<Judge>, entry: Arc<MemberEntry>, start: Instant) -> Self {
        entry.load().start();
        entry.metrics().attempt_started();
        Self {
            judge,
            entry,
            start,
            done: false,
        }
    }

    /// The member this request went to.
    pub(crate) fn entry(&self) -> &MemberEntry {
        &self.entry
    }

    /// The member this request went to, shared: for what outlives a borrow of the tracker.
    pub(crate) fn shared_entry(&self) -> &Arc<MemberEntry> {
        &self.entry
    }

    /// The health state the verdict goes to.
    pub(crate) fn checker(&self) -> &dyn Cluster {
        &*self.judge.checker
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
        let verdict = self.judge.classifier.verdict(status, not_leader);
        match verdict {
            Verdict::Cluster { .. } => {
                self.judge.checker.want_leader_check();
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
        let outcome = self.judge.classifier.http(status);
        self.finish(outcome, false);
    }

    /// Reports the verdict; `timed` says whether the elapsed time measures the member's speed.
    pub(crate) fn finish(mut self, outcome: Option<Outcome>, timed: bool) {
        self.done = true;
        self.entry.metrics().attempt_judged(outcome);
        let end = now();
        let rtt = timed.then(|| end.saturating_duration_since(self.start));
        if outcome == Some(Outcome::Success) {
            self.judge.checker.answered(&self.entry, self.start);
        }
        if let Some(outcome) = outcome {
            let status =
                self.judge
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
