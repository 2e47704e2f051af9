//! The lease keep-alive helper against a real 3-member etcd cluster: a leased key survives the
//! kill of the member carrying its keep-alives and the kill of the leader, disappears after the TTL once the helper
//! stops, and a lease revoked by someone else is reported as lost.

mod common;

use std::time::{Duration, Instant};

use common::*;
use etcd_health::lease::{KeepAlive, KeepAliveOptions};
use etcd_health::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest,
};
use etcd_health::{Balance, TonicConnector};
use etcd_health_testing::Cluster;

const TTL: i64 = 2;

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn grant(stack: &Balance<TonicConnector>) -> i64 {
    LeaseClient::new(stack.clone())
        .lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id
}

async fn put_leased(stack: &Balance<TonicConnector>, key: &str, lease: i64) {
    KvClient::new(stack.clone())
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"alive".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put");
}

/// Whether `key` exists; a read that hits the killed member is retried (reads are safe to
/// retry, and the stack evicts the member after the first failure).
async fn exists(stack: &Balance<TonicConnector>, key: &str) -> bool {
    let mut last = None;
    for _ in 0..5 {
        let mut req = tonic::Request::new(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(2));
        match KvClient::new(stack.clone()).range(req).await {
            Ok(resp) => return !resp.into_inner().kvs.is_empty(),
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("range failed 5 times: {last:?}");
}

/// Waits until the helper has renewed at least once on a known member.
async fn first_renewal(keep: &KeepAlive) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = keep.state();
        if let (true, Some(m)) = (s.renewals > 0, &s.member) {
            return m.index();
        }
        assert!(Instant::now() < deadline, "no renewal: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_key_survives_kill_of_the_keepalive_member() {
    let _serial = serial().await;
    let started = Instant::now();
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let ka_stack = stack(&cluster, fast_config());
    let lease = grant(&client).await;
    let keep = KeepAlive::over_balance(&ka_stack, lease, KeepAliveOptions::default());
    let victim = first_renewal(&keep).await;
    put_leased(&client, "leased", lease).await;

    let killed = Instant::now();
    cluster.kill(victim);
    tokio::time::sleep(Duration::from_secs(2 * TTL as u64 + 1)).await;
    let survived = exists(&client, "leased").await;
    let state = keep.state();
    println!(
        "kill of member {victim}: key present after {:?}: {survived}; state {state:?}",
        killed.elapsed()
    );
    assert!(survived, "the key outlived 2×TTL after the kill");
    assert!(state.reopens >= 1, "the kill hit the keep-alive stream");
    assert_ne!(state.member.as_ref().map(|m| m.index()), Some(victim));
    assert!(state.lost.is_none());

    let renewals = state.renewals;
    keep.stop().await.expect("stop");
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(3 * TTL as u64 + 2);
    while exists(&client, "leased").await {
        assert!(
            Instant::now() < deadline,
            "the key outlived the stopped helper"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "stopped after {renewals} renewals; key gone {:?} later (TTL {TTL} s); test took {:?}",
        stopped.elapsed(),
        started.elapsed()
    );
    assert!(
        stopped.elapsed() >= Duration::from_millis(500),
        "the key went with the lease's TTL, not at once"
    );
}

/// The leader's death costs an election, during which the other members answer "no leader"
/// (and are ejected for it) or hold keep-alives unanswered. The new leader extends every lease
/// by its TTL; the helper must renew within that TTL, so its re-open delays may not grow past
/// it, and an ejection from during the election must not end the stream it opens afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_key_survives_kill_of_the_leader() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let ka_stack = stack(&cluster, fast_config());
    let lease = grant(&client).await;
    let keep = KeepAlive::over_balance(&ka_stack, lease, KeepAliveOptions::default());
    first_renewal(&keep).await;
    put_leased(&client, "leased", lease).await;

    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("leader");
    let before = keep.state().renewals;
    let killed = Instant::now();
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(2 * TTL as u64 + 1)).await;
    let survived = exists(&client, "leased").await;
    let state = keep.state();
    println!(
        "kill of the leader (member {leader}): key present after {:?}: {survived}; renewals \
         since {}; state {state:?}",
        killed.elapsed(),
        state.renewals - before
    );
    assert!(survived, "the key outlived 2×TTL after the leader's kill");
    assert!(state.lost.is_none(), "{state:?}");
    assert!(state.renewals > before + 2, "renewed since: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_lease_is_reported_lost() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let lease = grant(&client).await;
    let keep = KeepAlive::over_balance(&client, lease, KeepAliveOptions::default());
    first_renewal(&keep).await;

    let revoked = Instant::now();
    LeaseClient::new(client.clone())
        .lease_revoke(LeaseRevokeRequest { id: lease })
        .await
        .expect("revoke");
    let err = tokio::time::timeout(Duration::from_secs(5), keep.lost())
        .await
        .expect("loss reported within 5 s");
    println!("revoked: reported {:?} later: {err}", revoked.elapsed());
    assert!(err.is_lost(), "{err:?}");
    let state = keep.state();
    assert_eq!(state.reopens, 0, "a lost lease is not a member failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_stop_removes_the_key_at_once() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let lease = grant(&client).await;
    let keep = KeepAlive::over_balance(
        &client,
        lease,
        KeepAliveOptions::default().revoke_on_stop(true),
    );
    first_renewal(&keep).await;
    put_leased(&client, "revoked", lease).await;
    assert!(exists(&client, "revoked").await);
    keep.stop().await.expect("revoke");
    assert!(!exists(&client, "revoked").await, "revoked with the helper");
}
