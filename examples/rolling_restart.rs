//! Writes through a rolling restart: how many end as *outcome unknown*, and proof at the
//! members that none was applied twice.
//!
//! ```sh
//! cargo run --example rolling_restart -- [--writers 8] [--rounds 2] [--settle-ms 1000]
//! ```
//!
//! A fresh 3-member cluster; `--writers` tasks put one new key each after another (every key
//! and value unique, a 3 s deadline each) through the tower stack (`Config::default()`) while
//! each member in turn is stopped as an operator would (SIGTERM: etcd's gRPC server sends
//! `GOAWAY` and finishes what it took), started again, and given `--settle-ms`; `--rounds`
//! times over the three members. Then every key is read back: an acknowledged write must be
//! there with version 1, a write that failed without *outcome unknown* must not be there at
//! all, and no key may have a version above 1 (a write applied twice). The `Put` calls the
//! members started (etcd's `grpc_server_started_total`, scraped from each member just before
//! it stops and at the end) are printed beside the writes. `docs/unsent-writes.md` has the
//! figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_health::config::Config;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use tower::Layer;

/// How one write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Acknowledged,
    OutcomeUnknown,
    /// Failed, certainly not applied.
    Failed,
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
        })
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let writers = arg("--writers", 8) as usize;
    let rounds = arg("--rounds", 2) as usize;
    let settle = Duration::from_millis(arg("--settle-ms", 1000));
    let cluster = Cluster::start(3).await.expect("cluster");
    let checker = HealthChecker::new(&cluster.endpoints(), Config::default()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());

    let stop = Arc::new(AtomicBool::new(false));
    let ended: Arc<Mutex<Vec<(String, Ended, String)>>> = Arc::default();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let mut kv = KvClient::new(stack.clone());
            let (stop, ended) = (stop.clone(), ended.clone());
            tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("rolling/{w}/{seq}");
                    seq += 1;
                    let mut req = tonic::Request::new(PutRequest {
                        key: key.clone().into_bytes(),
                        value: key.clone().into_bytes(),
                        ..Default::default()
                    });
                    req.set_timeout(Duration::from_secs(3));
                    let (how, why) = match kv.put(req).await {
                        Ok(_) => (Ended::Acknowledged, String::new()),
                        Err(s) if etcd_health::outcome_unknown(&s) => {
                            (Ended::OutcomeUnknown, s.message().to_string())
                        }
                        Err(s) => (Ended::Failed, s.message().to_string()),
                    };
                    ended.lock().unwrap().push((key, how, why));
                }
            })
        })
        .collect();

    let start = Instant::now();
    let mut puts_started = 0;
    tokio::time::sleep(settle).await;
    for _ in 0..rounds {
        for i in 0..cluster.size() {
            puts_started += cluster.grpc_started(i, "Put").await.unwrap_or(0);
            cluster.restart_gracefully(i).await.expect("member back");
            tokio::time::sleep(settle).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let took = start.elapsed();
    puts_started += cluster.grpc_started_total("Put").await.unwrap_or(0);

    let ended = ended.lock().unwrap().clone();
    let mut kv = KvClient::new(stack.clone());
    let stored = kv
        .range(RangeRequest {
            key: b"rolling/".to_vec(),
            range_end: b"rolling0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("read back")
        .into_inner()
        .kvs;
    let version = |key: &str| {
        stored
            .iter()
            .find(|kv| kv.key == key.as_bytes())
            .map(|kv| kv.version)
    };
    let count = |e: Ended| ended.iter().filter(|(_, how, _)| *how == e).count();
    let mut lost = 0;
    let mut applied_though_failed = 0;
    let mut unknown_applied = 0;
    for (key, how, _) in &ended {
        match (how, version(key)) {
            (Ended::Acknowledged, None) => lost += 1,
            (Ended::Failed, Some(_)) => applied_though_failed += 1,
            (Ended::OutcomeUnknown, Some(_)) => unknown_applied += 1,
            _ => {}
        }
    }
    let twice = stored.iter().filter(|kv| kv.version != 1).count();
    println!(
        "rolling restart: {rounds} round(s) of 3 graceful restarts in {took:.1?}, {writers} writers"
    );
    println!("| writes | acknowledged | outcome unknown (of them applied) | failed, not applied | retries | Put calls started at the members | keys stored | applied twice | acknowledged but lost | failed but applied |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
        ended.len(),
        count(Ended::Acknowledged),
        count(Ended::OutcomeUnknown),
        unknown_applied,
        count(Ended::Failed),
        checker.retries(),
        puts_started,
        stored.len(),
        twice,
        lost,
        applied_though_failed,
    );
    let mut reasons: Vec<&str> = ended
        .iter()
        .filter(|(_, how, _)| *how == Ended::OutcomeUnknown)
        .map(|(_, _, why)| why.as_str())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    for why in reasons.iter().take(8) {
        println!("outcome unknown: {why}");
    }
    assert_eq!(twice, 0, "a write was applied twice");
    assert_eq!(lost, 0, "an acknowledged write is missing");
    assert_eq!(
        applied_though_failed, 0,
        "a write reported failed was applied"
    );
}
