//! Typed health-check configuration.
//!
//! The shape and the defaults follow the seed design (lua-resty-etcd's `cluster_healthcheck`,
//! itself lua-resty-healthcheck's `checks` table), so a table written for that world loads here
//! unchanged. A user's partial config overrides only the fields it names: every struct carries
//! `#[serde(default)]` with the seed's values as its `Default`.
//!
//! gRPC-native knobs (probe types `status`, `grpc` and `tcp`, which gRPC codes count as member
//! failures, the `hasleader` header, ejection back-off and the all-unhealthy policy) sit beside
//! the seed's fields, with defaults chosen so that the seed's table keeps its meaning.
//!
//! A config is loaded with [`Config::from_json`], [`Config::from_toml`] or
//! [`Config::from_value`] and is checked by [`Config::validate`] before it is handed out, so
//! a mistake is reported once, at start-up, naming the field path and the value, rather than
//! turning into a health checker that quietly never ejects (or never re-admits) a member.
//! Member addresses are checked the same way by [`parse_endpoints`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod codes;
mod endpoint;
mod error;
mod headers;
mod load;
mod probe_path;
mod seconds;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use endpoint::{
    endpoint_without_userinfo, redact_userinfo, same_endpoint, without_userinfo,
};
pub use endpoint::{parse_endpoints, EndpointUrl, Scheme};
pub use error::ConfigError;
pub use headers::SENSITIVE_HEADERS;

/// The whole configuration of a health-checked etcd client stack.
///
/// The seed's `cluster_healthcheck` table: `shm_name` plus `checks`, and our additions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of the shared health state: stacks built with the same name in one process share
    /// member health (the seed's `lua_shared_dict`). `None` gives each stack its own state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_name: Option<String>,
    /// Active and passive checks.
    pub checks: Checks,
    /// Send the `hasleader: true` metadata on every request, so a member cut off from the
    /// quorum answers `Unavailable "etcdserver: no leader"` at once instead of hanging.
    pub require_leader: bool,
    /// Which gRPC answers count as member failures (`http_failures` in the seed's terms).
    pub failures: FailureConfig,
    /// How long an ejected member stays out before it may be re-admitted.
    pub ejection: EjectionConfig,
    /// What to do when every member is unhealthy.
    pub all_unhealthy: AllUnhealthyPolicy,
    /// Retries of failed unary requests on another member, by etcd's own client rules.
    pub retry: RetryConfig,
    /// Hedged reads: a read slower than its peers' usual latency is also sent to another
    /// member, and the first answer wins.
    pub hedge: HedgeConfig,
    /// Detecting a member that sits on requests (SIGSTOPped, black-holed, cut off) while its
    /// peers answer.
    pub hang: HangConfig,
    /// Knowing which member leads, and telling an election from a failed member.
    pub leader: LeaderConfig,
    /// Following the cluster: members found through `Cluster/MemberList` and DNS.
    pub discovery: DiscoveryConfig,
    /// HTTP/2 keep-alive pings on the connections that carry requests to members.
    pub keep_alive: KeepAliveConfig,
    /// TLS to members with `https://` endpoints and for `https` probes: the CA, the client
    /// certificate (mTLS) and the name to verify. Needs the `tls` cargo feature.
    #[serde(skip_serializing_if = "TlsConfig::is_empty")]
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shm_name: None,
            checks: Checks::default(),
            require_leader: true,
            failures: FailureConfig::default(),
            ejection: EjectionConfig::default(),
            all_unhealthy: AllUnhealthyPolicy::default(),
            retry: RetryConfig::default(),
            hedge: HedgeConfig::default(),
            hang: HangConfig::default(),
            leader: LeaderConfig::default(),
            discovery: DiscoveryConfig::default(),
            keep_alive: KeepAliveConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Where the TLS material for members lives: PEM files, as `etcdctl --cacert --cert --key`
