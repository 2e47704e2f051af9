//! The live demo: a local 3-member etcd cluster, a read/write load through the health layer,
//! and real faults injected one after another, with a per-member table every second.
//!
//! Run it with `scripts/demo.sh` (or `cargo run --release --example demo`). It needs no
//! configuration: it starts its own cluster from `etcd` on PATH (or `$ETCD_BIN`) and removes
//! it at the end. With `--tls` the members speak only TLS and demand client certificates
//! (made for the run), and the same faults play out over mTLS.
//!
//! Built with the `metrics` feature (as `scripts/demo.sh` does), it serves the stack's metrics
//! in Prometheus' text format at `http://127.0.0.1:9464/metrics` (`--metrics ADDR` to move it;
//! another free port if that one is taken), says where at the start, and shows the health
//! series at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use tower::Layer;

// Shared with the benchmark examples: the demo's health config and faults.
mod common;
use common::args::Args;
use common::clients::health_config;
use common::faults::Fault;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env("demo [--tls] [--metrics 127.0.0.1:9464]");
    let tls = args.flag("tls");
    // Before the stack is built: it registers its metrics' handles then.
    #[cfg(feature = "metrics")]
    let metrics_addr = serve_metrics(args.value("metrics", ([127, 0, 0, 1], 9464).into()))?;
    println!(
        "starting a local 3-member etcd cluster{}...",
        if tls { " (mTLS)" } else { "" }
    );
    let started = Instant::now();
    let cluster = Cluster::builder().members(3).tls(tls).start().await?;
    println!("cluster ready in {:.1?}", started.elapsed());
    for i in 0..cluster.size() {
        println!(
            "  member {i}: {} (id {:x}, pid {:?})",
            cluster.endpoint(i),
            cluster.member_id(i),
            cluster.pid(i)
        );
    }

    // The defaults (hedged reads, hang detection, leader checks), with `status` probes and
    // shorter probe timers, so members come back sooner.
    let mut config = health_config();
    if let Some(pki) = cluster.pki() {
        // Requests and probes present this client certificate and trust only this CA.
        config.tls = pki.client_config();
    }
    let checker = HealthChecker::new(&cluster.endpoints(), config)?;
    let channel = HealthLayer::new(checker.clone()).layer(TonicConnector::default());

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Counts::default());
    let writes = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for n in 0..8 {
        let mut kv = KvClient::new(channel.clone());
        let (stop, reads, writes) = (stop.clone(), reads.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (result, counts) = if n % 4 == 0 {
                    let mut req = tonic::Request::new(PutRequest {
                        key: format!("demo/{n}").into_bytes(),
                        value: i.to_string().into_bytes(),
                        ..Default::default()
                    });
                    req.set_timeout(Duration::from_secs(1));
                    (kv.put(req).await.map(|_| ()), &writes)
                } else {
                    let mut req = tonic::Request::new(RangeRequest {
                        key: b"demo/0".to_vec(),
                        ..Default::default()
                    });
                    req.set_timeout(Duration::from_secs(1));
                    (kv.range(req).await.map(|_| ()), &reads)
                };
                match result {
                    Ok(()) => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    // Followers first, then the leader: losing the leader costs an election (about one
    // election timeout during which no member can serve a linearizable request); the stack
    // holds reads through it (hedged, retried until their deadline) instead of failing them.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
    let followers: Vec<usize> = (0..cluster.size()).filter(|i| *i != leader).collect();
    let (a, b) = (followers[0], followers[1]);
    println!("leader: member {leader}");
    let schedule: &[(u64, Fault, usize)] = &[
        (3, Fault::Pause, a),
        (8, Fault::Resume, a),
        (11, Fault::Kill, b),
        (15, Fault::Restart, b),
        (19, Fault::Isolate, a),
        (24, Fault::Heal, a),
        (27, Fault::Pause, leader),
        (32, Fault::Resume, leader),
    ];
    let total = 36;
    println!();
    println!(
        "{:>4} {:>7} {:>6} {:>7} {:>6}  {:<44}  event",
        "t/s",
        "reads",
        "r-err",
        "writes",
        "w-err",
        "members (L = leader): state requests latency failures(http/tcp/timeouts/hangs) ejections"
    );
    let mut last = (0, 0, 0, 0);
    for second in 1..=total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut event = String::new();
        for &(at, fault, member) in schedule.iter().filter(|(at, ..)| *at == second) {
            let _ = at;
            fault.apply(&cluster, member).await?;
            event = format!("{fault:?} member {member}");
        }
        let now = (
            reads.ok.load(Ordering::Relaxed),
            reads.failed.load(Ordering::Relaxed),
            writes.ok.load(Ordering::Relaxed),
            writes.failed.load(Ordering::Relaxed),
        );
        let leader = checker.leader().leader_index;
        let members: Vec<String> = checker
            .snapshot()
            .iter()
            .map(|m| {
                let mark = if leader == Some(m.member.index()) {
                    "L"
                } else {
                    " "
                };
                format!(
                    "{}{mark}:{:<9} {:>6} {:>5.1}ms {}/{}/{}/{} e{}",
                    m.member.index(),
                    m.status.to_string(),
                    m.requests,
                    m.latency.unwrap_or_default().as_secs_f64() * 1e3,
                    m.totals[1],
                    m.totals[2],
                    m.totals[3],
                    m.totals[4],
                    m.ejections_total
                )
            })
            .collect();
        println!(
            "{second:>4} {:>7} {:>6} {:>7} {:>6}  {}  {event}",
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2,
            now.3 - last.3,
            members.join(" | ")
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    println!();
    println!(
        "summary: reads ok {} failed {}; writes ok {} failed {}; hedged reads {}, retries {}",
        reads.ok.load(Ordering::Relaxed),
        reads.failed.load(Ordering::Relaxed),
        writes.ok.load(Ordering::Relaxed),
        writes.failed.load(Ordering::Relaxed),
        checker.hedges(),
        checker.retries()
    );
    for m in checker.snapshot() {
        println!(
            "  {}: {}, ejected {} times, totals (ok, failures, tcp, timeouts, hangs) {:?}, last probe {:?}",
            m.member,
            m.status,
            m.ejections_total,
            m.totals,
            m.last_probe.map(|p| p.detail)
        );
    }
    #[cfg(feature = "metrics")]
    show_metrics(metrics_addr).await;
    Ok(())
}

/// Serves the metrics over HTTP with `metrics-exporter-prometheus` at `wanted`, or at a free
/// port of its host if that one is taken, and says where.
#[cfg(feature = "metrics")]
fn serve_metrics(
    wanted: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Bound and released to learn that the port is free (or to be given one).
    let addr = std::net::TcpListener::bind(wanted)
        .or_else(|_| std::net::TcpListener::bind((wanted.ip(), 0)))?
        .local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_enable_unit_suffix(true)
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()),
            &etcd_health::metrics::DURATION_BUCKETS,
        )?
        .install()?;
    println!("metrics (Prometheus text format): http://{addr}/metrics");
    Ok(addr)
}

/// Prints the health series of the metrics endpoint, as a scraper sees them.
#[cfg(feature = "metrics")]
async fn show_metrics(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut text = String::new();
    if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_ok() {
            let _ = stream.read_to_string(&mut text).await;
        }
    }
    println!();
    println!("metrics served at http://{addr}/metrics (health series):");
    let shown = [
        "etcd_health_member_healthy",
        "etcd_health_outlier_detection_ejections_enforced",
        "etcd_health_outlier_detection_readmissions",
        "etcd_health_leader_changes",
        "etcd_health_client_retries",
        "etcd_health_client_hedges",
        "grpc_client_call_duration_seconds_count",
    ];
    for line in text.lines() {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if shown.contains(&name) && !line.ends_with(" 0") {
            println!("  {line}");
        }
    }
}
