//! The pure judgement over a round of `Status` answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How far behind the cluster's last known committed index a returning member may still be:
/// followers apply a little behind the leader on a busy cluster.
const CATCH_UP_SLACK: u64 = 100;

/// What one member said of itself and its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    /// The member's own etcd id.
    pub(crate) id: u64,
    /// The cluster it belongs to.
    pub(crate) cluster_id: u64,
    /// The leader it follows; 0 for none.
    pub(crate) leader: u64,
    /// Its raft term.
    pub(crate) term: u64,
    /// The raft index it knows committed.
    pub(crate) committed: u64,
    /// The raft index it has applied (0 from etcd before 3.4, which does not report it).
    pub(crate) applied: u64,
    /// Whether it is a learner.
    pub(crate) is_learner: bool,
    /// Whether it listed a "no leader" error.
    pub(crate) no_leader_error: bool,
}

impl Report {
    /// The leader this member follows, if it knows one.
    fn follows(&self) -> Option<u64> {
        (self.leader != 0 && !self.no_leader_error).then_some(self.leader)
    }
}

/// One member's answer in a round.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// It answered.
    Status(Report),
    /// It did not (timeout, unreachable, refused): nothing can be concluded about leaders.
    Failed,
}

/// What a round concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoundVerdict {
    /// The leader, the term or the "no leader" state changed.
    pub(crate) changed: bool,
    /// Members (by index) that follow no leader, or another one, while a majority of all
    /// members follow the leader, in two rounds at least `confirm` apart: cut off from the
    /// quorum. With why.
    pub(crate) cut_off: Vec<(usize, String)>,
}

/// The leader as the health state knows it, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderSnapshot {
    /// The etcd id of the leader, if one is known.
    pub leader_id: Option<u64>,
    /// The index of the member that leads, if it is one of ours.
    pub leader_index: Option<usize>,
    /// The highest raft term seen.
    pub term: u64,
    /// The term at which [`leader_id`](Self::leader_id) leads (the last leader known, during
    /// an election). Lower than [`term`](Self::term) while a member cut off without pre-vote
    /// keeps starting elections nobody joins.
    pub leader_term: Option<u64>,
    /// While no member knows a leader (an election): for how long.
    pub no_leader_for: Option<Duration>,
    /// Leader checks run so far.
    pub rounds: u64,
}

/// Who leads, as far as the members' answers tell.
#[derive(Debug, Default)]
pub(crate) struct LeaderView {
    /// The leader's etcd id and term.
    leader: Option<(u64, u64)>,
    /// Highest term any member reported.
    term: u64,
    /// The highest raft index known committed among the leader's followers at the last round
    /// that found a leader: a member coming back must have applied up to about there.
    committed: u64,
    no_leader_since: Option<Instant>,
    /// Members that looked cut off, since when.
    suspects: HashMap<usize, Instant>,
    /// The member that led before the current leader, and its term, until it answers again: a
    /// leader replaced while it gives no answer hangs or is cut off (see [`round`](Self::round)).
    deposed: Option<(usize, u64)>,
    /// Member index → etcd member id, as they reported it.
    ids: HashMap<usize, u64>,
    /// The cluster the members following the leader belong to (or, before any leader is
    /// known, the one a MemberList answer came from).
    cluster_id: Option<u64>,
    rounds: u64,
}

