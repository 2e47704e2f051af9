//! Secrets never leak: with every crate's `tracing` (and `log`) output captured at TRACE,
//! secrets go through every path that could show them, and every public value that could hold
//! one is formatted with `{:?}`; no secret may appear anywhere.
//!
//! - the auth layer authenticates, renews its token and meets a wrong password;
//! - an endpoint with credentials (`http://user:pw@host:2379`): refused by `HealthChecker::new`
//!   with the userinfo shown as `***`; given to etcd-client, the drop-in knows the member
//!   without it;
//! - a probe header with a bearer token: sent by the `http` probe, shown as `***` in `Debug`
//!   and in a validation error;
//! - a probe path with a token in its query (or userinfo before an `@`): sent by the `http`
//!   probe, masked in `Debug`, validation and load errors, and never in a probe report, an
//!   event, a log line or (feature `metrics`) a metric's name or labels;
//! - etcd-client with `with_user` over the drop-in: its token is marked sensitive on every
//!   request, and on a watch the drop-in re-creates on another member.
//!
//! A binary of its own, because it installs the process-wide subscriber (once, shared by the
//! tests: each checks the whole capture for its own secrets).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use etcd_client::{ConnectOptions, WatchOptions};
use etcd_health::auth::{Auth, AuthLayer, Credentials};
use etcd_health::config::Config;
use etcd_health::extend::MakeMember;
use etcd_health::observe::{Member, ProbeReport};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{
    into_etcd_channel, Balance, HealthChannel, HealthChecker, HealthLayer, TonicConnector,
};
use etcd_health_testing::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt};

const PASSWORD: &str = "pw-Zq8vK2xR7";
const WRONG_PASSWORD: &str = "wrong-Hx4nB9tL3";
/// In the userinfo of endpoints.
const URL_PASSWORD: &str = "urlpw-Rt5sW1qP6";
/// In the `Authorization` header of probes.
const BEARER: &str = "bearer-Kd3mF8zY2";
/// In a header the config marks sensitive.
const API_KEY: &str = "apikey-Lp7cN4vJ9";
/// The password of the drop-in's etcd-client.
const DROPIN_PASSWORD: &str = "dropin-Gb6tX3hQ5";
/// In the query of the probes' `http_path`.
const PATH_TOKEN: &str = "pathtok-Vw2hS8mD4";
/// In userinfo written into the probes' `http_path`.
const PATH_PASSWORD: &str = "pathpw-Ce9rT5kN1";

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

/// The process-wide TRACE capture, installed by the first test to ask.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            capture
        })
        .clone()
}

/// The tests that start clusters run one at a time (two cores, shared).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Panics, showing the surroundings, if any of `secrets` is in `text`.
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(secret.len() >= 8, "{secret:?} is too short to search for");
        if let Some(at) = text.find(secret) {
            let near = &text.as_bytes()[at.saturating_sub(300)..(at + 100).min(text.len())];
            panic!(
                "a secret is in the {what}: ...{}...",
                String::from_utf8_lossy(near)
            );
        }
    }
}

