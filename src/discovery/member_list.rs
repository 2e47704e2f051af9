//! The `MemberList` driver: asks the cluster which members it has and applies [`reconcile`].
//!
//! An [`Ask`] of the one discovery driver (`driver.rs`, which decides when): the decision is
//! [`reconcile`]; this file only picks a member to ask, learns the etcd ids of members not yet known (a seed behind a
//! proxy is the same member as the URL the cluster advertises for it), applies the changes and
//! warns once about members that never pass admission.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rand::seq::SliceRandom;
use tonic::transport::Channel;

use super::driver::{Ask, Pass};
use super::reconcile::{reconcile, Change, Known, Listed};
use super::Origin;
use super::{Cluster, WeakCluster};
use crate::event::{EventKind, HealthEvent};
use crate::health::{Outcome, Status};
use crate::member::{MemberEntry, ProbeReport};
use crate::proto::etcdserverpb::{cluster_client::ClusterClient, MemberListRequest};
use crate::timing::wall_now;

/// Passes asked for by errors come no closer together than this.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Starts the `MemberList` driver: a pass at start (once there is a member), every
/// `discovery.interval`, and soon (no sooner than [`MIN_GAP`] after the last) after an error
/// that suggests the membership changed.
pub(crate) async fn run(weak: WeakCluster) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let config = checker.config().discovery.clone();
    if !config.member_list {
        return;
    }
    let (wanted, _) = checker.discovery_wanted();
    drop(checker);
    let ask = Driver {
        timeout: config.timeout,
        ..Driver::default()
    };
    super::driver::run(weak, ask, config.interval, Some((wanted, MIN_GAP))).await;
}

impl Ask for Driver {
    async fn pass(&mut self, weak: &WeakCluster) -> Pass {
        let Some(checker) = weak.upgrade() else {
            return Pass::Stop;
        };
        if checker.entries().is_empty() {
            // The drop-in adds its endpoints on the first request; a seed added wakes us.
            return Pass::Idle;
        }
        let timeout = self.timeout;
        Driver::pass(self, &*checker, timeout).await;
        Pass::Asked
    }

    fn wanted_by(&self, event: &HealthEvent) -> bool {
        let wanted = suggests_change(&event.kind);
        if wanted {
            tracing::debug!(member = %event.member, "membership may have changed: MemberList soon");
        }
        wanted
    }
}

/// An ejection for connection failures (the member may be gone for good), or every member
/// unhealthy (the cluster may have moved).
fn suggests_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::StatusChanged(t) => {
            t.to == Status::Unhealthy && t.outcome == Outcome::TcpFailure
        }
        EventKind::AllUnhealthy => true,
        _ => false,
    }
}

/// What the driver keeps between passes.
#[derive(Debug, Default)]
struct Driver {
    /// Channels to members, by index, reused across passes until a request on one goes
    /// unanswered: a connection that lived through a fault may stay silent after it (see
    /// `renew` in `probe/scheduler.rs`), so the next ask dials afresh.
    channels: HashMap<usize, Channel>,
    /// URLs already warned about.
    warned: HashSet<String>,
    /// `discovery.timeout`: how long a member has to answer.
    timeout: Duration,
}

impl Driver {
    fn channel(&mut self, checker: &dyn Cluster, entry: &MemberEntry) -> Option<Channel> {
        let index = entry.member().index();
        if let Some(c) = self.channels.get(&index) {
            return Some(c.clone());
        }
        let channel = crate::probe::probe_channel(checker, entry).ok()?;
        self.channels.insert(index, channel.clone());
        Some(channel)
    }

    /// Drops the channel to member `index` if a request on it went unanswered in time (see
    /// [`channels`](Self::channels)).
    fn forget_if_unanswered(&mut self, index: usize, status: &tonic::Status) {
        if status.code() == tonic::Code::DeadlineExceeded {
            self.channels.remove(&index);
        }
    }

    async fn pass(&mut self, checker: &dyn Cluster, timeout: Duration) {
        let entries = checker.entries();
        let live: HashSet<usize> = entries.iter().map(|e| e.member().index()).collect();
        self.channels.retain(|i, _| live.contains(i));
        self.learn_ids(checker, &entries, timeout).await;
        // Healthy members first, in random order; then the others (every member unhealthy is
        // when the list matters most).
        let mut order: Vec<Arc<MemberEntry>> = entries.iter().cloned().collect();
        order.shuffle(&mut rand::rng());
        order.sort_by_key(|e| !e.is_healthy());
        let mut answer = None;
        for entry in order.iter().filter(|e| !e.is_pending()) {
            let Some(channel) = self.channel(checker, entry) else {
                continue;
            };
            match ask(channel, timeout).await {
                Ok((cluster_id, listed)) => {
                    let want = checker.cluster_id(Some(cluster_id));
                    if want.is_some_and(|w| w != cluster_id) {
                        tracing::warn!(member = %entry.member(), cluster = %format_args!("{cluster_id:x}"), "MemberList from a member of another cluster ignored");
                        continue;
                    }
                    answer = Some((entry.member().clone(), listed));
                    break;
                }
                Err(status) => {
                    tracing::debug!(member = %entry.member(), %status, "MemberList failed");
                    self.forget_if_unanswered(entry.member().index(), &status);
                }
            }
        }
        let Some((from, listed)) = answer else {
            tracing::debug!("no member answered MemberList; membership unchanged");
            return;
        };
        // Members added meanwhile (etcd-client inserts its endpoints one by one) must be known
        // by id too, or a seed behind a proxy would be added again under its advertised URL.
        let entries = checker.entries();
        self.learn_ids(checker, &entries, timeout).await;
        let ids = checker.member_ids();
        let seeds = checker.seeds();
        let known: Vec<Known> = entries
            .iter()
            .map(|e| Known {
                uri: e.member().uri().clone(),
                id: ids.get(&e.member().index()).copied(),
                from_list: matches!(e.origin(), Origin::MemberList { .. })
                    && !seeds
                        .iter()
                        .any(|s| crate::config::same_endpoint(s, e.member().uri())),
            })
            .collect();
        let scheme = seeds
            .first()
            .and_then(|s| s.scheme_str())
            .map(str::to_owned);
        let changes = reconcile(&known, &listed, scheme.as_deref());
        tracing::debug!(from = %from, listed = listed.len(), changes = changes.len(), "MemberList pass");
        for change in changes {
            self.apply(checker, &entries, change);
        }
        self.warn_unadmitted(checker);
    }

