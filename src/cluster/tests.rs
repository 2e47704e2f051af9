//! The cluster state on its own: events in, effects out, no clock, no lock, no I/O.

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;

use super::state::{ClusterState, Effect, Event, Rules, Touched};
use crate::config::Config;
use crate::health::{Outcome, Source, Status};
use crate::leader::{Reply, Report};
use crate::member::Origin;

fn config() -> Config {
    let mut c = Config::default();
    c.checks.passive.unhealthy.http_failures = 1;
    c.checks.passive.unhealthy.tcp_failures = 1;
    c.checks.passive.unhealthy.timeouts = 1;
    c.checks.passive.healthy.successes = 1;
    c.checks.active.unhealthy.http_failures = 1;
    c.checks.active.healthy.successes = 1;
    c.hang.threshold = 1;
    c.ejection.base = Duration::from_millis(100);
    c.ejection.jitter = 0.0;
    c.leader.election_interval = Duration::from_millis(50);
    c
}

/// A state with `n` members added at `t0`, given by the caller.
fn state(n: usize, t0: Instant) -> ClusterState {
    let mut s = ClusterState::new(Rules::new(&config()), 7);
    for i in 0..n {
        let effects = s.handle(join(&format!("http://127.0.0.1:{}", 2379 + i)), t0);
        assert!(matches!(effects.list[0], Effect::Added { .. }));
    }
    s
}

fn join(uri: &str) -> Event {
    Event::Join {
        uri: uri.parse().unwrap(),
        origin: Origin::Seed,
        pending: false,
        seed: true,
        reason: "test".to_owned(),
    }
}

fn outcome(index: usize, outcome: Outcome) -> Event {
    Event::Outcome {
        index,
        source: Source::Passive,
        outcome,
    }
}

fn healthy(s: &ClusterState) -> Vec<bool> {
    s.members().iter().map(|m| m.is_healthy()).collect()
}

fn status(id: u64, leader: u64) -> Reply {
    Reply::Status(Report {
        id,
        cluster_id: 7,
        leader,
        term: 2,
        committed: 10,
        applied: 10,
        is_learner: false,
        no_leader_error: false,
    })
}

#[test]
fn a_success_on_a_healthy_member_has_no_effect_and_allocates_no_list() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    let effects = s.handle(outcome(1, Outcome::Success), t0);
    assert!(effects.list.is_empty());
    assert_eq!(
        effects.list.capacity(),
        0,
        "the request path's event allocates nothing"
    );
    assert_eq!(effects.touched, Touched::None);
}

#[test]
fn an_ejection_is_one_status_effect_and_touches_the_member() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    let effects = s.handle(outcome(1, Outcome::Failure), t0);
    assert_eq!(effects.touched, Touched::One(1));
    let [Effect::Status { member, transition }] = &effects.list[..] else {
        panic!("{effects:?}");
    };
    assert_eq!(member.index(), 1);
    assert_eq!(
        (transition.from, transition.to),
        (Status::Healthy, Status::Unhealthy)
    );
    assert_eq!(healthy(&s), [true, false, true]);
    let m = s.member(1).unwrap().mirror();
    assert!(!m.healthy);
    assert!(m.ejected);
    let until = s.member(1).unwrap().health().ejected_until();
    assert_eq!(until, Some(t0 + Duration::from_millis(100)));
    assert_eq!(s.poll_timeout(), until);
}

#[test]
fn an_ejected_member_is_due_when_its_ejection_ends() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    s.handle(outcome(1, Outcome::Failure), t0);
    let ends = t0 + Duration::from_millis(100);
    assert_eq!(s.poll_timeout(), Some(ends));
    let early = s.handle(Event::Timeout, ends - Duration::from_millis(1));
    assert!(early.list.is_empty(), "{early:?}");
    assert_eq!(early.touched, Touched::None);
    assert!(s.member(1).unwrap().mirror().ejected);
    let due = s.handle(Event::Timeout, ends);
    assert_eq!(due.list, [Effect::EjectionEnded { index: 1 }]);
    assert_eq!(due.touched, Touched::One(1));
    assert!(!s.member(1).unwrap().mirror().ejected);
    assert_eq!(s.poll_timeout(), None, "fired once");
    // Time alone re-admits nobody: a success does, from that instant on.
    assert_eq!(healthy(&s), [true, false, true]);
    let back = s.handle(
        Event::Probe {
            index: 1,
            outcome: Outcome::Success,
        },
        ends,
    );
    assert!(
        matches!(&back.list[..], [Effect::Status { transition, .. }, Effect::RestartLoad { index: 1 }] if transition.to == Status::Healthy),
        "{back:?}"
    );
}

