//! [`ClusterState`]: the members, their health, the leader and the cluster's identity; events
//! in, effects out.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::event::EventKind;
use crate::health::{Ejection, HealthState, Outcome, Source, Thresholds, Transition};
use crate::leader::{LeaderSnapshot, LeaderView, Reply, Report};
use crate::member::{Member, Mirror, Origin, ProbeReport};

/// The rules the state applies, fixed by the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    /// Thresholds of the active checks (probes, leader checks).
    active: Thresholds,
    /// Thresholds of the passive checks (requests' answers, hangs).
    passive: Thresholds,
    /// How long an ejected member stays out.
    ejection: Ejection,
    /// Whether hangs count at all (`hang.threshold` above 0).
    hangs: bool,
    /// How long a member must look cut off before a leader check ejects it.
    confirm: Duration,
}

/// One member as the state knows it.
#[derive(Clone, Debug)]
pub(crate) struct MemberState {
    member: Member,
    origin: Origin,
    health: HealthState,
    /// Whether it was ever in rotation: members found by `MemberList` (or a custom source)
    /// start out of it, pending admission.
    admitted: bool,
    /// The state's timer on its ejection: when it ends (the health machine's `ejected_until`,
    /// set only when that lies after the event that ejected it). [`Event::Timeout`] at or after
    /// it ends the ejection ([`Effect::EjectionEnded`]); a re-admission (or the member leaving)
    /// drops it.
    ejection: Option<Instant>,
}

/// Everything the stack knows of the cluster.
#[derive(Debug)]
pub(crate) struct ClusterState {
    rules: Rules,
    /// In index order.
    members: Vec<MemberState>,
    next_index: usize,
    /// The endpoints the caller gave, in order: discovery never drops them.
    seeds: Vec<Uri>,
    /// Who leads, and the cluster the leader's followers belong to.
    leader: LeaderView,
    /// The cluster id each member last reported to a `status` probe (most members' id decides
    /// whether one member belongs; the leader view's id decides admission).
    reported: HashMap<usize, u64>,
    /// When a leader check last saw the leader change or an election begin.
    leader_changed_at: Option<Instant>,
    /// The jitter of ejections.
    rng: rand::rngs::StdRng,
}

/// One input to the state.
#[derive(Debug)]
pub(crate) enum Event {
    /// An outcome for a member: a request's answer, or a probe of the application's own.
    Outcome {
        /// The member's index.
        index: usize,
        /// Which check saw it.
        source: Source,
        /// What it saw.
        outcome: Outcome,
    },
    /// An active probe's report.
    Probe {
        /// The member's index.
        index: usize,
        /// Its outcome (the handle keeps the detail for snapshots).
        outcome: Outcome,
    },
    /// A request sat on a member while a peer answered one sent after it.
    Hang {
        /// The member's index.
        index: usize,
    },
    /// A round of leader checks ended.
    LeaderRound {
        /// Each member's answer, by index.
        replies: Vec<(usize, Reply)>,
        /// How long the round took.
        elapsed: Duration,
        /// The wall-clock time of the reports of members found cut off.
        at: SystemTime,
    },
    /// A leader check under way already heard these answers.
    LeaderHeard {
        /// Each member's answer so far, by index.
        replies: Vec<(usize, Reply)>,
    },
    /// A member joins (given by the caller, or found by discovery).
    Join {
        /// Its URL (without userinfo).
        uri: Uri,
        /// How it came.
        origin: Origin,
        /// Whether it starts out of rotation, to be admitted by the probes.
        pending: bool,
        /// Whether the caller gave it (discovery never drops seeds).
        seed: bool,
        /// Why, for the event.
        reason: String,
    },
    /// A member leaves.
    Leave {
        /// Its URL.
        uri: Uri,
        /// Whether the caller removed it (it stops being a seed).
        unseed: bool,
        /// Why, for the event.
        reason: String,
    },
    /// Discovery learned a member's etcd id.
    MemberId {
        /// The member's index.
        index: usize,
        /// Its etcd id.
        id: u64,
    },
    /// A `MemberList` answer came from this cluster.
    ClusterListed {
        /// The cluster's id.
        id: u64,
    },
    /// A member's `status` probe reported its cluster.
    ClusterReported {
        /// The member's index.
        index: usize,
        /// The cluster's id.
        id: u64,
    },
    /// Time passed: the timers [`ClusterState::poll_timeout`] named that are due fire.
    Timeout,
}

