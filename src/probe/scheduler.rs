//! The active probe scheduler: a thin tokio driver around the pure state machines.
//!
//! Healthy members are probed every `active.healthy.interval`, unhealthy ones every
//! `active.unhealthy.interval` but never before their ejection time ends; 0 turns either off.
//! When is decided by the pure [`Schedule`]; this driver gathers each member's facts, starts
//! the probes it asks for (the application's [`Probe`], else the built-in one the config
//! names: the driver is the same for both) and sleeps until the earliest time it named. At most
//! `active.concurrency` probes run at once. The task holds only a weak reference to
//! the shared state, so it stops when the last [`HealthChecker`](crate::HealthChecker) goes.
//!
//! It also runs the leader checks (`Maintenance/Status` of every member at once, see
//! [`crate::leader`]): every `leader.interval`, every `leader.election_interval` while members
//! answer but none knows a leader, or a member is suspected of being cut off, and at once (no more often than
//! `leader.election_interval`) when an answer suggested an election; never two within 100 ms
//! (see [`Pace`]). During an election a round does not wait for members that gave no answer
//! last round once a majority answered (see [`RoundPlan`]). A member coming back is
//! re-admitted only if its `Status` follows the known leader at the known term.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::schedule::{Facts, Intervals, Schedule, Step};
use super::{Finding, Probe, ProbeTarget};
use crate::checker::HealthChecker;
use crate::checker::WeakChecker;
use crate::health::Outcome;
use crate::leader::{EarlyEnd, Pace, Reply, RoundPlan};
use crate::member::{MemberEntry, ProbeReport};
use crate::timing::wall_now;

/// Starts the scheduler for `checker` on `runtime`, probing with `probe` (none: the built-in
/// probe `checks.active.type` names).
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    checker: WeakChecker,
    probe: Option<Arc<dyn Probe>>,
) {
    runtime.spawn(run(checker, probe));
}

