//! The pluggable health layer against real etcd: a custom probe ejects a member the built-in
//! probe finds healthy and re-admits it (requests stop and resume; an event sink sees both
//! changes), while a probe that calls every member fit cannot keep a member cut off from the
//! quorum in rotation (the leader and admission checks still run); a custom classifier counts
//! `ResourceExhausted` (a request over etcd's size limit) as a member failure where the
//! default does not; a custom member source adds and drops members; a probe that never ends is
//! cut off as a timeout. Each case starts a fresh 3-member cluster and prints what it measured.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_status, Load};
use etcd_health::config::Config;
use etcd_health::extend::{
    BoxError, BoxFuture, Classify, DefaultClassifier, EventSink, Finding, HttpProbe,
    IntoBoxChannel, MemberSource, Probe, ProbeTarget,
};
use etcd_health::observe::{EventKind, HealthEvent, Origin, Outcome, Source, Status};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
use etcd_health::HealthChecker;
use etcd_health_testing::Cluster;
use http::Uri;

/// A probe that fails member `member` while `on` is set, and otherwise asks the built-in
/// `http` probe (`GET /health`).
#[derive(Debug)]
struct Flagged {
    member: usize,
    on: AtomicBool,
}

impl Probe for Flagged {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            if target.member().index() == self.member && self.on.load(Ordering::Relaxed) {
                return Finding::failure("flagged by the test");
            }
            HttpProbe::HTTP.probe(target).await
        })
    }
}

/// Keeps every status change it is given, in order.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(usize, Status, Source)>>);

impl EventSink for Recorder {
    fn event(&self, event: &HealthEvent) {
        if let EventKind::StatusChanged(t) = &event.kind {
            let mut seen = self.0.lock().unwrap();
            seen.push((event.member.index(), t.to, t.source));
        }
    }
}

impl Recorder {
    fn changes_of(&self, member: usize) -> Vec<(Status, Source)> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(m, ..)| *m == member)
            .map(|&(_, s, src)| (s, src))
            .collect()
    }
}

/// Probes every member every 200 ms, healthy ones too (the seed's default probes only
/// unhealthy members), with short ejections.
fn probing_config() -> Config {
    let mut c = common::fast_config();
    c.checks.active.healthy.interval = Duration::from_millis(200);
    c.checks.active.unhealthy.interval = Duration::from_millis(200);
    c
}

