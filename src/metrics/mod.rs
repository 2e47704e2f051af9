//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade (feature `metrics`).
//!
//! Why a facade: a library must not choose how its numbers leave the process. Like `log`,
//! the `metrics` crate records nothing until the application installs a recorder (a
//! Prometheus exporter, an OpenTelemetry bridge, StatsD, ...); this crate only names what it
//! counts. hickory-resolver does the same.
//!
//! Why it costs nothing when off: every type here is zero-sized without the feature and every
//! function an empty `#[inline]` one, so the one-line calls the rest of the stack makes into
//! this module compile to nothing.
//!
//! Why handles: a handle ([`metrics::Counter`], ...) is registered with the recorder once, when
//! a member joins the health state (its own series) or the first time a method ends with a
//! status (the duration histograms), and is then an atomic add. Nothing is looked up per
//! request. So install the recorder *before* building the stack: handles registered before it
//! record nothing.
//!
//! # Names
//!
//! gRPC's OpenTelemetry names where a standard one exists (gRFC A66: the two durations, in
//! seconds, labels `grpc.method` and `grpc.status`), and otherwise `etcd_health.<area>.<what>`
//! after the closest standard: Envoy's and gRFC A91's `outlier_detection.*` for ejections,
//! Envoy's `health_check.*` for probes, gRFC A96 for retries. Label keys are dotted too
//! (`etcd.member`); Prometheus renders every dot as `_`. Every label has a closed set of
//! values (see [`SERIES`](self#series)); the README lists every metric.
//!
//! # Series
//!
//! `grpc.method` is one of etcd's 50 API methods or `_OTHER` (`crate::etcd::METHODS`),
//! `grpc.status` one of the 17 gRPC codes, `etcd.member` a member's `host:port` (the cluster's
//! own few, plus any that left: the facade cannot delete a series, so a member that leaves has
//! its gauges set to 0). At most 51 × 17 call-duration series, and per member ever seen at
//! most 51 × 17 attempt-duration series and 53 others (25 with one probe kind); in practice a
//! few methods and codes.

#[cfg(feature = "metrics")]
mod on;

use std::time::Duration;

use crate::checker::{EventKind, Member, MemberEntry};
use crate::config::{AllUnhealthyPolicy, ProbeType};
use crate::health::{Outcome, Transition};

