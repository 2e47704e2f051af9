//! The shared health state of a set of etcd members: the handle every part of the stack holds.
//!
//! Why a separate handle: the balancer, the probe scheduler, the passive classifier and the
//! user's dashboard all need the same view of which member is healthy. [`HealthChecker`] is that
//! view: cheap to clone, `Send + Sync`, and shared process-wide between stacks built with the
//! same `shm_name` (the seed's `lua_shared_dict`), so two clients never disagree about a member.
//!
//! A thin handle, in quinn-proto's manner: the rules live in the pure
//! [`ClusterState`] (members and their health machines, the
//! leader, the cluster's identity), which takes events and answers with effects. This module
//! adds what a pure state cannot have: one lock around it, the clock, the event bus and its
//! sink, the counters, the members' entries the request path reads without a lock (their
//! status mirrored under the lock), the discovery wake-ups and the probe scheduler's lifetime
//! (it stops when the last handle is dropped).
//!
//! Why one lock, never held across another: every method takes the state's lock once, feeds
//! it one event, writes the members' mirrors (atomic stores), and lets go; what the effects
//! ask for (publishing, metrics, an application's sink, a load restart that reads the other
//! members' loads, ending requests in flight) happens after, with no lock held. So a sink may
//! read the state, and a request never waits on a lock held while another is taken.
//!
//! What belongs to others stays theirs: the balancer's load estimate (`load.rs`, held per
//! member), answer classification (`passive/`), TLS choices (`tls/`), and the tasks that run
//! beside the state (`probe/`, `discovery/`, started by `start.rs`).
//!
//! Why ports (`ports.rs`): the rooms below the state each say, in a trait of their own, the
//! little they need of it (`probe::Cluster`, `discovery::Cluster`, `passive::Cluster`), and
//! the state implements those traits. So they never import this module: its fan-in stays the
//! rooms that hold the public handle, and a change here recompiles, and concerns, only them.

mod effects;
mod ports;
mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use tokio::sync::{broadcast, watch, Notify};

use crate::budget::RetryBudgetSnapshot;
use crate::cluster::{ClusterState, Event, Rules};
use crate::config::Config;
use crate::event::{EventSink, HealthEvent};
use crate::health::{Classify, Outcome, Source, Status};
use crate::leader::{LeaderSnapshot, Reply, Report};
use crate::member::{Member, MemberEntry, MemberSnapshot, Origin, OwnEndpoint, ProbeReport};
use crate::timing::{now, wall_now};

/// Handle to the health state of a set of etcd members.
///
/// Clones share the state. The active probe scheduler runs as long as a handle exists.
#[derive(Clone, Debug)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

/// The shared state behind a [`HealthChecker`].
#[derive(Debug)]
struct Inner {
    config: Config,
    /// The one lock: the cluster state, the members' entries, the resolver.
    shared: Mutex<Shared>,
    events: broadcast::Sender<HealthEvent>,
    /// Bumped on every status or membership change; the balancer and scheduler watch it.
    changed: watch::Sender<u64>,
    /// Requests sent again to another member, and reads also sent to a second one.
    counts: Counts,
    /// What retries and hedges may still add, shared by every request.
    budget: crate::budget::RetryBudget,
    /// The metrics' handles (nothing without the `metrics` feature).
    metrics: crate::metrics::Checker,
    /// Wake-ups of the tasks beside the state: the leader check, `MemberList`, DNS.
    wanted: Wanted,
    /// Origin of the members' answer stamps.
    epoch: Instant,
    /// The application's hooks into the state (the others run beside it: see `start.rs`).
    hooks: Hooks,
    /// TLS material from `config.tls`; `None` when nothing is configured.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
}

/// What the one lock guards.
#[derive(Debug)]
struct Shared {
    state: ClusterState,
    /// The members' entries, in index order, as they are now (a change makes a new list).
    entries: Arc<Vec<Arc<MemberEntry>>>,
    /// How host names are resolved.
    resolver: Arc<dyn crate::resolve::Resolve>,
}

