//! `status`: `Maintenance/Status`, the probe that sees etcd itself.
//!
//! A member is fit when it knows a leader, reports no "no leader" error, is not a learner and
//! belongs to the cluster the other members belong to. This catches a member cut off from the
//! quorum within about one election timeout, which neither TCP nor gRPC health can.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use tonic::transport::Channel;

use super::{grpc_failure, BoxFuture, Finding, Probe, ProbeTarget};
use crate::health::Outcome;

/// The built-in `status` probe: `Maintenance/Status` over the member's probe channel. A
/// success needs a known leader, no "no leader" error, a voter, and (checked by the scheduler
/// against the other members' answers) the cluster id most members report.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusProbe;

impl Probe for StatusProbe {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            match target.channel() {
                Ok(channel) => {
                    let (mut finding, id) = probe(channel.clone(), target.timeout()).await;
                    finding.cluster_id = id;
                    finding
                }
                Err(e) => Finding::failure(e),
            }
        })
    }
}

/// Probes a member. Returns the finding and the member's cluster id, when it answered; the
/// scheduler then holds that id against the one most members report ([`judge_cluster`]).
async fn probe(channel: Channel, timeout: Duration) -> (Finding, Option<u64>) {
    let report = match crate::leader::ask(channel, timeout).await {
        Ok(report) => report,
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            // Some versions need admin rights for Status: the member answered, so it is up.
            return (
                Finding::new(Outcome::Success, "status not permitted; member answered"),
                None,
            );
        }
        Err(status)
            if status.code() == tonic::Code::DeadlineExceeded && status.source().is_none() =>
        {
            return (Finding::timeout(timeout), None)
        }
        Err(status) => return (grpc_failure(&status), None),
    };
    let finding = if report.leader == 0 || report.no_leader_error {
        Finding::leaderless("no leader")
    } else if report.is_learner {
        Finding::new(Outcome::Failure, "member is a learner")
    } else {
        Finding::new(Outcome::Success, format!("leader {:x}", report.leader))
    };
    (finding, Some(report.cluster_id))
}

/// Holds a member's cluster id against the others': `ids` maps member index to the cluster
/// id it last reported, `members` is how many members there are. The expected id is the one
/// a strict majority of all members reports; until there is one, no member is refused for its
/// id. Deciding by majority, rather than by whichever member answered first, keeps a stray
/// member of another cluster from ever becoming the reference and ejecting the real ones.
pub(crate) fn judge_cluster(
    finding: Finding,
    got: Option<u64>,
    ids: &HashMap<usize, u64>,
    members: usize,
) -> Finding {
    let (Some(got), Some(Outcome::Success)) = (got, finding.outcome) else {
        return finding;
    };
    match majority(ids, members) {
        Some(want) if want != got => Finding::new(
            Outcome::Failure,
            format!("cluster id {got:x}, expected {want:x} (reported by most members)"),
        ),
        _ => finding,
    }
}

/// The cluster id reported by more than half of `members`, if any.
fn majority(ids: &HashMap<usize, u64>, members: usize) -> Option<u64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for id in ids.values() {
        *counts.entry(*id).or_default() += 1;
    }
    counts
        .into_iter()
        .find(|(_, n)| n * 2 > members)
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Finding {
        Finding::new(Outcome::Success, "leader 1")
    }

    #[test]
    fn the_majority_id_decides() {
        let ids: HashMap<usize, u64> = [(0, 7), (1, 7), (2, 7), (3, 9)].into();
        assert_eq!(
            judge_cluster(ok(), Some(7), &ids, 4).outcome,
            Some(Outcome::Success)
        );
        let odd = judge_cluster(ok(), Some(9), &ids, 4);
        assert_eq!(odd.outcome, Some(Outcome::Failure));
        assert!(odd.detail.contains("expected 7"), "{}", odd.detail);
    }

    #[test]
    fn no_verdict_on_the_id_without_a_majority() {
        // The stray member answered first: it must not become the reference.
        let ids: HashMap<usize, u64> = [(3, 9)].into();
        assert_eq!(
            judge_cluster(ok(), Some(9), &ids, 4).outcome,
            Some(Outcome::Success)
        );
        let ids: HashMap<usize, u64> = [(0, 7), (3, 9)].into();
        assert_eq!(
            judge_cluster(ok(), Some(7), &ids, 4).outcome,
            Some(Outcome::Success)
        );
        let ids: HashMap<usize, u64> = [(0, 7), (1, 7), (3, 9)].into();
        assert_eq!(
            judge_cluster(ok(), Some(9), &ids, 4).outcome,
            Some(Outcome::Success)
        );
        assert_eq!(
            judge_cluster(ok(), Some(9), &ids, 3).outcome,
            Some(Outcome::Failure)
        );
    }

    #[test]
    fn other_failures_stand() {
        let ids: HashMap<usize, u64> = [(0, 7), (1, 7)].into();
        let f = judge_cluster(
            Finding::new(Outcome::Failure, "no leader"),
            Some(7),
            &ids,
            2,
        );
        assert_eq!(f.detail, "no leader");
    }
}
