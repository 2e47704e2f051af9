//! The application's own member source: a [`MemberSource`] asked, like `MemberList`, which
//! members there are.
//!
//! Why: a deployment may know its members from somewhere the crate cannot look (a service
//! registry, a Kubernetes `Endpoints` object, a config service). The driver is the same shape
//! as the built-in sources: ask at start and every `discovery.interval`, add the members
//! listed (out of rotation until a probe succeeds and their `Status` shows this cluster's id
//! and leader, as members found by `MemberList` are), drop those it listed before and no
//! longer lists. It never drops a seed or a member another source found, and a failed ask
//! changes nothing.

use std::collections::HashSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::Uri;
use rand::Rng as _;
use tokio::time::Instant;

use super::Origin;
use crate::checker::{HealthChecker, WeakChecker};

/// A source of members beside the built-in `MemberList`, DNS and static lists.
///
/// Set it with [`HealthCheckerBuilder::member_source`](crate::HealthCheckerBuilder::member_source).
/// It is asked at start and every `discovery.interval` (0: at start only), each ask bounded
/// by `discovery.timeout` (the interval is jittered by ±10 %). The list it returns is the whole truth *for this source*: members
/// it listed before and no longer lists are dropped (requests in flight to them finish);
/// seeds and members found by `MemberList` or DNS are left alone (turn `MemberList` off with
/// `discovery.member_list = false` if this source should be the only one). An `Err`, no
/// answer in time, or a panic changes nothing (a warning is logged).
///
/// Members it adds enter *pending admission*: out of rotation until a probe succeeds and
/// their `Maintenance/Status` shows this cluster's id and leader. Their
/// [`Origin`] is [`Origin::Custom`] with the source's [`name`](Self::name).
///
/// # Example
///
/// Members read from a registry of the application's own (here, a fixed list):
///
/// ```
/// use std::sync::Arc;
///
/// use etcd_health::discovery::{BoxError, BoxFuture, MemberSource};
/// use http::Uri;
///
/// #[derive(Debug)]
/// struct Registry(Vec<Uri>);
///
/// impl MemberSource for Registry {
///     fn name(&self) -> &str {
///         "registry"
///     }
///     fn members(&self) -> BoxFuture<'_, Result<Vec<Uri>, BoxError>> {
///         Box::pin(async move { Ok(self.0.clone()) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), etcd_health::Error> {
/// let registry = Registry(vec![Uri::from_static("http://127.0.0.1:22379")]);
/// let checker = etcd_health::HealthChecker::builder(etcd_health::Config::default())
///     .member_source(Arc::new(registry))
///     .build(&["http://127.0.0.1:2379"])?;
/// # drop(checker);
/// # Ok(())
/// # }
/// ```
pub trait MemberSource: Send + Sync + fmt::Debug {
    /// A short name for the source, shown in its members' [`Origin`], events and logs.
    fn name(&self) -> &str;

    /// The client URLs (`http://host:port` or `https://host:port`) of the members now.
    fn members(&self) -> BoxFuture<'_, Result<Vec<Uri>, BoxError>>;
}

/// The error a [`MemberSource`] may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The driver: a pass at start and every `discovery.interval`.
pub(crate) async fn run(weak: WeakChecker, source: Arc<dyn MemberSource>) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let config = checker.config().discovery.clone();
    drop(checker);
    let name = source.name().to_owned();
    tracing::debug!(source = %name, "member source started");
    loop {
        let ask = AssertUnwindSafe(source.members()).catch_unwind();
        let asked = match tokio::time::timeout(config.timeout, ask).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Ok(Err("the member source panicked".into())),
            Err(elapsed) => Err(elapsed),
        };
        let Some(checker) = weak.upgrade() else {
            return;
        };
        match asked {
            Ok(Ok(listed)) => apply(&checker, &name, listed),
            Ok(Err(error)) => {
                tracing::warn!(source = %name, %error, "member source failed; members unchanged")
            }
            Err(_) => tracing::warn!(
                source = %name,
                timeout = ?config.timeout,
                "member source gave no answer in time; members unchanged"
            ),
        }
        drop(checker);
        if config.interval.is_zero() {
            return;
        }
        // Jittered (±10 %), so that many clients do not ask a shared registry in step.
        let unit: f64 = rand::rng().random_range(0.9..1.1);
        tokio::time::sleep_until(Instant::now() + config.interval.mul_f64(unit)).await;
    }
}

/// Adds the members `listed` that are not present, drops those this source added and no
/// longer lists.
fn apply(checker: &HealthChecker, name: &str, listed: Vec<Uri>) {
    let ours = |origin: &Origin| matches!(origin, Origin::Custom { source } if source == name);
    let mut keep = HashSet::new();
    for uri in listed {
        let uri = crate::config::without_userinfo(&uri).unwrap_or(uri);
        if uri.authority().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            tracing::warn!(source = %name, %uri, "member source listed a URL that is not http(s)://host:port; ignored");
            continue;
        }
        let reason = format!("listed by member source {name}");
        let origin = Origin::Custom {
            source: name.to_owned(),
        };
        match checker.add_found(uri.clone(), origin, true, &reason) {
            Ok(member) | Err(member) => {
                keep.insert(member.index());
            }
        }
    }
    for entry in checker.entries().iter() {
        if ours(entry.origin()) && !keep.contains(&entry.member().index()) {
            checker.drop_member(
                entry.member().uri(),
                &format!("no longer listed by member source {name}"),
            );
        }
    }
}
