//! The balancer's face, and the room's one handle on the health state: the tower [`Layer`],
//! the [`Balance`] value with its constructor, and the one call that builds the usual stack.
//!
//! Why here: every way into the balancer names a [`HealthChecker`] ([`HealthLayer::new`],
//! [`Balance::new`], [`Balance::checker`], [`HealthChecker::channel`]); this file takes it and
//! hands the rest of the room [`BalanceHealth`], the narrow port that says what the balancer
//! reads of the health state and reports to it. So the request path (`service.rs`) and the
//! unary driver do not name the checker.
//!
//! The layer takes a [`MakeMember`] (how to reach one member), not a service to wrap: a
//! balancer needs a service per member, made when a member appears, so what it is given is the
//! recipe, as with tower's `MakeService`.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tower::Layer;

use super::hedge::HedgeDelays;
use super::unary::driver::Health;
use super::{MakeMember, TonicConnector};
use crate::budget::RetryBudget;
use crate::checker::HealthChecker;
use crate::config::Config;
use crate::member::MemberEntry;
use crate::passive::{Classifier, Judge};

/// Each member's service at its member index, with the member's
/// [`returns`](MemberEntry::returns) when it was made. A vector, not a hash map: indexes are
/// small and dense (one per member ever known), and this is read on every attempt.
pub(super) type Services<S> = Vec<Option<(u64, S)>>;

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

/// A health-checked balancer over one service per etcd member.
///
/// `Clone + Send + Sync`; clones share members, services and health state.
pub struct Balance<M: MakeMember> {
    /// Everything, behind one pointer: a unary request's future holds a clone of the balancer,
    /// so a clone is one reference count taken (and given back), not one per part.
    pub(super) shared: Arc<Shared<M>>,
}

/// What the clones of a [`Balance`] share.
pub(super) struct Shared<M: MakeMember> {
    pub(super) health: BalanceHealth,
    pub(super) make: M,
    pub(super) services: RwLock<Services<M::Service>>,
    /// When a read is slow enough to hedge, per kind of read, from the latency of the reads
    /// of that kind it served.
    pub(super) hedge: HedgeDelays,
    /// How answers count against their member, and where the verdicts go.
    pub(super) judge: Arc<Judge>,
}

// === impl Balance ===

impl<M: MakeMember> Balance<M> {
    /// A balancer over the members of `checker`, reaching each through `make`.
    ///
    /// `make` is first shown the health state ([`MakeMember::attach`]): a [`TonicConnector`]
    /// without TLS of its own takes the checker's, so requests present the same client
    /// certificate as the probes.
    pub fn new(checker: HealthChecker, mut make: M) -> Self {
        make.attach(&checker);
        let classifier = Classifier::new(checker.classifier(), checker.config());
        let shared = Shared {
            hedge: HedgeDelays::new(&checker.config().hedge),
            judge: Arc::new(Judge::new(checker.verdicts(), classifier)),
            health: BalanceHealth(checker),
            make,
            services: RwLock::new(Vec::new()),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The shared health state.
    pub fn checker(&self) -> &HealthChecker {
        &self.shared.health.0
    }

    /// The per-member service maker.
    pub fn get_ref(&self) -> &M {
        &self.shared.make
    }
}

impl<M: MakeMember> Clone for Balance<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: MakeMember> std::fmt::Debug for Balance<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("members", &self.shared.health.0.members())
            .finish_non_exhaustive()
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

/// The balancer's handle on the health state (cheap to clone: one pointer): what the request
/// path reads of it and reports to it. The unary driver sees it through the [`Health`] trait.
#[derive(Clone, Debug)]
pub(crate) struct BalanceHealth(HealthChecker);

/// The unary driver's port: the driver names only the `Health` trait, this is where the
/// checker meets it.
impl Health for BalanceHealth {
    fn config(&self) -> &Config {
        self.0.config()
    }

    fn entries(&self) -> Arc<Vec<Arc<MemberEntry>>> {
        self.0.entries()
    }

    fn leader_entry(&self) -> Option<Arc<MemberEntry>> {
        self.0.leader_entry()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.changes()
    }

    fn budget(&self) -> &RetryBudget {
        self.0.budget()
    }

    fn metrics(&self) -> &crate::metrics::Checker {
        self.0.metrics()
    }

    fn count_retry(&self) {
        self.0.count_retry()
    }

    fn count_hedge(&self) {
        self.0.count_hedge()
    }
}