/// `grpc.client.call.duration` (histogram, seconds; `grpc.method`, `grpc.status`): a request
/// from the caller's call to its answer's head (a unary answer: read whole), retries and hedges
/// included.
pub const CALL_DURATION: &str = "grpc.client.call.duration";
/// `grpc.client.attempt.duration` (histogram, seconds; `grpc.method`, `grpc.status`,
/// `etcd.member`): one attempt on one member.
pub const ATTEMPT_DURATION: &str = "grpc.client.attempt.duration";
/// `etcd_health.client.attempts` (counter; `etcd.member`, `outcome`): attempts as the passive
/// checks judged them: `success`, `failure`, `tcp_failure`, `timeout`, `unjudged` (an answer
/// about the cluster, such as "no leader", or nothing to judge), and `hang` (counted when seen
/// hanging, and again as it ends).
pub const ATTEMPTS: &str = "etcd_health.client.attempts";
/// `etcd_health.client.in_flight` (gauge; `etcd.member`): attempts sent to the member and not
/// answered yet.
pub const IN_FLIGHT: &str = "etcd_health.client.in_flight";
/// `etcd_health.client.retries` (counter): attempts sent again to another member (gRFC A96
/// counts them per call).
pub const RETRIES: &str = "etcd_health.client.retries";
/// `etcd_health.client.hedges` (counter): reads also sent to another member because the first
/// was slow.
pub const HEDGES: &str = "etcd_health.client.hedges";
/// `etcd_health.client.hedges_won` (counter): reads answered first by a hedge.
pub const HEDGES_WON: &str = "etcd_health.client.hedges_won";
/// `etcd_health.client.no_healthy_member` (counter; `policy`): a member was wanted while none
/// was healthy: `fail_fast` refused the request, `try_all` sent it to an unhealthy one.
pub const NO_HEALTHY_MEMBER: &str = "etcd_health.client.no_healthy_member";
/// `etcd_health.members` (gauge; `status`: `healthy`, `unhealthy`): members in each status.
pub const MEMBERS: &str = "etcd_health.members";
/// `etcd_health.member.healthy` (gauge; `etcd.member`): 1 while the member is in rotation, 0
/// while ejected and after it left.
pub const MEMBER_HEALTHY: &str = "etcd_health.member.healthy";
/// `etcd_health.outlier_detection.ejections_enforced` (counter; `etcd.member`, `reason`:
/// `failure`, `tcp_failure`, `timeout`, `hang`; `source`: `active`, `passive`): ejections
/// (Envoy's `ejections_enforced_total`, gRFC A91).
pub const EJECTIONS: &str = "etcd_health.outlier_detection.ejections_enforced";
/// `etcd_health.outlier_detection.readmissions` (counter; `etcd.member`): ejected members put
/// back into rotation.
pub const READMISSIONS: &str = "etcd_health.outlier_detection.readmissions";
/// `etcd_health.outlier_detection.ejection.duration` (histogram, seconds; `etcd.member`): how
/// long each ejection lasted, recorded at the re-admission (its sum is the time ejected).
pub const EJECTION_DURATION: &str = "etcd_health.outlier_detection.ejection.duration";
/// `etcd_health.health_check.attempts` (counter; `etcd.member`, `kind`: `http`, `https`,
/// `tcp`, `grpc`, `status`; `outcome` as for [`ATTEMPTS`]): active probes.
pub const PROBES: &str = "etcd_health.health_check.attempts";
/// `etcd_health.health_check.duration` (histogram, seconds; `etcd.member`, `kind`): how long
/// each probe took.
pub const PROBE_DURATION: &str = "etcd_health.health_check.duration";
/// `etcd_health.leader.known` (gauge): 1 while the leader checks know a leader, 0 during an
/// election (or before the first check).
pub const LEADER_KNOWN: &str = "etcd_health.leader.known";
/// `etcd_health.leader.changes` (counter): new leaders seen by the leader checks.
pub const LEADER_CHANGES: &str = "etcd_health.leader.changes";
/// `etcd_health.discovery.added` (counter; `source`: `seed`, `dns`, `member_list`, `custom`): members
/// that joined the health state.
pub const DISCOVERY_ADDED: &str = "etcd_health.discovery.added";
/// `etcd_health.discovery.removed` (counter; `source`): members that left it.
pub const DISCOVERY_REMOVED: &str = "etcd_health.discovery.removed";

/// `etcd_health.stream.opened` (counter; `kind`: `watch`, `keep_alive`): the drop-in's watch
/// and keep-alive streams opened by its callers.
pub const STREAMS_OPENED: &str = "etcd_health.stream.opened";
/// `etcd_health.stream.open` (gauge; `kind`): the drop-in's streams a member serves now.
pub const STREAMS_OPEN: &str = "etcd_health.stream.open";
/// `etcd_health.stream.resumptions` (counter; `kind`): the drop-in's streams moved to another
/// member.
pub const STREAM_RESUMPTIONS: &str = "etcd_health.stream.resumptions";
/// `etcd_health.stream.keep_alive_hedges` (counter): keep-alive streams the drop-in opened on
/// another member while a keep-alive waited for an answer (its keep-alive hedges).
pub const KEEP_ALIVE_HEDGES: &str = "etcd_health.stream.keep_alive_hedges";
/// `etcd_health.auth.authentications` (counter; `result`: `ok`, `error`): tokens fetched (again)
/// by the auth layer.
pub const AUTHENTICATIONS: &str = "etcd_health.auth.authentications";
/// `etcd_health.tls.reloads` (counter; `result`: `swapped`, `unchanged`, `error`): reads of the
/// TLS files.
pub const TLS_RELOADS: &str = "etcd_health.tls.reloads";

/// `etcd_health.retry_budget.remaining` (gauge): retries and hedges the budget still allowed
/// when the last one was asked for; 0 while exhausted.
pub const RETRY_BUDGET_LEFT: &str = "etcd_health.retry_budget.remaining";
/// `etcd_health.retry_budget.refused` (counter): retries and hedges the budget refused.
pub const RETRY_BUDGET_REFUSED: &str = "etcd_health.retry_budget.refused";