async fn run(weak: WeakChecker, probe: Option<Arc<dyn Probe>>) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let probe = probe.unwrap_or_else(|| super::builtin(checker.config().checks.active.probe_type));
    tracing::debug!(?probe, "probe scheduler: probe in use");
    let mut changes = checker.changes();
    let permits = Arc::new(Semaphore::new(
        checker.config().checks.active.concurrency.max(1),
    ));
    let leader_wanted = checker.leader_wanted();
    let leader_config = checker.config().leader.clone();
    let mut schedule = Schedule::new(Intervals::of(checker.config()));
    drop(checker);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
    let (round_tx, mut round_rx) = mpsc::unbounded_channel::<Round>();
    let mut leader_due: Option<Instant> = Some(Instant::now());
    let mut leader_running = false;
    let mut pace = Pace::default();
    // The members that gave no answer to the last leader check: while the cluster elects, the
    // next one does not wait for them (see `RoundPlan`).
    let mut silent_last: HashSet<usize> = HashSet::new();
    let mut channels: HashMap<usize, Result<Channel, String>> = HashMap::new();
    // The TLS material the probe channels were made with: new material, new channels (those
    // built on a member's own endpoint capture it).
    let mut tls_generation = None;
    tracing::debug!("probe scheduler started");
    loop {
        let Some(checker) = weak.upgrade() else { break };
        let now = Instant::now();
        // The budget refills with nobody asking: its gauge follows at each wake-up.
        checker.budget().show(now.into_std());
        let entries = checker.entries();
        let live: HashSet<usize> = entries.iter().map(|e| e.member().index()).collect();
        schedule.retain(|i| live.contains(&i));
        channels.retain(|i, _| live.contains(i));
        let generation = tls_generation_of(&checker);
        if tls_generation != Some(generation) {
            tls_generation = Some(generation);
            channels.clear();
        }
        let mut next_wake: Option<Instant> = None;
        for entry in entries.iter() {
            let index = entry.member().index();
            match schedule.step(index, facts(entry), now) {
                Step::Probe => {}
                Step::At(due) => {
                    next_wake = Some(next_wake.map_or(due, |w| w.min(due)));
                    continue;
                }
                Step::Idle => continue,
            }
            let channel = channels
                .entry(index)
                .or_insert_with(|| probe_channel(&checker, entry))
                .clone();
            let task = ProbeTask {
                weak: weak.clone(),
                entry: entry.clone(),
                channel,
                probe: probe.clone(),
                permits: permits.clone(),
                done: done_tx.clone(),
            };
            tokio::spawn(task.run());
        }
        if !leader_running && leader_due.is_some_and(|due| due <= now) {
            leader_running = true;
            leader_due = None;
            pace.started(now.into_std());
            let ids = checker.member_ids();
            silent_last.retain(|i| live.contains(i));
            let plan = RoundPlan::new(
                entries.len(),
                silent_last.iter().map(|i| (*i, ids.get(i).copied())),
            );
            let targets: Vec<(usize, Result<Channel, String>)> = entries
                .iter()
                .map(|entry| {
                    let index = entry.member().index();
                    let channel = channels
                        .entry(index)
                        .or_insert_with(|| probe_channel(&checker, entry))
                        .clone();
                    (index, channel)
                })
                .collect();
            tokio::spawn(leader_round(
                targets,
                plan,
                leader_config.timeout,
                round_tx.clone(),
            ));
        } else if let Some(due) = leader_due.filter(|_| !leader_running) {
            next_wake = Some(next_wake.map_or(due, |w| w.min(due)));
        }
        drop(entries);
        drop(checker);
        let sleep = async {
            match next_wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            changed = changes.changed() => if changed.is_err() { break },
            _ = leader_wanted.notified() => {
                // An answer suggested an election: check now, but not more often than rounds
                // during an election go.
                let now = Instant::now();
                let due = pace.wanted(now.into_std(), &leader_config, crate::timing::unit());
                let due = now + due.saturating_duration_since(now.into_std());
                leader_due = Some(leader_due.map_or(due, |d| d.min(due)));
            }
            Some(Round { replies, silent, elapsed, complete, ended }) = round_rx.recv() => {
                let Some(checker) = weak.upgrade() else { break };
                if !complete {
                    checker.learn_leader(&replies);
                    continue;
                }
                silent_last = silent.iter().copied().collect();
                for index in silent {
                    renew(&mut channels, index);
                }
                if let Some((why, skipped)) = ended {
                    tracing::debug!(?why, ?skipped, ?elapsed, "leader check ended without waiting for members silent last round");
                    if why == EarlyEnd::Leaderless {
                        // Still silent as far as anyone knows: the next round does not wait
                        // for them either while the election lasts.
                        silent_last.extend(skipped);
                    }
                }
                checker.apply_leader_round(replies, elapsed);
                leader_running = false;
                let now = Instant::now();
                let next = pace
                    .after_round(
                        now.into_std(),
                        checker.leader_unsettled(),
                        &leader_config,
                        crate::timing::unit(),
                    )
                    .map(|at| now + at.saturating_duration_since(now.into_std()));
                leader_due = match (leader_due, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Some(index) = done_rx.recv() => {
                let Some(checker) = weak.upgrade() else { break };
                if let Some(entry) = checker.entry(index) {
                    if entry.last_probe().is_some_and(|p| p.outcome == Outcome::Timeout) {
                        renew(&mut channels, index);
                    }
                    schedule.done(index, facts(&entry), Instant::now());
                }
            }
        }
    }
    tracing::debug!("probe scheduler stopped: no handle to the health state is left");
}

/// What one leader check found.
struct Round {
    /// Each member's reply.
    replies: Vec<(usize, Reply)>,
    /// The members that gave no answer in time (their channels are made anew, see [`renew`]).
    silent: Vec<usize>,
    /// How long the round took.
    elapsed: Duration,
    /// Every member answered or timed out (or was let go, see `ended`); `false` for the
    /// early word of a majority that names one leader, while slower members are still asked.
    complete: bool,
    /// The round stopped waiting for members silent last round: why, and which.
    ended: Option<(EarlyEnd, Vec<usize>)>,
}

/// Forgets a member's probe channel after a probe or leader check on it found no answer, so
/// that the next one dials afresh. Why: a connection that lived through a fault may stay
/// silent after it (through a firewall that dropped packets, until TCP's next retransmission,
/// seconds later) while the member answers new connections at once; probing through it would
/// keep the member out, and tell the leader check nothing, for that long. An `http` probe
/// dials every time anyway.
fn renew(channels: &mut HashMap<usize, Result<Channel, String>>, index: usize) {
    if channels.remove(&index).is_some() {
        tracing::trace!(
            member = index,
            "no answer: the member's probe channel is made anew"
        );
    }
}

/// How many times the TLS material was swapped (0 without TLS): probe channels that captured
/// it are made again when this changes.
fn tls_generation_of(checker: &HealthChecker) -> u64 {
    #[cfg(feature = "tls")]
    if let Some(tls) = checker.tls() {
        return tls.generation();
    }
    #[cfg(not(feature = "tls"))]
    let _ = checker;
    0
}

/// What the schedule needs to know of a member now.
fn facts(entry: &MemberEntry) -> Facts {
    Facts {
        healthy: entry.is_healthy(),
        pending: entry.is_pending(),
        failed_probes: entry.failed_probes(),
        ejected_until: entry.ejected_until().map(Instant::from_std),
    }
}

/// The channel of a member's `grpc` and `status` probes: the member's own `Endpoint` when
/// it came with one (the drop-in's, built by etcd-client with its TLS, or with `config.tls`
/// applied, which is applied again here in its current state), else one built here, whose
/// connections take the configured TLS material current at each connect for `https://`
/// members. `Err` says why TLS could not be set up.
pub(crate) fn probe_channel(
    checker: &HealthChecker,
    entry: &MemberEntry,
) -> Result<Channel, String> {
    let active = &checker.config().checks.active;
    let settings = |endpoint: Endpoint| endpoint.connect_timeout(active.timeout).tcp_nodelay(true);
    let tls = member_tls(checker, entry);
    let Some(own) = entry.own_endpoint() else {
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            return Ok(crate::tls::lazy_channel(
                entry.member().uri(),
                tls,
                active.https_verify_certificate,
                settings,
            ));
        }
        return Ok(settings(Endpoint::from(entry.member().uri().clone())).connect_lazy());
    };
    let endpoint = settings(own.endpoint().clone());
    // `config.tls` on a member's own endpoint (the drop-in applies it, verified).
    #[cfg(feature = "tls")]
    let endpoint = match tls.filter(|_| own.configured_tls()) {
        Some(tls) => tls
            .apply(endpoint, true, Some(active.timeout))
            .map_err(|e| format!("TLS set-up: {e}"))?,
        None => endpoint,
    };
    #[cfg(not(feature = "tls"))]
    let _ = (tls, own.configured_tls());
    Ok(endpoint.connect_lazy())
}

