//! Turning host names into addresses, with a resolver that can be swapped.
//!
//! Why a module of its own: the health state holds the resolver (so a caller can set one on a
//! [`HealthChecker`](crate::HealthChecker)) and DNS discovery uses it; as a leaf that imports
//! neither, it keeps the two from importing each other. Public as
//! [`extend::Resolve`](crate::extend::Resolve).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;

/// Resolves a host name to socket addresses.
///
/// The default, [`TokioResolver`], asks the system (tokio's `lookup_host`); give another with
/// [`HealthChecker::set_resolver`](crate::HealthChecker::set_resolver), e.g. to map a made-up
/// name to test members.
pub trait Resolve: Send + Sync + fmt::Debug {
    /// The addresses of `host` (a name, without brackets), with `port`.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver, through tokio's `lookup_host`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioResolver;

impl Resolve for TokioResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}