#[test]
fn the_earliest_ejection_end_is_the_deadline_until_its_member_is_back_or_gone() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    s.handle(outcome(0, Outcome::Failure), t0);
    let later = t0 + Duration::from_millis(30);
    s.handle(outcome(1, Outcome::Failure), later);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    // A success after its ejection re-admits member 0 before any timeout: its timer goes.
    let after = t0 + Duration::from_millis(200);
    s.handle(outcome(0, Outcome::Success), after);
    assert_eq!(healthy(&s), [true, false, true]);
    let ends = later + Duration::from_millis(100);
    assert_eq!(s.poll_timeout(), Some(ends), "past: member 1 is due");
    s.handle(
        Event::Leave {
            uri: "http://127.0.0.1:2380".parse().unwrap(),
            unseed: false,
            reason: "test".to_owned(),
        },
        after,
    );
    assert_eq!(s.poll_timeout(), None, "a member gone takes its timer");
    assert!(s.handle(Event::Timeout, after).list.is_empty());
}

/// A pending member may be admitted from the instant it joins, an ejection of no time ends as
/// it starts, and the leader's clocks (a suspect's confirmation, an election's length) wait for
/// leader rounds: none of them is a deadline.
#[test]
fn nothing_else_is_due_with_time_alone() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    s.handle(
        Event::LeaderRound {
            replies: vec![(0, status(10, 10)), (1, status(11, 10)), (2, status(12, 0))],
            elapsed: Duration::from_millis(5),
            at: SystemTime::now(),
        },
        t0,
    );
    assert!(s.leader_unsettled(), "member 2 is a suspect");
    s.handle(
        Event::Join {
            uri: "http://127.0.0.1:2400".parse().unwrap(),
            origin: Origin::MemberList {
                name: "m4".to_owned(),
                id: 4,
            },
            pending: true,
            seed: false,
            reason: "listed".to_owned(),
        },
        t0,
    );
    assert!(!s.member(3).unwrap().mirror().ejected);
    assert_eq!(s.poll_timeout(), None);

    let mut c = config();
    c.ejection.base = Duration::ZERO;
    let mut s = ClusterState::new(Rules::new(&c), 7);
    s.handle(join("http://127.0.0.1:2379"), t0);
    let ejected = s.handle(outcome(0, Outcome::Failure), t0);
    assert!(matches!(&ejected.list[..], [Effect::Status { .. }, ..]));
    assert_eq!(s.poll_timeout(), None);
    assert!(!s.member(0).unwrap().mirror().ejected);
}

#[test]
fn a_readmission_restarts_the_load_and_the_last_ejection_says_all_are_out() {
    let t0 = Instant::now();
    let mut s = state(2, t0);
    s.handle(outcome(0, Outcome::TcpFailure), t0);
    let effects = s.handle(outcome(1, Outcome::TcpFailure), t0);
    assert!(
        matches!(&effects.list[..], [Effect::Status { .. }, Effect::AllUnhealthy { member }] if member.index() == 1),
        "{effects:?}"
    );
    // Too early: the ejection holds.
    let early = s.handle(outcome(0, Outcome::Success), t0 + Duration::from_millis(50));
    assert!(early.list.is_empty(), "{early:?}");
    let back = s.handle(
        outcome(0, Outcome::Success),
        t0 + Duration::from_millis(150),
    );
    assert!(
        matches!(&back.list[..], [Effect::Status { transition, .. }, Effect::RestartLoad { index: 0 }] if transition.to == Status::Healthy),
        "{back:?}"
    );
}

