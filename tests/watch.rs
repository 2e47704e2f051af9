//! The resuming watch under real faults of a real 3-member etcd cluster: the member serving the
//! watch is killed, paused (SIGSTOP) or cut off from the quorum while a writer puts values,
//! and the watch must deliver every value exactly once, in order. A member cut off from the
//! quorum must end the watch's stream by itself, thanks to `hasleader`, for our watch and for
//! etcd-client's over the drop-in. Plus: a compacted start revision is the documented error.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_health::observe::WatchError;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, CompactionRequest, RangeRequest};
use etcd_health::{Balance, ResumingWatch, TonicConnector, WatchOptions};
use etcd_health_testing::Cluster;

const WRITES: usize = 300;
const KEY: &str = "watched";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Pause,
    Isolate,
    /// Isolation, with the watch left to `hasleader` alone: not told of evictions by the
    /// health checker, and an idle timeout longer than the test (an isolated member still
    /// answers progress requests), so only the member ending the stream when it loses its
    /// leader can move the watch.
    IsolateHasLeaderOnly,
}

/// Fault tests share two cores; one at a time keeps them deterministic.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The value of `KEY`, read linearizably.
async fn current(stack: &Balance<TonicConnector>) -> Option<String> {
    let mut kv = KvClient::new(stack.clone());
    let mut req = tonic::Request::new(RangeRequest {
        key: KEY.as_bytes().to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(2));
    let resp = kv.range(req).await.ok()?.into_inner();
    resp.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Puts `0..WRITES` to `KEY`, one at a time. A failed put is retried only if a read shows it
/// did not commit, so every value is written exactly once.
fn start_writer(
    stack: Balance<TonicConnector>,
    written: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..WRITES {
            let value = i.to_string();
            loop {
                if put(&stack, KEY, &value).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                if current(&stack).await.as_deref() == Some(value.as_str()) {
                    break;
                }
            }
            written.store(i + 1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}

/// A watch whose serving member is a follower (so the writer's leader stays up); re-created
/// when the health checker evicts that member if `follow_evictions`.
async fn watch_on_follower(
    cluster: &Cluster,
    stack: &Balance<TonicConnector>,
    options: WatchOptions,
    follow_evictions: bool,
) -> (ResumingWatch, usize) {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    for _ in 0..20 {
        let watch = if follow_evictions {
            ResumingWatch::over_balance(stack, options.clone())
        } else {
            ResumingWatch::new(stack.clone(), options.clone())
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while watch.state().creations == 0 {
            assert!(
                Instant::now() < deadline,
                "watch not created: {:?}",
                watch.state()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let serving = watch.member().expect("Balance names the serving member");
        if serving.index() != leader {
            return (watch, serving.index());
        }
    }
    panic!("the watch always landed on the leader");
}

async fn watch_across(fault: Fault) {
    let _serial = serial().await;
    let started = Instant::now();
    let cluster = Cluster::start(3).await.expect("cluster");
    // The writer's stack counts timeouts, so a paused member costs it one timed-out put, not
    // one per put: the test is about the watch, not about the writer waiting out deadlines.
    let mut writer_config = fast_config();
    writer_config.checks.passive.unhealthy.timeouts = 1;
    let writer_stack = stack(&cluster, writer_config);
    let watch_stack = stack(&cluster, fast_config());
    let has_leader_only = matches!(fault, Fault::IsolateHasLeaderOnly);
    let idle = if has_leader_only {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(1)
    };
    let options = WatchOptions::new(KEY).idle_timeout(idle);
    let (mut watch, victim) =
        watch_on_follower(&cluster, &watch_stack, options, !has_leader_only).await;

    let written = Arc::new(AtomicUsize::new(0));
    let writer = start_writer(writer_stack.clone(), written.clone());
    let fault_task = {
        let written = written.clone();
        async move {
            while written.load(Ordering::Relaxed) < WRITES / 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            match fault {
                Fault::Kill => cluster.kill(victim),
                Fault::Pause => cluster.pause(victim),
                Fault::Isolate | Fault::IsolateHasLeaderOnly => cluster.isolate(victim),
            }
            cluster
        }
    };
    let mut received: Vec<usize> = Vec::new();
    let collect = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while received.last() != Some(&(WRITES - 1)) {
            let event = tokio::time::timeout_at(deadline, watch.next())
                .await
                .expect("every value within 30 s")
                .expect("the watch does not end")
                .expect("no watch error");
            let kv = event.kv.expect("kv");
            received.push(String::from_utf8_lossy(&kv.value).parse().expect("number"));
        }
    };
    let (cluster, ()) = tokio::join!(fault_task, collect);
    writer.await.expect("writer");

    let state = watch.state();
    let expected: Vec<usize> = (0..WRITES).collect();
    let mut sorted = received.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let duplicates = received.len() - sorted.len();
    let gaps = expected
        .iter()
        .filter(|v| sorted.binary_search(v).is_err())
        .count();
    println!(
        "{fault:?}: written {WRITES}, received {}, duplicates {duplicates}, gaps {gaps}, \
         re-creations {}, duplicates dropped by the watch {}, last failure {:?}, now on {:?}, \
         took {:?}",
        received.len(),
        state.reopens,
        state.duplicates_dropped,
        state.last_failure,
        state.member.as_ref().map(|m| m.index()),
        started.elapsed()
    );
    assert_eq!(received, expected, "every value exactly once, in order");
    assert!(state.reopens >= 1, "the fault hit the watch: {state:?}");
    if let Some(m) = &state.member {
        assert_ne!(m.index(), victim, "the watch moved off the victim");
    }
    if has_leader_only {
        assert!(state.member.is_some(), "the watch is served: {state:?}");
        let why = state.last_failure.as_deref().unwrap_or_default();
        assert!(
            why.contains("no leader"),
            "the isolated member ended the stream itself (hasleader): {why:?}"
        );
    }
    drop(watch);
    if let Fault::Pause = fault {
        cluster.resume(victim);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_kill_of_its_member() {
    watch_across(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_pause_of_its_member() {
    watch_across(Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_isolation_of_its_member() {
    watch_across(Fault::Isolate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_member_ends_the_watch_stream_itself_with_hasleader() {
    watch_across(Fault::IsolateHasLeaderOnly).await;
}

/// etcd-client's own watch over the drop-in, on a member then cut off from the quorum: the
/// drop-in sends `hasleader` on the Watch call, so the member ends the stream ("no leader")
/// once it has had no leader for a few election timeouts, instead of leaving the application
/// on a silent stream. With its stream resumption off (as here), the drop-in hands that end
/// to etcd-client; on (the default), it moves the watch to another member instead
/// (`tests/dropin_streams.rs`), which this client, given the victim alone, does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropin_watch_on_isolated_member_ends_with_no_leader() {
    let _serial = serial().await;
    init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let victim = follower(&cluster).await;
    // Only the victim, so that etcd-client's watch is certainly served by it.
    let mut config = etcd_health::config::Config::default();
    config.discovery.member_list = false;
    let mut pinned = etcd_client::Client::connect_with_balanced_channel(
        [cluster.endpoint(victim)],
        None,
        etcd_health::HealthChannel::new(config).resume_streams(false),
    )
    .await
    .expect("client on the victim");
    let mut writer = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("writer");
    let mut stream = pinned.watch(KEY, None).await.expect("watch");
    let created = stream.message().await.expect("created").expect("a message");
    assert!(created.created());
    writer.put(KEY, "before", None).await.expect("put");
    let event = stream.message().await.expect("event").expect("a message");
    assert_eq!(event.events()[0].kv().expect("kv").value(), b"before");

    cluster.isolate(victim);
    let isolated = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    break format!("canceled: {}", resp.cancel_reason())
                }
                Ok(Some(_)) => continue,
                Ok(None) => break "stream ended".to_owned(),
                Err(e) => break e.to_string(),
            }
        }
    })
    .await
    .expect("the isolated member ends the watch within 20 s");
    println!(
        "etcd-client's watch on the isolated member ended after {:?}: {end}",
        isolated.elapsed()
    );
    assert!(end.contains("no leader"), "{end}");
    cluster.heal(victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_revision_is_an_error() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let stack = stack(&cluster, fast_config());
    for i in 0..5 {
        put(&stack, KEY, &i.to_string()).await.expect("put");
    }
    let mut kv = KvClient::new(stack.clone());
    let head = kv
        .range(RangeRequest {
            key: KEY.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner()
        .header
        .expect("header")
        .revision;
    kv.compact(CompactionRequest {
        revision: head,
        physical: true,
    })
    .await
    .expect("compact");

    let requested = head - 3;
    let mut watch = ResumingWatch::over_balance(
        &stack,
        WatchOptions::new(KEY).with_start_revision(requested),
    );
    let item = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an answer within 5 s")
        .expect("an item");
    match item {
        Err(WatchError::Compacted {
            requested: r,
            compacted,
        }) => {
            println!(
                "compacted: requested {r}, compacted {compacted}: {}",
                item_msg(r, compacted)
            );
            assert_eq!(r, requested);
            assert_eq!(compacted, head);
        }
        other => panic!("expected a compaction error, got {other:?}"),
    }
    assert!(watch.next().await.is_none(), "the error is the last item");
    assert_eq!(watch.state().reopens, 0, "a compaction is not retried");
}

fn item_msg(requested: i64, compacted: i64) -> String {
    WatchError::Compacted {
        requested,
        compacted,
    }
    .to_string()
}