/// Bucket boundaries (seconds) for the duration histograms: gRFC A66's 41 buckets, 0 to 100 s.
/// Exporters choose their own buckets; give these to yours (e.g. `metrics-exporter-prometheus`'s
/// `set_buckets_for_metric`) to match gRPC's own clients.
pub const DURATION_BUCKETS: [f64; 41] = [
    0.0, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_25, 0.000_5, 0.000_75,
    0.001, 0.002_5, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1_000.0, 2_500.0, 5_000.0, 7_500.0,
    10_000.0, 25_000.0, 50_000.0,
];

// === impl Checker ===

/// The metrics of one health state: its call durations, members, leader and retries.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    #[cfg(feature = "metrics")]
    on: std::sync::Arc<on::Checker>,
}

impl Checker {
    /// Registers the health state's own series.
    #[inline]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts timing a request to `path`, now.
    #[inline]
    pub(crate) fn call(&self, path: &str) -> CallTimer {
        #[cfg(feature = "metrics")]
        {
            CallTimer {
                on: on::Timer::start(self.on.clone(), path),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = path;
            CallTimer {}
        }
    }

    /// A state change was published; `entries` are the members now.
    #[inline]
    pub(crate) fn published(&self, entries: &[std::sync::Arc<MemberEntry>], kind: &EventKind) {
        #[cfg(feature = "metrics")]
        self.on.published(entries, kind);
        #[cfg(not(feature = "metrics"))]
        let _ = (entries, kind);
    }

    /// A request was sent again to another member.
    #[inline]
    pub(crate) fn retry(&self) {
        #[cfg(feature = "metrics")]
        self.on.retries.increment(1);
    }

    /// A read was also sent to another member.
    #[inline]
    pub(crate) fn hedge(&self) {
        #[cfg(feature = "metrics")]
        self.on.hedges.increment(1);
    }

    /// A read was answered; `by_hedge`: first by an attempt sent while an earlier one was
    /// still out.
    #[inline]
    pub(crate) fn read_answered(&self, by_hedge: bool) {
        #[cfg(feature = "metrics")]
        if by_hedge {
            self.on.hedges_won.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = by_hedge;
    }
}

/// A member was wanted while none was healthy; `policy` decided what followed. (Counted
/// through the recorder's registry: rare, and the pickers hold no handle.)
#[inline]
pub(crate) fn no_healthy_member(policy: AllUnhealthyPolicy) {
    #[cfg(feature = "metrics")]
    on::no_healthy_member(policy);
    #[cfg(not(feature = "metrics"))]
    let _ = policy;
}

/// The retry budget has `remaining` retries and hedges left after one was asked for (and
/// `granted` or refused). Set when a retry or hedge is wanted, not per request: the gauge shows
/// the budget as the last extra request found it. (Through the recorder's registry: the budget
/// holds no handle.)
#[cfg(feature = "metrics")]
pub(crate) fn retry_budget_left(remaining: u64, granted: bool) {
    metrics::gauge!(RETRY_BUDGET_LEFT).set(remaining as f64);
    if !granted {
        metrics::counter!(RETRY_BUDGET_REFUSED).increment(1);
    }
}

/// The drop-in opened a stream of `kind` (`watch`, `keep_alive`) for its caller.
#[inline]
pub(crate) fn stream_opened(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(STREAMS_OPENED, "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// The drop-in opened a keep-alive stream on another member while a keep-alive waited (a
/// keep-alive hedge).
#[inline]
pub(crate) fn keep_alive_hedged() {
    #[cfg(feature = "metrics")]
    metrics::counter!(KEEP_ALIVE_HEDGES).increment(1);
}

/// A stream of the drop-in's moved to another member.
#[inline]
pub(crate) fn stream_resumed(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(STREAM_RESUMPTIONS, "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// The drop-in's streams of `kind` served by a member changed by `delta`.
#[inline]
pub(crate) fn streams_open(kind: &'static str, delta: f64) {
    #[cfg(feature = "metrics")]
    if delta != 0.0 {
        metrics::gauge!(STREAMS_OPEN, "kind" => kind).increment(delta);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, delta);
}

/// The auth layer authenticated (again), successfully or not.
#[inline]
pub(crate) fn authenticated(ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(AUTHENTICATIONS, "result" => if ok { "ok" } else { "error" }).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = ok;
}

/// The TLS files were read again: `swapped`, `unchanged` or `error`.
#[inline]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn tls_reloaded(result: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(TLS_RELOADS, "result" => result).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

// === impl PerMember ===

/// The series of one member, registered when it joins the health state.
#[derive(Debug, Clone)]
pub(crate) struct PerMember {
    #[cfg(feature = "metrics")]
    on: std::sync::Arc<on::PerMember>,
}

impl PerMember {
    /// Registers the series of `member`; `healthy`: whether it starts in rotation.
    #[inline]
    pub(crate) fn new(member: &Member, healthy: bool) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                on: std::sync::Arc::new(on::PerMember::new(member, healthy)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (member, healthy);
            Self {}
        }
    }

    /// An attempt to the member starts.
    #[inline]
    pub(crate) fn attempt_started(&self) {
        #[cfg(feature = "metrics")]
        self.on.in_flight(1.0);
    }

    /// An attempt to the member is over (answered, failed or cancelled).
    #[inline]
    pub(crate) fn attempt_ended(&self) {
        #[cfg(feature = "metrics")]
        self.on.in_flight(-1.0);
    }

    /// The passive checks judged an attempt (`None`: nothing to judge the member by).
    #[inline]
    pub(crate) fn attempt_judged(&self, outcome: Option<Outcome>) {
        #[cfg(feature = "metrics")]
        self.on.attempts[on::outcome_slot(outcome)].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }

    /// Starts timing an attempt of a request to `path` on the member, now.
    #[inline]
    pub(crate) fn attempt(&self, path: &str) -> AttemptTimer {
        #[cfg(feature = "metrics")]
        {
            AttemptTimer {
                on: on::Timer::start(self.on.clone(), path),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = path;
            AttemptTimer {}
        }
    }

    /// The member's status changed.
    #[inline]
    pub(crate) fn transition(&self, t: &Transition) {
        #[cfg(feature = "metrics")]
        self.on.transition(t);
        #[cfg(not(feature = "metrics"))]
        let _ = t;
    }

    /// A probe of `kind` took `elapsed` and found `outcome` (`None`: nothing to judge by).
    #[inline]
    pub(crate) fn probed(&self, kind: ProbeType, outcome: Option<Outcome>, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        self.on.probed(kind, outcome, elapsed);
        #[cfg(not(feature = "metrics"))]
        let _ = (kind, outcome, elapsed);
    }

    /// The member left the health state: its gauges go to 0 (a series cannot be deleted).
    #[inline]
    pub(crate) fn left(&self) {
        #[cfg(feature = "metrics")]
        self.on.left();
    }
}

// === impl CallTimer ===

/// A request being timed, from [`Checker::call`].
#[derive(Debug)]
pub(crate) struct CallTimer {
    #[cfg(feature = "metrics")]
    on: on::Timer<on::Checker>,
}

impl CallTimer {
    /// `call`, its end recorded with its status.
    #[inline]
    pub(crate) fn time<F, B>(self, call: F) -> impl std::future::Future<Output = F::Output> + Send
    where
        F: std::future::Future<Output = Result<http::Response<B>, tower::BoxError>> + Send,
    {
        #[cfg(feature = "metrics")]
        {
            self.on.time(call, on::code_of)
        }
        #[cfg(not(feature = "metrics"))]
        {
            call
        }
    }
}

// === impl AttemptTimer ===

/// An attempt being timed, from [`PerMember::attempt`].
#[derive(Debug)]
pub(crate) struct AttemptTimer {
    #[cfg(feature = "metrics")]
    on: on::Timer<on::PerMember>,
}

impl AttemptTimer {
    /// `attempt`, its end recorded with the status `code` reads from its output.
    #[inline]
    pub(crate) fn time<F>(
        self,
        attempt: F,
        code: fn(&F::Output) -> tonic::Code,
    ) -> impl std::future::Future<Output = F::Output> + Send
    where
        F: std::future::Future + Send,
    {
        #[cfg(feature = "metrics")]
        {
            self.on.time(attempt, code)
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = code;
            attempt
        }
    }
}