/// What the handle must do after an event, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// A member joined: make its entry, then publish [`EventKind::Added`].
    Added {
        /// The member.
        member: Member,
        /// How it came.
        origin: Origin,
        /// Whether it starts out of rotation.
        pending: bool,
        /// Why.
        reason: String,
    },
    /// A member left: drop its entry, then publish [`EventKind::Removed`].
    Removed {
        /// The member.
        member: Member,
        /// How it had come.
        origin: Origin,
        /// Why.
        reason: String,
    },
    /// A member's status changed: count and publish it (the mirror is already written).
    Status {
        /// The member.
        member: Member,
        /// The change.
        transition: Transition,
    },
    /// A member was put back into rotation: its load estimate restarts (from its slowest
    /// healthy peer's latency), and balancers make their channel to it anew.
    RestartLoad {
        /// The member's index.
        index: usize,
    },
    /// A leader check found the member cut off from the quorum: `report` becomes its last
    /// probe report (its failure is recorded next).
    CutOff {
        /// The member's index.
        index: usize,
        /// What the leader check saw.
        report: ProbeReport,
    },
    /// A hang was counted against the member (its metrics).
    HangCounted {
        /// The member's index.
        index: usize,
    },
    /// The member sits on requests (it hangs, or was cut off from the quorum): those in flight
    /// on it end now.
    Abandon {
        /// The member's index.
        index: usize,
    },
    /// Every member is unhealthy.
    AllUnhealthy {
        /// The member whose ejection made it so.
        member: Member,
    },
    /// The leader changed or an election began.
    LeaderChanged {
        /// The new leader when it is one of ours, else the first member (none: no member).
        member: Option<Member>,
        /// The leader's etcd id, `None` in an election.
        leader_id: Option<u64>,
        /// The highest term seen.
        term: u64,
    },
    /// The member's ejection ended ([`Event::Timeout`]): a success may re-admit it now, so it
    /// is due for a re-admission probe (its mirror no longer says ejected, and the probe
    /// schedule stops holding it back).
    EjectionEnded {
        /// The member's index.
        index: usize,
    },
    /// A new seed: discovery should look again now.
    WantDiscovery,
    /// The seeds changed: DNS discovery should resolve them again now.
    WantDns,
}

/// Which members' mirrors an event may have changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Touched {
    /// None.
    #[default]
    None,
    /// The member of this index.
    One(usize),
    /// Any of them.
    All,
}

/// The effects of one event, in order, and the members whose mirrors to write again.
///
/// Empty (no allocation) for the common event: a success on a healthy member.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// What to do, in order.
    pub(crate) list: Vec<Effect>,
    /// Whose mirror to write again.
    pub(crate) touched: Touched,
}

// === impl Rules ===

impl Rules {
    /// The rules `config` sets.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            active: Thresholds::active(&config.checks.active),
            passive: Thresholds::passive(&config.checks.passive, config.hang.threshold),
            ejection: Ejection::new(&config.ejection),
            hangs: config.hang.threshold != 0,
            confirm: config.leader.election_interval * 2,
        }
    }
}

// === impl MemberState ===

impl MemberState {
    /// The member.
    pub(crate) fn member(&self) -> &Member {
        &self.member
    }

    /// Its health machine.
    pub(crate) fn health(&self) -> &HealthState {
        &self.health
    }

    /// Whether it is in rotation.
    pub(crate) fn is_healthy(&self) -> bool {
        self.health.status().is_healthy()
    }

    /// Found by discovery and never in rotation yet: it must prove it belongs to the cluster
    /// before it takes a request.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(
            self.origin,
            Origin::MemberList { .. } | Origin::Custom { .. }
        ) && !self.admitted
    }

    /// What the request path reads of it.
    pub(crate) fn mirror(&self) -> Mirror {
        let totals = self.health.totals();
        Mirror {
            healthy: self.is_healthy(),
            pending: self.is_pending(),
            failed_probes: totals[1] + totals[2] + totals[3],
            ejected: self.ejection.is_some(),
            settled: self.is_healthy() && !self.is_pending() && self.health.is_settled(),
        }
    }

    /// When its ejection ends, while the state's timer on it runs (see
    /// [`ClusterState::poll_timeout`]).
    #[cfg(test)]
    pub(crate) fn ejection_ends(&self) -> Option<Instant> {
        self.ejection
    }
}

// === impl Effects ===

impl Effects {
    fn push(&mut self, effect: Effect) {
        self.list.push(effect);
    }