/// The first member's last probe report once `wanted` holds for it, polled every 100 ms for
/// up to 10 s (the test fails, naming `what`, otherwise).
async fn probe_report(
    checker: &HealthChecker,
    what: &str,
    wanted: impl Fn(&ProbeReport) -> bool,
) -> ProbeReport {
    for _ in 0..100 {
        if let Some(report) = checker.snapshot()[0].last_probe.clone().filter(&wanted) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 10 s");
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
    let capture = capture();
    let _serial = serial().await;

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

/// An endpoint with credentials is refused without repeating them, whichever check refuses
/// it; the error still names the field and shows the endpoint, its userinfo as `***`.
#[tokio::test]
async fn an_endpoint_with_credentials_is_refused_without_showing_them() {
    let capture = capture();
    let given = format!("http://root:{URL_PASSWORD}@10.0.0.1:2379");
    let err = HealthChecker::new(&[given.as_str()], Config::default()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "endpoints[0] = \"http://***@10.0.0.1:2379\" is invalid: credentials in the endpoint \
         are not supported; use the client's options"
    );
    let mut shown = vec![format!("{err} {err:?} {err:#?}")];
    // Other checks that may refuse such an entry first: scheme, URL syntax, port, path.
    for bad in [
        format!("ftp://root:{URL_PASSWORD}@10.0.0.1:2379"),
        format!("http://root:{URL_PASSWORD}@10.0.0.1"),
        format!("http://root:{URL_PASSWORD}@10.0.0.1:2379/v3"),
        format!("http://root:{URL_PASSWORD} @10.0.0.1:2379"),
        format!("root:{URL_PASSWORD}@10.0.0.1:2379"),
    ] {
        let err = etcd_health::config::parse_endpoints(&[bad.as_str()]).expect_err(&bad);
        assert_eq!(err.path(), Some("endpoints[0]"), "{err}");
        shown.push(format!("{err} {err:?}"));
    }
    let shown = shown.join("\n");
    println!("{shown}");
    assert_hidden("errors", &shown, &[URL_PASSWORD]);
    assert_hidden("logs", &capture.text(), &[URL_PASSWORD]);
}

/// A probe header with a bearer token (and one the config marks sensitive): `Debug` and a
/// validation error show `***`, and the `http` probe sends the headers, to real etcd (which
/// answers the probes) and to a listener that records what arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_headers_with_secrets_are_sent_and_never_shown() {
    let capture = capture();
    let mut config = fast_config();
    config.checks.active.sensitive_headers = vec!["X-Api-Key".to_owned()];
    config.checks.active.req_headers = vec![
        "User-Agent: curl/7.29.0".to_owned(),
        format!("Authorization: Bearer {BEARER}"),
        format!("x-api-key: {API_KEY}"),
    ];
    config.validate().expect("valid");
    let debug = format!("{config:?} {config:#?}");
    assert!(debug.contains("Authorization: ***"), "{debug}");
    assert!(
        debug.contains("curl/7.29.0"),
        "other headers shown: {debug}"
    );

    // A malformed header whose value holds the secret: refused, the value not shown.
    let mut bad = config.clone();
    bad.checks.active.req_headers[1] = format!("Authorization: Bearer {BEARER}\r\n");
    let refused = bad.validate().expect_err("a CR/LF in a header value");
    assert_eq!(refused.path(), Some("checks.active.req_headers[1]"));
    let json = format!(
        r#"{{"checks": {{"active": {{"req_headers": ["Authorization: Bearer {BEARER}\u0001"]}}}}}}"#
    );
    let loaded = Config::from_json(&json).expect_err("a control character");
    let errors = format!("{refused} {refused:?}\n{loaded} {loaded:?}");
    println!("{errors}");
    assert!(errors.contains(r#""Authorization: ***""#), "{errors}");

    // The probes send the headers: a listener answering `/health` records them (and hangs up
    // on the gRPC connections of discovery and leader checks).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap().to_string();
    let heard = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if request.starts_with(b"GET /health") {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return String::from_utf8_lossy(&request).into_owned();
            }
        }
    });
    let to_fake = HealthChecker::new(&[fake.as_str()], config.clone()).expect("checker");
    let request = tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .expect("a probe within 10 s")
        .unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "authorization: bearer {}",
            BEARER.to_ascii_lowercase()
        )),
        "{request}"
    );
    assert!(
        lower.contains(&format!("x-api-key: {}", API_KEY.to_ascii_lowercase())),
        "{request}"
    );

    // Against real etcd: the probes with the headers pass.
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(1)
        .start()
        .await
        .expect("cluster");
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let probed = probe_report(&checker, "a probe", |_| true).await;
    assert_eq!(probed.detail, "status 200", "{probed:?}");

    let shown = [
        debug,
        errors,
        format!("{checker:?} {:?}", checker.snapshot()),
        format!("{to_fake:?} {:?}", to_fake.snapshot()),
    ]
    .join("\n");
    assert_hidden("Debug output or errors", &shown, &[BEARER, API_KEY]);
    let logs = capture.text();
    assert!(logs.contains("TRACE"), "TRACE output is captured");
    assert_hidden("logs", &logs, &[BEARER, API_KEY]);
}

