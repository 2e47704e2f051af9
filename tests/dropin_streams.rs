//! etcd-client's watches and lease keep-alives over the drop-in while the member serving
//! them is paused (SIGSTOP), or is the leader and is paused or killed, on real etcd with
//! `Config::default()`.
//!
//! Checks: a watch receives every one of 300 values written during the fault exactly once and
//! in order, with no error, while the paused (or black-holed) member stays so (one that
//! recovers would deliver late what it held, hiding a stall); a lease with a 5 s TTL, kept
//! alive by etcd-client's own keeper, outlives a 4 s pause of the leader and then the death of
//! the member serving its keep-alives: its key is still there after more than a TTL; a
//! keep-alive sent just after the leader serving it was paused is answered within 1.5 s (the
//! drop-in hedges it on other members and sends it to the new leader); with etcd auth on, both
//! streams outlive the leader serving them, and a watch re-created after etcd-client renewed
//! its token carries the new one.
//!
//! `DROPIN_STREAMS_RESUME=0` runs the same tests with the drop-in's stream resumption off
//! (`HealthChannel::resume_streams(false)`): they fail (see the README's drop-in section).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, PutOptions, Txn, TxnOp, WatchOptions,
};
use etcd_health::config::Config;
use etcd_health::observe::{StreamKind, StreamStats};
use etcd_health::HealthChannel;
use etcd_health_testing::Cluster;

/// Values the writer puts during a watch test.
const VALUES: usize = 300;
/// The fault starts once the writer has put this many.
const FAULT_AFTER: usize = 50;
/// Generous bound on the whole watch (not a speed goal: without resumption it never ends).
const WATCH_BOUND: Duration = Duration::from_secs(60);

/// Resumption on, unless `DROPIN_STREAMS_RESUME=0`.
fn resume() -> bool {
    std::env::var("DROPIN_STREAMS_RESUME").map_or(true, |v| v != "0")
}

/// The tests share two cores and start clusters; one at a time keeps them meaningful.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A writer's client: the drop-in, with a 2 s deadline per request.
async fn writer_client(cluster: &Cluster) -> Client {
    writer_client_with(cluster, ConnectOptions::new()).await
}

async fn writer_client_with(cluster: &Cluster, options: ConnectOptions) -> Client {
    let options = options.with_timeout(Duration::from_secs(2));
    Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::new(Config::default()),
    )
    .await
    .expect("writer client")
}

