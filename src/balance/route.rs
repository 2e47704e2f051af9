//! Where a write goes: to the leader, or, while the leader's own client path is degraded, to
//! the fastest healthy follower.
//!
//! Why: writes go to the leader (`leader.route_writes`), which saves the hop a follower adds
//! by forwarding them, and keeps a follower's fault away from them. But when only the leader's
//! *client path* degrades (packet loss, a congested link, a slow proxy in front of it) while its
//! peer links are fine, every write waits on that path: with 30 % loss, each lost segment
//! stalls every request on the connection until TCP retransmits it (200 ms, doubling), and write
//! throughput fell to 1 % of steady while reads, which follow latency, went elsewhere. A
//! follower forwards writes to the leader over the healthy peer links, so while the leader
//! answers much slower than its fastest peer, writes go to that peer. They come back gradually:
//! the share of writes the leader takes grows as its latency estimate (fed by the reads it still
//! serves, and decaying in time) returns near its peers', so one good moment does not send every
//! write back to a path that may still be lossy. A leader put back into rotation (ejected for
//! hangs on that path, then re-admitted by a probe on a fresh connection) starts at its peers'
//! estimate, which says nothing of its path yet: its share then also ramps up over [`RAMP`]
//! (without it, every write went back to a path still lossy at each re-admission, and both
//! writers stalled there for a second or more each time).
//!
//! Why pure: the decision is a function of two latency estimates and a random draw, tested
//! here on made-up numbers; [`write_target`] only reads the estimates off the members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::member::MemberEntry;

/// The leader takes every write while its estimate is within this of
/// [`SLOWER_BY`] times its fastest follower's: the leader's own estimate includes its writes
/// (and their disk syncs), the followers' mostly reads.
const WITHIN: Duration = Duration::from_millis(10);
/// How many times the fastest follower's estimate the leader's may be before writes move.
const SLOWER_BY: u32 = 2;
/// Past the tolerance above, the leader's share falls linearly to 0 over this much more
/// latency: a leader 100 ms slower than tolerated (a retransmission takes 200 ms) takes none.
const FADE: Duration = Duration::from_millis(90);

/// How long after its re-admission a leader's share of writes grows from 0 to what its
/// estimate allows.
pub(crate) const RAMP: Duration = Duration::from_secs(4);

/// The share of writes the leader should take, in `[0, 1]`, given its latency estimate and its
/// fastest healthy follower's.
pub(crate) fn leader_share(leader: Duration, fastest_follower: Duration) -> f64 {
    let tolerated = fastest_follower.saturating_mul(SLOWER_BY) + WITHIN;
    let excess = leader.saturating_sub(tolerated);
    (1.0 - excess.as_secs_f64() / FADE.as_secs_f64()).clamp(0.0, 1.0)
}

/// The part of its share a leader re-admitted `since` ago may take: growing linearly from 0 to
/// 1 over [`RAMP`]; 1 for a leader never re-admitted.
pub(crate) fn ramp(since: Option<Duration>) -> f64 {
    match since {
        Some(since) => (since.as_secs_f64() / RAMP.as_secs_f64()).clamp(0.0, 1.0),
        None => 1.0,
    }
}

/// Where one write goes, from the estimates: `None` for the leader (or for any member, without
/// a healthy leader and follower to choose between), `Some(i)` for follower `i`.
///
/// `leader`: the leader's estimate, if it is in rotation (`None` when it has none yet: it is
/// taken as well). `fastest`: the fastest follower in rotation and its estimate. `ramp`: the
/// part of its share a recently re-admitted leader may take ([`ramp`]). `unit`: a uniform
/// sample in `[0, 1)`, drawn only when the leader's share is partial.
pub(crate) fn choose(
    leader: Option<Duration>,
    fastest: Option<(usize, Duration)>,
    ramp: f64,
    unit: impl FnOnce() -> f64,
) -> Option<usize> {
    let (leader, (index, follower)) = (leader?, fastest?);
    let share = leader_share(leader, follower) * ramp;
    if share >= 1.0 || (share > 0.0 && unit() < share) {
        return None;
    }
    Some(index)
}

