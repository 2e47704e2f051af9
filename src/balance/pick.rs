//! Choosing a member: for one request, and for a stream (a watch, a keep-alive) to open on.
//!
//! Why one routine: requests, watches and keep-alives all want "a healthy member, not one of
//! these; with none healthy, what the caller allows". Three routines that each did it (this
//! one, the keep-alive driver's and the watch driver's) had drifted apart (whole snapshots
//! built to pick one, tiers worded three ways). [`choose`] is that routine: tiers of eligible
//! members, the leader first within a tier when the caller wants it, otherwise the less loaded
//! of two drawn at random for a request and any one alike for a stream ([`Spread`]). It reads
//! the members' shared entries and allocates nothing; `src/stream/choose.rs` words the
//! streams' wants.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use crate::config::AllUnhealthyPolicy;
use crate::member::MemberEntry;

/// What a caller asks of the member it gets (see [`choose`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Want<'a> {
    /// Taken first within its tier: the leader, for a stream only the leader serves well (a
    /// keep-alive a follower forwards, and holds while the leader hangs).
    pub(crate) first: Option<usize>,
    /// Members never taken: they already carry the caller's request or stream.
    pub(crate) busy: &'a [usize],
    /// Members taken only when no other will do: they failed the caller lately, or the caller
    /// asked to avoid them ([`AvoidMembers`](super::AvoidMembers)).
    pub(crate) avoid: &'a [usize],
    /// What may be taken out of rotation (see [`Unhealthy`]).
    pub(crate) unhealthy: Unhealthy,
    /// How one member of a tier is drawn.
    pub(crate) spread: Spread,
}

/// How [`choose`] draws one member of a tier (when [`Want::first`] is not in it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Spread {
    /// The less loaded of two drawn at random: requests, whose cost the load foretells.
    #[default]
    Load,
    /// Any one, all alike: streams. Why not by load: a stream lives for minutes or hours and
    /// its cost is not the latency its member had when it opened; with three members, the
    /// less loaded of two never takes the costliest, so every new watch would shun one member
    /// for as long as its estimate stays highest (often the leader, which is also the member
    /// a stream is moved to or from).
    Even,
}

/// What [`choose`] may take out of rotation (an unhealthy member).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Unhealthy {
    /// Nothing (`all_unhealthy = fail-fast`, or the caller decides itself).
    #[default]
    Nothing,
    /// With no member healthy, only [`Want::first`] (the leader), if it is neither busy nor
    /// avoided.
    First,
    /// With no member healthy, any member not busy, those not avoided first (panic mode:
    /// `all_unhealthy = try-all`).
    Any,
    /// Only members out of rotation, even while healthy ones are there (all busy): a hedge's
    /// last resort, sent with [`EvenIfEjected`](super::EvenIfEjected). [`Want::first`] if it
    /// is not busy, even if avoided (an ejected leader is often back already), then those not
    /// avoided, then any not busy.
    LastResort,
}

/// The member for a request or a stream, by tiers: healthy and neither busy nor avoided;
/// healthy and not busy; then, only when no member is healthy, what `want.unhealthy`
/// allows ([`Unhealthy::LastResort`] takes only the members out of rotation, and skips the
/// healthy tiers). Within a tier [`Want::first`] (the leader) if it is in it, else one drawn
/// as [`Want::spread`] says. `None` when no tier has a member.
pub(crate) fn choose(entries: &[Arc<MemberEntry>], want: Want<'_>) -> Option<Arc<MemberEntry>> {
    let busy = |e: &MemberEntry| want.busy.contains(&e.member().index());
    let avoided = |e: &MemberEntry| want.avoid.contains(&e.member().index());
    let first = want
        .first
        .and_then(|i| entries.iter().find(|e| e.member().index() == i));
    let draw = |eligible: &dyn Fn(&MemberEntry) -> bool| match want.spread {
        Spread::Load => p2c(entries, eligible, None),
        Spread::Even => one_of(entries, eligible),
    };
    let tier = |eligible: &dyn Fn(&MemberEntry) -> bool| match first.filter(|e| eligible(e)) {
        Some(e) => Some(e.clone()),
        None => draw(eligible),
    };
    if want.unhealthy != Unhealthy::LastResort {
        if let Some(e) = tier(&|e| e.is_healthy() && !busy(e) && !avoided(e)) {
            return Some(e);
        }
        if let Some(e) = tier(&|e| e.is_healthy() && !busy(e)) {
            return Some(e);
        }
        if entries.iter().any(|e| e.is_healthy()) {
            return None;
        }
    }
    match want.unhealthy {
        Unhealthy::Nothing => None,
        Unhealthy::First => first.filter(|e| !busy(e) && !avoided(e)).cloned(),
        Unhealthy::Any => tier(&|e| !busy(e) && !avoided(e)).or_else(|| tier(&|e| !busy(e))),
        Unhealthy::LastResort => {
            let out = |e: &MemberEntry| !e.is_healthy() && !busy(e);
            first
                .filter(|e| out(e))
                .cloned()
                .or_else(|| draw(&|e| out(e) && !avoided(e)))
                .or_else(|| draw(&out))
        }
    }
}

