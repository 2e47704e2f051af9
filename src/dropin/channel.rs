//! [`HealthChannel`]: etcd-client's `BalancedChannelBuilder`, and the service it builds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use etcd_client::{BalancedChannelBuilder, Channel};
use http::{Request, Response, Uri};
use tokio::sync::mpsc;
use tonic::transport::channel::Change;
use tonic::transport::Endpoint;
use tower::util::BoxCloneSyncService;
use tower::Service;

use super::auth_pause::{AuthPause, AUTHENTICATE};
use crate::balance::{Balance, MakeMember, ResponseFuture};
use crate::checker::HealthChecker;
use crate::config::Config;
use crate::grpc::GrpcService;
use crate::member::Member;
use crate::stream::resume::IntoBoxChannel;
use crate::stream::{StreamHealth, StreamStats, Streams};

/// Builds etcd-client's channel as a health-checked [`Balance`]; pass it to
/// `etcd_client::Client::connect_with_balanced_channel`.
///
/// Watches and lease keep-alives opened through it survive the loss of their member: a watch
/// is created again on another member from the revision after the last one delivered (events
/// exactly once, in order), keep-alives go to the leader and are hedged on a second member
/// when one goes unanswered; etcd-client sees none of it.
/// [`stream_stats`](Self::stream_stats) counts what that took, and
/// [`resume_streams`](Self::resume_streams)`(false)` turns it off.
#[derive(Clone, Debug)]
pub struct HealthChannel {
    config: Config,
    checker: Option<HealthChecker>,
    stats: StreamStats,
    resume_streams: bool,
}

impl Default for HealthChannel {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl HealthChannel {
    /// A channel builder with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            checker: None,
            stats: StreamStats::default(),
            resume_streams: true,
        }
    }

    /// Uses an existing health state (its config stays in force), e.g. to watch the same
    /// [`snapshot`](HealthChecker::snapshot) the client's traffic feeds.
    pub fn with_checker(checker: HealthChecker) -> Self {
        Self {
            config: checker.config().clone(),
            checker: Some(checker),
            ..Self::new(Config::default())
        }
    }

    /// Whether watches and lease keep-alives move to another member when theirs fails, hangs
    /// or is evicted (on by default). Off, each stream stays on the member it was opened on
    /// and fails or stalls with it, as with stock etcd-client (keep-alives still go to the
    /// leader).
    pub fn resume_streams(mut self, resume: bool) -> Self {
        self.resume_streams = resume;
        self
    }

    /// The counters of the channel's watch and keep-alive streams; take it before handing the
    /// builder to etcd-client (clones share the counters).
    pub fn stream_stats(&self) -> StreamStats {
        self.stats.clone()
    }
}

impl BalancedChannelBuilder for HealthChannel {
    type Error = etcd_client::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(Channel, mpsc::Sender<Change<Uri, Endpoint>>), Self::Error> {
        let checker = match self.checker {
            Some(checker) => checker,
            None => HealthChecker::with_uris(std::iter::empty(), self.config)
                .map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?,
        };
        let (tx, rx) = mpsc::channel(buffer_size.max(1));
        let channel = EtcdChannel::new(checker, rx, self.stats, self.resume_streams);
        Ok((Channel::Custom(BoxCloneSyncService::new(channel)), tx))
    }
}

/// The endpoints etcd-client handed over, by URL.
type Endpoints = Arc<Mutex<HashMap<Uri, Endpoint>>>;

/// Makes each member's channel from the `Endpoint` etcd-client built for it.
///
/// Members found by discovery (`MemberList`, DNS) have no such endpoint: theirs is built here
/// with the connector's settings and `config.tls` (etcd-client's own `TlsOptions` cannot be
/// copied to another URL, so with `https://` members set `config.tls`).
///
/// With `config.tls`, the channels of `https://` members follow its reloads: those built here
/// take the material at each connect, those of etcd-client's endpoints are made again after a
/// reload ([`RotatingChannel`](crate::tls::RotatingChannel)).
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointMaker {
    endpoints: Endpoints,
    found: crate::balance::TonicConnector,
    /// `config.keep_alive`, applied over etcd-client's endpoints (see
    /// [`KeepAliveConfig`](crate::config::KeepAliveConfig)).
    keep_alive: crate::config::KeepAliveConfig,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
}

