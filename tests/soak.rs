//! Chaos soak with a linearizability check.
//!
//! Why: the fault tests each inject one fault and check one property. This one runs a mixed
//! load (get, put, compare-and-set, delete on five keys) through both ways of using the crate
//! — etcd-client's `Client` over the drop-in `HealthChannel`, and our own stubs over
//! `HealthLayer` — plus a `ResumingWatch` and a `KeepAlive`'d lease, while a seeded random
//! schedule kills, pauses, isolates and crash-restarts members one at a time. Retries inside
//! the stack are where a client library can quietly break etcd's guarantees (a write sent
//! twice, a read served stale), so afterwards it checks:
//!
//! 1. every acknowledged write is in etcd's history and no write is in it twice (every value
//!    written is unique);
//! 2. the resuming watch delivered exactly etcd's history (compared with an independent watch
//!    from the same start revision, opened after the chaos on a healthy cluster);
//! 3. the clients' history is linearizable for a register with compare-and-set per key, writes
//!    that failed or timed out counting as "applied at some point after invocation, or never"
//!    (each key's check time is printed; it grows linearly with the soak's length);
//! 4. the leased keys outlived the chaos (one kept alive by our `KeepAlive`, one by
//!    etcd-client's own keeper over the drop-in, whose stream must never end), and neither
//!    keeper went 5 s without a renewal (see [`LEASE_TTL`] for why that is checked apart);
//! 5. the process did not grow: the runtime's alive tasks after the load are within a small
//!    margin of those after the warm-up (a task leaked per request or per fault would not
//!    be), and the resident size is reported (and bounded very loosely).
//!
//! 60 s of chaos by default; `SOAK_SECONDS` for more, `SOAK_SEED` to replay a schedule (the
//! seed fixes the faults and each client's choice of operations, not the timing). The seed is
//! printed at the start and in every assertion message.

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use etcd_health::config::{Config, ProbeType};
use etcd_health::proto::etcdserverpb::{
    compare, kv_client::KvClient, lease_client::LeaseClient, request_op, DeleteRangeRequest,
    LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use etcd_health::proto::mvccpb::{event::EventType, Event};
use etcd_health::{
    Balance, HealthChannel, KeepAlive, KeepAliveOptions, ResumingWatch, TonicConnector,
    WatchOptions,
};
use etcd_health_testing::Cluster;
use linearizability::{check, Input, Op, Output, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PREFIX: &str = "soak/";
const KEYS: usize = 5;
/// Written once the chaos is over; both watches read up to it.
const SENTINEL: &str = "soak/~end";
const LEASED_KEY: &str = "soak-lease/alive";
/// The key leased through etcd-client's own keep-alive over the drop-in.
const DROPIN_LEASED_KEY: &str = "soak-lease/dropin";
/// The leases' TTL. Faults last up to 4 s and may pause the leader. etcd 3.4.23 (the fixture's)
/// lets a leader that was paused revoke, the moment it resumes and before it hears of its
/// successor, every lease its own clock saw run out meanwhile, although the new leader renewed
/// them all along (etcd#15247; fixed upstream by etcd#16822): no keeper can prevent that, and
/// tests/keepalive.rs shows it. A lease renewed at least every [`RENEWAL_GAP_BOUND`] has more
/// than `LEASE_TTL - RENEWAL_GAP_BOUND` = 5 s left at any leader that is paused, more than the
/// longest pause; so a lost lease here is a keeper's fault, not etcd's.
const LEASE_TTL: i64 = 10;
/// Both keepers renew as often as for the 5 s TTL the soak used before (a third of it).
const RENEW_EVERY: Duration = Duration::from_millis(5_000 / 3);
/// The longest either keeper may go without a renewal answered: the 5 s TTL the soak used
/// before, which a slower keeper used to lose its lease by. Checked directly, since a 5 s
/// lease is now lost to etcd#15247 as well.
const RENEWAL_GAP_BOUND: Duration = Duration::from_secs(5);
const DROPIN_CLIENTS: usize = 3;
const TOWER_CLIENTS: usize = 3;
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the cluster may go without a leader after a fault is undone.
const QUORUM_BOUND: Duration = Duration::from_secs(10);
/// Configurations the checker may explore in one segment of a key's history (between two
/// quiescent points) before giving up. The checker's cost is a sum over segments, so this
/// does not depend on the soak's length.
const CHECK_BUDGET: u64 = 5_000_000;

fn key(k: usize) -> String {
    format!("{PREFIX}k{k}")
}

fn soak_config() -> Config {
    let mut c = fast_config();
    c.checks.active.probe_type = ProbeType::Status;
    c.checks.active.healthy.interval = Duration::from_millis(500);
    c.checks.passive.unhealthy.timeouts = 1;
    c.retry.read_attempt_timeout = Duration::from_millis(300);
    c
}

// ---------------------------------------------------------------------------------------------
// Clients and their history

/// One recorded operation.
#[derive(Clone, Debug)]
struct Record {
    client: usize,
    key: usize,
    /// Microseconds since the start of the soak.
    call: u64,
    /// Completion time and answer; `None` if it failed (outcome unknown).
    done: Option<(u64, Output<String>)>,
    input: Input<String>,
}

/// The two ways of using the crate, behind one interface.
enum Kv {
    Dropin(Box<etcd_client::KvClient>),
    Tower(KvClient<Balance<TonicConnector>>),
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(OP_TIMEOUT);
    req
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Kv {
    async fn run(&mut self, key: &str, input: &Input<String>) -> Result<Output<String>, String> {
        match self {
            Kv::Dropin(kv) => Self::dropin(kv, key, input)
                .await
                .map_err(|e| e.to_string()),
            Kv::Tower(kv) => Self::tower(kv, key, input)
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
        }
    }

    async fn dropin(
        kv: &mut etcd_client::KvClient,
        key: &str,
        input: &Input<String>,
    ) -> Result<Output<String>, etcd_client::Error> {
        Ok(match input {
            Input::Get => {
                let resp = kv.get(key, None).await?;
                Output::Get(resp.kvs().first().map(|kv| text(kv.value())))
            }
            Input::Put(v) => {
                kv.put(key, v.as_str(), None).await?;
                Output::Put
            }
            Input::Cas { expect, new } => {
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, expect.as_str())])
                    .and_then([TxnOp::put(key, new.as_str(), None)]);
                Output::Cas(kv.txn(txn).await?.succeeded())
            }
            Input::Delete => Output::Delete(kv.delete(key, None).await?.deleted() > 0),
        })
    }

    async fn tower(
        kv: &mut KvClient<Balance<TonicConnector>>,
        key: &str,
        input: &Input<String>,
    ) -> Result<Output<String>, tonic::Status> {
        let key = key.as_bytes().to_vec();
        Ok(match input {
            Input::Get => {
                let resp = kv.range(request(RangeRequest {
                    key,
                    ..Default::default()
                }));
                let resp = resp.await?.into_inner();
                Output::Get(resp.kvs.first().map(|kv| text(&kv.value)))
            }
            Input::Put(v) => {
                kv.put(request(PutRequest {
                    key,
                    value: v.as_bytes().to_vec(),
                    ..Default::default()
                }))
                .await?;
                Output::Put
            }
            Input::Cas { expect, new } => {
                let txn = TxnRequest {
                    compare: vec![etcd_health::proto::etcdserverpb::Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        key: key.clone(),
                        range_end: Vec::new(),
                        target_union: Some(compare::TargetUnion::Value(expect.as_bytes().to_vec())),
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key,
                            value: new.as_bytes().to_vec(),
                            ..Default::default()
                        })),
                    }],
                    failure: Vec::new(),
                };
                Output::Cas(kv.txn(request(txn)).await?.into_inner().succeeded)
            }
            Input::Delete => {
                let resp = kv.delete_range(request(DeleteRangeRequest {
                    key,
                    ..Default::default()
                }));
                Output::Delete(resp.await?.into_inner().deleted > 0)
            }
        })
    }
}

