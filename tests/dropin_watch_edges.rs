//! etcd-client's watches over the drop-in at three edges where the drop-in used to end or
//! stall a watch that stock etcd-client would keep or end cleanly (issue 27 §2), on real etcd:
//!
//! - **large messages**: a `DeleteRange` of a prefix holding more than 4 MiB, watched with
//!   `prev_kv` by a caller that raised its decoding limit, reaches the caller (the drop-in
//!   decoded the member's messages with tonic's 4 MiB default and ended the watch with
//!   `OutOfRange`);
//! - **the first open**: with every member black-holed (connections accepted, nothing
//!   answered), opening a watch returns `DeadlineExceeded` at the caller's deadline, and
//!   without one an error within `retry.budget` (it never returned); a black-holed member
//!   among healthy ones costs the opening one stream timeout and is charged a timeout;
//! - **token refusals**: a watch moved to another member after etcd forgot its token is refused
//!   there, waits for etcd-client's next token and goes on (it was cancelled for good).

mod common;

use std::time::{Duration, Instant};

use common::*;
use etcd_client::{Client, ConnectOptions, DeleteOptions, EventType, WatchOptions};
use etcd_health::config::Config;
use etcd_health::observe::{StreamKind, StreamStats};
use etcd_health::{HealthChannel, HealthChecker};
use etcd_health_testing::Cluster;

/// The tests share two cores and start clusters; one at a time keeps their timings meaningful.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// etcd-client over the drop-in with `config`, its health state and stream counters.
async fn client_with(
    cluster: &Cluster,
    config: Config,
    options: Option<ConnectOptions>,
) -> (Client, HealthChecker, StreamStats) {
    init_tracing();
    let checker = HealthChecker::with_uris(std::iter::empty(), config).expect("checker");
    let channel = HealthChannel::with_checker(checker.clone());
    let stats = channel.stream_stats();
    let client = Client::connect_with_balanced_channel(cluster.endpoints(), options, channel)
        .await
        .expect("drop-in client");
    (client, checker, stats)
}

/// The member serving the newest watch, waiting for it to be open.
async fn serving(stats: &StreamStats) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = stats
            .serving()
            .iter()
            .rev()
            .find(|s| s.kind == StreamKind::Watch)
        {
            return s.member.index();
        }
        assert!(Instant::now() < deadline, "the watch is not served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Keys under the watched prefix and the size of each value: 6 MiB in all, each put well
/// under etcd's 1.5 MiB request limit.
const BIG_KEYS: usize = 48;
const BIG_VALUE: usize = 128 * 1024;

/// A watch with `prev_kv` on a prefix holding 6 MiB receives the `DeleteRange` of the prefix:
/// one watch response of more than 6 MiB (each delete event carries the value it deleted),
/// which the caller's raised limit (64 MiB) accepts. Before, the drop-in's own decoder (tonic's
/// 4 MiB default) refused it and the caller's watch ended with `OutOfRange`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_more_than_4_mib_with_prev_kv_reaches_a_caller_that_raised_its_limit() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let (client, _checker, _stats) = client_with(&cluster, Config::default(), None).await;
    let mut watches = client.watch_client().max_decoding_message_size(64 << 20);
    let mut stream = watches
        .watch(
            "big/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");
    let created = stream.message().await.expect("created").expect("a message");
    assert!(created.created(), "{created:?}");

    let mut kv = client.kv_client();
    let value = vec![b'v'; BIG_VALUE];
    for i in 0..BIG_KEYS {
        kv.put(format!("big/{i:03}"), value.clone(), None)
            .await
            .expect("put");
    }
    let deleted = kv
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete")
        .deleted();
    assert_eq!(deleted, BIG_KEYS as i64);

    let (mut puts, mut deletes) = (0, 0);
    while deletes < BIG_KEYS {
        let resp = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("events within 20 s")
            .unwrap_or_else(|e| {
                panic!("the watch failed after {puts} puts, {deletes} deletes: {e}")
            })
            .expect("the watch goes on");
        assert!(!resp.canceled(), "{:?}", resp.cancel_reason());
        for event in resp.events() {
            match event.event_type() {
                EventType::Put => puts += 1,
                EventType::Delete => {
                    let prev = event.prev_kv().expect("prev_kv asked for");
                    assert_eq!(prev.value().len(), BIG_VALUE);
                    deletes += 1;
                }
            }
        }
    }
    println!("received {puts} puts and {deletes} deletes with their previous values");
    assert_eq!((puts, deletes), (BIG_KEYS, BIG_KEYS));
}

