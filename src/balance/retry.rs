//! Which requests may be sent again, and when.
//!
//! The rules are etcd's own Go client's (DESIGN.md, section 3): a read may go to another
//! member after any member-level failure; a write only when it is certain the first member
//! never processed it. A write that timed out or lost its connection mid-flight is never
//! re-sent: it may have been applied, and applying it twice could break the caller's data.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::pick::pick_fresh;
use crate::checker::MemberEntry;
use crate::config::{AllUnhealthyPolicy, RetryConfig};

/// One copy of a request sent to a member.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) entry: Arc<MemberEntry>,
    pub(crate) at: Instant,
}

/// The bookkeeping of one request's attempts: which members serve it now, which were tried in
/// the current round, how many attempts and rounds so far. Pure: the dispatch loop asks it
/// where to go next and how long to wait.
///
/// One vector of attempts holds it all (a request's members of the round are those of the
/// attempts started since the round began), so a request answered at the first attempt
/// allocates once here.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Attempts by slot.
    sent: Vec<Slot>,
    /// The first slot of the current round.
    round_start: usize,
    /// Members counted as tried in this round besides those of its attempts: the ones the
    /// caller asked to avoid (first round), those still serving the request (later rounds).
    carried: Vec<usize>,
    rounds: u8,
}

/// One attempt.
#[derive(Debug)]
struct Slot {
    /// Index of the member it went to.
    member: usize,
    /// `None` once answered.
    live: Option<Sent>,
}

impl Plan {
    pub(crate) fn new(avoid: Vec<usize>) -> Self {
        Self {
            sent: Vec::new(),
            round_start: 0,
            carried: avoid,
            rounds: 0,
        }
    }

    /// Attempts started so far.
    pub(crate) fn attempts(&self) -> u8 {
        u8::try_from(self.sent.len()).unwrap_or(u8::MAX)
    }

    /// Records an attempt on `entry`, sent now; returns its slot.
    pub(crate) fn start(&mut self, entry: Arc<MemberEntry>) -> usize {
        self.sent.push(Slot {
            member: entry.member().index(),
            live: Some(Sent {
                entry,
                at: Instant::now(),
            }),
        });
        self.sent.len() - 1
    }

    /// The attempt in `slot` ended.
    pub(crate) fn finish(&mut self, slot: usize) -> Sent {
        self.sent[slot].live.take().expect("an attempt ends once")
    }

    fn live(&self) -> impl Iterator<Item = &Sent> {
        self.sent.iter().filter_map(|s| s.live.as_ref())
    }

    /// Attempts still unanswered that were sent before `winner`.
    pub(crate) fn outrun_by<'a>(&'a self, winner: &'a Sent) -> impl Iterator<Item = &'a Sent> {
        self.live()
            .filter(move |s| s.at < winner.at && s.entry.member() != winner.entry.member())
    }

    /// When the oldest attempt still unanswered was sent.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.live().map(|s| s.at).min()
    }

    /// Members serving this request now.
    pub(crate) fn busy(&self) -> Vec<usize> {
        self.sent
            .iter()
            .filter(|s| s.live.is_some())
            .map(|s| s.member)
            .collect()
    }

    /// Whether member `index` serves this request now or was tried in this round.
    fn excluded(&self, index: usize) -> bool {
        self.carried.contains(&index)
            || self.sent[self.round_start..]
                .iter()
                .any(|s| s.member == index)
            || self
                .sent
                .iter()
                .any(|s| s.member == index && s.live.is_some())
    }

    /// Whether a member not tried in this round may take the request.
    pub(crate) fn has_fresh(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
    ) -> bool {
        pick_fresh(entries, policy, |i| self.excluded(i)).is_some()
    }

    /// The member for the next attempt: `leader` (for requests only the leader may serve)
    /// unless tried in this round, else one not tried in this round; `None` when the round is
    /// over.
    pub(crate) fn choose(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
        leader: Option<Arc<MemberEntry>>,
    ) -> Option<Arc<MemberEntry>> {
        leader
            .filter(|l| l.is_healthy() && !self.excluded(l.member().index()))
            .or_else(|| pick_fresh(entries, policy, |i| self.excluded(i)))
    }

    /// Ends a round: every member may be tried again, after the returned back-off.
    pub(crate) fn end_round(&mut self, config: &RetryConfig) -> Duration {
        self.rounds = self.rounds.saturating_add(1);
        self.carried = self.busy();
        self.round_start = self.sent.len();
        backoff(config, self.rounds.saturating_add(1))
    }
}

/// The back-off before attempt `next` (2-based): `backoff * 2^(next-2)`, capped, with up to
/// half of it taken off at random so retries of many callers spread out.
pub(crate) fn backoff(config: &RetryConfig, next: u8) -> Duration {
    let exp = u32::from(next.saturating_sub(2)).min(16);
    let full = config
        .backoff
        .saturating_mul(1 << exp)
        .min(config.max_backoff);
    full.mul_f64(1.0 - rand::rng().random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members of the round's attempts and those still serving the request are excluded;
    /// a new round frees those that answered, not those still in flight.
    #[tokio::test]
    async fn rounds_exclude_tried_and_busy_members() {
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker =
            crate::HealthChecker::new(&endpoints, crate::config::Config::default()).expect("ok");
        let entries = checker.entries();
        let policy = AllUnhealthyPolicy::TryAll;
        let mut plan = Plan::new(vec![2]);
        assert!(plan.excluded(2), "avoided in the first round");
        let first = plan.start(entries[0].clone());
        let _second = plan.start(entries[1].clone());
        assert!(
            !plan.has_fresh(&entries, policy),
            "all three tried or avoided"
        );
        plan.finish(first);
        assert!(plan.excluded(0), "tried in this round");
        plan.end_round(&RetryConfig::default());
        assert!(!plan.excluded(0) && !plan.excluded(2), "a new round");
        assert!(plan.excluded(1), "still serving the request");
        assert_eq!(plan.busy(), vec![1]);
        let next = plan.choose(&entries, policy, None).expect("a fresh member");
        assert_ne!(next.member().index(), 1);
        assert_eq!(plan.attempts(), 2);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = RetryConfig {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryConfig::default()
        };
        for _ in 0..100 {
            let b2 = backoff(&c, 2);
            assert!(b2 >= Duration::from_millis(50) && b2 <= Duration::from_millis(100));
            let b3 = backoff(&c, 3);
            assert!(b3 >= Duration::from_millis(100) && b3 <= Duration::from_millis(200));
            assert!(backoff(&c, 10) <= Duration::from_millis(300));
        }
    }
}