/// A probe path with a token in its query: sent as written by the `http` probe (real etcd
/// answers it), while `Debug`, validation and load errors, probe reports, events, logs and
/// metrics show its value as `***`; a path with userinfo is refused without showing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_path_with_a_token_is_sent_and_never_shown() {
    let capture = capture();
    // Every metric recorded while this test runs, names and labels (the recorder is global:
    // installed before the checker below registers its handles).
    #[cfg(feature = "metrics")]
    let recorded = {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only metrics recorder of this binary");
        snapshotter
    };
    let mut config = fast_config();
    config.checks.active.http_path = format!("/health?serializable=false&token={PATH_TOKEN}");
    config.validate().expect("valid");
    let debug = format!("{config:?} {config:#?}");
    assert!(
        debug.contains("/health?serializable=***&token=***"),
        "the path is shown, its values masked: {debug}"
    );

    // Refused paths, whichever check refuses them, show neither the token nor the userinfo.
    let mut errors = Vec::new();
    for bad in [
        format!("health?token={PATH_TOKEN}"),
        format!("/a b?token={PATH_TOKEN}"),
        format!("http://root:{PATH_PASSWORD}@proxy/health"),
        format!("/root:{PATH_PASSWORD}@proxy/he alth"),
    ] {
        let mut refused = config.clone();
        refused.checks.active.http_path = bad.clone();
        let err = refused.validate().expect_err(&bad);
        assert_eq!(err.path(), Some("checks.active.http_path"), "{err}");
        errors.push(format!("{err} {err:?}"));
        let json = serde_json::json!({"checks": {"active": {"http_path": bad}}}).to_string();
        let err = Config::from_json(&json).expect_err(&json);
        errors.push(format!("{err} {err:?}"));
        let toml = format!("[checks.active]\nhttp_path = {bad:?}\n");
        let err = Config::from_toml(&toml).expect_err(&toml);
        errors.push(format!("{err} {err:?}"));
    }
    let errors = errors.join("\n");
    println!("{errors}");
    assert!(errors.contains("token=***"), "{errors}");
    assert!(errors.contains("***@proxy"), "{errors}");

    // Against real etcd: the probes send the path (etcd ignores the token) and pass; then the
    // member dies, so failed probes are reported, logged and sent as events too.
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(1)
        .start()
        .await
        .expect("cluster");
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let mut events = checker.subscribe();
    let probed = probe_report(&checker, "a probe", |_| true).await;
    assert_eq!(probed.detail, "status 200", "{probed:?}");
    let passed = format!("{checker:?} {:?}", checker.snapshot());
    cluster.kill(0);
    let failed = probe_report(&checker, "a failed probe", |p| p.detail != "status 200").await;
    let mut seen_events = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen_events.push(format!("{event:?}"));
    }
    println!("failed probe: {failed:?}; {} events", seen_events.len());

    #[allow(unused_mut)]
    let mut shown = vec![
        debug,
        errors,
        passed,
        format!("{checker:?} {:?}", checker.snapshot()),
        seen_events.join("\n"),
    ];
    #[cfg(feature = "metrics")]
    {
        let metrics = format!("{:?}", recorded.snapshot().into_vec());
        assert!(
            metrics.contains("etcd_health"),
            "metrics were recorded: {metrics}"
        );
        shown.push(metrics);
    }
    assert_hidden(
        "Debug output, errors, events or metrics",
        &shown.join("\n"),
        &[PATH_TOKEN, PATH_PASSWORD],
    );
    let logs = capture.text();
    assert!(logs.contains("TRACE"), "TRACE output is captured");
    assert_hidden("logs", &logs, &[PATH_TOKEN, PATH_PASSWORD]);
}

/// What the member channels of the drop-in's balancer were sent.
#[derive(Clone, Debug)]
struct Sent {
    /// The member's URL.
    member: String,
    path: String,
    /// The `token` metadata and whether it was marked sensitive.
    token: Option<(String, bool)>,
}