/// takes them. Loaded when the health checker is built, so a missing file or a key that does
/// not belong to its certificate is refused at start-up, naming the field and the path; then
/// watched (every `reload_interval`) and loaded again when they change, for new connections
/// (a rotated certificate needs no restart; a bad or half-written file keeps the previous
/// material, with a warning).
///
/// An `https://` endpoint with none of these set is verified against the system's roots, with
/// no client certificate. Certificates of members are always verified on requests;
/// `checks.active.https_verify_certificate = false` relaxes only the probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) members' certificates are checked against
    /// (`--trusted-ca-file` of etcd); unset means the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM file with this client's certificate chain, for members started with
    /// `--client-cert-auth`; needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM file with the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// The name members' certificates must carry, instead of the host of each endpoint URL
    /// (for members reached by IP whose certificates name a DNS name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// How often the three files are checked for a change (modification time, size, inode),
    /// in seconds; `0` turns the checks off (then only
    #[cfg_attr(
        feature = "tls",
        doc = "[`HealthChecker::reload_tls`](crate::HealthChecker::reload_tls) loads them again)."
    )]
    #[cfg_attr(
        not(feature = "tls"),
        doc = "`HealthChecker::reload_tls` loads them again)."
    )]
    /// Default 10; otherwise at least 0.1. A change is loaded once the files have stayed the
    /// same for one more interval, so a file caught mid-write is not even tried.
    #[serde(
        with = "seconds",
        skip_serializing_if = "TlsConfig::is_default_reload_interval"
    )]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            domain_name: None,
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
        }
    }
}

impl TlsConfig {
    /// The default of [`reload_interval`](Self::reload_interval): 10 s.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

    /// Nothing is set: `https://` endpoints use the system's roots and no client certificate.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    fn is_default_reload_interval(d: &Duration) -> bool {
        *d == Self::DEFAULT_RELOAD_INTERVAL
    }
}

/// The seed's `checks` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Checks {
    /// Probes sent by the health checker itself.
    pub active: ActiveChecks,
    /// Counters fed by the application's own requests.
    pub passive: PassiveChecks,
}

/// The kind of active probe sent to a member: a built-in [`Probe`](crate::extend::Probe)
/// ([`StatusProbe`](crate::extend::StatusProbe), [`HttpProbe`](crate::extend::HttpProbe),
/// [`GrpcProbe`](crate::extend::GrpcProbe), [`TcpProbe`](crate::extend::TcpProbe)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeType {
    /// `GET http_path` over HTTP/1.1 (etcd's `/health`), the seed's default.
    #[default]
    Http,
    /// As `http`, over TLS.
    Https,
    /// A TCP connect and nothing more.
    Tcp,
    /// `grpc.health.v1.Health/Check`. Cannot see a partition: etcd sets it once at start-up.
    Grpc,
    /// `Maintenance/Status`: the member has a leader, reports no "no leader" error, is not a
    /// learner and belongs to the expected cluster.
    Status,
}

/// The seed's `checks.active` table.
///
/// `Debug` shows the values of sensitive `req_headers` (see
/// [`sensitive_headers`](Self::sensitive_headers)) as `***`, and `http_path` with its query
/// values, fragment and any userinfo as `***`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveChecks {
    /// Probes in flight at once, across all members.
    pub concurrency: usize,
    /// Deadline of one probe, in seconds (fractions allowed).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Path probed by `http`/`https` probes. etcd's bare `/health` is sent as
    /// `/health?exclude=NOSPACE&exclude=CORRUPT`: those alarms are cluster-wide and say
    /// nothing about one member (a member without a leader still answers 503). Sent as
    /// written; shown in errors and `Debug` with query values, a fragment and any userinfo
    /// (`user:password@`) as `***`.
    pub http_path: String,
    /// `Host` header for `http`/`https` probes; empty means the member's authority.
    pub host: String,
    /// The kind of probe: one of the built-ins. A custom [`Probe`](crate::extend::Probe) set
    /// with [`HealthCheckerBuilder::probe`](crate::extend::HealthCheckerBuilder::probe)
    /// replaces it.
    #[serde(rename = "type")]
    pub probe_type: ProbeType,
    /// Extra request headers for `http`/`https` probes, as `"Name: value"`.
    pub req_headers: Vec<String>,
    /// Names of `req_headers` whose values are secrets, besides `Authorization`,
    /// `Proxy-Authorization` and `Cookie` ([`SENSITIVE_HEADERS`]), compared without regard to
    /// case: their values are shown as `***` in `Debug`, errors and logs, and sent marked
    /// sensitive. Each must be a valid header name. Not a field of the seed's table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive_headers: Vec<String>,
    /// Verify the member's certificate on `https` probes.
    ///
    /// Deliberate deviation from the seed, whose default is `false`: we verify certificates
    /// unless the config asks otherwise, so a seed table that names no value gets `true`.
    pub https_verify_certificate: bool,
    /// When probes count a member healthy, and how often healthy members are probed.
    pub healthy: ActiveHealthy,
    /// When probes count a member unhealthy, and how often unhealthy members are probed.
    pub unhealthy: ActiveUnhealthy,
}

