//! The clients compared, behind one interface: a unary get (Range) or put of a small value.
//!
//! - (a) `raw`: a plain `tonic::transport::Channel` to one member, with this crate's stubs;
//! - (b) `stock`: `etcd_client::Client::connect` over every member (tonic's balancer);
//! - (c) `ec-stack`: `etcd_client::Client::from_channel` over the health stack;
//! - (d) `stack`: the health stack with this crate's stubs;
//! - `dropin`: `etcd_client::Client::connect_with_balanced_channel` with
//!   `etcd_health::HealthChannel`, as users build it (not in [`Kind::ALL`]: the
//!   failover benchmark uses it, the overhead bench does not).
//!
//! Every request clones only the KV stub (cheap, the same for all four), never a whole
//! `etcd_client::Client`.

use std::time::Duration;

use etcd_health::config::{Config, ProbeType};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{Balance, HealthChannel, HealthChecker, HealthLayer, TonicConnector};
use tonic::transport::{Channel, Endpoint};
use tower::Layer;

/// The key every request reads or writes.
pub const KEY: &[u8] = b"bench/key";
/// The value written (16 bytes).
pub const VALUE: &[u8] = b"0123456789abcdef";

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kind {
    /// (a) raw tonic channel to one member, our stubs.
    Raw,
    /// (b) stock etcd-client over every member.
    Stock,
    /// (c) etcd-client over the health stack.
    EcStack,
    /// (d) the health stack, our stubs.
    Stack,
    /// (e) as (d) with hedging, hang detection, leader routing of writes and retry rounds
    /// off (`hedge.max_attempts = 1`, `hang.threshold = 0`, `leader.route_writes = false`,
    /// `retry.max_attempts = 3`): what those cost on the happy path, side by side.
    StackPlain,
    /// etcd-client built with `connect_with_balanced_channel(.., HealthChannel)`; no deadline
    /// is sent (the caller enforces its own).
    DropIn,
    /// As [`Kind::DropIn`] with `leader.route_writes = false`: writes go to any member, as
    /// stock etcd-client sends them (what routing writes to the leader gains).
    DropInAnyMember,
}

impl Kind {
    /// All four, in report order.
    pub const ALL: [Kind; 5] = [
        Kind::Raw,
        Kind::Stock,
        Kind::EcStack,
        Kind::Stack,
        Kind::StackPlain,
    ];

    /// Short label for tables, JSON and criterion ids.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Raw => "a-raw",
            Kind::Stock => "b-stock",
            Kind::EcStack => "c-ec-stack",
            Kind::Stack => "d-stack",
            Kind::StackPlain => "e-plain",
            Kind::DropIn => "dropin",
            Kind::DropInAnyMember => "dropin-any-member",
        }
    }

    /// Parses a label or, for (a) to (d), its letter or its name without the letter.
    pub fn parse(s: &str) -> Option<Kind> {
        for k in [Kind::DropIn, Kind::DropInAnyMember] {
            if s == k.label() {
                return Some(k);
            }
        }
        Kind::ALL
            .into_iter()
            .find(|k| k.label() == s || k.label()[..1] == *s || k.label()[2..] == *s)
    }
}

/// A unary operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Op {
    /// Linearizable Range of one key.
    Get,
    /// Put of one small value.
    Put,
}

/// The same request over the in-process fake member (`overhead_profile`'s isolated rows).
impl From<Op> for etcd_health_testing::instant::Op {
    fn from(op: Op) -> Self {
        match op {
            Op::Get => Self::Get,
            Op::Put => Self::Put,
        }
    }
}

impl Op {
    /// Both, in report order.
    pub const ALL: [Op; 2] = [Op::Get, Op::Put];

    /// Lower-case name.
    pub fn label(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }
}

