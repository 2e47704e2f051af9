//! Extra load on a slow cluster, counted at the members: stock etcd-client beside etcd-client
//! over the drop-in (`Config::default()`), on the same kind of fresh 3-member cluster.
//!
//! ```sh
//! cargo run --example retry_budget -- [--readers 32] [--slow-seconds 10] [--calm-seconds 3] [--runs 1]
//! ```
//!
//! Per client, on a fresh cluster: a calm phase (no fault) and a slow phase (every member
//! paused 70 ms of every 100 ms, SIGSTOP/SIGCONT, all at once), `--readers` tasks reading one
//! key (linearizable `get`) one after another, each read with a 2 s deadline
//! (`tokio::time::timeout`; stock etcd-client also gets `ConnectOptions::with_timeout`). The
//! `Range` requests the members started (etcd's `grpc_server_started_total`, summed over the
//! members' `/metrics`) are counted against the reads the application issued, as an operator
//! would. Prints a markdown table (`docs/retry-budget.md` has the figures).
//! `tests/retry_budget.rs` asserts the drop-in's ratios.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use etcd_health::config::Config;
use etcd_health::{HealthChannel, HealthChecker};
use etcd_health_testing::Cluster;

const DEADLINE: Duration = Duration::from_secs(2);
const KEY: &str = "budget/key";

/// One phase's counts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    reads: u64,
    failed: u64,
    started: u64,
}

/// Runs `readers` readers for `length`, with every member paused 70 ms of every 100 ms when
/// `slow`; counts reads and the `Range` requests the members started meanwhile.
async fn phase(
    cluster: &Cluster,
    client: &Client,
    readers: usize,
    length: Duration,
    slow: bool,
) -> Counts {
    let before = cluster.grpc_started_total("Range").await.expect("scrape");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let mut kv = client.kv_client();
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(DEADLINE, kv.get(KEY, None)).await {
                        Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    while started.elapsed() < length {
        if slow {
            (0..cluster.size()).for_each(|i| cluster.pause(i));
            tokio::time::sleep(Duration::from_millis(70)).await;
            (0..cluster.size()).for_each(|i| cluster.resume(i));
            tokio::time::sleep(Duration::from_millis(30)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Copies still on their way (an outrun hedge runs on until `hang.after`) land by then.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = cluster.grpc_started_total("Range").await.expect("scrape");
    let failed = failed.load(Ordering::Relaxed);
    Counts {
        reads: ok.load(Ordering::Relaxed) + failed,
        failed,
        started: after - before,
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let readers = arg(&args, "--readers", 32) as usize;
    let slow = Duration::from_secs(arg(&args, "--slow-seconds", 10));
    let calm = Duration::from_secs(arg(&args, "--calm-seconds", 3));
    let runs = arg(&args, "--runs", 1);
    println!("| client | run | phase | reads | failed | Range started | per read | hedges | retries | budget refused |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in 1..=runs {
        for stock in [true, false] {
            let cluster = Cluster::start(3).await.expect("cluster");
            let (client, checker) = if stock {
                let options = ConnectOptions::new().with_timeout(DEADLINE);
                let client = Client::connect(cluster.endpoints(), Some(options))
                    .await
                    .expect("stock client");
                (client, None)
            } else {
                let checker = HealthChecker::with_uris(std::iter::empty(), Config::default())
                    .expect("checker");
                let channel = HealthChannel::with_checker(checker.clone());
                let client =
                    Client::connect_with_balanced_channel(cluster.endpoints(), None, channel)
                        .await
                        .expect("drop-in client");
                (client, Some(checker))
            };
            client.kv_client().put(KEY, "v", None).await.expect("put");
            let name = if stock {
                "stock etcd-client"
            } else {
                "drop-in"
            };
            for (label, length, paused) in [("calm", calm, false), ("slow", slow, true)] {
                let before = checker
                    .as_ref()
                    .map(|c| (c.hedges(), c.retries(), c.retry_budget().refused));
                let c = phase(&cluster, &client, readers, length, paused).await;
                let extra = match (&checker, before) {
                    (Some(k), Some((h, r, f))) => format!(
                        "{} | {} | {}",
                        k.hedges() - h,
                        k.retries() - r,
                        k.retry_budget().refused - f
                    ),
                    _ => "- | - | -".to_owned(),
                };
                println!(
                    "| {name} | {run} | {label} | {} | {} | {} | {:.3} | {extra} |",
                    c.reads,
                    c.failed,
                    c.started,
                    c.started as f64 / c.reads.max(1) as f64
                );
            }
        }
    }
}