#[test]
fn a_hang_is_counted_only_while_a_majority_stays_in_rotation() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    let effects = s.handle(Event::Hang { index: 0 }, t0);
    assert!(
        matches!(
            &effects.list[..],
            [
                Effect::HangCounted { index: 0 },
                Effect::Status { .. },
                Effect::Abandon { index: 0 }
            ]
        ),
        "{effects:?}"
    );
    // Two of three left: ejecting one more would leave a minority.
    let effects = s.handle(Event::Hang { index: 1 }, t0);
    assert!(effects.list.is_empty(), "{effects:?}");
    assert_eq!(healthy(&s), [false, true, true]);
    // A hard failure is not held back.
    s.handle(outcome(1, Outcome::TcpFailure), t0);
    assert_eq!(healthy(&s), [false, false, true]);
}

#[test]
fn a_hang_on_a_member_that_left_changes_nothing() {
    let t0 = Instant::now();
    let mut s = state(2, t0);
    s.handle(outcome(1, Outcome::TcpFailure), t0);
    let left = s.handle(
        Event::Leave {
            uri: "http://127.0.0.1:2379".parse().unwrap(),
            unseed: true,
            reason: "test".to_owned(),
        },
        t0,
    );
    assert!(
        matches!(&left.list[..], [Effect::WantDns, Effect::Removed { .. }]),
        "{left:?}"
    );
    assert!(s.handle(Event::Hang { index: 0 }, t0).list.is_empty());
    assert!(s.seeds().len() == 1 && s.members().len() == 1);
}

#[test]
fn a_member_joins_once_and_a_new_seed_wakes_discovery() {
    let t0 = Instant::now();
    let mut s = state(1, t0);
    let again = s.handle(join("http://127.0.0.1:2379"), t0);
    assert!(again.list.is_empty(), "{again:?}");
    let found = s.handle(
        Event::Join {
            uri: "http://127.0.0.1:2400".parse().unwrap(),
            origin: Origin::MemberList {
                name: "m4".to_owned(),
                id: 4,
            },
            pending: true,
            seed: false,
            reason: "listed".to_owned(),
        },
        t0,
    );
    assert!(matches!(
        &found.list[..],
        [Effect::Added { pending: true, .. }]
    ));
    let m = s.member(1).unwrap().mirror();
    assert!(m.pending && !m.healthy);
    // Its first success admits it: no longer pending.
    s.handle(
        Event::Probe {
            index: 1,
            outcome: Outcome::Success,
        },
        t0,
    );
    assert!(s.member(1).unwrap().mirror().healthy);
    assert!(!s.member(1).unwrap().mirror().pending);
    let seeded = s.handle(join("http://127.0.0.1:2401"), t0);
    assert!(
        matches!(
            &seeded.list[..],
            [Effect::Added { .. }, Effect::WantDns, Effect::WantDiscovery]
        ),
        "{seeded:?}"
    );
}

#[test]
fn a_member_cut_off_is_ejected_with_a_report_and_its_requests_abandoned() {
    let t0 = Instant::now();
    let mut s = state(3, t0);
    let round = |s: &mut ClusterState, ms: u64| {
        s.handle(
            Event::LeaderRound {
                replies: vec![(0, status(10, 10)), (1, status(11, 10)), (2, status(12, 0))],
                elapsed: Duration::from_millis(5),
                at: SystemTime::now(),
            },
            t0 + Duration::from_millis(ms),
        )
    };
    let first = round(&mut s, 0);
    assert!(
        matches!(&first.list[..], [Effect::LeaderChanged { member: Some(m), leader_id: Some(10), .. }] if m.index() == 0),
        "{first:?}"
    );
    assert!(s.leader_changed_since(t0 - Duration::from_millis(1)));
    assert!(!s.leader_changed_since(t0));
    assert!(s.leader_unsettled(), "member 2 is a suspect");
    let confirmed = round(&mut s, 150);
    assert!(
        matches!(
            &confirmed.list[..],
            [Effect::CutOff { index: 2, report }, Effect::Status { .. }, Effect::Abandon { index: 2 }]
                if report.detail.contains("knows no leader")
        ),
        "{confirmed:?}"
    );
    assert_eq!(healthy(&s), [true, true, false]);
}

