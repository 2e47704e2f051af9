//! The auth layer over the balancer, against a cluster with auth enabled: the token is renewed
//! without a visible error when members forget it (restart) and when an auth store change
//! makes a JWT stale (also through the drop-in, by etcd-client's own refresh, and for a
//! resuming watch re-created with it), and a wrong password is a clear error that does not
//! show the password.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_health::auth::{AuthLayer, Credentials};
use etcd_health::config::Config;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{HealthChannel, ResumingWatch, WatchOptions};
use etcd_health_testing::Cluster;
use tower::Layer;

const PASSWORD: &str = "s3cret-pw";
const READERS: usize = 8;
const WRITERS: usize = 2;
/// What etcd 3.4 logs on each member for every request refused for a stale token.
const STALE_TOKEN_LOG: &str = "request auth revision is less than current node auth revision";

/// Auth tests share two cores; one at a time keeps them meaningful.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Counts of a read and write load.
#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    failed_reads: AtomicU64,
    writes: AtomicU64,
    failed_writes: AtomicU64,
}

impl Counts {
    fn show(&self, label: &str) {
        println!(
            "{label:>14}: reads {} (failed {}), writes {} (failed {})",
            self.reads.load(Ordering::Relaxed),
            self.failed_reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.failed_writes.load(Ordering::Relaxed)
        );
    }

    /// The promise across an auth store change: no read and no write failed.
    fn assert_none_failed(&self) {
        assert_eq!(
            self.failed_reads.load(Ordering::Relaxed),
            0,
            "no read failed"
        );
        assert_eq!(
            self.failed_writes.load(Ordering::Relaxed),
            0,
            "no write failed"
        );
    }
}

/// A request of the load: a read, or the `seq`-th write of writer `id`.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read,
    Write { id: usize, seq: u64 },
}

/// Runs `op` until `stop`, counting; each writer puts `w/{id}` with values 1, 2, ... and
/// stops at its first failure (so the key's version tells how many of its puts were applied).
fn spawn_load<F, Fut>(
    op: F,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Vec<tokio::task::JoinHandle<u64>>
where
    F: Fn(Op) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let (op, stop, counts) = (op.clone(), stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match op(Op::Read).await {
                    Ok(()) => counts.reads.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        counts.failed_reads.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            0
        }));
    }
    for id in 0..WRITERS {
        let (op, stop, counts) = (op.clone(), stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                match op(Op::Write { id, seq: seq + 1 }).await {
                    Ok(()) => {
                        seq += 1;
                        counts.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        counts.failed_writes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            seq
        }));
    }
    tasks
}

/// Changes the auth store four times (a user added, a role added and given a permission, the
/// role granted to the user), `pause` apart: each change makes every JWT issued before it
/// stale.
async fn change_auth_store(cluster: &Cluster, pause: Duration) {
    let mut admin = admin(cluster, PASSWORD).await;
    admin
        .user_add("alice", "alice-pw", None)
        .await
        .expect("user add");
    tokio::time::sleep(pause).await;
    admin.role_add("reader").await.expect("role add");
    tokio::time::sleep(pause).await;
    admin
        .role_grant_permission(
            "reader",
            etcd_client::Permission::read("app/").with_prefix(),
        )
        .await
        .expect("grant permission");
    tokio::time::sleep(pause).await;
    admin
        .user_grant_role("alice", "reader")
        .await
        .expect("grant role");
}

/// How many requests the members refused for a stale token, from their logs.
fn stale_token_refusals(cluster: &Cluster) -> usize {
    (0..cluster.size())
        .map(|i| {
            cluster
                .log_tail(i, 100_000)
                .matches(STALE_TOKEN_LOG)
                .count()
        })
        .sum()
}

