//! Which member a new stream should go to, and the hint that sends it there.
//!
//! Why the engine chooses rather than leaving it to the balancer: (a) a keep-alive sent to a
//! follower is forwarded to the leader over the peer network, and while the leader hangs the
//! follower holds it for up to etcd's request timeout (seconds), so the leader itself is the
//! best first choice; (b) a hedge must go to a member that no open stream is on; (c) the engine
//! must know the member before any answer arrives, to move away from a member that never answers.
//!
//! The choice itself is [`choose`], the routine requests use too (healthy first, the less
//! loaded of two); this file only words each stream's wants for it, from what the health
//! checker shares (its members' entries and the leader's index, no snapshot).

use std::sync::Arc;

use super::health::StreamHealth;
use crate::balance::pick::{choose, Spread, Unhealthy, Want};
use crate::balance::AvoidMembers;
use crate::member::{Member, MemberEntry};

/// What the health checker knows of the members: their shared entries, and the leader.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub(crate) entries: Arc<Vec<Arc<MemberEntry>>>,
    pub(crate) leader: Option<usize>,
}

// === impl Known ===

impl Known {
    /// What `checker` knows now.
    pub(crate) fn of(checker: &StreamHealth) -> Self {
        Self {
            entries: checker.entries(),
            leader: checker.leader_index(),
        }
    }

    /// The member [`choose`] names for `want`, and the hint that sends the stream there:
    /// "anyone but" every other member, so the balancer takes the chosen member while it is
    /// healthy and falls back to any healthy one otherwise.
    fn place(&self, want: Want<'_>) -> Option<(Member, AvoidMembers)> {
        let chosen = choose(&self.entries, want)?;
        let others = self
            .entries
            .iter()
            .map(|e| e.member())
            .filter(|m| m.index() != chosen.member().index())
            .cloned()
            .collect();
        Some((chosen.member().clone(), AvoidMembers(others)))
    }
}

/// The members' indexes.
fn indexes(members: &[Member]) -> Vec<usize> {
    members.iter().map(Member::index).collect()
}

/// Where the next keep-alive stream goes, and the balancer's hint with it. The member, if
/// the engine knows the members: the leader if it is healthy and free (no open stream, not
/// recently failed), else a healthy free member, else a healthy member without an open stream
/// even if it recently failed (its failure may have been the election, not the member); with
/// no member healthy, the leader if free and not recently failed (only the leader renews: a
/// follower forwards the keep-alive to it, and holds it while the leader hangs), else none.
/// Without a member the balancer chooses, hinted away from the members recently failed on
/// (`avoided`) and those already carrying a stream (`open_on`), so a hedge goes elsewhere.
pub(crate) fn place_keepalive(
    known: Option<&Known>,
    open_on: &[Member],
    avoided: AvoidMembers,
) -> (Option<Member>, AvoidMembers) {
    if let Some(known) = known {
        let busy = indexes(open_on);
        let rested = indexes(&avoided.0);
        let want = Want {
            first: known.leader.filter(|l| !rested.contains(l)),
            busy: &busy,
            avoid: &rested,
            unhealthy: Unhealthy::First,
            spread: Spread::Even,
        };
        if let Some((m, hint)) = known.place(want) {
            return (Some(m), hint);
        }
    }
    let mut avoid = avoided;
    avoid.0.extend(open_on.iter().cloned());
    (None, avoid)
}

/// A last resort for a hedge when [`place_keepalive`] finds no member: one out of rotation
/// (ejected, possibly for a fault long over) that carries no stream, the leader first, then
/// one not recently failed, then any. Only for requests asked of other members too, sent with
/// [`EvenIfEjected`](crate::balance::EvenIfEjected).
pub(crate) fn last_resort(
    known: &Known,
    open_on: &[Member],
    avoided: &AvoidMembers,
) -> Option<Member> {
    let busy = indexes(open_on);
    let rested = indexes(&avoided.0);
    let want = Want {
        first: known.leader,
        busy: &busy,
        avoid: &rested,
        unhealthy: Unhealthy::LastResort,
        spread: Spread::Even,
    };
    choose(&known.entries, want).map(|e| e.member().clone())
}