#[test]
fn the_cluster_identity_is_kept_once_and_forgotten_with_its_member() {
    let t0 = Instant::now();
    let mut s = state(2, t0);
    s.handle(Event::ClusterListed { id: 5 }, t0);
    s.handle(Event::ClusterListed { id: 6 }, t0);
    assert_eq!(s.cluster_id(), Some(5), "adopted once");
    s.handle(Event::ClusterReported { index: 0, id: 5 }, t0);
    s.handle(Event::ClusterReported { index: 9, id: 5 }, t0);
    assert_eq!(
        s.reported_clusters().len(),
        1,
        "only members present report"
    );
    s.handle(Event::MemberId { index: 0, id: 10 }, t0);
    s.handle(
        Event::Leave {
            uri: "http://127.0.0.1:2379".parse().unwrap(),
            unseed: false,
            reason: "test".to_owned(),
        },
        t0,
    );
    assert!(s.reported_clusters().is_empty());
    assert!(s.member_ids().is_empty());
}

// === property tests ===

#[derive(Clone, Debug)]
enum Op {
    Outcome(usize, Source, Outcome),
    Hang(usize),
    Wait(u64),
    Join(u16),
    Leave(u16),
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::TcpFailure),
        Just(Outcome::Timeout),
        Just(Outcome::Hang),
    ];
    let source = prop_oneof![Just(Source::Active), Just(Source::Passive)];
    prop_oneof![
        6 => (0..6usize, source, outcome).prop_map(|(i, s, o)| Op::Outcome(i, s, o)),
        3 => (0..6usize).prop_map(Op::Hang),
        3 => (0..400u64).prop_map(Op::Wait),
        1 => (0..6u16).prop_map(Op::Join),
        1 => (0..6u16).prop_map(Op::Leave),
        1 => Just(Op::Timeout),
    ]
}

proptest! {
    /// Over any sequence of outcomes, hangs, waits and membership changes: every status change
    /// yields exactly one `Status` effect naming it (and no effect names a change that did not
    /// happen); every re-admission restarts the member's load once; an ejection for a hang
    /// leaves a strict majority in rotation; `AllUnhealthy` comes exactly when the last member
    /// in rotation leaves it; the members' mirrors agree with their machines.
    #[test]
    fn every_change_is_published_once_and_hangs_never_take_a_majority(
        ops in proptest::collection::vec(op(), 1..120),
        seed in any::<u64>(),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = ClusterState::new(Rules::new(&config()), seed);
        for i in 0..3u16 {
            s.handle(join(&format!("http://127.0.0.1:{}", 2379 + i)), now);
        }
        for op in ops {
            let before: Vec<(usize, bool)> =
                s.members().iter().map(|m| (m.member().index(), m.is_healthy())).collect();
            let event = match op {
                Op::Outcome(i, source, outcome) => Event::Outcome { index: i, source, outcome },
                Op::Hang(i) => Event::Hang { index: i },
                Op::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    continue;
                }
                Op::Join(p) => join(&format!("http://127.0.0.1:{}", 2379 + p)),
                Op::Leave(p) => Event::Leave {
                    uri: format!("http://127.0.0.1:{}", 2379 + p).parse().unwrap(),
                    unseed: true,
                    reason: "test".to_owned(),
                },
                Op::Timeout => Event::Timeout,
            };
            let was_hang = matches!(op, Op::Hang(_));
            let effects = s.handle(event, now);
            let after: Vec<(usize, bool)> =
                s.members().iter().map(|m| (m.member().index(), m.is_healthy())).collect();
            let changed: Vec<(usize, bool)> = after
                .iter()
                .filter(|(i, h)| before.iter().any(|(j, g)| i == j && g != h))
                .copied()
                .collect();
            let published: Vec<(usize, bool)> = effects
                .list
                .iter()
                .filter_map(|e| match e {
                    Effect::Status { member, transition } => {
                        Some((member.index(), transition.to.is_healthy()))
                    }
                    _ => None,
                })
                .collect();
            prop_assert_eq!(&changed, &published, "{:?}", effects);
            let restarts: Vec<usize> = effects
                .list
                .iter()
                .filter_map(|e| match e {
                    Effect::RestartLoad { index } => Some(*index),
                    _ => None,
                })
                .collect();
            let readmitted: Vec<usize> =
                changed.iter().filter(|(_, h)| *h).map(|(i, _)| *i).collect();
            prop_assert_eq!(readmitted, restarts);
            if was_hang && changed.iter().any(|(_, h)| !h) {
                let in_rotation = after.iter().filter(|(_, h)| *h).count();
                prop_assert!(in_rotation * 2 > after.len(), "{:?}", after);
            }
            let all_out = effects.list.iter().any(|e| matches!(e, Effect::AllUnhealthy { .. }));
            let last_left = !changed.is_empty()
                && after.iter().all(|(_, h)| !h)
                && before.iter().any(|(_, h)| *h);
            prop_assert_eq!(all_out, last_left);
            for m in s.members() {
                let mirror = m.mirror();
                prop_assert_eq!(mirror.healthy, m.is_healthy());
                prop_assert_eq!(m.health().ejected_until().is_some(), !m.is_healthy());
                prop_assert!(!(mirror.ejected && m.is_healthy()));
            }
            if !changed.is_empty() {
                prop_assert!(effects.touched != Touched::None);
            }
        }
    }
}