/// The TLS material for a member with an `https://` URL: the configured one, else the
/// system's roots.
#[cfg(feature = "tls")]
fn member_tls(checker: &HealthChecker, entry: &MemberEntry) -> Option<crate::tls::Tls> {
    if entry.member().uri().scheme_str() != Some("https") {
        return None;
    }
    checker
        .tls()
        .cloned()
        .or_else(crate::tls::Tls::system_default)
}

#[cfg(not(feature = "tls"))]
fn member_tls(_checker: &HealthChecker, _entry: &MemberEntry) -> Option<()> {
    None
}

/// How long the scheduler lets one probe run: twice `checks.active.timeout`. The built-in
/// probes end within `timeout` themselves (with a more precise finding); the bound is for a
/// custom [`Probe`] that ignores its deadline, so it can never hold a concurrency slot, or its
/// member's probing, for ever.
fn probe_bound(timeout: Duration) -> Duration {
    timeout.saturating_mul(2)
}

/// One probe of one member.
struct ProbeTask {
    weak: WeakChecker,
    entry: Arc<MemberEntry>,
    channel: Result<Channel, String>,
    probe: Arc<dyn Probe>,
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<usize>,
}

impl ProbeTask {
    async fn run(self) {
        let index = self.entry.member().index();
        if let Ok(_permit) = self.permits.clone().acquire_owned().await {
            let Some(config) = self
                .weak
                .upgrade()
                .map(|i| i.config().checks.active.clone())
            else {
                return;
            };
            let started = Instant::now();
            let target = ProbeTarget::new(&self.entry, &config, &self.channel, &self.weak);
            // A probe of the application's that panics fails its member's check, and the
            // member goes on being probed (its `done` is still sent). One that does not end
            // is cut off at `probe_bound`: it times out instead of holding its slot for ever.
            let bound = probe_bound(config.timeout);
            let probed = AssertUnwindSafe(self.probe.probe(target)).catch_unwind();
            let mut finding = match tokio::time::timeout(bound, probed).await {
                Ok(Ok(finding)) => finding,
                Ok(Err(_)) => {
                    tracing::error!(member = %self.entry.member(), probe = ?self.probe, "probe panicked");
                    Finding::failure("the probe panicked")
                }
                Err(_) => {
                    tracing::warn!(member = %self.entry.member(), probe = ?self.probe, ?bound, "probe did not end in time: cut off");
                    Finding::timeout(bound)
                }
            };
            if let Some(id) = finding.cluster_id {
                // A `status` probe's answer: held against the id most members report (the
                // cluster state keeps every member's).
                if let Some(checker) = self.weak.upgrade() {
                    let (ids, members) = checker.reported_cluster(index, id);
                    finding = super::status::judge_cluster(finding, Some(id), &ids, members);
                }
            }
            if finding.outcome == Some(Outcome::Success) && !self.entry.is_healthy() {
                if let Some(checker) = self.weak.upgrade() {
                    let timeout = checker.config().leader.timeout;
                    let strict = self.entry.is_pending();
                    if let Some(why) = admission(&checker, &self.channel, timeout, strict).await {
                        finding = Finding::new(Outcome::Failure, format!("not re-admitted: {why}"));
                    }
                }
            }
            if let Some(checker) = self.weak.upgrade() {
                record(&checker, &self.entry, finding, started.elapsed());
            }
        }
        let _ = self.done.send(index);
    }
}

