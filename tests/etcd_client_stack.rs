//! The stack under `etcd_client::Client` (through its `raw-channel` feature) and under this
//! crate's own generated stubs, against a real cluster with one member killed.

mod common;

use std::time::Duration;

use common::*;
use etcd_health::health::Status;
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
