//! The tower [`Layer`], and the one call that builds the usual stack.
//!
//! The layer takes a [`MakeMember`] (how to reach one member), not a service to wrap: a
//! balancer needs a service per member, made when a member appears, so what it is given is the
//! recipe, as with tower's `MakeService`.

use std::sync::Arc;

use tokio::sync::watch;
use tower::Layer;

use super::unary::driver::Health;
use super::{Balance, MakeMember, TonicConnector};
use crate::budget::RetryBudget;
use crate::checker::HealthChecker;
use crate::config::Config;
use crate::member::MemberEntry;

/// Wraps per-member services in a health-checked [`Balance`]; for the usual stack (a tonic
/// channel per member) [`HealthChecker::channel`] is the one call.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use etcd_health::{Config, HealthChecker, HealthLayer, TonicConnector};
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

// === impl HealthLayer ===

impl<M: MakeMember> Layer<M> for HealthLayer {
    type Service = Balance<M>;

    fn layer(&self, make: M) -> Self::Service {
        Balance::new(self.checker.clone(), make)
    }
}

// === impl HealthChecker: the tower stack ===

impl HealthChecker {
    /// The health-checked channel over this state's members, one tonic channel per member:
    /// the stack [`HealthLayer`] builds over a [`TonicConnector::default`]. It serves any tonic
    /// client, e.g. this crate's etcd stubs in [`proto`](crate::proto).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use etcd_health::{Config, HealthChecker};
    /// use etcd_health::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    ///
    /// let checker = HealthChecker::new(&["http://127.0.0.1:2379"], Config::default())?;
    /// let mut kv = KvClient::new(checker.channel());
    /// kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await?;
    /// # Ok(()) }
    /// ```
    pub fn channel(&self) -> Balance<TonicConnector> {
        Balance::new(self.clone(), TonicConnector::default())
    }
}

// === impl HealthChecker: the unary driver's port ===

/// The handle a balancer holds is its unary driver's port on the health state: the driver
/// names only the `Health` trait, this is where the checker meets it.
impl Health for HealthChecker {
    fn config(&self) -> &Config {
        HealthChecker::config(self)
    }

    fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        HealthChecker::entries(self)
    }

    fn leader_entry(&self) -> Option<Arc<MemberEntry>> {
        HealthChecker::leader_entry(self)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        HealthChecker::changes(self)
    }

    fn budget(&self) -> &RetryBudget {
        HealthChecker::budget(self)
    }

    fn metrics(&self) -> &crate::metrics::Checker {
        HealthChecker::metrics(self)
    }

    fn count_retry(&self) {
        HealthChecker::count_retry(self)
    }

    fn count_hedge(&self) {
        HealthChecker::count_hedge(self)
    }
}