impl MakeMember for EndpointMaker {
    type Service = MemberChannel;

    fn attach(&mut self, checker: &HealthChecker) {
        self.found.attach(checker);
        self.keep_alive = checker.config().keep_alive.clone();
        #[cfg(feature = "tls")]
        {
            self.tls = checker.tls().cloned();
        }
    }

    fn make_member(&self, member: &Member) -> Self::Service {
        let given = self
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(member.uri())
            .cloned();
        let Some(endpoint) = given else {
            return MemberChannel::Plain(self.found.make_member(member));
        };
        let endpoint = crate::balance::keep_alive(
            crate::balance::transport_settings(endpoint),
            self.keep_alive.interval,
            self.keep_alive.timeout,
        );
        #[cfg(feature = "tls")]
        if let Some(tls) = (self.tls.clone()).filter(|_| member.uri().scheme_str() == Some("https"))
        {
            return MemberChannel::Rotating(crate::tls::RotatingChannel::new(endpoint, tls));
        }
        MemberChannel::Plain(endpoint.connect_lazy())
    }

    /// tonic `Channel`s (rotated or not) read none of a request's extensions.
    fn reads_extensions(&self) -> bool {
        false
    }
}

/// The channel to one member of the drop-in.
#[derive(Clone, Debug)]
pub(crate) enum MemberChannel {
    /// A tonic channel as made (its TLS, if any, follows reloads by itself or not at all).
    Plain(tonic::transport::Channel),
    /// etcd-client's endpoint with `config.tls`, made again after each reload.
    #[cfg(feature = "tls")]
    Rotating(crate::tls::RotatingChannel),
}

impl Service<Request<tonic::body::Body>> for MemberChannel {
    type Response = Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Plain(channel) => channel.poll_ready(cx),
            #[cfg(feature = "tls")]
            Self::Rotating(channel) => channel.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        match self {
            Self::Plain(channel) => channel.call(req),
            #[cfg(feature = "tls")]
            Self::Rotating(channel) => channel.call(req),
        }
    }
}

/// The service behind etcd-client's `Channel::Custom`: a [`Balance`] that also applies the
/// endpoint changes etcd-client sends (`add_endpoint`, `remove_endpoint`).
///
/// Changes are applied before each request is routed, so the endpoints etcd-client inserts
/// while connecting are in place for its very first request.
///
/// Behind one `Arc`: etcd-client clones its channel for every request.
#[derive(Clone, Debug)]
pub struct EtcdChannel {
    shared: Arc<Shared>,
}

/// What the clones of one [`EtcdChannel`] share.
#[derive(Debug)]
struct Shared {
    inner: WithStreams<EndpointMaker>,
    endpoints: Endpoints,
    changes: Mutex<mpsc::Receiver<Change<Uri, Endpoint>>>,
}

impl EtcdChannel {
    fn new(
        checker: HealthChecker,
        changes: mpsc::Receiver<Change<Uri, Endpoint>>,
        stats: StreamStats,
        resume: bool,
    ) -> Self {
        let maker = EndpointMaker::default();
        let endpoints = maker.endpoints.clone();
        Self {
            shared: Arc::new(Shared {
                inner: WithStreams::new(Balance::new(checker, maker), stats, resume),
                endpoints,
                changes: Mutex::new(changes),
            }),
        }
    }

    /// The shared health state.
    pub fn checker(&self) -> &HealthChecker {
        self.shared.inner.parts.balance.checker()
    }

    /// The counters of the channel's watch and keep-alive streams.
    pub fn stream_stats(&self) -> StreamStats {
        self.shared.inner.parts.streams.stats().clone()
    }

