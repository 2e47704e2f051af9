//! etcd-client's own API through the drop-in (`connect_with_balanced_channel` with
//! [`HealthChannel`]) while a follower is killed, paused and isolated, under concurrent reads
//! and writes. Checks: no read fails; no write is applied twice; every acknowledged write is
//! readable afterwards. Runs once without and once with etcd auth (the restarted member has
//! forgotten the client's token: etcd-client must renew it).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_client::{Client, ConnectOptions, Txn, TxnOp};
use etcd_health::config::ProbeType;
use etcd_health::HealthChannel;
use etcd_health_testing::Cluster;

const WRITERS: usize = 3;
const READERS: usize = 4;
const PASSWORD: &str = "dropin-suite-pw";

#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    failed_reads: AtomicU64,
    writes: AtomicU64,
    unknown_writes: AtomicU64,
}

/// What one writer knows of its own writes.
#[derive(Debug, Default)]
struct WriterLog {
    acked: Vec<u64>,
    unknown: u64,
}

async fn writer(
    client: Client,
    id: usize,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> WriterLog {
    let mut kv = client.kv_client();
    let mut log = WriterLog::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        // One txn writes a unique key and bumps the writer's counter key: the counter's
        // `version` then counts how many of this writer's txns were applied.
        let txn = Txn::new().and_then(vec![
            TxnOp::put(format!("w/{id}/{seq}"), seq.to_string(), None),
            TxnOp::put(format!("count/{id}"), seq.to_string(), None),
        ]);
        match kv.txn(txn).await {
            Ok(_) => {
                log.acked.push(seq);
                counts.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                // Outcome unknown (or certainly not applied): it may count once, never twice.
                log.unknown += 1;
                counts.unknown_writes.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    log
}

async fn reader(client: Client, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut kv = client.kv_client();
    while !stop.load(Ordering::Relaxed) {
        match kv.get("count/0", None).await {
            Ok(_) => counts.reads.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                eprintln!("read failed: {e}");
                counts.failed_reads.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_api_survives_member_faults_without_losing_or_doubling_writes() {
    faults_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_api_survives_member_faults_with_auth_enabled() {
    faults_case(true).await;
}

/// Drop-in tests share two cores; running them one at a time keeps them meaningful.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A kill, a pause and an isolation of a follower under concurrent reads and writes through
/// etcd-client over the drop-in. With `auth`, etcd auth is on and the client logs in as
/// `root` (etcd-client keeps the token itself); probes stay unauthenticated.
async fn faults_case(auth: bool) {
    let _serial = serial().await;
    init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    if auth {
        enable_auth(&cluster, PASSWORD).await;
    }
    let mut config = fast_config();
    config.checks.active.probe_type = ProbeType::Status;
    config.checks.active.healthy.interval = Duration::from_millis(500);
    config.checks.passive.unhealthy.timeouts = 1;
    // Our own handle on the health state the client's traffic feeds, for its counters.
    let checker =
        etcd_health::HealthChecker::with_uris(std::iter::empty(), config).expect("checker");
    let channel = HealthChannel::with_checker(checker.clone());
    let mut options = ConnectOptions::new().with_timeout(Duration::from_secs(2));
    if auth {
        // etcd-client renews a token a member refuses (a restarted member forgets simple
        // tokens) only when asked to.
        options = options
            .with_user("root", PASSWORD)
            .with_auto_token_refresh(true);
    }
    let client = Client::connect_with_balanced_channel(cluster.endpoints(), Some(options), channel)
        .await
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(client.clone(), id, stop.clone(), counts.clone())))
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|_| tokio::spawn(reader(client.clone(), stop.clone(), counts.clone())))
        .collect();

    let snapshot = |label: &str| {
        println!(
            "{label:>10}: reads {} (failed {}), writes acked {} (unknown {})",
            counts.reads.load(Ordering::Relaxed),
            counts.failed_reads.load(Ordering::Relaxed),
            counts.writes.load(Ordering::Relaxed),
            counts.unknown_writes.load(Ordering::Relaxed)
        );
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    snapshot("steady");
    let victim = follower(&cluster).await;
    cluster.kill(victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(victim).await.expect("restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    snapshot("kill");
    let victim = follower(&cluster).await;
    cluster.pause(victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.resume(victim);
    tokio::time::sleep(Duration::from_secs(1)).await;
    snapshot("pause");
    let victim = follower(&cluster).await;
    cluster.isolate(victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.heal(victim);
    tokio::time::sleep(Duration::from_secs(2)).await;
    snapshot("isolate");

    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    let mut logs = Vec::new();
    for w in writers {
        logs.push(w.await.expect("writer"));
    }

    // Check every writer's history against the cluster.
    let mut kv = client.kv_client();
    let mut duplicates = 0;
    for (id, log) in logs.iter().enumerate() {
        let count = kv.get(format!("count/{id}"), None).await.expect("get");
        let applied = count
            .kvs()
            .first()
            .map(|kv| kv.version() as u64)
            .unwrap_or(0);
        let acked = log.acked.len() as u64;
        assert!(
            applied >= acked,
            "writer {id}: {acked} acknowledged but only {applied} applied"
        );
        if applied > acked + log.unknown {
            duplicates += applied - acked - log.unknown;
        }
        let keys = kv
            .get(
                format!("w/{id}/"),
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
            .expect("range");
        let present: std::collections::HashSet<String> = keys
            .kvs()
            .iter()
            .map(|kv| kv.key_str().expect("utf8").to_owned())
            .collect();
        for seq in &log.acked {
            assert!(
                present.contains(&format!("w/{id}/{seq}")),
                "writer {id}: acknowledged write {seq} is lost"
            );
        }
        println!(
            "writer {id}: acked {acked}, unknown {}, applied {applied}",
            log.unknown
        );
    }
    let retries = checker.retries();
    println!(
        "drop-in (auth {auth}): reads {} failed {}; writes acked {} unknown {}; duplicates {duplicates}; retries {retries}",
        counts.reads.load(Ordering::Relaxed),
        counts.failed_reads.load(Ordering::Relaxed),
        counts.writes.load(Ordering::Relaxed),
        counts.unknown_writes.load(Ordering::Relaxed),
    );
    assert_eq!(duplicates, 0, "no write applied twice");
    assert_eq!(
        counts.failed_reads.load(Ordering::Relaxed),
        0,
        "no read fails"
    );
    assert!(counts.reads.load(Ordering::Relaxed) > 100);
    assert!(counts.writes.load(Ordering::Relaxed) > 50);
}