/// One client: random operations on random keys until `until`, each recorded.
async fn client(id: usize, mut kv: Kv, seed: u64, origin: Instant, until: Instant) -> Vec<Record> {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(id as u64 + 1)));
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    let mut history = Vec::new();
    let mut seq = 0u64;
    let micros = |t: Instant| t.duration_since(origin).as_micros() as u64;
    while Instant::now() < until {
        let k = rng.random_range(0..KEYS);
        seq += 1;
        let fresh = format!("c{id}-{seq}");
        let input = match rng.random_range(0..100) {
            0..45 => Input::Get,
            45..75 => Input::Put(fresh),
            75..95 => match &last_seen[k] {
                // Compare with what this client saw last, so that most CAS succeed unless
                // someone else wrote meanwhile.
                Some(v) => Input::Cas {
                    expect: v.clone(),
                    new: fresh,
                },
                None => Input::Get,
            },
            _ => Input::Delete,
        };
        let call = Instant::now();
        let result = kv.run(&key(k), &input).await;
        let ret = Instant::now();
        match &result {
            Ok(out) => {
                match (&input, out) {
                    (_, Output::Get(v)) => last_seen[k] = v.clone(),
                    (Input::Put(v), _) | (Input::Cas { new: v, .. }, Output::Cas(true)) => {
                        last_seen[k] = Some(v.clone())
                    }
                    (Input::Delete, _) => last_seen[k] = None,
                    _ => {}
                }
                history.push(Record {
                    client: id,
                    key: k,
                    call: micros(call),
                    done: Some((micros(ret), out.clone())),
                    input,
                });
            }
            Err(_) => {
                // A failed read says nothing; a failed write may or may not have happened.
                if input != Input::Get {
                    history.push(Record {
                        client: id,
                        key: k,
                        call: micros(call),
                        done: None,
                        input,
                    });
                }
                // Do not spin on fast failures.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Keep the load moderate: the cluster and this test share two cores.
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..8))).await;
    }
    history
}

// ---------------------------------------------------------------------------------------------
// Faults

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// SIGKILL, down for the fault's duration, then started again.
    Kill,
    /// SIGSTOP for the duration, then SIGCONT.
    Pause,
    /// Cut from its peers for the duration, then healed.
    Isolate,
    /// SIGKILL and started again at once (a crash-restart).
    Restart,
}

