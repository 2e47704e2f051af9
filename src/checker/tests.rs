//! Driver tests: the scheduler's lifetime and its probing of unhealthy members, against a
//! plain TCP listener (the etcd-facing behaviour is covered by `tests/` against real etcd).

use std::time::Duration;

use super::*;
use crate::config::ProbeType;
use crate::event::EventKind;
use crate::health::{Outcome, Source, Status};

fn tcp_config() -> Config {
    let mut c = Config::default();
    c.checks.active.probe_type = ProbeType::Tcp;
    c.checks.active.timeout = Duration::from_millis(200);
    c.checks.active.unhealthy.interval = Duration::from_millis(50);
    c.ejection.base = Duration::from_millis(50);
    c.ejection.jitter = 0.0;
    c
}

async fn wait_for(checker: &HealthChecker, status: Status) {
    for _ in 0..200 {
        if checker.snapshot()[0].status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not {status}: {:#?}", checker.snapshot());
}

#[tokio::test]
async fn unhealthy_member_is_probed_until_it_recovers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let checker = HealthChecker::new(&[format!("http://{addr}")], tcp_config()).unwrap();
    let member = checker.members()[0].clone();
    assert_eq!(
        checker.record(&member, Source::Passive, Outcome::TcpFailure),
        Some(Status::Unhealthy)
    );
    // Nothing listens: probes keep failing and the member stays out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = &checker.snapshot()[0];
    assert_eq!(snap.status, Status::Unhealthy);
    assert_eq!(
        snap.last_probe.as_ref().map(|p| p.outcome),
        Some(Outcome::TcpFailure)
    );
    assert!(snap.totals[2] >= 3, "probed repeatedly: {snap:?}");
    // The member comes back on the same port: the next probe re-admits it.
    let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    wait_for(&checker, Status::Healthy).await;
}

#[tokio::test]
async fn healthy_members_are_not_probed_by_default() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    // Nothing listens, but with `healthy.interval = 0` nobody looks.
    let checker = HealthChecker::new(&[format!("http://{addr}")], tcp_config()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let snap = &checker.snapshot()[0];
    assert_eq!(snap.status, Status::Healthy);
    assert!(snap.last_probe.is_none());
}

#[tokio::test]
async fn scheduler_stops_when_the_last_handle_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mut config = tcp_config();
    config.checks.active.healthy.interval = Duration::from_millis(20);
    let checker = HealthChecker::new(&["http://127.0.0.1:9"], config).unwrap();
    let clone = checker.clone();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(metrics.num_alive_tasks() > before, "the scheduler runs");
    drop(checker);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        metrics.num_alive_tasks() > before,
        "a clone keeps it running"
    );
    drop(clone);
    for _ in 0..100 {
        if metrics.num_alive_tasks() == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("scheduler still running");
}

#[tokio::test]
async fn named_states_are_shared_and_forgotten_when_unused() {
    let mut config = tcp_config();
    config.shm_name = Some("checker-unit-test".into());
    let a = HealthChecker::new(&["http://127.0.0.1:1"], config.clone()).unwrap();
    let b = HealthChecker::new(&["http://127.0.0.1:2"], config.clone()).unwrap();
    assert!(a.ptr_eq(&b));
    assert_eq!(a.members().len(), 2, "endpoints are merged");
    drop((a, b));
    let c = HealthChecker::new(&["http://127.0.0.1:3"], config).unwrap();
    assert_eq!(c.members().len(), 1, "a new state once the old one is gone");
}

#[tokio::test]
async fn events_and_snapshot_follow_state_changes() {
    let checker = HealthChecker::new(&["http://127.0.0.1:1", "http://127.0.0.1:2"], {
        let mut c = tcp_config();
        c.checks.active.unhealthy.interval = Duration::ZERO;
        c
    })
    .unwrap();
    let mut events = checker.subscribe();
    let m = checker.members()[1].clone();
    checker.record(&m, Source::Passive, Outcome::Timeout);
    assert_eq!(
        checker.snapshot()[1].status,
        Status::Healthy,
        "passive timeouts are off by default"
    );
    checker.record(&m, Source::Passive, Outcome::Failure);
    match events.recv().await.unwrap().kind {
        EventKind::StatusChanged(t) => {
            assert_eq!(
                (t.to, t.outcome, t.source),
                (Status::Unhealthy, Outcome::Failure, Source::Passive)
            )
        }
        other => panic!("{other:?}"),
    }
    let snap = &checker.snapshot()[1];
    assert_eq!(snap.totals, [0, 1, 0, 1, 0]);
    assert_eq!(snap.ejections, 1);
    assert!(snap.ejected_for.is_some());
    assert_eq!(
        checker.record(
            &checker.members()[0].clone(),
            Source::Passive,
            Outcome::TcpFailure
        ),
        Some(Status::Unhealthy)
    );
    assert!(matches!(
        events.recv().await.unwrap().kind,
        EventKind::StatusChanged(_)
    ));
    assert!(matches!(
        events.recv().await.unwrap().kind,
        EventKind::AllUnhealthy
    ));
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let err = HealthChecker::new(&["http://127.0.0.1:1"], Config::default()).unwrap_err();
    assert!(err.is_no_runtime(), "{err}");
    let err = HealthChecker::new(&[] as &[&str], Config::default()).unwrap_err();
    assert_eq!(err.to_string(), "endpoints: the list is empty");
    let err = HealthChecker::new(&["ftp://x:1"], Config::default()).unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("ftp://x:1"),
        "{err}"
    );
    let mut config = Config::default();
    config.checks.active.unhealthy.tcp_failures = 255;
    let err = HealthChecker::new(&["http://127.0.0.1:1"], config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checks.active.unhealthy.tcp_failures = 255 is out of range (0..=254)"
    );
}

