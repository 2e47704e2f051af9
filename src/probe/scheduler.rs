//! The active probe scheduler: a thin tokio driver around the pure schedules.
//!
//! Why thin: every timing decision (which member to probe when, back-off after an ejection,
//! jitter, when a leader check is due) lives in pure schedules that take `now` and are tested
//! on made-up clocks ([`Schedule`], [`LeaderChecks`]); the driver loop reads the clock once per
//! turn, feeds them what happened, executes what they ask for (through [`Executor`], which
//! owns the probe channels) and sleeps until the earliest deadline they name.
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
//! (see [`LeaderChecks`]). During an election a round does not wait for members that gave no answer
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

use super::schedule::{Facts, Intervals, Schedule};
use super::{Cluster, Finding, Probe, ProbeTarget, WeakCluster};
use crate::health::Outcome;
use crate::leader::{EarlyEnd, LeaderChecks, Reply, RoundPlan};
use crate::member::{MemberEntry, ProbeReport};
use crate::timing::wall_now;

/// Starts the scheduler for `checker` on `runtime`, probing with `probe` (none: the built-in
/// probe `checks.active.type` names).
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    checker: WeakCluster,
    probe: Option<Arc<dyn Probe>>,
) {
    runtime.spawn(run(checker, probe));
}

/// What woke the driver (fed to the schedules at the next turn, with that turn's `now`).
enum Wake {
    /// A deadline passed, or the members changed.
    Timer,
    /// An answer suggested an election: a leader check is wanted.
    LeaderWanted,
    /// A leader check ended (or told its early word).
    Round(Round),
    /// The probe of this member ended.
    ProbeEnded(usize),
}

/// The driver: each turn reads the clock once, feeds what woke it to the pure schedules
/// ([`Schedule`] for probes, [`LeaderChecks`] for leader checks), starts what they ask for, and
/// sleeps until the earliest deadline they name or something happens.
async fn run(weak: WeakCluster, probe: Option<Arc<dyn Probe>>) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let (mut exec, mut done_rx, mut round_rx) = Executor::new(&*checker, weak.clone(), probe);
    let mut changes = checker.changes();
    let leader_wanted = checker.leader_wanted();
    let mut schedule = Schedule::new(Intervals::of(checker.config()));
    let mut checks = LeaderChecks::new(checker.config().leader.clone(), Instant::now());
    drop(checker);
    let mut woke = Wake::Timer;
    tracing::debug!("probe scheduler started");
    loop {
        let Some(checker) = weak.upgrade() else { break };
        let now = Instant::now();
        match std::mem::replace(&mut woke, Wake::Timer) {
            Wake::Timer => {}
            Wake::LeaderWanted => checks.want(now),
            Wake::Round(round) => exec.round_ended(&*checker, round, now, &mut checks),
            Wake::ProbeEnded(index) => {
                if let Some(entry) = checker.entry(index) {
                    exec.probe_ended(&entry);
                    schedule.done(index, facts(&entry), now);
                }
            }
        }
        // The budget refills with nobody asking: its gauge follows at each wake-up.
        checker.budget().show(now.into_std());
        // The state's own deadline (an ejection ending) fires before the facts are read: a
        // member whose ejection ended is then due for its re-admission probe.
        if checker
            .next_deadline()
            .is_some_and(|at| at <= now.into_std())
        {
            checker.handle_timeout();
        }
        let entries = checker.entries();
        exec.forget_gone(&*checker, &entries);
        let members = entries.iter().map(|e| (e.member().index(), facts(e)));
        for index in schedule.poll(now, members) {
            exec.probe(&*checker, &entries, index);
        }
        let live = |i| entries.iter().any(|e| e.member().index() == i);
        if let Some(silent) = checks.poll(now, live) {
            exec.leader_round(&*checker, &entries, silent);
        }
        let wake = [
            schedule.poll_timeout(),
            checks.poll_timeout(),
            checker.next_deadline().map(Instant::from_std),
        ];
        drop((entries, checker));
        woke = tokio::select! {
            _ = crate::timing::sleep_until(wake.into_iter().flatten().min()) => Wake::Timer,
            changed = changes.changed() => match changed {
                Ok(()) => Wake::Timer,
                Err(_) => break,
            },
            _ = leader_wanted.notified() => Wake::LeaderWanted,
            Some(round) = round_rx.recv() => Wake::Round(round),
            Some(index) = done_rx.recv() => Wake::ProbeEnded(index),
        };
    }
    tracing::debug!("probe scheduler stopped: no handle to the health state is left");
}

