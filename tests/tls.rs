//! TLS and mTLS against a real etcd cluster whose client ports speak only TLS and demand a
//! client certificate (`--client-cert-auth`), with certificates made for each test.
//!
//! Shown here: certificates are verified by default, for requests and probes; the client
//! certificate is presented by requests and by every kind of probe; a member whose certificate
//! comes from another CA is refused with an error that says so; `https_verify_certificate =
//! false` relaxes the probes only, and only when asked; failover works over TLS, through the
//! tower stack and through the etcd-client drop-in; a client certificate rotated on disk is
//! used by the connections made afterwards, without a failed read, and a half-written or
//! mismatched one keeps the old material until a good pair arrives.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{Client, ConnectOptions};
use etcd_health::config::{Config, ProbeType, TlsConfig};
use etcd_health::observe::{Outcome, Status};
use etcd_health::{HealthChannel, HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::{Cluster, TestPki};
use tower::Layer;

async fn tls_cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .tls(true)
        .start()
        .await
        .expect("TLS cluster")
}

/// Probes every 200 ms of the given type, with `tls`.
fn tls_config(probe_type: ProbeType, tls: TlsConfig) -> Config {
    let mut config = fast_config();
    config.checks.active.probe_type = probe_type;
    config.checks.active.healthy.interval = Duration::from_millis(200);
    config.tls = tls;
    config
}

