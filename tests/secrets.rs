//! Secrets never leak: with every crate's `tracing` (and `log`) output captured at TRACE, the
//! auth layer authenticates, renews its token, meets a wrong password, and every public value
//! that could hold a secret is formatted with `{:?}`; neither a password nor a token may
//! appear anywhere.
//!
//! A binary of its own, because it installs the process-wide subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_health::auth::{Auth, AuthLayer, Credentials};
use etcd_health::config::Config;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use tower::{Layer, ServiceExt};

const PASSWORD: &str = "pw-Zq8vK2xR7";
const WRONG_PASSWORD: &str = "wrong-Hx4nB9tL3";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn fast_config() -> Config {
    let mut c = Config::default();
    c.checks.active.timeout = Duration::from_millis(500);
    c.checks.active.healthy.interval = Duration::from_millis(300);
    c.checks.active.unhealthy.interval = Duration::from_millis(500);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_token_in_logs_or_debug_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let cluster = Cluster::builder()
        .extra_args(["--auth-token-ttl", "1"])
        .start()
        .await
        .expect("cluster");
    let mut admin = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("admin client");
    admin.user_add("root", PASSWORD, None).await.expect("user");
    admin.user_grant_role("root", "root").await.expect("role");
    admin.auth_enable().await.expect("auth enable");

    let config = fast_config();
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let balance = HealthLayer::new(checker.clone()).layer(TonicConnector::default());

    // Between the auth layer and the balancer: remember every token the layer sends.
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = tokens.clone();
    let inner = balance.clone();
    let spy = tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        if let Some(token) = req.headers().get("token") {
            let token = String::from_utf8_lossy(token.as_bytes()).into_owned();
            let mut seen = seen.lock().unwrap();
            if !seen.contains(&token) {
                seen.push(token);
            }
        }
        inner.clone().oneshot(req)
    });

    let credentials = Credentials::new("root", PASSWORD);
    let layer = AuthLayer::new(credentials.clone());
    let authed: Auth<_> = layer.layer(spy);
    let mut kv = KvClient::new(authed.clone());
    let put = |v: &str| PutRequest {
        key: b"k".to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    };
    kv.put(put("1")).await.expect("authenticated put");
    // Let the token expire on every member: the layer renews it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..5 {
        kv.put(put(&n.to_string())).await.expect("put after expiry");
    }
    assert!(authed.authentications() >= 2, "the token was renewed");

    // A wrong password.
    let wrong = AuthLayer::new(Credentials::new("root", WRONG_PASSWORD)).layer(balance.clone());
    let err = KvClient::new(wrong.clone())
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("wrong password");

    // Every public value that could hold a secret, formatted.
    let shown = [
        format!("{credentials:?} {credentials:#?}"),
        format!("{layer:?} {layer:#?}"),
        format!("{authed:?} {authed:#?}"),
        format!("{wrong:?} {wrong:#?}"),
        format!("{err:?} {err:#?} {err}"),
        format!("{config:?}"),
        format!("{checker:?}"),
        format!("{balance:?}"),
        format!("{:?}", checker.snapshot()),
    ]
    .join("\n");
    let logs = capture.text();
    let tokens = tokens.lock().unwrap().clone();
    println!(
        "{} bytes of TRACE output, {} bytes of Debug output, {} tokens seen",
        logs.len(),
        shown.len(),
        tokens.len()
    );
    assert!(
        tokens.len() >= 2,
        "renewal gave a new token: {}",
        tokens.len()
    );
    assert!(logs.contains("authenticated"), "the capture works");
    assert!(logs.contains("TRACE"), "TRACE output is captured");
    for (what, text) in [("logs", &logs), ("Debug output", &shown)] {
        for secret in [PASSWORD, WRONG_PASSWORD] {
            if let Some(at) = text.find(secret) {
                panic!(
                    "a password is in the {what}: ...{}...",
                    &text[at.saturating_sub(300)..(at + 100).min(text.len())]
                );
            }
        }
        for token in &tokens {
            // A simple token is `<16 random letters>.<index>`; the random part is the secret.
            let secret = token.split('.').next().unwrap_or(token);
            assert!(secret.len() >= 8, "{token}");
            if let Some(at) = text.find(secret) {
                panic!(
                    "a token is in the {what}: ...{}...",
                    &text[at.saturating_sub(300)..(at + 100).min(text.len())]
                );
            }
        }
    }
}