/// A watch request that stays open (etcd-client keeps its request side open, too).
fn create_request(
    key: &str,
) -> impl futures_util::Stream<Item = etcd_health::proto::etcdserverpb::WatchRequest> {
    use etcd_health::proto::etcdserverpb::watch_request::RequestUnion;
    use etcd_health::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    };
    futures_util::StreamExt::chain(
        futures_util::stream::iter([create]),
        futures_util::stream::pending(),
    )
}

/// With every member accepting connections and answering nothing, opening a watch ends:
/// with the caller's 1.5 s deadline (tonic's `set_timeout`, over `into_etcd_channel`) in
/// `DeadlineExceeded` at it; without one (etcd-client's `watch()`), within `retry.budget`
/// (4 s here). Each silent opening is charged to its member as a timeout. Before, neither call
/// returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_watch_on_silent_members_ends_at_the_deadline_or_within_the_budget() {
    const DEADLINE: Duration = Duration::from_millis(1500);
    const BUDGET: Duration = Duration::from_secs(4);
    /// Scheduling slack on a loaded machine.
    const MARGIN: Duration = Duration::from_millis(1500);
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(3)
        .client_proxy(true)
        .start()
        .await
        .expect("cluster");
    for i in 0..cluster.size() {
        cluster.blackhole_client(i, true);
    }
    let mut config = Config::default();
    config.retry.budget = BUDGET;

    // The caller's deadline, through a hand-built stack.
    let checker = HealthChecker::new(&cluster.endpoints(), config.clone()).expect("checker");
    let etcd_client::Channel::Custom(service) = etcd_health::into_etcd_channel(checker.channel())
    else {
        panic!("a custom channel");
    };
    let mut watch = etcd_health::proto::etcdserverpb::watch_client::WatchClient::new(service);
    let mut req = tonic::Request::new(create_request("k"));
    req.set_timeout(DEADLINE);
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), watch.watch(req))
        .await
        .expect("the opening returned within 30 s");
    let took = started.elapsed();
    let err = answer.expect_err("no member answered");
    println!("with a deadline of {DEADLINE:?}: {err:?} after {took:?}");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(took >= DEADLINE - Duration::from_millis(50), "{took:?}");
    assert!(took <= DEADLINE + MARGIN, "{took:?}");

    // No deadline: etcd-client's own watch().
    let (mut client, checker, _stats) = client_with(&cluster, config, None).await;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), client.watch("k", None))
        .await
        .expect("the opening returned within 30 s");
    let took = started.elapsed();
    let err = match answer {
        Ok(_) => panic!("a watch opened on silent members"),
        Err(e) => e,
    };
    println!("without a deadline: {err} after {took:?}");
    assert!(err.to_string().contains("etcd-health"), "{err}");
    assert!(took <= BUDGET + MARGIN, "{took:?}");
    let timeouts: u64 = checker.snapshot().iter().map(|s| s.totals[3]).sum();
    println!(
        "timeouts charged: {:?}",
        checker
            .snapshot()
            .iter()
            .map(|s| (s.member.index(), s.totals))
            .collect::<Vec<_>>()
    );
    assert!(
        timeouts >= 1,
        "silent openings are charged to their members"
    );
}