impl LeaderView {
    /// Judges one round: `replies` from the members (by index), `members` the number of
    /// members in the health state.
    pub(crate) fn round(
        &mut self,
        replies: &[(usize, Reply)],
        members: usize,
        now: Instant,
        confirm: Duration,
    ) -> RoundVerdict {
        self.rounds = self.rounds.saturating_add(1);
        let before = (self.leader, self.no_leader_since.is_some());
        let reports: Vec<(usize, Report)> = replies
            .iter()
            .filter_map(|(i, r)| match r {
                Reply::Status(report) => Some((*i, *report)),
                Reply::Failed => None,
            })
            .collect();
        for (i, r) in &reports {
            self.ids.insert(*i, r.id);
            self.term = self.term.max(r.term);
        }
        // The leader most members follow; on a tie, the one at the higher term.
        let mut votes: HashMap<(u64, u64), usize> = HashMap::new();
        for (_, r) in &reports {
            if let Some(leader) = r.follows() {
                *votes.entry((leader, r.term)).or_default() += 1;
            }
        }
        let best = votes
            .iter()
            .max_by_key(|((_, term), n)| (**n, *term))
            .map(|(k, n)| (*k, *n));
        let mut verdict = RoundVerdict::default();
        if let Some((i, _)) = self.deposed {
            if reports.iter().any(|(r, _)| *r == i) {
                // It answers: judged by what it says, as any member.
                self.deposed = None;
            }
        }
        let next = best.map(|((leader, _), _)| leader);
        if let Some((old, old_term)) = self.leader {
            // The leader is replaced (or an election began) while it gives no answer.
            if next != Some(old) && (best.is_some() || !reports.is_empty()) {
                let index = self.ids.iter().find(|(_, id)| **id == old).map(|(i, _)| *i);
                let silent = index.filter(|i| !reports.iter().any(|(r, _)| r == i));
                self.deposed = silent.map(|i| (i, old_term));
            }
        }
        if let (Some((i, _)), Some(next)) = (self.deposed, next) {
            if self.ids.get(&i) == Some(&next) {
                self.deposed = None;
            }
        }
        match best {
            Some(((leader, term), followers)) => {
                self.leader = Some((leader, term));
                if let Some((_, r)) = reports
                    .iter()
                    .find(|(_, r)| r.follows() == Some(leader) && r.term == term)
                {
                    self.cluster_id = Some(r.cluster_id);
                }
                self.no_leader_since = None;
                let majority = followers * 2 > members;
                for (i, r) in &reports {
                    if r.follows() == Some(leader) && r.term == term {
                        self.suspects.remove(i);
                        continue;
                    }
                    if !majority {
                        continue;
                    }
                    let since = *self.suspects.entry(*i).or_insert(now);
                    if now.saturating_duration_since(since) >= confirm {
                        let why = match r.follows() {
                            None => format!(
                                "knows no leader (term {}) while {followers} of {members} members follow {leader:x} (term {term})",
                                r.term
                            ),
                            Some(other) => format!(
                                "follows {other:x} (term {}) while {followers} of {members} members follow {leader:x} (term {term})",
                                r.term
                            ),
                        };
                        verdict.cut_off.push((*i, why));
                    }
                }
                // The member that led before gives no answer while a majority follows its
                // successor: it hangs (SIGSTOP, a paused VM) or its client path is cut. Nothing
                // else tells a quiet client so: no peer answers its requests to show the hang.
                if let Some((i, old_term)) = self.deposed.filter(|_| majority) {
                    let since = *self.suspects.entry(i).or_insert(now);
                    if now.saturating_duration_since(since) >= confirm {
                        let why = format!(
                            "led at term {old_term} and gives no answer while {followers} of {members} members follow {leader:x} (term {term})"
                        );
                        verdict.cut_off.push((i, why));
                    }
                }
            }
            None if !reports.is_empty() => {
                // Nobody who answered knows a leader: an election, not a member failure.
                self.leader = None;
                self.no_leader_since.get_or_insert(now);
                self.suspects.clear();
            }
            None => {}
        }
        verdict.changed = before != (self.leader, self.no_leader_since.is_some());
        verdict
    }