/// Power of two choices among the healthy members, preferring those not `tried` yet by this
/// request (or to be avoided, see [`AvoidMembers`](super::AvoidMembers)); with none healthy,
/// the policy decides (panic mode also prefers untried ones).
pub(crate) fn pick(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    tried: &[usize],
) -> Result<Arc<MemberEntry>, tonic::Status> {
    let want = Want {
        avoid: tried,
        ..Want::default()
    };
    if let Some(e) = choose(entries, want) {
        return Ok(e);
    }
    crate::metrics::no_healthy_member(policy);
    if policy == AllUnhealthyPolicy::FailFast || entries.is_empty() {
        return Err(no_member(entries));
    }
    let want = Want {
        unhealthy: Unhealthy::Any,
        ..want
    };
    choose(entries, want).ok_or_else(|| no_member(entries))
}

/// A member for which `excluded` (tried in this round or serving this request already) is
/// false: healthy ones first; with none healthy, any (panic mode) unless the policy fails
/// fast (see [`fresh_pool`]). `None` when every candidate is excluded: the round is over.
/// `now` is the caller's reading of the clock, for the members' costs.
pub(crate) fn pick_fresh(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    excluded: impl Fn(usize) -> bool,
    now: Instant,
) -> Option<Arc<MemberEntry>> {
    p2c(entries, fresh_pool(entries, policy, excluded)?, Some(now))
}

/// Whether [`pick_fresh`] would find a member: the same pool, without drawing one.
pub(crate) fn has_fresh(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    excluded: impl Fn(usize) -> bool,
) -> bool {
    fresh_pool(entries, policy, excluded)
        .is_some_and(|eligible| entries.iter().any(|e| eligible(e)))
}

/// Which members [`pick_fresh`] and [`has_fresh`] draw from, as a test of one: those not
/// `excluded`, and healthy while any member is; with none healthy, any of them (panic mode),
/// or none at all (`None`) when the policy fails fast.
fn fresh_pool(
    entries: &[Arc<MemberEntry>],
    policy: AllUnhealthyPolicy,
    excluded: impl Fn(usize) -> bool,
) -> Option<impl Fn(&MemberEntry) -> bool> {
    let healthy_only = entries.iter().any(|e| e.is_healthy());
    if !healthy_only && policy == AllUnhealthyPolicy::FailFast {
        return None;
    }
    Some(move |e: &MemberEntry| (!healthy_only || e.is_healthy()) && !excluded(e.member().index()))
}