/// The tuned health config of `examples/demo.rs` and the benchmarks: `status` probes with a
/// 0.5 s deadline, healthy members probed every second, unhealthy ones every 0.5 s, shorter
/// ejections. Faster recovery only: detection of hangs, elections and cut-off members is the
/// defaults' (hedging and hang detection replace the per-attempt read deadline and passive
/// timeouts this config used to set, which ejected healthy members of a loaded machine).
pub fn health_config() -> Config {
    let mut config = Config::default();
    config.checks.active.probe_type = ProbeType::Status;
    config.checks.active.timeout = Duration::from_millis(500);
    config.checks.active.healthy.interval = Duration::from_secs(1);
    config.checks.active.unhealthy.interval = Duration::from_millis(500);
    config.ejection.base = Duration::from_millis(500);
    config
}

/// The health stack over `endpoints`.
pub fn stack(endpoints: &[String], config: Config) -> Balance<TonicConnector> {
    let checker = HealthChecker::new(endpoints, config).expect("health checker");
    HealthLayer::new(checker).layer(TonicConnector::default())
}

// Not boxed: a box would add an allocation to every per-request clone, for one client only.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Inner {
    Tonic(KvClient<Channel>),
    Stack(KvClient<Balance<TonicConnector>>),
    Etcd(etcd_client::KvClient),
}

/// One client of one [`Kind`], cheap to clone; `deadline` is sent with every request.
#[derive(Clone)]
pub struct Client {
    /// Which client this is.
    pub kind: Kind,
    inner: Inner,
    deadline: Option<Duration>,
    /// The health stack under (c) and (d), for snapshots.
    pub balance: Option<Balance<TonicConnector>>,
    /// The health state under (c), (d) and `dropin` (retries, hedges, snapshots).
    pub checker: Option<HealthChecker>,
}

/// A failed request, as the caller sees it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The gRPC code and message (or the client's error text).
    pub message: String,
    /// The stack marked the failure *outcome unknown* (`etcd_health::outcome_unknown`): a
    /// write that may or may not have been applied.
    pub outcome_unknown: bool,
    /// The caller's own deadline ran out while the request was in flight (for a write: its
    /// outcome is unknown too, though no status says so).
    pub caller_timeout: bool,
}

impl Failure {
    /// The caller gave up after `deadline`.
    pub fn caller_timeout(deadline: Duration) -> Self {
        Self {
            message: format!("no answer within the caller's {deadline:?} deadline"),
            outcome_unknown: false,
            caller_timeout: true,
        }
    }

    fn from_status(s: &tonic::Status) -> Self {
        Self {
            message: format!("{:?}: {}", s.code(), s.message()),
            outcome_unknown: etcd_health::outcome_unknown(s),
            caller_timeout: false,
        }
    }

    fn from_etcd(e: etcd_client::Error) -> Self {
        match &e {
            etcd_client::Error::GRpcStatus(s) => Self::from_status(s),
            _ => Self {
                message: e.to_string(),
                outcome_unknown: false,
                caller_timeout: false,
            },
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("kind", &self.kind).finish()
    }
}

/// How to build a client.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Every member's client URL.
    pub endpoints: Vec<String>,
    /// The member (a) talks to.
    pub raw_member: usize,
    /// Per-request deadline (`None`: no deadline, as in the overhead bench).
    pub deadline: Option<Duration>,
    /// Health config of (c) and (d).
    pub config: Config,
}

