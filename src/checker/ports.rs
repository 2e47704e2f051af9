//! The narrow ports the rooms below the health state talk through: `probe::Cluster`,
//! `discovery::Cluster` and `passive::Cluster` are theirs (each says what its room needs),
//! and the state implements them here. So those rooms never import this one, and this one
//! may start them without a cycle.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::Uri;
use tokio::sync::{broadcast, watch, Notify};

use super::{HealthChecker, Inner};
use crate::config::Config;
use crate::event::HealthEvent;
use crate::health::{Outcome, Source, Status};
use crate::leader::{Reply, Report};
use crate::member::{Member, MemberEntry, Origin, ProbeReport};

// === impl HealthChecker: the ports ===

impl HealthChecker {
    /// The state as the probe tasks hold it: they do not keep it alive.
    pub(crate) fn for_probes(&self) -> crate::probe::WeakCluster {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        weak
    }

    /// The state as the discovery tasks hold it: they do not keep it alive.
    pub(crate) fn for_discovery(&self) -> crate::discovery::WeakCluster {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        weak
    }

    /// The state as discovery sees it (its tests drive a pass by hand).
    #[cfg(test)]
    pub(crate) fn discovery(&self) -> Arc<dyn crate::discovery::Cluster> {
        self.inner.clone()
    }

    /// The state as a request reports its verdict to it (a pointer copy: no allocation).
    pub(crate) fn verdicts(&self) -> Arc<dyn crate::passive::Cluster> {
        self.inner.clone()
    }
}

// === impl Inner: the ports ===

impl crate::probe::Cluster for Inner {
    fn config(&self) -> &Config {
        &self.config
    }

    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<&crate::tls::Tls> {
        self.tls.as_ref()
    }

    fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        Inner::entries(self)
    }

    fn entry(&self, index: usize) -> Option<Arc<MemberEntry>> {
        Inner::entry(self, index)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        Inner::changes(self)
    }

    fn leader_wanted(&self) -> Arc<Notify> {
        Inner::leader_wanted(self)
    }

    fn want_leader_check(&self) {
        Inner::want_leader_check(self)
    }

    fn budget(&self) -> &crate::budget::RetryBudget {
        Inner::budget(self)
    }

    fn member_ids(&self) -> HashMap<usize, u64> {
        Inner::member_ids(self)
    }

    fn learn_leader(&self, replies: &[(usize, Reply)]) {
        Inner::learn_leader(self, replies)
    }

    fn apply_leader_round(&self, replies: Vec<(usize, Reply)>, elapsed: Duration) {
        Inner::apply_leader_round(self, replies, elapsed)
    }

    fn leader_unsettled(&self) -> bool {
        Inner::leader_unsettled(self)
    }

    fn admits(&self, report: &Report) -> Result<(), String> {
        Inner::admits(self, report)
    }

    fn reported_cluster(&self, index: usize, id: u64) -> (HashMap<usize, u64>, usize) {
        Inner::reported_cluster(self, index, id)
    }

    fn record_probe(&self, entry: &MemberEntry, report: ProbeReport) {
        Inner::record_probe(self, entry, report)
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        Inner::next_deadline(self)
    }

    fn handle_timeout(&self) {
        Inner::handle_timeout(self)
    }
}

impl crate::discovery::Cluster for Inner {
    fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    fn discovery_wanted(&self) -> (Arc<Notify>, Arc<Notify>) {
        Inner::discovery_wanted(self)
    }

    fn seeds(&self) -> Vec<Uri> {
        Inner::seeds(self)
    }

    fn resolver(&self) -> Arc<dyn crate::resolve::Resolve> {
        Inner::resolver(self)
    }

    fn add_found(
        &self,
        uri: Uri,
        origin: Origin,
        pending: bool,
        reason: &str,
    ) -> Result<Member, Member> {
        Inner::add_found(self, uri, origin, pending, reason)
    }

    fn drop_member(&self, uri: &Uri, reason: &str) -> Option<Member> {
        Inner::drop_member(self, uri, reason)
    }

    fn note_member_id(&self, index: usize, id: u64) {
        Inner::note_member_id(self, index, id)
    }

    fn cluster_id(&self, answered: Option<u64>) -> Option<u64> {
        Inner::cluster_id(self, answered)
    }
}

impl crate::passive::Cluster for Inner {
    fn answered(&self, entry: &MemberEntry, sent: Instant) {
        Inner::answered(self, entry, sent)
    }

    fn record_outcome(
        &self,
        entry: &MemberEntry,
        source: Source,
        outcome: Outcome,
        now: Instant,
    ) -> Status {
        Inner::record_outcome(self, entry, source, outcome, now)
    }

    fn want_leader_check(&self) {
        Inner::want_leader_check(self)
    }

    fn hangs(&self, entry: &MemberEntry, since: Instant) -> bool {
        Inner::hangs(self, entry, since)
    }

    fn quiet_since(&self, since: Instant) -> bool {
        Inner::quiet_since(self, since)
    }

    fn slowest_peer_latency(&self, entry: &MemberEntry) -> Option<Duration> {
        Inner::slowest_peer_latency(self, entry)
    }

    fn record_hang(&self, entry: &MemberEntry) {
        Inner::record_hang(self, entry)
    }
}