    fn touch(&mut self, index: usize) {
        self.touched = match self.touched {
            Touched::None => Touched::One(index),
            Touched::One(i) if i == index => Touched::One(i),
            _ => Touched::All,
        };
    }
}

// === impl ClusterState ===

impl ClusterState {
    /// No members yet, under `rules`; `seed` seeds the ejection jitter.
    pub(crate) fn new(rules: Rules, seed: u64) -> Self {
        Self {
            rules,
            members: Vec::new(),
            next_index: 0,
            seeds: Vec::new(),
            leader: LeaderView::default(),
            reported: HashMap::new(),
            leader_changed_at: None,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    /// Takes one event at `now`; returns what the handle must do.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Effects {
        let mut effects = Effects::default();
        match event {
            Event::Outcome {
                index,
                source,
                outcome,
            } => {
                self.record(index, source, outcome, now, &mut effects);
            }
            Event::Probe { index, outcome } => {
                self.record(index, Source::Active, outcome, now, &mut effects);
            }
            Event::Hang { index } => self.hang(index, now, &mut effects),
            Event::LeaderRound {
                replies,
                elapsed,
                at,
            } => self.leader_round(&replies, elapsed, at, now, &mut effects),
            Event::LeaderHeard { replies } => {
                if self.leader.learn(&replies, self.members.len()) {
                    tracing::debug!(
                        "leader learned before the slowest members answered the leader check"
                    );
                    self.leader_changed(now, &mut effects);
                }
            }
            Event::Join {
                uri,
                origin,
                pending,
                seed,
                reason,
            } => self.join(uri, origin, pending, seed, reason, now, &mut effects),
            Event::Leave {
                uri,
                unseed,
                reason,
            } => self.leave(&uri, unseed, reason, &mut effects),
            Event::MemberId { index, id } => self.leader.note_id(index, id),
            Event::ClusterListed { id } => self.leader.note_cluster(id),
            Event::ClusterReported { index, id } => {
                if self.position(index).is_some() {
                    self.reported.insert(index, id);
                }
            }
            Event::Timeout => self.timeout(now, &mut effects),
        }
        effects
    }

    /// The earliest time at which the state changes, or wants something done, with time alone
    /// (none: nothing until the next event). The driver feeds [`Event::Timeout`] at or after
    /// it; earlier than `now` only while that is due.
    ///
    /// Its one source: the end of each ejected member's ejection (its health machine's
    /// `ejected_until`, the earliest time a success may re-admit it), when it lies after the
    /// event that ejected the member: from then on the member is due for a re-admission probe.
    ///
    /// Not sources, because time alone changes nothing there: a member suspected of being cut
    /// off (only a leader round confirms it, `confirm` after it was first suspected; the
    /// rounds' pace is `leader::LeaderChecks`'), the length of an election and the leader's
    /// last change (`no_leader_since`, `leader_changed_at`: measured against the `now` of a
    /// snapshot or a request's send time, never awaited), and the forgiveness of a member's
    /// past ejections (judged at its next ejection).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.members.iter().filter_map(|m| m.ejection).min()
    }

    /// The members, in index order.
    pub(crate) fn members(&self) -> &[MemberState] {
        &self.members
    }

    /// The member of `index`, if present.
    pub(crate) fn member(&self, index: usize) -> Option<&MemberState> {
        self.position(index).map(|p| &self.members[p])
    }

    /// The member reached at `uri`, if present.
    pub(crate) fn find(&self, uri: &Uri) -> Option<&MemberState> {
        self.members
            .iter()
            .find(|m| crate::config::same_endpoint(m.member.uri(), uri))
    }

    /// The endpoints the caller gave.
    pub(crate) fn seeds(&self) -> &[Uri] {
        &self.seeds
    }

    /// Whether a member reporting `report` may be re-admitted (see [`LeaderView::admits`]).
    pub(crate) fn admits(&self, report: &Report) -> Result<(), String> {
        self.leader.admits(report)
    }

    /// Whether the next leader check is due soon: an election, or members suspected of being
    /// cut off.
    pub(crate) fn leader_unsettled(&self) -> bool {
        self.leader.electing() || self.leader.has_suspects()
    }

    /// The index of the member that leads, if known and one of ours.
    pub(crate) fn leader_index(&self) -> Option<usize> {
        self.leader.leader_index()
    }

    /// Who leads, at `now`.
    pub(crate) fn leader(&self, now: Instant) -> LeaderSnapshot {
        self.leader.snapshot(now)
    }

    /// The etcd id of each member that reported one, by index.
    pub(crate) fn member_ids(&self) -> &HashMap<usize, u64> {
        self.leader.ids()
    }

