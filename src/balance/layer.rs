//! The tower [`Layer`].

use tower::Layer;

use super::{Balance, MakeMember};
use crate::HealthChecker;

/// Wraps per-member services in a health-checked [`Balance`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use etcd_health::{balance::{HealthLayer, TonicConnector}, config::Config, HealthChecker};
/// use tower::Layer;
///
/// let checker = HealthChecker::new(&["http://127.0.0.1:2379"], Config::default())?;
/// let channel = HealthLayer::new(checker).layer(TonicConnector::default());
/// let mut kv = etcd_health::proto::etcdserverpb::kv_client::KvClient::new(channel);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HealthLayer {
    checker: HealthChecker,
}

impl HealthLayer {
    /// A layer over the members of `checker`.
    pub fn new(checker: HealthChecker) -> Self {
        Self { checker }
    }

    /// The shared health state.
    pub fn checker(&self) -> &HealthChecker {
        &self.checker
    }
}

impl<M: MakeMember> Layer<M> for HealthLayer {
    type Service = Balance<M>;

    fn layer(&self, make: M) -> Self::Service {
        Balance::new(self.checker.clone(), make)
    }
}