/// A seeded schedule of faults, one member at a time, until `until`. Returns what it did.
async fn chaos(
    cluster: Arc<Cluster>,
    seed: u64,
    until: Instant,
) -> (BTreeMap<Fault, u64>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = BTreeMap::new();
    let mut log = Vec::new();
    let start = Instant::now();
    loop {
        let gap = Duration::from_millis(rng.random_range(500..=2000));
        tokio::time::sleep(gap).await;
        if Instant::now() >= until {
            break;
        }
        let fault =
            [Fault::Kill, Fault::Pause, Fault::Isolate, Fault::Restart][rng.random_range(0..4)];
        let member = rng.random_range(0..cluster.size());
        let lasting = Duration::from_millis(rng.random_range(1000..=4000));
        let leader = cluster.leader().await;
        log.push(format!(
            "{:>6.2}s {fault:?} member {member}{}{}",
            start.elapsed().as_secs_f64(),
            if leader == Some(member) {
                " (leader)"
            } else {
                ""
            },
            match fault {
                Fault::Restart => String::new(),
                _ => format!(" for {lasting:?}"),
            },
        ));
        *counts.entry(fault).or_insert(0) += 1;
        match fault {
            Fault::Kill => {
                cluster.kill(member);
                tokio::time::sleep(lasting).await;
                cluster.restart(member).await.unwrap_or_else(|e| {
                    panic!("seed {seed}: member {member} did not restart: {e}")
                });
            }
            Fault::Pause => {
                cluster.pause(member);
                tokio::time::sleep(lasting).await;
                cluster.resume(member);
            }
            Fault::Isolate => {
                cluster.isolate(member);
                tokio::time::sleep(lasting).await;
                cluster.heal(member);
            }
            Fault::Restart => {
                cluster.restart(member).await.unwrap_or_else(|e| {
                    panic!("seed {seed}: member {member} did not restart: {e}")
                });
            }
        }
        // Never two faults at once, and never without a leader for long.
        cluster
            .wait_for_leader(QUORUM_BOUND)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: no leader after {fault:?} of {member}: {e}"));
    }
    (counts, log)
}

// ---------------------------------------------------------------------------------------------
// Watches

/// What a watch saw: (revision, key, put value or `None` for a delete).
type Seen = (i64, String, Option<String>);

fn seen(event: &Event) -> Seen {
    let kv = event.kv.clone().unwrap_or_default();
    let value = (event.r#type == EventType::Put as i32).then(|| text(&kv.value));
    (kv.mod_revision, text(&kv.key), value)
}

/// Collects the resuming watch's events up to the sentinel.
fn collect_resuming(
    mut watch: ResumingWatch,
    seed: u64,
) -> tokio::task::JoinHandle<(Vec<Seen>, ResumingWatch)> {
    tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = watch.next().await {
            let event =
                event.unwrap_or_else(|e| panic!("seed {seed}: the resuming watch ended: {e}"));
            let s = seen(&event);
            let end = s.1 == SENTINEL;
            events.push(s);
            if end {
                break;
            }
        }
        (events, watch)
    })
}

