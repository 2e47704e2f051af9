//! Which member a new keep-alive stream should go to.
//!
//! Why the helper chooses rather than leaving it to the balancer: (a) a keep-alive sent to a
//! follower is forwarded to the leader over the peer network, and while the leader hangs the
//! follower holds it for up to etcd's request timeout (seconds), so the leader itself is the
//! best first choice; (b) a hedge must go to a member that no open stream is on; (c) the helper
//! must know the member before any answer arrives, to move away from a member that never answers.

use crate::balance::AvoidMembers;
use crate::checker::HealthChecker;
use crate::member::Member;

/// What the choice needs to know of one member.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) member: Member,
    pub(crate) healthy: bool,
}

/// What the health checker knows of the members: their health, and the leader.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub(crate) members: Vec<Candidate>,
    pub(crate) leader: Option<usize>,
}

// === impl Known ===

impl Known {
    /// What `checker` knows now.
    pub(crate) fn of(checker: &HealthChecker) -> Self {
        Self {
            members: checker
                .snapshot()
                .into_iter()
                .map(|s| Candidate {
                    healthy: s.status.is_healthy(),
                    member: s.member,
                })
                .collect(),
            leader: checker.leader().leader_index,
        }
    }
}

/// Where the next stream goes (the member [`choose`] names, if the helper knows the members),
/// and the hint the balancer gets with it: with a member chosen, "anyone but" everyone else,
/// so the balancer takes the chosen member while it is healthy and falls back to any healthy
/// one otherwise; without, the members recently failed on (`avoided`) and those already
/// carrying a stream (`open_on`), so a hedge goes elsewhere.
pub(crate) fn place(
    known: Option<&Known>,
    open_on: &[Member],
    avoided: AvoidMembers,
    roll: usize,
) -> (Option<Member>, AvoidMembers) {
    if let Some(known) = known {
        let busy: Vec<usize> = open_on.iter().map(Member::index).collect();
        let rested: Vec<usize> = avoided.0.iter().map(Member::index).collect();
        if let Some(m) = choose(&known.members, known.leader, &busy, &rested, roll) {
            let others = known
                .members
                .iter()
                .map(|c| c.member.clone())
                .filter(|c| c.index() != m.index())
                .collect();
            return (Some(m), AvoidMembers(others));
        }
    }
    let mut avoid = avoided;
    avoid.0.extend(open_on.iter().cloned());
    (None, avoid)
}

/// The member to open the next stream on: the leader if it is healthy and free (no open
/// stream, not recently failed), else a healthy free member, else a healthy member without an
/// open stream even if it recently failed (its failure may have been the election, not the
/// member); with no member healthy, the leader if free and not recently failed (only the
/// leader renews: a follower forwards the keep-alive to it, and holds it while the leader
/// hangs), else none (the balancer then chooses). `roll` breaks ties (a random number).
pub(crate) fn choose(
    members: &[Candidate],
    leader: Option<usize>,
    busy: &[usize],
    avoided: &[usize],
    roll: usize,
) -> Option<Member> {
    let free = |c: &&Candidate| c.healthy && !busy.contains(&c.member.index());
    let rested = |c: &&Candidate| !avoided.contains(&c.member.index());
    if let Some(l) = members
        .iter()
        .filter(free)
        .filter(rested)
        .find(|c| Some(c.member.index()) == leader)
    {
        return Some(l.member.clone());
    }
    let pick =
        |pool: Vec<&Candidate>| (!pool.is_empty()).then(|| pool[roll % pool.len()].member.clone());
    pick(members.iter().filter(free).filter(rested).collect())
        .or_else(|| pick(members.iter().filter(free).collect()))
        .or_else(|| {
            if members.iter().any(|c| c.healthy) {
                return None;
            }
            members
                .iter()
                .filter(|c| !busy.contains(&c.member.index()))
                .filter(rested)
                .find(|c| Some(c.member.index()) == leader)
                .map(|c| c.member.clone())
        })
}