/// Where a stream the watch driver opens goes (a watch, or a keep-alive with resumption off),
/// and the balancer's hint that sends it there: the leader (if `prefer_leader` and it is in
/// the pool), else the less loaded of two in the pool. The pool is the first non-empty of:
/// healthy members not avoided, healthy members, members not avoided, every member (avoiding
/// is a preference, never a reason to have no member). `None` (no members) leaves the choice
/// to the balancer, hinted away from `avoided`.
pub(crate) fn place_stream(
    known: &Known,
    prefer_leader: bool,
    avoided: &AvoidMembers,
) -> (Option<Member>, AvoidMembers) {
    let rested = indexes(&avoided.0);
    let want = Want {
        first: known.leader.filter(|_| prefer_leader),
        busy: &[],
        avoid: &rested,
        unhealthy: Unhealthy::Any,
        spread: Spread::Even,
    };
    match known.place(want) {
        Some((m, hint)) => (Some(m), hint),
        None => (None, avoided.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::HealthChecker;
    use crate::config::Config;
    use crate::health::{Outcome, Source};

    /// Members `0..healthy.len()`, those `false` out of rotation, `leader` leading.
    fn known(healthy: &[bool], leader: Option<usize>) -> (HealthChecker, Known) {
        let endpoints: Vec<String> = (1..=healthy.len())
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
        for (m, &healthy) in checker.members().iter().zip(healthy) {
            if !healthy {
                checker.record(m, Source::Passive, Outcome::TcpFailure);
            }
        }
        let known = Known {
            entries: checker.entries(),
            leader,
        };
        (checker, known)
    }

    fn members(known: &Known, indexes: &[usize]) -> Vec<Member> {
        indexes
            .iter()
            .map(|&i| known.entries[i].member().clone())
            .collect()
    }

    /// The keep-alive's choice, with streams open on `busy` and `avoided` failed on lately.
    fn keepalive(known: &Known, busy: &[usize], avoided: &[usize]) -> Option<usize> {
        let failed = AvoidMembers(members(known, avoided));
        let (m, _) = place_keepalive(Some(known), &members(known, busy), failed);
        chosen(m)
    }

    fn last(known: &Known, busy: &[usize], avoided: &[usize]) -> Option<usize> {
        let failed = AvoidMembers(members(known, avoided));
        chosen(last_resort(known, &members(known, busy), &failed))
    }

    fn chosen(c: Option<Member>) -> Option<usize> {
        c.map(|m| m.index())
    }

    /// The members a hint names, each once.
    fn hinted(hint: &AvoidMembers) -> Vec<usize> {
        let mut v: Vec<usize> = hint.0.iter().map(Member::index).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn a_chosen_member_is_hinted_as_anyone_but_the_others() {
        let (_checker, known) = known(&[true, true, true], Some(1));
        let (m, hint) = place_keepalive(Some(&known), &[], AvoidMembers::default());
        assert_eq!(chosen(m), Some(1));
        assert_eq!(hinted(&hint), [0, 2]);
        // A hedge while the leader carries a stream, member 0 recently failed: member 2.
        let busy = members(&known, &[1]);
        let failed = AvoidMembers(members(&known, &[0]));
        let (m, hint) = place_keepalive(Some(&known), &busy, failed);
        assert_eq!(chosen(m), Some(2));
        assert_eq!(hinted(&hint), [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_choice_the_hint_avoids_failed_and_busy_members() {
        let (_checker, known) = known(&[true, false, true], Some(2));
        let failed = AvoidMembers(members(&known, &[0]));
        let busy = members(&known, &[2]);
        // No health checker: the balancer chooses, away from both.
        let (c, hint) = place_keepalive(None, &busy, failed.clone());
        assert_eq!((chosen(c), hinted(&hint)), (None, vec![0, 2]));
        // Every healthy member busy: none chosen, the same hint.
        let busy = members(&known, &[0, 2]);
        let (c, hint) = place_keepalive(Some(&known), &busy, failed);
        assert_eq!((chosen(c), hinted(&hint)), (None, vec![0, 2]));
    }

    #[tokio::test(start_paused = true)]
    async fn the_healthy_free_leader_first() {
        let (_checker, known) = known(&[true, true, true], Some(2));
        for _ in 0..6 {
            assert_eq!(keepalive(&known, &[], &[]), Some(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_go_where_no_stream_is() {
        let (_checker, known) = known(&[true, true, true], Some(2));
        for _ in 0..6 {
            let c = keepalive(&known, &[2], &[]).unwrap();
            assert_ne!(c, 2);
        }
        assert_eq!(keepalive(&known, &[2, 0], &[]), Some(1));
        assert_eq!(keepalive(&known, &[0, 1, 2], &[]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_and_recently_failed_members_last() {
        let (_checker, known) = known(&[true, false, true], Some(1));
        for _ in 0..6 {
            let c = keepalive(&known, &[], &[]);
            assert!(matches!(c, Some(0 | 2)), "a healthy one: {c:?}");
        }
        assert_eq!(keepalive(&known, &[], &[0]), Some(2));
        // Everyone failed lately: a member without a stream still beats none.
        let (_checker, no_leader) = self::known(&[true, false, true], None);
        assert_eq!(keepalive(&no_leader, &[2], &[0, 2]), Some(0));
        let (_checker, none) = self::known(&[false, false], None);
        assert_eq!(keepalive(&none, &[], &[]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_last_resort_is_a_free_member_out_of_rotation_the_leader_first() {
        // Member 2 healthy and busy, 0 and 1 ejected: the ejected leader.
        let (_checker, known) = known(&[false, false, true], Some(1));
        assert_eq!(keepalive(&known, &[2], &[]), None);
        assert_eq!(last(&known, &[2], &[]), Some(1));
        // No leader among them: one not recently failed, whatever the draw.
        let no_leader = Known {
            leader: None,
            ..known.clone()
        };
        for _ in 0..4 {
            assert_eq!(last(&no_leader, &[2], &[0]), Some(1));
        }
        // Every free one failed lately: still one of them.
        assert!(last(&no_leader, &[2], &[0, 1]).is_some());
        // Healthy members and busy ones are never a last resort.
        let healthy_leader = Known {
            leader: Some(2),
            ..known.clone()
        };
        assert_eq!(last(&healthy_leader, &[0, 1, 2], &[]), None);
        let (_checker, healthy) = self::known(&[true, true], None);
        assert_eq!(last(&healthy, &[], &[]), None);
    }

    /// With every member unhealthy (ejected in an election, say), the leader is still the
    /// one that renews: it is chosen unless it carries a stream or failed lately; otherwise
    /// the balancer chooses, as with no leader known.
    #[tokio::test(start_paused = true)]
    async fn with_none_healthy_the_leader_still_first() {
        let (_checker, known) = known(&[false, false, false], Some(2));
        for _ in 0..6 {
            assert_eq!(keepalive(&known, &[], &[]), Some(2));
        }
        assert_eq!(keepalive(&known, &[2], &[]), None, "busy");
        assert_eq!(keepalive(&known, &[], &[2]), None, "failed lately");
        let no_leader = Known {
            leader: None,
            ..known.clone()
        };
        assert_eq!(keepalive(&no_leader, &[], &[]), None, "no leader known");
        // One member healthy: the healthy tiers decide, the unhealthy leader is not taken.
        let (_checker, one) = self::known(&[false, true, false], Some(2));
        assert_eq!(keepalive(&one, &[1], &[]), None);
    }

    /// The watch driver's stream: the leader when preferred and in the pool (even a pool of
    /// members failed on lately), else a member of the first non-empty pool: healthy and not
    /// avoided, healthy, not avoided, any. Never none while there are members.
    #[tokio::test(start_paused = true)]
    async fn a_stream_takes_the_leader_in_its_pool_and_always_some_member() {
        let stream = |known: &Known, prefer: bool, avoided: &[usize]| {
            let avoided = AvoidMembers(members(known, avoided));
            let (m, hint) = place_stream(known, prefer, &avoided);
            if let Some(m) = &m {
                let mut others: Vec<usize> = (0..known.entries.len()).collect();
                others.retain(|&i| i != m.index());
                assert_eq!(hinted(&hint), others, "anyone but the chosen one");
            }
            chosen(m)
        };
        let (_checker, known) = known(&[true, true, true], Some(2));
        for _ in 0..6 {
            assert_eq!(stream(&known, true, &[]), Some(2));
            assert_ne!(stream(&known, true, &[2]), Some(2), "failed lately");
            assert_eq!(stream(&known, true, &[0, 1, 2]), Some(2), "all failed");
            assert_eq!(stream(&known, false, &[0, 1]), Some(2), "not avoided");
        }
        let (_checker, down) = self::known(&[false, false, true], Some(0));
        for _ in 0..6 {
            assert_eq!(
                stream(&down, true, &[]),
                Some(2),
                "healthy before the leader"
            );
        }
        let (_checker, none) = self::known(&[false, false, false], Some(0));
        for _ in 0..6 {
            assert_eq!(stream(&none, true, &[]), Some(0));
            assert_eq!(stream(&none, true, &[0, 1]), Some(2), "not avoided first");
            assert_eq!(
                stream(&none, true, &[0, 1, 2]),
                Some(0),
                "avoided beats none"
            );
        }
        let empty = Known {
            entries: Arc::new(Vec::new()),
            leader: None,
        };
        let avoided = AvoidMembers(members(&known, &[1]));
        let (m, hint) = place_stream(&empty, true, &avoided);
        assert_eq!((chosen(m), hinted(&hint)), (None, vec![1]));
    }

    /// A watch may land on any member of its pool, the busiest too (the test harness finds a
    /// watch on the leader or on a follower by opening it again until it lands there).
    #[tokio::test(start_paused = true)]
    async fn a_stream_lands_on_every_member_of_its_pool_whatever_its_load() {
        let (_checker, known) = known(&[true, true, true], Some(0));
        for _ in 0..5 {
            known.entries[0].load().start();
        }
        let mut seen = [false; 3];
        for _ in 0..300 {
            let (m, _) = place_stream(&known, false, &AvoidMembers::default());
            seen[chosen(m).expect("a member")] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