/// etcd's history of the prefix from `start`, read by a plain etcd-client watch on one member.
async fn reference_history(endpoint: &str, start: i64, seed: u64) -> Vec<Seen> {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: connect for the reference watch: {e}"));
    // Every key, not only the prefix: the gap check below needs every revision, and a change
    // outside the prefix (the leased key expiring, say) must show up as itself.
    let options = etcd_client::WatchOptions::new()
        .with_from_key()
        .with_start_revision(start);
    let mut stream = client
        .watch("\0", Some(options))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: reference watch: {e}"));
    let mut events = Vec::new();
    loop {
        let resp = stream
            .message()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: reference watch: {e}"))
            .unwrap_or_else(|| panic!("seed {seed}: reference watch ended"));
        assert!(
            !resp.canceled(),
            "seed {seed}: reference watch canceled: {}",
            resp.cancel_reason()
        );
        for e in resp.events() {
            let kv = e
                .kv()
                .unwrap_or_else(|| panic!("seed {seed}: event without kv"));
            let value = (e.event_type() == etcd_client::EventType::Put).then(|| text(kv.value()));
            events.push((kv.mod_revision(), text(kv.key()), value));
            if kv.key() == SENTINEL.as_bytes() {
                return events;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The process's own health

/// How long transient tasks (a detached hedge runs at most `hang.after` plus slack; a probe
/// round, a re-made connection) get to finish before tasks are counted.
const SETTLE: Duration = Duration::from_secs(2);

/// Tasks the runtime may hold at the end beyond those at the start: a few per member (its
/// connections re-made after a restart, a probe still running) and per client, the watch and
/// the keep-alive. A task leaked per request (tens of thousands a minute) or per fault (one
/// every 1 to 6 s) goes past it.
fn task_margin(members: usize) -> usize {
    8 * (members + DROPIN_CLIENTS + TOWER_CLIENTS + 2)
}

/// The process's resident size and the runtime's alive tasks.
#[derive(Clone, Copy, Debug)]
struct Vitals {
    /// Bytes (VmRSS), if /proc says.
    rss: Option<u64>,
    tasks: usize,
    /// Heap bytes allocated and not freed, counted by the allocator.
    heap: i64,
}

/// Every allocation counted: resident size includes the test's own records and the
/// allocator's free lists, so only live heap bytes, taken with the records dropped, can show
/// what the library keeps.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

fn live_heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// What the library may keep after the load beyond what it held after the warm-up: channels
/// to restarted members are new (their buffers and windows), the event bus's ring buffer
/// fills. A per-request leak over the soak's hundreds of thousands of requests is far beyond.
const HEAP_GROWTH_BOUND: i64 = 16 << 20;

impl Vitals {
    fn now() -> Self {
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kib| kib * 1024);
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        Vitals {
            rss,
            tasks,
            heap: live_heap(),
        }
    }
}

/// Samples every `every` until `until` (during the load: the client tasks are counted too).
async fn sample_vitals(until: Instant, every: Duration) -> Vec<Vitals> {
    let mut samples = Vec::new();
    while Instant::now() + every <= until {
        tokio::time::sleep(every).await;
        samples.push(Vitals::now());
    }
    samples
}

/// The task count sees tasks: 50 parked tasks raise it by about 50 (else the growth check
/// could not fail).
async fn tasks_are_counted(seed: u64) {
    let before = Vitals::now().tasks;
    let (tx, rx) = tokio::sync::watch::channel(());
    let parked: Vec<_> = (0..50)
        .map(|_| {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let _ = rx.changed().await;
            })
        })
        .collect();
    let during = Vitals::now().tasks;
    drop(tx);
    for task in parked {
        let _ = task.await;
    }
    assert!(
        during >= before + 40,
        "seed {seed}: 50 parked tasks moved the alive task count only from {before} to {during}"
    );
}

/// Heap bytes the test itself holds in its records (the history and both watches' events).
fn recorded_bytes(history: &[Record], everything: &[Seen], resumed: &[Seen]) -> u64 {
    let input = |i: &Input<String>| match i {
        Input::Put(v) => v.capacity(),
        Input::Cas { expect, new } => expect.capacity() + new.capacity(),
        _ => 0,
    };
    let output = |d: &Option<(u64, Output<String>)>| match d {
        Some((_, Output::Get(Some(v)))) => v.capacity(),
        _ => 0,
    };
    let records: usize = history
        .iter()
        .map(|r| std::mem::size_of::<Record>() + input(&r.input) + output(&r.done))
        .sum();
    let seen = |events: &[Seen]| -> usize {
        events
            .iter()
            .map(|e| {
                std::mem::size_of::<Seen>()
                    + e.1.capacity()
                    + e.2.as_ref().map_or(0, String::capacity)
            })
            .sum()
    };
    (records + seen(everything) + seen(resumed)) as u64
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    })
}

// ---------------------------------------------------------------------------------------------
// The soak

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn soak_seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// etcd's own words that it was starved ("took too long": a heartbeat sent late, an apply that
/// overran), per member: how many, and the last one. Both leases lost at once while members
/// say this points at a cluster that could not renew, not at a keeper that stopped asking.
fn etcd_starved(cluster: &Cluster) -> Vec<(usize, String)> {
    (0..cluster.size())
        .map(|i| {
            let log = cluster.log_tail(i, usize::MAX);
            let hits: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("took too long"))
                .collect();
            let last = hits.last().map(|l| l.chars().take(240).collect());
            (hits.len(), last.unwrap_or_default())
        })
        .collect()
}

/// What etcd-client's own keep-alive loop over the drop-in saw.
#[derive(Debug, Default)]
struct DropinKeeper {
    renewals: u64,
    /// Answers with TTL 0: etcd said the lease is gone.
    gone: u64,
    /// The keep-alive stream ended or failed (it must not: the drop-in resumes it).
    ended: Vec<String>,
    /// The longest wait from a keep-alive sent to its answer.
    longest_wait: Duration,
    /// The longest time between two renewals answered (from the first one on).
    longest_gap: Duration,
}

