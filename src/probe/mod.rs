//! Active probes: the health checker asking a member, on its own, whether it can serve.
//!
//! Why several kinds: each sees a different failure (DESIGN.md, section 1). A TCP connect sees
//! a dead member but not a hung one; `grpc.health.v1` sees a hung member but not a partition
//! (etcd sets it once at start-up); `GET /health` (the seed's probe) and `Maintenance/Status`
//! see all three. Every probe has its own deadline, because a SIGSTOPped member accepts TCP
//! and then never answers.
//!
//! Why a trait: a deployment knows things about its members the crate cannot (a `/readyz`
//! behind a sidecar, a database size that must stay under the quota, a maintenance flag in
//! its own control plane). [`Probe`] is the one shape every probe has, the four built-ins
//! ([`StatusProbe`], [`HttpProbe`], [`GrpcProbe`], [`TcpProbe`]) included; set your own with
//! [`HealthCheckerBuilder::probe`](crate::start::HealthCheckerBuilder::probe). The scheduler around
//! it (when to probe, how many at once, thresholds, the re-admission and leader checks) stays
//! the same whichever probe runs.

mod grpc;
mod http;
mod schedule;
mod scheduler;
mod status;
mod tcp;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tonic::transport::Channel;

pub use grpc::GrpcProbe;
pub use http::HttpProbe;
pub(crate) use scheduler::{probe_channel, spawn};
pub use status::StatusProbe;
pub use tcp::TcpProbe;

use crate::config::{ActiveChecks, Config, ProbeType};
use crate::health::Outcome;
use crate::leader::{Reply, Report};
use crate::member::Member;
use crate::member::{MemberEntry, ProbeReport};

/// What the probes need of the health state: the one port through which this room reads and
/// writes it. The health state implements it; this room never names the checker, so the
/// checker may start the probes without an import cycle.
pub(crate) trait Cluster: Send + Sync {
    /// The configuration in force.
    fn config(&self) -> &Config;
    /// The TLS material of `config.tls`, if any.
    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<&crate::tls::Tls>;
    /// The members, in index order, as they are now.
    fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>>;
    /// The member of `index`, if still present.
    fn entry(&self, index: usize) -> Option<Arc<MemberEntry>>;
    /// Wakes on every change of a member's status or of the membership.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Notified when an answer asks for a leader check now.
    fn leader_wanted(&self) -> Arc<tokio::sync::Notify>;
    /// Asks for a leader check as soon as one can run.
    fn want_leader_check(&self);
    /// The retry budget (the scheduler shows it in the metrics).
    fn budget(&self) -> &crate::budget::RetryBudget;
    /// The etcd id of each member that reported one, by index.
    fn member_ids(&self) -> HashMap<usize, u64>;
    /// Learns the leader from the early answers of a leader check still under way.
    fn learn_leader(&self, replies: &[(usize, Reply)]);
    /// Judges a complete round of leader checks.
    fn apply_leader_round(&self, replies: Vec<(usize, Reply)>, elapsed: Duration);
    /// Whether the next leader check is due soon (an election, or a suspicion to confirm).
    fn leader_unsettled(&self) -> bool;
    /// Whether a member reporting `report` may be re-admitted.
    fn admits(&self, report: &Report) -> Result<(), String>;
    /// Notes the cluster id a `status` probe reported; returns each member's last reported id
    /// and how many members there are.
    fn reported_cluster(&self, index: usize, id: u64) -> (HashMap<usize, u64>, usize);
    /// Stores the report of an active probe and records its outcome.
    fn record_probe(&self, entry: &MemberEntry, report: ProbeReport);
    /// The earliest time the health state changes with time alone (an ejection ending): the
    /// scheduler wakes by then and calls [`handle_timeout`](Self::handle_timeout).
    fn next_deadline(&self) -> Option<std::time::Instant>;
    /// Fires the health state's timers due now (a member whose ejection ended becomes due for
    /// a re-admission probe).
    fn handle_timeout(&self);
}

/// The health state as the probe tasks hold it: they stop once it no longer upgrades.
pub(crate) type WeakCluster = Weak<dyn Cluster>;

