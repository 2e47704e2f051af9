//! A caller that sets no deadline (etcd-client's default `ConnectOptions`) and sends nothing
//! else: the leader hangs (SIGSTOP) right before a put and a get. Nothing but the two requests
//! themselves can notice the hang: no peer answers other requests to show it.
//!
//! With `Config::default()` over the drop-in, the get must answer within about one election
//! (the hang is noticed by the leader checks the waiting requests ask for, and the read goes
//! to a member that follows the new leader), and the put, sent to the leader it was routed to,
//! must end once the leader is found silent and replaced: as *outcome unknown* (it may have
//! been applied: it is never sent again), well before etcd's own 7 s request timeout that
//! stock etcd-client's put waits for. Before, the put waited for as long as the leader was
//! paused, plus those 7 s.
//!
//! The cluster runs etcd's default timings (100 ms heartbeat, 1 s election timeout), so the
//! figures compare with an untuned cluster's. The pause lasts until both requests ended (at
//! most [`PAUSE`]).

mod common;

use std::time::{Duration, Instant};

use etcd_health_testing::Cluster;

/// The longest the leader stays paused: the requests must end well within it.
const PAUSE: Duration = Duration::from_secs(12);
/// The get answers within this: one election (1-2 s with a 1 s election timeout) and the
/// leader checks that find it, with room for a loaded machine.
const GET_WITHIN: Duration = Duration::from_secs(4);
/// The put ends within this: the election, then two leader checks to confirm the old leader
/// silent (a 250 ms `Status` timeout each), with room for a loaded machine; stock etcd-client
/// waits 7 s (etcd's request timeout) and the old code for the pause plus those 7 s.
const PUT_WITHIN: Duration = Duration::from_secs(5);

/// A cluster with etcd's own default timings.
async fn cluster() -> (Cluster, usize) {
    let cluster = Cluster::builder()
        .heartbeat_ms(100)
        .election_ms(1000)
        .start()
        .await
        .expect("cluster");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    (cluster, leader)
}

/// Times `request`, giving up (for the report) after [`PAUSE`].
async fn timed<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> (Duration, Option<Result<T, etcd_client::Error>>) {
    let started = Instant::now();
    let result = tokio::time::timeout(PAUSE, request).await.ok();
    (started.elapsed(), result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_caller_without_deadlines_outlives_a_paused_leader() {
    let (cluster, leader) = cluster().await;
    let (client, checker) = common::dropin_client(&cluster).await;
    let mut kv = client.kv_client();
    kv.put("k", "before", None).await.expect("put");
    // Writes go to the leader once the health state knows it.
    let known = Instant::now();
    while checker.leader().leader_index != Some(leader) {
        assert!(known.elapsed() < Duration::from_secs(10), "leader unknown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let paused = Instant::now();
    cluster.pause(leader);
    let (mut put_kv, mut get_kv) = (client.kv_client(), client.kv_client());
    let put = tokio::spawn(async move { timed(put_kv.put("k", "during", None)).await });
    let get = tokio::spawn(async move { timed(get_kv.get("k", None)).await });
    let (put_took, put) = put.await.expect("put task");
    let (get_took, get) = get.await.expect("get task");
    let held = paused.elapsed();
    cluster.resume(leader);
    println!(
        "paused leader, no other traffic: get {get_took:?} ({}), put {put_took:?} ({}); \
         leader paused {held:?}; health: {:?}",
        match &get {
            Some(Ok(_)) => "answered".to_owned(),
            Some(Err(e)) => format!("failed: {e}"),
            None => "still waiting".to_owned(),
        },
        match &put {
            Some(Ok(_)) => "succeeded".to_owned(),
            Some(Err(e)) => format!("failed: {e}"),
            None => "still waiting".to_owned(),
        },
        checker
            .snapshot()
            .iter()
            .map(|m| format!("{} {}", m.member.index(), m.status))
            .collect::<Vec<_>>(),
    );

    let value = match get {
        Some(Ok(resp)) => resp.kvs().first().map(|kv| kv.value().to_vec()),
        other => panic!("the get must answer: {other:?} after {get_took:?}"),
    };
    assert!(get_took < GET_WITHIN, "get answered after {get_took:?}");
    match put {
        // Certainly never processed by the paused leader, and applied through another member.
        Some(Ok(_)) => {}
        Some(Err(etcd_client::Error::GRpcStatus(status))) => assert!(
            etcd_health::outcome_unknown(&status),
            "a put that may have been applied ends as outcome unknown: {status:?}"
        ),
        other => panic!("the put must end: {other:?} after {put_took:?}"),
    }
    assert!(put_took < PUT_WITHIN, "put ended after {put_took:?}");
    // What the get read is one of the two values: the put's outcome is unknown to it.
    assert!(
        matches!(value.as_deref(), Some(b"before") | Some(b"during")),
        "{value:?}"
    );
}

/// The same with stock etcd-client, for the comparison in the report: not a check of this
/// library (`cargo test --test no_deadline -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of stock etcd-client, which waits out the pause"]
async fn stock_etcd_client_with_a_paused_leader() {
    let (cluster, leader) = cluster().await;
    let client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("stock client");
    let mut kv = client.kv_client();
    kv.put("k", "before", None).await.expect("put");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused = Instant::now();
    cluster.pause(leader);
    let (mut put_kv, mut get_kv) = (client.kv_client(), client.kv_client());
    let put = tokio::spawn(async move { timed(put_kv.put("k", "during", None)).await });
    let get = tokio::spawn(async move { timed(get_kv.get("k", None)).await });
    let (put_took, put) = put.await.expect("put task");
    let (get_took, get) = get.await.expect("get task");
    let held = paused.elapsed();
    cluster.resume(leader);
    println!(
        "stock, paused leader, no other traffic: get {get_took:?} ({:?}), put {put_took:?} \
         ({:?}); leader paused {held:?}",
        get.map(|r| r.map(|_| "answered")),
        put.map(|r| r.map(|_| "succeeded")),
    );
}