    /// The cluster the stack follows, if known.
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        self.leader.cluster_id()
    }

    /// The cluster id each member last reported to a `status` probe.
    pub(crate) fn reported_clusters(&self) -> &HashMap<usize, u64> {
        &self.reported
    }

    /// Whether the leader changed (or an election began) after `since`.
    pub(crate) fn leader_changed_since(&self, since: Instant) -> bool {
        self.leader_changed_at.is_some_and(|at| at > since)
    }

    /// Fires the timers due at `now`: each ejection that ended makes its member due for a
    /// re-admission probe.
    fn timeout(&mut self, now: Instant, effects: &mut Effects) {
        for m in &mut self.members {
            if m.ejection.is_some_and(|until| until <= now) {
                m.ejection = None;
                let index = m.member.index();
                effects.touch(index);
                effects.push(Effect::EjectionEnded { index });
            }
        }
    }

    /// Folds in `n` passive successes of member `index`, the last `at`, counted apart while
    /// it was settled (see `MemberEntry::count_quiet_success`): what recording each would have
    /// done (see `HealthState::record_successes` for a member no longer settled).
    pub(crate) fn fold_successes(&mut self, index: usize, n: u64, at: Instant) {
        if let Some(pos) = self.position(index) {
            self.members[pos].health.record_successes(n, at);
        }
    }

    fn position(&self, index: usize) -> Option<usize> {
        self.members.iter().position(|m| m.member.index() == index)
    }

    /// Feeds one outcome to a member's machine; a status change becomes effects.
    fn record(
        &mut self,
        index: usize,
        source: Source,
        outcome: Outcome,
        now: Instant,
        effects: &mut Effects,
    ) {
        let Some(pos) = self.position(index) else {
            return;
        };
        let thresholds = match source {
            Source::Active => &self.rules.active,
            Source::Passive => &self.rules.passive,
        };
        // The jitter of an ejection, which only a failure causes: a success draws nothing.
        let unit: f64 = match outcome.is_failure() {
            true => self.rng.random(),
            false => 0.0,
        };
        let m = &mut self.members[pos];
        let before = m.mirror();
        let transition =
            m.health
                .record(source, outcome, now, thresholds, &self.rules.ejection, unit);
        if transition.is_some() {
            // An ejection starts the state's timer on it (unless it ended at once); a
            // re-admission drops it.
            m.ejection = m.health.ejected_until().filter(|until| *until > now);
        }
        if m.mirror() != before {
            effects.touch(index);
        }
        let Some(t) = transition else { return };
        let member = m.member.clone();
        let to = t.to;
        if to.is_healthy() {
            m.admitted = true;
            effects.touch(index);
        }
        effects.push(Effect::Status {
            member: member.clone(),
            transition: t,
        });
        if to.is_healthy() {
            effects.push(Effect::RestartLoad { index });
        } else {
            if outcome == Outcome::Hang {
                // It sits on requests: those in flight on it would wait for as long as it does.
                effects.push(Effect::Abandon { index });
            }
            if self.members.iter().all(|m| !m.is_healthy()) {
                effects.push(Effect::AllUnhealthy { member });
            }
        }
    }

    /// Counts a hang against a member unless that could take a majority out of rotation.
    fn hang(&mut self, index: usize, now: Instant, effects: &mut Effects) {
        if !self.rules.hangs {
            return;
        }
        let Some(m) = self.member(index) else {
            // The member left while its request hung (removed, or dropped by discovery):
            // nothing to count against.
            tracing::debug!(index, "hang not counted: the member left");
            return;
        };
        if !m.is_healthy() {
            return;
        }
        // A hang is a heuristic: never let it take a majority of the members out of rotation
        // (a slow cluster must not eject itself member by member). Hard failures are not held
        // back by this.
        let healthy = self.members.iter().filter(|m| m.is_healthy()).count();
        if healthy.saturating_sub(1) * 2 <= self.members.len() {
            tracing::debug!(member = %m.member, healthy, members = self.members.len(), "hang not counted: a majority must stay in rotation");
            return;
        }
        effects.push(Effect::HangCounted { index });
        self.record(index, Source::Passive, Outcome::Hang, now, effects);
    }

    /// Judges a round of leader checks: members cut off from the quorum are ejected (as a
    /// failed active check) and their requests abandoned; a leader change is published.
    fn leader_round(
        &mut self,
        replies: &[(usize, Reply)],
        elapsed: Duration,
        at: SystemTime,
        now: Instant,
        effects: &mut Effects,
    ) {
        let verdict = self
            .leader
            .round(replies, self.members.len(), now, self.rules.confirm);
        for (index, why) in verdict.cut_off {
            let Some(m) = self.member(index) else {
                continue;
            };
            if !m.is_healthy() {
                continue;
            }
            tracing::warn!(member = %m.member, reason = %why, "member cut off from the quorum");
            let report = ProbeReport {
                outcome: Outcome::Failure,
                detail: format!("leader check: {why}"),
                elapsed,
                at,
            };
            effects.push(Effect::CutOff { index, report });
            self.record(index, Source::Active, Outcome::Failure, now, effects);
            if self.member(index).is_some_and(|m| !m.is_healthy()) {
                // Without the leader (or silent since it lost it), it cannot complete a write
                // or a linearizable read: those in flight on it would wait for etcd's own 7 s
                // timeout, or for as long as it hangs.
                effects.push(Effect::Abandon { index });
            }
        }
        if verdict.changed {
            self.leader_changed(now, effects);
        }
    }

    /// The leader (or "no leader") changed: stamped and published.
    fn leader_changed(&mut self, now: Instant, effects: &mut Effects) {
        self.leader_changed_at = Some(now);
        let snapshot = self.leader.snapshot(now);
        let member = snapshot
            .leader_index
            .and_then(|i| self.member(i))
            .or_else(|| self.members.first())
            .map(|m| m.member.clone());
        effects.push(Effect::LeaderChanged {
            member,
            leader_id: snapshot.leader_id,
            term: snapshot.term,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        uri: Uri,
        origin: Origin,
        pending: bool,
        seed: bool,
        reason: String,
        now: Instant,
        effects: &mut Effects,
    ) {
        let new_seed = seed
            && !self
                .seeds
                .iter()
                .any(|s| crate::config::same_endpoint(s, &uri));
        if new_seed {
            self.seeds.push(uri.clone());
        }
        if self.find(&uri).is_none() {
            let member = Member::new(self.next_index, uri);
            self.next_index += 1;
            let health = match pending {
                true => HealthState::pending(now),
                false => HealthState::new(now),
            };
            self.members.push(MemberState {
                member: member.clone(),
                origin: origin.clone(),
                health,
                admitted: !pending,
                // A pending member's "ejection" ends as it joins: its first success admits it.
                ejection: None,
            });
            effects.push(Effect::Added {
                member,
                origin,
                pending,
                reason,
            });
        }
        if new_seed {
            effects.push(Effect::WantDns);
            effects.push(Effect::WantDiscovery);
        }
    }

    fn leave(&mut self, uri: &Uri, unseed: bool, reason: String, effects: &mut Effects) {
        if unseed {
            let before = self.seeds.len();
            self.seeds.retain(|s| !crate::config::same_endpoint(s, uri));
            if self.seeds.len() != before {
                effects.push(Effect::WantDns);
            }
        }
        let Some(pos) = self
            .members
            .iter()
            .position(|m| crate::config::same_endpoint(m.member.uri(), uri))
        else {
            return;
        };
        let removed = self.members.remove(pos);
        let index = removed.member.index();
        self.leader.forget(index);
        self.reported.remove(&index);
        effects.push(Effect::Removed {
            member: removed.member,
            origin: removed.origin,
            reason,
        });
    }
}

// === impl Effect ===

impl Effect {
    /// The event to publish for this effect, if it is one: the member concerned (none only
    /// for a leader change with no member known) and what happened.
    pub(crate) fn event(&self) -> Option<(Option<&Member>, EventKind)> {
        Some(match self {
            Effect::Added {
                member,
                origin,
                reason,
                ..
            } => (
                Some(member),
                EventKind::Added {
                    origin: origin.clone(),
                    reason: reason.clone(),
                },
            ),
            Effect::Removed {
                member,
                origin,
                reason,
            } => (
                Some(member),
                EventKind::Removed {
                    origin: origin.clone(),
                    reason: reason.clone(),
                },
            ),
            Effect::Status { member, transition } => {
                (Some(member), EventKind::StatusChanged(transition.clone()))
            }
            Effect::AllUnhealthy { member } => (Some(member), EventKind::AllUnhealthy),
            Effect::LeaderChanged {
                member,
                leader_id,
                term,
            } => (
                member.as_ref(),
                EventKind::LeaderChanged {
                    leader_id: *leader_id,
                    term: *term,
                },
            ),
            _ => return None,
        })
    }
}