/// The member serving the newest stream of `kind`, waiting for it to be open.
async fn serving(stats: &StreamStats, kind: StreamKind) -> usize {
    for _ in 0..200 {
        if let Some(s) = stats.serving().iter().rev().find(|s| s.kind == kind) {
            return s.member.index();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no open {kind:?} stream: {:?}", stats.serving());
}

/// Puts `w/0000` .. `w/0299` in order, 20 ms apart, each exactly once: a put whose outcome is
/// unknown is retried only if the key does not exist yet.
async fn write_values(client: Client, written: Arc<AtomicU64>) -> u64 {
    write_values_with(client, written, false).await
}

/// As [`write_values`]; with `read_back`, each value is also read (a linearizable get, which
/// the drop-in spreads over the members, unlike the writes it sends to the leader).
async fn write_values_with(client: Client, written: Arc<AtomicU64>, read_back: bool) -> u64 {
    let mut kv = client.kv_client();
    let mut failures = 0;
    for i in 0..VALUES {
        let key = format!("w/{i:04}");
        loop {
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(key.clone(), i.to_string(), None)]);
            match kv.txn(txn).await {
                Ok(_) => break,
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        while read_back && kv.get(key.as_str(), None).await.is_err() {
            failures += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        written.store(i as u64 + 1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failures
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// SIGSTOP the member serving the watch (a follower).
    PauseServingFollower,
    /// SIGSTOP the leader, which serves the watch.
    PauseLeader,
    /// SIGKILL the leader, which serves the watch.
    KillLeader,
    /// Black-hole the client port of the follower serving the watch (connections accepted,
    /// nothing forwarded).
    BlackholeFollower,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_its_follower_paused() {
    watch_case(Fault::PauseServingFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_its_leader_paused() {
    watch_case(Fault::PauseLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_its_leader_killed() {
    watch_case(Fault::KillLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_its_follower_black_holed() {
    watch_case(Fault::BlackholeFollower).await;
}

/// Opens etcd-client watches on `w/` until one is served by the leader (`want_leader`) or by
/// a follower (the drop-in spreads watches over the healthy members at random).
async fn open_watch(
    client: &Client,
    stats: &StreamStats,
    leader: usize,
    want_leader: bool,
) -> (etcd_client::WatchStream, usize) {
    for _ in 0..40 {
        let stream = client
            .watch_client()
            .watch("w/", Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        let member = serving(stats, StreamKind::Watch).await;
        if (member == leader) == want_leader {
            return (stream, member);
        }
        drop(stream);
        // The driver lets go of the member once the caller dropped the stream.
        for _ in 0..100 {
            if !stats.serving().iter().any(|s| s.kind == StreamKind::Watch) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("no watch landed on the wanted member");
}

/// Reads the watch until it has all the values: their keys in the order received and the
/// longest wait between two responses (printed, not asserted); an error, an end or a cancel
/// is a failure.
fn spawn_watcher(
    mut stream: etcd_client::WatchStream,
) -> tokio::task::JoinHandle<Result<(Vec<String>, Duration), String>> {
    tokio::spawn(async move {
        let mut keys = Vec::with_capacity(VALUES);
        let mut last_revision = 0;
        let mut longest_gap = Duration::ZERO;
        let mut last_heard = std::time::Instant::now();
        while keys.len() < VALUES {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err(format!("the watch ended after {} values", keys.len())),
                Err(e) => return Err(format!("the watch failed after {} values: {e}", keys.len())),
            };
            longest_gap = longest_gap.max(last_heard.elapsed());
            last_heard = std::time::Instant::now();
            if resp.canceled() {
                return Err(format!("the watch was canceled: {}", resp.cancel_reason()));
            }
            for event in resp.events() {
                let kv = event.kv().expect("kv");
                assert_eq!(event.event_type(), EventType::Put);
                assert!(kv.mod_revision() > last_revision, "out of order");
                last_revision = kv.mod_revision();
                keys.push(kv.key_str().expect("utf-8").to_owned());
            }
        }
        Ok((keys, longest_gap))
    })
}

async fn watch_case(fault: Fault) {
    let _serial = serial().await;
    let cluster = match fault {
        Fault::BlackholeFollower => Cluster::builder().members(3).client_proxy(true).start(),
        _ => Cluster::builder().members(3).start(),
    }
    .await
    .expect("cluster");
    let (client, checker, stats) = dropin_client_with_streams(&cluster, resume()).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let want_leader = matches!(fault, Fault::PauseLeader | Fault::KillLeader);
    let (stream, victim) = open_watch(&client, &stats, leader, want_leader).await;
    eprintln!("watch served by member {victim} (leader {leader}), fault {fault:?}");

    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_values(writer_client(&cluster).await, written.clone()));

    let watcher = spawn_watcher(stream);

    while written.load(Ordering::Relaxed) < FAULT_AFTER as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(target: "etcd_health::tests", member = victim, ?fault, "fault");
    match fault {
        Fault::PauseServingFollower | Fault::PauseLeader => cluster.pause(victim),
        Fault::KillLeader => cluster.kill(victim),
        Fault::BlackholeFollower => cluster.blackhole_client(victim, true),
    }
    let received = tokio::time::timeout(WATCH_BOUND, watcher).await;
    let failures = tokio::time::timeout(WATCH_BOUND, writer)
        .await
        .expect("the writer finished")
        .expect("writer");
    match fault {
        Fault::PauseServingFollower | Fault::PauseLeader => cluster.resume(victim),
        Fault::KillLeader => {}
        Fault::BlackholeFollower => cluster.blackhole_client(victim, false),
    }
    let (keys, longest_gap) = match received {
        Err(_) => panic!(
            "the watch did not receive all {VALUES} values within {WATCH_BOUND:?} \
             (resumption {}); stream stats {:?}; members {:#?}",
            resume(),
            stats.counts(),
            checker.snapshot()
        ),
        Ok(joined) => joined.expect("watcher").unwrap_or_else(|e| panic!("{e}")),
    };
    let expected: Vec<String> = (0..VALUES).map(|i| format!("w/{i:04}")).collect();
    assert_eq!(keys, expected, "every value once, in order");
    let counts = stats.counts();
    eprintln!(
        "longest wait between watch responses {longest_gap:?}; writer retries {failures}; \
         stream stats {counts:?}"
    );
    assert!(
        counts.watch_resumptions >= 1,
        "the fault hit the watch's member: {counts:?}"
    );
}

/// etcd-client's keeper, as an application runs it: renew every second, stop at the first
/// error.
async fn keep_lease_alive(
    client: Client,
    id: i64,
    stop: Arc<AtomicBool>,
    renewals: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut lease = client.lease_client();
    let (mut keeper, mut answers) = lease
        .keep_alive(id)
        .await
        .map_err(|e| format!("keep_alive: {e}"))?;
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        keeper
            .keep_alive()
            .await
            .map_err(|e| format!("keeper: {e}"))?;
        let asked = std::time::Instant::now();
        let answer = answers.message().await;
        longest = longest.max(asked.elapsed());
        match answer {
            Ok(Some(r)) if r.ttl() > 0 => {
                renewals.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(_)) => return Err("the lease expired".into()),
            Ok(None) => return Err("the keep-alive stream ended".into()),
            Err(e) => return Err(format!("the keep-alive stream failed: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Printed, not asserted.
    eprintln!("longest wait for a keep-alive answer {longest:?}");
    Ok(())
}

/// A key on a 5 s lease, kept alive by etcd-client's keeper over the drop-in.
struct LeasedKey {
    stop: Arc<AtomicBool>,
    renewals: Arc<AtomicU64>,
    keeper: tokio::task::JoinHandle<Result<(), String>>,
}

/// How the keeper ended: `Err` when it waited 10 s for an answer.
type Kept = Result<Result<Result<(), String>, tokio::task::JoinError>, tokio::time::error::Elapsed>;

impl LeasedKey {
    /// Grants the lease through `client`, puts `leased` on it through `writer`, and starts
    /// the keeper ([`keep_lease_alive`]) on `client`.
    async fn start(client: &Client, writer: &Client) -> Self {
        let lease = client
            .lease_client()
            .grant(5, None)
            .await
            .expect("grant")
            .id();
        writer
            .kv_client()
            .put("leased", "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put");
        let stop = Arc::new(AtomicBool::new(false));
        let renewals = Arc::new(AtomicU64::new(0));
        let keeper = tokio::spawn(keep_lease_alive(
            client.clone(),
            lease,
            stop.clone(),
            renewals.clone(),
        ));
        Self {
            stop,
            renewals,
            keeper,
        }
    }

    /// Stops the keeper: the renewals it had, and how it ended.
    async fn stop(self) -> (u64, Kept) {
        let renewals = self.renewals.load(Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        let kept = tokio::time::timeout(Duration::from_secs(10), self.keeper).await;
        (renewals, kept)
    }
}

/// Fails the test unless the keeper kept the lease alive to the end.
fn expect_kept(kept: Kept) {
    match kept {
        Ok(joined) => joined
            .expect("keeper task")
            .unwrap_or_else(|e| panic!("keep-alive failed (resumption {}): {e}", resume())),
        Err(_) => panic!("the keeper waited for an answer for 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_survives_the_leader_paused_then_killed() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let (client, checker, stats) = dropin_client_with_streams(&cluster, resume()).await;
    let writer = writer_client(&cluster).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let leased = LeasedKey::start(&client, &writer).await;
    // The keep-alive goes to the leader once the health state knows it.
    let first = serving_leader(&stats, leader).await;
    eprintln!("keep-alive served by member {first} (leader {leader}); pausing the leader");

    // The leader hangs for 4 s.
    tracing::info!(target: "etcd_health::tests", member = leader, "fault: pause");
    cluster.pause(leader);
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.resume(leader);
    let after_pause = stats.counts();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    // Back to the (new) leader, then that member dies.
    let serving_now = serving_leader(&stats, new_leader).await;
    eprintln!(
        "after the pause {after_pause:?}; keep-alive served by member {serving_now} \
         (leader {new_leader}); killing it"
    );
    tracing::info!(target: "etcd_health::tests", member = serving_now, "fault: kill");
    cluster.kill(serving_now);

    // More than a TTL with the keeper on its own.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (before_stop, kept) = leased.stop().await;
    let found = writer.kv_client().get("leased", None).await.expect("get");
    let counts = stats.counts();
    eprintln!(
        "renewals {before_stop}; stream stats {counts:?}; leader view {:?}",
        checker.leader()
    );
    expect_kept(kept);
    assert_eq!(found.count(), 1, "the leased key outlived both faults");
    assert!(
        counts.keep_alive_resumptions >= 2,
        "both faults hit the keep-alive's member: {counts:?}"
    );
}

/// The member serving the keep-alive, once it is `leader` (the drop-in moves an idle
/// keep-alive to the leader the health state knows; its leader checks run every 5 s), or
/// after 15 s whichever member it is.
async fn serving_leader(stats: &StreamStats, leader: usize) -> usize {
    let mut member = serving(stats, StreamKind::KeepAlive).await;
    for _ in 0..150 {
        if member == leader {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        member = serving(stats, StreamKind::KeepAlive).await;
    }
    member
}

const PASSWORD: &str = "dropin-streams-pw";

/// With etcd auth on, the moved streams carry etcd-client's token: a watch and a keep-alive,
/// both served by the leader, survive its death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_keep_alive_with_auth_survive_the_leader_killed() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let login = || {
        ConnectOptions::new()
            .with_user("root", PASSWORD)
            .with_auto_token_refresh(true)
    };
    let channel = HealthChannel::new(Config::default()).resume_streams(resume());
    let stats = channel.stream_stats();
    let client = Client::connect_with_balanced_channel(cluster.endpoints(), Some(login()), channel)
        .await
        .expect("client");
    let writer = writer_client_with(&cluster, login()).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");

    let leased = LeasedKey::start(&client, &writer).await;
    let keep_alive_on = serving_leader(&stats, leader).await;
    let (stream, watch_on) = open_watch(&client, &stats, leader, true).await;
    eprintln!("keep-alive on member {keep_alive_on}, watch on member {watch_on}, leader {leader}");

    let written = Arc::new(AtomicU64::new(0));
    let write = tokio::spawn(write_values(writer.clone(), written.clone()));
    let watcher = spawn_watcher(stream);
    while written.load(Ordering::Relaxed) < FAULT_AFTER as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(target: "etcd_health::tests", member = leader, "fault: kill");
    cluster.kill(leader);
    let received = tokio::time::timeout(WATCH_BOUND, watcher).await;
    tokio::time::timeout(WATCH_BOUND, write)
        .await
        .expect("the writer finished")
        .expect("writer");
    let (keys, _) = match received {
        Err(_) => panic!("the watch did not receive all {VALUES} values within {WATCH_BOUND:?}"),
        Ok(joined) => joined.expect("watcher").unwrap_or_else(|e| panic!("{e}")),
    };
    let expected: Vec<String> = (0..VALUES).map(|i| format!("w/{i:04}")).collect();
    assert_eq!(keys, expected, "every value once, in order");

    // More than a TTL after the kill.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, kept) = leased.stop().await;
    let found = writer.kv_client().get("leased", None).await.expect("get");
    let counts = stats.counts();
    eprintln!("stream stats {counts:?}");
    expect_kept(kept);
    assert_eq!(found.count(), 1, "the leased key outlived the leader");
    assert!(
        counts.watch_resumptions >= 1 && counts.keep_alive_resumptions >= 1,
        "the kill hit both streams' member: {counts:?}"
    );
}

/// A watch the drop-in re-creates carries the token etcd-client uses now, not the one it was
/// opened with: here etcd has forgotten the first token (simple tokens unused for
/// `--auth-token-ttl` are dropped) and etcd-client renewed it on a refused put before the
/// watch's member was paused. Re-created with its own token, the watch would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_re_created_after_etcd_client_renewed_its_token_carries_the_new_one() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(3)
        .extra_args(["--auth-token-ttl", "2"])
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let channel = HealthChannel::new(Config::default()).resume_streams(resume());
    let stats = channel.stream_stats();
    let login = ConnectOptions::new()
        .with_user("root", PASSWORD)
        .with_auto_token_refresh(true)
        .with_timeout(Duration::from_secs(2));
    let client = Client::connect_with_balanced_channel(cluster.endpoints(), Some(login), channel)
        .await
        .expect("client");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let (stream, victim) = open_watch(&client, &stats, leader, false).await;
    // Nothing is sent for longer than the TTL: every member forgets the token.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The writer's first put is refused and etcd-client authenticates again; its reads keep
    // the new token alive on every member that serves them.
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_values_with(client.clone(), written.clone(), true));
    let watcher = spawn_watcher(stream);
    while written.load(Ordering::Relaxed) < FAULT_AFTER as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("pausing member {victim}, which serves the watch (leader {leader})");
    cluster.pause(victim);
    let received = tokio::time::timeout(WATCH_BOUND, watcher).await;
    let failures = tokio::time::timeout(WATCH_BOUND, writer).await;
    cluster.resume(victim);
    let failures = failures.expect("the writer finished").expect("writer");
    let (keys, _) = match received {
        Err(_) => panic!(
            "the watch did not receive all {VALUES} values within {WATCH_BOUND:?}; stream \
             stats {:?}",
            stats.counts()
        ),
        Ok(joined) => joined.expect("watcher").unwrap_or_else(|e| panic!("{e}")),
    };
    let expected: Vec<String> = (0..VALUES).map(|i| format!("w/{i:04}")).collect();
    assert_eq!(keys, expected, "every value once, in order");
    let counts = stats.counts();
    eprintln!("writer retries {failures}; stream stats {counts:?}");
    assert!(
        counts.watch_resumptions >= 1,
        "the pause hit the watch's member: {counts:?}"
    );
}

/// The longest a keep-alive of etcd-client's keeper may wait for its answer over the drop-in
/// (issue 29: its loop renews only after an answer, so a wait eats into the lease's margin).
const KEEP_ALIVE_BOUND: Duration = Duration::from_millis(1500);
/// How soon after a new leader is elected the keep-alive must be answered, if the election
/// itself came late (a loaded machine): a hedge a quarter of the drop-in's 1 s response
/// timeout apart, plus a leader check of the health state (one `Status` round, 250 ms
/// deadline), plus scheduling slack. The old drop-in needed its 2 s stream timeout.
const AFTER_ELECTION: Duration = Duration::from_millis(750);

/// Since `since`, how long until a member other than `old` reports a leader other than
/// `old` (each follower asked directly, every 20 ms, with a 200 ms deadline).
async fn new_leader_after(cluster: &Cluster, old: usize, since: std::time::Instant) -> Duration {
    let old_id = cluster.member_id(old);
    let options = ConnectOptions::new().with_timeout(Duration::from_millis(200));
    let mut followers = Vec::new();
    for i in (0..cluster.size()).filter(|&i| i != old) {
        let client = Client::connect([cluster.direct_endpoint(i)], Some(options.clone()))
            .await
            .expect("follower client");
        followers.push(client);
    }
    loop {
        for f in &mut followers {
            if let Ok(status) = f.status().await {
                let leader = status.leader();
                if leader != 0 && leader != old_id {
                    return since.elapsed();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keep-alive messages the members received (etcd's own `/metrics`), over those that answer.
async fn keep_alives_received(cluster: &Cluster) -> u64 {
    let mut total = 0;
    for i in 0..cluster.size() {
        let Ok(metrics) = cluster.metrics(i).await else {
            continue;
        };
        total += metrics
            .lines()
            .filter(|l| {
                l.starts_with("grpc_server_msg_received_total")
                    && l.contains("grpc_method=\"LeaseKeepAlive\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// A keep-alive that etcd-client's keeper sends to the leader just after the leader hung is
/// answered within 1.5 s (or soon after the cluster elected another leader, if that came
/// late): the drop-in asks other members too, and the new leader as soon as the health state
/// finds it. The lease is then still alive (answered with a TTL), each keep-alive has one
/// answer, and every keep-alive the members saw beyond the caller's is one the stream stats
/// count. Before, the keep-alive
/// waited for the drop-in's 2 s stream timeout on the hung leader and was then moved: 2 s or
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_sent_to_a_hung_leader_is_answered_within_1_5_s() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let (client, checker, stats) = dropin_client_with_streams(&cluster, resume()).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let lease = client
        .lease_client()
        .grant(3, None)
        .await
        .expect("grant")
        .id();
    let mut lc = client.lease_client();
    let (mut keeper, mut answers) = lc.keep_alive(lease).await.expect("keep_alive");
    // The keep-alive goes to the leader once the health state knows it; renewals meanwhile.
    for _ in 0..150 {
        let on_leader = stats
            .serving()
            .iter()
            .any(|s| s.kind == StreamKind::KeepAlive && s.member.index() == leader);
        if on_leader && checker.leader().leader_index == Some(leader) {
            break;
        }
        keeper.keep_alive().await.expect("keeper");
        answers.message().await.expect("answer").expect("an answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served_by = serving(&stats, StreamKind::KeepAlive).await;
    let received_before = keep_alives_received(&cluster).await;
    let before = stats.counts();

    tracing::info!(target: "etcd_health::tests", member = leader, "fault: pause");
    cluster.pause(leader);
    let paused = std::time::Instant::now();
    keeper.keep_alive().await.expect("keeper");
    let sent = std::time::Instant::now();
    let (answer, elected) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), answers.message()),
        new_leader_after(&cluster, leader, paused)
    );
    let waited = sent.elapsed().min(Duration::from_secs(10));
    let ttl = match answer {
        Ok(Ok(Some(r))) => r.ttl(),
        other => panic!("no answer to the keep-alive ({waited:?}): {other:?}"),
    };
    // Answered when the answer was read: measure before anything else.
    let answered_after = sent.elapsed();
    cluster.resume(leader);
    // One more renewal after the fault: the lease is alive and the stream goes on.
    keeper.keep_alive().await.expect("keeper");
    let next = tokio::time::timeout(Duration::from_secs(5), answers.message())
        .await
        .expect("an answer after the fault")
        .expect("answer")
        .expect("the stream goes on");
    // One answer per keep-alive: whatever other members answered late is not passed on.
    let extra = tokio::time::timeout(Duration::from_millis(500), answers.message()).await;
    assert!(extra.is_err(), "an answer nobody asked for: {extra:?}");
    let received = keep_alives_received(&cluster).await - received_before;
    let counts = stats.counts();
    eprintln!(
        "keep-alive on member {served_by} (leader {leader}) answered after {answered_after:?} \
         with TTL {ttl}; a new leader was elected {elected:?} after the pause; members received \
         {received} keep-alives for the caller's 2; stream stats before {before:?}, after \
         {counts:?}; leader view {:?}",
        checker.leader()
    );
    assert!(ttl > 0 && next.ttl() > 0, "the lease is alive");
    let bound = KEEP_ALIVE_BOUND.max(elected + AFTER_ELECTION);
    assert!(
        answered_after <= bound,
        "the keep-alive waited {answered_after:?} (bound {bound:?}; new leader after {elected:?})"
    );
    let extra = counts.keep_alives_resent - before.keep_alives_resent;
    assert!(
        received <= 2 + extra,
        "every extra keep-alive the members saw is counted: received {received}, the caller's \
         2 plus {extra} counted"
    );
}

/// With every member accepting the keep-alive stream and never answering it (no headers, no
/// answer), etcd-client's `keep_alive()` used to wait for ever: the drop-in moved the stream
/// from member to member. Its first open is now bounded as a watch's is (`opening.rs`): once
/// each member failed or stayed silent (or `retry.budget` ran out), the call fails. Paused
/// time, fake members.
#[tokio::test(start_paused = true)]
async fn keep_alive_with_every_member_silent_fails_instead_of_waiting_for_ever() {
    use etcd_health_testing::fake::{Behaviour, FakeCluster};
    let fake = FakeCluster::start(3, Behaviour::Etcd34)
        .await
        .expect("fake members");
    for i in 0..3 {
        fake.hold_keep_alives(i, true);
    }
    let config = Config::default();
    let budget = config.retry.budget;
    let mut client =
        Client::connect_with_balanced_channel(fake.endpoints(), None, HealthChannel::new(config))
            .await
            .expect("client");
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(budget * 3, client.lease_keep_alive(7))
        .await
        .expect("keep_alive() returned");
    let waited = started.elapsed();
    let Err(etcd_client::Error::GRpcStatus(status)) = answer else {
        panic!("no member opened the stream, yet: {:?}", answer.map(|_| ()));
    };
    println!("keep_alive() failed after {waited:?}: {status:?}");
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        ),
        "{status:?}"
    );
    assert!(waited <= budget + Duration::from_secs(1), "{waited:?}");
}
