//! Choosing a member for one request.

use std::fmt::Write;
use std::sync::Arc;

use rand::Rng;

use super::AvoidMembers;
use crate::checker::MemberEntry;
use crate::config::AllUnhealthyPolicy;

/// Power of two choices among the healthy members; with none healthy, the policy decides.
///
/// Members in `avoid` are left out as long as another healthy member remains: a stream that
/// just failed on a member is re-opened elsewhere even before the health state knows.
pub(crate) fn pick(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    avoid: Option<&AvoidMembers>,
) -> Result<Arc<MemberEntry>, tonic::Status> {
    let mut healthy: Vec<&Arc<MemberEntry>> = entries.iter().filter(|e| e.is_healthy()).collect();
    if let Some(avoid) = avoid {
        let preferred: Vec<&Arc<MemberEntry>> = healthy
            .iter()
            .copied()
            .filter(|e| !avoid.contains(&e.member))
            .collect();
        if !preferred.is_empty() {
            healthy = preferred;
        }
    }
    let candidates: Vec<&Arc<MemberEntry>> = if !healthy.is_empty() {
        healthy
    } else {
        match policy {
            AllUnhealthyPolicy::TryAll if !entries.is_empty() => entries.iter().collect(),
            _ => return Err(no_member(entries)),
        }
    };
    Ok(p2c(&candidates).clone())
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
