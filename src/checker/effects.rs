//! Carrying out the cluster state's effects: the one lock is taken once per event, the members'
//! entries and mirrors are written under it (atomic stores only), and everything else
//! (publishing, metrics, the application's sink, restarting a load, ending requests in
//! flight) happens after it, with no lock held.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use http::Uri;

use super::{Inner, Shared};
use crate::cluster::{ClusterState, Effect, Effects, Event, Touched};
use crate::event::{EventKind, HealthEvent};
use crate::health::{Outcome, Status};
use crate::member::{Member, MemberEntry, Origin, OwnEndpoint};
use crate::timing::now;

// === impl Inner: effects ===

impl Inner {
    /// The one lock.
    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member unless its URL is present (then `Err` with the member there).
    pub(super) fn join(
        &self,
        uri: Uri,
        endpoint: Option<OwnEndpoint>,
        origin: Origin,
        pending: bool,
        seed: bool,
        reason: &str,
    ) -> Result<Member, Member> {
        let event = Event::Join {
            uri: uri.clone(),
            origin,
            pending,
            seed,
            reason: reason.to_owned(),
        };
        let (effects, existing) = self.run_then(event, endpoint, |state| {
            state.find(&uri).map(|m| m.member().clone())
        });
        let added = effects.list.iter().find_map(|e| match e {
            Effect::Added { member, .. } => Some(member.clone()),
            _ => None,
        });
        self.execute(effects);
        match added {
            Some(member) => Ok(member),
            // The state adds a member it does not have: it had this one.
            None => Err(existing.expect("a member not added was present")),
        }
    }

    /// Drops the member reached at `uri`; `unseed`: the caller removed it.
    pub(super) fn leave(&self, uri: &Uri, unseed: bool, reason: &str) -> Option<Member> {
        let event = Event::Leave {
            uri: uri.clone(),
            unseed,
            reason: reason.to_owned(),
        };
        let (effects, ()) = self.run_then(event, None, |_| ());
        let removed = effects.list.iter().find_map(|e| match e {
            Effect::Removed { member, .. } => Some(member.clone()),
            _ => None,
        });
        self.execute(effects);
        removed
    }

    /// Feeds `event` to the state and carries out its effects.
    pub(super) fn run(&self, event: Event, endpoint: Option<OwnEndpoint>) {
        let (effects, ()) = self.run_then(event, endpoint, |_| ());
        self.execute(effects);
    }

    /// Under the lock: feeds `event` to the state, writes the members' entries and mirrors it
    /// changed (atomic stores: no other lock), and reads `then` of the state after it. The
    /// effects are left for [`execute`](Self::execute), after the lock.
    pub(super) fn run_then<R>(
        &self,
        event: Event,
        endpoint: Option<OwnEndpoint>,
        then: impl FnOnce(&ClusterState) -> R,
    ) -> (Effects, R) {
        self.run_then_at(event, endpoint, now(), then)
    }

    /// [`run_then`](Self::run_then) at `now`, the caller's reading of the clock (a request's
    /// verdict reads it once, for its load and its outcome alike).
    pub(super) fn run_then_at<R>(
        &self,
        event: Event,
        endpoint: Option<OwnEndpoint>,
        now: std::time::Instant,
        then: impl FnOnce(&ClusterState) -> R,
    ) -> (Effects, R) {
        let mut shared = self.lock();
        self.fold_quiet_successes(&mut shared);
        let effects = shared.state.handle(event, now);
        let mut endpoint = endpoint;
        for effect in &effects.list {
            match effect {
                Effect::Added { member, origin, .. } => {
                    let mirror = shared
                        .state
                        .member(member.index())
                        .map(|m| m.mirror())
                        .expect("an added member is in the state");
                    let entry = Arc::new(MemberEntry::new(
                        member.clone(),
                        endpoint.take(),
                        origin.clone(),
                        mirror,
                        now,
                    ));
                    let mut next: Vec<_> = shared.entries.iter().cloned().collect();
                    next.push(entry);
                    shared.entries = Arc::new(next);
                }
                Effect::Removed { member, .. } => {
                    let mut next: Vec<_> = shared.entries.iter().cloned().collect();
                    next.retain(|e| {
                        let stays = e.member() != member;
                        if !stays {
                            e.metrics().left();
                        }
                        stays
                    });
                    shared.entries = Arc::new(next);
                }
                Effect::RestartLoad { index } => {
                    if let Some(e) = shared.entries.iter().find(|e| e.member().index() == *index) {
                        e.returned();
                    }
                }
                _ => {}
            }
        }
        let shared = &*shared;
        let mirror = |e: &Arc<MemberEntry>| {
            if let Some(m) = shared.state.member(e.member().index()) {
                e.mirror(m.mirror());
            }
        };
        match effects.touched {
            Touched::None => {}
            Touched::One(index) => {
                if let Some(e) = shared.entries.iter().find(|e| e.member().index() == index) {
                    mirror(e);
                }
            }
            Touched::All => shared.entries.iter().for_each(mirror),
        }
        let after = then(&shared.state);
        (effects, after)
    }