impl Default for ActiveChecks {
    fn default() -> Self {
        Self {
            concurrency: 5,
            timeout: Duration::from_secs(5),
            http_path: "/health".to_owned(),
            host: String::new(),
            probe_type: ProbeType::Http,
            req_headers: vec!["User-Agent: curl/7.29.0".to_owned()],
            sensitive_headers: Vec::new(),
            https_verify_certificate: true,
            healthy: ActiveHealthy::default(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

impl std::fmt::Debug for ActiveChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field named, so a new one cannot be left out unnoticed.
        let Self {
            concurrency,
            timeout,
            http_path,
            host,
            probe_type,
            req_headers,
            sensitive_headers,
            https_verify_certificate,
            healthy,
            unhealthy,
        } = self;
        f.debug_struct("ActiveChecks")
            .field("concurrency", concurrency)
            .field("timeout", timeout)
            .field("http_path", &probe_path::redact_http_path(http_path))
            .field("host", host)
            .field("probe_type", probe_type)
            .field(
                "req_headers",
                &headers::ShownHeaders {
                    lines: req_headers,
                    sensitive: sensitive_headers,
                },
            )
            .field("sensitive_headers", sensitive_headers)
            .field("https_verify_certificate", https_verify_certificate)
            .field("healthy", healthy)
            .field("unhealthy", unhealthy)
            .finish()
    }
}

/// The seed's `checks.active.healthy` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveHealthy {
    /// HTTP statuses of `http`/`https` probes that count as successes.
    pub http_statuses: Vec<u16>,
    /// Seconds between probes of a healthy member; 0 disables them (the seed's default).
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// Consecutive successes that make an unhealthy member healthy; 0 disables.
    pub successes: u8,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![200],
            interval: Duration::ZERO,
            successes: 1,
        }
    }
}

/// The seed's `checks.active.unhealthy` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// HTTP statuses of `http`/`https` probes that count as failures.
    pub http_statuses: Vec<u16>,
    /// Seconds between probes of an unhealthy member; 0 disables them.
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// Consecutive probe failures (bad status, failed `status`/`grpc` check) that make a member
    /// unhealthy; 0 disables.
    pub http_failures: u8,
    /// Consecutive connect failures that make a member unhealthy; 0 disables.
    pub tcp_failures: u8,
    /// Consecutive probe timeouts that make a member unhealthy; 0 disables.
    pub timeouts: u8,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![500, 501, 502, 503, 504, 505],
            interval: Duration::from_secs(1),
            http_failures: 1,
            tcp_failures: 1,
            timeouts: 1,
        }
    }
}

/// The seed's `checks.passive` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveChecks {
    /// Kept for compatibility with the seed's table; passive checks classify gRPC answers.
    #[serde(rename = "type")]
    pub probe_type: ProbeType,
    /// When answers count a member healthy.
    pub healthy: PassiveHealthy,
    /// When answers count a member unhealthy.
    pub unhealthy: PassiveUnhealthy,
}

impl Default for PassiveChecks {
    fn default() -> Self {
        Self {
            probe_type: ProbeType::Http,
            healthy: PassiveHealthy::default(),
            unhealthy: PassiveUnhealthy::default(),
        }
    }
}

/// The seed's `checks.passive.healthy` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveHealthy {
    /// HTTP statuses that count as successes (gRPC answers arrive with 200).
    pub http_statuses: Vec<u16>,
    /// Consecutive successes that make an unhealthy member healthy; 0 disables.
    pub successes: u8,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![200, 201],
            successes: 1,
        }
    }
}

/// The seed's `checks.passive.unhealthy` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveUnhealthy {
    /// HTTP statuses that count as failures.
    pub http_statuses: Vec<u16>,
    /// Consecutive member-level failures (bad HTTP status or a gRPC status listed in
    /// [`FailureConfig`]) that make a member unhealthy; 0 disables.
    pub http_failures: u8,
    /// Consecutive connect failures that make a member unhealthy; 0 disables.
    pub tcp_failures: u8,
    /// Consecutive request timeouts that make a member unhealthy; 0 disables (the seed's
    /// default).
    pub timeouts: u8,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![500],
            http_failures: 1,
            tcp_failures: 1,
            timeouts: 0,
        }
    }
}

