//! Choosing a member for one request.

use std::fmt::Write;
use std::sync::Arc;

use rand::Rng;

use crate::checker::MemberEntry;
use crate::config::AllUnhealthyPolicy;

/// Power of two choices among the healthy members, preferring those not `tried` yet by this
/// request (or to be avoided, see [`AvoidMembers`](super::AvoidMembers)); with none healthy,
/// the policy decides (panic mode also prefers untried ones).
pub(crate) fn pick(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    tried: &[usize],
) -> Result<Arc<MemberEntry>, tonic::Status> {
    let fresh = |e: &&Arc<MemberEntry>| !tried.contains(&e.member.index());
    let healthy: Vec<&Arc<MemberEntry>> = entries.iter().filter(|e| e.is_healthy()).collect();
    let mut candidates: Vec<&Arc<MemberEntry>> = healthy.iter().copied().filter(fresh).collect();
    if candidates.is_empty() {
        candidates = healthy;
    }
    if candidates.is_empty() {
        if policy == AllUnhealthyPolicy::FailFast || entries.is_empty() {
            return Err(no_member(entries));
        }
        candidates = entries.iter().filter(fresh).collect();
        if candidates.is_empty() {
            candidates = entries.iter().collect();
        }
    }
    Ok(p2c(&candidates).clone())
}

/// A member not in `exclude` (tried in this round or serving this request already): healthy
/// ones first; with none healthy, any (panic mode) unless the policy fails fast. `None` when
/// every candidate is excluded: the round is over.
pub(crate) fn pick_fresh(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    exclude: &[usize],
) -> Option<Arc<MemberEntry>> {
    let fresh = |e: &&Arc<MemberEntry>| !exclude.contains(&e.member.index());
    let mut candidates: Vec<&Arc<MemberEntry>> = entries
        .iter()
        .filter(|e| e.is_healthy())
        .filter(fresh)
        .collect();
    if candidates.is_empty() && !entries.iter().any(|e| e.is_healthy()) {
        if policy == AllUnhealthyPolicy::FailFast {
            return None;
        }
        candidates = entries.iter().filter(fresh).collect();
    }
    (!candidates.is_empty()).then(|| p2c(&candidates).clone())
}

fn p2c<'a>(candidates: &[&'a Arc<MemberEntry>]) -> &'a Arc<MemberEntry> {
    if candidates.len() == 1 {
        return candidates[0];
    }
    let mut rng = rand::rng();
    let a = rng.random_range(0..candidates.len());
    let mut b = rng.random_range(0..candidates.len() - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (candidates[a], candidates[b]);
    let now = crate::checker::now();
    if b.load.cost(now) < a.load.cost(now) {
        b
    } else {
        a
    }
}

/// The error callers get when no member may take a request.
fn no_member(entries: &[Arc<MemberEntry>]) -> tonic::Status {
    let mut msg = String::from("etcd-health: no healthy etcd member");
    if entries.is_empty() {
        msg.push_str(" (no members configured)");
    }
    for e in entries {
        let _ = write!(msg, "; {} unhealthy", e.member);
    }
    tonic::Status::unavailable(msg)
}