    /// Applies the endpoint changes etcd-client sent. Called on every request, and waits
    /// for a caller applying them: requests sent at once right after connecting must all find
    /// the members etcd-client inserted (the lock is held for microseconds).
    fn apply_changes(&self) {
        let mut rx = self
            .shared
            .changes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while let Ok(change) = rx.try_recv() {
            let checker = self.checker();
            match change {
                Change::Insert(_, endpoint) => {
                    // Known by its URL without userinfo, as the member is.
                    let (uri, endpoint) = crate::config::endpoint_without_userinfo(endpoint);
                    let (endpoint, configured) = with_configured_tls(checker, &uri, endpoint);
                    self.shared
                        .endpoints
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(uri, endpoint.clone());
                    if configured {
                        checker.add_member_with_configured_tls(endpoint);
                    } else {
                        checker.add_member_with_endpoint(endpoint);
                    }
                }
                Change::Remove(uri) => {
                    let uri = crate::config::without_userinfo(&uri).unwrap_or(uri);
                    checker.remove_member(&uri);
                    self.shared
                        .endpoints
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&uri);
                }
            }
        }
    }
}

impl Service<Request<tonic::body::Body>> for EtcdChannel {
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    /// Always ready, as the balancer is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        self.apply_changes();
        self.shared.inner.route(req)
    }
}

/// etcd-client builds `https://` endpoints with its own `TlsOptions` (none given: no trusted
/// roots at all). When `config.tls` is set, that material wins, for requests and probes alike,
/// so TLS is configured once (and follows its reloads); the flag says it was applied.
#[cfg(feature = "tls")]
fn with_configured_tls(checker: &HealthChecker, uri: &Uri, endpoint: Endpoint) -> (Endpoint, bool) {
    if uri.scheme_str() != Some("https") {
        return (endpoint, false);
    }
    let Some(tls) = checker.tls() else {
        use crate::config::ProbeType;
        let probe = checker.config().checks.active.probe_type;
        if matches!(probe, ProbeType::Http | ProbeType::Https) {
            // The HTTP/1.1 probes cannot borrow etcd-client's TlsOptions: they would check
            // this member against the system's roots, and a private CA would fail them all.
            tracing::warn!(
                %uri,
                "https member probed by `{}` without config.tls: the probe trusts only the \
                 system's roots and presents no client certificate; set config.tls (or use \
                 the `status` probe, which reuses etcd-client's TLS)",
                if probe == ProbeType::Http { "http" } else { "https" }
            );
        }
        return (endpoint, false);
    };
    match tls.apply(endpoint.clone(), true, None) {
        Ok(endpoint) => (endpoint, true),
        Err(error) => {
            tracing::error!(
                %uri,
                %error,
                "config.tls could not be applied; keeping etcd-client's TLS"
            );
            (endpoint, false)
        }
    }
}

#[cfg(not(feature = "tls"))]
fn with_configured_tls(
    _checker: &HealthChecker,
    _uri: &Uri,
    endpoint: Endpoint,
) -> (Endpoint, bool) {
    (endpoint, false)
}

/// Wraps a hand-built [`Balance`] for `etcd_client::Client::from_channel` (etcd-client's
/// `raw-channel` feature, enabled by this crate).
///
/// As with [`HealthChannel`], etcd's refusals of a stale token ("revision of auth store is
/// old", "user name is empty") reach etcd-client as `Unauthenticated`, the answer its
/// `with_auto_token_refresh(true)` authenticates again on, and watches and lease keep-alives
/// move to another member when theirs is lost.
///
/// The bounds are those under which a [`Balance`] is a service: member services that carry
/// tonic's requests, answer with a body of `Bytes` frames, and may move between tasks.
pub fn into_etcd_channel<M, B>(balance: Balance<M>) -> Channel
where
    M: MakeMember + Send + Sync + 'static,
    M::Service:
        Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    <M::Service as Service<Request<tonic::body::Body>>>::Future: Send,
    <M::Service as Service<Request<tonic::body::Body>>>::Error: Into<tower::BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let channel = WithStreams::new(balance, StreamStats::default(), true);
    Channel::Custom(BoxCloneSyncService::new(channel))
}