/// One leader check: `Status` of every member at once, until all answered or timed out, or
/// `plan` lets the round go without the members silent last round.
async fn leader_round(
    targets: Vec<(usize, Result<Channel, String>)>,
    plan: RoundPlan,
    timeout: Duration,
    done: mpsc::UnboundedSender<Round>,
) {
    let started = Instant::now();
    let mut asked: Vec<usize> = targets.iter().map(|(i, _)| *i).collect();
    let asks = targets.into_iter().map(|(index, channel)| async move {
        let (reply, silent) = match channel {
            Ok(channel) => match crate::leader::ask(channel, timeout).await {
                Ok(report) => (Reply::Status(report), false),
                Err(status) => (
                    Reply::Failed,
                    status.code() == tonic::Code::DeadlineExceeded,
                ),
            },
            Err(_) => (Reply::Failed, false),
        };
        (index, reply, silent)
    });
    let mut pending: futures_util::stream::FuturesUnordered<_> = asks.collect();
    let members = pending.len();
    let mut answers = Vec::with_capacity(members);
    let mut told_early = false;
    let mut ended = None;
    while let Some(answer) = futures_util::StreamExt::next(&mut pending).await {
        asked.retain(|i| *i != answer.0);
        answers.push(answer);
        if !told_early && !pending.is_empty() && majority_follows_one(&answers, members) {
            // A majority already names one leader: the health state may learn it now
            // rather than after the slowest member's timeout (see `LeaderView::learn`).
            told_early = true;
            let _ = done.send(Round {
                replies: answers.iter().map(|(i, r, _)| (*i, r.clone())).collect(),
                silent: Vec::new(),
                elapsed: started.elapsed(),
                complete: false,
                ended: None,
            });
        }
        let so_far: Vec<(usize, Reply)> = answers.iter().map(|(i, r, _)| (*i, r.clone())).collect();
        if let Some(why) = plan.may_end(&so_far, asked.iter().copied()) {
            ended = Some((why, std::mem::take(&mut asked)));
            break;
        }
    }
    drop(pending);
    if let Some((_, skipped)) = &ended {
        answers.extend(skipped.iter().map(|i| (*i, Reply::Failed, false)));
    }
    let silent = answers.iter().filter(|a| a.2).map(|a| a.0).collect();
    let replies = answers
        .into_iter()
        .map(|(i, reply, _)| (i, reply))
        .collect();
    let _ = done.send(Round {
        replies,
        silent,
        elapsed: started.elapsed(),
        complete: true,
        ended,
    });
}

