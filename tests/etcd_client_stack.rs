//! The stack under `etcd_client::Client` (through its `raw-channel` feature) and under this
//! crate's own generated stubs, against a real cluster with one member killed.

mod common;

use std::time::Duration;

use common::*;
use etcd_health::observe::Status;
use etcd_health_testing::Cluster;
use tower::util::BoxCloneSyncService;

fn assert_stack_traits<T: Clone + Send + Sync + 'static>() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_keeps_working_when_a_member_dies() {
    assert_stack_traits::<etcd_health::Balance<etcd_health::TonicConnector>>();
    let cluster = Cluster::start(3).await.expect("cluster");
    // Probe healthy members too: with p2c, a member may get no request for a while, and the
    // probe then finds it dead.
    let mut config = fast_config();
    config.checks.active.healthy.interval = Duration::from_millis(500);
    let stack = stack(&cluster, config);
    let checker = stack.checker().clone();
    let mut events = checker.subscribe();
    let channel = etcd_client::Channel::Custom(BoxCloneSyncService::new(stack));
    let mut client = etcd_client::Client::from_channel(channel, None)
        .await
        .expect("client");
    client.put("greeting", "hello", None).await.expect("put");

    let victim = follower(&cluster).await;
    cluster.kill(victim);
    // Reads and writes through etcd-client: at most the first request to the dead member
    // fails; afterwards it is out of rotation.
    let mut failures = 0;
    for i in 0..300 {
        if let Err(e) = client.put("counter", i.to_string(), None).await {
            failures += 1;
            assert!(
                matches!(e, etcd_client::Error::GRpcStatus(ref s) if s.code() == tonic::Code::Unavailable),
                "{e:?}"
            );
        }
        let resp = client.get("greeting", None).await;
        match resp {
            Ok(r) => assert_eq!(r.kvs()[0].value(), b"hello"),
            Err(_) => failures += 1,
        }
    }
    wait_status(
        &mut events,
        &checker,
        victim,
        Status::Unhealthy,
        Duration::from_secs(3),
    )
    .await;
    println!("etcd-client: 600 requests with a member killed, {failures} failed");
    assert!(failures <= 1, "failures: {failures}");
}

/// A request tonic cannot encode (larger than the client's `max_encoding_message_size`) fails
/// with tonic's own error, is applied nowhere, and counts against no member: the body is the
/// caller's, encoded only as the request is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_tonic_cannot_encode_is_the_callers_error() {
    use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
    let cluster = Cluster::start(3).await.expect("cluster");
    let stack = stack(&cluster, fast_config());
    let checker = stack.checker().clone();
    let mut kv = KvClient::new(stack).max_encoding_message_size(64);
    for _ in 0..5 {
        let put = PutRequest {
            key: b"too-large".to_vec(),
            value: vec![b'x'; 1024],
            ..Default::default()
        };
        let err = kv.put(put).await.expect_err("too large to encode");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    }
    kv.put(PutRequest {
        key: b"small".to_vec(),
        value: b"ok".to_vec(),
        ..Default::default()
    })
    .await
    .expect("a small put");
    let got = kv
        .range(RangeRequest {
            key: b"too-large".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(got.count, 0, "applied nowhere");
    for s in checker.snapshot() {
        assert_eq!(s.status, Status::Healthy, "{s:?}");
        assert_eq!(
            s.totals[1..].iter().sum::<u64>(),
            0,
            "no failure counted: {s:?}"
        );
    }
    assert_eq!(checker.retries(), 0, "never re-sent");
}
