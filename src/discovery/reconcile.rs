//! The pure decision: which members a `MemberList` answer adds and drops.
//!
//! Why pure: this is where a client could talk itself out of a working cluster (drop the
//! seeds because the cluster advertises other URLs, admit a learner, keep a removed member).
//! Taking the current members and the answer and returning changes with reasons keeps every
//! such rule a unit test away.
//!
//! Rules:
//! - A listed member that is started (has a name and client URLs) and votes (not a learner),
//!   and that no current member already reaches (same etcd id, or one of its client URLs), is
//!   added, at its first client URL of the seeds' scheme.
//! - A member found by `MemberList` earlier is dropped when the answer no longer lists it,
//!   lists it as a learner or not started, or when it turns out to be a seed's member under
//!   another URL (the seed wins).
//! - Seeds (and the addresses of seeds given as host names) are never dropped. A seed listed as
//!   a learner is *excluded*: kept, but out of rotation.
//! - Additions stop at [`MAX_MEMBERS`] members in all: an answer listing more (a hostile or
//!   broken member, or a cluster far past any sane size) is reported ([`Change::TooMany`]), not
//!   followed, so it cannot grow the health state (a probe, a channel and a connection per
//!   member) without bound.

use std::collections::HashSet;

use http::Uri;

use crate::config::same_endpoint;

/// The most members `MemberList` may bring the health state to. etcd advises 3, 5 or 7 voting
/// members and Kubernetes runs at most 7 or 9; 32 leaves room for any real cluster plus the
/// seeds and host-name addresses that reach it twice over.
pub(crate) const MAX_MEMBERS: usize = 32;

/// One member of the health state, as the reconciliation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    /// Its URL.
    pub(crate) uri: Uri,
    /// Its etcd id, once it reported one.
    pub(crate) id: Option<u64>,
    /// Found by an earlier `MemberList` (only those may be dropped).
    pub(crate) from_list: bool,
}

/// One member of a `MemberList` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Its etcd id.
    pub(crate) id: u64,
    /// Its name; empty while it has not started.
    pub(crate) name: String,
    /// The client URLs it advertises (those that parse).
    pub(crate) client_urls: Vec<Uri>,
    /// Whether it is a learner.
    pub(crate) is_learner: bool,
}

impl Listed {
    /// Why it may not take requests, if so.
    fn unfit(&self) -> Option<&'static str> {
        if self.is_learner {
            Some("a learner (takes no requests until promoted)")
        } else if self.name.is_empty() || self.client_urls.is_empty() {
            Some("not started yet")
        } else {
            None
        }
    }

    /// Whether `known` is this member: by etcd id when `known` reported one (a URL may have
    /// passed to a new member that replaced the old one), else by URL.
    fn reached_by(&self, known: &Known) -> bool {
        match known.id {
            Some(id) => id == self.id,
            None => self
                .client_urls
                .iter()
                .any(|u| same_endpoint(u, &known.uri)),
        }
    }
}

/// What to do with one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Add this member, pending admission.
    Add {
        /// Where to reach it.
        uri: Uri,
        /// Its etcd id.
        id: u64,
        /// Its etcd name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Drop this member found by discovery.
    Remove {
        /// Its URL.
        uri: Uri,
        /// Why.
        reason: String,
    },
    /// Keep this seed, but out of rotation.
    Exclude {
        /// Its URL.
        uri: Uri,
        /// Why.
        reason: String,
    },
    /// The answer listed more new members than [`MAX_MEMBERS`] leaves room for: these were
    /// not added.
    TooMany {
        /// The members not added (their URLs).
        skipped: Vec<Uri>,
        /// How many members the answer listed.
        listed: usize,
    },
}