/// A [`Balance`] that answers watch and keep-alive streams through the drop-in's resuming
/// driver and hands etcd-client token refusals it renews on: the service under both
/// [`EtcdChannel`] and [`into_etcd_channel`].
///
/// Behind one `Arc`: etcd-client clones its channel for every request (every `KvClient`
/// clone, every call), and a clone of the parts is about fifteen reference counts and a boxed
/// channel; this is one.
struct WithStreams<M: MakeMember> {
    parts: Arc<Parts<M>>,
}

struct Parts<M: MakeMember> {
    balance: Balance<M>,
    streams: Streams,
    /// etcd-client's `Authenticate` calls, paused after a refusal.
    auth: Arc<AuthPause>,
}

// === impl WithStreams ===

#[allow(private_bounds, reason = "a private type: the bound never shows")]
impl<M> WithStreams<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    fn new(balance: Balance<M>, stats: StreamStats, resume: bool) -> Self {
        let streams = Streams::new(
            balance.clone().into_box_channel(),
            StreamHealth::new(balance.checker().clone()),
            stats,
            resume,
        );
        Self {
            parts: Arc::new(Parts {
                balance,
                streams,
                auth: Arc::default(),
            }),
        }
    }
}

impl<M: MakeMember> Clone for WithStreams<M> {
    fn clone(&self) -> Self {
        Self {
            parts: self.parts.clone(),
        }
    }
}

impl<M: MakeMember> std::fmt::Debug for WithStreams<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithStreams")
            .field("balance", &self.parts.balance)
            .finish_non_exhaustive()
    }
}

#[allow(private_bounds, reason = "a private type: the bound never shows")]
impl<M> Service<Request<tonic::body::Body>> for WithStreams<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    /// Always ready, as the balancer is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        self.route(req)
    }
}

#[allow(private_bounds, reason = "a private type: the bound never shows")]
impl<M> WithStreams<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    /// Routes a request: a watch or keep-alive stream to the resuming driver, anything else
    /// to the balancer. `&self`: nothing per caller, so sharers need no clone to route.
    fn route(&self, mut req: Request<tonic::body::Body>) -> ResponseFuture {
        let Parts {
            balance,
            streams,
            auth,
        } = &*self.parts;
        streams.note_token(req.headers_mut());
        let answer = if crate::stream::takes(req.uri().path()) {
            crate::stream::call(streams, req)
        } else if req.uri().path() == AUTHENTICATE {
            authenticate(balance.clone(), auth.clone(), req)
        } else {
            balance.dispatch(req)
        };
        answer.map_response(super::stale_token::as_unauthenticated)
    }
}

/// Sends etcd-client's `Authenticate` unless the members refused the same credentials and the
/// pause after it lasts (then that refusal is the answer at once: see `auth_pause.rs`).
fn authenticate<M>(
    balance: Balance<M>,
    pause: Arc<AuthPause>,
    req: Request<tonic::body::Body>,
) -> ResponseFuture
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    use http_body_util::BodyExt;
    ResponseFuture::new(async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let key = pause.key(&body);
        if let Some(refusal) = pause.check(key, tokio::time::Instant::now()) {
            tracing::debug!("Authenticate answered with the members' last refusal, not sent");
            return Ok(refusal.into_http());
        }
        let req = Request::from_parts(
            parts,
            tonic::body::Body::new(http_body_util::Full::new(body)),
        );
        let resp = balance.dispatch(req).await?;
        let status = crate::grpc::status_of(resp.headers());
        pause.answered(
            key,
            status.as_ref(),
            tokio::time::Instant::now(),
            crate::timing::unit(),
        );
        Ok(resp)
    })
}
