//! Which member a new keep-alive stream should go to.
//!
//! Why the helper chooses rather than leaving it to the balancer: (a) a keep-alive sent to a
//! follower is forwarded to the leader over the peer network, and while the leader hangs the
//! follower holds it for up to etcd's request timeout (seconds), so the leader itself is the
//! best first choice; (b) a hedge must go to a member that no open stream is on; (c) the helper
//! must know the member before any answer arrives, to move away from a member that never answers.

use crate::checker::Member;

/// What the choice needs to know of one member.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub(super) member: Member,
    pub(super) healthy: bool,
}

/// The member to open the next stream on: the leader if it is healthy and free (no open
/// stream, not recently failed), else a healthy free member, else a healthy member without an
/// open stream even if it recently failed (its failure may have been the election, not the
/// member), else none (the balancer then chooses). `roll` breaks ties (a random number).
pub(super) fn choose(
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
}