impl Setup {
    /// Builds the client of `kind` (connecting eagerly where the client does so).
    pub async fn build(&self, kind: Kind) -> Result<Client, Box<dyn std::error::Error>> {
        let (inner, balance) = match kind {
            Kind::Raw => {
                let channel = Endpoint::from_shared(self.endpoints[self.raw_member].clone())?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                (Inner::Tonic(KvClient::new(channel)), None)
            }
            Kind::Stock => {
                let mut options =
                    etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
                if let Some(d) = self.deadline {
                    options = options.with_timeout(d);
                }
                let client = etcd_client::Client::connect(&self.endpoints, Some(options)).await?;
                (Inner::Etcd(client.kv_client()), None)
            }
            Kind::EcStack => {
                let balance = stack(&self.endpoints, self.config.clone());
                let channel = match self.deadline {
                    // etcd-client's `with_timeout` only reaches tonic endpoints it builds
                    // itself; over a custom channel the deadline travels as the
                    // `grpc-timeout` header, as `tonic::Request::set_timeout` sends it.
                    Some(d) => {
                        let value = http::HeaderValue::from_str(&format!("{}m", d.as_millis()))?;
                        let svc = tower::ServiceBuilder::new()
                            .map_request(move |mut req: http::Request<tonic::body::Body>| {
                                req.headers_mut()
                                    .entry("grpc-timeout")
                                    .or_insert_with(|| value.clone());
                                req
                            })
                            .service(balance.clone());
                        tower::util::BoxCloneSyncService::new(svc)
                    }
                    None => tower::util::BoxCloneSyncService::new(balance.clone()),
                };
                let client =
                    etcd_client::Client::from_channel(etcd_client::Channel::Custom(channel), None)
                        .await?;
                (Inner::Etcd(client.kv_client()), Some(balance))
            }
            Kind::Stack => {
                let balance = stack(&self.endpoints, self.config.clone());
                (Inner::Stack(KvClient::new(balance.clone())), Some(balance))
            }
            Kind::StackPlain => {
                let mut config = self.config.clone();
                config.hedge.max_attempts = 1;
                config.hang.threshold = 0;
                config.leader.route_writes = false;
                config.retry.max_attempts = 3;
                let balance = stack(&self.endpoints, config);
                (Inner::Stack(KvClient::new(balance.clone())), Some(balance))
            }
            Kind::DropIn | Kind::DropInAnyMember => {
                // What users write: the checker is kept only to read its counters.
                let mut config = self.config.clone();
                if kind == Kind::DropInAnyMember {
                    config.leader.route_writes = false;
                }
                let checker = HealthChecker::with_uris(std::iter::empty(), config)?;
                let client = etcd_client::Client::connect_with_balanced_channel(
                    &self.endpoints,
                    None,
                    HealthChannel::with_checker(checker.clone()),
                )
                .await?;
                return Ok(Client {
                    kind,
                    inner: Inner::Etcd(client.kv_client()),
                    deadline: None,
                    balance: None,
                    checker: Some(checker),
                });
            }
        };
        Ok(Client {
            kind,
            inner,
            deadline: self.deadline,
            checker: balance.as_ref().map(|b| b.checker().clone()),
            balance,
        })
    }
}

impl Client {
    /// One request; the error is the gRPC code and message.
    pub async fn call(&self, op: Op) -> Result<(), String> {
        self.try_call(op).await.map_err(|f| f.message)
    }

    /// One request; the error says whether its outcome is unknown.
    pub async fn try_call(&self, op: Op) -> Result<(), Failure> {
        match (&self.inner, op) {
            (Inner::Tonic(kv), op) => tonic_call(kv.clone(), op, self.deadline).await,
            (Inner::Stack(kv), op) => tonic_call(kv.clone(), op, self.deadline).await,
            (Inner::Etcd(kv), Op::Get) => kv
                .clone()
                .get(KEY, None)
                .await
                .map(|_| ())
                .map_err(Failure::from_etcd),
            (Inner::Etcd(kv), Op::Put) => kv
                .clone()
                .put(KEY, VALUE, None)
                .await
                .map(|_| ())
                .map_err(Failure::from_etcd),
        }
    }
}

async fn tonic_call<T>(
    mut kv: KvClient<T>,
    op: Op,
    deadline: Option<Duration>,
) -> Result<(), Failure>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let result = match op {
        Op::Get => {
            let mut req = tonic::Request::new(RangeRequest {
                key: KEY.to_vec(),
                ..Default::default()
            });
            if let Some(d) = deadline {
                req.set_timeout(d);
            }
            kv.range(req).await.map(|_| ())
        }
        Op::Put => {
            let mut req = tonic::Request::new(PutRequest {
                key: KEY.to_vec(),
                value: VALUE.to_vec(),
                ..Default::default()
            });
            if let Some(d) = deadline {
                req.set_timeout(d);
            }
            kv.put(req).await.map(|_| ())
        }
    };
    result.map_err(|s| Failure::from_status(&s))
}