/// Power of two choices among the entries `eligible` accepts: two distinct ones drawn at
/// random, the cheaper wins.
///
/// One pass, no allocation (this runs for every request): the two are drawn by reservoir
/// sampling, which keeps each pair of eligible entries equally likely without counting or
/// collecting them first. With one eligible entry it is the choice; with none, `None`. The
/// two costs are read at `now`, or at the clock's reading when `None` (read only when there
/// are two to compare).
fn p2c(
    entries: &[Arc<MemberEntry>],
    eligible: impl Fn(&MemberEntry) -> bool,
    now: Option<Instant>,
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
            let now = now.unwrap_or_else(crate::timing::now);
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

/// One of the entries `eligible` accepts, each alike: one pass, no allocation (reservoir
/// sampling of one). With none, `None`.
fn one_of(
    entries: &[Arc<MemberEntry>],
    eligible: impl Fn(&MemberEntry) -> bool,
) -> Option<Arc<MemberEntry>> {
    let mut rng = rand::rng();
    let mut chosen = None;
    for (seen, e) in entries.iter().filter(|e| eligible(e)).enumerate() {
        if rng.random_range(0..=seen) == 0 {
            chosen = Some(e);
        }
    }
    chosen.cloned()
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
            let e = pick_fresh(
                &entries,
                AllUnhealthyPolicy::TryAll,
                |i| i == 1,
                Instant::now(),
            )
            .expect("one");
            counts[e.member().index()] += 1;
        }
        assert_eq!(counts[0] + counts[1], 0, "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
        assert!((1800..2200).contains(&counts[3]), "{counts:?}");
        assert!(pick_fresh(
            &entries,
            AllUnhealthyPolicy::TryAll,
            |_| true,
            Instant::now()
        )
        .is_none());
        assert!(!has_fresh(&entries, AllUnhealthyPolicy::TryAll, |_| true));
        assert!(has_fresh(&entries, AllUnhealthyPolicy::TryAll, |i| i == 1));
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

    fn index(e: Option<Arc<MemberEntry>>) -> Option<usize> {
        e.map(|e| e.member().index())
    }

    /// A stream that wants the leader gets it while it is healthy, free and not avoided;
    /// otherwise a healthy member that is free, those not avoided first; a member already
    /// carrying the caller's stream never.
    #[tokio::test]
    async fn streams_get_the_leader_first_and_never_a_busy_member() {
        let (_checker, entries) = entries(3);
        let want = |busy, avoid| Want {
            first: Some(2),
            busy,
            avoid,
            unhealthy: Unhealthy::First,
            ..Want::default()
        };
        for _ in 0..20 {
            assert_eq!(index(choose(&entries, want(&[], &[]))), Some(2));
            assert_ne!(index(choose(&entries, want(&[2], &[]))), Some(2), "busy");
            assert_eq!(
                index(choose(&entries, want(&[2], &[0]))),
                Some(1),
                "avoided last"
            );
            assert_eq!(index(choose(&entries, want(&[], &[0, 1]))), Some(2));
        }
        assert_eq!(
            index(choose(&entries, want(&[2, 1], &[0]))),
            Some(0),
            "avoided, still free"
        );
        assert_eq!(
            index(choose(&entries, want(&[0, 1, 2], &[]))),
            None,
            "every one busy"
        );
    }

    /// Without a preference, the less loaded of two (requests are spread by load).
    #[tokio::test]
    async fn without_a_leader_wanted_the_less_loaded_member() {
        let (_checker, entries) = entries(2);
        for _ in 0..5 {
            entries[0].load().start();
        }
        for _ in 0..50 {
            assert_eq!(index(choose(&entries, Want::default())), Some(1));
        }
    }

    /// With no member healthy: nothing, the leader alone (if free and not avoided), or any
    /// free member, those not avoided first; and with one healthy but busy, nothing
    /// unhealthy is taken.
    #[tokio::test(start_paused = true)]
    async fn with_none_healthy_the_caller_decides() {
        use crate::health::{Outcome, Source};
        let (checker, entries) = entries(3);
        for m in checker.members() {
            checker.record(&m, Source::Passive, Outcome::TcpFailure);
        }
        let want = |unhealthy| Want {
            first: Some(2),
            busy: &[],
            avoid: &[],
            unhealthy,
            ..Want::default()
        };
        assert_eq!(index(choose(&entries, want(Unhealthy::Nothing))), None);
        assert_eq!(index(choose(&entries, want(Unhealthy::First))), Some(2));
        assert_eq!(
            index(choose(&entries, want(Unhealthy::Any))),
            Some(2),
            "the leader first"
        );
        let avoided = Want {
            avoid: &[2],
            ..want(Unhealthy::First)
        };
        assert_eq!(
            index(choose(&entries, avoided)),
            None,
            "the leader failed lately"
        );
        let any = Want {
            busy: &[0],
            avoid: &[2],
            ..want(Unhealthy::Any)
        };
        assert_eq!(index(choose(&entries, any)), Some(1));
        let last = Want {
            busy: &[0, 1],
            avoid: &[2],
            ..want(Unhealthy::Any)
        };
        assert_eq!(index(choose(&entries, last)), Some(2), "avoided beats none");
        tokio::time::advance(Config::default().ejection.max * 2).await;
        checker.record(&checker.members()[0], Source::Active, Outcome::Success);
        let busy = Want {
            busy: &[0],
            ..want(Unhealthy::Any)
        };
        assert!(entries[0].is_healthy());
        assert_eq!(
            index(choose(&entries, busy)),
            None,
            "the healthy one is busy"
        );
    }

    /// A last resort is out of rotation and free, even while healthy members are there (all
    /// busy): the leader first even if the caller failed on it lately, then those not
    /// avoided, then any; healthy members never.
    #[tokio::test(start_paused = true)]
    async fn a_last_resort_is_out_of_rotation_the_leader_first_even_if_avoided() {
        use crate::health::{Outcome, Source};
        let (checker, entries) = entries(4);
        for m in &checker.members()[..3] {
            checker.record(m, Source::Passive, Outcome::TcpFailure);
        }
        let want = |first, avoid| Want {
            first,
            busy: &[3],
            avoid,
            unhealthy: Unhealthy::LastResort,
            ..Want::default()
        };
        assert_eq!(index(choose(&entries, want(Some(2), &[2]))), Some(2));
        for _ in 0..20 {
            assert_eq!(index(choose(&entries, want(None, &[0, 2]))), Some(1));
            assert_eq!(
                index(choose(&entries, want(Some(3), &[]))).map(|i| i < 3),
                Some(true)
            );
        }
        assert!(
            choose(&entries, want(None, &[0, 1, 2])).is_some(),
            "avoided beats none"
        );
        let (_checker, healthy) = super::tests::entries(2);
        let last = Want {
            unhealthy: Unhealthy::LastResort,
            ..Want::default()
        };
        assert_eq!(index(choose(&healthy, last)), None, "healthy members never");
    }

    /// Streams are drawn alike whatever the load: the costliest of three, which the less
    /// loaded of two never takes, gets its third of them.
    #[tokio::test]
    async fn a_stream_draws_every_eligible_member_alike_whatever_its_load() {
        let (_checker, entries) = entries(3);
        for _ in 0..5 {
            entries[0].load().start();
        }
        let want = Want {
            spread: Spread::Even,
            ..Want::default()
        };
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[index(choose(&entries, want)).expect("one")] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