/// The member a write should go to first: the leader while its client path is as fast as its
/// peers' (see the [module docs](self)), else the fastest healthy follower; an ejected leader's
/// writes go to that follower too. `None` when no leader is known (the balancer then picks).
pub(crate) fn write_target(
    entries: &[Arc<MemberEntry>],
    leader: Option<Arc<MemberEntry>>,
    now: Instant,
) -> Option<Arc<MemberEntry>> {
    let leader = leader?;
    let fastest = entries
        .iter()
        .filter(|e| e.is_healthy() && e.member() != leader.member())
        .filter_map(|e| Some((e, e.load().estimate(now)?)))
        .min_by_key(|(_, latency)| *latency);
    if !leader.is_healthy() {
        return fastest.map(|(e, _)| e.clone());
    }
    let Some(leader_latency) = leader.load().estimate(now) else {
        return Some(leader);
    };
    let (follower, latency) = match fastest {
        Some((e, latency)) => (e, latency),
        None => return Some(leader),
    };
    match choose(
        Some(leader_latency),
        Some((follower.member().index(), latency)),
        ramp(leader.load().since_reset(now)),
        super::unary::jitter,
    ) {
        None => Some(leader),
        Some(_) => {
            tracing::trace!(leader = %leader.member(), ?leader_latency, to = %follower.member(), follower_latency = ?latency, "write sent to a follower: the leader answers slowly");
            Some(follower.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A leader about as fast as its followers takes every write (no random draw); one slower
    /// by a retransmission takes none; in between, a share that grows as it recovers.
    #[test]
    fn the_leader_takes_writes_by_how_near_its_peers_it_answers() {
        assert_eq!(leader_share(ms(1), ms(1)), 1.0);
        assert_eq!(leader_share(ms(12), ms(1)), 1.0, "2x + 10 ms tolerated");
        assert_eq!(leader_share(ms(40), ms(20)), 1.0, "a slower cluster alike");
        assert_eq!(leader_share(ms(200), ms(1)), 0.0, "a retransmission");
        assert_eq!(leader_share(ms(102), ms(1)), 0.0);
        let mut last = 0.0;
        for leader in (12..=100).rev().step_by(8) {
            let share = leader_share(ms(leader), ms(1));
            assert!(share >= last, "{leader} ms: {share} < {last}");
            last = share;
        }
        let half = leader_share(ms(57), ms(1));
        assert!((0.45..=0.55).contains(&half), "{half}");

        let never = || -> f64 { panic!("no draw needed") };
        assert_eq!(choose(Some(ms(2)), Some((1, ms(1))), 1.0, never), None);
        assert_eq!(choose(Some(ms(300)), Some((1, ms(1))), 1.0, never), Some(1));
        assert_eq!(
            choose(None, Some((1, ms(1))), 1.0, never),
            None,
            "no leader"
        );
        assert_eq!(choose(Some(ms(300)), None, 1.0, never), None, "no follower");
        // A partial share is drawn.
        let draws: Vec<Option<usize>> = [0.1, 0.4, 0.6, 0.9]
            .into_iter()
            .map(|u| choose(Some(ms(57)), Some((2, ms(1))), 1.0, move || u))
            .collect();
        assert_eq!(draws, [None, None, Some(2), Some(2)]);
        // Re-admitted 1 s ago: a quarter of what its estimate allows, growing to all by 4 s.
        assert_eq!(ramp(None), 1.0);
        assert_eq!(ramp(Some(ms(0))), 0.0);
        assert_eq!(ramp(Some(ms(1000))), 0.25);
        assert_eq!(ramp(Some(ms(9000))), 1.0);
        let draws: Vec<Option<usize>> = [0.1, 0.3]
            .into_iter()
            .map(|u| {
                choose(
                    Some(ms(2)),
                    Some((2, ms(1))),
                    ramp(Some(ms(1000))),
                    move || u,
                )
            })
            .collect();
        assert_eq!(draws, [None, Some(2)]);
        assert_eq!(choose(Some(ms(2)), Some((2, ms(1))), 0.0, never), Some(2));
    }

    /// Against the members' own load estimates: a leader whose answers take 200 ms sends its
    /// writes to the fastest follower; an ejected leader too; an unknown one, nowhere in
    /// particular.
    #[tokio::test]
    async fn writes_follow_the_estimates_of_the_members() {
        use crate::checker::HealthChecker;
        use crate::config::Config;
        use crate::health::{Outcome, Source};
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
        let entries = checker.entries();
        let now = crate::timing::now();
        let answer = |i: usize, rtt: Duration| {
            entries[i].load().start();
            entries[i].load().finish(Some(rtt), now);
        };
        answer(0, ms(2));
        answer(1, ms(3));
        answer(2, ms(1));
        let target = |leader: usize| {
            write_target(&entries, Some(entries[leader].clone()), now).map(|e| e.member().index())
        };
        assert_eq!(target(0), Some(0), "a healthy leader");
        assert_eq!(
            write_target(&entries, None, now).map(|e| e.member().index()),
            None
        );
        answer(0, ms(200));
        assert_eq!(target(0), Some(2), "the fastest follower");
        checker.record(&checker.members()[0], Source::Passive, Outcome::TcpFailure);
        answer(0, ms(1));
        assert_eq!(target(0), Some(2), "an ejected leader");
    }
}
