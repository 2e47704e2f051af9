//! The shared health state of a set of etcd members: the handle every part of the stack holds.
//!
//! Why a separate handle: the balancer, the probe scheduler, the passive classifier and the
//! user's dashboard all need the same view of which member is healthy. [`HealthChecker`] is that
//! view: cheap to clone, `Send + Sync`, and shared process-wide between stacks built with the
//! same `shm_name` (the seed's `lua_shared_dict`), so two clients never disagree about a member.
//!
//! The pure `HealthState` machines (`crate::health`) live inside; this module adds
//! locking, the clock, jitter, events, `tracing` output and the probe scheduler's lifetime (it
//! stops when the last handle is dropped).
//!
//! Why the state is private: the rest of the crate reads and changes it through methods only
//! (record an outcome, read the members, wait for changes, the config and the TLS material),
//! so the rules that tie its parts together (a re-admitted member's load restarts, a hang
//! never takes a majority out of rotation, every change is published) hold in one place.
//! What belongs to others stays theirs: the balancer's load estimate (`balance/load.rs`, held
//! here per member), answer classification (`passive/`), TLS choices (`tls/`), and the tasks
//! that run beside the state (`probe/`, `discovery/`, started by `start.rs`).

mod registry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use http::Uri;
use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, watch, Notify};

use crate::budget::RetryBudgetSnapshot;
use crate::event::{EventKind, EventSink, HealthEvent};
use crate::leader::LeaderSnapshot;
use crate::member::{Member, MemberEntry, MemberSnapshot, Origin, OwnEndpoint, ProbeReport};
use crate::timing::{now, wall_now};

use crate::config::Config;
use crate::health::{Classify, Ejection, Outcome, Source, Status, Thresholds};
use crate::leader::{LeaderView, Reply, Report};

/// Handle to the health state of a set of etcd members.
///
/// Clones share the state. The active probe scheduler runs as long as a handle exists.
#[derive(Clone, Debug)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

/// A handle on the health state that does not keep it alive: the tasks that run beside it
/// (probes, discovery) hold this one, and stop once it no longer upgrades.
#[derive(Clone, Debug)]
pub(crate) struct WeakChecker(Weak<Inner>);

