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
//! Why handles: a handle ([`metrics::Counter`](https://docs.rs/metrics/0.24/metrics/struct.Counter.html), ...) is registered with the recorder once, when
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
/// `etcd_health.discovery.added` (counter; `source`: `seed`, `dns`, `srv`, `member_list`, `custom`): members
/// that joined the health state.
pub const DISCOVERY_ADDED: &str = "etcd_health.discovery.added";
/// `etcd_health.discovery.removed` (counter; `source`): members that left it.
pub const DISCOVERY_REMOVED: &str = "etcd_health.discovery.removed";

/// `etcd_health.stream.opened` (counter; `kind`: `watch`, `keep_alive`): watch and keep-alive
/// streams opened by callers: the drop-in's, and the tower stack's
/// [`ResumingWatch`](crate::ResumingWatch) and [`KeepAlive`](crate::KeepAlive).
pub const STREAMS_OPENED: &str = "etcd_health.stream.opened";
/// `etcd_health.stream.open` (gauge; `kind`): those streams a member serves now.
pub const STREAMS_OPEN: &str = "etcd_health.stream.open";
/// `etcd_health.stream.resumptions` (counter; `kind`): those streams moved to another member.
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

/// `etcd_health.retry_budget.remaining` (gauge): retries and hedges the budget allows now; 0
/// while exhausted. Kept current by every request (set when its whole number changes) and by
/// the probe scheduler's wake-ups, so it refills on an idle client too.
pub const RETRY_BUDGET_LEFT: &str = "etcd_health.retry_budget.remaining";
/// `etcd_health.retry_budget.refused` (counter): retries and hedges the budget refused.
pub const RETRY_BUDGET_REFUSED: &str = "etcd_health.retry_budget.refused";

/// `grpc.client.call.retries` (histogram, retries; `grpc.method`): how many times a unary
/// call was sent again after a failed attempt, recorded once per call that was retried at
/// least once (gRFC A96: a call without retries records no 0). Retries that certainly never
/// reached a member (A96's transparent retries) are included.
pub const CALL_RETRIES: &str = "grpc.client.call.retries";
/// `grpc.client.call.hedges` (histogram, hedges; `grpc.method`): how many hedges a read sent,
/// recorded once per call that sent at least one (gRFC A96).
pub const CALL_HEDGES: &str = "grpc.client.call.hedges";

/// `etcd_health.subchannel.connection_attempts` (counter; `etcd.member`, `result`: `ok`,
/// `refused`, `timeout`, `tls_error`, `other`): connections the balancer's member channels
/// tried to open (gRFC A94's `grpc.subchannel.connection_attempts_succeeded` and `_failed`,
/// with the reason).
pub const CONNECTS: &str = "etcd_health.subchannel.connection_attempts";

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

    /// Starts timing a request to `path`, at `now` (the caller's reading of the clock).
    #[inline]
    pub(crate) fn call(&self, path: &str, now: std::time::Instant) -> CallTimer {
        #[cfg(feature = "metrics")]
        {
            CallTimer {
                on: on::Timer::start_at(self.on.clone(), path, now),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (path, now);
            CallTimer {}
        }
    }

    /// A state change was published: `healthy` of `members` are in rotation now.
    #[inline]
    pub(crate) fn published(&self, healthy: usize, members: usize, change: Change) {
        #[cfg(feature = "metrics")]
        self.on.published(healthy, members, change);
        #[cfg(not(feature = "metrics"))]
        let _ = (healthy, members, change);
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

// === impl Budget ===

/// The retry budget's series, registered with the budget (once per health state).
///
/// Why the gauge is set from the requests' deposits rather than only when a retry or hedge
/// asks: the budget refills as requests come in and as old seconds leave its window, and an
/// operator's "budget exhausted" alert must clear when it has. A deposit takes no lock (one
/// atomic addition): whenever the budget sets the gauge it works out after how many more
/// deposits the whole number next grows, and the deposit that reaches that count takes the
/// budget's lock and sets it (every `1 / retry.extra_ratio` requests under steady traffic), as
/// do the first deposit in a new second (the window moves on, and seconds leaving it may
/// lower it) and every retry or hedge. So after each deposit it shows what the budget would
/// answer (with several threads at once, a racing deposit may show only at the next one),
/// while a request pays one comparison more; the value is stored only when it changes. A
/// client with no traffic deposits nothing: the probe scheduler's
/// wake-ups (at least once per `checks.active.healthy_interval` while a member is probed)
/// refresh it, so it refills within about one probe interval of the window's end.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    #[cfg(feature = "metrics")]
    on: on::Budget,
}

impl Budget {
    /// Registers the budget's series.
    #[inline]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The budget allows `remaining` retries and hedges now (call under the budget's lock:
    /// the last value shown is compared without one of its own).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn left(&self, remaining: u64) {
        #[cfg(feature = "metrics")]
        self.on.left(remaining);
        #[cfg(not(feature = "metrics"))]
        let _ = remaining;
    }

    /// The budget refused a retry or a hedge.
    #[inline]
    pub(crate) fn refused(&self) {
        #[cfg(feature = "metrics")]
        self.on.refused.increment(1);
    }
}

