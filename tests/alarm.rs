//! Cluster-wide alarms against a real cluster: a NOSPACE alarm is raised for the whole cluster
//! and makes etcd's bare `/health` answer 503 on every member. Ejecting every member for it
//! would switch to panic mode, or with `fail_fast` refuse the reads etcd still serves; so the
//! probes leave alarms out, and the writes etcd refuses with NOSPACE do not count against the
//! member that said so.

mod common;

use std::time::Duration;

use common::*;
use etcd_health::config::{AllUnhealthyPolicy, ProbeType};
use etcd_health::observe::{Outcome, Status};
use etcd_health::proto::etcdserverpb::{
    alarm_request::AlarmAction, kv_client::KvClient, maintenance_client::MaintenanceClient,
    AlarmRequest, AlarmType, RangeRequest,
};
use etcd_health_testing::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status line of a plain `GET path` to member `i`.
async fn raw_status(cluster: &Cluster, i: usize, path: &str) -> String {
    let authority = cluster.endpoint(i).trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer.lines().next().unwrap_or_default().to_owned()
}

async fn alarm(cluster: &Cluster, action: AlarmAction) {
    let channel = tonic::transport::Endpoint::from_shared(cluster.endpoint(0))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    MaintenanceClient::new(channel)
        .alarm(AlarmRequest {
            action: action as i32,
            member_id: cluster.member_id(1),
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .expect("alarm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nospace_alarm_ejects_no_member() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut config = fast_config();
    config.checks.active.probe_type = ProbeType::Http;
    config.checks.active.healthy.interval = Duration::from_millis(200);
    config.all_unhealthy = AllUnhealthyPolicy::FailFast;
    let http = stack(&cluster, config.clone());
    config.checks.active.probe_type = ProbeType::Status;
    let status = stack(&cluster, config);
    put(&http, "k", "v").await.expect("put");

    alarm(&cluster, AlarmAction::Activate).await;
    // The alarm is real: etcd's bare /health fails on every member, once each has applied
    // the alarm (the answer comes from one member; the others apply it a moment later).
    for i in 0..3 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = raw_status(&cluster, i, "/health").await;
            if line.contains("503") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i} still healthy 10 s after the alarm: {line}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Writes are refused with NOSPACE, by whichever member takes them.
    let mut refused = 0;
    for n in 0..6 {
        let err = put(&http, &format!("w{n}"), "v")
            .await
            .expect_err("NOSPACE");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        refused += 1;
    }
    // Several probe rounds later, every member is in rotation and reads are served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for stack in [&http, &status] {
        for member in stack.checker().snapshot() {
            assert_eq!(member.status, Status::Healthy, "{member:#?}");
            let probe = member.last_probe.as_ref().expect("probed");
            assert_eq!(probe.outcome, Outcome::Success, "{probe:?}");
        }
    }
    let mut kv = KvClient::new(http.clone());
    for _ in 0..10 {
        kv.range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("reads are served during the alarm");
    }
    let probes: Vec<_> = http
        .checker()
        .snapshot()
        .iter()
        .map(|m| m.last_probe.as_ref().map(|p| p.detail.clone()))
        .collect();
    println!("NOSPACE alarm: {refused} writes refused, 10 reads served, http probes {probes:?}");

    alarm(&cluster, AlarmAction::Deactivate).await;
    put(&http, "k", "again").await.expect("writes after disarm");

    // Leaving alarms out does not blind the probe to a member without a leader.
    let checker = http.checker().clone();
    let mut events = checker.subscribe();
    let victim = follower(&cluster).await;
    cluster.isolate(victim);
    let took = wait_status(
        &mut events,
        &checker,
        victim,
        Status::Unhealthy,
        Duration::from_secs(10),
    )
    .await;
    // The first /health of a member that just lost its leader waits ~1 s (a timeout here);
    // once it knows, it answers 503 at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let probe = loop {
        let probe = checker.snapshot()[victim]
            .last_probe
            .clone()
            .expect("probed");
        if probe.detail == "status 503" {
            break probe;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 503 from the isolated member: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("isolated member ejected by the http probe after {took:?}; later probe: {probe:?}");
    assert_eq!(checker.snapshot()[victim].status, Status::Unhealthy);
}