/// Which gRPC answers say something about the member rather than about the request.
///
/// etcd's "no leader", "leader changed" and "request timed out" answers are judged first by a
/// leader check (see [`LeaderConfig`]): during an election every member gives them, so they
/// count against a member only when its peers follow a leader and it does not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureConfig {
    /// gRPC codes that are member failures whatever their message, by name as in
    /// `tonic::Code` in snake case (`unavailable`, `deadline_exceeded`, ...).
    pub codes: Vec<String>,
    /// Substrings of a gRPC message that make any code a member failure.
    pub messages: Vec<String>,
}

impl Default for FailureConfig {
    fn default() -> Self {
        Self {
            codes: vec!["unavailable".to_owned()],
            messages: vec![
                "etcdserver: no leader".to_owned(),
                "etcdserver: leader changed".to_owned(),
                "etcdserver: request timed out".to_owned(),
                "context deadline exceeded".to_owned(),
            ],
        }
    }
}

/// Ejection back-off: how long an unhealthy member is kept out before probes may re-admit it.
///
/// The first ejection lasts `base`; each further ejection without a stable recovery in
/// between doubles it, up to `max`; `jitter` spreads it by up to that fraction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EjectionConfig {
    /// Minimum time out of rotation after the first ejection, in seconds.
    #[serde(with = "seconds")]
    pub base: Duration,
    /// Upper bound of the ejection time, in seconds.
    #[serde(with = "seconds")]
    pub max: Duration,
    /// Random spread, as a fraction of the ejection time in `[0, 1]`.
    pub jitter: f64,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: 0.1,
        }
    }
}

/// What the stack does when no member is healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthyPolicy {
    /// Panic mode: route over all members as if all were healthy, so the health checker never
    /// becomes the outage itself (Envoy's panic threshold). The default.
    #[default]
    TryAll,
    /// Fail at once with `Unavailable` naming the state, so the caller can back off.
    FailFast,
}

/// Retries inside the stack, following etcd's Go client: reads are retried on another member
/// after any member-level failure; writes only when it is certain they were never processed
/// (the connection could not be made, or the member refused them with "no leader" because of
/// the `hasleader` metadata, before its handler ran). A write that timed out is never sent
/// again: it may have been applied. Streams and long-blocking calls are not retried here.
///
/// Like etcd's Go client (up to 100 attempts, a short back-off after each round), a request is
/// retried until the caller's deadline (or `budget`), not a fixed small number of times: an
/// election leaves every member without a leader for about one election timeout, and a client
/// that gives up within 100 ms turns it into failed requests, where one that keeps asking
/// turns it into latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request at most, the first included; 1 turns retries off. The caller's
    /// deadline (or `budget`) usually ends a request first.
    pub max_attempts: u8,
    /// Back-off after each round of attempts over the members, in seconds; it doubles with
    /// each further round (with jitter) up to `max_backoff`. Within a round, the next member is
    /// tried at once.
    #[serde(with = "seconds")]
    pub backoff: Duration,
    /// Upper bound of one back-off, in seconds.
    #[serde(with = "seconds")]
    pub max_backoff: Duration,
    /// The time budget of one unary request that carries no deadline of its own: time across
    /// all its attempts, in seconds, and each attempt ends with what is left of it (a hung
    /// member must not hold a caller that set no deadline for ever; a write then ends as
    /// *outcome unknown*). With a deadline (`grpc-timeout`), the deadline bounds the attempts
    /// instead. Streams and long-blocking calls (Watch, LeaseKeepAlive, Lock, Campaign,
    /// Defragment) are not bounded by it. No retry starts in its last twentieth (at most its
    /// last 50 ms): such an attempt could only be cut off by it, and the caller gets the failure
    /// known by then instead. (How many extra requests all requests together may add is
    /// `extra_ratio` and `extra_min_per_second`.)
    #[serde(with = "seconds")]
    pub budget: Duration,
    /// Deadline of one attempt of a read, in seconds, so that a hung member costs one attempt
    /// rather than the caller's whole deadline; 0 turns it off (the default: hedging and hang
    /// detection already keep a read from waiting on a hung member, and only you know how
    /// long your largest range may legitimately take).
    #[serde(with = "seconds")]
    pub read_attempt_timeout: Duration,
    /// The retry budget (not to be confused with `budget`, the time one request without a
    /// deadline may take): retries and hedges together may add at most this fraction of the
    /// unary requests sent in the last 10 seconds, shared by every request through one health
    /// state; 0.1 = 10 %. Past it, a read is sent once, as a single request would be: no hedge,
    /// no retry. Retries after a failure that never reached a member's handler (no
    /// connection, or etcd's `hasleader` refusal) cost the members nothing and are not drawn
    /// from it. See [`HealthChecker::retry_budget`](crate::HealthChecker::retry_budget).
    pub extra_ratio: f64,
    /// The retry budget's floor: this many retries and hedges per second (times the 10 s
    /// window) are allowed whatever the traffic, so a quiet client can still retry. A minimum,
    /// not an addition: a client sending more than `extra_min_per_second / extra_ratio`
    /// requests per second (200 by default) adds at most `extra_ratio`. The default, 20, lets a
    /// client that starts with a burst of 200 reads while one member of four breaks every
    /// answer (`tests/hostile.rs`) retry each read that member failed: a burst sent before any
    /// failure could eject it.
    pub extra_min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 100,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(100),
            budget: Duration::from_secs(10),
            read_attempt_timeout: Duration::ZERO,
            extra_ratio: 0.1,
            extra_min_per_second: 20,
        }
    }
}