/// The shared state behind a [`HealthChecker`].
#[derive(Debug)]
struct Inner {
    config: Config,
    active: Thresholds,
    passive: Thresholds,
    ejection: Ejection,
    members: RwLock<Arc<Vec<Arc<MemberEntry>>>>,
    next_index: Mutex<usize>,
    events: broadcast::Sender<HealthEvent>,
    /// Bumped on every status or membership change; the balancer and scheduler watch it.
    changed: watch::Sender<u64>,
    rng: Mutex<rand::rngs::StdRng>,
    /// Requests sent again to another member. (This and the other event counts of the stack,
    /// `hedges`, a member's `requests`, the auth layer's `authentications`, are `AtomicU64`
    /// and wrap by design; at a million a second that takes 584 000 years. The counts the
    /// health rules read saturate instead: see `health::Counters` and `HealthState`.)
    retries: AtomicU64,
    /// Reads also sent to a second member (hedged).
    hedges: AtomicU64,
    /// What retries and hedges may still add, shared by every request.
    budget: crate::budget::RetryBudget,
    /// The metrics' handles (nothing without the `metrics` feature).
    metrics: crate::metrics::Checker,
    /// Who leads, from the leader checks.
    leader: Mutex<LeaderView>,
    /// Asks the probe scheduler for a leader check now.
    leader_wanted: Arc<Notify>,
    /// Origin of the `last_answer` timestamps.
    epoch: Instant,
    /// When a leader check last saw the leader change or an election begin (nanoseconds since
    /// `epoch`, 0 for never): requests that lived through it waited for etcd, not on a hung
    /// member.
    leader_changed_at: AtomicU64,
    /// The endpoints the caller gave, in order: discovery never drops them, and those given
    /// as host names are resolved to their addresses.
    seeds: Mutex<Vec<Uri>>,
    /// Asks the `MemberList` discovery for a pass now.
    discovery_wanted: Arc<Notify>,
    /// Asks the DNS discovery for a pass now.
    dns_wanted: Arc<Notify>,
    /// How host names are resolved.
    resolver: RwLock<Arc<dyn crate::resolve::Resolve>>,
    /// The application's hooks into the state (the others run beside it: see `start.rs`).
    hooks: Hooks,
    /// TLS material from `config.tls`; `None` when nothing is configured.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// === impl HealthChecker ===

impl HealthChecker {
    /// The health state for `endpoints` under `config` (validated first: a bad value is an
    /// error naming the field and the value), or the live one of `config.shm_name` in this
    /// process (its config wins; endpoints it lacks are added). `start` runs once, when a new
    /// state is made, to start what runs beside it (the probe scheduler, discovery): they
    /// import this module, so it never names them. Must be called inside a tokio runtime.
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
                active: Thresholds::active(&config.checks.active),
                passive: Thresholds::passive(&config.checks.passive, config.hang.threshold),
                ejection: Ejection::new(&config.ejection),
                budget: crate::budget::RetryBudget::new(&config.retry, now()),
                config,
                members: RwLock::new(Arc::new(Vec::new())),
                next_index: Mutex::new(0),
                events,
                changed,
                rng: Mutex::new(rand::rngs::StdRng::from_os_rng()),
                retries: AtomicU64::new(0),
                hedges: AtomicU64::new(0),
                metrics: crate::metrics::Checker::new(),
                leader: Mutex::new(LeaderView::default()),
                leader_wanted: Arc::new(Notify::new()),
                epoch: now(),
                leader_changed_at: AtomicU64::new(0),
                seeds: Mutex::new(Vec::new()),
                discovery_wanted: Arc::new(Notify::new()),
                dns_wanted: Arc::new(Notify::new()),
                resolver: RwLock::new(Arc::new(crate::resolve::TokioResolver)),
                hooks,
                #[cfg(feature = "tls")]
                tls,
            }),
        }
    }

    /// A handle on the state that does not keep it alive (for the tasks that run beside it).
    pub(crate) fn downgrade(&self) -> WeakChecker {
        WeakChecker(Arc::downgrade(&self.inner))
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
        self.entries().iter().map(|e| e.member().clone()).collect()
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
        let inner = &self.inner;
        let new_seed = {
            let mut seeds = lock(&inner.seeds);
            let new = !seeds.iter().any(|s| crate::config::same_endpoint(s, &uri));
            if new {
                seeds.push(uri.clone());
            }
            new
        };
        let member = self
            .add_entry(
                uri.clone(),
                endpoint,
                Origin::Seed,
                false,
                "given by the caller",
            )
            .unwrap_or_else(|existing| existing);
        if new_seed {
            inner.dns_wanted.notify_one();
            inner.discovery_wanted.notify_one();
        }
        member
    }

    /// Removes the member reached at `uri`, if present. A seed given as a host name takes the
    /// addresses it was resolved to along (at the next DNS pass).
    pub fn remove_member(&self, uri: &Uri) -> Option<Member> {
        let inner = &self.inner;
        let was_seed = {
            let mut seeds = lock(&inner.seeds);
            let before = seeds.len();
            seeds.retain(|s| !crate::config::same_endpoint(s, uri));
            seeds.len() != before
        };
        if was_seed {
            inner.dns_wanted.notify_one();
        }
        self.drop_member(uri, "removed by the caller")
    }

    /// Resolves endpoints given as host names with `resolver` from now on (the default is
    /// tokio's `lookup_host`, the system's resolver), and resolves them again at once.
    pub fn set_resolver(&self, resolver: Arc<dyn crate::resolve::Resolve>) {
        *self
            .inner
            .resolver
            .write()
            .unwrap_or_else(|p| p.into_inner()) = resolver;
        self.inner.dns_wanted.notify_one();
    }

    /// Records one outcome for a member, e.g. from a probe of your own.
    ///
    /// Returns the member's status afterwards, or `None` for an unknown member.
    pub fn record(&self, member: &Member, source: Source, outcome: Outcome) -> Option<Status> {
        let entry = self.entry(member.index())?;
        Some(self.record_outcome(&entry, source, outcome))
    }

    /// A copy of every member's state.
    pub fn snapshot(&self) -> Vec<MemberSnapshot> {
        let now = now();
        self.entries()
            .iter()
            .map(|e| {
                let s = lock(&e.state).clone();
                MemberSnapshot {
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
                    last_probe: lock(&e.last_probe).clone(),
                    in_flight: e.load().in_flight(),
                    requests: e.load().requests(),
                    latency: e.load().latency(),
                }
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
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// Reads the stack has also sent to a second member because the first was slow (hedged).
    pub fn hedges(&self) -> u64 {
        self.inner.hedges.load(Ordering::Relaxed)
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
        lock(&self.inner.leader).snapshot(now())
    }

    /// Whether two handles share one state.
    pub fn ptr_eq(&self, other: &HealthChecker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

// === impl HealthChecker: the crate's side ===

impl HealthChecker {
    /// Adds a member found by discovery unless its URL is present (then `Err` with the member
    /// there). A `pending` member starts out of rotation, to be admitted by the probes.
    pub(crate) fn add_found(
        &self,
        uri: Uri,
        origin: Origin,
        pending: bool,
        reason: &str,
    ) -> Result<Member, Member> {
        self.add_entry(uri, None, origin, pending, reason)
    }

    /// Adds a member unless its URL is present (then `Err` with the member there).
    fn add_entry(
        &self,
        uri: Uri,
        endpoint: Option<OwnEndpoint>,
        origin: Origin,
        pending: bool,
        reason: &str,
    ) -> Result<Member, Member> {
        let mut members = self
            .inner
            .members
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = members
            .iter()
            .find(|e| crate::config::same_endpoint(e.member().uri(), &uri))
        {
            return Err(e.member().clone());
        }
        let index = {
            let mut next = lock(&self.inner.next_index);
            *next += 1;
            *next - 1
        };
        let member = Member::new(index, uri);
        let entry = Arc::new(MemberEntry::new(
            member.clone(),
            endpoint,
            origin.clone(),
            pending,
            now(),
        ));
        let mut next: Vec<_> = members.iter().cloned().collect();
        next.push(entry);
        *members = Arc::new(next);
        drop(members);
        tracing::info!(member = %member, %origin, pending, reason, "member added");
        self.publish(
            member.clone(),
            EventKind::Added {
                origin,
                reason: reason.to_owned(),
            },
        );
        Ok(member)
    }

    /// Drops the member reached at `uri`, if present. Requests in flight to it finish: they
    /// hold their own handle on its channel.
    pub(crate) fn drop_member(&self, uri: &Uri, reason: &str) -> Option<Member> {
        let mut members = self
            .inner
            .members
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let pos = members
            .iter()
            .position(|e| crate::config::same_endpoint(e.member().uri(), uri))?;
        let mut next: Vec<_> = members.iter().cloned().collect();
        let removed = next.remove(pos);
        *members = Arc::new(next);
        drop(members);
        lock(&self.inner.leader).forget(removed.member().index());
        removed.metrics().left();
        tracing::info!(member = %removed.member(), origin = %removed.origin(), reason, "member removed");
        self.publish(
            removed.member().clone(),
            EventKind::Removed {
                origin: removed.origin().clone(),
                reason: reason.to_owned(),
            },
        );
        Some(removed.member().clone())
    }

    /// The endpoints the caller gave.
    pub(crate) fn seeds(&self) -> Vec<Uri> {
        lock(&self.inner.seeds).clone()
    }

    /// The application's classifier, if it gave one.
    pub(crate) fn classifier(&self) -> Option<Arc<dyn Classify>> {
        self.inner.hooks.classifier.clone()
    }

    /// The resolver for endpoints given as host names.
    pub(crate) fn resolver(&self) -> Arc<dyn crate::resolve::Resolve> {
        self.inner
            .resolver
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The discovery tasks' wake-ups: (`MemberList`, DNS).
    pub(crate) fn discovery_wanted(&self) -> (Arc<Notify>, Arc<Notify>) {
        (
            self.inner.discovery_wanted.clone(),
            self.inner.dns_wanted.clone(),
        )
    }

    /// The etcd id of each member that reported one, by index.
    pub(crate) fn member_ids(&self) -> std::collections::HashMap<usize, u64> {
        lock(&self.inner.leader).ids().clone()
    }

    /// Records a member's etcd id learned by discovery.
    pub(crate) fn note_member_id(&self, index: usize, id: u64) {
        lock(&self.inner.leader).note_id(index, id);
    }

    /// The cluster the stack follows, if known; `answered` (a `MemberList` answer's cluster)
    /// is adopted while none is.
    pub(crate) fn cluster_id(&self, answered: Option<u64>) -> Option<u64> {
        let mut view = lock(&self.inner.leader);
        if let Some(id) = answered {
            view.note_cluster(id);
        }
        view.cluster_id()
    }

    /// The members, in index order, as they are now (a later change makes a new list).
    pub(crate) fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        self.inner
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The member of `index`, if still present.
    pub(crate) fn entry(&self, index: usize) -> Option<Arc<MemberEntry>> {
        self.entries()
            .iter()
            .find(|e| e.member().index() == index)
            .cloned()
    }

    /// The metrics of the requests through this state.
    pub(crate) fn metrics(&self) -> &crate::metrics::Checker {
        &self.inner.metrics
    }

    /// Counts a request sent again to another member.
    pub(crate) fn count_retry(&self) {
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.retry();
    }

    /// Counts a read also sent to a second member.
    pub(crate) fn count_hedge(&self) {
        self.inner.hedges.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.hedge();
    }

    /// The retry budget every request through this state draws its retries and hedges from.
    pub(crate) fn budget(&self) -> &crate::budget::RetryBudget {
        &self.inner.budget
    }

    /// `at` as the nanoseconds since the state's epoch that the atomic timestamps hold.
    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.epoch).as_nanos() as u64
    }

    /// Notes that `entry` answered a request (successfully, or with an application error)
    /// that had been sent at `sent`.
    pub(crate) fn answered(&self, entry: &MemberEntry, sent: Instant) {
        let at = self.stamp(sent);
        entry.last_answer.fetch_max(at.max(1), Ordering::Relaxed);
    }

    /// Whether a request sent to `entry` at `since` and still unanswered hangs on it: a peer
    /// answered a request sent after it, while the member answered none (a member that
    /// answers others is slow on one request: a write stuck behind a lost leader, a huge
    /// range), and the leader did not change meanwhile (the election held it).
    pub(crate) fn hangs(&self, entry: &MemberEntry, since: Instant) -> bool {
        self.peer_answered_since(entry.member().index(), since)
            && !self.answered_since(entry, since)
            && !self.leader_changed_since(since)
    }

    /// Whether no member answered a request sent after `since`: then nothing tells a hang
    /// from a stalled cluster, and only a leader check can (see
    /// [`want_leader_check`](Self::want_leader_check)).
    pub(crate) fn quiet_since(&self, since: Instant) -> bool {
        let since = self.stamp(since);
        self.entries()
            .iter()
            .all(|e| e.last_answer.load(Ordering::Relaxed) <= since)
    }

    /// Whether `entry` itself answered a request sent after `since`.
    fn answered_since(&self, entry: &MemberEntry, since: Instant) -> bool {
        let since = self.stamp(since);
        entry.last_answer.load(Ordering::Relaxed) > since
    }

    /// Whether the leader changed (or an election began) after `since`: a request that lived
    /// through that waited on the cluster, not on its member alone.
    fn leader_changed_since(&self, since: Instant) -> bool {
        let since = self.stamp(since);
        self.inner.leader_changed_at.load(Ordering::Relaxed) > since
    }

    /// Whether a member other than `except` answered a request sent after `since`.
    fn peer_answered_since(&self, except: usize, since: Instant) -> bool {
        let since = self.stamp(since);
        self.entries()
            .iter()
            .any(|e| e.member().index() != except && e.last_answer.load(Ordering::Relaxed) > since)
    }

    /// The latency estimate of the slowest member in rotation other than `entry`, if any
    /// completed a request.
    pub(crate) fn slowest_peer_latency(&self, entry: &MemberEntry) -> Option<Duration> {
        self.entries()
            .iter()
            .filter(|e| e.member() != entry.member() && e.is_healthy())
            .filter_map(|e| e.load().latency())
            .max()
    }

    /// Counts a hang against a member: a request it sat on while a peer answered. (The
    /// balancer charges the wait to the member's latency first.)
    pub(crate) fn record_hang(&self, entry: &MemberEntry) {
        if self.inner.config.hang.threshold == 0 || !entry.is_healthy() {
            return;
        }
        // A hang is a heuristic: never let it take a majority of the members out of rotation
        // (a slow cluster must not eject itself member by member). Hard failures are not held
        // back by this.
        let entries = self.entries();
        if !entries.iter().any(|e| e.member() == entry.member()) {
            // The member left while its request hung (removed, or dropped by discovery):
            // nothing to count against, and it is not among the healthy ones below.
            tracing::debug!(member = %entry.member(), "hang not counted: the member left");
            return;
        }
        let healthy = entries.iter().filter(|e| e.is_healthy()).count();
        if healthy.saturating_sub(1) * 2 <= entries.len() {
            tracing::debug!(member = %entry.member(), healthy, members = entries.len(), "hang not counted: a majority must stay in rotation");
            return;
        }
        entry.metrics().attempt_judged(Some(Outcome::Hang));
        self.record_outcome(entry, Source::Passive, Outcome::Hang);
    }

    /// Asks for a leader check as soon as the scheduler can run one: an answer suggested an
    /// election or a member cut off from the quorum.
    pub(crate) fn want_leader_check(&self) {
        self.inner.leader_wanted.notify_one();
    }

    /// The scheduler's side of [`want_leader_check`](Self::want_leader_check).
    pub(crate) fn leader_wanted(&self) -> Arc<Notify> {
        self.inner.leader_wanted.clone()
    }

    /// The member that leads, if known.
    pub(crate) fn leader_entry(&self) -> Option<Arc<MemberEntry>> {
        let index = lock(&self.inner.leader).leader_index()?;
        self.entry(index)
    }

    /// Whether the next leader check is due soon: members answered but none knows a leader
    /// (an election), or members are suspected of being cut off and a second round must
    /// confirm it. (Members that cannot answer `Status` at all do not make it urgent.)
    pub(crate) fn leader_unsettled(&self) -> bool {
        let view = lock(&self.inner.leader);
        view.electing() || view.has_suspects()
    }

    /// Whether a member reporting `report` may be re-admitted (see [`LeaderView::admits`]).
    pub(crate) fn admits(&self, report: &Report) -> Result<(), String> {
        lock(&self.inner.leader).admits(report)
    }

    /// Judges a round of leader checks: members cut off from the quorum are ejected (as a
    /// failed active check, with the reason in their probe report); leader changes and
    /// elections are published.
    pub(crate) fn apply_leader_round(&self, replies: Vec<(usize, Reply)>, elapsed: Duration) {
        let entries = self.entries();
        let confirm = self.inner.config.leader.election_interval * 2;
        let (verdict, snapshot) = {
            let mut view = lock(&self.inner.leader);
            let verdict = view.round(&replies, entries.len(), now(), confirm);
            (verdict, view.snapshot(now()))
        };
        for (index, why) in verdict.cut_off {
            let Some(entry) = entries.iter().find(|e| e.member().index() == index) else {
                continue;
            };
            if !entry.is_healthy() {
                continue;
            }
            tracing::warn!(member = %entry.member(), reason = %why, "member cut off from the quorum");
            self.record_probe(
                entry,
                ProbeReport {
                    outcome: Outcome::Failure,
                    detail: format!("leader check: {why}"),
                    elapsed,
                    at: wall_now(),
                },
            );
            if !entry.is_healthy() {
                // Without the leader (or silent since it lost it), it cannot complete a write
                // or a linearizable read: those in flight on it would wait for etcd's own 7 s
                // timeout, or for as long as it hangs.
                tracing::debug!(member = %entry.member(), "requests in flight on the member cut off are abandoned");
                entry.abandon();
            }
        }
        if verdict.changed {
            self.leader_changed(&entries, &snapshot);
        }
    }

    /// Learns the leader from the answers of a leader check still under way, when a majority
    /// of the members already agree on a new one (see `LeaderView::learn`).
    pub(crate) fn learn_leader(&self, replies: &[(usize, Reply)]) {
        let entries = self.entries();
        let learned = {
            let mut view = lock(&self.inner.leader);
            view.learn(replies, entries.len())
                .then(|| view.snapshot(now()))
        };
        if let Some(snapshot) = learned {
            tracing::debug!("leader learned before the slowest members answered the leader check");
            self.leader_changed(&entries, &snapshot);
        }
    }

    /// The leader (or "no leader") changed to `snapshot`'s: stamped, logged and published.
    fn leader_changed(&self, entries: &[Arc<MemberEntry>], snapshot: &LeaderSnapshot) {
        let at = self.stamp(now());
        self.inner
            .leader_changed_at
            .store(at.max(1), Ordering::Relaxed);
        let member = snapshot
            .leader_index
            .and_then(|i| entries.iter().find(|e| e.member().index() == i))
            .or_else(|| entries.first())
            .map(|e| e.member().clone());
        match snapshot.leader_id {
            Some(id) => {
                tracing::info!(leader = %format_args!("{id:x}"), term = snapshot.term, "leader known")
            }
            None => tracing::warn!(term = snapshot.term, "no member knows a leader: election"),
        }
        if let Some(member) = member {
            self.publish(
                member,
                EventKind::LeaderChanged {
                    leader_id: snapshot.leader_id,
                    term: snapshot.term,
                },
            );
        }
    }

    /// Wakes on every change of a member's status or of the membership.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Feeds one outcome to a member's state machine; publishes any status change.
    pub(crate) fn record_outcome(
        &self,
        entry: &MemberEntry,
        source: Source,
        outcome: Outcome,
    ) -> Status {
        let thresholds = match source {
            Source::Active => &self.inner.active,
            Source::Passive => &self.inner.passive,
        };
        // The jitter of an ejection, which only a failure causes: a success (every answer on
        // the happy path) takes no lock on the shared generator.
        let unit: f64 = match outcome.is_failure() {
            true => lock(&self.inner.rng).random(),
            false => 0.0,
        };
        let mut state = lock(&entry.state);
        let transition = state.record(
            source,
            outcome,
            now(),
            thresholds,
            &self.inner.ejection,
            unit,
        );
        let status = state.status();
        if let Some(t) = transition {
            entry.healthy.store(status.is_healthy(), Ordering::Release);
            if status.is_healthy() {
                entry.admitted.store(true, Ordering::Release);
                entry.returns.fetch_add(1, Ordering::AcqRel);
                entry.load().reset(self.slowest_peer_latency(entry), now());
            }
            drop(state);
            entry.metrics().transition(&t);
            if t.to == Status::Unhealthy && outcome == Outcome::Hang {
                // It sits on requests: those in flight on it would wait for as long as it does.
                tracing::debug!(member = %entry.member(), "requests in flight on the ejected member are abandoned");
                entry.abandon();
            }
            match t.to {
                Status::Unhealthy => tracing::warn!(
                    member = %entry.member(),
                    source = %t.source,
                    reason = %t.outcome,
                    count = t.count,
                    ejected_for = ?t.ejected_for,
                    ejections = t.ejections,
                    "member ejected"
                ),
                Status::Healthy => tracing::info!(
                    member = %entry.member(),
                    source = %t.source,
                    count = t.count,
                    "member re-admitted"
                ),
            }
            self.publish(entry.member().clone(), EventKind::StatusChanged(t));
            if status == Status::Unhealthy && self.entries().iter().all(|e| !e.is_healthy()) {
                tracing::error!(policy = ?self.inner.config.all_unhealthy, "every etcd member is unhealthy");
                self.publish(entry.member().clone(), EventKind::AllUnhealthy);
            }
        }
        status
    }

    /// Stores the report of an active probe and records its outcome.
    pub(crate) fn record_probe(&self, entry: &MemberEntry, report: ProbeReport) {
        tracing::debug!(member = %entry.member(), outcome = %report.outcome, detail = %report.detail, elapsed = ?report.elapsed, "probe");
        let outcome = report.outcome;
        *lock(&entry.last_probe) = Some(report);
        self.record_outcome(entry, Source::Active, outcome);
    }

    fn publish(&self, member: Member, kind: EventKind) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        let entries = self.entries();
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
        self.inner.metrics.published(healthy, entries.len(), change);
        let event = HealthEvent { member, kind };
        if let Some(sink) = &self.inner.hooks.sink {
            sink.event(&event);
        }
        let _ = self.inner.events.send(event);
    }
}

// === impl WeakChecker ===

impl WeakChecker {
    /// The health state, unless every [`HealthChecker`] is gone.
    pub(crate) fn upgrade(&self) -> Option<HealthChecker> {
        self.0.upgrade().map(|inner| HealthChecker { inner })
    }
}

#[cfg(test)]
mod tests;