// === impl Change ===

/// What a published state change means to the metrics, told by the health state (which owns
/// its events: this module does not read them, so the two do not import each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A member was added, found by `source` (`seed`, `dns`, `srv`, `member_list`, `custom`).
    Added(&'static str),
    /// A member was removed; it had been found by `source`.
    Removed(&'static str),
    /// The leader changed; `known`: whether there is one now.
    Leader {
        /// Whether a leader is known now.
        known: bool,
    },
    /// Any other change (a member's status; every member unhealthy).
    Other,
}

// === impl CallTally ===

/// The retries and hedges of one unary call, recorded once, when the call ends (answered,
/// failed or dropped by its caller: [`ended`](Self::ended) is called from a drop), as gRFC
/// A96's per-call histograms. One empty word with the feature on, nothing without: the
/// counters and the metrics' handles are boxed at the call's first retry or hedge, so a call
/// answered at once pays nothing (no allocation, no reference count touched, no lookup).
#[derive(Debug, Default)]
pub(crate) struct CallTally {
    #[cfg(feature = "metrics")]
    on: on::CallTally,
}

impl CallTally {
    /// The call was sent again after a failed attempt.
    #[inline]
    pub(crate) fn retried(&mut self, checker: &Checker) {
        #[cfg(feature = "metrics")]
        self.on.retried(&checker.on);
        #[cfg(not(feature = "metrics"))]
        let _ = checker;
    }

    /// The call (a read) was also sent to another member.
    #[inline]
    pub(crate) fn hedged(&mut self, checker: &Checker) {
        #[cfg(feature = "metrics")]
        self.on.hedged(&checker.on);
        #[cfg(not(feature = "metrics"))]
        let _ = checker;
    }

    /// The call to `path` ended: its retries and hedges are recorded if it had any (a call
    /// with none records nothing, as gRFC A96 says, and never looks its method up), once.
    #[inline]
    pub(crate) fn ended(&mut self, path: &str) {
        #[cfg(feature = "metrics")]
        self.on.ended(path);
        #[cfg(not(feature = "metrics"))]
        let _ = path;
    }
}

// === impl Connects ===

/// How a connection attempt to a member ended: the `result` label of [`CONNECTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectResult {
    /// Connected (and, for `https://` members, the TLS handshake done).
    Ok,
    /// The member's host refused the TCP connection (nothing listens there).
    Refused,
    /// No connection within the connect timeout.
    Timeout,
    /// TCP connected, but the TLS handshake failed (certificate, name, ALPN, ...).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    TlsError,
    /// Anything else (name resolution, unreachable network, ...).
    Other,
}

/// The connection attempts of one member's channel, by result: handles registered when the
/// balancer makes the member's channel, not per attempt.
#[derive(Debug, Clone)]
pub(crate) struct Connects {
    #[cfg(feature = "metrics")]
    on: std::sync::Arc<on::Connects>,
}