/// The loop etcd-client's docs show a user: send a keep-alive, read its answer, sleep a
/// third of the TTL. A stream that ends is recorded and opened again, as a user would.
async fn keep_dropin_lease(
    client: etcd_client::Client,
    lease: i64,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> DropinKeeper {
    let mut figures = DropinKeeper::default();
    let mut lc = client.lease_client();
    let mut last_renewal: Option<Instant> = None;
    let run = async {
        loop {
            let (mut keeper, mut stream) = match lc.keep_alive(lease).await {
                Ok(k) => k,
                Err(e) => {
                    figures.ended.push(format!("open: {e}"));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            loop {
                let sent = Instant::now();
                if let Err(e) = keeper.keep_alive().await {
                    figures.ended.push(format!("send: {e}"));
                    break;
                }
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {
                        figures.renewals += 1;
                        if let Some(last) = last_renewal.replace(Instant::now()) {
                            figures.longest_gap = figures.longest_gap.max(last.elapsed());
                        }
                    }
                    Ok(Some(_)) => figures.gone += 1,
                    Ok(None) => {
                        figures.ended.push("stream ended".into());
                        break;
                    }
                    Err(e) => {
                        figures.ended.push(format!("answer: {e}"));
                        break;
                    }
                }
                figures.longest_wait = figures.longest_wait.max(sent.elapsed());
                tokio::time::sleep(RENEW_EVERY).await;
            }
        }
    };
    tokio::select! {
        _ = stop => {}
        () = run => {}
    }
    figures
}

/// The longest time the tower `KeepAlive` went without a renewal answered, sampled every
/// 20 ms until `stop` (from its first renewal on).
async fn longest_renewal_gap(
    keep: Arc<KeepAlive>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Duration {
    let mut last: Option<(u64, Instant)> = None;
    let mut longest = Duration::ZERO;
    loop {
        let renewals = keep.state().renewals;
        let now = Instant::now();
        match last {
            Some((n, at)) if n == renewals => longest = longest.max(now - at),
            _ if renewals > 0 => last = Some((renewals, now)),
            _ => {}
        }
        tokio::select! {
            _ = &mut stop => return longest,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Retries a setup or tear-down step on a healthy cluster (not part of the checked history).
async fn settle<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    seed: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let mut last = String::new();
    for _ in 0..20 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("seed {seed}: {what} kept failing: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_is_linearizable_and_loses_nothing() {
    let seed = soak_seed();
    let seconds = soak_seconds();
    println!(
        "soak: seed {seed}, {seconds} s of chaos (replay: SOAK_SEED={seed} SOAK_SECONDS={seconds})"
    );
    let cluster = Arc::new(
        Cluster::start(3)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: cluster: {e}")),
    );

    // The tower stack, which also carries the watch and the lease keep-alive.
    let tower = stack(&cluster, soak_config());
    // The drop-in.
    let options = ConnectOptions::new().with_timeout(OP_TIMEOUT);
    // The drop-in clients run with the defaults users run: the promise must hold there.
    let dropin_channel = HealthChannel::new(Config::default());
    let dropin_streams = dropin_channel.stream_stats();
    let dropin = etcd_client::Client::connect_with_balanced_channel(
        cluster.endpoints(),
        Some(options),
        dropin_channel,
    )
    .await
    .unwrap_or_else(|e| panic!("seed {seed}: drop-in client: {e}"));

    // A key leased through etcd-client over the drop-in, kept alive by etcd-client's keeper.
    let dropin_lease = settle("drop-in lease grant", seed, || {
        let mut lc = dropin.lease_client();
        async move { lc.grant(LEASE_TTL, None).await.map(|r| r.id()) }
    })
    .await;
    settle("drop-in leased put", seed, || {
        let mut kv = dropin.kv_client();
        let options = etcd_client::PutOptions::new().with_lease(dropin_lease);
        async move { kv.put(DROPIN_LEASED_KEY, "alive", Some(options)).await }
    })
    .await;
    let (stop_keeper, keeper_stop) = tokio::sync::oneshot::channel();
    let dropin_keeper = tokio::spawn(keep_dropin_lease(dropin.clone(), dropin_lease, keeper_stop));

    // The leased key, kept alive through the chaos.
    let lease = settle("lease grant", seed, || {
        let mut lc = LeaseClient::new(tower.clone());
        async move {
            lc.lease_grant(request(LeaseGrantRequest {
                ttl: LEASE_TTL,
                id: 0,
            }))
            .await
            .map(|r| r.into_inner().id)
        }
    })
    .await;
    let start_revision = settle("leased put", seed, || {
        let mut kv = KvClient::new(tower.clone());
        async move {
            kv.put(request(PutRequest {
                key: LEASED_KEY.into(),
                value: b"alive".to_vec(),
                lease,
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().header.unwrap_or_default().revision + 1)
        }
    })
    .await;
    let keep_alive = Arc::new(KeepAlive::over_balance(
        &tower,
        lease,
        KeepAliveOptions::default().interval(RENEW_EVERY),
    ));
    let (stop_gaps, gaps_stop) = tokio::sync::oneshot::channel();
    let renewal_gaps = tokio::spawn(longest_renewal_gap(keep_alive.clone(), gaps_stop));
    let watch = ResumingWatch::over_balance(
        &tower,
        WatchOptions::new(PREFIX)
            .with_prefix()
            .with_start_revision(start_revision)
            .idle_timeout(Duration::from_secs(2)),
    );
    let watched = collect_resuming(watch, seed);

    // Warm-up: every client kind has connections to every member, then the process's size
    // and task count as the load begins.
    for k in 0..KEYS {
        settle("warm-up get", seed, || {
            let mut kv = dropin.kv_client();
            async move { kv.get(key(k), None).await }
        })
        .await;
        settle("warm-up get", seed, || {
            let mut kv = KvClient::new(tower.clone());
            async move {
                kv.range(request(RangeRequest {
                    key: key(k).into_bytes(),
                    ..Default::default()
                }))
                .await
            }
        })
        .await;
    }
    tokio::time::sleep(SETTLE).await;
    let vitals_start = Vitals::now();
    tasks_are_counted(seed).await;

    // Chaos and load.
    let origin = Instant::now();
    let until = origin + Duration::from_secs(seconds);
    let faults = tokio::spawn(chaos(cluster.clone(), seed, until));
    let sampler = tokio::spawn(sample_vitals(
        until,
        Duration::from_secs(seconds.div_ceil(6)),
    ));
    let mut clients = Vec::new();
    for id in 0..DROPIN_CLIENTS {
        let kv = Kv::Dropin(Box::new(dropin.kv_client()));
        clients.push(tokio::spawn(client(id, kv, seed, origin, until)));
    }
    for id in DROPIN_CLIENTS..DROPIN_CLIENTS + TOWER_CLIENTS {
        let kv = Kv::Tower(KvClient::new(tower.clone()));
        clients.push(tokio::spawn(client(id, kv, seed, origin, until)));
    }
    let mut history: Vec<Record> = Vec::new();
    for c in clients {
        history.extend(
            c.await
                .unwrap_or_else(|e| panic!("seed {seed}: client: {e}")),
        );
    }
    let (fault_counts, fault_log) = faults
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: chaos: {e}"));
    let vitals_during = sampler
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: sampler: {e}"));
    let chaos_took = origin.elapsed();
    for line in &fault_log {
        println!("  {line}");
    }

    // The end marker, once the cluster is whole again.
    cluster
        .wait_for_leader(QUORUM_BOUND)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: no leader after the chaos: {e}"));
    let kv = dropin.kv_client();
    settle("sentinel put", seed, || {
        let mut kv = kv.clone();
        async move { kv.put(SENTINEL, "end", None).await }
    })
    .await;

    // 2. The resuming watch against an independent watch of etcd's history.
    let everything = reference_history(&cluster.endpoint(0), start_revision, seed).await;
    let reference: Vec<Seen> = everything
        .iter()
        .filter(|e| e.1.starts_with(PREFIX))
        .cloned()
        .collect();
    let (resumed, watch) = tokio::time::timeout(Duration::from_secs(30), watched)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the resuming watch did not reach the end marker"))
        .unwrap_or_else(|e| panic!("seed {seed}: watch collector: {e}"));

    // The process's size and task count after the load, in the same state as at the start:
    // the cluster whole, no client running, the watch and the keep-alive still open (the
    // watch's collector task has ended); what the test recorded is allowed for.
    tokio::time::sleep(SETTLE).await;
    let vitals_end = Vitals::now();
    let recorded = recorded_bytes(&history, &everything, &resumed);
    let watch_state = watch.state();
    let first_difference = reference
        .iter()
        .zip(&resumed)
        .position(|(a, b)| a != b)
        .or_else(|| {
            (reference.len() != resumed.len()).then_some(reference.len().min(resumed.len()))
        });
    assert_eq!(
        first_difference,
        None,
        "seed {seed}: the resuming watch ({} events) differs from etcd's history ({} events) at \
         index {first_difference:?}: watch {:?}, history {:?}",
        resumed.len(),
        reference.len(),
        first_difference.and_then(|i| resumed.get(i)),
        first_difference.and_then(|i| reference.get(i)),
    );
    // Each write here is a one-key txn: one revision, one event. So the reference itself has
    // every revision from the start to the end marker, once, in order.
    let gap = everything
        .iter()
        .enumerate()
        .find(|(i, e)| e.0 != start_revision + *i as i64);
    let outside: Vec<&Seen> = everything
        .iter()
        .filter(|e| !e.1.starts_with(PREFIX))
        .collect();
    assert_eq!(
        gap, None,
        "seed {seed}: etcd's history from revision {start_revision} has a gap or a repeat \
         (changes outside {PREFIX}: {outside:?})"
    );
    let starved = etcd_starved(&cluster);
    assert!(
        outside.is_empty(),
        "seed {seed}: keys outside {PREFIX} changed during the soak: {outside:?}; etcd's \
         'took too long' warnings per member (count, last): {starved:?}"
    );

    // 1. Acknowledged writes are in the history, once; nothing is in it twice.
    let mut occurrences: HashMap<&str, (usize, &str)> = HashMap::new();
    for (_, k, v) in &reference {
        if let Some(v) = v {
            occurrences.entry(v.as_str()).or_insert((0, k.as_str())).0 += 1;
        }
    }
    let duplicates: Vec<&str> = occurrences
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(v, _)| *v)
        .collect();
    let mut lost = Vec::new();
    let mut misplaced = Vec::new();
    let mut acked_writes = 0;
    let mut unknown_writes = 0;
    let mut issued = std::collections::HashSet::new();
    for r in &history {
        let written = match (&r.input, &r.done) {
            (Input::Put(v), _) | (Input::Cas { new: v, .. }, _) => Some(v),
            _ => None,
        };
        let Some(v) = written else { continue };
        issued.insert(v.as_str());
        let found = occurrences.get(v.as_str());
        if let Some((_, k)) = found {
            if *k != key(r.key) {
                misplaced.push(v.clone());
            }
        }
        let count = found.map_or(0, |(n, _)| *n);
        match &r.done {
            None => unknown_writes += 1,
            Some((_, Output::Put | Output::Cas(true))) => {
                acked_writes += 1;
                if count == 0 {
                    lost.push(r.clone());
                }
            }
            Some((_, Output::Cas(false))) => {
                assert_eq!(count, 0, "seed {seed}: a failed CAS was applied: {r:?}");
            }
            Some(_) => {}
        }
    }
    let phantoms: Vec<&str> = occurrences
        .keys()
        .filter(|v| !issued.contains(**v) && **v != "end")
        .copied()
        .collect();

    // 3. Linearizability, key by key.
    let mut per_key: Vec<Vec<&Record>> = vec![Vec::new(); KEYS];
    for r in &history {
        per_key[r.key].push(r);
    }
    let budget = CHECK_BUDGET;
    let mut checked = Vec::new();
    let mut undecided = Vec::new();
    for (k, records) in per_key.iter().enumerate() {
        let ops: Vec<Op<String>> = records
            .iter()
            .map(|r| Op {
                call: r.call,
                done: r.done.clone(),
                input: r.input.clone(),
            })
            .collect();
        let began = Instant::now();
        let report = check(&ops, None, budget);
        let took = began.elapsed();
        if let Verdict::NotLinearizable { stuck, placed } = report.verdict {
            let at = records[stuck].call;
            let around: Vec<String> = records
                .iter()
                .filter(|r| r.call + 3_000_000 > at && r.call < at + 3_000_000)
                .map(|r| format!("{r:?}"))
                .collect();
            panic!(
                "seed {seed}: history of {} is not linearizable: after {placed} operations, none \
                 explains {:?}; operations within 3 s:\n{}",
                key(k),
                records[stuck],
                around.join("\n")
            );
        }
        let unknown = ops.iter().filter(|o| o.done.is_none()).count();
        if report.verdict != Verdict::Linearizable {
            // Neither proven nor refuted: reported after the safety checks below.
            undecided.push(key(k));
        }
        checked.push((ops.len(), unknown, report, took));
    }

    // 4. The leased key outlived the chaos.
    let leased = settle("leased get", seed, || {
        let mut kv = kv.clone();
        async move { kv.get(LEASED_KEY, None).await }
    })
    .await;
    let lease_state = keep_alive.state();
    let dropin_leased = settle("drop-in leased get", seed, || {
        let mut kv = kv.clone();
        async move { kv.get(DROPIN_LEASED_KEY, None).await }
    })
    .await;
    let _ = stop_keeper.send(());
    let _ = stop_gaps.send(());
    let tower_gap = renewal_gaps
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: renewal gaps: {e}"));
    let dropin_keeper = dropin_keeper
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: drop-in keeper: {e}"));

    // Figures.
    let mut by_kind: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in &history {
        let kind = match r.input {
            Input::Get => "get",
            Input::Put(_) => "put",
            Input::Cas { .. } => "cas",
            Input::Delete => "delete",
        };
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        if r.done.is_none() {
            e.1 += 1;
        }
    }
    let per_client: Vec<usize> = (0..DROPIN_CLIENTS + TOWER_CLIENTS)
        .map(|c| history.iter().filter(|r| r.client == c).count())
        .collect();
    println!("soak figures (seed {seed}):");
    println!(
        "  chaos: {:.1} s; faults {fault_counts:?}",
        chaos_took.as_secs_f64()
    );
    println!(
        "  operations recorded: {} (kind: (count, unknown outcome)) {by_kind:?}",
        history.len()
    );
    println!("  per client (0..{DROPIN_CLIENTS} drop-in, then tower): {per_client:?}");
    println!("  acknowledged writes checked: {acked_writes}; unknown writes: {unknown_writes}");
    println!(
        "  duplicates: {}; lost: {}; phantoms: {}",
        duplicates.len(),
        lost.len(),
        phantoms.len()
    );
    println!(
        "  watch: {} events, exact (revisions {start_revision}..={}); {} reopens, {} \
         repeated events dropped on resume",
        resumed.len(),
        reference.last().map_or(0, |e| e.0),
        watch_state.reopens,
        watch_state.duplicates_dropped
    );
    for (k, (n, unknown, report, took)) in checked.iter().enumerate() {
        let verdict = match undecided.contains(&key(k)) {
            true => "NOT DECIDED",
            false => "linearizable",
        };
        println!(
            "  {}: {n} operations ({unknown} unknown) {verdict}, checked in {took:?}: {} \
             configurations over {} segments (longest {} operations, costliest {} \
             configurations, at most {} possible (value, unknown writes applied) at a cut)",
            key(k),
            report.explored,
            report.segments,
            report.longest_segment,
            report.costliest_segment,
            report.widest_cut,
        );
    }
    println!(
        "  process: resident {} after the warm-up, {} after the load (the test's records: {}); \
         alive tasks {} -> {} (bound {})",
        mib(vitals_start.rss),
        mib(vitals_end.rss),
        mib(Some(recorded)),
        vitals_start.tasks,
        vitals_end.tasks,
        vitals_start.tasks + task_margin(cluster.size()),
    );
    println!(
        "  process during the load: resident {}; alive tasks {}",
        vitals_during
            .iter()
            .map(|v| mib(v.rss))
            .collect::<Vec<_>>()
            .join(", "),
        vitals_during
            .iter()
            .map(|v| v.tasks.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "  lease: {} renewals (longest gap {tower_gap:?}), {} streams lost, {} hedged, presumed expired {} times, ended {:?}; retries: tower {}",
        lease_state.renewals,
        lease_state.reopens,
        lease_state.hedges,
        lease_state.expiries,
        lease_state.ended,
        tower.checker().retries()
    );

    println!(
        "  etcd-client's keeper over the drop-in: {} renewals, {} answers TTL 0, longest wait \
         {:?} (longest gap {:?}), stream ended {} times {:?}",
        dropin_keeper.renewals,
        dropin_keeper.gone,
        dropin_keeper.longest_wait,
        dropin_keeper.longest_gap,
        dropin_keeper.ended.len(),
        dropin_keeper.ended,
    );
    let streams = dropin_streams.counts();
    println!(
        "  the drop-in's keep-alive streams: {} hedges, {} keep-alives sent again, {} duplicate \
         answers swallowed, {} moves to another member, {} to the leader",
        streams.keep_alive_hedges,
        streams.keep_alives_resent,
        streams.duplicate_keep_alive_answers,
        streams.keep_alive_resumptions,
        streams.keep_alive_moves_to_leader,
    );

    println!(
        "  etcd's 'took too long' warnings per member: {:?}",
        starved.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    assert!(
        duplicates.is_empty(),
        "seed {seed}: values applied twice: {duplicates:?}"
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged writes missing from etcd's history: {lost:?}"
    );
    assert!(
        phantoms.is_empty(),
        "seed {seed}: values nobody wrote: {phantoms:?}"
    );
    assert!(
        misplaced.is_empty(),
        "seed {seed}: values under the wrong key: {misplaced:?}"
    );
    assert!(
        !leased.kvs().is_empty() && lease_state.ended.is_none(),
        "seed {seed}: the leased key is gone ({lease_state:?})"
    );
    assert!(
        !dropin_leased.kvs().is_empty() && dropin_keeper.gone == 0,
        "seed {seed}: the key leased through etcd-client over the drop-in is gone \
         ({dropin_keeper:?})"
    );
    assert!(
        tower_gap < RENEWAL_GAP_BOUND && dropin_keeper.longest_gap < RENEWAL_GAP_BOUND,
        "seed {seed}: a keeper went {RENEWAL_GAP_BOUND:?} or more without a renewal (a 5 s lease \
         would have lapsed): KeepAlive {tower_gap:?}, etcd-client's keeper over the drop-in {:?}",
        dropin_keeper.longest_gap
    );
    assert!(
        dropin_keeper.ended.is_empty(),
        "seed {seed}: etcd-client's keep-alive stream over the drop-in ended: {:?}",
        dropin_keeper.ended
    );
    assert!(
        undecided.is_empty(),
        "seed {seed}: linearizability of {undecided:?} not decided within {budget} configurations \
         per segment"
    );
    let task_bound = vitals_start.tasks + task_margin(cluster.size());
    assert!(
        vitals_end.tasks <= task_bound,
        "seed {seed}: alive tasks grew from {} after the warm-up to {} after the load (bound \
         {task_bound})",
        vitals_start.tasks,
        vitals_end.tasks
    );
    if let (Some(start), Some(end)) = (vitals_start.rss, vitals_end.rss) {
        // Very generous: a leak per request (hundreds of thousands) still shows; allocator
        // noise and the test's own records do not.
        let bound = 4 * start + (64 << 20) + 2 * recorded;
        assert!(
            end < bound,
            "seed {seed}: resident size grew from {} to {} (bound {}, of which the test's \
             records {})",
            mib(Some(start)),
            mib(Some(end)),
            mib(Some(bound)),
            mib(Some(recorded))
        );
    }
    assert!(
        acked_writes > 100,
        "seed {seed}: the load made progress ({acked_writes} acknowledged writes)"
    );
    assert!(
        per_client.iter().all(|&n| n > 10),
        "seed {seed}: every client made progress: {per_client:?}"
    );

    // What the library keeps: the test's records dropped, the clients, the watch and the
    // keep-alive still there, live heap against the same after the warm-up.
    drop((
        occurrences,
        issued,
        per_key,
        outside,
        lost,
        misplaced,
        duplicates,
        phantoms,
    ));
    drop((checked, undecided, by_kind, per_client, vitals_during));
    drop((history, everything, reference, resumed, fault_log));
    tokio::time::sleep(SETTLE).await;
    let heap_end = live_heap();
    let growth = heap_end - vitals_start.heap;
    println!(
        "  live heap with the test's records dropped: {} after the warm-up, {} after the load \
         ({:+.1} MiB; bound {:+.1} MiB)",
        mib(Some(vitals_start.heap.max(0) as u64)),
        mib(Some(heap_end.max(0) as u64)),
        growth as f64 / (1 << 20) as f64,
        HEAP_GROWTH_BOUND as f64 / (1 << 20) as f64,
    );
    assert!(
        growth < HEAP_GROWTH_BOUND,
        "seed {seed}: the library's live heap grew by {growth} bytes over the load"
    );
    drop((dropin, tower, watch, keep_alive));
}