/// Hedged reads ("The Tail at Scale"; gRPC's hedging policy, gRFC A6).
///
/// A read that has not answered within the hedging delay is also sent to another member; the
/// first answer wins and the others are cancelled. The delay adapts to the members' own
/// recent latency (smoothed latency plus four deviations, as TCP's retransmission timer),
/// kept between `min_delay` and `max_delay`, so only the slowest few percent of reads are
/// hedged on a healthy cluster; each kind of read (single-key and small `Range`s, lease reads,
/// cluster reads such as `Status`, the rest) has an estimate of its own, so one slow method
/// does not set the delay of the others. Only plain reads are hedged, never writes: every
/// etcd read is idempotent, no write is; nor reads that are expensive (`Hash`, `HashKV`,
/// `Authenticate`'s bcrypt, a `Range` over more than `max_range_limit` keys or with no limit
/// on a range). Every hedge is drawn from the retry budget (`retry.extra_ratio`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// Copies of one read in flight at once, the first included; 1 turns hedging off. The
    /// n-th copy is sent (n-1) hedging delays after the one before it. The default, 3, keeps
    /// a read answered when two members hang at once (two of five cut off).
    pub max_attempts: u8,
    /// Lower bound of the hedging delay, in seconds.
    #[serde(with = "seconds")]
    pub min_delay: Duration,
    /// Upper bound of the hedging delay, in seconds.
    #[serde(with = "seconds")]
    pub max_delay: Duration,
    /// A `Range` over more than one key (`range_end` set) is hedged only when it asks for at
    /// most this many keys (`limit` 1..=this); one with no limit is never hedged, nor one that
    /// asks for more: a second copy of a large read doubles the work of the slowest kind of
    /// request. A single-key `Range` is always hedged. 0 hedges single keys only.
    pub max_range_limit: u64,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            max_range_limit: 1000,
        }
    }
}

/// Detecting a hung member from the requests themselves.
///
/// A SIGSTOPped or black-holed member accepts requests and never answers; without a deadline
/// of its own nothing fails, so no failure counter moves. A request *hangs* when it is still
/// unanswered after `after` while other members answered requests sent after it, its own
/// member answered none and the leader did not change meanwhile (a read whose hedge won is
/// kept running that long, detached from its caller, to find out). `threshold` consecutive
/// hangs (no success in between) eject the member, but never a majority of the members. A
/// cluster-wide stall (an election) is not a hang: then no peer answers either. A member
/// merely slower than its peers is not ejected: the balancer sends it less (its latency
/// estimate rises at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HangConfig {
    /// Consecutive hangs that eject a member; 0 turns hang detection off.
    pub threshold: u8,
    /// How long a request may go unanswered while peers answer before it counts as a hang, in
    /// seconds. Raise it if single requests legitimately take longer (huge ranges).
    #[serde(with = "seconds")]
    pub after: Duration,
}

impl Default for HangConfig {
    fn default() -> Self {
        Self {
            threshold: 2,
            after: Duration::from_millis(500),
        }
    }
}