/// Requests member `index` has been sent.
fn requests(checker: &HealthChecker, index: usize) -> u64 {
    checker
        .snapshot()
        .iter()
        .find(|m| m.member.index() == index)
        .map_or(0, |m| m.requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_probe_ejects_and_readmits_a_member_the_builtin_finds_healthy() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let probe = Arc::new(Flagged {
        member: 1,
        on: AtomicBool::new(false),
    });
    let sink = Arc::new(Recorder::default());
    let checker = HealthChecker::builder(probing_config())
        .probe(probe.clone())
        .event_sink(sink.clone())
        .build(&cluster.endpoints())
        .expect("checker");
    let mut events = checker.subscribe();
    let stack = checker.channel();
    let load = Load::start(&stack, 4, Duration::from_secs(2));

    // Flag off: the custom probe defers to `GET /health`, which finds member 1 healthy through
    // several probes, and member 1 takes its share of the reads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = requests(&checker, 1);
    assert!(
        checker
            .snapshot()
            .iter()
            .all(|m| m.status == Status::Healthy),
        "{:#?}",
        checker.snapshot()
    );
    assert!(before > 0, "member 1 took no reads before the flag");
    let probed = checker.snapshot()[1].last_probe.clone().expect("probed");
    assert_eq!(probed.outcome, Outcome::Success, "{probed:?}");

    // Flag on: ejected by the active check, with the probe's own detail.
    probe.on.store(true, Ordering::Relaxed);
    let took = wait_status(
        &mut events,
        &checker,
        1,
        Status::Unhealthy,
        Duration::from_secs(5),
    )
    .await;
    let report = checker.snapshot()[1].last_probe.clone().expect("probed");
    assert_eq!(report.detail, "flagged by the test");
    // The sink saw the ejection by the time the snapshot shows it (called before the
    // broadcast, on the thread that ejected it).
    assert_eq!(
        sink.changes_of(1),
        vec![(Status::Unhealthy, Source::Active)],
        "sink"
    );

    // Out of rotation: no request goes to it while the flag is on (two intervals for the
    // requests in flight at the ejection to end).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out_at = requests(&checker, 1);
    let others_at = requests(&checker, 0) + requests(&checker, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        requests(&checker, 1),
        out_at,
        "requests went to the ejected member"
    );
    let others = requests(&checker, 0) + requests(&checker, 2) - others_at;
    assert!(
        others > 20,
        "the other members served {others} reads meanwhile"
    );
    assert_eq!(checker.snapshot()[1].status, Status::Unhealthy);

    // Flag off: re-admitted by the next probe that passes `GET /health` and the admission
    // check, and it takes reads again.
    probe.on.store(false, Ordering::Relaxed);
    let back = wait_status(
        &mut events,
        &checker,
        1,
        Status::Healthy,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = requests(&checker, 1) - out_at;
    assert!(after > 0, "member 1 took no reads after its re-admission");
    assert_eq!(
        sink.changes_of(1),
        vec![
            (Status::Unhealthy, Source::Active),
            (Status::Healthy, Source::Active)
        ],
        "sink"
    );
    let stats = load.stop().await;
    assert_eq!(stats.failed(), 0, "reads failed while member 1 was out");
    println!(
        "custom probe: ejected {took:?} after the flag, re-admitted {back:?} after it cleared; \
         member 1 took {before} reads before, 0 while out ({others} to the others in 1 s), \
         {after} in 0.5 s after; reads ok={} failed=0",
        stats.ok()
    );
}

/// `ResourceExhausted` is a failure of the member that answered it; the rest as by default.
#[derive(Debug)]
struct Overload(DefaultClassifier);

impl Classify for Overload {
    fn status(&self, status: &tonic::Status) -> Option<Outcome> {
        match status.code() {
            tonic::Code::ResourceExhausted => Some(Outcome::Failure),
            _ => self.0.status(status),
        }
    }
    fn http(&self, status: u16) -> Option<Outcome> {
        self.0.http(status)
    }
}

/// Puts a value over etcd's request limit (gRPC's receive limit, `--max-request-bytes` plus
/// 512 KiB: 2 MiB by default), which the member refuses with `ResourceExhausted`.
async fn put_too_large(stack: &(impl IntoBoxChannel + Clone)) -> tonic::Status {
    let mut kv = KvClient::new(stack.clone().into_box_channel());
    let mut req = tonic::Request::new(PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; 2 * 1024 * 1024 + 4096],
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    kv.put(req).await.expect_err("a put over the limit")
}

fn passive_failures(checker: &HealthChecker) -> Vec<u64> {
    checker
        .snapshot()
        .iter()
        .map(|m| m.totals[1]) // http_failures, active and passive alike
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_classifier_counts_resource_exhausted_against_the_member() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut config = common::fast_config();
    // Keep the probes out of the way: only passive outcomes eject.
    config.checks.active.unhealthy.interval = Duration::from_secs(30);

    // The default: an oversize request is the application's error, nobody is ejected.
    let plain = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let stack = plain.channel();
    for _ in 0..6 {
        let status = put_too_large(&stack).await;
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    }
    assert!(
        plain.snapshot().iter().all(|m| m.status == Status::Healthy),
        "{:#?}",
        plain.snapshot()
    );
    assert_eq!(passive_failures(&plain), vec![0, 0, 0]);
    drop(stack);
    drop(plain);

    // The custom classifier: the member that refused it is ejected at once
    // (`checks.passive.unhealthy.http_failures` = 1), by the passive checks.
    let checker = HealthChecker::builder(config.clone())
        .classifier(Arc::new(Overload(DefaultClassifier::new(&config))))
        .build(&cluster.endpoints())
        .expect("checker");
    let mut events = checker.subscribe();
    let stack = checker.channel();
    let started = Instant::now();
    let status = put_too_large(&stack).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let ejected = loop {
        match tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
            Ok(Ok(HealthEvent {
                member,
                kind: EventKind::StatusChanged(t),
            })) if t.to == Status::Unhealthy => break (member, t),
            Ok(Ok(_)) => {}
            other => panic!("no ejection: {other:?}; {:#?}", checker.snapshot()),
        }
    };
    assert_eq!(ejected.1.source, Source::Passive);
    assert_eq!(ejected.1.outcome, Outcome::Failure);
    // The write was not re-sent (its outcome is unknown to the stack): one failure, one member.
    assert_eq!(passive_failures(&checker).iter().sum::<u64>(), 1);
    println!(
        "custom classifier: default = 6 oversize puts, 0 ejections; custom = member {} ejected \
         {:?} after one oversize put",
        ejected.0.index(),
        started.elapsed()
    );
}

/// A member source whose list the test sets; fails while `failing` is set.
#[derive(Debug, Default)]
struct Listed {
    urls: Mutex<Vec<Uri>>,
    failing: AtomicBool,
}

impl MemberSource for Listed {
    fn name(&self) -> &str {
        "test-registry"
    }
    fn members(&self) -> BoxFuture<'_, Result<Vec<Uri>, BoxError>> {
        Box::pin(async move {
            if self.failing.load(Ordering::Relaxed) {
                return Err("registry down".into());
            }
            Ok(self.urls.lock().unwrap().clone())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_member_source_adds_and_drops_members() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut config = probing_config();
    config.discovery.member_list = false;
    config.discovery.interval = Duration::from_millis(300);
    let source = Arc::new(Listed::default());
    *source.urls.lock().unwrap() = vec![
        cluster.endpoint(1).parse().unwrap(),
        cluster.endpoint(2).parse().unwrap(),
    ];
    let checker = HealthChecker::builder(config)
        .member_source(source.clone())
        .build(&[cluster.endpoint(0)])
        .expect("checker");
    let stack = checker.channel();
    let load = Load::start(&stack, 4, Duration::from_secs(2));

    // Both listed members are added, admitted by the probes, and take reads.
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(8);
    loop {
        let snap = checker.snapshot();
        let custom: Vec<_> = snap
            .iter()
            .filter(|m| matches!(&m.origin, Origin::Custom { source } if source == "test-registry"))
            .collect();
        if custom.len() == 2
            && custom
                .iter()
                .all(|m| m.status == Status::Healthy && m.requests > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listed members not serving: {snap:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let added_in = t0.elapsed();

    // The source fails: nothing changes.
    source.failing.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(checker.members().len(), 3, "{:#?}", checker.snapshot());

    // The source drops member 2: it leaves the state; the seed is never dropped.
    source.urls.lock().unwrap().truncate(1);
    source.failing.store(false, Ordering::Relaxed);
    let gone = Instant::now() + Duration::from_secs(3);
    while checker.members().len() != 2 {
        assert!(
            Instant::now() < gone,
            "member 2 not dropped: {:#?}",
            checker.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members: Vec<String> = checker
        .members()
        .iter()
        .map(|m| m.uri().to_string())
        .collect();
    let url = |i: usize| cluster.endpoint(i).trim_end_matches('/').to_owned();
    assert!(
        members.iter().any(|m| m.trim_end_matches('/') == url(0)),
        "{members:?}"
    );
    assert!(
        members.iter().any(|m| m.trim_end_matches('/') == url(1)),
        "{members:?}"
    );
    let stats = load.stop().await;
    assert_eq!(stats.failed(), 0);
    println!(
        "member source: 2 members added and serving within {:?}; a failed ask kept them; \
         one dropped when no longer listed; reads ok={}",
        added_in,
        stats.ok()
    );
}

/// A probe that always finds the member fit.
#[derive(Debug)]
struct AlwaysFine;

impl Probe for AlwaysFine {
    fn probe<'a>(&'a self, _: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async { Finding::success("fine, says the application") })
    }
}

/// The leader and admission checks run whatever the probe: a custom probe that calls every
/// member fit cannot keep a member cut off from the quorum in rotation, nor re-admit it before
/// it follows the leader again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_probe_cannot_keep_a_member_cut_off_from_the_quorum_in_rotation() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let sink = Arc::new(Recorder::default());
    let checker = HealthChecker::builder(probing_config())
        .probe(Arc::new(AlwaysFine))
        .event_sink(sink.clone())
        .build(&cluster.endpoints())
        .expect("checker");
    let mut events = checker.subscribe();
    let stack = checker.channel();
    let load = Load::start(&stack, 4, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let victim = common::follower(&cluster).await;
    cluster.isolate(victim);
    let out = wait_status(
        &mut events,
        &checker,
        victim,
        Status::Unhealthy,
        Duration::from_secs(8),
    )
    .await;
    // Probed every 200 ms and found "fine" each time, it stays out while cut off (never
    // re-admitted, not even for a moment: the sink sees every change): the admission check
    // finds it follows no leader. (Ejections last 0.5 s.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sink.changes_of(victim),
        vec![(Status::Unhealthy, Source::Active)],
        "re-admitted while cut off"
    );
    let snap = checker.snapshot()[victim].clone();
    assert_eq!(snap.status, Status::Unhealthy, "{snap:#?}");
    let report = snap.last_probe.expect("probed");
    assert!(
        report.detail.starts_with("leader check") || report.detail.starts_with("not re-admitted"),
        "{report:?}"
    );

    cluster.heal(victim);
    let back = wait_status(
        &mut events,
        &checker,
        victim,
        Status::Healthy,
        Duration::from_secs(8),
    )
    .await;
    let stats = load.stop().await;
    assert_eq!(
        stats.failed(),
        0,
        "reads on the cut-off member are retried elsewhere"
    );
    println!(
        "always-fine probe, follower {victim} cut off: ejected after {out:?} (last report \
         {:?}), re-admitted {back:?} after heal; reads ok={} failed=0",
        report.detail,
        stats.ok()
    );
}

/// A probe that never ends for member `member` while `on` is set (an application's probe that
/// ignores its deadline), and otherwise asks the built-in `http` probe.
#[derive(Debug)]
struct Stuck {
    member: usize,
    on: AtomicBool,
}

impl Probe for Stuck {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            if target.member().index() == self.member && self.on.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            HttpProbe::HTTP.probe(target).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_probe_that_never_ends_is_cut_off_as_a_timeout() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let probe = Arc::new(Stuck {
        member: 2,
        on: AtomicBool::new(true),
    });
    let config = probing_config();
    let bound = config.checks.active.timeout * 2;
    let checker = HealthChecker::builder(config)
        .probe(probe.clone())
        .build(&cluster.endpoints())
        .expect("checker");
    let mut events = checker.subscribe();

    // Every probe of member 2 hangs: each is cut off at twice `checks.active.timeout` and
    // counts as a timeout, until the member is ejected for them.
    let took = wait_status(
        &mut events,
        &checker,
        2,
        Status::Unhealthy,
        Duration::from_secs(15),
    )
    .await;
    let report = checker.snapshot()[2].last_probe.clone().expect("probed");
    assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");
    assert!(
        report.detail.contains(&format!("{bound:?}")),
        "{report:?} does not name the bound {bound:?}"
    );

    // The hung probes held no slot and no member's probing: once the probe ends again,
    // member 2 is probed, passes and is back.
    probe.on.store(false, Ordering::Relaxed);
    let back = wait_status(
        &mut events,
        &checker,
        2,
        Status::Healthy,
        Duration::from_secs(10),
    )
    .await;
    println!("probe that never ends: ejected {took:?} after start (cut off at {bound:?}), back {back:?} after it ended");
}