// === impl Executor ===

/// What the driver executes: probes and leader checks on each member's probe channel (made
/// once, and anew after a silence or a TLS change), at most `active.concurrency` probes at
/// once. It decides nothing about time.
struct Executor {
    weak: WeakCluster,
    probe: Arc<dyn Probe>,
    permits: Arc<Semaphore>,
    leader_timeout: Duration,
    channels: HashMap<usize, Result<Channel, String>>,
    /// The TLS material the probe channels were made with: new material, new channels (those
    /// built on a member's own endpoint capture it).
    tls_generation: Option<u64>,
    done: mpsc::UnboundedSender<usize>,
    rounds: mpsc::UnboundedSender<Round>,
}

impl Executor {
    /// The executor, with the receivers of probe ends and leader-check ends.
    fn new(
        checker: &dyn Cluster,
        weak: WeakCluster,
        probe: Option<Arc<dyn Probe>>,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<usize>,
        mpsc::UnboundedReceiver<Round>,
    ) {
        let active = &checker.config().checks.active;
        let probe = probe.unwrap_or_else(|| super::builtin(active.probe_type));
        tracing::debug!(?probe, "probe scheduler: probe in use");
        let (done, done_rx) = mpsc::unbounded_channel();
        let (rounds, round_rx) = mpsc::unbounded_channel();
        let exec = Self {
            weak,
            probe,
            permits: Arc::new(Semaphore::new(active.concurrency.max(1))),
            leader_timeout: checker.config().leader.timeout,
            channels: HashMap::new(),
            tls_generation: None,
            done,
            rounds,
        };
        (exec, done_rx, round_rx)
    }

    /// Forgets the channels of members gone, and every channel when the TLS
    /// material changed.
    fn forget_gone(&mut self, checker: &dyn Cluster, entries: &[Arc<MemberEntry>]) {
        let live: HashSet<usize> = entries.iter().map(|e| e.member().index()).collect();
        self.channels.retain(|i, _| live.contains(i));
        let generation = tls_generation_of(checker);
        if self.tls_generation != Some(generation) {
            self.tls_generation = Some(generation);
            self.channels.clear();
        }
    }

    /// The probe channel of `entry`, made if needed.
    fn channel(&mut self, checker: &dyn Cluster, entry: &MemberEntry) -> Result<Channel, String> {
        self.channels
            .entry(entry.member().index())
            .or_insert_with(|| probe_channel(checker, entry))
            .clone()
    }

    /// Starts a probe of member `index`.
    fn probe(&mut self, checker: &dyn Cluster, entries: &[Arc<MemberEntry>], index: usize) {
        let Some(entry) = entries.iter().find(|e| e.member().index() == index) else {
            return;
        };
        let task = ProbeTask {
            weak: self.weak.clone(),
            entry: entry.clone(),
            channel: self.channel(checker, entry),
            probe: self.probe.clone(),
            permits: self.permits.clone(),
            done: self.done.clone(),
        };
        tokio::spawn(task.run());
    }

    /// A probe of `entry` ended: after a timeout its channel is made anew (see [`renew`]).
    fn probe_ended(&mut self, entry: &MemberEntry) {
        if entry
            .last_probe()
            .is_some_and(|p| p.outcome == Outcome::Timeout)
        {
            renew(&mut self.channels, entry.member().index());
        }
    }

    /// Starts a leader check of every member, not waiting (in an election) for `silent`.
    fn leader_round(
        &mut self,
        checker: &dyn Cluster,
        entries: &[Arc<MemberEntry>],
        silent: Vec<usize>,
    ) {
        let ids = checker.member_ids();
        let plan = RoundPlan::new(
            entries.len(),
            silent.into_iter().map(|i| (i, ids.get(&i).copied())),
        );
        let targets = entries
            .iter()
            .map(|entry| (entry.member().index(), self.channel(checker, entry)))
            .collect();
        let round = leader_round(targets, plan, self.leader_timeout, self.rounds.clone());
        tokio::spawn(round);
    }

    /// A leader check ended at `now` (or told its early word): the health state hears it,
    /// then `checks` (the state's judgement decides the pace of the next one).
    fn round_ended(
        &mut self,
        checker: &dyn Cluster,
        round: Round,
        now: Instant,
        checks: &mut LeaderChecks,
    ) {
        if !round.complete {
            checker.learn_leader(&round.replies);
            return;
        }
        for index in &round.silent {
            renew(&mut self.channels, *index);
        }
        if let Some((why, skipped)) = &round.ended {
            tracing::debug!(?why, ?skipped, elapsed = ?round.elapsed, "leader check ended without waiting for members silent last round");
        }
        checker.apply_leader_round(round.replies, round.elapsed);
        let ended = round.ended.as_ref().map(|(why, s)| (*why, &s[..]));
        checks.ended(now, &round.silent, ended, checker.leader_unsettled());
    }
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
fn tls_generation_of(checker: &dyn Cluster) -> u64 {
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
        ejected: entry.is_ejected(),
    }
}

