//! How the balancer reaches one member.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::checker::Member;

/// Makes the service that carries requests to one member.
///
/// Implemented by [`TonicConnector`] and by any `Fn(&Member) -> S`, so per-member middleware
/// can sit under the balancer.
pub trait MakeMember {
    /// The per-member service.
    type Service;

    /// The service for `member`; called once per member, when the balancer first sees it.
    fn make_member(&self, member: &Member) -> Self::Service;
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
/// HTTP/2 keep-alive pings go no more often than every 10 s and never while idle: etcd
/// answers more frequent pings with GOAWAY `too_many_pings`.
#[derive(Clone, Debug)]
pub struct TonicConnector {
    connect_timeout: Duration,
    keep_alive_interval: Duration,
    keep_alive_timeout: Duration,
}

impl Default for TonicConnector {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
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
    /// timeout.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval.max(Duration::from_secs(5));
        self.keep_alive_timeout = timeout;
        self
    }
}

impl MakeMember for TonicConnector {
    type Service = Channel;

    fn make_member(&self, member: &Member) -> Channel {
        Endpoint::from(member.uri().clone())
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(self.keep_alive_timeout)
            .keep_alive_while_idle(false)
            .connect_lazy()
    }
}
