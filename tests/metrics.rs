//! The `metrics` feature, seen the way an operator sees it: a real Prometheus server (Debian's
//! `prometheus`, or `$PROMETHEUS_BIN`) scrapes the stack's exporter every second while a member
//! of a real 3-member etcd cluster is paused and resumed, and the test asks Prometheus's HTTP
//! query API whether the ejection, the re-admission and the request durations arrived.
#![cfg(feature = "metrics")]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use etcd_health::observe::Status;
use etcd_health::proto::etcdserverpb::{lease_client::LeaseClient, LeaseGrantRequest};
use etcd_health::{HealthChecker, KeepAlive, KeepAliveOptions, ResumingWatch, WatchOptions};
use etcd_health_testing::Cluster;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free port on loopback (bound, read, released: a moment's race, acceptable in a test).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Prometheus server scraping `target` every second, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: SocketAddr) -> Self {
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: etcd-health\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (scripts/setup.sh --tests installs it): {e}")
            });
        let prometheus = Self {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(get(addr, "/-/ready").await, Some((200, _))) {
            assert!(Instant::now() < deadline, "prometheus not ready in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    /// The value of the instant query `query`, if it returns one series.
    async fn value(&self, query: &str) -> Option<f64> {
        let path = format!(
            "/api/v1/query?query={}",
            percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC)
        );
        let (status, body) = get(self.addr, &path).await?;
        assert_eq!(status, 200, "{query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        let result = json["data"]["result"].as_array()?;
        let [series] = result.as_slice() else {
            return None;
        };
        series["value"][1].as_str()?.parse().ok()
    }

    /// Waits (up to `within`) until `query` returns one series whose value `ok` accepts.
    async fn wait_for(&self, query: &str, ok: impl Fn(f64) -> bool, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.value(query).await;
            if let Some(v) = value.filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{query} is {value:?} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: its status and body, `None` when nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_an_ejection_a_readmission_and_request_durations() {
    // The recorder first: handles are registered when the stack is built.
    let exporter: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    PrometheusBuilder::new()
        .with_http_listener(exporter)
        .set_enable_unit_suffix(true)
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()),
            &etcd_health::metrics::DURATION_BUCKETS,
        )
        .expect("buckets")
        .install()
        .expect("exporter");

    let cluster = Cluster::start(3).await.expect("cluster");
    let prometheus = Prometheus::start(exporter).await;
    let mut config = fast_config();
    // As tests/faults.rs: one read attempt timed out on the hung member ejects it.
    config.checks.passive.unhealthy.timeouts = 1;
    let checker = HealthChecker::new(&cluster.endpoints(), config).expect("checker");
    let mut events = checker.subscribe();
    let stack = checker.channel();
    let load = Load::start(&stack, 4, Duration::from_secs(2));

    // The tower stack's own streams: watches until one is served by a follower, which is then
    // the member paused (its watch must move), and a lease keep-alive.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let authority = |i: usize| {
        let uri = http::Uri::try_from(cluster.endpoint(i)).expect("uri");
        uri.authority().expect("authority").as_str().to_owned()
    };
    let mut watches = Vec::new();
    let victim = loop {
        let watch = ResumingWatch::over_balance(&stack, WatchOptions::new("metrics-watch"));
        let deadline = Instant::now() + Duration::from_secs(5);
        let served = loop {
            if let Some(m) = watch.member() {
                break m;
            }
            assert!(Instant::now() < deadline, "a watch not served in 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        watches.push(watch);
        let on = (0..cluster.size())
            .find(|i| served.uri().authority().map(|a| a.as_str()) == Some(authority(*i).as_str()));
        if let Some(i) = on.filter(|i| *i != leader) {
            break i;
        }
        assert!(watches.len() < 12, "no watch of 12 on a follower");
    };
    let lease = LeaseClient::new(stack.clone())
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("lease")
        .into_inner()
        .id;
    let keep_alive = KeepAlive::over_balance(&stack, lease, KeepAliveOptions::default());

    let member = authority(victim);
    let started = Instant::now();
    cluster.pause(victim);
    wait_status(
        &mut events,
        &checker,
        victim,
        Status::Unhealthy,
        Duration::from_secs(10),
    )
    .await;
    let ejected = started.elapsed();
    // While it is out, Prometheus sees it out (a gauge is only seen if scraped while it holds).
    let within = Duration::from_secs(10);
    prometheus
        .wait_for(
            &format!("etcd_health_member_healthy{{etcd_member=\"{member}\"}}"),
            |v| v == 0.0,
            within,
        )
        .await;
    prometheus
        .wait_for(
            "etcd_health_members{status=\"unhealthy\"}",
            |v| v == 1.0,
            within,
        )
        .await;
    let ejections = prometheus
        .wait_for(
            &format!(
                "sum(etcd_health_outlier_detection_ejections_enforced{{etcd_member=\"{member}\"}})"
            ),
            |v| v >= 1.0,
            within,
        )
        .await;

    cluster.resume(victim);
    let resumed = Instant::now();
    wait_status(
        &mut events,
        &checker,
        victim,
        Status::Healthy,
        Duration::from_secs(15),
    )
    .await;
    let readmitted = resumed.elapsed();
    prometheus
        .wait_for(
            &format!("etcd_health_outlier_detection_readmissions{{etcd_member=\"{member}\"}}"),
            |v| v >= 1.0,
            within,
        )
        .await;
    prometheus
        .wait_for(
            &format!("etcd_health_member_healthy{{etcd_member=\"{member}\"}}"),
            |v| v == 1.0,
            within,
        )
        .await;
    let ejected_for = prometheus
        .wait_for(
            &format!(
                "etcd_health_outlier_detection_ejection_duration_seconds_sum{{etcd_member=\"{member}\"}}"
            ),
            |v| v > 0.0,
            within,
        )
        .await;
    let stats = load.stop().await;

    // The request durations: every read is counted once per call, and the reads on the paused
    // member show as attempts that did not end OK.
    let calls = prometheus
        .wait_for(
            "grpc_client_call_duration_seconds_count{grpc_method=\"etcdserverpb.KV/Range\",grpc_status=\"OK\"}",
            |v| v as u64 >= stats.ok() / 2,
            within,
        )
        .await;
    let p99 = prometheus
        .wait_for(
            "histogram_quantile(0.99, sum by (le) (grpc_client_call_duration_seconds_bucket{grpc_method=\"etcdserverpb.KV/Range\"}))",
            |v| v > 0.0 && v < 10.0,
            within,
        )
        .await;
    let failed_attempts = prometheus
        .wait_for(
            &format!(
                "sum(grpc_client_attempt_duration_seconds_count{{etcd_member=\"{member}\",grpc_status!=\"OK\"}})"
            ),
            |v| v >= 1.0,
            within,
        )
        .await;
    prometheus
        .wait_for("etcd_health_leader_known", |v| v == 1.0, within)
        .await;

    // The tower stack's streams, counted as the drop-in's are: every watch opened, all served
    // again, the paused member's watch moved; the keep-alive opened and served.
    let opened = watches.len() as f64;
    prometheus
        .wait_for(
            "etcd_health_stream_opened{kind=\"watch\"}",
            |v| v == opened,
            within,
        )
        .await;
    prometheus
        .wait_for(
            "etcd_health_stream_open{kind=\"watch\"}",
            |v| v == opened,
            within,
        )
        .await;
    let resumed = prometheus
        .wait_for(
            "etcd_health_stream_resumptions{kind=\"watch\"}",
            |v| v >= 1.0,
            within,
        )
        .await;
    prometheus
        .wait_for(
            "etcd_health_stream_opened{kind=\"keep_alive\"}",
            |v| v == 1.0,
            within,
        )
        .await;
    prometheus
        .wait_for(
            "etcd_health_stream_open{kind=\"keep_alive\"}",
            |v| v == 1.0,
            within,
        )
        .await;
    // Each member's channel connected (the paused one's is made anew at its re-admission).
    let connects = prometheus
        .wait_for(
            &format!(
                "etcd_health_subchannel_connection_attempts{{etcd_member=\"{member}\",result=\"ok\"}}"
            ),
            |v| v >= 1.0,
            within,
        )
        .await;
    prometheus
        .wait_for(
            "count(etcd_health_subchannel_connection_attempts{result=\"ok\"} >= 1)",
            |v| v == 3.0,
            within,
        )
        .await;
    // gRFC A96: reads to the paused member were hedged, each hedged call recorded once, the
    // sum being the stack's hedge count; likewise any retries.
    let hedged_calls = prometheus
        .wait_for(
            "sum(grpc_client_call_hedges_count{grpc_method=\"etcdserverpb.KV/Range\"})",
            |v| v >= 1.0,
            within,
        )
        .await;
    let hedges = checker.hedges() as f64;
    prometheus
        .wait_for("sum(grpc_client_call_hedges_sum)", |v| v == hedges, within)
        .await;
    let retries = checker.retries() as f64;
    if retries > 0.0 {
        prometheus
            .wait_for(
                "sum(grpc_client_call_retries_sum)",
                |v| v == retries,
                within,
            )
            .await;
    }
    drop(keep_alive);
    drop(watches);
    println!(
        "tower streams: {opened} watches, {resumed} resumed; {connects} connects to the paused \
         member; {hedged_calls} hedged reads ({hedges} hedges), {retries} retries"
    );
    println!(
        "ejected after {ejected:?}, re-admitted {readmitted:?} after the resume; Prometheus saw \
         {ejections} ejection(s), {ejected_for:.2} s ejected, {calls} OK reads (the load counted \
         {} ok, {} failed), read p99 {p99:.4} s, {failed_attempts} attempts on the paused \
         member not OK",
        stats.ok(),
        stats.failed()
    );
}
