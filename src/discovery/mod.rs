//! Following the cluster: members found through `Cluster/MemberList` and DNS.
//!
//! Why: a client that knows only the endpoints it was given loses the cluster when those
//! members go, although the quorum lives on elsewhere; adding, removing or replacing members
//! then needs a client restart. Two sources of members run beside the probes:
//!
//! - **`MemberList`** (`discovery.member_list`, on by default): at start, every
//!   `discovery.interval`, and at once (at most once a second) when a member is ejected for
//!   connection failures or every member is unhealthy, a healthy member is asked for the
//!   member list. New voting, started members enter *pending admission*: out of rotation until
//!   a probe succeeds and their `Status` shows this cluster's id and leader (the same path that
//!   re-admits a member coming back). Members no longer listed (or now learners) are dropped;
//!   requests in flight to them finish. The decision is a pure function of the seeds, the
//!   members found so far and the answer.
//! - **DNS** (`discovery.dns_interval`): an endpoint given as a host name is resolved to all
//!   its addresses, each a member; the name itself serves until the first resolution succeeds.
//!   Names are resolved again every `dns_interval`. The [`Resolve`](crate::resolve::Resolve)
//!   trait lets tests (or a custom resolver) supply the answers.
//! - **DNS SRV** (`discovery.srv`, the `dns-srv` feature): the targets of
//!   `_etcd-client-ssl._tcp.<domain>` (`https`) and `_etcd-client._tcp.<domain>` (`http`), as
//!   etcdctl's `--discovery-srv` finds them, each resolved to its addresses (each a member,
//!   taking requests at once like a seed's). Asked at start and every `discovery.srv.interval`;
//!   members whose record or address went are dropped, a failed lookup changes nothing.
//! - **Your own** [`MemberSource`] (set on the
//!   [`HealthCheckerBuilder`](crate::start::HealthCheckerBuilder)): asked at start and every
//!   `discovery.interval`; the members it lists are added (pending admission, as above), those
//!   it no longer lists dropped.
//!
//! Each source is only its question (an `Ask`); one driver (`driver.rs`) asks them all on one
//! pure, jittered `Cadence` (at start, every interval, sooner when asked, never closer than a
//! gap), so their timing is written and tested once.
//!
//! The endpoints the caller gave are *seeds* and are never dropped by discovery: behind a
//! proxy or NAT the advertised URLs may be unreachable from here, and then the members found
//! are simply never admitted (a warning says so, once per URL), while the seeds keep working.
//! Go's clientv3 `AutoSyncInterval` does the same job by *replacing* its endpoints with the
//! member list, which is why Kubernetes warns against it behind load balancers; keeping the
//! seeds avoids that trap.

mod dns;
mod driver;
mod member_list;
mod reconcile;
mod source;
#[cfg(feature = "dns-srv")]
mod srv;

use crate::member::Origin;
pub use source::{BoxError, MemberSource};

use std::sync::{Arc, Weak};

use http::Uri;
use tokio::sync::{broadcast, Notify};

use crate::event::HealthEvent;
use crate::member::Member;

/// What discovery needs of the health state, beyond what a probe does (a `MemberList` pass
/// dials members and records probe reports): the one port through which this room reads and
/// changes the membership. The health state implements it; this room never names the
/// checker, so the checker may start discovery without an import cycle.
pub(crate) trait Cluster: crate::probe::Cluster {
    /// A stream of state changes.
    fn subscribe(&self) -> broadcast::Receiver<HealthEvent>;
    /// The discovery tasks' wake-ups: (`MemberList`, DNS).
    fn discovery_wanted(&self) -> (Arc<Notify>, Arc<Notify>);
    /// The endpoints the caller gave.
    fn seeds(&self) -> Vec<Uri>;
    /// The resolver for endpoints given as host names.
    fn resolver(&self) -> Arc<dyn crate::resolve::Resolve>;
    /// Adds a member found by discovery unless its URL is present (then `Err` with the member
    /// there); a `pending` one starts out of rotation.
    fn add_found(
        &self,
        uri: Uri,
        origin: Origin,
        pending: bool,
        reason: &str,
    ) -> Result<Member, Member>;
    /// Drops the member reached at `uri`, if present.
    fn drop_member(&self, uri: &Uri, reason: &str) -> Option<Member>;
    /// Records a member's etcd id learned by discovery.
    fn note_member_id(&self, index: usize, id: u64);
    /// The cluster the stack follows, if known; `answered` is adopted while none is.
    fn cluster_id(&self, answered: Option<u64>) -> Option<u64>;
}

/// The health state as the discovery tasks hold it: they stop once it no longer upgrades.
pub(crate) type WeakCluster = Weak<dyn Cluster>;

/// Starts the discovery tasks for `checker` on `runtime` (with the application's `source`,
/// if any); each stops when the health state goes.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    checker: WeakCluster,
    source: Option<Arc<dyn MemberSource>>,
) {
    runtime.spawn(member_list::run(checker.clone()));
    if let Some(source) = source {
        runtime.spawn(source::run(checker.clone(), source));
    }
    #[cfg(feature = "dns-srv")]
    if checker
        .upgrade()
        .is_some_and(|c| c.config().discovery.srv.is_some())
    {
        runtime.spawn(srv::run(checker.clone()));
    }
    runtime.spawn(dns::run(checker));
}