/// Knowing the leader.
///
/// The health state asks every member for `Maintenance/Status` now and then, and at once when
/// an answer suggests an election ("no leader", "leader changed", "not leader"). That tells an
/// election (no member knows a leader: nobody is ejected, requests wait for the new leader
/// within their deadline) from a member cut off from the quorum (it alone knows no leader:
/// it is ejected), routes requests only the leader may serve (`MoveLeader`) to it, and lets a
/// returning member back only once it reports the current leader and term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderConfig {
    /// Seconds between leader checks while a leader is known; 0 checks only when an answer
    /// suggests an election.
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// Seconds between leader checks while no member knows a leader. Whatever this says, the
    /// checks of one health state start at least 100 ms apart (plus jitter), so a fleet of
    /// clients does not flood the members with `Status` calls while they elect.
    #[serde(with = "seconds")]
    pub election_interval: Duration,
    /// Deadline of one `Status` call of a leader check, in seconds (a round waits for its
    /// slowest member, so this bounds how stale a round's news can be).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Send writes to the leader while it is known and in rotation (a follower would forward
    /// them to it anyway). A write can never be re-sent once it may have been applied, so one
    /// sent to a follower that then hangs is lost to the caller as *outcome unknown*; sent to
    /// the leader, a follower's fault never touches it. etcd's own measurements of leader
    /// routing (etcd#22268) also show higher write throughput and a lower p99.
    pub route_writes: bool,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            election_interval: Duration::from_millis(50),
            timeout: Duration::from_millis(250),
            route_writes: true,
        }
    }
}

/// Following the cluster: which members exist is asked of the cluster itself
/// (`Cluster/MemberList`) and of DNS, so members added, removed or replaced need no client
/// restart, and one endpoint is enough to reach the whole cluster.
///
/// The endpoints you give are *seeds*: never dropped by discovery. Members found are probed
/// and admitted only if they answer and belong to the same cluster (its id); learners and
/// members not started yet get no traffic. Behind a proxy or NAT, where the URLs members
/// advertise may be unreachable, the members found simply stay out of rotation (a warning
/// says why, once) and the seeds keep working; set `member_list = false` there to keep the
/// logs quiet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Ask a healthy member for `Cluster/MemberList` at start, every `interval`, and at once
    /// when a member is ejected for connection failures or every member is unhealthy; add the
    /// members found, drop those no longer listed.
    pub member_list: bool,
    /// Seconds between `MemberList` passes; 0 asks only at start and after such errors.
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// Deadline of one `MemberList` (or `Status`) call of a pass, in seconds.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Seconds between resolutions of endpoints given as host names (each address becomes a
    /// member; the name serves until the first resolution succeeds); 0 turns DNS discovery
    /// off (names are then dialed as given). `https://` names are resolved only with
    /// `tls.domain_name` set (the certificate must be checked against a name, not the address).
    #[serde(with = "seconds")]
    pub dns_interval: Duration,
    /// Members found through DNS SRV records, as etcdctl's `--discovery-srv` finds them
    /// (none by default). Needs the `dns-srv` cargo feature; without it a config that sets
    /// this is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv: Option<SrvConfig>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            member_list: true,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            dns_interval: Duration::from_secs(30),
            srv: None,
        }
    }
}

