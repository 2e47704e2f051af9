//! How the balancer reaches one member.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::connect::CountedConnect;
use crate::member::Member;

/// Makes the service that carries requests to one member.
///
/// Implemented by [`TonicConnector`] and by any `Fn(&Member) -> S`, so per-member middleware
/// can sit under the balancer.
pub trait MakeMember {
    /// The per-member service.
    type Service;

    /// The service for `member`; called once per member, when the balancer first sees it.
    fn make_member(&self, member: &Member) -> Self::Service;

    /// Called once by [`Balance::new`](super::Balance::new) with the health state the
    /// balancer serves, before any member is made: the place to adopt settings the checker
    /// holds (the TLS material of `config.tls`). Does nothing by default.
    fn attach(&mut self, checker: &crate::checker::HealthChecker) {
        let _ = checker;
    }

    /// Whether the member services read a unary request's extensions (tonic's
    /// `GrpcMethod`, or what the caller put there). `true` by default: each copy of the
    /// request carries them. With `false` (a [`TonicConnector`]'s channels never read them),
    /// copies go without: a retry or a hedge saves a map of its own (three allocations), and
    /// an answer asked to be marked [`ServedBy`](super::ServedBy) takes the request's map
    /// (one allocation instead of three). Streams always carry them.
    fn reads_extensions(&self) -> bool {
        true
    }
}

impl<F, S> MakeMember for F
where
    F: Fn(&Member) -> S,
{
    type Service = S;

    fn make_member(&self, member: &Member) -> S {
        self(member)
    }
}

/// A lazily connected tonic [`Channel`] per member, with settings that suit etcd.
///
/// One HTTP/2 connection per member, as etcd's Go client keeps: etcd serves up to
/// `--max-concurrent-streams` (unlimited by default) requests on it at once. The settings, and
/// why:
///
/// - **`TCP_NODELAY`**: a unary request or answer is one small write; Nagle's algorithm
///   would hold it back waiting for the previous segment's ACK (delayed ACKs make that up to
///   40 ms on Linux).
/// - **Flow-control windows** of 1 MiB per stream and 2 MiB per connection instead of
///   HTTP/2's 64 KiB: a read of a large range, or a watch catching up, streams at most one
///   window per round trip (64 KiB per 50 ms is 1.3 MB/s between regions). etcd's Go client
///   grows its windows by BDP pings; static windows need no pings (etcd counts pings against
///   `too_many_pings`), and cost nothing until data is in flight: the answer is read as it
///   arrives. (Small unary requests never fill a window: the benchmarks do not see them.)
/// - **Keep-alive** as `config.keep_alive` says (by default a ping after 10 s without a frame,
///   5 s to answer it), never while idle: etcd answers more frequent pings
///   (`--grpc-keepalive-min-time`, 5 s) with GOAWAY `too_many_pings`; a member that stops
///   answering them within the timeout has its connection closed, so requests fail over
///   instead of waiting on a dead socket. [`keep_alive`](Self::keep_alive) sets it for this
///   connector alone.
///
/// Members with `https://` URLs speak TLS (feature `tls`): with the material given to
#[cfg_attr(
    feature = "tls",
    doc = "[`tls`](Self::tls), else verified against the system's roots. The material is read at \
           each connection, so a reconnect after a [reload](crate::Tls::reload) presents the new \
           certificate."
)]
#[cfg_attr(
    not(feature = "tls"),
    doc = "`tls`, else verified against the system's roots. The material is read at each \
           connection, so a reconnect after a reload presents the new certificate."
)]
#[derive(Clone, Debug)]
pub struct TonicConnector {
    connect_timeout: Duration,
    /// Ping interval and timeout; `None`: `config.keep_alive`'s, adopted at
    /// [`attach`](MakeMember::attach); an interval of zero: no pings.
    keep_alive: Option<(Duration, Duration)>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
}

/// Deadline of one TCP connect to a member, unless set otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2 flow-control window of one stream (see [`TonicConnector`]).
const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 flow-control window of one connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 2 << 20;

