//! Watches through the drop-in on each etcd version's watch behaviour: real etcd 3.4.23, and
//! the fake members of `etcd_health_testing::fake` that speak etcd 3.5.8–3.5.12 (progress
//! answers deferred and coalesced) and 3.5.13+/3.6 (dropped while a watcher catches up), as
//! etcd's own source has it (`docs/watch-versions.md`).

mod common;

use std::time::Duration;

use etcd_client::Client;
use etcd_health::observe::{StreamKind, StreamStats};
use etcd_health::{Config, HealthChannel, HealthChecker};
use etcd_health_testing::fake::{Behaviour, FakeCluster, MemberSpec};
use etcd_health_testing::Cluster;
use futures_util::{StreamExt, TryStreamExt};

/// etcd-client over the drop-in (`Config::default()`) on `endpoints`, with its stream counters.
async fn dropin(endpoints: Vec<String>) -> (Client, HealthChecker, StreamStats) {
    common::init_tracing();
    let checker = HealthChecker::with_uris(std::iter::empty(), Config::default()).expect("checker");
    let channel = HealthChannel::with_checker(checker.clone());
    let stats = channel.stream_stats();
    let client = Client::connect_with_balanced_channel(endpoints, None, channel)
        .await
        .expect("drop-in client");
    (client, checker, stats)
}