/// Whether more than half of `members` answered a leader check naming the same leader at the
/// same term (whether that is news is the health state's to judge).
fn majority_follows_one(answers: &[(usize, Reply, bool)], members: usize) -> bool {
    let mut named: Vec<((u64, u64), usize)> = Vec::new();
    for (_, reply, _) in answers {
        let Reply::Status(r) = reply else { continue };
        if r.leader == 0 || r.no_leader_error {
            continue;
        }
        match named.iter_mut().find(|(k, _)| *k == (r.leader, r.term)) {
            Some((_, n)) => *n += 1,
            None => named.push(((r.leader, r.term), 1)),
        }
    }
    named.iter().any(|(_, n)| n * 2 > members)
}

/// A member on its way back must follow the cluster's leader at its term: a paused leader
/// that resumes still believes it leads at its old term for a moment, and requests sent to it
/// then stall. It must also be a voter of this cluster (see [`HealthChecker::admits`]). A member that
/// cannot say (no `Status` permission, no answer) is not held back by this check, unless
/// `strict`: a member found by discovery must show its cluster id (only a `Status` denied for
/// lack of permission is let through: the cluster listed it).
async fn admission(
    checker: &HealthChecker,
    channel: &Result<Channel, String>,
    timeout: Duration,
    strict: bool,
) -> Option<String> {
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) if strict => return Some(e.clone()),
        Err(_) => return None,
    };
    match crate::leader::ask(channel.clone(), timeout).await {
        Ok(report) => checker.admits(&report).err(),
        Err(status) if strict && status.code() != tonic::Code::PermissionDenied => Some(format!(
            "no Status answer to check its cluster: {}",
            status.message()
        )),
        Err(_) => None,
    }
}

fn record(checker: &HealthChecker, entry: &MemberEntry, finding: Finding, elapsed: Duration) {
    let judged = finding.outcome.filter(|_| !finding.leaderless);
    let kind = checker.config().checks.active.probe_type;
    entry.metrics().probed(kind, judged, elapsed);
    if finding.leaderless && entry.is_healthy() {
        // "No leader" from a member in rotation: an election, or this member cut off? The
        // leader check decides, asking every member.
        tracing::debug!(member = %entry.member(), detail = %finding.detail, "probe: no leader; checking the leader");
        checker.want_leader_check();
        return;
    }
    match finding.outcome {
        Some(outcome) => checker.record_probe(
            entry,
            ProbeReport {
                outcome,
                detail: finding.detail,
                elapsed,
                at: wall_now(),
            },
        ),
        None => {
            tracing::warn!(member = %entry.member(), detail = %finding.detail, "probe result ignored")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(leader: u64, term: u64) -> Reply {
        Reply::Status(crate::leader::Report {
            id: 1,
            cluster_id: 7,
            leader,
            term,
            committed: 0,
            applied: 0,
            is_learner: false,
            no_leader_error: false,
        })
    }

    /// The early word of a leader check: only once more than half of all the members asked
    /// name the same leader at the same term.
    #[test]
    fn a_majority_naming_one_leader_is_told_early() {
        let two_of_three = [(1, names(11, 3), false), (2, names(11, 3), false)];
        assert!(majority_follows_one(&two_of_three, 3));
        assert!(!majority_follows_one(&two_of_three[..1], 3));
        assert!(!majority_follows_one(&two_of_three, 4), "two of four");
        let split = [(1, names(11, 3), false), (2, names(11, 4), false)];
        assert!(!majority_follows_one(&split, 3), "different terms");
        let none = [(1, names(0, 3), false), (2, names(0, 3), false)];
        assert!(!majority_follows_one(&none, 3), "no leader");
        let failed = [(1, names(11, 3), false), (2, Reply::Failed, true)];
        assert!(!majority_follows_one(&failed, 3));
    }
}
