//! Unit and property tests of the config module.

use std::time::Duration;

use serde_json::{json, Value};

use super::codes::GRPC_CODES;
use super::validate::{MAX_ATTEMPTS, MAX_EXTRA_RATIO, MAX_THRESHOLD};
use super::*;

/// The seed's default `checks` table, written as JSON.
const SEED_CHECKS_JSON: &str = r#"{
    "active": {
        "concurrency": 5,
        "timeout": 5,
        "http_path": "/health",
        "host": "",
        "type": "http",
        "req_headers": ["User-Agent: curl/7.29.0"],
        "https_verify_certificate": false,
        "healthy": {
            "http_statuses": [200],
            "interval": 0,
            "successes": 1
        },
        "unhealthy": {
            "http_statuses": [500, 501, 503, 502, 504, 505],
            "interval": 1,
            "http_failures": 1,
            "tcp_failures": 1,
            "timeouts": 1
        }
    },
    "passive": {
        "type": "http",
        "healthy": {
            "http_statuses": [200, 201],
            "successes": 1
        },
        "unhealthy": {
            "http_statuses": [500],
            "http_failures": 1,
            "tcp_failures": 1,
            "timeouts": 0
        }
    }
}"#;

/// The same table as TOML, under `checks`, with the seed's minimal `shm_name`.
const SEED_TOML: &str = r#"
shm_name = "healthcheck_shm"

[checks.active]
concurrency = 5
timeout = 5
http_path = "/health"
host = ""
type = "http"
req_headers = ["User-Agent: curl/7.29.0"]
https_verify_certificate = false

[checks.active.healthy]
http_statuses = [200]
interval = 0
successes = 1

[checks.active.unhealthy]
http_statuses = [500, 501, 503, 502, 504, 505]
interval = 1
http_failures = 1
tcp_failures = 1
timeouts = 1

[checks.passive]
type = "http"

[checks.passive.healthy]
http_statuses = [200, 201]
successes = 1

[checks.passive.unhealthy]
http_statuses = [500]
http_failures = 1
tcp_failures = 1
timeouts = 0
"#;

/// What the seed's default table must load to: our defaults, but with the seed's explicit
/// `https_verify_certificate = false` (our default is `true`).
///
/// The seed lists the active unhealthy statuses as `500, 501, 503, 502, 504, 505`; the list
/// is a set, and the loader keeps it as written, so the comparison sorts it.
fn seed_expected(shm_name: Option<&str>) -> Config {
    let mut c = Config {
        shm_name: shm_name.map(str::to_owned),
        ..Config::default()
    };
    c.checks.active.https_verify_certificate = false;
    c
}

fn sort_statuses(mut c: Config) -> Config {
    c.checks.active.healthy.http_statuses.sort_unstable();
    c.checks.active.unhealthy.http_statuses.sort_unstable();
    c.checks.passive.healthy.http_statuses.sort_unstable();
    c.checks.passive.unhealthy.http_statuses.sort_unstable();
    c
}