/// One black-holed member among healthy ones: each watch opens (one that went to the silent
/// member first within the stream timeout, 2 s, plus slack), and the silent opening is charged
/// to that member as a timeout. Before, the opening moved as well but charged nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_among_healthy_ones_costs_an_opening_one_stream_timeout_and_is_charged() {
    const SILENT: usize = 0;
    const BOUND: Duration = Duration::from_millis(4500);
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(3)
        .client_proxy(true)
        .start()
        .await
        .expect("cluster");
    cluster.blackhole_client(SILENT, true);
    let mut config = Config::default();
    // Only what the openings see judges the members here.
    config.leader.interval = Duration::ZERO;
    let (client, checker, stats) = client_with(&cluster, config, None).await;
    let charged = |checker: &HealthChecker| {
        checker
            .snapshot()
            .iter()
            .find(|s| s.member.index() == SILENT)
            .map_or(0, |s| s.totals[3])
    };
    // Watches go to a healthy member at random: open them until one went to the silent one.
    let mut streams = Vec::new();
    let mut slowest = Duration::ZERO;
    for n in 0..30 {
        let started = Instant::now();
        let opened = tokio::time::timeout(BOUND, client.watch_client().watch("k", None))
            .await
            .unwrap_or_else(|_| panic!("watch {n} not opened within {BOUND:?}"))
            .expect("watch");
        slowest = slowest.max(started.elapsed());
        let on = serving(&stats).await;
        assert_ne!(on, SILENT, "served by the silent member");
        streams.push(opened);
        if charged(&checker) > 0 {
            break;
        }
    }
    let member = checker
        .snapshot()
        .into_iter()
        .find(|s| s.member.index() == SILENT)
        .expect("member");
    println!(
        "{} watches opened, slowest in {slowest:?}; silent member: totals {:?}, status {:?}, \
         last outcome {:?}",
        streams.len(),
        member.totals,
        member.status,
        member.last_outcome
    );
    assert!(
        member.totals[3] >= 1,
        "the silent opening was charged as a timeout"
    );
}

const PASSWORD: &str = "dropin-edges-pw";

/// A watch whose member dies after etcd forgot the token it was created with (simple tokens
/// unused for `--auth-token-ttl`, 2 s here, are dropped on every member): the drop-in creates
/// it again on another member, which refuses the token ("invalid auth token"); the watch waits
/// for etcd-client's next token (its next put is refused, it authenticates again), is created
/// again with it, and delivers the put. Before, the refusal reached the caller as a cancel and
/// the watch was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_refused_for_its_token_after_a_move_waits_for_the_next_token_and_goes_on() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .members(3)
        .extra_args(["--auth-token-ttl", "2"])
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let login = ConnectOptions::new()
        .with_user("root", PASSWORD)
        .with_auto_token_refresh(true)
        .with_timeout(Duration::from_secs(3));
    let (mut client, _checker, stats) = client_with(&cluster, Config::default(), Some(login)).await;
    let first = client
        .put("t/0", "0", None)
        .await
        .expect("put")
        .header()
        .map(|h| h.revision());
    let mut stream = client
        .watch(
            "t/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(first.expect("revision") + 1),
            ),
        )
        .await
        .expect("watch");
    let created = stream.message().await.expect("created").expect("a message");
    assert!(created.created() && !created.canceled(), "{created:?}");
    let victim = serving(&stats).await;

    // Nothing is sent for longer than the TTL: every member forgets the token.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = stats.counts();
    cluster.kill(victim);
    // The drop-in moves the watch and is refused (the old drop-in handed the refusal to the
    // caller: the watch's next message is then a cancel).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.counts().token_refusals == before.token_refusals {
        if Instant::now() > deadline {
            let next = tokio::time::timeout(Duration::from_millis(100), stream.message()).await;
            panic!(
                "the moved watch was not refused for its token: stream stats {:?}, next \
                 message {next:?}",
                stats.counts()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // etcd-client's put is refused, it authenticates again and sends the put again.
    let put = client
        .put("t/1", "1", None)
        .await
        .expect("put after renewal");
    let revision = put.header().expect("header").revision();
    let resp = tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no event within 15 s of the put; stream stats {:?}",
                stats.counts()
            )
        })
        .expect("the watch goes on")
        .expect("a message");
    println!(
        "after the move: {resp:?}; stream stats {:?}; victim {victim}",
        stats.counts()
    );
    assert!(
        !resp.canceled(),
        "the watch was cancelled: {:?}",
        resp.cancel_reason()
    );
    let keys: Vec<(String, i64)> = resp
        .events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("kv");
            (kv.key_str().expect("utf-8").to_owned(), kv.mod_revision())
        })
        .collect();
    assert_eq!(keys, vec![("t/1".to_owned(), revision)]);
    assert_eq!(
        stats.counts().token_refusals,
        before.token_refusals + 1,
        "refused once, then created again with the new token"
    );
}
