//! TLS and mTLS against a real etcd cluster whose client ports speak only TLS and demand a
//! client certificate (`--client-cert-auth`), with certificates made for each test.
//!
//! Shown here: certificates are verified by default, for requests and probes; the client
//! certificate is presented by requests and by every kind of probe; a member whose certificate
//! comes from another CA is refused with an error that says so; `https_verify_certificate =
//! false` relaxes the probes only, and only when asked; failover works over TLS, through the
//! tower stack and through the etcd-client drop-in.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{Client, ConnectOptions};
use etcd_health::config::{Config, ProbeType, TlsConfig};
use etcd_health::dropin::HealthChannel;
use etcd_health::health::{Outcome, Status};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
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