/// Load for 1 s, the auth store changes, load for 1 s more; then every writer's key must hold
/// exactly the puts it saw acknowledged (none lost, none applied twice).
async fn load_across_auth_store_change<F, Fut>(
    cluster: &Cluster,
    op: F,
    pause: Duration,
) -> Arc<Counts>
where
    F: Fn(Op) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks = spawn_load(op, &stop, &counts);
    tokio::time::sleep(Duration::from_secs(1)).await;
    counts.show("before");
    change_auth_store(cluster, pause).await;
    counts.show("changed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("load task"));
    }
    counts.show("after");
    let acked = &acked[READERS..];

    let options = etcd_client::ConnectOptions::new().with_user("root", PASSWORD);
    let mut check = etcd_client::Client::connect(cluster.endpoints(), Some(options))
        .await
        .expect("check client");
    for (id, acked) in acked.iter().enumerate() {
        let got = check.get(format!("w/{id}"), None).await.expect("get");
        let applied = got.kvs().first().map_or(0, |kv| kv.version() as u64);
        assert_eq!(
            applied, *acked,
            "writer {id}: {acked} puts acknowledged, {applied} applied"
        );
    }
    counts
}

fn put_request(id: usize, seq: u64) -> PutRequest {
    PutRequest {
        key: format!("w/{id}").into_bytes(),
        value: seq.to_string().into_bytes(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_made_stale_by_auth_store_changes_is_renewed_under_load() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .jwt_tokens(true)
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, Config::default());
    let authed = AuthLayer::new(Credentials::new("root", PASSWORD)).layer(balance);
    let counter = authed.clone();
    let op = move |op: Op| {
        let mut kv = KvClient::new(authed.clone());
        async move {
            match op {
                Op::Read => {
                    let mut req = tonic::Request::new(RangeRequest {
                        key: b"w/0".to_vec(),
                        ..Default::default()
                    });
                    req.set_timeout(Duration::from_secs(2));
                    kv.range(req).await.map(drop)
                }
                Op::Write { id, seq } => {
                    let mut req = tonic::Request::new(put_request(id, seq));
                    req.set_timeout(Duration::from_secs(2));
                    kv.put(req).await.map(drop)
                }
            }
            .map_err(|s| format!("{s:?}"))
        }
    };
    // The four changes back to back, as a provisioning script makes them.
    let counts = load_across_auth_store_change(&cluster, op, Duration::ZERO).await;
    let refusals = stale_token_refusals(&cluster);
    println!(
        "authentications: {}, stale-token refusals logged by the members: {refusals}",
        counter.authentications()
    );
    counts.assert_none_failed();
    assert!(refusals > 0, "the auth store changes made the token stale");
    assert!(
        counter.authentications() >= 2,
        "the stale token was renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropin_jwt_made_stale_by_auth_store_changes_is_renewed_under_load() {
    let _serial = serial().await;
    init_tracing();
    let cluster = Cluster::builder()
        .jwt_tokens(true)
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let options = etcd_client::ConnectOptions::new()
        .with_user("root", PASSWORD)
        .with_auto_token_refresh(true)
        .with_timeout(Duration::from_secs(2));
    let client = etcd_client::Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::new(Config::default()),
    )
    .await
    .expect("client");
    let op = move |op: Op| {
        let mut kv = client.kv_client();
        async move {
            match op {
                Op::Read => kv.get("w/0", None).await.map(drop),
                Op::Write { id, seq } => kv
                    .put(format!("w/{id}"), seq.to_string(), None)
                    .await
                    .map(drop),
            }
            .map_err(|e| e.to_string())
        }
    };
    // etcd-client re-sends a refused request once: changes 300 ms apart, as an operator makes
    // them, each renew the token once.
    let counts = load_across_auth_store_change(&cluster, op, Duration::from_millis(300)).await;
    let refusals = stale_token_refusals(&cluster);
    println!("stale-token refusals logged by the members: {refusals}");
    counts.assert_none_failed();
    assert!(refusals > 0, "the auth store changes made the token stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_renewed_when_members_forget_it() {
    // Simple tokens expire after 1 s without use on a member.
    let cluster = Cluster::builder()
        .extra_args(["--auth-token-ttl", "1"])
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, fast_config());
    let authed = AuthLayer::new(Credentials::new("root", PASSWORD)).layer(balance.clone());
    let counter = authed.clone();
    let mut kv = KvClient::new(authed);

    // Without credentials, etcd refuses.
    let err = KvClient::new(balance)
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("auth is on");
    println!("anonymous put: {err:?}");

    let put = |v: &str| PutRequest {
        key: b"k".to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    };
    kv.put(put("1")).await.expect("authenticated put");

    // Let the token expire on every member, then use it: the layer renews it unseen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..20 {
        kv.put(put(&n.to_string()))
            .await
            .expect("put after the token was forgotten");
    }
    let got = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.kvs[0].value, b"19");
    println!("authentications: {}", counter.authentications());
    assert!(
        counter.authentications() >= 2,
        "the expired token was renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error_without_the_password() {
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, fast_config());
    let authed = AuthLayer::new(Credentials::new("root", "not-the-password")).layer(balance);
    let err = KvClient::new(authed)
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("wrong password");
    println!("{err:?}");
    assert!(
        err.message().contains("authenticating as \"root\" failed"),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("not-the-password"));
}