/// The member serving the (only) watch stream.
async fn serving(stats: &StreamStats) -> usize {
    for _ in 0..200 {
        if let Some(s) = stats.serving().iter().find(|s| s.kind == StreamKind::Watch) {
            return s.member.index();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no open watch stream: {:?}", stats.serving());
}

/// The next change the watch hands over: the value put, or a panic naming what came instead.
async fn next_value(stream: &mut etcd_client::WatchStream, within: Duration) -> String {
    loop {
        let msg = tokio::time::timeout(within, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no change within {within:?}"))
            .expect("the watch stream failed")
            .expect("the watch stream ended");
        assert!(
            !msg.canceled(),
            "the watch was cancelled (compact revision {}, reason {:?}) instead of delivering \
             the next change",
            msg.compact_revision(),
            msg.cancel_reason()
        );
        if let Some(e) = msg.events().first() {
            return e
                .kv()
                .map(|kv| kv.value_str().unwrap_or("").to_string())
                .unwrap_or_default();
        }
    }
}

/// The measurement, as a test: a watch (etcd-client over the drop-in,
/// `Config::default()`) on a key that does not change, 2 000 writes to other keys, a
/// compaction, then its member killed — three times, the serving member each time — must
/// deliver the key's next change, not `canceled` with `compact_revision`.
///
/// etcd 3.4.23 answers a stream's progress request out of order with events, so only its
/// per-watch progress notifications say a watch has everything up to a revision; they come
/// every `--experimental-watch-progress-notify-interval` (10 minutes by default; Kubernetes
/// deployments set seconds), here 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_outlives_a_compaction_and_its_member_killed_three_times() {
    let cluster = Cluster::builder()
        .members(3)
        .extra_args(["--experimental-watch-progress-notify-interval=500ms"])
        .start()
        .await
        .expect("cluster");
    cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let (client, _checker, stats) = dropin(cluster.endpoints()).await;
    let (writer, _) = common::dropin_client(&cluster).await;
    let mut watch = client.clone().watch("idle", None).await.expect("watch");
    let mut killed = Vec::new();
    for round in 0..3 {
        futures_util::stream::iter(0..2000)
            .map(|i| {
                let mut kv = writer.kv_client();
                async move { kv.put(format!("busy/{i}"), "x", None).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await
            .expect("writes");
        // Two per-watch notifications' time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let revision = writer
            .kv_client()
            .get("busy/0", None)
            .await
            .expect("read")
            .header()
            .expect("header")
            .revision();
        writer
            .clone()
            .compact(revision, None)
            .await
            .expect("compaction");
        let victim = serving(&stats).await;
        cluster.kill(victim);
        killed.push(victim);
        cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
        // The same value again if the outcome was unknown: the watch hands over the first.
        for attempt in 0.. {
            match writer
                .kv_client()
                .put("idle", format!("v{round}"), None)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 5 => tracing::info!(%e, "put again"),
                Err(e) => panic!("put: {e}"),
            }
        }
        assert_eq!(
            next_value(&mut watch, Duration::from_secs(15)).await,
            format!("v{round}"),
            "round {round}, member {victim} killed"
        );
        cluster.restart(victim).await.expect("restart");
        cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
    }
    tracing::info!(?killed, counts = ?stats.counts(), "members killed in turn");
    assert!(
        stats.counts().watch_resumptions >= 3,
        "{:?}",
        stats.counts()
    );
}

/// Fake members speaking `behaviour` whose watchers created from a past revision take
/// `catch_up` to be synced (a busy member).
async fn busy_fakes(behaviour: Behaviour, catch_up: Duration) -> FakeCluster {
    FakeCluster::start_with(3, |id| MemberSpec {
        id,
        behaviour,
        catch_up,
        progress_notify_interval: Duration::from_secs(600),
    })
    .await
    .expect("fake members")
}

/// A watch resumed behind on a busy newer-etcd member (its progress requests unanswered for 6
/// s while it catches up) stays there: it is not declared hung and moved again and again, and
/// it delivers the next change.
async fn resumed_on_a_busy_member_stays(behaviour: Behaviour) {
    let fakes = busy_fakes(behaviour, Duration::from_secs(6)).await;
    let (client, _checker, stats) = dropin(fakes.endpoints()).await;
    let mut watch = client.clone().watch("idle", None).await.expect("watch");
    for i in 0..50 {
        fakes.put(format!("busy/{i}"), "x");
    }
    let victim = serving(&stats).await;
    fakes.kill(victim);
    // Catch-up (6 s) and more: pokes go unanswered all along.
    tokio::time::sleep(Duration::from_secs(8)).await;
    fakes.put("idle", "next");
    assert_eq!(
        next_value(&mut watch, Duration::from_secs(10)).await,
        "next"
    );
    let counts = stats.counts();
    assert_eq!(
        counts.watch_resumptions, 1,
        "moved once (the kill), not again for the busy member's silence: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_on_a_busy_etcd_3_6_member_is_not_moved_again_and_again() {
    resumed_on_a_busy_member_stays(Behaviour::Etcd36).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_on_a_busy_etcd_3_5_8_member_is_not_moved_again_and_again() {
    resumed_on_a_busy_member_stays(Behaviour::Etcd35Deferred).await;
}

/// The caller's own progress requests on etcd 3.6 while a resumed watch catches up (the member
/// drops them, and our pokes): once synced, the caller asks again and gets its answer, not
/// swallowed as the answer to a poke of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_s_progress_request_is_answered_to_it_on_etcd_3_6() {
    let fakes = busy_fakes(Behaviour::Etcd36, Duration::from_secs(4)).await;
    let (client, _checker, stats) = dropin(fakes.endpoints()).await;
    let mut watch = client.clone().watch("idle", None).await.expect("watch");
    fakes.put("busy", "x");
    let victim = serving(&stats).await;
    fakes.kill(victim);
    // Ask while the resumed watch catches up (dropped by the member) ...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        watch.request_progress().await.expect("progress request");
    }
    // (4 s of catch-up from the kill, with a margin for a loaded machine)
    tokio::time::sleep(Duration::from_secs(5)).await;
    // ... and once it is synced: an answer comes, whatever our pokes did meanwhile. (A write
    // first: a watch resumed right after the newest revision starts "in the future", and
    // 3.6 answers no progress request until a write reaches its start.)
    fakes.put("busy", "y");
    let asked_at = fakes.revision();
    watch.request_progress().await.expect("progress request");
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let msg = watch.message().await.expect("stream").expect("open");
            // Answers owed to the earlier (dropped) requests may come first.
            if msg.watch_id() == -1
                && msg.events().is_empty()
                && msg.header().is_some_and(|h| h.revision() >= asked_at)
            {
                return msg;
            }
        }
    })
    .await
    .expect("no answer to the caller's progress request within 3 s");
    assert!(answer.header().expect("header").revision() >= asked_at);
}

/// The rule the drop-in relies on, shown end to end on the fake: an etcd 3.4 member answers a
/// progress request at once, ahead of the catch-up of a watch created from the past — its
/// answer's revision is no promise about the watch's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_3_4_progress_answer_runs_ahead_of_a_catch_up() {
    let fakes = busy_fakes(Behaviour::Etcd34, Duration::from_millis(500)).await;
    let first = fakes.put("k", "1");
    fakes.put("other", "x");
    let client = Client::connect(fakes.endpoints(), None)
        .await
        .expect("stock client");
    let mut watch = client
        .clone()
        .watch(
            "k",
            Some(etcd_client::WatchOptions::new().with_start_revision(first)),
        )
        .await
        .expect("watch");
    watch.request_progress().await.expect("progress request");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = watch.message().await.expect("stream").expect("open");
        if msg.created() {
            continue;
        }
        seen.push((msg.watch_id(), msg.events().len()));
    }
    assert_eq!(seen, vec![(-1, 0), (0, 1)], "the answer came first");
}