/// Discovery by DNS SRV records, as etcd documents it for clients: the records
/// `_etcd-client-ssl._tcp.<domain>` (members reached with `https://`) and
/// `_etcd-client._tcp.<domain>` (`http://`), each target a member at the record's port.
///
/// Why: behind a Kubernetes headless service or Consul the set of members is published in DNS
/// and changes without the client being told; SRV records carry the client port too. Both
/// records are asked; as in etcd, priority and weight are not used (every target is a member,
/// balanced by health and load like any other), and one record missing is fine. A target is
/// resolved to its addresses (each a member) with the same resolver, except an `https://`
/// target without `tls.domain_name`, which is dialed by name so that its certificate is checked
/// against it (resolved, when connecting, by the system's resolver). Records are asked again every `interval` (jittered); members whose record or
/// address is gone are dropped, new ones added. A failed lookup changes nothing: the members of
/// the last good answer keep serving.
///
/// ```toml
/// [discovery.srv]
/// domain = "etcd.example.com"    # _etcd-client-ssl._tcp.etcd.example.com, _etcd-client._tcp...
/// service_name = ""              # "east": _etcd-client-ssl-east._tcp..., _etcd-client-east._tcp...
/// interval = 30
/// name_server = "127.0.0.1:8600" # e.g. Consul's DNS; leave out for the system's resolvers
/// ```
///
/// The members then need no endpoint (the tower stack), or only the one etcd-client insists
/// on (the drop-in). Endpoints given are seeds as always: never dropped, also when SRV stops
/// listing them, so give etcd-client one that stays (a Kubernetes Service name, say), or the
/// first SRV answer's.
///
/// ```no_run
/// # #[cfg(feature = "dns-srv")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use etcd_health::config::{Config, SrvConfig};
/// use etcd_health::HealthChannel;
/// use etcd_health::HealthChecker;
///
/// let mut config = Config::default();
/// config.discovery.srv = Some(SrvConfig {
///     service_name: "east".into(),
///     ..SrvConfig::new("etcd.default.svc.cluster.local")
/// });
///
/// // Tower stack: no endpoint; the members come from `_etcd-client-ssl-east._tcp...` and
/// // `_etcd-client-east._tcp...`.
/// let checker = HealthChecker::with_uris(std::iter::empty(), config.clone())?;
/// let channel = checker.channel();
/// # drop(channel);
///
/// // Drop-in: etcd-client needs one endpoint; the rest follow the records.
/// let checker = HealthChecker::with_uris(std::iter::empty(), config)?;
/// let client = etcd_client::Client::connect_with_balanced_channel(
///     ["http://etcd.default.svc.cluster.local:2379"],
///     None,
///     HealthChannel::with_checker(checker),
/// )
/// .await?;
/// # drop(client);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "dns-srv"))]
/// # fn main() {}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrvConfig {
    /// The domain the records live under (etcdctl's `--discovery-srv`), e.g.
    /// `etcd.example.com` or `etcd.default.svc.cluster.local`; a trailing dot is allowed.
    pub domain: String,
    /// Suffix of the service names (etcdctl's `--discovery-srv-name`): `east` asks
    /// `_etcd-client-ssl-east._tcp.<domain>` and `_etcd-client-east._tcp.<domain>`; empty (the
    /// default) for the plain names.
    pub service_name: String,
    /// Seconds between lookups; 0 looks up at start only.
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// The DNS server to ask, as `ip:port` (UDP, then TCP for long answers), e.g. a Consul
    /// agent's `127.0.0.1:8600`; `None` (the default) uses the system's (`/etc/resolv.conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_server: Option<String>,
}

impl Default for SrvConfig {
    fn default() -> Self {
        Self {
            domain: String::new(),
            service_name: String::new(),
            interval: Duration::from_secs(30),
            name_server: None,
        }
    }
}

impl SrvConfig {
    /// SRV discovery under `domain`, with the plain service names, every 30 s, through the
    /// system's resolvers.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            ..Self::default()
        }
    }
}

/// HTTP/2 keep-alive on the connections that carry requests to members (the [`TonicConnector`]'s
/// and the drop-in's), so a request or a stream on a connection whose member went silent (a
/// paused VM, a path that drops packets without a reset) fails once a ping goes unanswered,
/// instead of waiting on a socket the kernel still calls open.
///
/// Pings go only while requests or streams are open on the connection, never while it is idle:
/// etcd's server allows none then, and answers pings sent more often than its
/// `--grpc-keepalive-min-time` (5 s by default in etcd 3.4) with GOAWAY `too_many_pings`, which
/// closes the connection and everything on it. Hence an interval of at least 5 s; the default,
/// 10 s, is also gRPC's own floor for client pings.
///
/// The drop-in applies these settings over the ones etcd-client's `ConnectOptions` set (tonic's
/// `Endpoint` cannot tell which were set); `interval = 0` keeps etcd-client's own.
///
/// [`TonicConnector`]: crate::TonicConnector
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepAliveConfig {
    /// Seconds without a frame from the member after which a ping is sent; 0 turns keep-alive
    /// off. Otherwise at least 5 (etcd's `--grpc-keepalive-min-time`).
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// Seconds a ping may go unanswered before the connection is closed (its requests fail
    /// over: reads to another member, writes as *outcome unknown*).
    #[serde(with = "seconds")]
    pub timeout: Duration,
}

impl KeepAliveConfig {
    /// The shortest `interval` besides 0: etcd 3.4's default `--grpc-keepalive-min-time`.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}
