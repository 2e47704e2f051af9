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
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::Uri;

use super::driver::{Ask, Pass};
use super::reconcile::MAX_MEMBERS;
use super::Origin;
use super::{Cluster, WeakCluster};

/// A source of members beside the built-in `MemberList`, DNS and static lists.
///
/// Set it with [`HealthCheckerBuilder::member_source`](crate::extend::HealthCheckerBuilder::member_source).
/// It is asked at start and every `discovery.interval` (0: at start only), each ask bounded
/// by `discovery.timeout` (the interval is jittered: up to a fifth taken off). The list it returns is the whole truth *for this source*: members
/// it listed before and no longer lists are dropped (requests in flight to them finish);
/// seeds and members found by `MemberList` or DNS are left alone (turn `MemberList` off with
/// `discovery.member_list = false` if this source should be the only one). An `Err`, no
/// answer in time, or a panic changes nothing (a warning is logged).
///
/// Additions stop at 32 members in all (the cap `MemberList` discovery has too; the rest are
/// reported with a warning), so a broken source cannot grow the health state without bound.
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
/// use etcd_health::extend::{BoxError, BoxFuture, MemberSource};
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

/// Starts the driver: a pass at start and every `discovery.interval` (jittered, so that many
/// clients do not ask a shared registry in step).
pub(crate) async fn run(weak: WeakCluster, source: Arc<dyn MemberSource>) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let config = checker.config().discovery.clone();
    drop(checker);
    let name = source.name().to_owned();
    tracing::debug!(source = %name, "member source started");
    let ask = Source {
        source,
        name,
        timeout: config.timeout,
    };
    super::driver::run(weak, ask, config.interval, None).await;
}

/// The question to the application's source.
struct Source {
    source: Arc<dyn MemberSource>,
    name: String,
    /// `discovery.timeout`: how long the source may take.
    timeout: Duration,
}

impl Ask for Source {
    async fn pass(&mut self, weak: &WeakCluster) -> Pass {
        let ask = AssertUnwindSafe(self.source.members()).catch_unwind();
        let asked = match tokio::time::timeout(self.timeout, ask).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Ok(Err("the member source panicked".into())),
            Err(elapsed) => Err(elapsed),
        };
        let Some(checker) = weak.upgrade() else {
            return Pass::Stop;
        };
        let name = &self.name;
        match asked {
            Ok(Ok(listed)) => apply(&*checker, name, listed),
            Ok(Err(error)) => {
                tracing::warn!(source = %name, %error, "member source failed; members unchanged")
            }
            Err(_) => tracing::warn!(
                source = %name,
                timeout = ?self.timeout,
                "member source gave no answer in time; members unchanged"
            ),
        }
        Pass::Asked
    }
}