impl Connects {
    /// Registers the series of the connection attempts to the member at `authority`.
    #[inline]
    pub(crate) fn new(authority: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                on: std::sync::Arc::new(on::Connects::new(authority)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = authority;
            Self {}
        }
    }

    /// A connection attempt ended with `result`.
    #[inline]
    pub(crate) fn ended(&self, result: ConnectResult) {
        #[cfg(feature = "metrics")]
        self.on.ended(result);
        #[cfg(not(feature = "metrics"))]
        let _ = result;
    }
}

// === impl StreamMeter ===

/// The series of one caller's watch or keep-alive stream in the tower stack
/// ([`ResumingWatch`](crate::ResumingWatch), [`KeepAlive`](crate::KeepAlive)), under the same
/// names and labels as the drop-in's: counted opened when made, open while a member serves
/// it, resumed each time another stream than the last one serves it. Dropping it (the caller
/// dropped the stream, or it ended) takes it out of the open ones.
#[derive(Debug)]
pub(crate) struct StreamMeter {
    #[cfg(feature = "metrics")]
    kind: &'static str,
    /// The stream serving it now, by the driver's number for it.
    #[cfg(feature = "metrics")]
    serving: Option<u64>,
    /// The last stream that served it.
    #[cfg(feature = "metrics")]
    last: Option<u64>,
}

impl StreamMeter {
    /// A caller's watch, opened now (the tower watch's series now come from the stream
    /// engine's [`StreamStats`](crate::stream::StreamStats); kept for the tests of the series).
    #[cfg(test)]
    pub(crate) fn watch() -> Self {
        Self::opened("watch")
    }

    /// A caller's lease keep-alive, opened now.
    #[inline]
    pub(crate) fn keep_alive() -> Self {
        Self::opened("keep_alive")
    }

    #[inline]
    fn opened(kind: &'static str) -> Self {
        stream_opened(kind);
        #[cfg(feature = "metrics")]
        {
            Self {
                kind,
                serving: None,
                last: None,
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            Self {}
        }
    }

    /// The stream numbered `stream` serves it now (`None`: none does).
    #[inline]
    pub(crate) fn serving(&mut self, stream: Option<u64>) {
        #[cfg(feature = "metrics")]
        {
            let delta =
                f64::from(u8::from(stream.is_some())) - f64::from(u8::from(self.serving.is_some()));
            streams_open(self.kind, delta);
            if let (Some(now), Some(last)) = (stream, self.last) {
                if now != last {
                    stream_resumed(self.kind);
                }
            }
            self.serving = stream;
            self.last = stream.or(self.last);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = stream;
    }
}

#[cfg(feature = "metrics")]
impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.serving(None);
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
    /// Registers the series of the member at `authority` (its `etcd.member` label);
    /// `healthy`: whether it starts in rotation.
    #[inline]
    pub(crate) fn new(authority: &str, healthy: bool) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                on: std::sync::Arc::new(on::PerMember::new(authority, healthy)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (authority, healthy);
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
                on: on::Running::new(on::Timer::start(self.on.clone(), path)),
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

/// An attempt being timed, from [`PerMember::attempt`], by the attempt's own future (a
/// wrapper future around it would be one more layer moved on every poll): its end is recorded
/// with its status by [`end`](Self::end); dropped after it was [`polled`](Self::polled) and
/// before its end (a hedge that lost, a caller that gave up), it is recorded as `CANCELLED`,
/// as gRPC's own clients do.
#[derive(Debug)]
pub(crate) struct AttemptTimer {
    #[cfg(feature = "metrics")]
    on: on::Running<on::PerMember>,
}

impl AttemptTimer {
    /// The attempt was polled: from now on, dropping it before its end records `CANCELLED`.
    #[inline]
    pub(crate) fn polled(&mut self) {
        #[cfg(feature = "metrics")]
        self.on.polled();
    }

    /// The attempt ended with `code`; recorded once.
    #[inline]
    pub(crate) fn end(&mut self, code: tonic::Code) {
        #[cfg(feature = "metrics")]
        self.on.end(code);
        #[cfg(not(feature = "metrics"))]
        let _ = code;
    }
}