/// An active health check of one member.
///
/// The scheduler calls [`probe`](Self::probe) for a member when its interval says so
/// (`checks.active.healthy.interval` / `unhealthy.interval`: the seed's default probes only
/// unhealthy members, so set `healthy.interval` for a probe that should eject members in
/// rotation), at most
/// `checks.active.concurrency` at once, and feeds the [`Finding`] to the member's active
/// counters exactly as it does a built-in probe's. The returned future should end within
/// [`ProbeTarget::timeout`]; one still running at twice that is cut off by the scheduler and
/// counts as a timeout.
///
/// How it combines with the crate's own checks, which run whatever the probe:
/// - A member out of rotation whose probe succeeds is re-admitted only if its
///   `Maintenance/Status` then follows the known leader at the known term and shows this
///   cluster's id (the *admission check*); a member that cannot answer `Status` (no
///   permission) is not held back by it, except a member found by discovery.
/// - The *leader checks* (`leader.interval`) still ask every member's `Status` and eject a
///   member cut off from the quorum, whatever a custom probe says of it.
///
/// So a custom probe can only add reasons to eject a member, never keep one in rotation that
/// the leader check finds cut off. To keep a built-in's view as well, call it from yours
/// (see the example).
///
/// # Example
///
/// A member is healthy only while the application's own flag allows it, and `GET /health`
/// (the built-in `http` probe) agrees:
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// use etcd_health::extend::{BoxFuture, Finding, HttpProbe, Probe, ProbeTarget};
///
/// #[derive(Debug)]
/// struct Drained {
///     /// The member index the operator drains, while `on` is set.
///     member: usize,
///     on: AtomicBool,
/// }
///
/// impl Probe for Drained {
///     fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
///         Box::pin(async move {
///             if target.member().index() == self.member && self.on.load(Ordering::Relaxed) {
///                 return Finding::failure("drained by the operator");
///             }
///             HttpProbe::HTTP.probe(target).await
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), etcd_health::Error> {
/// let drained = Arc::new(Drained { member: 1, on: AtomicBool::new(false) });
/// let checker = etcd_health::HealthChecker::builder(etcd_health::Config::default())
///     .probe(drained.clone())
///     .build(&["http://127.0.0.1:2379", "http://127.0.0.1:22379"])?;
/// drained.on.store(true, Ordering::Relaxed); // member 1 leaves rotation at its next probes
/// # drop(checker);
/// # Ok(())
/// # }
/// ```
pub trait Probe: Send + Sync + fmt::Debug {
    /// Probes `target.member()`; the future's [`Finding`] says what was found.
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding>;
}

/// A boxed, `Send` future, as [`Probe::probe`] returns (re-exported from `futures-util`).
pub use futures_util::future::BoxFuture;

/// The built-in probe `kind` names (the config's `checks.active.type`).
pub fn builtin(kind: ProbeType) -> Arc<dyn Probe> {
    match kind {
        ProbeType::Http => Arc::new(HttpProbe::HTTP),
        ProbeType::Https => Arc::new(HttpProbe::HTTPS),
        ProbeType::Tcp => Arc::new(TcpProbe),
        ProbeType::Grpc => Arc::new(GrpcProbe),
        ProbeType::Status => Arc::new(StatusProbe),
    }
}

// === impl ProbeTarget ===

/// What a [`Probe`] is given: the member, the active-check config, and the ways to reach it
/// the crate has set up (a gRPC channel with the member's TLS; the TLS material for a
/// connection of the probe's own).
pub struct ProbeTarget<'a> {
    entry: &'a MemberEntry,
    checks: &'a ActiveChecks,
    channel: &'a Result<Channel, String>,
    /// The health state, for what the built-in `http` probe reads of it (its TLS).
    checker: &'a WeakCluster,
}

impl<'a> ProbeTarget<'a> {
    pub(crate) fn new(
        entry: &'a MemberEntry,
        checks: &'a ActiveChecks,
        channel: &'a Result<Channel, String>,
        checker: &'a WeakCluster,
    ) -> Self {
        Self {
            entry,
            checks,
            channel,
            checker,
        }
    }