    /// Asks `Status` of members whose etcd id is not known yet, so a seed and the URL the
    /// cluster advertises for the same member are recognised as one.
    async fn learn_ids(
        &mut self,
        checker: &dyn Cluster,
        entries: &[Arc<MemberEntry>],
        timeout: Duration,
    ) {
        let ids = checker.member_ids();
        let asks: Vec<_> =
            entries
                .iter()
                .filter(|e| !ids.contains_key(&e.member().index()))
                .filter_map(|e| Some((e.member().index(), self.channel(checker, e)?)))
                .map(|(index, channel)| async move {
                    (index, crate::leader::ask(channel, timeout).await)
                })
                .collect();
        for (index, report) in futures_util::future::join_all(asks).await {
            match report {
                Ok(report) => checker.note_member_id(index, report.id),
                Err(status) => self.forget_if_unanswered(index, &status),
            }
        }
    }

    fn apply(&mut self, checker: &dyn Cluster, entries: &[Arc<MemberEntry>], change: Change) {
        match change {
            Change::Add {
                uri,
                id,
                name,
                reason,
            } => {
                if let Ok(member) =
                    checker.add_found(uri, Origin::MemberList { name, id }, true, &reason)
                {
                    checker.note_member_id(member.index(), id);
                }
            }
            Change::Remove { uri, reason } => {
                checker.drop_member(&uri, &reason);
            }
            Change::TooMany { skipped, listed } => {
                tracing::warn!(
                    listed,
                    skipped = skipped.len(),
                    first_skipped = %skipped.first().map(ToString::to_string).unwrap_or_default(),
                    max = super::reconcile::MAX_MEMBERS,
                    "MemberList listed more members than the health state takes; the rest are \
                     not added"
                );
            }
            Change::Exclude { uri, reason } => {
                let Some(entry) = entries
                    .iter()
                    .find(|e| crate::config::same_endpoint(e.member().uri(), &uri))
                else {
                    return;
                };
                if entry.is_healthy() {
                    tracing::warn!(member = %entry.member(), %reason, "seed taken out of rotation");
                    checker.record_probe(
                        entry,
                        ProbeReport {
                            outcome: Outcome::Failure,
                            detail: format!("MemberList: {reason}"),
                            elapsed: Duration::ZERO,
                            at: wall_now(),
                        },
                    );
                }
            }
        }
    }

    /// Warns once per URL about a member found a while ago that never passed admission:
    /// usually an advertised URL not reachable from here (proxy, NAT).
    fn warn_unadmitted(&mut self, checker: &dyn Cluster) {
        let now = crate::timing::now();
        let entries = checker.entries();
        // Only members still here: the set shrinks as they leave.
        self.warned
            .retain(|url| entries.iter().any(|e| e.member().uri().to_string() == *url));
        for entry in entries.iter() {
            if !entry.is_pending() || entry.failed_probes() < 3 {
                continue;
            }
            if now.saturating_duration_since(entry.added()) < Duration::from_secs(5) {
                continue;
            }
            let url = entry.member().uri().to_string();
            if self.warned.insert(url.clone()) {
                let detail = entry
                    .last_probe()
                    .map_or_else(|| "never probed".to_owned(), |p| p.detail);
                tracing::warn!(
                    member = %entry.member(),
                    origin = %entry.origin(),
                    last_probe = %detail,
                    "member found by MemberList does not answer at the URL it advertises: it gets \
                     no traffic (behind a proxy or NAT? the seeds keep serving; set \
                     discovery.member_list = false to stop looking)"
                );
            }
        }
    }
}

/// One `MemberList` call: the cluster id of the answer and the members listed.
async fn ask(channel: Channel, timeout: Duration) -> Result<(u64, Vec<Listed>), tonic::Status> {
    let mut client = ClusterClient::new(crate::grpc::Sanitize::new(channel));
    let call = client.member_list(MemberListRequest {
        linearizable: false,
    });
    let resp = match tokio::time::timeout(timeout, call).await {
        Err(_) => {
            return Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            )))
        }
        Ok(r) => r?.into_inner(),
    };
    let cluster_id = resp.header.map_or(0, |h| h.cluster_id);
    let listed = resp
        .members
        .into_iter()
        .map(|m| Listed {
            id: m.id,
            client_urls: m
                .client_ur_ls
                .iter()
                .filter_map(|u| match crate::config::parse_endpoints(&[u]) {
                    Ok(mut e) => Some(e.remove(0).uri()),
                    Err(error) => {
                        tracing::debug!(member = %m.name, url = %crate::config::redact_userinfo(u), %error, "advertised client URL ignored");
                        None
                    }
                })
                .collect::<Vec<Uri>>(),
            name: m.name,
            is_learner: m.is_learner,
        })
        .collect();
    Ok((cluster_id, listed))
}
