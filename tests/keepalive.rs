//! The lease keep-alive helper against a real 3-member etcd cluster: a leased key survives the
//! kill of the member carrying its keep-alives, the kill of the leader and back-to-back pauses
//! of two leaders, disappears after the TTL once the helper stops; a lease revoked by someone
//! else is reported as lost, and one the client cannot renew is presumed expired before etcd
//! deletes its keys.

mod common;

use std::time::{Duration, Instant};

use common::*;
use etcd_health::config::Config;
use etcd_health::observe::LeaseError;
use etcd_health::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest,
};
use etcd_health::{
    Balance, HealthChecker, HealthLayer, KeepAlive, KeepAliveOptions, TonicConnector,
};
use etcd_health_testing::Cluster;
use tower::Layer;

const TTL: i64 = 2;

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn grant(stack: &Balance<TonicConnector>) -> i64 {
    grant_for(stack, TTL).await
}

async fn grant_for(stack: &Balance<TonicConnector>, ttl: i64) -> i64 {
    LeaseClient::new(stack.clone())
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
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
    assert!(state.ended.is_none());

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
    assert!(state.ended.is_none(), "{state:?}");
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

/// What lost the soak's lease (seed 8193255871796839586, 550 s in): the leader hung 3.8 s,
/// then, soon after it came back, the new leader hung 2.5 s, with a 5 s TTL. A follower holds
/// a keep-alive for as long as it waits on the hung leader (etcd's request timeout, seconds),
/// so a single stream re-opened now and then can miss the whole TTL a new leader grants. With
/// `Config::default()` and the default options, the lease must live through both, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_back_to_back_leader_pauses() {
    let _serial = serial().await;
    const SOAK_TTL: i64 = 5;
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let ka_stack = stack(&cluster, Config::default());
    let lease = grant_for(&client, SOAK_TTL).await;
    put_leased(&client, "leased", lease).await;
    let keep = KeepAlive::over_balance(&ka_stack, lease, KeepAliveOptions::default());
    first_renewal(&keep).await;

    for round in 0..2 {
        for hang in [Duration::from_millis(3800), Duration::from_millis(2500)] {
            let leader = cluster
                .wait_for_leader(Duration::from_secs(10))
                .await
                .expect("leader");
            let before = keep.state();
            cluster.pause(leader);
            tokio::time::sleep(hang).await;
            cluster.resume(leader);
            let after = keep.state();
            println!(
                "round {round}: leader {leader} hung {hang:?}: renewals {} -> {}, streams lost {} -> {}, hedges {} -> {}",
                before.renewals, after.renewals, before.reopens, after.reopens, before.hedges, after.hedges
            );
            assert!(after.ended.is_none(), "round {round}: {after:?}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = keep.state();
    println!("after both rounds: {state:?}");
    assert!(state.ended.is_none(), "{state:?}");
    assert!(
        exists(&client, "leased").await,
        "the leased key outlived the pauses"
    );
}

/// With every member out of the client's reach (their client ports black-holed, the members
/// fine), no keep-alive is answered: the helper must say the lease is presumed expired once
/// its TTL has run out, and etcd must indeed expire it (the verdict was not premature); once
/// the client reaches the members again, etcd's answer (TTL 0) makes the loss final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_presumed_expired_when_the_client_is_cut_off() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .client_proxy(true)
        .members(3)
        .start()
        .await
        .expect("cluster");
    let client = stack(&cluster, fast_config());
    let lease = grant(&client).await;
    put_leased(&client, "cut-off", lease).await;
    let keep = KeepAlive::over_balance(&client, lease, KeepAliveOptions::default());
    first_renewal(&keep).await;

    for i in 0..cluster.size() {
        cluster.blackhole_client(i, true);
    }
    let cut = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(4 * TTL as u64), keep.lost())
        .await
        .expect("the loss is reported while the client is cut off");
    let state = keep.state();
    println!("cut off: {err} after {:?}; {state:?}", cut.elapsed());
    assert!(err.is_expired() && err.is_lost(), "{err:?}");
    assert!(state.presumed_expired && state.expiries == 1 && state.ended.is_none());

    // etcd's own verdict agrees: the lease runs out and takes its key with it while the
    // client is still cut off (seen past the proxy). Healing first would let the keep-alives
    // the proxy held back reach etcd and renew the lease before it expired.
    let direct = {
        let endpoints: Vec<String> = (0..cluster.size())
            .map(|i| cluster.direct_endpoint(i))
            .collect();
        let checker = HealthChecker::new(&endpoints, fast_config()).expect("checker");
        HealthLayer::new(checker).layer(TonicConnector::default())
    };
    let deadline = Instant::now() + Duration::from_secs(3 * TTL as u64 + 5);
    while exists(&direct, "cut-off").await {
        assert!(
            Instant::now() < deadline,
            "etcd kept the lease the helper gave up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("etcd expired it {:?} after the cut", cut.elapsed());
    for i in 0..cluster.size() {
        cluster.blackhole_client(i, false);
    }
    let mut rx = keep.state();
    while rx.ended.is_none() {
        assert!(
            Instant::now() < deadline,
            "etcd's TTL 0 never reached the helper: {rx:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        rx = keep.state();
    }
    println!("healed: {rx:?}");
    assert!(matches!(rx.ended, Some(LeaseError::Lost { .. })), "{rx:?}");
}

/// While the cluster has no leader nobody can expire a lease, and the next leader renews every
/// lease by its TTL. The helper presumes the lease expired once its TTL has run out unanswered
/// (the caller must step down: it cannot tell this from being cut off), but keeps renewing, so
/// the lease and its key outlive a quorum loss longer than the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_outlives_a_quorum_loss_longer_than_its_ttl() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let client = stack(&cluster, fast_config());
    let ka_stack = stack(&cluster, Config::default());
    let lease = grant(&client).await;
    put_leased(&client, "no-quorum", lease).await;
    let keep = KeepAlive::over_balance(&ka_stack, lease, KeepAliveOptions::default());
    first_renewal(&keep).await;

    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("leader");
    let followers: Vec<usize> = (0..cluster.size()).filter(|&i| i != leader).collect();
    for &f in &followers {
        cluster.pause(f);
    }
    let paused = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(3 * TTL as u64), keep.lost()).await;
    let presumed_after = paused.elapsed();
    tokio::time::sleep(Duration::from_secs(2 * TTL as u64 + 1).saturating_sub(presumed_after))
        .await;
    for &f in &followers {
        cluster.resume(f);
    }
    let err = err.expect("the expiry is presumed while no leader answers");
    println!(
        "no quorum: {err} after {presumed_after:?}, resumed after {:?}",
        paused.elapsed()
    );
    assert!(err.is_expired(), "{err:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut state = keep.state();
    while state.presumed_expired {
        assert!(
            Instant::now() < deadline,
            "never renewed after the election: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = keep.state();
    }
    println!(
        "renewed again {:?} after the resume: {state:?}",
        paused.elapsed()
    );
    assert!(state.ended.is_none() && state.expiries >= 1, "{state:?}");
    assert!(
        exists(&client, "no-quorum").await,
        "the key outlived the quorum loss"
    );
}

/// The façade over the keep-alive engine, driven on paused time against fake members: the
/// leader (member 0) holds every keep-alive stream, as a member whose lessor is stuck would.
/// Each keep-alive goes to the leader first and is hedged to a follower a hedge delay later;
/// the lease is renewed every TTL/3 and never presumed expired.
#[tokio::test(start_paused = true)]
async fn keep_alives_a_leader_holds_are_hedged_to_a_follower_on_paused_time() {
    use etcd_health_testing::fake::{Behaviour, FakeCluster, LEASE_TTL};
    let fake = FakeCluster::start(3, Behaviour::Etcd34)
        .await
        .expect("fake members");
    fake.hold_keep_alives(0, true);
    let checker = HealthChecker::new(&fake.endpoints(), Config::default()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    let keep = KeepAlive::over_balance(&stack, 7, KeepAliveOptions::default());
    let started = tokio::time::Instant::now();
    let mut longest = Duration::ZERO;
    let (mut renewals, mut since) = (0, started);
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = keep.state().renewals;
        if now != renewals {
            (renewals, since) = (now, tokio::time::Instant::now());
        }
        longest = longest.max(since.elapsed());
    }
    let state = keep.state();
    println!("30 s with the leader holding keep-alives: longest gap {longest:?}; {state:?}");
    assert_eq!(checker.leader().leader_index, Some(0), "the fake's leader");
    assert!(state.ended.is_none() && state.expiries == 0, "{state:?}");
    assert!(state.hedges >= 1, "{state:?}");
    assert!(
        state.member.as_ref().is_some_and(|m| m.index() != 0),
        "a follower answers: {state:?}"
    );
    // A renewal every TTL/3 (1 s), each answered a hedge delay (250 ms) or so after it went to
    // the leader: nowhere near the TTL.
    assert!(state.renewals >= 15, "{state:?}");
    let ttl = Duration::from_secs(LEASE_TTL as u64);
    assert!(longest < ttl / 2, "longest gap {longest:?}");
}