    /// The member to probe.
    pub fn member(&self) -> &'a Member {
        self.entry.member()
    }

    /// The `checks.active` config in force (its `timeout`, `http_path`, `req_headers`, ...).
    pub fn checks(&self) -> &'a ActiveChecks {
        self.checks
    }

    /// The probe's deadline, `checks.active.timeout`.
    pub fn timeout(&self) -> Duration {
        self.checks.timeout
    }

    /// A gRPC channel to the member, shared by its probes and leader checks, with the TLS
    /// material its requests use (`config.tls`, or the member's own endpoint's). Cheap to
    /// clone. `Err` says why it could not be set up (the TLS material); the probe should then
    /// report a [`Finding::failure`].
    ///
    /// The scheduler makes it anew after a probe found no answer (a connection that lived
    /// through a fault may stay silent while the member answers new ones).
    pub fn channel(&self) -> Result<&'a Channel, &'a str> {
        self.channel.as_ref().map_err(String::as_str)
    }

    /// The TLS material of `config.tls`, `None` when nothing is configured (then `https://`
    /// members are verified against the system's roots), for a probe that opens connections
    /// of its own.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<crate::tls::Tls> {
        self.checker.upgrade().and_then(|c| c.tls().cloned())
    }

    /// The health state, while it lives.
    pub(crate) fn checker(&self) -> Option<Arc<dyn Cluster>> {
        self.checker.upgrade()
    }
}

impl fmt::Debug for ProbeTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("member", self.entry.member())
            .field("timeout", &self.checks.timeout)
            .finish_non_exhaustive()
    }
}

// === impl Finding ===

/// What one probe found: a verdict (none when the answer is neither healthy nor unhealthy),
/// and a description, kept in the member's [`ProbeReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub(crate) outcome: Option<Outcome>,
    pub(crate) detail: String,
    /// The member knows no leader: for a member in rotation, a leader check decides whether
    /// that is an election or this member cut off.
    pub(crate) leaderless: bool,
    /// The cluster id the member reported (`status` probes): the scheduler holds it against
    /// the one most members report.
    pub(crate) cluster_id: Option<u64>,
}

impl Finding {
    /// A finding with `outcome` (`Outcome::Success` counts toward `healthy.successes`, the
    /// others toward their `unhealthy` counter) and a description.
    pub fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome: Some(outcome),
            detail: detail.into(),
            leaderless: false,
            cluster_id: None,
        }
    }

    /// The member is fit to serve.
    pub fn success(detail: impl Into<String>) -> Self {
        Self::new(Outcome::Success, detail)
    }

    /// The member answered, and is not fit to serve (counts toward
    /// `unhealthy.http_failures`).
    pub fn failure(detail: impl Into<String>) -> Self {
        Self::new(Outcome::Failure, detail)
    }

    /// An answer that counts neither way (logged as ignored).
    pub fn ignored(detail: impl Into<String>) -> Self {
        Self {
            outcome: None,
            ..Self::new(Outcome::Success, detail)
        }
    }

    /// The member answered that it knows no leader. For a member in rotation this is not
    /// counted: a leader check of every member tells an election (nobody to blame) from this
    /// member cut off from the quorum (ejected). For a member out of rotation, a failure.
    pub fn leaderless(detail: impl Into<String>) -> Self {
        Self {
            leaderless: true,
            ..Self::failure(detail)
        }
    }

    /// No answer within `after`.
    pub fn timeout(after: Duration) -> Self {
        Self::new(Outcome::Timeout, format!("no answer within {after:?}"))
    }

    /// The verdict, `None` for an answer that counts neither way.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// The description.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether the member said it knows no leader.
    pub fn is_leaderless(&self) -> bool {
        self.leaderless
    }
}

/// Classifies a failed gRPC probe call: transport failures are `tcp_failures`, anything the
/// member answered is an `http_failure`.
fn grpc_failure(status: &tonic::Status) -> Finding {
    use std::error::Error as _;
    // A status with a source is the client's own: the transport failed before any answer.
    match status.source() {
        Some(err) => {
            let outcome = crate::passive::transport_error(err);
            Finding::new(outcome, format!("transport: {}", status.message()))
        }
        None => Finding::new(
            Outcome::Failure,
            format!("{:?}: {}", status.code(), status.message()),
        ),
    }
}
