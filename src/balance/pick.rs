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
    let fresh = |e: &MemberEntry| !tried.contains(&e.member().index());
    if let Some(e) = p2c(entries, |e| e.is_healthy() && fresh(e)) {
        return Ok(e);
    }
    if let Some(e) = p2c(entries, MemberEntry::is_healthy) {
        return Ok(e);
    }
    crate::metrics::no_healthy_member(policy);
    if policy == AllUnhealthyPolicy::FailFast || entries.is_empty() {
        return Err(no_member(entries));
    }
    p2c(entries, fresh)
        .or_else(|| p2c(entries, |_| true))
        .ok_or_else(|| no_member(entries))
}

/// A member for which `excluded` (tried in this round or serving this request already) is
/// false: healthy ones first; with none healthy, any (panic mode) unless the policy fails
/// fast. `None` when every candidate is excluded: the round is over.
pub(crate) fn pick_fresh(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    excluded: impl Fn(usize) -> bool,
) -> Option<Arc<MemberEntry>> {
    let fresh = |e: &MemberEntry| !excluded(e.member().index());
    if let Some(e) = p2c(entries, |e| e.is_healthy() && fresh(e)) {
        return Some(e);
    }
    if entries.iter().any(|e| e.is_healthy()) || policy == AllUnhealthyPolicy::FailFast {
        return None;
    }
    p2c(entries, fresh)
}

/// Power of two choices among the entries `eligible` accepts: two distinct ones drawn at
/// random, the cheaper wins.
///
/// One pass, no allocation (this runs for every request): the two are drawn by reservoir
/// sampling, which keeps each pair of eligible entries equally likely without counting or
/// collecting them first. With one eligible entry it is the choice; with none, `None`.
fn p2c(
    entries: &[Arc<MemberEntry>],
    eligible: impl Fn(&MemberEntry) -> bool,
) -> Option<Arc<MemberEntry>> {
    let mut pair: [Option<&Arc<MemberEntry>>; 2] = [None, None];
    let mut rng = None;
    for (seen, e) in entries.iter().filter(|e| eligible(e)).enumerate() {
        if seen < 2 {
            pair[seen] = Some(e);
        } else {
            let j = rng.get_or_insert_with(rand::rng).random_range(0..=seen);
            if j < 2 {
                pair[j] = Some(e);
            }
        }
    }
    match pair {
        [Some(a), Some(b)] => {
            // Which of the two is drawn first must not favour the earlier entry on ties.
            let (a, b) = match rng.get_or_insert_with(rand::rng).random::<bool>() {
                true => (a, b),
                false => (b, a),
            };
            let now = crate::checker::now();
            Some(
                if b.load().cost(now) < a.load().cost(now) {
                    b
                } else {
                    a
                }
                .clone(),
            )
        }
        [a, _] => a.cloned(),
    }
}

/// The error callers get when no member may take a request.
fn no_member(entries: &[Arc<MemberEntry>]) -> tonic::Status {
    let mut msg = String::from("etcd-health: no healthy etcd member");
    if entries.is_empty() {
        msg.push_str(" (no members configured)");
    }
    for e in entries {
        let _ = write!(msg, "; {} unhealthy", e.member());
    }
    tonic::Status::unavailable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::HealthChecker;
    use crate::config::Config;

    fn entries(n: u16) -> (HealthChecker, Arc<Vec<Arc<MemberEntry>>>) {
        let endpoints: Vec<String> = (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
        let entries = checker.entries();
        (checker, entries)
    }

    /// Reservoir sampling draws each pair of eligible members equally often, and never an
    /// excluded one. Costs 5x, 3x and 1x (requests in flight) make the winner of each pair
    /// known: {0,2} -> 2, {0,3} -> 3, {2,3} -> 3, so 2 wins a third of the draws, 3 the rest.
    #[tokio::test]
    async fn draws_every_pair_of_eligible_members_alike_and_never_an_excluded_one() {
        let (_checker, entries) = entries(4);
        for _ in 0..4 {
            entries[0].load().start();
        }
        for _ in 0..2 {
            entries[2].load().start();
        }
        let mut counts = [0usize; 4];
        for _ in 0..3000 {
            let e = pick_fresh(&entries, AllUnhealthyPolicy::TryAll, |i| i == 1).expect("one");
            counts[e.member().index()] += 1;
        }
        assert_eq!(counts[0] + counts[1], 0, "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
        assert!((1800..2200).contains(&counts[3]), "{counts:?}");
        assert!(pick_fresh(&entries, AllUnhealthyPolicy::TryAll, |_| true).is_none());
    }

    /// Of the two drawn, the cheaper wins: with two candidates, always the idle one.
    #[tokio::test]
    async fn the_cheaper_of_two_wins() {
        let (_checker, entries) = entries(2);
        for _ in 0..5 {
            entries[0].load().start();
        }
        for _ in 0..200 {
            let e = pick(&entries, AllUnhealthyPolicy::TryAll, &[]).expect("one");
            assert_eq!(e.member().index(), 1);
        }
        // Tried already: the busy one is the only fresh choice.
        let e = pick(&entries, AllUnhealthyPolicy::TryAll, &[1]).expect("one");
        assert_eq!(e.member().index(), 0);
    }
}