/// Adds the members `listed` that are not present, drops those this source added and no
/// longer lists.
fn apply(checker: &dyn Cluster, name: &str, listed: Vec<Uri>) {
    let ours = |origin: &Origin| matches!(origin, Origin::Custom { source } if source == name);
    let mut keep = HashSet::new();
    let mut room = MAX_MEMBERS.saturating_sub(checker.entries().len());
    let mut skipped = 0usize;
    for uri in listed {
        let uri = crate::config::without_userinfo(&uri).unwrap_or(uri);
        if uri.authority().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            tracing::warn!(source = %name, %uri, "member source listed a URL that is not http(s)://host:port; ignored");
            continue;
        }
        let present = checker
            .entries()
            .iter()
            .map(|e| e.member().clone())
            .find(|m| crate::config::same_endpoint(m.uri(), &uri));
        if let Some(member) = present {
            keep.insert(member.index());
            continue;
        }
        if room == 0 {
            skipped += 1;
            continue;
        }
        room -= 1;
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
    if skipped > 0 {
        tracing::warn!(
            source = %name,
            skipped,
            max = MAX_MEMBERS,
            "member source listed more members than the health state takes; the rest are not added"
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    use crate::checker::HealthChecker;
    use crate::config::Config;
    use crate::event::EventKind;

    fn uri(port: u16) -> Uri {
        format!("http://127.0.0.1:{port}").parse().unwrap()
    }

    /// What the source lists is added (up to the cap), what it stops listing dropped; seeds
    /// and URLs that are not `http(s)://host:port` are left alone.
    #[tokio::test]
    async fn apply_adds_drops_and_caps() {
        let mut config = Config::default();
        config.discovery.member_list = false;
        let checker = HealthChecker::with_uris([uri(1)], config).unwrap();
        let count = |name: &str| {
            checker
                .snapshot()
                .iter()
                .filter(|m| matches!(&m.origin, Origin::Custom { source } if source == name))
                .count()
        };
        // The seed listed too stays a seed; a bad URL is skipped.
        let mut listed = vec![uri(1), "ftp://127.0.0.1:7".parse().unwrap()];
        listed.extend((2..50).map(uri));
        apply(&*checker.discovery(), "reg", listed);
        assert_eq!(checker.members().len(), MAX_MEMBERS);
        assert_eq!(count("reg"), MAX_MEMBERS - 1);
        assert!(checker
            .snapshot()
            .iter()
            .all(|m| m.origin == Origin::Seed || m.status == crate::health::Status::Unhealthy));

        // Another source's members are not this one's to drop.
        apply(&*checker.discovery(), "other", vec![uri(1)]);
        assert_eq!(count("reg"), MAX_MEMBERS - 1);

        // Listing two: the rest of its members go, the seed stays.
        apply(&*checker.discovery(), "reg", vec![uri(2), uri(3)]);
        assert_eq!(count("reg"), 2);
        assert_eq!(checker.members().len(), 3);
        apply(&*checker.discovery(), "reg", Vec::new());
        assert_eq!(checker.members().len(), 1);
        assert_eq!(checker.members()[0].uri(), &uri(1));
    }

    /// A registry answering from a script, one answer per ask (the last repeats), and
    /// noting when it was asked.
    #[derive(Debug)]
    struct Scripted {
        answers: Vec<Result<Vec<Uri>, &'static str>>,
        asked: std::sync::Mutex<Vec<Instant>>,
    }

    impl MemberSource for Scripted {
        fn name(&self) -> &str {
            "registry"
        }

        fn members(&self) -> BoxFuture<'_, Result<Vec<Uri>, BoxError>> {
            let mut asked = self.asked.lock().unwrap();
            asked.push(Instant::now());
            let answer = self.answers[(asked.len() - 1).min(self.answers.len() - 1)].clone();
            Box::pin(async move { answer.map_err(Into::into) })
        }
    }

    /// Every member down, as its probe sees it (no I/O).
    #[derive(Debug)]
    struct Down;

    impl crate::probe::Probe for Down {
        fn probe<'a>(
            &'a self,
            _: crate::probe::ProbeTarget<'a>,
        ) -> crate::probe::BoxFuture<'a, crate::probe::Finding> {
            Box::pin(async { crate::probe::Finding::failure("down") })
        }
    }

    /// The driver on paused time, every 10 s: a member the source adds appears at the next
    /// ask (8-10 s after the last, jittered), failed asks keep the last good set, and a member
    /// no longer listed goes at the ask that stops listing it.
    #[tokio::test(start_paused = true)]
    async fn the_driver_follows_the_source_every_interval_and_keeps_the_members_on_failures() {
        let mut config = Config::default();
        config.discovery.member_list = false;
        config.discovery.interval = Duration::from_secs(10);
        config.leader.interval = Duration::ZERO;
        config.leader.timeout = Duration::from_millis(100);
        let source = Arc::new(Scripted {
            answers: vec![
                Ok(vec![uri(2)]),
                Ok(vec![uri(2), uri(3)]),
                Err("registry unavailable"),
                Err("registry unavailable"),
                Ok(vec![uri(3)]),
            ],
            asked: std::sync::Mutex::default(),
        });
        let checker = HealthChecker::builder(config)
            .probe(Arc::new(Down))
            .member_source(source.clone())
            .build(&["http://127.0.0.1:1"])
            .expect("checker");
        // What changed, and when (on paused time a task wakes at the very instant).
        let mut events = checker.subscribe();
        let changes = tokio::spawn(async move {
            let mut changes = Vec::new();
            while let Ok(event) = events.recv().await {
                let what = match event.kind {
                    EventKind::Added { .. } => "added",
                    EventKind::Removed { .. } => "removed",
                    _ => continue,
                };
                changes.push((Instant::now(), what, event.member.uri().clone()));
            }
            changes
        });
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(45)).await;
        let asked = source.asked.lock().unwrap().clone();
        assert!(asked.len() >= 5, "asked {} times in 45 s", asked.len());
        assert_eq!(asked[0], t0, "asked at start");
        for pair in asked.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(8000) && gap <= Duration::from_secs(10),
                "asked again after {gap:?}"
            );
        }
        let members: Vec<Uri> = checker
            .members()
            .into_iter()
            .map(|m| m.uri().clone())
            .collect();
        drop(checker);
        let changes = changes.await.expect("collector");
        assert_eq!(
            changes,
            vec![
                (asked[0], "added", uri(2)),
                (asked[1], "added", uri(3)),
                (asked[4], "removed", uri(2)),
            ],
            "each change at the ask that listed it; none at the failed ones"
        );
        assert_eq!(members, vec![uri(1), uri(3)]);
    }
}