/// etcd-client with a user, over the drop-in, against real etcd with auth on and endpoints
/// given with userinfo: etcd-client's token is marked sensitive on every request the members
/// get, including the watch the drop-in re-creates after its member is killed; no password,
/// token or userinfo is in an error, a `Debug` string or a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_in_with_auth_marks_its_token_sensitive_and_shows_no_secret() {
    let capture = capture();
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(3)
        .start()
        .await
        .expect("cluster");
    common::enable_auth(&cluster, DROPIN_PASSWORD).await;

    // Endpoints with userinfo, as a user may hand them to etcd-client: the members are known,
    // shown and dialed without it.
    let with_userinfo: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| e.replacen("://", &format!("://root:{URL_PASSWORD}@"), 1))
        .collect();
    let shown_userinfo = {
        // No discovery: it would add the member removed below back.
        let mut config = fast_config();
        config.discovery.member_list = false;
        let known = HealthChecker::with_uris(std::iter::empty(), config).expect("checker");
        let channel = HealthChannel::with_checker(known.clone());
        let client = etcd_client::Client::connect_with_balanced_channel(
            &with_userinfo,
            Some(ConnectOptions::new().with_user("root", DROPIN_PASSWORD)),
            channel.clone(),
        )
        .await
        .expect("client over endpoints with userinfo");
        client
            .kv_client()
            .put("u", "1", None)
            .await
            .expect("a put through members known without userinfo");
        let members = known.members();
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(
            members.iter().all(|m| m
                .uri()
                .authority()
                .is_some_and(|a| !a.as_str().contains('@'))),
            "{members:?}"
        );
        // etcd-client's `remove_endpoint` with the same URL finds the member.
        client
            .remove_endpoint(&with_userinfo[2])
            .await
            .expect("remove");
        client.kv_client().put("u", "2", None).await.expect("put");
        assert_eq!(known.members().len(), 2, "{:?}", known.members());
        format!("{channel:?} {known:?} {members:?} {:?}", known.snapshot())
    };

    // A hand-built stack whose member channels record what they are sent.
    let config = fast_config();
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let record = sent.clone();
    let connector = TonicConnector::default();
    let maker = move |member: &Member| {
        let record = record.clone();
        let url = member.uri().to_string();
        connector
            .make_member(member)
            .map_request(move |req: http::Request<tonic::body::Body>| {
                let token = req.headers().get("token").map(|t| {
                    (
                        String::from_utf8_lossy(t.as_bytes()).into_owned(),
                        t.is_sensitive(),
                    )
                });
                record.lock().unwrap().push(Sent {
                    member: url.clone(),
                    path: req.uri().path().to_owned(),
                    token,
                });
                req
            })
    };
    let balance = Balance::new(checker.clone(), maker);
    let login = ConnectOptions::new()
        .with_user("root", DROPIN_PASSWORD)
        .with_auto_token_refresh(true)
        .with_timeout(Duration::from_secs(2));
    let client = etcd_client::Client::from_channel(into_etcd_channel(balance.clone()), Some(login))
        .await
        .expect("authenticated client");
    let mut kv = client.kv_client();
    kv.put("k", "v", None).await.expect("authenticated put");
    kv.get("k", None).await.expect("authenticated get");

    // A watch, then its member killed: the drop-in re-creates it on another member.
    let mut stream = client
        .watch_client()
        .watch("w", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    const WATCH: &str = "/etcdserverpb.Watch/Watch";
    let watched_on = |sent: &[Sent]| -> Vec<String> {
        sent.iter()
            .filter(|s| s.path == WATCH)
            .map(|s| s.member.clone())
            .collect()
    };
    let victim_url = watched_on(&sent.lock().unwrap())[0].clone();
    let victim = (0..cluster.size())
        .find(|i| victim_url.trim_end_matches('/') == cluster.endpoint(*i))
        .unwrap_or_else(|| panic!("{victim_url} is none of {:?}", cluster.endpoints()));
    println!("killing member {victim} ({victim_url}), which serves the watch");
    cluster.kill(victim);
    let mut put = None;
    for attempt in 0..20 {
        match kv.put("w", format!("after the kill {attempt}"), None).await {
            Ok(_) => {
                put = Some(attempt);
                break;
            }
            Err(e) => {
                println!("put after the kill: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    put.expect("a put after the kill within ~10 s");
    let event = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let resp = stream.message().await.expect("watch").expect("open");
            if let Some(e) = resp.events().first() {
                return e.kv().expect("kv").value_str().expect("utf-8").to_owned();
            }
        }
    })
    .await
    .expect("the re-created watch delivers the put");
    assert!(event.starts_with("after the kill"), "{event}");

    let sent = sent.lock().unwrap().clone();
    let rewatched: Vec<String> = watched_on(&sent)
        .into_iter()
        .filter(|m| *m != victim_url)
        .collect();
    assert!(
        !rewatched.is_empty(),
        "the watch was re-created on another member: {sent:?}"
    );
    let with_token: Vec<&Sent> = sent.iter().filter(|s| s.token.is_some()).collect();
    assert!(with_token.len() >= 4, "requests carried a token: {sent:?}");
    let unmarked: Vec<&&Sent> = with_token
        .iter()
        .filter(|s| s.token.as_ref().is_some_and(|(_, sensitive)| !sensitive))
        .collect();
    assert!(
        unmarked.is_empty(),
        "every token is marked sensitive, the re-created watch's too: {unmarked:?}"
    );
    let mut tokens: Vec<String> = with_token
        .iter()
        .filter_map(|s| s.token.as_ref())
        .map(|(t, _)| t.split('.').next().unwrap_or(t).to_owned())
        .collect();
    tokens.dedup();

    // A wrong password.
    let wrong = etcd_client::Client::from_channel(
        into_etcd_channel(balance.clone()),
        Some(ConnectOptions::new().with_user("root", WRONG_PASSWORD)),
    )
    .await
    .err()
    .expect("a wrong password is refused");

    let shown = [
        format!("{wrong:?} {wrong}"),
        shown_userinfo,
        format!("{config:?}"),
        format!("{checker:?}"),
        format!("{balance:?}"),
        format!("{:?}", checker.snapshot()),
        format!("{:?}", checker.members()),
    ]
    .join("\n");
    let logs = capture.text();
    println!(
        "{} bytes of TRACE output, {} bytes of Debug output, {} requests, {} with a token",
        logs.len(),
        shown.len(),
        sent.len(),
        with_token.len()
    );
    let mut secrets = vec![DROPIN_PASSWORD, WRONG_PASSWORD, URL_PASSWORD];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_hidden("Debug output or errors", &shown, &secrets);
    assert!(logs.contains("TRACE"), "TRACE output is captured");
    assert_hidden("logs", &logs, &secrets);
}