/// The tower stack's watch rides the same engine, tested on paused time over fake etcd 3.6
/// members: a `ResumingWatch` on a key that does not change, 2 000 writes to other keys, a
/// compaction, a quiet spell (the engine asks for progress; a 3.6 member answers in order, so
/// the answer's revision is the watch's), then its member killed: the watch delivers the key's
/// next change on another member instead of ending with `WatchError::Compacted`. (The tower
/// watch's own engine, before it became a façade, advanced an idle watch only with etcd's
/// per-watch notifications, every 10 minutes here: it ended with `Compacted`.)
#[tokio::test(start_paused = true)]
async fn resuming_watch_outlives_a_compaction_and_its_member_killed_on_paused_time() {
    use etcd_health::{ResumingWatch, WatchOptions};
    common::init_tracing();
    let fakes = FakeCluster::start(3, Behaviour::Etcd36)
        .await
        .expect("fake members");
    let checker = HealthChecker::new(&fakes.endpoints(), Config::default()).expect("checker");
    let balance = checker.channel();
    let mut watch = ResumingWatch::over_balance(
        &balance,
        WatchOptions::new("idle").idle_timeout(Duration::from_secs(4)),
    );
    let mut victim = None;
    for _ in 0..2000 {
        if let (Some(m), true) = (watch.member(), watch.state().creations > 0) {
            victim = Some(m.index());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let victim = victim.expect("the watch is created and served");
    // (Its first opening may have been moved: the paused clock runs ahead while a connection
    // is set up off the runtime.)
    let reopens = watch.state().reopens;
    for i in 0..2000 {
        fakes.put(format!("other/{i}"), "x");
    }
    // Real etcd moves a synced watcher past each write as it is made; the fake member does
    // when its stream task runs: let it, before the compaction.
    tokio::time::sleep(Duration::from_millis(50)).await;
    fakes.compact(fakes.revision()).expect("compact");
    // A quiet spell of a few stream timeouts: the engine pokes, the member answers.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let state = watch.state();
    assert_eq!(state.reopens, reopens, "a quiet watch stays: {state:?}");
    assert_eq!(
        state.member.as_ref().map(|m| m.index()),
        Some(victim),
        "{state:?}"
    );
    fakes.kill(victim);
    fakes.put("idle", "next");
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("the next change within 30 s")
        .expect("the watch goes on")
        .unwrap_or_else(|e| panic!("the watch ended: {e}"));
    assert_eq!(event.kv.expect("kv").value, b"next");
    let state = watch.state();
    assert!(state.reopens > reopens, "{state:?}");
    assert_ne!(
        state.member.as_ref().map(|m| m.index()),
        Some(victim),
        "{state:?}"
    );
}