/// Event counts of the stack. (These, a member's `requests` and the auth layer's
/// `authentications` are `AtomicU64` and wrap by design; at a million a second that takes
/// 584 000 years. The counts the health rules read saturate instead: see `health::Counters`.)
#[derive(Debug, Default)]
struct Counts {
    retries: AtomicU64,
    hedges: AtomicU64,
}

/// Wake-ups of the tasks that run beside the state.
#[derive(Debug, Default)]
struct Wanted {
    /// Asks the probe scheduler for a leader check now.
    leader: Arc<Notify>,
    /// Asks the `MemberList` discovery for a pass now.
    discovery: Arc<Notify>,
    /// Asks the DNS discovery for a pass now.
    dns: Arc<Notify>,
}

/// The application's hooks the health state itself holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hooks {
    /// How answers count against members; `None`: the config's lists.
    classifier: Option<Arc<dyn Classify>>,
    /// Where every event also goes.
    sink: Option<Arc<dyn EventSink>>,
}

impl Hooks {
    /// The hooks given (each optional).
    pub(crate) fn new(
        classifier: Option<Arc<dyn Classify>>,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Self {
        Self { classifier, sink }
    }

    /// Whether any hook was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.classifier.is_none() && self.sink.is_none()
    }
}

// === impl HealthChecker ===