    /// Learns the leader from part of a round, before its slowest members answered: a member
    /// that hangs (SIGSTOP, a paused VM) holds every round for the whole `leader.timeout`, and
    /// a keep-alive waiting for the new leader waits that long more. Only when a majority of
    /// all `members` follow one leader at one term, other than the one known and not at an
    /// older term. Judges nothing else (members cut off, members catching up): the whole round
    /// does, and finds the same leader. Returns whether the leader changed.
    pub(crate) fn learn(&mut self, replies: &[(usize, Reply)], members: usize) -> bool {
        let reports: Vec<(usize, Report)> = replies
            .iter()
            .filter_map(|(i, r)| match r {
                Reply::Status(report) => Some((*i, *report)),
                Reply::Failed => None,
            })
            .collect();
        let mut votes: HashMap<(u64, u64), usize> = HashMap::new();
        for (_, r) in &reports {
            if let Some(leader) = r.follows() {
                *votes.entry((leader, r.term)).or_default() += 1;
            }
        }
        let Some(((leader, term), followers)) =
            votes.into_iter().max_by_key(|((_, term), n)| (*n, *term))
        else {
            return false;
        };
        let known = self.leader;
        if followers * 2 <= members
            || known == Some((leader, term))
            || known.is_some_and(|(_, t)| t > term)
        {
            return false;
        }
        for (i, r) in &reports {
            self.ids.insert(*i, r.id);
            self.term = self.term.max(r.term);
        }
        if let Some((old, old_term)) = known.filter(|(old, _)| *old != leader) {
            // As in a whole round: the leader replaced while it gives no answer (yet).
            let index = self.ids.iter().find(|(_, id)| **id == old).map(|(i, _)| *i);
            let silent = index.filter(|i| !reports.iter().any(|(r, _)| r == i));
            self.deposed = silent.map(|i| (i, old_term));
        }
        if let Some((_, r)) = reports
            .iter()
            .find(|(_, r)| r.follows() == Some(leader) && r.term == term)
        {
            self.cluster_id = Some(r.cluster_id);
        }
        self.leader = Some((leader, term));
        self.no_leader_since = None;
        true
    }

    /// Whether a member that reports `report` may come back into rotation: it must follow the
    /// known leader at the known term (a paused leader that resumes still believes it leads at
    /// its old term for a moment). With no leader known, nothing is held against it.
    ///
    /// It must also be a voting member (not a learner) of the known cluster: a member found by
    /// discovery is admitted only once it answers for the cluster its seeds belong to.
    pub(crate) fn admits(&self, report: &Report) -> Result<(), String> {
        if report.is_learner {
            return Err("member is a learner".to_owned());
        }
        if let Some(want) = self.cluster_id.filter(|want| *want != report.cluster_id) {
            return Err(format!(
                "belongs to cluster {:x}, not to this one ({want:x})",
                report.cluster_id
            ));
        }
        let Some((leader, term)) = self.leader else {
            return Ok(());
        };
        match report.follows() {
            Some(l) if l == leader && report.term >= term => {
                // Following the leader is not enough: a member back from a pause or a
                // partition replays what it missed first, and reads sent to it wait for that.
                if report.applied != 0 && report.applied + CATCH_UP_SLACK < self.committed {
                    return Err(format!(
                        "catching up: applied index {}, the cluster had committed {}",
                        report.applied, self.committed
                    ));
                }
                Ok(())
            }
            Some(l) if report.term > term => {
                // A newer term than we know: trust the member; the next round will tell.
                let _ = l;
                Ok(())
            }
            Some(l) => Err(format!(
                "follows {l:x} at term {}, but the cluster's leader is {leader:x} at term {term}",
                report.term
            )),
            None => Err(format!(
                "knows no leader (term {}), but the cluster's leader is {leader:x} at term {term}",
                report.term
            )),
        }
    }

    /// The index of the member that leads, if it is known and one of ours.
    pub(crate) fn leader_index(&self) -> Option<usize> {
        let (leader, _) = self.leader?;
        self.ids
            .iter()
            .find(|(_, id)| **id == leader)
            .map(|(i, _)| *i)
    }

    /// Whether members are suspected of being cut off (a confirming round is due soon).
    pub(crate) fn has_suspects(&self) -> bool {
        !self.suspects.is_empty()
    }