fn err_json(text: &str) -> String {
    match Config::from_json(text) {
        Ok(c) => panic!("accepted {text}: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_is_valid() {
    assert_eq!(Config::default().validate(), Ok(()));
}

#[test]
fn empty_documents_give_defaults() {
    assert_eq!(Config::from_json("{}"), Ok(Config::default()));
    assert_eq!(Config::from_toml(""), Ok(Config::default()));
    assert_eq!(Config::from_value(json!({})), Ok(Config::default()));
    assert_eq!(
        Config::from_json(r#"{"cluster_healthcheck": {}}"#),
        Ok(Config::default())
    );
}

#[test]
fn seed_default_table_loads_as_json() {
    let text = format!(r#"{{"shm_name": "healthcheck_shm", "checks": {SEED_CHECKS_JSON}}}"#);
    let loaded = Config::from_json(&text).expect("seed table loads");
    // Everything but the status order is literally equal.
    assert_eq!(
        loaded.checks.active.unhealthy.http_statuses,
        [500, 501, 503, 502, 504, 505]
    );
    assert_eq!(
        sort_statuses(loaded),
        seed_expected(Some("healthcheck_shm"))
    );

    let checks_only = format!(r#"{{"checks": {SEED_CHECKS_JSON}}}"#);
    let loaded = Config::from_json(&checks_only).expect("seed table loads");
    assert_eq!(sort_statuses(loaded), seed_expected(None));
}

#[test]
fn seed_default_table_loads_wrapped() {
    let text = format!(
        r#"{{"cluster_healthcheck": {{"shm_name": "healthcheck_shm", "checks": {SEED_CHECKS_JSON}}}}}"#
    );
    let loaded = Config::from_json(&text).expect("wrapped seed table loads");
    assert_eq!(
        sort_statuses(loaded),
        seed_expected(Some("healthcheck_shm"))
    );

    let toml_text = SEED_TOML
        .replace("shm_name", "[cluster_healthcheck]\nshm_name")
        .replace("[checks.", "[cluster_healthcheck.checks.");
    let loaded = Config::from_toml(&toml_text).expect("wrapped seed TOML loads");
    assert_eq!(
        sort_statuses(loaded),
        seed_expected(Some("healthcheck_shm"))
    );
}

#[test]
fn seed_default_table_loads_as_toml() {
    let loaded = Config::from_toml(SEED_TOML).expect("seed table loads");
    assert_eq!(
        sort_statuses(loaded),
        seed_expected(Some("healthcheck_shm"))
    );
}

#[test]
fn seed_override_example_changes_only_what_it_names() {
    let json_text = r#"{
        "shm_name": "test_shm",
        "checks": {
            "active": {
                "http_path": "/health",
                "timeout": 1,
                "healthy": { "http_statuses": [200], "interval": 0.5 }
            }
        }
    }"#;
    let toml_text = r#"
        shm_name = "test_shm"
        [checks.active]
        http_path = "/health"
        timeout = 1
        [checks.active.healthy]
        http_statuses = [200]
        interval = 0.5
    "#;
    let mut expected = Config {
        shm_name: Some("test_shm".to_owned()),
        ..Config::default()
    };
    expected.checks.active.timeout = Duration::from_secs(1);
    expected.checks.active.healthy.interval = Duration::from_millis(500);
    assert_eq!(Config::from_json(json_text), Ok(expected.clone()));
    assert_eq!(Config::from_toml(toml_text), Ok(expected));
}

#[test]
fn fractional_seconds() {
    let c = Config::from_toml("[checks.active.unhealthy]\ninterval = 0.25\n").unwrap();
    assert_eq!(
        c.checks.active.unhealthy.interval,
        Duration::from_millis(250)
    );
    let c = Config::from_json(r#"{"ejection": {"base": 0.1, "max": 2.5}}"#).unwrap();
    assert_eq!(c.ejection.base, Duration::from_millis(100));
    assert_eq!(c.ejection.max, Duration::from_millis(2500));
}

#[test]
fn deserialize_errors_name_the_path_and_value() {
    assert_eq!(
        err_json(r#"{"checks": {"active": {"healthy": {"successes": 300}}}}"#),
        "checks.active.healthy.successes: invalid value: integer `300`, expected u8"
    );
    let e = err_json(r#"{"checks": {"active": {"timeout": -1}}}"#);
    assert!(e.starts_with("checks.active.timeout: "), "{e}");
    assert!(e.contains("-1 is negative"), "{e}");
    let e = err_json(r#"{"checks": {"active": {"type": "icmp"}}}"#);
    assert!(e.starts_with("checks.active.type: "), "{e}");
    assert!(e.contains("icmp"), "{e}");
    for t in ["http", "https", "tcp", "grpc", "status"] {
        assert!(e.contains(&format!("`{t}`")), "{e}");
    }
    let e = err_json(r#"{"checks": {"passive": {"unhealthy": {"interval": 1}}}}"#);
    assert!(
        e.starts_with("checks.passive.unhealthy.interval: unknown field `interval`"),
        "{e}"
    );
    let e = err_json(r#"{"chekcs": {}}"#);
    assert!(e.starts_with("chekcs: unknown field `chekcs`"), "{e}");
    let e = err_json(r#"{"checks": {"active": {"req_headers": ["a: b", 7]}}}"#);
    assert!(e.starts_with("checks.active.req_headers[1]: "), "{e}");
    assert_eq!(
        err_json("[1, 2]"),
        "(top level): expected a table of settings, found an array"
    );
    assert_eq!(
        err_json("null"),
        "(top level): expected a table of settings, found null"
    );
    let e = err_json(r#"{"cluster_healthcheck": {"checks": {"active": {"timeout": "5s"}}}}"#);
    assert!(
        e.starts_with("cluster_healthcheck.checks.active.timeout: invalid type: string"),
        "{e}"
    );

    let e = Config::from_toml("[checks.active]\ntimeout = -0.5\n").unwrap_err();
    assert_eq!(e.path(), Some("checks.active.timeout"));
    assert!(e.to_string().contains("-0.5 is negative"), "{e}");
    let e = Config::from_toml("[checks.active]\ntimeout = nan\n").unwrap_err();
    assert!(e.to_string().contains("NaN is not finite"), "{e}");
    let e = Config::from_toml("[checks.active.healthy]\nsuccesses = 300\n").unwrap_err();
    assert_eq!(e.path(), Some("checks.active.healthy.successes"));
}

#[test]
fn syntax_errors() {
    let e = Config::from_json("{").unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { format: "JSON", .. }),
        "{e}"
    );
    assert_eq!(e.path(), None);
    let e = Config::from_toml("[checks\n").unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { format: "TOML", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("line 1"), "{e}");
    // Deep nesting is refused, not a stack overflow.
    assert!(Config::from_json(&"[".repeat(100_000)).is_err());
    assert!(Config::from_toml(&format!("a = {}", "[".repeat(100_000))).is_err());
}

#[test]
fn validation_errors_name_the_path_and_value() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"checks": {"active": {"unhealthy": {"tcp_failures": 255}}}}"#,
            "checks.active.unhealthy.tcp_failures = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"active": {"healthy": {"successes": 255}}}}"#,
            "checks.active.healthy.successes = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"active": {"unhealthy": {"http_failures": 255}}}}"#,
            "checks.active.unhealthy.http_failures = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"active": {"unhealthy": {"timeouts": 255}}}}"#,
            "checks.active.unhealthy.timeouts = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"passive": {"healthy": {"successes": 255}}}}"#,
            "checks.passive.healthy.successes = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"passive": {"unhealthy": {"timeouts": 255}}}}"#,
            "checks.passive.unhealthy.timeouts = 255 is out of range (0..=254)",
        ),
        (
            r#"{"checks": {"active": {"timeout": 0}}}"#,
            "checks.active.timeout = 0 is out of range (greater than 0 seconds)",
        ),
        (
            r#"{"checks": {"active": {"unhealthy": {"interval": 1e9}}}}"#,
            "checks.active.unhealthy.interval = 1000000000 is out of range (0..=31536000 seconds)",
        ),
        (
            r#"{"keep_alive": {"interval": 2}}"#,
            "keep_alive.interval = 2 is out of range (0 (off) or at least 5: etcd answers more frequent pings with GOAWAY too_many_pings)",
        ),
        (
            r#"{"keep_alive": {"timeout": 0}}"#,
            "keep_alive.timeout = 0 is out of range (above 0 while keep_alive.interval is set)",
        ),
        (
            r#"{"checks": {"active": {"concurrency": 0}}}"#,
            "checks.active.concurrency = 0 is out of range (1 or more)",
        ),
        (
            r#"{"checks": {"active": {"healthy": {"http_statuses": [200, 99]}}}}"#,
            "checks.active.healthy.http_statuses[1] = 99 is out of range (100..=599)",
        ),
        (
            r#"{"checks": {"passive": {"unhealthy": {"http_statuses": [600]}}}}"#,
            "checks.passive.unhealthy.http_statuses[0] = 600 is out of range (100..=599)",
        ),
        (
            r#"{"checks": {"active": {"http_path": "health"}}}"#,
            "checks.active.http_path = \"health\" is invalid: must start with `/`",
        ),
        (
            r#"{"checks": {"active": {"req_headers": ["User-Agent curl"]}}}"#,
            "checks.active.req_headers[0] = \"***\" is invalid: expected `Name: value` (the \
             line is not shown: without a name, it may hold a secret)",
        ),
        (
            r#"{"failures": {"codes": ["unavailable", "timeout"]}}"#,
            "failures.codes[1] = \"timeout\" is invalid: not a gRPC code name; expected one of ok, cancelled, unknown, invalid_argument, deadline_exceeded, not_found, already_exists, permission_denied, resource_exhausted, failed_precondition, aborted, out_of_range, unimplemented, internal, unavailable, data_loss, unauthenticated",
        ),
        (
            r#"{"failures": {"messages": [""]}}"#,
            "failures.messages[0] = \"\" is invalid: must not be empty (it would match every error)",
        ),
        (
            r#"{"ejection": {"jitter": 1.5}}"#,
            "ejection.jitter = 1.5 is out of range (0..=1)",
        ),
        (
            r#"{"ejection": {"jitter": -0.1}}"#,
            "ejection.jitter = -0.1 is out of range (0..=1)",
        ),
        (
            r#"{"ejection": {"base": 10, "max": 5}}"#,
            "ejection.base = 10 is invalid: greater than ejection.max = 5; expected base <= max",
        ),
        (
            r#"{"shm_name": ""}"#,
            "shm_name = \"\" is invalid: must not be empty (leave it out to keep health state private)",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err_json(text), expected, "for {text}");
    }
    for bad in [
        r#"{"checks": {"active": {"req_headers": ["Bad Name: x"]}}}"#,
        r#"{"checks": {"active": {"req_headers": [": x"]}}}"#,
        r#"{"checks": {"active": {"req_headers": ["X-A: a\u0001b"]}}}"#,
        r#"{"checks": {"active": {"http_path": "/a b"}}}"#,
        r#"{"checks": {"active": {"host": "a b"}}}"#,
        r#"{"checks": {"active": {"sensitive_headers": ["X Key"]}}}"#,
        r#"{"checks": {"active": {"sensitive_headers": [""]}}}"#,
    ] {
        let e = Config::from_json(bad).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{bad}: {e}");
        assert!(e.to_string().starts_with("checks.active."), "{e}");
    }
    assert!(Config::from_json(r#"{"ejection": {"jitter": 0, "base": 3, "max": 3}}"#).is_ok());
    assert!(Config::from_json(r#"{"checks": {"active": {"host": "etcd.local:2379"}}}"#).is_ok());
}

#[test]
fn validate_builder_made_configs() {
    let mut c = Config::default();
    c.checks.passive.unhealthy.tcp_failures = 255;
    assert_eq!(
        c.validate().unwrap_err().path(),
        Some("checks.passive.unhealthy.tcp_failures")
    );
    let mut c = Config::default();
    c.ejection.jitter = f64::NAN;
    assert_eq!(c.validate().unwrap_err().path(), Some("ejection.jitter"));
    let mut c = Config::default();
    c.checks.active.timeout = Duration::MAX;
    assert_eq!(
        c.validate().unwrap_err().path(),
        Some("checks.active.timeout")
    );
}

#[test]
fn parsed_codes_and_headers() {
    let c = Config::from_json(
        r#"{"failures": {"codes": ["unavailable", "deadline_exceeded", "unavailable"]}}"#,
    )
    .unwrap();
    assert_eq!(
        c.failures.parsed_codes(),
        [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded]
    );
    assert_eq!(
        Config::default().failures.parsed_codes(),
        [tonic::Code::Unavailable]
    );

    let c = Config::from_json(
        r#"{"checks": {"active": {"req_headers": ["User-Agent: curl/7.29.0", "X-Id:\t7 ", "X-Id: 8:9"]}}}"#,
    )
    .unwrap();
    let headers = c.checks.active.parsed_req_headers().unwrap();
    assert_eq!(headers["user-agent"], "curl/7.29.0");
    let ids: Vec<_> = headers.get_all("x-id").iter().collect();
    assert_eq!(ids, ["7", "8:9"]);
}

#[test]
fn endpoints_accepted() {
    let eps = parse_endpoints(&[
        "http://127.0.0.1:12379",
        "https://etcd-2.local:22379/",
        "10.0.0.3:32379",
        "[::1]:2379",
        "HTTPS://Etcd-4:2379",
    ])
    .unwrap();
    let shown: Vec<String> = eps.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "http://127.0.0.1:12379",
            "https://etcd-2.local:22379",
            "http://10.0.0.3:32379",
            "http://[::1]:2379",
            "https://Etcd-4:2379",
        ]
    );
    assert_eq!(eps[2].original, "10.0.0.3:32379");
    assert_eq!(eps[2].scheme, Scheme::Http);
    assert_eq!(eps[2].host, "10.0.0.3");
    assert_eq!(eps[2].port, 32379);
    let uri = eps[1].uri();
    assert_eq!(uri.scheme_str(), Some("https"));
    assert_eq!(uri.host(), Some("etcd-2.local"));
    assert_eq!(uri.port_u16(), Some(22379));
    // Owned strings work too.
    let owned: Vec<String> = vec!["a:1".to_owned()];
    assert_eq!(parse_endpoints(&owned).unwrap().len(), 1);
}

#[test]
fn endpoint_errors() {
    let empty: [&str; 0] = [];
    assert_eq!(
        parse_endpoints(&empty).unwrap_err().to_string(),
        "endpoints: the list is empty"
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["a:1", "unix:///tmp/etcd.sock"],
            "endpoints[1] = \"unix:///tmp/etcd.sock\" is invalid: unsupported scheme \"unix\"",
        ),
        (
            &["ftp://a:1"],
            "endpoints[0] = \"ftp://a:1\" is invalid: unsupported scheme \"ftp\"",
        ),
        (
            &["etcd"],
            "endpoints[0] = \"etcd\" is invalid: missing port",
        ),
        (
            &["http://etcd"],
            "endpoints[0] = \"http://etcd\" is invalid: missing port",
        ),
        (
            &[":2379"],
            "endpoints[0] = \":2379\" is invalid: missing host",
        ),
        (
            &["http://a:1/v3"],
            "endpoints[0] = \"http://a:1/v3\" is invalid: has path \"/v3\"",
        ),
        (
            &["http://a:1/?x=1"],
            "endpoints[0] = \"http://a:1/?x=1\" is invalid: has path",
        ),
        (
            &["a:99999"],
            "endpoints[0] = \"a:99999\" is invalid: port 99999 is out of range (1..=65535)",
        ),
        (&["a b:1"], "endpoints[0] = \"a b:1\" is invalid: not a URL"),
        (&[""], "endpoints[0] = \"\" is invalid: not a URL"),
        (&["a:0"], "endpoints[0] = \"a:0\" is invalid: port 0"),
        (
            &["root:pw@a:1"],
            "endpoints[0] = \"***@a:1\" is invalid: credentials",
        ),
        (
            &["http://a:1", "b:2", "A:1"],
            "endpoints[2] = \"A:1\" is invalid: duplicate of endpoints[0] = \"http://a:1\"",
        ),
    ];
    for (input, expected) in cases {
        let e = parse_endpoints(input).unwrap_err().to_string();
        assert!(e.starts_with(expected), "for {input:?}: {e}");
    }
    // Same host and port over another scheme is another endpoint.
    assert!(parse_endpoints(&["http://a:1", "https://a:1"]).is_ok());
}

#[test]
fn tls_section_loads_and_its_shape_is_checked() {
    let config = Config::from_toml(
        r#"
[tls]
ca_file = "/etc/etcd/ca.pem"
cert_file = "/etc/etcd/client.pem"
key_file = "/etc/etcd/client-key.pem"
domain_name = "etcd.internal"
"#,
    )
    .expect("a TLS section");
    assert_eq!(
        config.tls.ca_file.as_deref(),
        Some("/etc/etcd/ca.pem".as_ref())
    );
    assert_eq!(config.tls.domain_name.as_deref(), Some("etcd.internal"));
    assert_eq!(
        config.tls.reload_interval,
        Duration::from_secs(10),
        "default"
    );
    assert!(Config::default().tls.is_empty());
    let every = |text: &str| {
        Config::from_toml(&format!("[tls]\nca_file = \"/ca.pem\"\n{text}"))
            .expect("valid")
            .tls
            .reload_interval
    };
    assert_eq!(every("reload_interval = 0"), Duration::ZERO, "0 is off");
    assert_eq!(every("reload_interval = 0.5"), Duration::from_millis(500));
    // A config without TLS serializes without a `tls` key (the seed's shape).
    assert!(serde_json::to_value(Config::default())
        .expect("json")
        .get("tls")
        .is_none());

    let cases: &[(&str, &str)] = &[
        (
            r#"{"tls": {"cert_file": "/c.pem"}}"#,
            "tls.cert_file = \"/c.pem\" is invalid: a client certificate needs its private key",
        ),
        (
            r#"{"tls": {"key_file": "/k.pem"}}"#,
            "tls.key_file = \"/k.pem\" is invalid: a private key needs its certificate",
        ),
        (
            r#"{"tls": {"ca_file": ""}}"#,
            "tls.ca_file = \"\" is invalid: must not be empty",
        ),
        (
            r#"{"tls": {"domain_name": "bad name"}}"#,
            "tls.domain_name = \"bad name\" is invalid: expected a DNS name or an IP address",
        ),
        (
            r#"{"tls": {"ca": "/x"}}"#,
            "tls.ca: unknown field `ca`, expected one of `ca_file`",
        ),
        (
            r#"{"tls": {"reload_interval": 0.01}}"#,
            "tls.reload_interval = 0.01 is out of range (0 (off) or 0.1..=31536000 seconds)",
        ),
        (
            r#"{"tls": {"reload_interval": -1}}"#,
            "tls.reload_interval: invalid value: -1 is negative",
        ),
    ];
    for (input, expected) in cases {
        let e = Config::from_json(input).unwrap_err().to_string();
        assert!(e.starts_with(expected), "for {input}: {e}");
    }
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn duration(min_ms: u64) -> impl Strategy<Value = Duration> {
        (min_ms..3_600_000u64).prop_map(Duration::from_millis)
    }

    fn statuses() -> impl Strategy<Value = Vec<u16>> {
        prop::collection::vec(100u16..=599, 0..5)
    }

    fn probe_type() -> impl Strategy<Value = ProbeType> {
        prop_oneof![
            Just(ProbeType::Http),
            Just(ProbeType::Https),
            Just(ProbeType::Tcp),
            Just(ProbeType::Grpc),
            Just(ProbeType::Status),
        ]
    }

    fn active() -> impl Strategy<Value = ActiveChecks> {
        (
            (
                1usize..64,
                duration(1),
                "/[a-z0-9/_.-]{0,16}",
                prop_oneof![
                    Just(String::new()),
                    "[a-z]{1,8}(\\.[a-z]{1,4})?(:[0-9]{1,4})?"
                ],
                probe_type(),
                prop::collection::vec("[A-Za-z][A-Za-z0-9-]{0,10}: [!-~]{0,16}", 0..3),
                prop::collection::vec("[A-Za-z][A-Za-z0-9-]{0,10}", 0..2),
                any::<bool>(),
            ),
            (statuses(), duration(0), 0u8..=254),
            (statuses(), duration(0), 0u8..=254, 0u8..=254, 0u8..=254),
        )
            .prop_map(
                |(
                    (
                        concurrency,
                        timeout,
                        http_path,
                        host,
                        probe_type,
                        req_headers,
                        sensitive_headers,
                        verify,
                    ),
                    (h_statuses, h_interval, successes),
                    (u_statuses, u_interval, http_failures, tcp_failures, timeouts),
                )| ActiveChecks {
                    concurrency,
                    timeout,
                    http_path,
                    host,
                    probe_type,
                    req_headers,
                    sensitive_headers,
                    https_verify_certificate: verify,
                    healthy: ActiveHealthy {
                        http_statuses: h_statuses,
                        interval: h_interval,
                        successes,
                    },
                    unhealthy: ActiveUnhealthy {
                        http_statuses: u_statuses,
                        interval: u_interval,
                        http_failures,
                        tcp_failures,
                        timeouts,
                    },
                },
            )
    }

    fn passive() -> impl Strategy<Value = PassiveChecks> {
        (
            probe_type(),
            statuses(),
            0u8..=254,
            statuses(),
            0u8..=254,
            0u8..=254,
            0u8..=254,
        )
            .prop_map(
                |(probe_type, hs, successes, us, hf, tf, to)| PassiveChecks {
                    probe_type,
                    healthy: PassiveHealthy {
                        http_statuses: hs,
                        successes,
                    },
                    unhealthy: PassiveUnhealthy {
                        http_statuses: us,
                        http_failures: hf,
                        tcp_failures: tf,
                        timeouts: to,
                    },
                },
            )
    }

    fn valid_config(shm: impl Strategy<Value = Option<String>>) -> impl Strategy<Value = Config> {
        let code_names: Vec<String> = GRPC_CODES.iter().map(|(n, _)| (*n).to_owned()).collect();
        (
            shm,
            active(),
            passive(),
            any::<bool>(),
            prop::sample::subsequence(code_names, 0..=4),
            prop::collection::vec("[a-z :]{1,20}", 0..3),
            (duration(0), duration(0), 0.0f64..=1.0),
            prop_oneof![
                Just(AllUnhealthyPolicy::TryAll),
                Just(AllUnhealthyPolicy::FailFast)
            ],
            (
                1u8..=MAX_ATTEMPTS,
                duration(0),
                duration(0),
                duration(0),
                duration(0),
                (0.0f64..=MAX_EXTRA_RATIO, any::<u32>()),
            ),
            (
                (1u8..=4, duration(0), duration(0), 0u64..=i64::MAX as u64),
                (0u8..=MAX_THRESHOLD, duration(0)),
                (duration(0), duration(1), duration(1), any::<bool>()),
                tls(),
                (any::<bool>(), duration(0), duration(1), duration(0)),
                (
                    prop_oneof![
                        Just(Duration::ZERO),
                        (5u64..=3600).prop_map(Duration::from_secs)
                    ],
                    duration(1),
                ),
            ),
        )
            .prop_map(
                |(
                    shm_name,
                    active,
                    passive,
                    require_leader,
                    codes,
                    messages,
                    (a, b, jitter),
                    all,
                    (
                        max_attempts,
                        c,
                        d,
                        budget,
                        read_attempt_timeout,
                        (extra_ratio, extra_min_per_second),
                    ),
                    (
                        (hedges, e, f, max_range_limit),
                        (hang_threshold, hang_after),
                        (li, le, lt, lw),
                        tls,
                        (member_list, di, dt, dd),
                        (ki, kt),
                    ),
                )| {
                    Config {
                        shm_name,
                        checks: Checks { active, passive },
                        require_leader,
                        failures: FailureConfig { codes, messages },
                        ejection: EjectionConfig {
                            base: a.min(b),
                            max: a.max(b),
                            jitter,
                        },
                        all_unhealthy: all,
                        retry: RetryConfig {
                            max_attempts,
                            backoff: c.min(d),
                            max_backoff: c.max(d),
                            budget,
                            read_attempt_timeout,
                            extra_ratio,
                            extra_min_per_second,
                        },
                        hedge: HedgeConfig {
                            max_attempts: hedges,
                            min_delay: e.min(f),
                            max_delay: e.max(f),
                            max_range_limit,
                        },
                        hang: HangConfig {
                            threshold: hang_threshold,
                            after: hang_after,
                        },
                        leader: LeaderConfig {
                            interval: li,
                            election_interval: le,
                            timeout: lt,
                            route_writes: lw,
                        },
                        discovery: DiscoveryConfig {
                            member_list,
                            interval: di,
                            timeout: dt,
                            dns_interval: dd,
                            srv: None,
                        },
                        keep_alive: KeepAliveConfig {
                            interval: ki,
                            timeout: kt,
                        },
                        tls,
                    }
                },
            )
    }

    /// Valid TLS sections: paths are not read by `validate`, only their shape is checked.
    fn tls() -> impl Strategy<Value = TlsConfig> {
        (
            prop::option::of("/[a-z]{1,8}/ca\\.pem"),
            prop::option::of("[a-z]{1,8}"),
            prop::option::of(prop_oneof![
                "[a-z]{1,10}(\\.[a-z]{1,10}){0,2}",
                Just("10.0.0.1".to_owned())
            ]),
        )
            .prop_map(|(ca, identity, domain_name)| TlsConfig {
                ca_file: ca.map(Into::into),
                cert_file: identity.as_ref().map(|n| format!("/{n}.pem").into()),
                key_file: identity.map(|n| format!("/{n}-key.pem").into()),
                domain_name,
                ..TlsConfig::default()
            })
    }

    /// JSON pointers of the leaves (non-objects) of a value.
    fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    leaves(child, format!("{at}/{k}"), out);
                }
            }
            _ => out.push(at),
        }
    }

    fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
        let mut cur = root;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let Value::Object(map) = cur else {
                unreachable!("only objects on the way")
            };
            if i + 1 == parts.len() {
                map.insert((*part).to_owned(), value);
                return;
            }
            cur = map
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }

    fn dotted(pointer: &str) -> String {
        pointer.trim_start_matches('/').replace('/', ".")
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "checks",
                "active",
                "passive",
                "healthy",
                "unhealthy",
                "timeout",
                "interval",
                "type",
                "http",
                "successes",
                "cluster_healthcheck",
                "failures",
                "codes",
                "ejection",
                "jitter",
                "shm_name",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "checks",
                        "active",
                        "passive",
                        "healthy",
                        "unhealthy",
                        "timeout",
                        "interval",
                        "type",
                        "http_statuses",
                        "successes",
                        "cluster_healthcheck",
                        "failures",
                        "codes",
                        "ejection",
                        "jitter",
                        "max",
                        "base",
                        "shm_name",
                        "req_headers",
                        "http_path",
                        "other",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// (a) A random subset of fields, with random valid values, loads to those values
        /// and to the defaults everywhere else, from JSON and from TOML.
        #[test]
        fn partial_config_overrides_only_named_fields(
            given in valid_config(Just(Some("s".to_owned()))).prop_map(|mut c| {
                // base <= max must hold whichever of the two is given: keep given values on
                // their side of the defaults (1 s and 30 s).
                c.ejection.base = c.ejection.base.min(Duration::from_secs(1));
                c.ejection.max = c.ejection.max.max(Duration::from_secs(30));
                // The same for retry.backoff <= retry.max_backoff (defaults 25 ms and 100 ms)
                // and hedge.min_delay <= hedge.max_delay (20 ms and 500 ms).
                c.retry.backoff = c.retry.backoff.min(Duration::from_millis(25));
                c.retry.max_backoff = c.retry.max_backoff.max(Duration::from_millis(100));
                c.hedge.min_delay = c.hedge.min_delay.min(Duration::from_millis(20));
                c.hedge.max_delay = c.hedge.max_delay.max(Duration::from_millis(500));
                // tls.cert_file and tls.key_file only go together; (b) round-trips them.
                c.tls.cert_file = None;
                c.tls.key_file = None;
                c
            }),
            mask in prop::collection::vec(any::<bool>(), 64),
        ) {
            let given_json = serde_json::to_value(&given).unwrap();
            let default_json = serde_json::to_value(Config::default()).unwrap();
            let mut paths = Vec::new();
            leaves(&given_json, String::new(), &mut paths);
            let mut partial = json!({});
            let mut chosen = Vec::new();
            for (i, p) in paths.iter().enumerate() {
                if mask[i % mask.len()] {
                    set_pointer(&mut partial, p, given_json.pointer(p).unwrap().clone());
                    chosen.push(p.clone());
                }
            }
            let from_json = Config::from_value(partial.clone()).unwrap();
            let toml_text = toml::to_string(&partial).unwrap();
            let from_toml = Config::from_toml(&toml_text).unwrap();
            prop_assert_eq!(&from_json, &from_toml);
            let loaded = serde_json::to_value(&from_json).unwrap();
            for p in &paths {
                let expected = if chosen.contains(p) {
                    given_json.pointer(p)
                } else {
                    default_json.pointer(p)
                };
                prop_assert_eq!(loaded.pointer(p), expected, "at {}", p);
            }
        }

        /// (b) Serialize then load gives the same config, through JSON, TOML and values.
        #[test]
        fn round_trip(c in valid_config(prop::option::of("[a-z_]{1,12}"))) {
            prop_assert_eq!(c.validate(), Ok(()));
            let json_text = serde_json::to_string(&c).unwrap();
            prop_assert_eq!(Config::from_json(&json_text), Ok(c.clone()));
            let toml_text = toml::to_string(&c).unwrap();
            prop_assert_eq!(Config::from_toml(&toml_text), Ok(c.clone()));
            prop_assert_eq!(Config::from_value(serde_json::to_value(&c).unwrap()), Ok(c.clone()));
            let wrapped = json!({ "cluster_healthcheck": serde_json::to_value(&c).unwrap() });
            prop_assert_eq!(Config::from_value(wrapped), Ok(c));
        }

        /// (c) Arbitrary text never panics either loader.
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = Config::from_json(&s);
            let _ = Config::from_toml(&s);
        }

        /// (c) Text made of TOML-ish pieces never panics the TOML loader.
        #[test]
        fn tomlish_text_never_panics(s in "[\\[\\]a-z_.=\" 0-9\n{},-]{0,120}") {
            let _ = Config::from_toml(&s);
        }

        /// (c) Arbitrary JSON values never panic the loaders.
        #[test]
        fn arbitrary_json_never_panics(v in arbitrary_json()) {
            let _ = Config::from_json(&v.to_string());
            let _ = Config::from_value(v.clone());
            if let Ok(t) = toml::to_string(&v) {
                let _ = Config::from_toml(&t);
            }
        }

        /// (c, d) Replacing one field of a valid config with a bad value never panics, and
        /// any error names that field's path.
        #[test]
        fn errors_name_the_field(
            c in valid_config(Just(Some("s".to_owned()))),
            pick in any::<prop::sample::Index>(),
            bad in prop::sample::select(vec![
                json!(-1), json!(255), json!(256), json!(0), json!(1e300), json!(-0.5),
                json!(70000), json!(""), json!("bogus"), json!(["bogus"]), json!([-1]),
                json!([0]), json!([""]), json!({"bad": 1}), json!(true), json!(null),
                json!(2.5), json!("no_colon"), json!(["x y: z"]),
            ]),
            wrap in any::<bool>(),
        ) {
            let mut v = serde_json::to_value(&c).unwrap();
            let mut paths = Vec::new();
            leaves(&v, String::new(), &mut paths);
            let p = pick.get(&paths).clone();
            set_pointer(&mut v, &p, bad);
            let v = if wrap { json!({ "cluster_healthcheck": v }) } else { v };
            for result in [Config::from_value(v.clone()), Config::from_json(&v.to_string())] {
                if let Err(e) = result {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(&dotted(&p)), "{} lacks {}", msg, dotted(&p));
                    if wrap {
                        prop_assert!(msg.starts_with("cluster_healthcheck."), "{}", msg);
                    }
                }
            }
        }

        /// (c) Any text, control characters and all Unicode included, gives a config or an
        /// error with a message and a place (a field path, or a syntax error's line).
        #[test]
        fn every_error_has_a_message_and_a_place(
            s in prop_oneof![
                any::<String>(),
                "[\\[\\]a-z_.=\"' 0-9\n\t{},#\u{0}-\u{1f}\u{7f}\u{e9}\u{1f600}-]{0,80}",
                arbitrary_json().prop_map(|v| toml::to_string(&v).unwrap_or_default()),
            ],
        ) {
            for result in [Config::from_json(&s), Config::from_toml(&s)] {
                match result {
                    Ok(c) => prop_assert_eq!(c.validate(), Ok(())),
                    Err(e) => {
                        let shown = e.to_string();
                        prop_assert!(!shown.trim().is_empty(), "{:?}", e);
                        match e.path() {
                            Some(path) => {
                                prop_assert!(!path.is_empty(), "{:?}", e);
                                prop_assert!(shown.contains(path), "{}", shown);
                            }
                            None => prop_assert!(matches!(e, ConfigError::Syntax { .. }), "{:?}", e),
                        }
                    }
                }
            }
        }

        /// (e) Endpoint strings with Unicode and control characters: an error names the
        /// entry, an accepted endpoint has a host and port its URI keeps.
        #[test]
        fn unicode_and_control_endpoints(
            list in prop::collection::vec(
                prop_oneof![
                    any::<String>(),
                    "(https?://)?[a-z\u{0}-\u{1f}\u{7f}\u{e9}\u{3b1}\u{1f600}.\\[\\]:%@/ -]{0,16}(:[0-9]{1,6})?",
                ],
                1..4,
            ),
        ) {
            match parse_endpoints(&list) {
                Ok(eps) => {
                    for ep in &eps {
                        prop_assert!(ep.host.is_ascii() && !ep.host.is_empty(), "{:?}", ep);
                        let uri = ep.uri();
                        prop_assert_eq!(uri.port_u16(), Some(ep.port));
                        prop_assert_eq!(uri.host(), Some(ep.host.as_str()));
                    }
                }
                Err(e) => {
                    let path = e.path().unwrap_or_default().to_owned();
                    prop_assert!(path.starts_with("endpoints["), "{:?}", e);
                    prop_assert!(e.to_string().starts_with(&path));
                }
            }
        }

        /// (e) The endpoint parser never panics on arbitrary strings.
        #[test]
        fn endpoints_never_panic(list in prop::collection::vec(".{0,40}", 0..4)) {
            let _ = parse_endpoints(&list);
        }

        /// (e) The endpoint parser never panics on URL-ish strings.
        #[test]
        fn urlish_endpoints_never_panic(s in "(https?://|[a-z]{1,5}://)?[a-z0-9.:@\\[\\]/?#%-]{0,30}") {
            if let Ok(eps) = parse_endpoints(&[&s]) {
                prop_assert_eq!(eps.len(), 1);
                prop_assert!(eps[0].port != 0);
                prop_assert!(!eps[0].host.is_empty());
            }
        }

        /// (e) Valid endpoints parse to their parts and their display form parses back.
        #[test]
        fn endpoints_round_trip(
            scheme in prop_oneof![Just(None), Just(Some(Scheme::Http)), Just(Some(Scheme::Https))],
            host in prop_oneof![
                "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,6}){0,2}",
                (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
                    .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
                Just("[::1]".to_owned()),
                Just("[fe80::1:2]".to_owned()),
            ],
            port in 1u16..,
            slash in any::<bool>(),
        ) {
            let prefix = scheme.map_or(String::new(), |s| format!("{s}://"));
            let text = format!("{prefix}{host}:{port}{}", if slash { "/" } else { "" });
            let eps = parse_endpoints(&[&text]).unwrap();
            let ep = &eps[0];
            prop_assert_eq!(ep.scheme, scheme.unwrap_or(Scheme::Http));
            prop_assert_eq!(&ep.host, &host);
            prop_assert_eq!(ep.port, port);
            prop_assert_eq!(&ep.original, &text);
            let again = parse_endpoints(&[ep.to_string()]).unwrap();
            prop_assert_eq!((again[0].scheme, &again[0].host, again[0].port), (ep.scheme, &ep.host, ep.port));
            let uri = ep.uri();
            prop_assert_eq!(uri.host(), Some(host.as_str()));
            prop_assert_eq!(uri.port_u16(), Some(port));
            prop_assert_eq!(uri.scheme_str(), Some(ep.scheme.as_str()));
        }
    }
}

/// Found by the `endpoints` fuzz target: `http` took `ht[` as the host of this string, and the
/// endpoint's URI then fell back to `/`.
#[test]
fn malformed_hosts_are_refused() {
    for bad in [
        "ht[::2]ht0.t).:1",
        "a b:1",
        "[::1:1",
        "[zz::1]:1",
        "h\u{7f}:1",
        "é.example:1",
    ] {
        let err = parse_endpoints(&[bad]).unwrap_err();
        assert_eq!(err.path(), Some("endpoints[0]"), "{bad}: {err}");
    }
    for good in ["[fe80::1%25eth0]:2379", "my_host.local:1", "10.0.0.1:2379"] {
        let eps = parse_endpoints(&[good]).unwrap();
        assert_eq!(eps[0].uri().port_u16(), Some(eps[0].port), "{good}");
    }
}

/// Found by the `config_json` fuzz target: an empty key gave an empty error path.
#[test]
fn odd_keys_are_quoted_in_error_paths() {
    let err = Config::from_json(r#"{"": {}}"#).unwrap_err();
    assert_eq!(err.path(), Some(r#"[""]"#), "{err}");
    let err = Config::from_json(r#"{"checks": {"a.b\n": 1}}"#).unwrap_err();
    assert_eq!(err.path(), Some(r#"checks["a.b\n"]"#), "{err}");
    let err = Config::from_toml("[checks]\n\"\" = 1").unwrap_err();
    assert_eq!(err.path(), Some(r#"checks[""]"#), "{err}");
    let err = Config::from_json(r#"{"checks": {"active": {"req_headers": [1]}}}"#).unwrap_err();
    assert_eq!(err.path(), Some("checks.active.req_headers[0]"), "{err}");
}

#[test]
fn retry_section_is_validated() {
    let c = Config::from_json(r#"{"retry": {"max_attempts": 5, "read_attempt_timeout": 0.25}}"#)
        .unwrap();
    assert_eq!(c.retry.max_attempts, 5);
    assert_eq!(c.retry.read_attempt_timeout, Duration::from_millis(250));
    assert_eq!(c.retry.backoff, RetryConfig::default().backoff);
    let err = Config::from_json(r#"{"retry": {"max_attempts": 0}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "retry.max_attempts = 0 is out of range (1..=255)"
    );
    let err = Config::from_json(r#"{"retry": {"backoff": 2, "max_backoff": 1}}"#).unwrap_err();
    assert_eq!(err.path(), Some("retry.backoff"));
}

/// The retry budget's fields sit beside the time budget, merge like the rest, and a bad value
/// names its field and value.
#[test]
fn retry_budget_and_hedge_range_limit_are_validated() {
    let c = Config::from_toml(
        "[retry]
extra_ratio = 0.05
[hedge]
max_range_limit = 10
",
    )
    .unwrap();
    assert_eq!(c.retry.extra_ratio, 0.05);
    assert_eq!(
        c.retry.extra_min_per_second,
        RetryConfig::default().extra_min_per_second
    );
    assert_eq!(c.retry.budget, RetryConfig::default().budget);
    assert_eq!(c.hedge.max_range_limit, 10);
    let c =
        Config::from_json(r#"{"retry": {"extra_min_per_second": 0, "extra_ratio": 0}}"#).unwrap();
    assert_eq!(
        (c.retry.extra_ratio, c.retry.extra_min_per_second),
        (0.0, 0)
    );
    let err = Config::from_json(r#"{"retry": {"extra_ratio": -0.5}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "retry.extra_ratio = -0.5 is out of range (0..=254 (a fraction of requests: 0.1 = 10 %))"
    );
    let mut c = Config::default();
    c.retry.extra_ratio = f64::NAN;
    let err = c.validate().unwrap_err();
    assert_eq!(err.path(), Some("retry.extra_ratio"), "{err}");
    let err = Config::from_json(r#"{"retry": {"extra_min_per_second": -1}}"#).unwrap_err();
    assert_eq!(err.path(), Some("retry.extra_min_per_second"), "{err}");
    let err =
        Config::from_json(r#"{"hedge": {"max_range_limit": 18446744073709551615}}"#).unwrap_err();
    assert_eq!(err.path(), Some("hedge.max_range_limit"), "{err}");
    assert!(err.to_string().contains("18446744073709551615"), "{err}");
}

/// `[discovery.srv]` loads over the defaults (its own fields too), and each bad value names
/// its field and value.
#[cfg(feature = "dns-srv")]
#[test]
fn srv_discovery_loads_over_defaults_and_is_validated() {
    let c = Config::from_toml(
        "[discovery.srv]
domain = \"etcd.example.com.\"
service_name = \"east\"
",
    )
    .unwrap();
    assert_eq!(
        c.discovery.srv,
        Some(SrvConfig {
            domain: "etcd.example.com.".into(),
            service_name: "east".into(),
            ..SrvConfig::default()
        })
    );
    assert_eq!(
        c.discovery.srv.as_ref().unwrap().interval,
        Duration::from_secs(30)
    );
    assert_eq!(
        (c.discovery.dns_interval, c.discovery.member_list),
        (Duration::from_secs(30), true)
    );
    assert_eq!(Config::default().discovery.srv, None);
    // Written out and read back, as a loaded config is.
    let written = toml::to_string(&c).unwrap();
    assert_eq!(Config::from_toml(&written).unwrap(), c, "{written}");
    let c = Config::from_json(
        r#"{"discovery": {"srv": {"domain": "etcd", "interval": 0, "name_server": "[::1]:53"}}}"#,
    )
    .unwrap();
    let srv = c.discovery.srv.unwrap();
    assert_eq!(
        (srv.interval, srv.name_server.as_deref()),
        (Duration::ZERO, Some("[::1]:53"))
    );

    for (input, path, shown) in [
        (r#"{"domain": ""}"#, "discovery.srv.domain", "\"\""),
        (r#"{}"#, "discovery.srv.domain", "\"\""),
        (
            r#"{"domain": "etcd example.com"}"#,
            "discovery.srv.domain",
            "\"etcd example.com\"",
        ),
        (r#"{"domain": "a..b"}"#, "discovery.srv.domain", "\"a..b\""),
        (
            r#"{"domain": "x", "service_name": "a.b"}"#,
            "discovery.srv.service_name",
            "\"a.b\"",
        ),
        (
            r#"{"domain": "x", "name_server": "localhost:53"}"#,
            "discovery.srv.name_server",
            "\"localhost:53\"",
        ),
        (
            r#"{"domain": "x", "name_server": "10.0.0.1"}"#,
            "discovery.srv.name_server",
            "\"10.0.0.1\"",
        ),
    ] {
        let e = Config::from_json(&format!(r#"{{"discovery": {{"srv": {input}}}}}"#)).unwrap_err();
        assert_eq!(e.path(), Some(path), "{input}: {e}");
        assert!(e.to_string().contains(shown), "{input}: {e}");
    }
    let long = "x".repeat(47);
    let e = Config::from_json(&format!(
        r#"{{"discovery": {{"srv": {{"domain": "x", "service_name": "{long}"}}}}}}"#
    ))
    .unwrap_err();
    assert_eq!(e.path(), Some("discovery.srv.service_name"), "{e}");
    assert!(Config::from_json(&format!(
        r#"{{"discovery": {{"srv": {{"domain": "x", "service_name": "{}"}}}}}}"#,
        "x".repeat(46)
    ))
    .is_ok());
    // A misspelt field is named, not ignored.
    let e = Config::from_toml("[discovery.srv]\ndomian = \"x\"\n").unwrap_err();
    assert_eq!(e.path(), Some("discovery.srv.domian"), "{e}");
}

/// Without the `dns-srv` feature a config asking for SRV discovery is refused, saying which
/// feature it needs, rather than silently finding no member.
#[cfg(not(feature = "dns-srv"))]
#[test]
fn srv_discovery_needs_its_feature() {
    let e = Config::from_toml("[discovery.srv]\ndomain = \"etcd.example.com\"\n").unwrap_err();
    assert_eq!(e.path(), Some("discovery.srv"), "{e}");
    assert!(e.to_string().contains("`dns-srv` cargo feature"), "{e}");
    assert!(e.to_string().contains("etcd.example.com"), "{e}");
}
