//! The retry budget against real etcd, counted the way an operator would: the `Range`
//! requests the members started (etcd's own `grpc_server_started_total`) against the reads
//! the application issued, through etcd-client over the drop-in with `Config::default()`.
//!
//! The slow phase: every member paused 70 ms of every 100 ms (SIGSTOP/SIGCONT, all three at
//! once) for 10 s, 32 readers with 2 s deadlines. Without a budget each slow read is hedged to
//! another member, just as slow, and the members start well over 1.1 requests per read
//! (`docs/retry-budget.md` has the figures of both clients); with it, at most 10 % more. The
//! calm phase after it: no fault, at most 2 % more (the budget is not the bound there: reads
//! are simply not slow enough to hedge). Counts, not timing: the ratios hold on a loaded
//! machine, where reads are fewer but each one's copies are counted the same way.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_health_testing::Cluster;

const READERS: usize = 32;
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Reads {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Runs `READERS` readers of one key for `length`, while `fault` runs; returns the reads
/// issued and failed, and the `Range` requests the members started meanwhile.
async fn phase(
    cluster: &Cluster,
    client: &etcd_client::Client,
    length: Duration,
    paused: bool,
) -> (u64, u64, u64) {
    let before = cluster
        .grpc_started_total("Range")
        .await
        .expect("scrape before");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Reads::default());
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let mut kv = client.kv_client();
            let (stop, reads) = (stop.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(DEADLINE, kv.get("budget/key", None)).await {
                        Ok(Ok(_)) => reads.ok.fetch_add(1, Ordering::Relaxed),
                        _ => reads.failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    while started.elapsed() < length {
        if paused {
            for i in 0..cluster.size() {
                cluster.pause(i);
            }
            tokio::time::sleep(Duration::from_millis(70)).await;
            for i in 0..cluster.size() {
                cluster.resume(i);
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    // Copies still on their way (an outrun hedge runs on until `hang.after`) reach the members
    // by then.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = cluster
        .grpc_started_total("Range")
        .await
        .expect("scrape after");
    let ok = reads.ok.load(Ordering::Relaxed);
    let failed = reads.failed.load(Ordering::Relaxed);
    (ok + failed, failed, after - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cluster_gets_at_most_ten_percent_more_reads() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let (client, checker) = common::dropin_client(&cluster).await;
    client
        .kv_client()
        .put("budget/key", "v", None)
        .await
        .expect("put");

    let (reads, failed, started) = phase(&cluster, &client, Duration::from_secs(10), true).await;
    let slow = started as f64 / reads as f64;
    let budget = checker.retry_budget();
    eprintln!(
        "slow: {reads} reads, {failed} failed, {started} Range started: {slow:.3} per read; \
         hedges {}, retries {}, budget {budget:?}",
        checker.hedges(),
        checker.retries()
    );
    let (calm_reads, calm_failed, calm_started) =
        phase(&cluster, &client, Duration::from_secs(3), false).await;
    let calm = calm_started as f64 / calm_reads as f64;
    eprintln!(
        "calm: {calm_reads} reads, {calm_failed} failed, {calm_started} Range started: {calm:.3} per read"
    );
    assert!(reads > 500, "the slow phase issued {reads} reads");
    assert_eq!(failed, 0, "no read failed in the slow phase");
    assert!(slow <= 1.10, "{slow:.3} Range requests per read while slow");
    assert_eq!(calm_failed, 0, "no read failed in the calm phase");
    assert!(calm <= 1.02, "{calm:.3} Range requests per read while calm");
}