/// Waits until every member has a probe report, and returns them (outcome, detail).
async fn probe_reports(checker: &HealthChecker) -> Vec<(Outcome, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reports: Vec<_> = checker
            .snapshot()
            .iter()
            .filter_map(|s| s.last_probe.as_ref())
            .map(|p| (p.outcome, p.detail.clone()))
            .collect();
        if reports.len() == checker.members().len() {
            return reports;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe report from every member: {:#?}",
            checker.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_type_and_requests_present_the_client_certificate() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki").clone();
    assert!(cluster.endpoint(0).starts_with("https://"));

    // `http` on https:// members speaks TLS too: their ports speak nothing else.
    for probe_type in [
        ProbeType::Https,
        ProbeType::Http,
        ProbeType::Status,
        ProbeType::Grpc,
    ] {
        let config = tls_config(probe_type, pki.client_config());
        let checker = HealthChecker::new(&cluster.endpoints(), config).expect("checker");
        let reports = probe_reports(&checker).await;
        println!("{probe_type:?} probes: {reports:?}");
        for (outcome, detail) in &reports {
            assert_eq!(*outcome, Outcome::Success, "{probe_type:?}: {detail}");
        }
        if matches!(probe_type, ProbeType::Https | ProbeType::Http) {
            assert!(
                reports.iter().all(|(_, d)| d == "status 200"),
                "{reports:?}"
            );
        }
        // Requests through the stack: the connector takes the checker's TLS material.
        let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
        put(&stack, "tls", "yes").await.expect("put over mTLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_probes_and_requests_are_refused() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki");
    let ca_only = TlsConfig {
        ca_file: Some(pki.ca_file().to_owned()),
        ..TlsConfig::default()
    };
    let mut config = tls_config(ProbeType::Https, ca_only);
    config.checks.active.unhealthy.interval = Duration::from_millis(200);
    let checker = HealthChecker::new(&cluster.endpoints(), config).expect("checker");
    let reports = probe_reports(&checker).await;
    println!("https probes without a client certificate: {reports:?}");
    for (outcome, detail) in &reports {
        assert_ne!(*outcome, Outcome::Success, "{detail}");
        // etcd (Go) answers a missing client certificate with a fatal alert after the TLS 1.3
        // handshake; the probe reports the alert, not just "connection error".
        assert!(
            detail.contains("fatal alert") && detail.contains("Certificate"),
            "the detail says what failed: {detail}"
        );
    }
    let mut events = checker.subscribe();
    for i in 0..3 {
        wait_status(
            &mut events,
            &checker,
            i,
            Status::Unhealthy,
            Duration::from_secs(10),
        )
        .await;
    }
    let stack = HealthLayer::new(checker).layer(TonicConnector::default());
    let err = put(&stack, "k", "v").await.expect_err("mTLS is required");
    println!("put without a client certificate: {err:?}");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    // (The member's alert reaches tonic's connection task, not the request: the request
    // only learns "connection closed". The probes' details name the alert.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_certificate_from_another_ca_is_refused_unless_verification_is_off() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki");
    let dir = tempfile_dir();
    let other = TestPki::generate(dir.path(), "other").expect("other CA");
    let wrong_ca = TlsConfig {
        ca_file: Some(other.ca_file().to_owned()),
        ..pki.client_config()
    };

    // Default: verified, refused, and the detail names the certificate problem.
    let config = tls_config(ProbeType::Https, wrong_ca.clone());
    assert!(config.checks.active.https_verify_certificate, "the default");
    let checker = HealthChecker::new(&cluster.endpoints(), config).expect("checker");
    let reports = probe_reports(&checker).await;
    println!("https probes, wrong CA: {reports:?}");
    for (outcome, detail) in &reports {
        assert_eq!(*outcome, Outcome::TcpFailure, "{detail}");
        assert!(
            detail.contains("invalid peer certificate") && detail.contains("UnknownIssuer"),
            "a clear error: {detail}"
        );
    }
    let stack = HealthLayer::new(checker).layer(TonicConnector::default());
    let err = put(&stack, "k", "v").await.expect_err("wrong CA");
    println!("put, wrong CA: {err:?}");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message()
            .contains("invalid peer certificate: UnknownIssuer"),
        "the caller is told why: {err:?}"
    );

    // Asked for: probes accept any certificate (still presenting the client certificate);
    // requests stay verified.
    let mut config = tls_config(ProbeType::Https, wrong_ca);
    config.checks.active.https_verify_certificate = false;
    let checker = HealthChecker::new(&cluster.endpoints(), config).expect("checker");
    let reports = probe_reports(&checker).await;
    println!("https probes, wrong CA, verification off: {reports:?}");
    for (outcome, detail) in &reports {
        assert_eq!(*outcome, Outcome::Success, "{detail}");
    }
    let stack = HealthLayer::new(checker).layer(TonicConnector::default());
    let err = put(&stack, "k", "v")
        .await
        .expect_err("requests are always verified");
    println!("put, wrong CA, probe verification off: {err:?}");
    assert!(
        err.message()
            .contains("invalid peer certificate: UnknownIssuer"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_over_mtls_through_the_stack_and_the_drop_in() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki").clone();
    let config = tls_config(ProbeType::Https, pki.client_config());

    // The tower stack.
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    put(&stack, "load", "x").await.expect("put");
    let mut events = checker.subscribe();

    // The drop-in: TLS given once, in `config.tls`; etcd-client's own `TlsOptions` come from
    // the same material.
    let drop_in_checker =
        HealthChecker::with_uris(std::iter::empty(), config.clone()).expect("checker");
    let tls = drop_in_checker.tls().expect("tls").clone();
    let options = ConnectOptions::new()
        .with_tls(tls.client_tls_config())
        .with_timeout(Duration::from_secs(2));
    let client = Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::with_checker(drop_in_checker.clone()),
    )
    .await
    .expect("drop-in client");
    client
        .kv_client()
        .put("dropin", "x", None)
        .await
        .expect("drop-in put");

    let load = Load::start(&stack, 4, Duration::from_secs(2));
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drop_in_load: Vec<_> = (0..2)
        .map(|_| {
            let mut kv = client.kv_client();
            let (reads, failed, stop) = (reads.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                while !stop.load(Relaxed) {
                    match kv.get("dropin", None).await {
                        Ok(_) => reads.fetch_add(1, Relaxed),
                        Err(_) => failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let victim = follower(&cluster).await;
    cluster.kill(victim);
    let evicted = wait_status(
        &mut events,
        &checker,
        victim,
        Status::Unhealthy,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = std::time::Instant::now();
    cluster.restart(victim).await.expect("restart");
    let readmitted = wait_status(
        &mut events,
        &checker,
        victim,
        Status::Healthy,
        Duration::from_secs(10),
    )
    .await;
    let readmitted_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stats = load.stop().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in drop_in_load {
        task.await.expect("drop-in reader");
    }
    let drop_in_victim = &drop_in_checker.snapshot()[victim];
    println!(
        "mTLS kill: evicted after {evicted:?}, re-admitted {readmitted:?} after the kill wait \
         ({readmitted_after:?} after restart began); stack reads ok={} failed={}; drop-in reads \
         ok={} failed={}; drop-in member ejections {}",
        stats.ok(),
        stats.failed(),
        reads.load(std::sync::atomic::Ordering::Relaxed),
        failed.load(std::sync::atomic::Ordering::Relaxed),
        drop_in_victim.ejections_total,
    );
    assert_eq!(stats.failed(), 0, "no stack read fails");
    assert_eq!(
        failed.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no drop-in read fails"
    );
    assert!(stats.ok() > 50);
    assert!(drop_in_victim.ejections_total >= 1, "{drop_in_victim:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_in_status_probes_reuse_etcd_clients_own_tls() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki");
    // TLS given to etcd-client only: no `config.tls`.
    let tls = etcd_health::Tls::from_config(&pki.client_config()).expect("tls");
    let checker = HealthChecker::with_uris(
        std::iter::empty(),
        tls_config(ProbeType::Status, TlsConfig::default()),
    )
    .expect("checker");
    let options = ConnectOptions::new().with_tls(tls.client_tls_config());
    let mut client = Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::with_checker(checker.clone()),
    )
    .await
    .expect("drop-in client");
    client.put("k", "v", None).await.expect("put");
    let reports = probe_reports(&checker).await;
    println!("drop-in status probes over etcd-client's TLS: {reports:?}");
    for (outcome, detail) in &reports {
        assert_eq!(*outcome, Outcome::Success, "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_material_and_the_name_to_verify() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki");
    let read = |p: &std::path::Path| std::fs::read(p).expect("pem");
    let (ca, cert, key) = (
        read(pki.ca_file()),
        read(pki.client_cert_file()),
        read(pki.client_key_file()),
    );
    let from_pem = etcd_health::Tls::from_pem(Some(&ca), Some((&cert, &key))).expect("pem");
    // Members' certificates name 127.0.0.1 and localhost, not this.
    for (name, ok) in [("localhost", true), ("etcd.example", false)] {
        // No probes of healthy members: only the requests speak TLS here.
        let checker = HealthChecker::new(&cluster.endpoints(), fast_config()).expect("checker");
        let connector = TonicConnector::default().tls(from_pem.clone().with_domain_name(name));
        let stack = HealthLayer::new(checker).layer(connector);
        let result = put(&stack, "pem", "v").await;
        println!("PEM material, verifying {name:?}: {result:?}");
        match ok {
            true => result.expect("the certificate names localhost"),
            false => {
                let err = result.expect_err("wrong name");
                assert!(
                    err.message()
                        .contains("certificate not valid for name \"etcd.example\""),
                    "{err:?}"
                );
            }
        }
    }
    // The same through the config, for the probes.
    let mut tls = pki.client_config();
    tls.domain_name = Some("localhost".to_owned());
    let checker = HealthChecker::new(&cluster.endpoints(), tls_config(ProbeType::Https, tls))
        .expect("checker");
    for (outcome, detail) in probe_reports(&checker).await {
        assert_eq!(outcome, Outcome::Success, "{detail}");
    }
}

#[tokio::test]
async fn unreadable_or_mismatched_material_is_a_config_error_naming_field_and_path() {
    let dir = tempfile_dir();
    let pki = TestPki::generate(dir.path(), "a").expect("pki");
    let other = TestPki::generate(dir.path(), "b").expect("pki");
    let build = |tls: TlsConfig| {
        let config = Config {
            tls,
            ..Config::default()
        };
        HealthChecker::new(&["https://127.0.0.1:2379"], config)
            .expect_err("refused")
            .to_string()
    };
    let missing = build(TlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsConfig::default()
    });
    assert!(
        missing.contains("tls.ca_file") && missing.contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    let not_a_cert = build(TlsConfig {
        ca_file: Some(pki.client_key_file().to_owned()),
        ..TlsConfig::default()
    });
    assert!(
        not_a_cert.contains("tls.ca_file") && not_a_cert.contains("no PEM certificate"),
        "{not_a_cert}"
    );
    let mismatched = build(TlsConfig {
        key_file: Some(other.client_key_file().to_owned()),
        ..pki.client_config()
    });
    assert!(
        mismatched.contains("tls.key_file") && mismatched.contains("b-client-key.pem"),
        "{mismatched}"
    );
    let key = std::fs::read_to_string(other.client_key_file()).expect("key");
    let body: String = key.lines().nth(1).expect("a key line").to_owned();
    assert!(!mismatched.contains(&body), "no key material in errors");
    // Secrets: the loaded material's Debug names what is set, never the key.
    let tls = etcd_health::Tls::from_config(&pki.client_config()).expect("tls");
    let shown = format!("{tls:?}");
    let own_key = std::fs::read_to_string(pki.client_key_file()).expect("key");
    assert!(shown.contains("key redacted"), "{shown}");
    assert!(
        own_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .all(|l| !shown.contains(l)),
        "{shown}"
    );
    let half = build(TlsConfig {
        cert_file: Some(pki.client_cert_file().to_owned()),
        ..TlsConfig::default()
    });
    assert!(half.contains("tls.key_file"), "{half}");
    println!("{missing}\n{not_a_cert}\n{mismatched}\n{half}");
}

/// A temporary directory for extra certificates.
fn tempfile_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("etcd-health-tls-")
        .tempdir()
        .expect("temp dir")
}

/// The deadline of the reads of the rotation tests: longer than the failover tests' 2 s, so
/// that a stall of etcd itself on a loaded test machine (a linearizable read waits for the
/// leader) is not mistaken for a failure of the rotation.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// The rotation tests' config: `tls`, `https` probes every 200 ms, and no read attempt
/// timeout (the default). With the 300 ms of `fast_config`, a member just restarted and still
/// catching up answers "context deadline exceeded" after 300 ms, and over TLS etcd sends that
/// answer in trailers, after the headers, where the stack can no longer retry it: a failed read
/// that says nothing about certificates.
fn rotation_config(tls: TlsConfig) -> Config {
    let mut config = tls_config(ProbeType::Https, tls);
    config.retry.read_attempt_timeout = Duration::ZERO;
    config
}

/// Client TLS files of their own (`ca.pem`, `cert.pem`, `key.pem` in a new directory), as a
/// rotation by cert-manager or an operator would replace them.
struct ClientFiles {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl ClientFiles {
    fn new(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let dir = tempfile_dir();
        let files = Self {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        std::fs::copy(ca, &files.ca).expect("copy CA");
        files.write_pair(cert, key);
        files
    }

    /// Watched every 0.2 s.
    fn config(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca.clone()),
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            reload_interval: Duration::from_millis(200),
            ..TlsConfig::default()
        }
    }

    /// Writes a pair over the files in place, the certificate first.
    fn write_pair(&self, cert: &std::path::Path, key: &std::path::Path) {
        std::fs::copy(cert, &self.cert).expect("write certificate");
        std::fs::copy(key, &self.key).expect("write key");
    }
}

fn sha256_of(path: &std::path::Path) -> String {
    etcd_health::Tls::certificate_sha256(&std::fs::read(path).expect("read")).expect("a cert")
}

/// Waits until the checker's TLS status satisfies `ok`.
async fn wait_tls(
    checker: &HealthChecker,
    what: &str,
    ok: impl Fn(&etcd_health::observe::TlsStatus) -> bool,
) -> etcd_health::observe::TlsStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = checker.tls().expect("tls").status();
        if ok(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 s; {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests sent to member `i` and its outcome totals (ok, failures, tcp, timeouts, hangs).
fn counts(checker: &HealthChecker, i: usize) -> (u64, [u64; 5]) {
    let member = &checker.snapshot()[i];
    (member.requests, member.totals)
}

/// Waits until member `i` is healthy in `checker`.
async fn wait_healthy(checker: &HealthChecker, i: usize) {
    let mut events = checker.subscribe();
    wait_status(
        &mut events,
        checker,
        i,
        Status::Healthy,
        Duration::from_secs(15),
    )
    .await;
}

/// Concurrent reads until stopped, each failure printed: (ok, failed) counters.
struct Readers {
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    /// `readers` tasks, each calling its `read()` in a loop.
    fn start<R, F>(who: &'static str, readers: usize, make: impl Fn() -> R) -> Self
    where
        R: FnMut() -> F + Send + 'static,
        F: std::future::Future<Output = Result<(), String>> + Send,
    {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        use std::sync::Arc;
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..readers)
            .map(|_| {
                let mut read = make();
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        match read().await {
                            Ok(()) => ok.fetch_add(1, Relaxed),
                            Err(e) => {
                                println!("{who} read failed: {e}");
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                failed.fetch_add(1, Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Self {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    /// Linearizable reads through etcd-client.
    fn drop_in(client: &Client, readers: usize) -> Self {
        Self::start("drop-in", readers, || {
            let kv = client.kv_client();
            move || {
                let mut kv = kv.clone();
                async move {
                    kv.get("load", None)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            }
        })
    }

    /// Linearizable reads through the tower stack, with `READ_DEADLINE`.
    fn stack(stack: &etcd_health::Balance<TonicConnector>, readers: usize) -> Self {
        use etcd_health::extend::IntoBoxChannel;
        use etcd_health::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
        Self::start("stack", readers, || {
            let kv = KvClient::new(stack.clone().into_box_channel());
            move || {
                let mut kv = kv.clone();
                async move {
                    let mut req = tonic::Request::new(RangeRequest {
                        key: b"load".to_vec(),
                        ..Default::default()
                    });
                    req.set_timeout(READ_DEADLINE);
                    kv.range(req)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                }
            }
        })
    }

    async fn stop(self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stop.store(true, Relaxed);
        for task in self.tasks {
            task.await.expect("reader");
        }
        (self.ok.load(Relaxed), self.failed.load(Relaxed))
    }
}

/// An etcd-client over the drop-in, TLS from `config.tls` (etcd-client's own options are a
/// snapshot of the same material; the drop-in replaces them with the reloading one).
async fn drop_in_client(cluster: &Cluster, config: Config) -> (Client, HealthChecker) {
    let checker = HealthChecker::with_uris(std::iter::empty(), config).expect("checker");
    let tls = checker.tls().expect("tls").client_tls_config();
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_timeout(READ_DEADLINE);
    let client = Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        HealthChannel::with_checker(checker.clone()),
    )
    .await
    .expect("drop-in client");
    (client, checker)
}

/// The strongest check of a rotation the fixture allows: members first accept client
/// certificates of CA A and CA B; the client starts with A's pair, and B's pair is written
/// over its files under load; then two members are restarted trusting B only (and the
/// cluster's own CA, which the fixture's checks use). Every connection to a restarted member is
/// new, and succeeds only with B's certificate: no read fails, the members answer again, no
/// connection to them fails, and A's pair is shown to be refused by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_rotated_on_disk_is_used_by_new_connections_without_a_failed_read() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki").clone();
    let dir = tempfile_dir();
    let a = TestPki::generate(dir.path(), "a").expect("CA A");
    let b = TestPki::generate(dir.path(), "b").expect("CA B");
    pki.trust_client_cas(&[a.ca_file(), b.ca_file()])
        .expect("trust A and B");
    for i in 0..cluster.size() {
        cluster.restart(i).await.expect("restart trusting A and B");
        cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
    }

    // Members' certificates come from the cluster's CA; the client certificate from A.
    let files = ClientFiles::new(pki.ca_file(), a.client_cert_file(), a.client_key_file());
    let config = rotation_config(files.config());
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    put(&stack, "load", "x")
        .await
        .expect("put with A's certificate");
    let (client, drop_in) = drop_in_client(&cluster, config).await;
    let load = Readers::stack(&stack, 4);
    let drop_in_load = Readers::drop_in(&client, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Rotation: B's pair over the files, in place, under load.
    files.write_pair(b.client_cert_file(), b.client_key_file());
    let b_sha = sha256_of(b.client_cert_file());
    for c in [&checker, &drop_in] {
        let status = wait_tls(c, "B's certificate loaded", |s| {
            s.client_certificate_sha256.as_deref() == Some(&b_sha)
        })
        .await;
        assert_eq!((status.generation, status.refused), (1, None));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // From now on A is refused: restart every member, one at a time, under load.
    pki.trust_client_cas(&[b.ca_file()]).expect("trust B only");
    // Two members, one at a time, never the leader of the moment, each back in both health
    // states before the next. (The leader keeps its connections and trusts A still: restarting
    // it too would add an election, whose length on a loaded machine says nothing about TLS.)
    let mut restarted = Vec::new();
    let mut after_restart = Vec::new();
    while restarted.len() < 2 {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
        let i = (0..cluster.size())
            .find(|i| *i != leader && !restarted.contains(i))
            .expect("a follower not restarted yet");
        cluster.restart(i).await.expect("restart trusting B only");
        wait_healthy(&checker, i).await;
        wait_healthy(&drop_in, i).await;
        restarted.push(i);
        after_restart.push((counts(&checker, i), counts(&drop_in, i)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (stack_ok, stack_failed) = load.stop().await;
    let (drop_in_ok, drop_in_failed) = drop_in_load.stop().await;

    let end: Vec<_> = restarted
        .iter()
        .map(|&i| (counts(&checker, i), counts(&drop_in, i)))
        .collect();
    println!(
        "rotation A -> B: stack reads ok={stack_ok} failed={stack_failed}; drop-in reads ok={drop_in_ok} \
         failed={drop_in_failed}; members restarted {restarted:?}, their (requests sent, totals \
         (ok, failures, tcp, timeouts, hangs)) after the restart {after_restart:?}, at the end \
         {end:?}",
    );
    assert_eq!(stack_failed, 0, "no stack read fails");
    assert_eq!(drop_in_failed, 0, "no drop-in read fails");
    for (i, ((stack_then, drop_in_then), (stack_end, drop_in_end))) in
        restarted.iter().zip(after_restart.iter().zip(&end))
    {
        for (who, then, end) in [
            ("stack", stack_then, stack_end),
            ("drop-in", drop_in_then, drop_in_end),
        ] {
            let ((sent_then, then), (sent_end, end)) = (then, end);
            assert!(
                sent_end > sent_then && end[0] > then[0],
                "{who}: member {i} took and answered requests after its restart: \
                 {sent_then} {then:?} -> {sent_end} {end:?}"
            );
            assert_eq!(
                end[2], then[2],
                "{who}: no connection to member {i} failed after its restart"
            );
        }
    }

    // The control: by now the restarted members refuse A's certificate.
    let old = ClientFiles::new(pki.ca_file(), a.client_cert_file(), a.client_key_file());
    let endpoints: Vec<String> = restarted.iter().map(|&i| cluster.endpoint(i)).collect();
    let old_checker = HealthChecker::new(&endpoints, tls_config(ProbeType::Https, old.config()))
        .expect("checker");
    let old_stack = HealthLayer::new(old_checker).layer(TonicConnector::default());
    let err = put(&old_stack, "k", "v")
        .await
        .expect_err("A's certificate is refused now");
    println!("put with A's certificate after the restarts: {err:?}");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

/// A key written half, then a key of another certificate: the old material stays (the status
/// and `reload_tls` say which file and why), traffic goes on, new connections (a restarted
/// member) use the old material; then a good pair is picked up and used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_key_or_a_mismatched_pair_keeps_the_old_material_until_a_good_pair() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki").clone();
    let files = ClientFiles::new(pki.ca_file(), pki.client_cert_file(), pki.client_key_file());
    let checker =
        HealthChecker::new(&cluster.endpoints(), rotation_config(files.config())).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    put(&stack, "load", "x").await.expect("put");
    let load = Readers::stack(&stack, 4);
    let old_sha = sha256_of(pki.client_cert_file());
    let (next_cert, next_key) = pki.issue_client("next").expect("issue");
    let (_, other_key) = pki.issue_client("other").expect("issue");

    // Half a key: refused, naming the file.
    std::fs::copy(&next_cert, &files.cert).expect("write certificate");
    let key = std::fs::read(&next_key).expect("read key");
    std::fs::write(&files.key, &key[..key.len() / 2]).expect("write half a key");
    let status = wait_tls(&checker, "half a key refused", |s| s.refused.is_some()).await;
    println!("half a key: {status:?}");
    let refused = status.refused.expect("refused");
    assert!(
        refused.starts_with("tls.key_file") && refused.contains(&files.key.display().to_string()),
        "{refused}"
    );
    assert_eq!(status.generation, 0);
    assert_eq!(status.client_certificate_sha256.as_deref(), Some(&*old_sha));
    let err = checker.reload_tls().expect_err("still half a key");
    assert_eq!(err.path(), Some("tls.key_file"), "{err}");

    // New connections meanwhile use the old material.
    let victim = follower(&cluster).await;
    cluster.restart(victim).await.expect("restart");
    wait_healthy(&checker, victim).await;

    // A whole key, of another certificate: refused too.
    std::fs::copy(&other_key, &files.key).expect("write another key");
    let status = wait_tls(&checker, "mismatched pair refused", |s| {
        s.refused
            .as_deref()
            .is_some_and(|r| r.contains("does not go with"))
    })
    .await;
    println!("mismatched pair: {status:?}");
    assert_eq!(status.generation, 0);
    assert_eq!(status.client_certificate_sha256.as_deref(), Some(&*old_sha));

    // The right key: picked up, and used by the connections to a restarted member.
    std::fs::copy(&next_key, &files.key).expect("write the right key");
    let next_sha = sha256_of(&next_cert);
    let status = wait_tls(&checker, "good pair loaded", |s| {
        s.client_certificate_sha256.as_deref() == Some(&*next_sha)
    })
    .await;
    assert_eq!((status.generation, status.refused), (1, None));
    assert_eq!(checker.reload_tls(), Ok(false), "nothing new on disk");
    // Another follower: a leader's restart would add an election, whose "leader changed"
    // answers etcd sends over TLS in trailers, where the stack cannot retry them.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let victim = (0..cluster.size())
        .find(|i| *i != leader && *i != victim)
        .expect("another follower");
    cluster.restart(victim).await.expect("restart");
    wait_healthy(&checker, victim).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop().await;
    println!("half key, mismatched pair, good pair: reads ok={ok} failed={failed}");
    assert_eq!(failed, 0, "no read fails");
    assert!(ok > 50);
}

/// Over TLS, etcd 3.4 serves gRPC through Go's HTTP handler, which sends an error after the
/// headers, in trailers ("leader changed", "request timed out" during an election), instead of
/// trailers-only. The stack reads such unary answers to their end to judge them, so the
/// leader's death over mTLS fails no read, with `Config::default()` and TLS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_death_over_mtls_fails_no_read_with_the_defaults() {
    let cluster = tls_cluster().await;
    let pki = cluster.pki().expect("pki").clone();
    let config = Config {
        tls: pki.client_config(),
        ..Config::default()
    };
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    put(&stack, "load", "x").await.expect("put");
    let (client, _drop_in_checker) = drop_in_client(&cluster, config).await;
    let stack_readers = Readers::stack(&stack, 4);
    let drop_in_readers = Readers::drop_in(&client, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;

    for round in 0..2 {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
        cluster.kill(leader);
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.restart(leader).await.expect("restart");
        println!("round {round}: leader {leader} killed and restarted");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let (stack_ok, stack_failed) = stack_readers.stop().await;
    let (drop_in_ok, drop_in_failed) = drop_in_readers.stop().await;
    println!(
        "leader kills over mTLS: stack reads ok={stack_ok} failed={stack_failed}; drop-in reads \
         ok={drop_in_ok} failed={drop_in_failed}; retries {}",
        checker.retries()
    );
    assert_eq!(stack_failed, 0, "no stack read fails");
    assert_eq!(drop_in_failed, 0, "no drop-in read fails");
    assert!(stack_ok > 50 && drop_in_ok > 50);
}