proptest! {
    /// Over any sequence of events and waits: the deadline is never before the last `now`
    /// unless something is due then, and `Timeout` at that `now` fires exactly the ejections
    /// that ended (and nothing when none did), leaving a deadline after `now`. The state's
    /// timer on a member is its health machine's ejection end, and its mirror says ejected
    /// exactly while that timer runs.
    #[test]
    fn the_deadline_is_never_past_unless_something_is_due(
        ops in proptest::collection::vec(op(), 1..120),
        seed in any::<u64>(),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = ClusterState::new(Rules::new(&config()), seed);
        for i in 0..3u16 {
            s.handle(join(&format!("http://127.0.0.1:{}", 2379 + i)), now);
        }
        for op in ops {
            let event = match op {
                Op::Outcome(i, source, outcome) => Event::Outcome { index: i, source, outcome },
                Op::Hang(i) => Event::Hang { index: i },
                Op::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    continue;
                }
                Op::Join(p) => join(&format!("http://127.0.0.1:{}", 2379 + p)),
                Op::Leave(p) => Event::Leave {
                    uri: format!("http://127.0.0.1:{}", 2379 + p).parse().unwrap(),
                    unseed: false,
                    reason: "test".to_owned(),
                },
                // Fired below whenever something is due: time may pass with nothing fired.
                Op::Timeout => continue,
            };
            s.handle(event, now);
            for m in s.members() {
                if let Some(ends) = m.ejection_ends() {
                    prop_assert_eq!(Some(ends), m.health().ejected_until());
                    prop_assert!(!m.is_healthy());
                }
                prop_assert_eq!(m.mirror().ejected, m.ejection_ends().is_some());
            }
            let due: Vec<usize> = s
                .members()
                .iter()
                .filter(|m| m.ejection_ends().is_some_and(|at| at <= now))
                .map(|m| m.member().index())
                .collect();
            let past = s.poll_timeout().is_some_and(|at| at <= now);
            prop_assert_eq!(past, !due.is_empty());
            let fired = s.handle(Event::Timeout, now);
            let ended: Vec<Option<usize>> = fired
                .list
                .iter()
                .map(|e| match e {
                    Effect::EjectionEnded { index } => Some(*index),
                    _ => None,
                })
                .collect();
            let due: Vec<Option<usize>> = due.into_iter().map(Some).collect();
            prop_assert_eq!(&ended, &due);
            prop_assert_eq!(fired.touched == Touched::None, due.is_empty());
            if let Some(at) = s.poll_timeout() {
                prop_assert!(at > now, "{:?} after a timeout at {:?}", at, now);
            }
        }
    }
}
