//! Shared helpers of the integration tests: building stacks, running a read load, waiting for
//! health transitions.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_health::config::Config;
use etcd_health::extend::IntoBoxChannel;
use etcd_health::observe::{EventKind, HealthEvent, Status};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{Balance, HealthChecker, TonicConnector};
use etcd_health_testing::Cluster;
use tokio::sync::broadcast;

/// etcd-client over the drop-in with `Config::default()`, as users build it, and its health
/// state.
pub async fn dropin_client(cluster: &Cluster) -> (etcd_client::Client, HealthChecker) {
    let (client, checker, _) = dropin_client_with_streams(cluster, true).await;
    (client, checker)
}

/// [`dropin_client`] with the drop-in's stream resumption on or off, and its stream counters.
pub async fn dropin_client_with_streams(
    cluster: &Cluster,
    resume_streams: bool,
) -> (
    etcd_client::Client,
    HealthChecker,
    etcd_health::observe::StreamStats,
) {
    init_tracing();
    let checker = HealthChecker::with_uris(std::iter::empty(), Config::default()).expect("checker");
    let channel =
        etcd_health::HealthChannel::with_checker(checker.clone()).resume_streams(resume_streams);
    let stats = channel.stream_stats();
    let client =
        etcd_client::Client::connect_with_balanced_channel(cluster.endpoints(), None, channel)
            .await
            .expect("drop-in client");
    (client, checker, stats)
}

/// A config for fast tests: the seed's defaults with short probe timers, and a read
/// attempt timeout so that a hung member costs a read one short attempt, not its deadline.
pub fn fast_config() -> Config {
    let mut c = Config::default();
    c.checks.active.timeout = Duration::from_millis(500);
    c.checks.active.unhealthy.interval = Duration::from_millis(500);
    c.ejection.base = Duration::from_millis(500);
    c.retry.read_attempt_timeout = Duration::from_millis(300);
    c
}

/// Sends `tracing` output to the test's captured output (`RUST_LOG` filters it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "etcd_health=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `done` every 20 ms until it holds, failing the test with `what` after `timeout`; how
/// long that took.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A health-checked stack over every member of `cluster`.
pub fn stack(cluster: &Cluster, config: Config) -> Balance<TonicConnector> {
    init_tracing();
    HealthChecker::new(&cluster.endpoints(), config)
        .expect("checker")
        .channel()
}

/// Puts `key = value` through the stack.
pub async fn put(
    stack: &(impl IntoBoxChannel + Clone),
    key: &str,
    value: &str,
) -> Result<(), tonic::Status> {
    let mut kv = KvClient::new(stack.clone().into_box_channel());
    let mut req = tonic::Request::new(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    kv.put(req).await.map(|_| ())
}

/// Counts of a read load.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub unknown_code: AtomicU64,
}

impl LoadStats {
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// `readers` concurrent linearizable reads through the stack, each with `deadline`, until the
/// returned guard is stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub stats: Arc<LoadStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(
        stack: &(impl IntoBoxChannel + Clone),
        readers: usize,
        deadline: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::default());
        let tasks = (0..readers)
            .map(|_| {
                let mut kv = KvClient::new(stack.clone().into_box_channel());
                let stop = stop.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = tonic::Request::new(RangeRequest {
                            key: b"load".to_vec(),
                            ..Default::default()
                        });
                        req.set_timeout(deadline);
                        match kv.range(req).await {
                            Ok(_) => {
                                stats.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) => {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                                if status.code() == tonic::Code::Unknown
                                    && status.message().contains("not ready")
                                {
                                    stats.unknown_code.fetch_add(1, Ordering::Relaxed);
                                }
                                // Do not spin on fast failures.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stop, stats, tasks }
    }

    pub async fn stop(self) -> Arc<LoadStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.stats
    }
}

/// Waits until member `index` reaches `status`; returns how long it took.
pub async fn wait_status(
    events: &mut broadcast::Receiver<HealthEvent>,
    checker: &HealthChecker,
    index: usize,
    status: Status,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if checker
            .snapshot()
            .iter()
            .any(|s| s.member.index() == index && s.status == status)
        {
            return start.elapsed();
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(HealthEvent {
                member,
                kind: EventKind::StatusChanged(t),
            })) if member.index() == index && t.to == status => return start.elapsed(),
            Ok(_) => {}
            Err(_) => panic!(
                "member {index} did not become {status} within {timeout:?}; snapshot: {:#?}",
                checker.snapshot()
            ),
        }
    }
}

/// Turns on etcd auth with a `root` user holding the `root` role.
pub async fn enable_auth(cluster: &Cluster, password: &str) {
    let mut admin = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("admin client");
    admin.user_add("root", password, None).await.expect("user");
    admin.user_grant_role("root", "root").await.expect("role");
    admin.auth_enable().await.expect("auth enable");
}

/// The index of a member that is not the leader.
pub async fn follower(cluster: &Cluster) -> usize {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    (0..cluster.size())
        .find(|i| *i != leader)
        .expect("a follower")
}

/// Reads of the key `load` through etcd-client, `readers` at a time, each under the caller's
/// own `deadline` (a read not answered within it failed), every failure stamped with when it
/// happened: the read load of the drop-in's fault tests.
pub struct EtcdReads {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EtcdReads {
    /// Starts the readers.
    pub fn start(client: &etcd_client::Client, readers: usize, deadline: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..readers)
            .map(|_| {
                let mut kv = client.kv_client();
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match tokio::time::timeout(deadline, kv.get("load", None)).await {
                            Ok(Ok(_)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            failed => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((Instant::now(), format!("{failed:?}")));
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Reads answered so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Reads failed so far.
    pub fn failed(&self) -> usize {
        self.failures.lock().unwrap().len()
    }

    /// Reads that failed at `at` or later.
    pub fn failed_since(&self, at: Instant) -> usize {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= at)
            .count()
    }

    /// Stops the readers; the reads answered and the failures.
    pub async fn stop(self) -> (u64, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The first `n` failures' messages, for a report.
pub fn first_failures(failures: &[(Instant, String)], n: usize) -> Vec<&str> {
    failures.iter().take(n).map(|(_, m)| m.as_str()).collect()
}