    /// Carries out what the state asked for, with no lock held.
    pub(super) fn execute(&self, effects: Effects) {
        if effects.list.is_empty() {
            return;
        }
        let entries = self.entries();
        let entry = |index: usize| entries.iter().find(|e| e.member().index() == index);
        for effect in &effects.list {
            match effect {
                Effect::Added {
                    member,
                    origin,
                    pending,
                    reason,
                } => {
                    tracing::info!(member = %member, %origin, pending, reason, "member added")
                }
                Effect::Removed {
                    member,
                    origin,
                    reason,
                } => {
                    tracing::info!(member = %member, origin = %origin, reason, "member removed")
                }
                Effect::Status { member, transition } => {
                    let t = transition;
                    if let Some(e) = entry(member.index()) {
                        e.metrics().transition(t);
                    }
                    match t.to {
                        Status::Unhealthy => tracing::warn!(
                            member = %member,
                            source = %t.source,
                            reason = %t.outcome,
                            count = t.count,
                            ejected_for = ?t.ejected_for,
                            ejections = t.ejections,
                            "member ejected"
                        ),
                        Status::Healthy => tracing::info!(
                            member = %member,
                            source = %t.source,
                            count = t.count,
                            "member re-admitted"
                        ),
                    }
                }
                Effect::RestartLoad { index } => {
                    if let Some(e) = entry(*index) {
                        e.load()
                            .reset(slowest_peer_latency(&entries, *index), now());
                    }
                }
                Effect::CutOff { index, report } => {
                    if let Some(e) = entry(*index) {
                        e.set_last_probe(report.clone());
                    }
                }
                Effect::HangCounted { index } => {
                    if let Some(e) = entry(*index) {
                        e.metrics().attempt_judged(Some(Outcome::Hang));
                    }
                }
                Effect::Abandon { index } => {
                    if let Some(e) = entry(*index) {
                        tracing::debug!(member = %e.member(), "requests in flight on the member are abandoned");
                        e.abandon();
                    }
                }
                Effect::AllUnhealthy { .. } => {
                    tracing::error!(policy = ?self.config.all_unhealthy, "every etcd member is unhealthy");
                }
                Effect::LeaderChanged {
                    leader_id, term, ..
                } => match leader_id {
                    Some(id) => {
                        tracing::info!(leader = %format_args!("{id:x}"), term, "leader known")
                    }
                    None => tracing::warn!(term, "no member knows a leader: election"),
                },
                Effect::EjectionEnded { index } => {
                    if let Some(e) = entry(*index) {
                        tracing::debug!(member = %e.member(), "ejection ended: due for a re-admission probe");
                    }
                }
                Effect::WantDiscovery => self.wanted.discovery.notify_one(),
                Effect::WantDns => self.wanted.dns.notify_one(),
            }
            if let Some((Some(member), kind)) = effect.event() {
                self.publish(&entries, member.clone(), kind);
            }
        }
    }

    fn publish(&self, entries: &[Arc<MemberEntry>], member: Member, kind: EventKind) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        let healthy = entries.iter().filter(|e| e.is_healthy()).count();
        let change = match &kind {
            EventKind::Added { origin, .. } => crate::metrics::Change::Added(origin.source_name()),
            EventKind::Removed { origin, .. } => {
                crate::metrics::Change::Removed(origin.source_name())
            }
            EventKind::LeaderChanged { leader_id, .. } => crate::metrics::Change::Leader {
                known: leader_id.is_some(),
            },
            EventKind::StatusChanged(_) | EventKind::AllUnhealthy => crate::metrics::Change::Other,
        };
        self.metrics.published(healthy, entries.len(), change);
        let event = HealthEvent { member, kind };
        if let Some(sink) = &self.hooks.sink {
            sink.event(&event);
        }
        let _ = self.events.send(event);
    }
}

/// The latency estimate of the slowest member in rotation other than `index`, if any
/// completed a request.
pub(super) fn slowest_peer_latency(entries: &[Arc<MemberEntry>], index: usize) -> Option<Duration> {
    entries
        .iter()
        .filter(|e| e.member().index() != index && e.is_healthy())
        .filter_map(|e| e.load().latency())
        .max()
}
