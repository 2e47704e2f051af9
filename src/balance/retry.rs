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

/// What a method does to the cluster, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes nothing: safe to send again anywhere.
    Read,
    /// May change the cluster: sent again only when certainly not processed.
    Write,
}

impl Class {
    /// The class of a unary gRPC method, by path.
    pub(crate) fn of(path: &str) -> Self {
        match path {
            "/etcdserverpb.KV/Range"
            | "/etcdserverpb.Maintenance/Status"
            | "/etcdserverpb.Maintenance/Hash"
            | "/etcdserverpb.Maintenance/HashKV"
            | "/etcdserverpb.Cluster/MemberList"
            | "/etcdserverpb.Lease/LeaseTimeToLive"
            | "/etcdserverpb.Lease/LeaseLeases"
            | "/etcdserverpb.Auth/Authenticate"
            | "/etcdserverpb.Auth/UserGet"
            | "/etcdserverpb.Auth/UserList"
            | "/etcdserverpb.Auth/RoleGet"
            | "/etcdserverpb.Auth/RoleList"
            | "/v3electionpb.Election/Leader"
            | "/grpc.health.v1.Health/Check" => Class::Read,
            _ => Class::Write,
        }
    }
}

/// One copy of a request sent to a member.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) entry: Arc<MemberEntry>,
    pub(crate) at: Instant,
}

/// The bookkeeping of one request's attempts: which members serve it now, which were tried in
/// the current round, how many attempts and rounds so far. Pure: the dispatch loop asks it
/// where to go next and how long to wait.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Attempts by slot; `None` once answered.
    sent: Vec<Option<Sent>>,
    /// Members tried in this round (and those the caller asked to avoid, in the first).
    round: Vec<usize>,
    rounds: u8,
}

impl Plan {
    pub(crate) fn new(avoid: Vec<usize>) -> Self {
        Self {
            sent: Vec::new(),
            round: avoid,
            rounds: 0,
        }
    }

    /// Attempts started so far.
    pub(crate) fn attempts(&self) -> u8 {
        u8::try_from(self.sent.len()).unwrap_or(u8::MAX)
    }

    /// Records an attempt on `entry`, sent now; returns its slot.
    pub(crate) fn start(&mut self, entry: Arc<MemberEntry>) -> usize {
        self.round.push(entry.member.index());
        self.sent.push(Some(Sent {
            entry,
            at: Instant::now(),
        }));
        self.sent.len() - 1
    }

    /// The attempt in `slot` ended.
    pub(crate) fn finish(&mut self, slot: usize) -> Sent {
        self.sent[slot].take().expect("an attempt ends once")
    }

    /// Attempts still unanswered that were sent before `winner`.
    pub(crate) fn outrun_by<'a>(&'a self, winner: &'a Sent) -> impl Iterator<Item = &'a Sent> {
        self.sent
            .iter()
            .flatten()
            .filter(move |s| s.at < winner.at && s.entry.member != winner.entry.member)
    }

    /// When the oldest attempt still unanswered was sent.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.sent.iter().flatten().map(|s| s.at).min()
    }

    /// Members serving this request now.
    pub(crate) fn busy(&self) -> Vec<usize> {
        self.sent
            .iter()
            .flatten()
            .map(|s| s.entry.member.index())
            .collect()
    }

    fn excluded(&self) -> Vec<usize> {
        let mut out = self.busy();
        out.extend_from_slice(&self.round);
        out
    }

    /// Whether a member not tried in this round may take the request.
    pub(crate) fn has_fresh(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
    ) -> bool {
        pick_fresh(entries, policy, &self.excluded()).is_some()
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
        let excluded = self.excluded();
        leader
            .filter(|l| l.is_healthy() && !excluded.contains(&l.member.index()))
            .or_else(|| pick_fresh(entries, policy, &excluded))
    }

    /// Ends a round: every member may be tried again, after the returned back-off.
    pub(crate) fn end_round(&mut self, config: &RetryConfig) -> Duration {
        self.rounds = self.rounds.saturating_add(1);
        self.round = self.busy();
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

    #[test]
    fn reads_and_writes() {
        assert_eq!(Class::of("/etcdserverpb.KV/Range"), Class::Read);
        assert_eq!(Class::of("/etcdserverpb.Cluster/MemberList"), Class::Read);
        for write in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/DeleteRange",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.KV/Compact",
            "/etcdserverpb.Lease/LeaseGrant",
            "/etcdserverpb.Lease/LeaseRevoke",
            "/etcdserverpb.Cluster/MemberAdd",
            "/etcdserverpb.Auth/UserAdd",
            "/etcdserverpb.Maintenance/Alarm",
            "/v3lockpb.Lock/Unlock",
            "/some.Unknown/Method",
        ] {
            assert_eq!(Class::of(write), Class::Write, "{write}");
        }
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