/// The changes that bring `known` in line with `listed`. `scheme` is the seeds' scheme
/// (`http`/`https`), preferred among a member's client URLs. An empty answer changes nothing.
pub(crate) fn reconcile(known: &[Known], listed: &[Listed], scheme: Option<&str>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut adds = Vec::new();
    if listed.is_empty() {
        return changes;
    }
    let mut dropped: HashSet<usize> = HashSet::new();
    for l in listed {
        let reaching: Vec<usize> = (0..known.len())
            .filter(|&i| l.reached_by(&known[i]))
            .collect();
        if let Some(why) = l.unfit() {
            for &i in &reaching {
                let k = &known[i];
                let reason = format!("member {} ({:x}) is {why}", l.name, l.id);
                if k.from_list {
                    dropped.insert(i);
                    changes.push(Change::Remove {
                        uri: k.uri.clone(),
                        reason,
                    });
                } else {
                    changes.push(Change::Exclude {
                        uri: k.uri.clone(),
                        reason,
                    });
                }
            }
            continue;
        }
        // The same member under two URLs: a seed wins over a listed URL.
        if let Some(&seed) = reaching.iter().find(|&&i| !known[i].from_list) {
            for &i in reaching.iter().filter(|&&i| known[i].from_list) {
                dropped.insert(i);
                changes.push(Change::Remove {
                    uri: known[i].uri.clone(),
                    reason: format!(
                        "member {} ({:x}) is reached through seed {} already",
                        l.name, l.id, known[seed].uri
                    ),
                });
            }
            continue;
        }
        if !reaching.is_empty() {
            continue;
        }
        let uri = l
            .client_urls
            .iter()
            .find(|u| scheme.is_none() || u.scheme_str() == scheme)
            .unwrap_or(&l.client_urls[0]);
        adds.push(Change::Add {
            uri: uri.clone(),
            id: l.id,
            name: l.name.clone(),
            reason: format!("listed by MemberList as {} ({:x})", l.name, l.id),
        });
    }
    for (i, k) in known.iter().enumerate() {
        if k.from_list && !dropped.contains(&i) && !listed.iter().any(|l| l.reached_by(k)) {
            changes.push(Change::Remove {
                uri: k.uri.clone(),
                reason: "no longer listed by MemberList (removed from the cluster)".to_owned(),
            });
            dropped.insert(i);
        }
    }
    // Drops first: a URL may pass from a removed member to the one that replaced it. A URL
    // still held by a member that stays (a seed with another id) is not added twice.
    adds.retain(|c| {
        let Change::Add { uri, .. } = c else {
            return false;
        };
        !known
            .iter()
            .enumerate()
            .any(|(i, k)| !dropped.contains(&i) && same_endpoint(&k.uri, uri))
    });
    let room = MAX_MEMBERS.saturating_sub(known.len() - dropped.len());
    let over: Vec<Change> = adds.split_off(room.min(adds.len()));
    changes.extend(adds);
    if !over.is_empty() {
        changes.push(Change::TooMany {
            skipped: over
                .into_iter()
                .filter_map(|c| match c {
                    Change::Add { uri, .. } => Some(uri),
                    _ => None,
                })
                .collect(),
            listed: listed.len(),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(port: u16) -> Uri {
        format!("http://127.0.0.1:{port}/").parse().unwrap()
    }

    fn seed(port: u16, id: Option<u64>) -> Known {
        Known {
            uri: uri(port),
            id,
            from_list: false,
        }
    }

    fn found(port: u16, id: Option<u64>) -> Known {
        Known {
            uri: uri(port),
            id,
            from_list: true,
        }
    }

    fn listed(id: u64, port: u16) -> Listed {
        Listed {
            id,
            name: format!("m{id}"),
            client_urls: vec![format!("http://127.0.0.1:{port}").parse().unwrap()],
            is_learner: false,
        }
    }

    fn adds(changes: &[Change]) -> Vec<Uri> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Add { uri, .. } => Some(uri.clone()),
                _ => None,
            })
            .collect()
    }

    fn removes(changes: &[Change]) -> Vec<Uri> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Remove { uri, .. } => Some(uri.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_seed_finds_its_peers() {
        let changes = reconcile(
            &[seed(1, Some(10))],
            &[listed(10, 1), listed(11, 2), listed(12, 3)],
            Some("http"),
        );
        assert_eq!(adds(&changes), vec![uri(2), uri(3)]);
        assert!(removes(&changes).is_empty());
        let Change::Add {
            id, name, reason, ..
        } = &changes[0]
        else {
            unreachable!()
        };
        assert_eq!((*id, name.as_str()), (11, "m11"));
        assert!(reason.contains("MemberList"), "{reason}");
    }

    #[test]
    fn nothing_changes_when_everything_is_known() {
        let known = [seed(1, Some(10)), found(2, Some(11)), found(3, None)];
        let list = [listed(10, 1), listed(11, 2), listed(12, 3)];
        assert_eq!(reconcile(&known, &list, Some("http")), vec![]);
    }

    #[test]
    fn seeds_are_never_dropped_even_if_unlisted() {
        // Behind a proxy: the seeds' URLs are not the advertised ones, and ids are unknown.
        let known = [seed(100, None), seed(101, None)];
        let list = [listed(10, 1), listed(11, 2)];
        let changes = reconcile(&known, &list, Some("http"));
        assert!(removes(&changes).is_empty());
        assert!(changes.iter().all(|c| matches!(c, Change::Add { .. })));
    }

    #[test]
    fn a_seed_reached_by_id_is_not_added_again() {
        // Behind a proxy, once the seeds reported their ids: nothing to add.
        let known = [seed(100, Some(10)), seed(101, Some(11))];
        let list = [listed(10, 1), listed(11, 2)];
        assert_eq!(reconcile(&known, &list, Some("http")), vec![]);
    }

    #[test]
    fn a_removed_member_is_dropped() {
        let known = [seed(1, Some(10)), found(2, Some(11)), found(4, Some(13))];
        let list = [listed(10, 1), listed(11, 2), listed(12, 3)];
        let changes = reconcile(&known, &list, Some("http"));
        assert_eq!(adds(&changes), vec![uri(3)]);
        assert_eq!(removes(&changes), vec![uri(4)]);
        assert!(
            matches!(&changes[0], Change::Remove { reason, .. } if reason.contains("no longer listed")),
            "drops come first: {changes:?}"
        );
    }

    #[test]
    fn learners_and_unstarted_members_get_no_traffic() {
        let mut learner = listed(13, 4);
        learner.is_learner = true;
        let unstarted = Listed {
            id: 14,
            name: String::new(),
            client_urls: vec![],
            is_learner: false,
        };
        let list = [listed(10, 1), learner.clone(), unstarted];
        let changes = reconcile(&[seed(1, Some(10))], &list, Some("http"));
        assert_eq!(changes, vec![]);
        // One found earlier that became a learner (demoted and re-added) is dropped.
        let changes = reconcile(&[seed(1, Some(10)), found(4, Some(13))], &list, None);
        assert_eq!(removes(&changes), vec![uri(4)]);
        assert!(matches!(&changes[0], Change::Remove { reason, .. } if reason.contains("learner")));
        // A seed that is a learner stays, excluded.
        let changes = reconcile(&[seed(1, Some(10)), seed(4, None)], &list, None);
        assert!(matches!(&changes[..], [Change::Exclude { uri: u, .. }] if *u == uri(4)));
    }

    #[test]
    fn a_found_member_that_is_a_seed_under_another_url_is_dropped() {
        let known = [seed(100, Some(10)), found(1, Some(10))];
        let changes = reconcile(&known, &[listed(10, 1)], Some("http"));
        assert_eq!(removes(&changes), vec![uri(1)]);
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn the_seeds_scheme_is_preferred() {
        let mut l = listed(11, 2);
        l.client_urls
            .insert(0, "https://10.0.0.2:2379".parse().unwrap());
        let changes = reconcile(
            &[seed(1, Some(10))],
            &[listed(10, 1), l.clone()],
            Some("http"),
        );
        assert_eq!(adds(&changes), vec![uri(2)]);
        let changes = reconcile(&[seed(1, Some(10))], &[listed(10, 1), l], Some("https"));
        assert_eq!(adds(&changes)[0].scheme_str(), Some("https"));
    }

    #[test]
    fn an_empty_answer_changes_nothing() {
        assert_eq!(
            reconcile(&[seed(1, None), found(2, Some(11))], &[], None),
            vec![]
        );
    }

    #[test]
    fn urls_match_without_path_and_host_case() {
        let a: Uri = "http://Etcd-0:2379/".parse().unwrap();
        let b: Uri = "http://etcd-0:2379".parse().unwrap();
        assert!(same_endpoint(&a, &b));
        let c: Uri = "https://etcd-0:2379".parse().unwrap();
        assert!(!same_endpoint(&a, &c));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn known() -> impl Strategy<Value = Vec<Known>> {
            prop::collection::vec((1u16..8, prop::option::of(10u64..16), any::<bool>()), 0..6)
                .prop_map(|v| {
                    let mut out: Vec<Known> = Vec::new();
                    for (port, id, from_list) in v {
                        if !out.iter().any(|k| same_endpoint(&k.uri, &uri(port))) {
                            out.push(Known {
                                uri: uri(port),
                                id,
                                from_list,
                            });
                        }
                    }
                    out
                })
        }

        fn list() -> impl Strategy<Value = Vec<Listed>> {
            prop::collection::vec((1u16..8, any::<bool>(), any::<bool>()), 0..6).prop_map(|v| {
                let mut out: Vec<Listed> = Vec::new();
                for (port, learner, started) in v {
                    let id = 10 + u64::from(port);
                    if out.iter().any(|l| l.id == id) {
                        continue;
                    }
                    let mut l = listed(id, port);
                    l.is_learner = learner;
                    if !started {
                        l.name.clear();
                        l.client_urls.clear();
                    }
                    out.push(l);
                }
                out
            })
        }

        proptest! {
            /// Seeds are never dropped, and once the changes are applied a second look at the
            /// same answer adds and drops nothing.
            #[test]
            fn seeds_stay_and_reconciling_twice_is_a_no_op(known in known(), list in list()) {
                let changes = reconcile(&known, &list, Some("http"));
                let mut next = known.clone();
                for c in &changes {
                    match c {
                        Change::Remove { uri, .. } => {
                            let k = next.iter().find(|k| same_endpoint(&k.uri, uri)).unwrap();
                            prop_assert!(k.from_list, "a seed was dropped: {:?}", c);
                            next.retain(|k| !same_endpoint(&k.uri, uri));
                        }
                        Change::Add { uri, id, .. } => {
                            prop_assert!(!next.iter().any(|k| same_endpoint(&k.uri, uri)));
                            next.push(Known { uri: uri.clone(), id: Some(*id), from_list: true });
                        }
                        Change::Exclude { .. } | Change::TooMany { .. } => {}
                    }
                }
                let again = reconcile(&next, &list, Some("http"));
                prop_assert!(
                    again.iter().all(|c| matches!(c, Change::Exclude { .. })),
                    "{:?} then {:?}", changes, again
                );
                // No member that may not take requests was added.
                for c in &changes {
                    if let Change::Add { id, .. } = c {
                        let l = list.iter().find(|l| l.id == *id).unwrap();
                        prop_assert!(l.unfit().is_none());
                    }
                }
            }
        }
    }

    /// A member answering with a list of thousands (hostile, or broken): at most
    /// [`MAX_MEMBERS`] in all, the rest reported, not added.
    #[test]
    fn additions_stop_at_the_cap() {
        let known = vec![seed(2379, Some(1)), seed(2380, Some(2))];
        let listed: Vec<Listed> = (0..5000u16)
            .map(|i| Listed {
                id: 1000 + u64::from(i),
                name: format!("m{i}"),
                client_urls: vec![uri(10_000 + i)],
                is_learner: false,
            })
            .collect();
        let changes = reconcile(&known, &listed, Some("http"));
        let adds = changes
            .iter()
            .filter(|c| matches!(c, Change::Add { .. }))
            .count();
        assert_eq!(adds, MAX_MEMBERS - known.len());
        let Some(Change::TooMany { skipped, listed: n }) = changes.last() else {
            panic!("reported: {:?}", changes.last());
        };
        assert_eq!(skipped.len(), 5000 - adds);
        assert_eq!(*n, 5000);
        // Already full: nothing added, all reported.
        let full: Vec<Known> = (0..MAX_MEMBERS as u16)
            .map(|p| seed(20_000 + p, None))
            .collect();
        let changes = reconcile(&full, &listed[..3], Some("http"));
        assert!(
            matches!(&changes[..], [Change::TooMany { skipped, .. }] if skipped.len() == 3),
            "{changes:?}"
        );
    }
}