/// A member removed while a request to it hangs: the balancer still holds its entry and
/// charges it the hang. `healthy - 1` underflowed once no member in the list was healthy.
#[tokio::test]
async fn a_hang_on_a_member_that_left_is_not_counted_and_does_not_panic() {
    let mut config = tcp_config();
    config.hang.threshold = 1;
    let checker =
        HealthChecker::new(&["http://127.0.0.1:9", "http://127.0.0.1:10"], config).unwrap();
    let members = checker.members();
    let leaving = checker.entry(members[0].index()).expect("entry");
    // The other member is ejected, then the hanging one leaves: no member left is healthy.
    checker.record(&members[1], Source::Passive, Outcome::TcpFailure);
    assert!(checker.remove_member(members[0].uri()).is_some());
    checker.record_hang(&leaving);
    assert!(leaving.is_healthy(), "not ejected for a hang after it left");
    assert_eq!(checker.members().len(), 1);
}

/// A probe of the application's that panics fails its member's check, and the scheduler goes
/// on probing the member (a panic must not leave it unprobed for ever).
#[tokio::test]
async fn a_panicking_probe_fails_its_check_and_probing_goes_on() {
    use std::sync::atomic::AtomicU64;

    use crate::probe::{BoxFuture, Finding, Probe, ProbeTarget};

    #[derive(Debug, Default)]
    struct Panics(AtomicU64);
    impl Probe for Panics {
        fn probe<'a>(&'a self, _: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                if n % 2 == 0 {
                    panic!("probe {n}");
                }
                Finding::success("fine")
            })
        }
    }

    let probe = Arc::new(Panics::default());
    let mut config = tcp_config();
    config.checks.active.healthy.interval = Duration::from_millis(20);
    let checker = HealthChecker::builder(config)
        .probe(probe.clone())
        .build(&["http://127.0.0.1:9"])
        .unwrap();
    let mut events = checker.subscribe();
    // Probed again after each panic (the first call panics, the third too).
    for _ in 0..300 {
        if probe.0.load(Ordering::Relaxed) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = probe.0.load(Ordering::Relaxed);
    assert!(
        calls >= 4,
        "probed {calls} times: {:#?}",
        checker.snapshot()
    );
    let mut ejected = false;
    while let Ok(event) = events.try_recv() {
        if let EventKind::StatusChanged(t) = event.kind {
            ejected |= t.to == Status::Unhealthy && t.source == Source::Active;
        }
    }
    assert!(ejected, "a panic counts as a failed probe");
}

/// Passive successes on a settled member are counted without the state's lock and folded in
/// before anything reads or changes the state: a snapshot shows every one of them, and a
/// failure after them counts from zero, as it would after successes recorded one by one.
#[tokio::test]
async fn quiet_successes_show_in_snapshots_and_do_not_change_thresholds() {
    let mut config = Config::default();
    config.checks.passive.unhealthy.tcp_failures = 2;
    let checker =
        HealthChecker::new(&["http://127.0.0.1:1", "http://127.0.0.1:2"], config).expect("checker");
    let member = checker.members()[0].clone();
    let entry = checker.inner.entry(member.index()).expect("entry");
    for _ in 0..5 {
        let status = checker.record(&member, Source::Passive, Outcome::Success);
        assert_eq!(status, Some(Status::Healthy));
    }
    assert_eq!(
        entry.take_quiet_successes().map(|(n, _)| n),
        Some(5),
        "counted apart, not under the lock"
    );
    for _ in 0..3 {
        checker.record(&member, Source::Passive, Outcome::Success);
    }
    let snapshot = &checker.snapshot()[0];
    assert_eq!(
        snapshot.totals[0], 3,
        "the ones still apart, folded in for the snapshot"
    );
    let (source, outcome, _) = snapshot.last_outcome.expect("a last outcome");
    assert_eq!((source, outcome), (Source::Passive, Outcome::Success));

    for _ in 0..4 {
        checker.record(&member, Source::Passive, Outcome::Success);
    }
    // The first failure folds the four in first, then counts 1 of 2: still in rotation.
    let status = checker.record(&member, Source::Passive, Outcome::TcpFailure);
    assert_eq!(status, Some(Status::Healthy));
    assert_eq!(checker.snapshot()[0].totals[..3], [7, 0, 1]);
    // Not settled now: a success goes under the lock and resets the failure.
    assert_eq!(
        checker.record(&member, Source::Passive, Outcome::Success),
        Some(Status::Healthy)
    );
    assert_eq!(
        entry.take_quiet_successes(),
        None,
        "recorded under the lock"
    );
    assert_eq!(checker.snapshot()[0].counters.tcp_failures, 0);
    // Two failures in a row eject it, as before.
    checker.record(&member, Source::Passive, Outcome::TcpFailure);
    let status = checker.record(&member, Source::Passive, Outcome::TcpFailure);
    assert_eq!(status, Some(Status::Unhealthy));
    assert_eq!(
        checker.record(&member, Source::Passive, Outcome::Success),
        Some(Status::Unhealthy),
        "out of rotation: never the quiet path"
    );
    assert_eq!(entry.take_quiet_successes(), None);
}