/// The channel of a member's `grpc` and `status` probes: the member's own `Endpoint` when
/// it came with one (the drop-in's, built by etcd-client with its TLS, or with `config.tls`
/// applied, which is applied again here in its current state), else one built here, whose
/// connections take the configured TLS material current at each connect for `https://`
/// members. `Err` says why TLS could not be set up.
pub(crate) fn probe_channel<C: Cluster + ?Sized>(
    checker: &C,
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
fn member_tls<C: Cluster + ?Sized>(checker: &C, entry: &MemberEntry) -> Option<crate::tls::Tls> {
    if entry.member().uri().scheme_str() != Some("https") {
        return None;
    }
    checker
        .tls()
        .cloned()
        .or_else(crate::tls::Tls::system_default)
}

#[cfg(not(feature = "tls"))]
fn member_tls<C: Cluster + ?Sized>(_checker: &C, _entry: &MemberEntry) -> Option<()> {
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
    weak: WeakCluster,
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
                    if let Some(why) = admission(&*checker, &self.channel, timeout, strict).await {
                        finding = Finding::new(Outcome::Failure, format!("not re-admitted: {why}"));
                    }
                }
            }
            if let Some(checker) = self.weak.upgrade() {
                record(&*checker, &self.entry, finding, started.elapsed());
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
/// then stall. It must also be a voter of this cluster (see [`Cluster::admits`]). A member that
/// cannot say (no `Status` permission, no answer) is not held back by this check, unless
/// `strict`: a member found by discovery must show its cluster id (only a `Status` denied for
/// lack of permission is let through: the cluster listed it).
async fn admission(
    checker: &dyn Cluster,
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

fn record(checker: &dyn Cluster, entry: &MemberEntry, finding: Finding, elapsed: Duration) {
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
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::checker::HealthChecker;
    use crate::config::Config;
    use crate::event::EventKind;
    use crate::health::{Source, Status};
    use crate::probe::BoxFuture;

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

    /// An in-process fake member, as the probe sees it: up (its checks succeed) or down
    /// (they fail), counting the probes it gets.
    #[derive(Debug, Default)]
    struct FakeMember {
        up: AtomicBool,
        probes: AtomicU64,
    }

    impl Probe for FakeMember {
        fn probe<'a>(&'a self, _: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
            self.probes.fetch_add(1, Ordering::Relaxed);
            let up = self.up.load(Ordering::Relaxed);
            Box::pin(async move {
                if up {
                    Finding::success("fine")
                } else {
                    Finding::failure("etcdserver: unhealthy cluster")
                }
            })
        }
    }

    /// The next status change within 10 s, and when it came (on paused time, the very
    /// instant).
    async fn status_changed(
        events: &mut tokio::sync::broadcast::Receiver<crate::event::HealthEvent>,
    ) -> (Instant, crate::health::Transition) {
        let next = async {
            loop {
                let event = events.recv().await.expect("events");
                if let EventKind::StatusChanged(t) = event.kind {
                    return (Instant::now(), t);
                }
            }
        };
        // Paused time jumps ahead when all is idle: a driver that stopped probing fails here.
        tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .expect("a status change within 10 s")
    }

    /// Probes of healthy members every 1 s, of unhealthy ones every 500 ms; 3 failed probes
    /// eject a member for 2 s; 2 successes re-admit it. No other traffic: leader checks
    /// only at start (on a port that refuses at once), no discovery.
    fn paused_config() -> Config {
        let mut c = Config::default();
        c.checks.active.healthy.interval = Duration::from_secs(1);
        c.checks.active.healthy.successes = 2;
        c.checks.active.unhealthy.interval = Duration::from_millis(500);
        c.checks.active.unhealthy.http_failures = 3;
        c.ejection.base = Duration::from_secs(2);
        c.ejection.jitter = 0.0;
        c.leader.interval = Duration::ZERO;
        c.leader.election_interval = Duration::from_secs(1);
        c.leader.timeout = Duration::from_millis(100);
        c.discovery.member_list = false;
        c
    }

    /// The driver on paused time: a member whose probes fail is ejected after 3 healthy
    /// intervals (each shortened by up to a fifth of jitter), is not probed while its ejection
    /// lasts, and is re-admitted by the second success after it ends (the first alone does
    /// not).
    #[tokio::test(start_paused = true)]
    async fn a_failing_member_is_ejected_after_three_intervals_and_readmitted_after_two_successes()
    {
        let member = Arc::new(FakeMember::default());
        let checker = HealthChecker::builder(paused_config())
            .probe(member.clone())
            .build(&["http://127.0.0.1:1"])
            .expect("checker");
        let mut events = checker.subscribe();
        let t0 = Instant::now();
        let (ejected, t) = status_changed(&mut events).await;
        assert_eq!(
            (t.to, t.source, t.count),
            (Status::Unhealthy, Source::Active, 3)
        );
        let after = ejected - t0;
        assert!(
            after >= Duration::from_millis(2400) && after <= Duration::from_millis(3100),
            "ejected {after:?} after start: three probes of 0.8-1 s each"
        );
        assert_eq!(member.probes.load(Ordering::Relaxed), 3);
        // Back up at once: no probe before the ejection ends, then two successes 0.4-0.5 s
        // apart (each success also asks `Status` for re-admission: at most 100 ms).
        member.up.store(true, Ordering::Relaxed);
        tokio::time::sleep_until(ejected + Duration::from_millis(1990)).await;
        assert_eq!(
            member.probes.load(Ordering::Relaxed),
            3,
            "probed while ejected"
        );
        tokio::time::sleep_until(ejected + Duration::from_millis(2250)).await;
        assert_eq!(
            member.probes.load(Ordering::Relaxed),
            4,
            "probed when the ejection ended"
        );
        assert_eq!(
            checker.snapshot()[0].status,
            Status::Unhealthy,
            "one success is not two"
        );
        let (back, t) = status_changed(&mut events).await;
        assert_eq!(
            (t.to, t.source, t.count),
            (Status::Healthy, Source::Active, 2)
        );
        let after = back - ejected;
        assert!(
            after >= Duration::from_millis(2400) && after <= Duration::from_millis(2800),
            "re-admitted {after:?} after the ejection"
        );
        assert_eq!(member.probes.load(Ordering::Relaxed), 5);
    }

    /// The driver on paused time follows the cluster state's deadline: a member ejected for
    /// 2 s (longer than its 500 ms interval) is probed at the very instant its ejection ends,
    /// when the state's timer fires, and not before; one ejected for 200 ms (shorter) waits
    /// for its interval.
    #[tokio::test(start_paused = true)]
    async fn an_ejected_member_is_probed_when_the_states_deadline_passes() {
        for (ejection, probed_from, probed_by) in [(2000, 2000, 2001), (200, 400, 501)] {
            let member = Arc::new(FakeMember::default());
            let mut config = paused_config();
            config.ejection.base = Duration::from_millis(ejection);
            let checker = HealthChecker::builder(config)
                .probe(member.clone())
                .build(&["http://127.0.0.1:1"])
                .expect("checker");
            let mut events = checker.subscribe();
            let (ejected, t) = status_changed(&mut events).await;
            assert_eq!(t.to, Status::Unhealthy);
            let ends = ejected + Duration::from_millis(ejection);
            let next_deadline = || {
                checker
                    .for_probes()
                    .upgrade()
                    .expect("alive")
                    .next_deadline()
            };
            assert_eq!(next_deadline(), Some(ends.into_std()));
            let probed = || member.probes.load(Ordering::Relaxed);
            tokio::time::sleep_until(ends - Duration::from_millis(1)).await;
            assert_eq!(probed(), 3, "probed while ejected ({ejection} ms)");
            assert!(checker.entries()[0].is_ejected());
            tokio::time::sleep_until(ends + Duration::from_millis(1)).await;
            assert_eq!(next_deadline(), None, "the state's timer fired");
            assert!(!checker.entries()[0].is_ejected());
            if probed_from > ejection {
                assert_eq!(probed(), 3, "the interval holds ({ejection} ms)");
                tokio::time::sleep_until(ejected + Duration::from_millis(probed_from - 1)).await;
                assert_eq!(probed(), 3, "the interval holds ({ejection} ms)");
            }
            tokio::time::sleep_until(ejected + Duration::from_millis(probed_by)).await;
            assert_eq!(probed(), 4, "probed once due ({ejection} ms)");
            assert_eq!(checker.snapshot()[0].status, Status::Unhealthy);
        }
    }
}