impl HealthChecker {
    /// The health state for `endpoints` under `config` (validated first: a bad value is an
    /// error naming the field and the value), or the live one of `config.shm_name` in this
    /// process (its config wins; endpoints it lacks are added). `start` runs once, when a new
    /// state is made, to start what runs beside it (the probe scheduler, discovery): the
    /// composition root names them, this module only implements their ports. Must be called
    /// inside a tokio runtime.
    ///
    /// `hooks` go to a new state only: a live state of `config.shm_name` keeps its own.
    pub(crate) fn build(
        endpoints: Vec<Uri>,
        config: Config,
        hooks: Hooks,
        start: impl FnOnce(&tokio::runtime::Handle, &HealthChecker),
    ) -> Result<Self, crate::error::Error> {
        config.validate()?;
        #[cfg(feature = "tls")]
        let tls = (!config.tls.is_empty())
            .then(|| crate::tls::Tls::from_config(&config.tls))
            .transpose()?;
        #[cfg(not(feature = "tls"))]
        crate::tls::refuse(&config, &endpoints)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| crate::error::Error::NoRuntime)?;
        let make = || {
            let checker = Self::unshared(
                config.clone(),
                hooks,
                #[cfg(feature = "tls")]
                tls.clone(),
            );
            start(&runtime, &checker);
            #[cfg(feature = "tls")]
            if let Some(tls) = &tls {
                let _guard = runtime.enter();
                // Inside the runtime just entered: cannot fail.
                let _ = tls.watch(config.tls.reload_interval);
            }
            checker
        };
        let checker = match &config.shm_name {
            Some(name) => registry::join(name, &config, make),
            None => make(),
        };
        for uri in endpoints {
            checker.add_member(uri);
        }
        Ok(checker)
    }

    fn unshared(
        config: Config,
        hooks: Hooks,
        #[cfg(feature = "tls")] tls: Option<crate::tls::Tls>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        let (changed, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared {
                    state: ClusterState::new(Rules::new(&config), rand::random()),
                    entries: Arc::new(Vec::new()),
                    resolver: Arc::new(crate::resolve::TokioResolver),
                }),
                budget: crate::budget::RetryBudget::new(&config.retry, now()),
                config,
                events,
                changed,
                counts: Counts::default(),
                metrics: crate::metrics::Checker::new(),
                wanted: Wanted::default(),
                epoch: now(),
                hooks,
                #[cfg(feature = "tls")]
                tls,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The TLS material loaded from `config.tls`, `None` when nothing is configured (then
    /// `https://` members are verified against the system's roots). Hand it to
    /// [`TonicConnector::tls`](crate::balance::TonicConnector::tls) so requests present the
    /// same client certificate as the probes. It follows reloads of the files
    /// ([`reload_tls`](Self::reload_tls), `tls.reload_interval`); its
    /// [`status`](crate::Tls::status) says what is in use.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::Tls> {
        self.inner.tls.as_ref()
    }

    /// Reads the files of `config.tls` again now (a certificate was renewed) and, if they hold
    /// whole, new material, swaps it in for every connection made from now on: requests'
    /// reconnects, members added later, probes. Connections already open keep theirs until
    /// they close. `Ok(true)`: swapped; `Ok(false)`: the files hold what is in use.
    ///
    /// An unreadable file, a half-written PEM or a key that does not go with its certificate
    /// is an `Err` naming the field, the path and the problem, and the previous material stays
    /// in use; so is a checker without `config.tls` files.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<bool, crate::config::ConfigError> {
        match &self.inner.tls {
            Some(tls) => tls.reload(),
            None => Err(crate::config::ConfigError::invalid(
                "tls",
                "(not configured)",
                "no TLS files to reload: set tls.ca_file, tls.cert_file and tls.key_file",
            )),
        }
    }

    /// The members, in index order.
    pub fn members(&self) -> Vec<Member> {
        self.inner
            .entries()
            .iter()
            .map(|e| e.member().clone())
            .collect()
    }

    /// Adds a member (healthy until shown otherwise) and returns it; a URL already present
    /// returns the existing member.
    ///
    /// The member is a *seed*: discovery never drops it. Given as a host name, it is replaced
    /// by the addresses the name resolves to once resolution succeeds (see
    /// [`config::DiscoveryConfig`](crate::config::DiscoveryConfig)).
    ///
    /// A URL with userinfo (`http://user:pw@host:2379`) is known, shown and dialed without it:
    /// etcd takes credentials only through `Auth/Authenticate`.
    pub fn add_member(&self, uri: Uri) -> Member {
        self.add_seed(uri, None)
    }

    /// Adds a member reached through a tonic `Endpoint` (its TLS, credentials and timeouts
    /// are used by the `grpc` and `status` probes too). Userinfo in its URL is left out, as
    /// with [`add_member`](Self::add_member), also from the `:authority` its requests carry.
    pub fn add_member_with_endpoint(&self, endpoint: tonic::transport::Endpoint) -> Member {
        let (uri, endpoint) = crate::config::endpoint_without_userinfo(endpoint);
        let own = OwnEndpoint::new(endpoint, false);
        self.add_seed(uri, Some(own))
    }

    /// As [`add_member_with_endpoint`](Self::add_member_with_endpoint), for an endpoint
    /// `config.tls` was applied to: probes apply it again, as it is then, to follow reloads.
    pub(crate) fn add_member_with_configured_tls(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Member {
        let (uri, endpoint) = crate::config::endpoint_without_userinfo(endpoint);
        let own = OwnEndpoint::new(endpoint, true);
        self.add_seed(uri, Some(own))
    }

    fn add_seed(&self, uri: Uri, endpoint: Option<OwnEndpoint>) -> Member {
        let uri = crate::config::without_userinfo(&uri).unwrap_or(uri);
        self.inner
            .join(
                uri,
                endpoint,
                Origin::Seed,
                false,
                true,
                "given by the caller",
            )
            .unwrap_or_else(|existing| existing)
    }

    /// Removes the member reached at `uri`, if present. A seed given as a host name takes the
    /// addresses it was resolved to along (at the next DNS pass).
    pub fn remove_member(&self, uri: &Uri) -> Option<Member> {
        self.inner.leave(uri, true, "removed by the caller")
    }

    /// Resolves endpoints given as host names with `resolver` from now on (the default is
    /// tokio's `lookup_host`, the system's resolver), and resolves them again at once.
    pub fn set_resolver(&self, resolver: Arc<dyn crate::resolve::Resolve>) {
        self.inner.lock().resolver = resolver;
        self.inner.wanted.dns.notify_one();
    }

    /// Records one outcome for a member, e.g. from a probe of your own.
    ///
    /// Returns the member's status afterwards, or `None` for an unknown member.
    pub fn record(&self, member: &Member, source: Source, outcome: Outcome) -> Option<Status> {
        let entry = self.inner.entry(member.index())?;
        Some(self.inner.record_outcome(&entry, source, outcome, now()))
    }

    /// A copy of every member's state.
    pub fn snapshot(&self) -> Vec<MemberSnapshot> {
        let now = now();
        // The health machines under the lock; the loads and probe reports (locks of their
        // own) after it.
        let (entries, states) = {
            let mut shared = self.inner.lock();
            self.inner.fold_quiet_successes(&mut shared);
            let states: Vec<_> = shared
                .state
                .members()
                .iter()
                .map(|m| m.health().clone())
                .collect();
            (shared.entries.clone(), states)
        };
        entries
            .iter()
            .zip(states)
            .map(|(e, s)| MemberSnapshot {
                member: e.member().clone(),
                origin: e.origin().clone(),
                status: s.status(),
                counters: s.counters(),
                totals: s.totals(),
                ejections: s.ejections(),
                ejections_total: s.ejections_total(),
                ejected_for: s.ejected_until().map(|u| u.saturating_duration_since(now)),
                status_age: now.saturating_duration_since(s.since()),
                last_outcome: s
                    .last()
                    .map(|(src, o, at)| (src, o, now.saturating_duration_since(at))),
                last_probe: e.last_probe(),
                in_flight: e.load().in_flight(),
                requests: e.load().requests(),
                latency: e.load().latency(),
            })
            .collect()
    }

    /// A stream of state changes. Slow receivers miss old events (see
    /// [`broadcast::error::RecvError::Lagged`]); [`snapshot`](Self::snapshot) is always current.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// Requests the stack has sent again to another member since it was built.
    pub fn retries(&self) -> u64 {
        self.inner.counts.retries.load(Ordering::Relaxed)
    }

    /// Reads the stack has also sent to a second member because the first was slow (hedged).
    pub fn hedges(&self) -> u64 {
        self.inner.counts.hedges.load(Ordering::Relaxed)
    }

    /// How much of the retry budget is left: the requests and the retries and hedges of the
    /// last 10 seconds, what may still be added, and how many the budget refused (see
    /// [`RetryConfig::extra_ratio`](crate::config::RetryConfig::extra_ratio)).
    pub fn retry_budget(&self) -> RetryBudgetSnapshot {
        self.inner.budget.snapshot(now())
    }

    /// Who leads, as the leader checks found: the leader's id and index, the term, and while
    /// no member knows a leader (an election), for how long.
    pub fn leader(&self) -> LeaderSnapshot {
        self.inner.lock().state.leader(now())
    }

    /// Whether two handles share one state.
    pub fn ptr_eq(&self, other: &HealthChecker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

// === impl HealthChecker: the rooms above ===

/// What the rooms that hold the handle itself (the balancer, the streams, the drop-in) read
/// and report; the bodies are the state's.
impl HealthChecker {
    /// The members, in index order, as they are now (a later change makes a new list).
    pub(crate) fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        self.inner.entries()
    }

    /// The member of `index`, if still present.
    pub(crate) fn entry(&self, index: usize) -> Option<Arc<MemberEntry>> {
        self.inner.entry(index)
    }

    /// The member that leads, if known.
    pub(crate) fn leader_entry(&self) -> Option<Arc<MemberEntry>> {
        self.inner.leader_entry()
    }

    /// The index of the member that leads, if known (no snapshot built).
    pub(crate) fn leader_index(&self) -> Option<usize> {
        self.inner.leader_index()
    }

    /// The application's classifier, if it gave one.
    pub(crate) fn classifier(&self) -> Option<Arc<dyn Classify>> {
        self.inner.classifier()
    }

    /// The metrics of the requests through this state.
    pub(crate) fn metrics(&self) -> &crate::metrics::Checker {
        self.inner.metrics()
    }

    /// The retry budget every request through this state draws from.
    pub(crate) fn budget(&self) -> &crate::budget::RetryBudget {
        self.inner.budget()
    }

    /// Wakes on every change of a member's status or of the membership.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }

    /// Counts a request sent again to another member.
    pub(crate) fn count_retry(&self) {
        self.inner.count_retry()
    }

    /// Counts a read also sent to a second member.
    pub(crate) fn count_hedge(&self) {
        self.inner.count_hedge()
    }

    /// Asks for a leader check as soon as the scheduler can run one.
    pub(crate) fn want_leader_check(&self) {
        self.inner.want_leader_check()
    }

    /// Whether a request sent to `entry` at `since` and still unanswered hangs on it.
    pub(crate) fn hangs(&self, entry: &MemberEntry, since: Instant) -> bool {
        self.inner.hangs(entry, since)
    }

    /// Whether no member answered a request sent after `since`.
    pub(crate) fn quiet_since(&self, since: Instant) -> bool {
        self.inner.quiet_since(since)
    }

    /// Counts a hang against a member.
    pub(crate) fn record_hang(&self, entry: &MemberEntry) {
        self.inner.record_hang(entry)
    }
}

// === impl Inner: the crate's side ===

impl Inner {
    /// Adds a member found by discovery unless its URL is present (then `Err` with the member
    /// there). A `pending` member starts out of rotation, to be admitted by the probes.
    pub(crate) fn add_found(
        &self,
        uri: Uri,
        origin: Origin,
        pending: bool,
        reason: &str,
    ) -> Result<Member, Member> {
        self.join(uri, None, origin, pending, false, reason)
    }

    /// Drops the member reached at `uri`, if present. Requests in flight to it finish: they
    /// hold their own handle on its channel.
    pub(crate) fn drop_member(&self, uri: &Uri, reason: &str) -> Option<Member> {
        self.leave(uri, false, reason)
    }

    /// The endpoints the caller gave.
    pub(crate) fn seeds(&self) -> Vec<Uri> {
        self.lock().state.seeds().to_vec()
    }

    /// The application's classifier, if it gave one.
    pub(crate) fn classifier(&self) -> Option<Arc<dyn Classify>> {
        self.hooks.classifier.clone()
    }

    /// The resolver for endpoints given as host names.
    pub(crate) fn resolver(&self) -> Arc<dyn crate::resolve::Resolve> {
        self.lock().resolver.clone()
    }

    /// The discovery tasks' wake-ups: (`MemberList`, DNS).
    pub(crate) fn discovery_wanted(&self) -> (Arc<Notify>, Arc<Notify>) {
        (self.wanted.discovery.clone(), self.wanted.dns.clone())
    }

    /// The etcd id of each member that reported one, by index.
    pub(crate) fn member_ids(&self) -> HashMap<usize, u64> {
        self.lock().state.member_ids().clone()
    }

    /// Records a member's etcd id learned by discovery.
    pub(crate) fn note_member_id(&self, index: usize, id: u64) {
        self.run(Event::MemberId { index, id }, None);
    }

    /// The cluster the stack follows, if known; `answered` (a `MemberList` answer's cluster)
    /// is adopted while none is.
    pub(crate) fn cluster_id(&self, answered: Option<u64>) -> Option<u64> {
        let mut shared = self.lock();
        if let Some(id) = answered {
            shared.state.handle(Event::ClusterListed { id }, now());
        }
        shared.state.cluster_id()
    }

    /// Notes the cluster id a member's `status` probe reported; returns the id each member
    /// last reported and how many members there are (most members' id is the expected one).
    pub(crate) fn reported_cluster(&self, index: usize, id: u64) -> (HashMap<usize, u64>, usize) {
        let mut shared = self.lock();
        shared
            .state
            .handle(Event::ClusterReported { index, id }, now());
        (
            shared.state.reported_clusters().clone(),
            shared.state.members().len(),
        )
    }

    /// The members, in index order, as they are now (a later change makes a new list).
    pub(crate) fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        self.lock().entries.clone()
    }

    /// The member of `index`, if still present.
    pub(crate) fn entry(&self, index: usize) -> Option<Arc<MemberEntry>> {
        self.lock()
            .entries
            .iter()
            .find(|e| e.member().index() == index)
            .cloned()
    }

    /// The metrics of the requests through this state.
    pub(crate) fn metrics(&self) -> &crate::metrics::Checker {
        &self.metrics
    }

    /// Counts a request sent again to another member.
    pub(crate) fn count_retry(&self) {
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.retry();
    }

    /// Counts a read also sent to a second member.
    pub(crate) fn count_hedge(&self) {
        self.counts.hedges.fetch_add(1, Ordering::Relaxed);
        self.metrics.hedge();
    }

    /// The retry budget every request through this state draws its retries and hedges from.
    pub(crate) fn budget(&self) -> &crate::budget::RetryBudget {
        &self.budget
    }

    /// `at` as the nanoseconds since the state's epoch that the atomic timestamps hold.
    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The instant of a [`stamp`](Self::stamp).
    fn unstamp(&self, stamp: u64) -> Instant {
        crate::timing::later(self.epoch, Duration::from_nanos(stamp))
    }

    /// Folds the passive successes counted without the lock into the cluster state (see
    /// `MemberEntry::count_quiet_success`): before any event is handled, and before a snapshot
    /// is read, so both see every success that came before them.
    pub(super) fn fold_quiet_successes(&self, shared: &mut Shared) {
        for entry in shared.entries.iter() {
            if let Some((n, last)) = entry.take_quiet_successes() {
                let at = self.unstamp(last);
                shared.state.fold_successes(entry.member().index(), n, at);
            }
        }
    }

    /// Notes that `entry` answered a request (successfully, or with an application error)
    /// that had been sent at `sent`.
    pub(crate) fn answered(&self, entry: &MemberEntry, sent: Instant) {
        entry.answered(self.stamp(sent));
    }

    /// Whether a request sent to `entry` at `since` and still unanswered hangs on it: a peer
    /// answered a request sent after it, while the member answered none (a member that
    /// answers others is slow on one request: a write stuck behind a lost leader, a huge
    /// range), and the leader did not change meanwhile (the election held it).
    pub(crate) fn hangs(&self, entry: &MemberEntry, since: Instant) -> bool {
        let stamp = self.stamp(since);
        let entries = self.entries();
        let index = entry.member().index();
        entries
            .iter()
            .any(|e| e.member().index() != index && e.last_answer() > stamp)
            && entry.last_answer() <= stamp
            && !self.lock().state.leader_changed_since(since)
    }

    /// Whether no member answered a request sent after `since`: then nothing tells a hang
    /// from a stalled cluster, and only a leader check can (see
    /// [`want_leader_check`](Self::want_leader_check)).
    pub(crate) fn quiet_since(&self, since: Instant) -> bool {
        let since = self.stamp(since);
        self.entries().iter().all(|e| e.last_answer() <= since)
    }

    /// The latency estimate of the slowest member in rotation other than `entry`, if any
    /// completed a request.
    pub(crate) fn slowest_peer_latency(&self, entry: &MemberEntry) -> Option<Duration> {
        effects::slowest_peer_latency(&self.entries(), entry.member().index())
    }

    /// Counts a hang against a member: a request it sat on while a peer answered. (The
    /// balancer charges the wait to the member's latency first.) Never takes a majority of
    /// the members out of rotation.
    pub(crate) fn record_hang(&self, entry: &MemberEntry) {
        if self.config.hang.threshold == 0 || !entry.is_healthy() {
            return;
        }
        self.run(
            Event::Hang {
                index: entry.member().index(),
            },
            None,
        );
    }

    /// Asks for a leader check as soon as the scheduler can run one: an answer suggested an
    /// election or a member cut off from the quorum.
    pub(crate) fn want_leader_check(&self) {
        self.wanted.leader.notify_one();
    }

    /// The scheduler's side of [`want_leader_check`](Self::want_leader_check).
    pub(crate) fn leader_wanted(&self) -> Arc<Notify> {
        self.wanted.leader.clone()
    }

    /// The index of the member that leads, if known (what [`leader`](HealthChecker::leader) says,
    /// without the rest of its snapshot).
    pub(crate) fn leader_index(&self) -> Option<usize> {
        self.lock().state.leader_index()
    }

    /// The member that leads, if known.
    pub(crate) fn leader_entry(&self) -> Option<Arc<MemberEntry>> {
        let shared = self.lock();
        let index = shared.state.leader_index()?;
        shared
            .entries
            .iter()
            .find(|e| e.member().index() == index)
            .cloned()
    }

    /// Whether the next leader check is due soon: members answered but none knows a leader
    /// (an election), or members are suspected of being cut off and a second round must
    /// confirm it. (Members that cannot answer `Status` at all do not make it urgent.)
    pub(crate) fn leader_unsettled(&self) -> bool {
        self.lock().state.leader_unsettled()
    }

    /// Whether a member reporting `report` may be re-admitted (see `LeaderView::admits`).
    pub(crate) fn admits(&self, report: &Report) -> Result<(), String> {
        self.lock().state.admits(report)
    }

    /// Judges a round of leader checks: members cut off from the quorum are ejected (as a
    /// failed active check, with the reason in their probe report); leader changes and
    /// elections are published.
    pub(crate) fn apply_leader_round(&self, replies: Vec<(usize, Reply)>, elapsed: Duration) {
        let at = wall_now();
        self.run(
            Event::LeaderRound {
                replies,
                elapsed,
                at,
            },
            None,
        );
    }

    /// Learns the leader from the answers of a leader check still under way, when a majority
    /// of the members already agree on a new one (see `LeaderView::learn`).
    pub(crate) fn learn_leader(&self, replies: &[(usize, Reply)]) {
        self.run(
            Event::LeaderHeard {
                replies: replies.to_vec(),
            },
            None,
        );
    }

    /// The earliest time the cluster state changes with time alone (an ejection ending, see
    /// `ClusterState::poll_timeout`): the probe scheduler wakes by then and calls
    /// [`handle_timeout`](Self::handle_timeout).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lock().state.poll_timeout()
    }

    /// Fires the cluster state's timers due now: each member whose ejection ended becomes due
    /// for a re-admission probe (its mirror no longer says ejected).
    pub(crate) fn handle_timeout(&self) {
        self.run(Event::Timeout, None);
    }

    /// Wakes on every change of a member's status or of the membership.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Feeds one outcome, seen at `now`, to a member's state machine; publishes any status
    /// change.
    pub(crate) fn record_outcome(
        &self,
        entry: &MemberEntry,
        source: Source,
        outcome: Outcome,
        now: Instant,
    ) -> Status {
        // The common case, without the lock: a success on a settled member only adds to its
        // totals (folded in under the lock later, see `MemberEntry::count_quiet_success`).
        if source == Source::Passive
            && outcome == Outcome::Success
            && entry.count_quiet_success(self.stamp(now))
        {
            return Status::Healthy;
        }
        let index = entry.member().index();
        let (effects, status) = self.run_then_at(
            Event::Outcome {
                index,
                source,
                outcome,
            },
            None,
            now,
            |state| state.member(index).map(|m| m.health().status()),
        );
        self.execute(effects);
        // A member that left keeps the status it had.
        status.unwrap_or_else(|| match entry.is_healthy() {
            true => Status::Healthy,
            false => Status::Unhealthy,
        })
    }

    /// Stores the report of an active probe and records its outcome.
    pub(crate) fn record_probe(&self, entry: &MemberEntry, report: ProbeReport) {
        tracing::debug!(member = %entry.member(), outcome = %report.outcome, detail = %report.detail, elapsed = ?report.elapsed, "probe");
        let outcome = report.outcome;
        entry.set_last_probe(report);
        self.run(
            Event::Probe {
                index: entry.member().index(),
                outcome,
            },
            None,
        );
    }
}

#[cfg(test)]
mod tests;