/// The transport settings every member channel gets, whoever built its `Endpoint` (this
/// connector, or etcd-client for the drop-in, whose `ConnectOptions` cannot express them): no
/// Nagle delay on small gRPC frames, and flow-control windows large enough that 64 requests in
/// flight on one connection do not wait for window updates.
///
/// A connect timeout is added where none is set (etcd-client sets one only when its
/// `ConnectOptions` ask): a member whose packets are dropped answers no SYN, and the kernel
/// retries one for about two minutes.
pub(crate) fn transport_settings(endpoint: Endpoint) -> Endpoint {
    let timeout = endpoint.get_connect_timeout().unwrap_or(CONNECT_TIMEOUT);
    stream_settings(endpoint).connect_timeout(timeout)
}

/// [`transport_settings`] but the connect timeout, for channels whose connector keeps its own
/// ([`CountedConnect`]).
fn stream_settings(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}

/// HTTP/2 keep-alive as `config` says (see [`KeepAliveConfig`]): pings every `interval`
/// without a frame while requests are open, never while idle; an interval of zero leaves the
/// endpoint as it is.
///
/// [`KeepAliveConfig`]: crate::config::KeepAliveConfig
pub(crate) fn keep_alive(endpoint: Endpoint, interval: Duration, timeout: Duration) -> Endpoint {
    if interval.is_zero() {
        return endpoint;
    }
    endpoint
        .http2_keep_alive_interval(interval)
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(false)
}

impl Default for TonicConnector {
    fn default() -> Self {
        Self {
            connect_timeout: CONNECT_TIMEOUT,
            keep_alive: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl TonicConnector {
    /// Deadline of one TCP connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive interval (at least 5 s is enforced, etcd's minimum) and ping
    /// timeout, instead of `config.keep_alive`'s.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((
            interval.max(crate::config::KeepAliveConfig::MIN_INTERVAL),
            timeout,
        ));
        self
    }

    /// TLS material for `https://` members (CA, client certificate). Without it the
    /// connector takes the health checker's ([`HealthChecker::tls`](crate::HealthChecker::tls),
    /// from `config.tls`) when the balancer is built, so requests and probes present the same
    /// certificate, and follow the same reloads. Certificates are always verified.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl MakeMember for TonicConnector {
    type Service = Channel;

    /// Adopts the checker's TLS material (feature `tls`) unless the connector's own `tls` set
    /// one, and its `keep_alive` unless [`keep_alive`](Self::keep_alive) set one.
    fn attach(&mut self, checker: &crate::checker::HealthChecker) {
        let config = &checker.config().keep_alive;
        self.keep_alive
            .get_or_insert((config.interval, config.timeout));
        #[cfg(feature = "tls")]
        if self.tls.is_none() {
            self.tls = checker.tls().cloned();
        }
        #[cfg(not(feature = "tls"))]
        let _ = checker;
    }

    /// A tonic `Channel` reads none of a request's extensions.
    fn reads_extensions(&self) -> bool {
        false
    }

    /// Each connection attempt of the channel is bounded by the connect timeout and counted
    /// by its result (feature `metrics`: `etcd_health.subchannel.connection_attempts`; the
    /// counters are registered here, once per channel).
    fn make_member(&self, member: &Member) -> Channel {
        let (interval, timeout) = self.keep_alive.unwrap_or_else(|| {
            let config = crate::config::KeepAliveConfig::default();
            (config.interval, config.timeout)
        });
        let settings =
            move |endpoint: Endpoint| keep_alive(stream_settings(endpoint), interval, timeout);
        let connects = crate::metrics::Connects::new(member.authority());
        #[cfg(feature = "tls")]
        if member.uri().scheme_str() == Some("https") {
            match self.tls.clone().or_else(crate::tls::Tls::system_default) {
                // Each connection (the first, every reconnect) takes the material current
                // then: a rotated certificate needs no new channel.
                Some(tls) => {
                    return crate::tls::lazy_channel_through(
                        member.uri(),
                        tls,
                        true,
                        settings,
                        |tls| CountedConnect::new(tls, self.connect_timeout, connects),
                    )
                }
                None => {
                    tracing::error!(%member, "no TLS roots: requests to this member will fail")
                }
            }
        }
        settings(Endpoint::from(member.uri().clone())).connect_with_connector_lazy(
            CountedConnect::new(super::connect::tcp(), self.connect_timeout, connects),
        )
    }
}