    /// Whether no member knows a leader.
    pub(crate) fn electing(&self) -> bool {
        self.no_leader_since.is_some()
    }

    /// Records a member's etcd id, learned outside a leader check (from discovery).
    pub(crate) fn note_id(&mut self, index: usize, id: u64) {
        if id != 0 {
            self.ids.insert(index, id);
        }
    }

    /// The etcd id of each member that reported one.
    pub(crate) fn ids(&self) -> &HashMap<usize, u64> {
        &self.ids
    }

    /// The cluster id the stack follows, if known.
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        self.cluster_id
    }

    /// Adopts the cluster id of a MemberList answer while leader checks have not set one.
    pub(crate) fn note_cluster(&mut self, cluster_id: u64) {
        if cluster_id != 0 {
            self.cluster_id.get_or_insert(cluster_id);
        }
    }

    /// Forgets a member that left the health state.
    pub(crate) fn forget(&mut self, index: usize) {
        self.ids.remove(&index);
        self.suspects.remove(&index);
        if self.deposed.is_some_and(|(i, _)| i == index) {
            self.deposed = None;
        }
    }

    /// A copy for snapshots, at `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> LeaderSnapshot {
        LeaderSnapshot {
            leader_id: self.leader.map(|(l, _)| l),
            leader_index: self.leader_index(),
            term: self.term,
            leader_term: self.leader.map(|(_, t)| t),
            no_leader_for: self
                .no_leader_since
                .map(|s| now.saturating_duration_since(s)),
            rounds: self.rounds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIRM: Duration = Duration::from_millis(100);

    fn status(id: u64, leader: u64, term: u64) -> Reply {
        Reply::Status(Report {
            id,
            cluster_id: 7,
            leader,
            term,
            committed: 5000,
            applied: 5000,
            is_learner: false,
            no_leader_error: false,
        })
    }

    #[test]
    fn an_election_ejects_nobody() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let r = v.round(
            &[
                (0, status(10, 10, 2)),
                (1, status(11, 10, 2)),
                (2, status(12, 10, 2)),
            ],
            3,
            t0,
            CONFIRM,
        );
        assert!(r.changed);
        assert_eq!(v.leader_index(), Some(0));
        // The leader hangs: it does not answer, the others know no leader.
        for ms in [0, 200, 400] {
            let r = v.round(
                &[
                    (0, Reply::Failed),
                    (1, status(11, 0, 3)),
                    (2, status(12, 0, 3)),
                ],
                3,
                t0 + Duration::from_millis(1000 + ms),
                CONFIRM,
            );
            assert!(r.cut_off.is_empty());
            assert!(v.electing());
        }
        assert_eq!(
            v.snapshot(t0 + Duration::from_millis(1500)).no_leader_for,
            Some(Duration::from_millis(500))
        );
        // Member 1 wins; member 2 has not heard yet: a minority of one follows, no verdict.
        let r = v.round(
            &[
                (0, Reply::Failed),
                (1, status(11, 11, 3)),
                (2, status(12, 0, 3)),
            ],
            3,
            t0 + Duration::from_millis(1500),
            CONFIRM,
        );
        assert!(r.changed && r.cut_off.is_empty());
        assert_eq!(v.leader_index(), Some(1));
        assert!(!v.electing());
    }

    /// A paused leader holds each leader check for the whole timeout; the new leader is
    /// learned from the majority that answered, and the whole round that ends later agrees
    /// (no second change) and still finds the old leader hanging.
    #[test]
    fn a_majority_part_of_a_round_tells_the_new_leader_at_once() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let all_follow_10 = [
            (0, status(10, 10, 2)),
            (1, status(11, 10, 2)),
            (2, status(12, 10, 2)),
        ];
        v.round(&all_follow_10, 3, t0, CONFIRM);
        assert!(!v.learn(&all_follow_10[..2], 3), "the leader known");
        // Member 1 won; member 0 (the old leader) has not answered yet.
        assert!(!v.learn(&[(1, status(11, 11, 3))], 3), "one of three");
        assert!(
            !v.learn(&[(1, status(11, 11, 3)), (2, status(12, 0, 3))], 3),
            "a minority"
        );
        let part = [(1, status(11, 11, 3)), (2, status(12, 11, 3))];
        assert!(v.learn(&part, 3));
        assert_eq!(v.leader_index(), Some(1));
        assert_eq!(v.snapshot(t0).leader_term, Some(3));
        assert!(!v.learn(&part, 3), "once");
        // Never back to an older term.
        assert!(!v.learn(&[(0, status(10, 10, 2)), (2, status(12, 10, 2))], 3));
        assert_eq!(v.leader_index(), Some(1));
        // The whole rounds: the old leader timed out. Same leader, and it is found hanging.
        let whole = [
            (0, Reply::Failed),
            (1, status(11, 11, 3)),
            (2, status(12, 11, 3)),
        ];
        let r = v.round(&whole, 3, t0 + Duration::from_millis(300), CONFIRM);
        assert!(!r.changed && r.cut_off.is_empty());
        let r = v.round(&whole, 3, t0 + Duration::from_millis(600), CONFIRM);
        assert_eq!(r.cut_off.iter().map(|c| c.0).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_member_alone_without_a_leader_is_cut_off_after_confirmation() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let round = |v: &mut LeaderView, ms: u64| {
            v.round(
                &[
                    (0, status(10, 10, 2)),
                    (1, status(11, 10, 2)),
                    (2, status(12, 0, 5)),
                ],
                3,
                t0 + Duration::from_millis(ms),
                CONFIRM,
            )
        };
        assert!(
            round(&mut v, 0).cut_off.is_empty(),
            "not at the first sight"
        );
        assert!(v.has_suspects());
        assert!(round(&mut v, 50).cut_off.is_empty());
        let r = round(&mut v, 120);
        assert_eq!(r.cut_off.len(), 1);
        assert_eq!(r.cut_off[0].0, 2);
        assert!(
            r.cut_off[0].1.contains("knows no leader"),
            "{}",
            r.cut_off[0].1
        );
    }

    #[test]
    fn an_isolated_leader_at_an_old_term_is_cut_off() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let replies = [
            (0, status(10, 10, 2)),
            (1, status(11, 11, 3)),
            (2, status(12, 11, 3)),
        ];
        v.round(&replies, 3, t0, CONFIRM);
        let r = v.round(&replies, 3, t0 + CONFIRM, CONFIRM);
        assert_eq!(r.cut_off.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(v.leader_index(), Some(1));
        // Readmission: only once it follows 11 at term 3.
        let Reply::Status(stale) = status(10, 10, 2) else {
            unreachable!()
        };
        assert!(v.admits(&stale).is_err());
        let Reply::Status(caught_up) = status(10, 11, 3) else {
            unreachable!()
        };
        assert!(v.admits(&caught_up).is_ok());
    }

    /// A leader that stops answering (SIGSTOP) is cut off once its peers elected another and
    /// a second round confirms its silence; answering again, it is judged by what it says.
    #[test]
    fn a_silent_deposed_leader_is_cut_off_after_confirmation() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let led = [
            (0, status(10, 10, 2)),
            (1, status(11, 10, 2)),
            (2, status(12, 10, 2)),
        ];
        assert!(v.round(&led, 3, at(0), CONFIRM).cut_off.is_empty());
        // Silent, its peers still follow it: nothing is concluded.
        let silent = [
            (0, Reply::Failed),
            (1, status(11, 10, 2)),
            (2, status(12, 10, 2)),
        ];
        assert!(v.round(&silent, 3, at(500), CONFIRM).cut_off.is_empty());
        assert!(!v.has_suspects());
        // Its peers hold an election, then elect 11: suspected at first sight of the new
        // leader, cut off once confirmed.
        let electing = [
            (0, Reply::Failed),
            (1, status(11, 0, 3)),
            (2, status(12, 0, 3)),
        ];
        assert!(v.round(&electing, 3, at(1200), CONFIRM).changed);
        assert!(!v.has_suspects());
        let replaced = [
            (0, Reply::Failed),
            (1, status(11, 11, 3)),
            (2, status(12, 11, 3)),
        ];
        let r = v.round(&replaced, 3, at(1500), CONFIRM);
        assert!(r.changed && r.cut_off.is_empty());
        assert!(v.has_suspects());
        let r = v.round(&replaced, 3, at(1500) + CONFIRM, CONFIRM);
        assert_eq!(r.cut_off.len(), 1, "{r:?}");
        assert_eq!(r.cut_off[0].0, 0);
        assert!(
            r.cut_off[0].1.contains("led at term 2"),
            "{}",
            r.cut_off[0].1
        );
        // Back, following the new leader: forgiven, and no longer watched for silence.
        let back = [
            (0, status(10, 11, 3)),
            (1, status(11, 11, 3)),
            (2, status(12, 11, 3)),
        ];
        assert!(v.round(&back, 3, at(3000), CONFIRM).cut_off.is_empty());
        assert!(!v.has_suspects());
        assert!(v.round(&replaced, 3, at(4000), CONFIRM).cut_off.is_empty());
        assert!(!v.has_suspects(), "a follower's silence is no verdict");
    }

    #[test]
    fn two_of_five_cut_off() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let replies = [
            (0, status(10, 10, 2)),
            (1, status(11, 10, 2)),
            (2, status(12, 10, 2)),
            (3, status(13, 0, 2)),
            (4, status(14, 0, 2)),
        ];
        v.round(&replies, 5, t0, CONFIRM);
        let r = v.round(&replies, 5, t0 + CONFIRM, CONFIRM);
        let mut cut: Vec<usize> = r.cut_off.iter().map(|c| c.0).collect();
        cut.sort();
        assert_eq!(cut, vec![3, 4]);
    }

    #[test]
    fn admission_needs_the_same_cluster_and_a_voter() {
        let mut v = LeaderView::default();
        let Reply::Status(good) = status(10, 10, 2) else {
            unreachable!()
        };
        assert!(
            v.admits(&good).is_ok(),
            "nothing known: nothing held against it"
        );
        v.round(
            &[(0, status(10, 10, 2)), (1, status(11, 10, 2))],
            2,
            Instant::now(),
            CONFIRM,
        );
        assert_eq!(v.cluster_id(), Some(7));
        let stranger = Report {
            cluster_id: 9,
            ..good
        };
        let err = v.admits(&stranger).unwrap_err();
        assert!(err.contains("cluster 9"), "{err}");
        let learner = Report {
            is_learner: true,
            ..good
        };
        assert!(v.admits(&learner).unwrap_err().contains("learner"));
        assert!(v.admits(&good).is_ok());
    }

    #[test]
    fn a_member_list_answer_sets_the_cluster_only_until_leaders_are_known() {
        let mut v = LeaderView::default();
        v.note_cluster(5);
        assert_eq!(v.cluster_id(), Some(5));
        v.note_cluster(6);
        assert_eq!(v.cluster_id(), Some(5));
        v.round(&[(0, status(10, 10, 2))], 1, Instant::now(), CONFIRM);
        assert_eq!(v.cluster_id(), Some(7), "the leader's followers decide");
    }

    #[test]
    fn a_recovered_suspect_is_forgiven() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        v.round(
            &[
                (0, status(10, 10, 2)),
                (1, status(11, 10, 2)),
                (2, status(12, 0, 2)),
            ],
            3,
            t0,
            CONFIRM,
        );
        v.round(
            &[
                (0, status(10, 10, 2)),
                (1, status(11, 10, 2)),
                (2, status(12, 10, 2)),
            ],
            3,
            t0 + CONFIRM,
            CONFIRM,
        );
        assert!(!v.has_suspects());
    }
}