/// A last resort for a hedge when [`choose`] finds no member: one out of rotation (ejected,
/// possibly for a fault long over) that carries no stream, the leader first, then one not
/// recently failed, then any. Only for requests asked of other members too, sent with
/// [`EvenIfEjected`](crate::balance::EvenIfEjected).
pub(crate) fn last_resort(
    members: &[Candidate],
    leader: Option<usize>,
    busy: &[usize],
    avoided: &[usize],
    roll: usize,
) -> Option<Member> {
    let free: Vec<&Candidate> = members
        .iter()
        .filter(|c| !c.healthy && !busy.contains(&c.member.index()))
        .collect();
    if let Some(l) = free.iter().find(|c| Some(c.member.index()) == leader) {
        return Some(l.member.clone());
    }
    let rested: Vec<&Candidate> = free
        .iter()
        .copied()
        .filter(|c| !avoided.contains(&c.member.index()))
        .collect();
    let pool = if rested.is_empty() { free } else { rested };
    (!pool.is_empty()).then(|| pool[roll % pool.len()].member.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(healthy: &[bool]) -> Vec<Candidate> {
        healthy
            .iter()
            .enumerate()
            .map(|(i, &healthy)| Candidate {
                member: Member::new(i, format!("http://m{i}:2379").parse().unwrap()),
                healthy,
            })
            .collect()
    }

    fn chosen(c: Option<Member>) -> Option<usize> {
        c.map(|m| m.index())
    }

    /// The members a hint names, each once.
    fn indexes(hint: &AvoidMembers) -> Vec<usize> {
        let mut v: Vec<usize> = hint.0.iter().map(Member::index).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn a_chosen_member_is_hinted_as_anyone_but_the_others() {
        let known = Known {
            members: members(&[true, true, true]),
            leader: Some(1),
        };
        let (m, hint) = place(Some(&known), &[], AvoidMembers::default(), 0);
        assert_eq!(chosen(m), Some(1));
        assert_eq!(indexes(&hint), [0, 2]);
        // A hedge while the leader carries a stream, member 0 recently failed: member 2.
        let busy = [known.members[1].member.clone()];
        let failed = AvoidMembers(vec![known.members[0].member.clone()]);
        let (m, hint) = place(Some(&known), &busy, failed, 0);
        assert_eq!(chosen(m), Some(2));
        assert_eq!(indexes(&hint), [0, 1]);
    }

    #[test]
    fn without_a_choice_the_hint_avoids_failed_and_busy_members() {
        let m = members(&[true, false, true]);
        let failed = AvoidMembers(vec![m[0].member.clone()]);
        let busy = [m[2].member.clone()];
        // No health checker: the balancer chooses, away from both.
        let (c, hint) = place(None, &busy, failed.clone(), 0);
        assert_eq!((chosen(c), indexes(&hint)), (None, vec![0, 2]));
        // Every healthy member busy: none chosen, the same hint.
        let known = Known {
            members: m,
            leader: Some(2),
        };
        let busy = [
            known.members[0].member.clone(),
            known.members[2].member.clone(),
        ];
        let (c, hint) = place(Some(&known), &busy, failed, 0);
        assert_eq!((chosen(c), indexes(&hint)), (None, vec![0, 2]));
    }

    #[test]
    fn the_healthy_free_leader_first() {
        let m = members(&[true, true, true]);
        for roll in 0..6 {
            assert_eq!(chosen(choose(&m, Some(2), &[], &[], roll)), Some(2));
        }
    }

    #[test]
    fn hedges_go_where_no_stream_is() {
        let m = members(&[true, true, true]);
        for roll in 0..6 {
            let c = chosen(choose(&m, Some(2), &[2], &[], roll)).unwrap();
            assert_ne!(c, 2);
        }
        assert_eq!(chosen(choose(&m, Some(2), &[2, 0], &[], 7)), Some(1));
        assert_eq!(chosen(choose(&m, Some(2), &[0, 1, 2], &[], 7)), None);
    }

    #[test]
    fn unhealthy_and_recently_failed_members_last() {
        let m = members(&[true, false, true]);
        assert_eq!(chosen(choose(&m, Some(1), &[], &[], 0)), Some(0));
        assert_eq!(chosen(choose(&m, Some(1), &[], &[0], 0)), Some(2));
        // Everyone failed lately: a member without a stream still beats none.
        assert_eq!(chosen(choose(&m, None, &[2], &[0, 2], 0)), Some(0));
        assert_eq!(
            chosen(choose(&members(&[false, false]), None, &[], &[], 0)),
            None
        );
    }

    #[test]
    fn a_last_resort_is_a_free_member_out_of_rotation_the_leader_first() {
        // Member 2 healthy and busy, 0 and 1 ejected: the ejected leader.
        let m = members(&[false, false, true]);
        assert_eq!(chosen(choose(&m, Some(1), &[2], &[], 0)), None);
        assert_eq!(chosen(last_resort(&m, Some(1), &[2], &[], 0)), Some(1));
        // No leader among them: one not recently failed, whatever the roll.
        for roll in 0..4 {
            assert_eq!(chosen(last_resort(&m, None, &[2], &[0], roll)), Some(1));
        }
        // Every free one failed lately: still one of them.
        assert!(last_resort(&m, None, &[2], &[0, 1], 0).is_some());
        // Healthy members and busy ones are never a last resort.
        assert_eq!(chosen(last_resort(&m, Some(2), &[0, 1, 2], &[], 0)), None);
        assert_eq!(
            chosen(last_resort(&members(&[true, true]), None, &[], &[], 0)),
            None
        );
    }

    /// With every member unhealthy (ejected in an election, say), the leader is still the
    /// one that renews: it is chosen unless it carries a stream or failed lately; otherwise
    /// the balancer chooses, as with no leader known.
    #[test]
    fn with_none_healthy_the_leader_still_first() {
        let m = members(&[false, false, false]);
        for roll in 0..6 {
            assert_eq!(chosen(choose(&m, Some(2), &[], &[], roll)), Some(2));
        }
        assert_eq!(chosen(choose(&m, Some(2), &[2], &[], 0)), None, "busy");
        assert_eq!(
            chosen(choose(&m, Some(2), &[], &[2], 0)),
            None,
            "failed lately"
        );
        assert_eq!(
            chosen(choose(&m, None, &[], &[], 0)),
            None,
            "no leader known"
        );
        // One member healthy: the healthy tiers decide, the unhealthy leader is not taken.
        let one = members(&[false, true, false]);
        assert_eq!(chosen(choose(&one, Some(2), &[1], &[], 0)), None);
    }
}