/// A resuming watch over the auth layer, re-created (its member killed) after an auth store
/// change made the stack's JWT stale: etcd refuses the new watch with a cancel, not a status
/// the auth layer can see; the watch has the token renewed and is re-created, and misses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_watch_recreated_with_a_stale_jwt_renews_it() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .jwt_tokens(true)
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, fast_config());
    let authed = AuthLayer::new(Credentials::new("root", PASSWORD)).layer(balance);
    let mut kv = KvClient::new(authed.clone());
    let put = |v: usize| PutRequest {
        key: b"watched".to_vec(),
        value: v.to_string().into_bytes(),
        ..Default::default()
    };
    let first = kv.put(put(0)).await.expect("put").into_inner();
    // From the revision after that put: a watch without a start revision starts at its
    // member's applied revision, and a follower may not have applied the put yet (etcd then
    // sends it as an event, which is right but not what this test counts).
    let after_first = first.header.expect("header").revision + 1;
    let mut watch = ResumingWatch::new(
        authed.clone(),
        WatchOptions::new("watched")
            .with_start_revision(after_first)
            .idle_timeout(Duration::from_secs(2)),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let victim = loop {
        if let Some(m) = watch.member() {
            break m.index();
        }
        assert!(tokio::time::Instant::now() < deadline, "watch not created");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The stack's token goes stale; no unary request renews it before the watch needs it.
    change_auth_store(&cluster, Duration::ZERO).await;
    cluster.kill(victim);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while watch.state().creations < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch not re-created: {:?}",
            watch.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for v in 1..=20 {
        let mut req = tonic::Request::new(put(v));
        req.set_timeout(Duration::from_secs(5));
        kv.put(req).await.expect("put");
    }
    let mut received = Vec::new();
    while received.len() < 20 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("events within 10 s")
            .expect("the watch goes on")
            .expect("no watch error");
        let kv = event.kv.expect("kv");
        received.push(
            String::from_utf8_lossy(&kv.value)
                .parse::<usize>()
                .expect("number"),
        );
    }
    let state = watch.state();
    println!(
        "received {received:?}; watch {state:?}; authentications {}",
        authed.authentications()
    );
    assert_eq!(
        received,
        (1..=20).collect::<Vec<_>>(),
        "every value once, in order"
    );
    let why = state.last_failure.unwrap_or_default();
    assert!(
        why.contains("revision of auth store is old"),
        "the re-created watch was refused for its stale token first: {why}"
    );
    assert_eq!(authed.authentications(), 2, "renewed once");
}

/// Concurrent requests of the load below.
const CONCURRENT: usize = 64;

/// What `CONCURRENT` request loops through `authed` saw over `duration`: answers, failures
/// with the clear auth error, and any other failure (printed).
#[derive(Debug, Default)]
struct AuthLoad {
    ok: AtomicU64,
    auth_errors: AtomicU64,
    other_errors: AtomicU64,
    /// When the last request succeeded, in ms since the load began (0: none did).
    last_ok_ms: AtomicU64,
    /// When the first request failed with the auth error, in ms since the load began.
    first_auth_error_ms: AtomicU64,
}

/// Runs `CONCURRENT` loops of reads (2 s deadlines) through `authed` until `stop`; a failure
/// must be the clear auth error without the password `hidden`.
fn spawn_auth_load(
    authed: etcd_health::auth::Auth<etcd_health::Balance<etcd_health::TonicConnector>>,
    hidden: &'static str,
    stop: &Arc<AtomicBool>,
    load: &Arc<AuthLoad>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let start = tokio::time::Instant::now();
    (0..CONCURRENT)
        .map(|_| {
            let (authed, stop, load) = (authed.clone(), stop.clone(), load.clone());
            tokio::spawn(async move {
                let mut kv = KvClient::new(authed);
                while !stop.load(Ordering::Relaxed) {
                    let mut req = tonic::Request::new(RangeRequest {
                        key: b"k".to_vec(),
                        ..Default::default()
                    });
                    req.set_timeout(Duration::from_secs(2));
                    let at = start.elapsed().as_millis() as u64;
                    match kv.range(req).await {
                        Ok(_) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            load.last_ok_ms.fetch_max(at, Ordering::Relaxed);
                        }
                        Err(status) => {
                            let shown = format!("{status:?} {status}");
                            assert!(!shown.contains(hidden), "the password shown: {shown}");
                            if status
                                .message()
                                .contains("authenticating as \"root\" failed")
                                && status.message().contains("authentication failed")
                            {
                                if load.auth_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    load.first_auth_error_ms.store(at, Ordering::Relaxed);
                                }
                            } else {
                                eprintln!("other failure: {status:?}");
                                load.other_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            // A caller that backs off a little, as applications do.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// A stock etcd-client of `root` with `password`, straight to the members: the administrator
/// who changes the auth store or the password while the load runs.
async fn admin(cluster: &Cluster, password: &str) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new().with_user("root", password);
    etcd_client::Client::connect(cluster.endpoints(), Some(options))
        .await
        .expect("admin client")
}

/// A wrong password under 64 concurrent requests for 10 s: the members see about one
/// `Authenticate` per pause (at least 1 s, doubling), not one per request, and every request
/// gets the clear auth error at once (no password in it). Before renewals were shared and
/// paused, every request authenticated again in turn: hundreds of bcrypt checks a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_under_load_does_not_stampede_the_members() {
    const WRONG: &str = "not-the-password-under-load";
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, Config::default());
    let authed = AuthLayer::new(Credentials::new("root", WRONG)).layer(balance);
    let before = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics");
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(AuthLoad::default());
    let tasks = spawn_auth_load(authed.clone(), WRONG, &stop, &load);
    let secs = 10;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let after = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics");
    let at_members = after - before;
    println!(
        "wrong password, {CONCURRENT} concurrent requests for {secs} s: {load:?}; Authenticate \
         started at the members: {at_members} (sent by the stack: {}, hedged copies {}, \
         retries {})",
        authed.authenticate_calls(),
        authed.get_ref().checker().hedges(),
        authed.get_ref().checker().retries(),
    );
    assert_eq!(load.ok.load(Ordering::Relaxed), 0);
    assert_eq!(
        load.other_errors.load(Ordering::Relaxed),
        0,
        "only the auth error"
    );
    assert!(
        load.auth_errors.load(Ordering::Relaxed) > 1000,
        "failed fast, so many requests: {load:?}"
    );
    // Pauses of [1, 2] s, [2, 4] s, [4, 8] s, ...: 3 to 5 renewals in 10 s. At most one a
    // second, plus a hedged copy or two.
    assert!(
        at_members <= secs + 3,
        "{at_members} Authenticate calls at the members in {secs} s"
    );
}

/// The password is changed under load (every token of the user is invalidated with it), then
/// set right again: requests fail with the clear auth error meanwhile, at about one
/// `Authenticate` per pause, and recover within a pause or two of the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_under_load_fails_clearly_then_recovers() {
    const ROTATED: &str = "rotated-pw";
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, Config::default());
    let authed = AuthLayer::new(Credentials::new("root", PASSWORD)).layer(balance);
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(AuthLoad::default());
    let start = tokio::time::Instant::now();
    let tasks = spawn_auth_load(authed.clone(), PASSWORD, &stop, &load);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(load.ok.load(Ordering::Relaxed) > 0, "{load:?}");

    let before = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics");
    admin(&cluster, PASSWORD)
        .await
        .user_change_password("root", ROTATED)
        .await
        .expect("rotate");
    let rotated_ms = start.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    admin(&cluster, ROTATED)
        .await
        .user_change_password("root", PASSWORD)
        .await
        .expect("set right");
    let fixed_ms = start.elapsed().as_millis() as u64;
    // Recovery comes within the pause in force (at most 8 s after two failures).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while load.last_ok_ms.load(Ordering::Relaxed) <= fixed_ms {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recovered: {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_ms = load.last_ok_ms.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let after = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics");
    // The two admin clients authenticate once each.
    let at_members = after - before - 2;
    let secs = (recovered_ms - rotated_ms).div_ceil(1000);
    println!(
        "rotated at {rotated_ms} ms, set right at {fixed_ms} ms, recovered at {recovered_ms} \
         ms: {load:?}; Authenticate started at the members meanwhile: {at_members}"
    );
    assert!(
        load.auth_errors.load(Ordering::Relaxed) > 0,
        "the rotation was seen: {load:?}"
    );
    assert_eq!(
        load.other_errors.load(Ordering::Relaxed),
        0,
        "only the auth error"
    );
    assert!(
        at_members <= secs + 3,
        "{at_members} Authenticate calls at the members in {secs} s"
    );
}

/// Through the drop-in, etcd-client renews its own token; a failed renewal is not shared, so
/// with a rotated password each request waiting on etcd-client's refresh lock would send its
/// own `Authenticate`, one after the other. The drop-in answers a repeat of refused
/// credentials with the refusal during a pause: the members see about one per pause, and the
/// requests recover once the password is set right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropin_rotated_password_under_load_does_not_stampede_the_members() {
    const ROTATED: &str = "rotated-dropin-pw";
    let _serial = serial().await;
    init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let options = etcd_client::ConnectOptions::new()
        .with_user("root", PASSWORD)
        .with_auto_token_refresh(true)
        .with_timeout(Duration::from_secs(2));
    let client = etcd_client::Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::new(Config::default()),
    )
    .await
    .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(AuthLoad::default());
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (mut kv, stop, load) = (client.kv_client(), stop.clone(), load.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let at = start.elapsed().as_millis() as u64;
                    match kv.get("k", None).await {
                        Ok(_) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            load.last_ok_ms.fetch_max(at, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let shown = format!("{e:?} {e}");
                            assert!(!shown.contains(PASSWORD), "the password shown: {shown}");
                            if shown.contains("authentication failed") {
                                load.auth_errors.fetch_add(1, Ordering::Relaxed);
                            } else {
                                eprintln!("other failure: {shown}");
                                load.other_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(load.ok.load(Ordering::Relaxed) > 0, "{load:?}");
    let before = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics");
    admin(&cluster, PASSWORD)
        .await
        .user_change_password("root", ROTATED)
        .await
        .expect("rotate");
    let rotated_ms = start.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let wrong_phase = cluster
        .grpc_started_total("Authenticate")
        .await
        .expect("metrics")
        - before
        - 1;
    admin(&cluster, ROTATED)
        .await
        .user_change_password("root", PASSWORD)
        .await
        .expect("set right");
    let fixed_ms = start.elapsed().as_millis() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while load.last_ok_ms.load(Ordering::Relaxed) <= fixed_ms {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recovered: {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    println!(
        "drop-in: rotated at {rotated_ms} ms, set right at {fixed_ms} ms, recovered by {} ms: \
         {load:?}; Authenticate started at the members in the 3 s with the wrong password: \
         {wrong_phase}",
        load.last_ok_ms.load(Ordering::Relaxed)
    );
    assert!(load.auth_errors.load(Ordering::Relaxed) > 0, "{load:?}");
    assert!(
        wrong_phase <= 3 + 3,
        "{wrong_phase} Authenticate calls at the members in 3 s"
    );
}
