//! Where the happy path's cost goes, counted per request rather than timed: allocations,
//! bytes allocated, CPU time of the client's threads, read/write system calls and context
//! switches, for each client of `overhead_report`; and the memory the health state holds per
//! member and per request in flight.
//!
//! ```sh
//! cargo run --release --example overhead_profile -- [--members 1|3] [--clients a,b,dropin,d]
//!     [--ops get,put] [--requests 20000] [--in-flight 64] [--rounds 3] [--skip-cluster]
//!     [--isolated-requests 20000] [--isolated-only]
//!     [--paths direct,stack,ec-direct,ec-stack,prometheus] [--out target/bench-reports]
//! ```
//!
//! Clients are named as in `examples/common/clients.rs`: `a` raw tonic, `b` stock
//! etcd-client, `c` etcd-client over the stack by `from_channel`, `d` the tower stack, `e` the
//! stack without hedging, hangs, write routing and retry rounds, `dropin` the drop-in as users
//! build it.
//!
//! Three parts:
//!
//! 1. **Against etcd** (`--members 1`: every client on one member, discovery off, so the server
//!    does the same work for all; `--members 3`: each over all three, raw tonic on a
//!    follower): per request, at `--in-flight` requests in flight, after a warm-up; the median
//!    of `--rounds` interleaved rounds. CPU time is that of the client runtime's threads only
//!    (its connection tasks included; etcd and the fixture's proxies excluded), from
//!    `/proc/self/task/*/schedstat`; system calls are the `syscr`/`syscw` counts of
//!    `/proc/self/task/*/io` (reads and writes of the sockets and the runtime's wake-ups,
//!    not `epoll_wait` or `futex`); switches are voluntary + involuntary context switches.
//!    Unlike throughput these hardly depend on what else a busy machine does.
//! 2. **Isolated**: the same stubs over an in-process fake member that answers at once, one
//!    request at a time on a one-thread runtime, with and without the health stack in
//!    between: the stack's own allocations, nanoseconds and CPU time of the thread per
//!    request, no network, no etcd. `--isolated-only` runs this part alone (no cluster, no
//!    memory part), `--paths` picks its rows: under `valgrind --tool=callgrind`, two runs of
//!    different `--isolated-requests` give instructions per request by difference.
//! 3. **Memory**: live heap bytes of a health state per member (1 member against 201), and
//!    per request in flight (requests held by a fake member that does not answer until
//!    released, through the stack and straight to it).
//!
//! Built with `--features metrics`, part 2 also measures the stack with the `metrics` feature
//! under `metrics-exporter-prometheus`'s recorder (installed after the other rows, which so
//! show the feature on with no recorder: the facade's no-op); built without it, part 2 is the
//! feature off. Run both builds back to back to compare (see `docs/metrics-overhead.md`). Its
//! rows are the `prometheus` key of `--paths` (on by default): leave it out for instruction
//! counts by difference, which its scrapes (their cost varies between runs) would blur.
//!
//! A counting global allocator counts every allocation, which costs a few atomic additions
//! each: throughput figures belong to `overhead_report`, which does not count.

mod common;

use std::alloc::System;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::args::Args;
use common::clients::{health_config, Client, Kind, Op, Setup};
use common::fixture::{client_runtime, Fixture, CLIENT_THREAD};
use common::load::batch;
use common::report::{thread_cpu_ns, write_json, Machine, DEFAULT_OUT};
use common::stats::median;
use etcd_health::observe::Member;
use etcd_health::proto::etcdserverpb::kv_client::KvClient;
use etcd_health::{Balance, HealthChecker};
use etcd_health_testing::instant::{self, one, quiet_config, InstantMember};
use serde::Serialize;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const USAGE: &str = "overhead_profile [--members 1|3] [--clients a,b,dropin,d] [--ops get,put] \
                     [--requests 20000] [--in-flight 64] [--rounds 3] [--skip-cluster] \
                     [--isolated-requests 20000] [--isolated-only] \
                     [--paths direct,stack,ec-direct,ec-stack,prometheus] \
                     [--out target/bench-reports]";

// === counters ===

/// Heap bytes allocated and not yet freed.
fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// What the client runtime's threads and the allocator did, summed.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    allocs: u64,
    bytes: u64,
    cpu_ns: u64,
    syscalls: u64,
    switches: u64,
    /// CPU time of every `etcd` process (the members), and of the fixture's proxy threads.
    server_ns: u64,
}

/// Sum of the first field of `schedstat` (time on CPU, ns) of every thread under `dir`.
fn threads_cpu_ns(dir: &std::path::Path) -> u64 {
    let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
        return 0;
    };
    tasks.flatten().map(|t| thread_cpu_ns(&t.path())).sum()
}

/// CPU time of the etcd members (processes named `etcd`) and of the fixture's threads.
fn server_cpu_ns() -> u64 {
    let mut ns = 0;
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            if comm.trim() == "etcd" {
                ns += threads_cpu_ns(&p.path());
            }
        }
    }
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == "etcd-fixture" {
                ns += thread_cpu_ns(&t.path());
            }
        }
    }
    ns
}

impl Counters {
    fn now() -> Self {
        let a = GLOBAL.stats();
        let mut c = Counters {
            allocs: (a.allocations + a.reallocations) as u64,
            bytes: a.bytes_allocated as u64,
            server_ns: server_cpu_ns(),
            ..Default::default()
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return c;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim() != CLIENT_THREAD {
                continue;
            }
            c.cpu_ns += thread_cpu_ns(&dir);
            let io = std::fs::read_to_string(dir.join("io")).unwrap_or_default();
            c.syscalls += field(&io, "syscr:") + field(&io, "syscw:");
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            c.switches += field(&status, "voluntary_ctxt_switches:")
                + field(&status, "nonvoluntary_ctxt_switches:");
        }
        c
    }

    /// Per request, from `self` (before) to `after`.
    fn per_request(&self, after: &Counters, n: u64) -> PerRequest {
        let n = n.max(1) as f64;
        PerRequest {
            allocs: (after.allocs - self.allocs) as f64 / n,
            bytes: (after.bytes - self.bytes) as f64 / n,
            cpu_us: (after.cpu_ns - self.cpu_ns) as f64 / n / 1e3,
            syscalls: (after.syscalls - self.syscalls) as f64 / n,
            switches: (after.switches - self.switches) as f64 / n,
            server_cpu_us: (after.server_ns - self.server_ns) as f64 / n / 1e3,
        }
    }
}

/// A `name: value` line of a `/proc` file.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Costs of one request.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct PerRequest {
    allocs: f64,
    bytes: f64,
    cpu_us: f64,
    syscalls: f64,
    switches: f64,
    /// CPU time of the etcd members and the fixture's proxies.
    server_cpu_us: f64,
}

fn median_of(rounds: &[PerRequest]) -> PerRequest {
    let m = |f: fn(&PerRequest) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    PerRequest {
        allocs: m(|p| p.allocs),
        bytes: m(|p| p.bytes),
        cpu_us: m(|p| p.cpu_us),
        syscalls: m(|p| p.syscalls),
        switches: m(|p| p.switches),
        server_cpu_us: m(|p| p.server_cpu_us),
    }
}

// === reports ===

#[derive(Serialize)]
struct ClusterRow {
    client: &'static str,
    op: &'static str,
    per_request: PerRequest,
    requests_per_s: f64,
}

#[derive(Serialize)]
struct IsolatedRow {
    path: &'static str,
    op: &'static str,
    allocs: f64,
    bytes: f64,
    ns: f64,
    /// CPU time of the (only) thread per request, from its `schedstat`.
    cpu_ns: f64,
}

#[derive(Serialize, Default)]
struct Memory {
    /// Live heap bytes of a health state, per member (201 members against 1, divided by 200).
    health_state_per_member: f64,
    /// Live heap bytes of a health state with one member (its fixed part included).
    health_state_one_member: i64,
    /// Live heap bytes per unary request in flight straight to the fake member.
    in_flight_direct: f64,
    /// The same through the health stack.
    in_flight_stack: f64,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    members: usize,
    in_flight: usize,
    requests: u64,
    rounds: usize,
    cluster: Vec<ClusterRow>,
    isolated: Vec<IsolatedRow>,
    memory: Memory,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env(USAGE);
    let members: usize = args.value("members", 1);
    let requests: u64 = args.value("requests", 20_000);
    let in_flight: usize = args.value("in-flight", 64);
    let rounds: usize = args.value("rounds", 3);
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let kinds: Vec<Kind> = args
        .value("clients", "a,b,dropin,d".to_string())
        .split(',')
        .map(|k| Kind::parse(k).unwrap_or_else(|| panic!("unknown client {k:?}")))
        .collect();
    let ops: Vec<Op> = args
        .value("ops", "get,put".to_string())
        .split(',')
        .map(|o| match o {
            "get" => Op::Get,
            "put" => Op::Put,
            _ => panic!("unknown op {o:?}"),
        })
        .collect();
    let mut machine = Machine::now();

    let isolated_only = args.flag("isolated-only");
    let paths: Vec<String> = args
        .value(
            "paths",
            "direct,stack,ec-direct,ec-stack,prometheus".to_string(),
        )
        .split(',')
        .map(str::to_string)
        .collect();
    let mut cluster = Vec::new();
    if !args.flag("skip-cluster") && !isolated_only {
        println!("starting a local 3-member etcd cluster...");
        let fixture = Fixture::start(3)?;
        let rt = client_runtime();
        let c = fixture.cluster.clone();
        cluster = rt.block_on(against_etcd(
            &c, members, &kinds, &ops, requests, in_flight, rounds,
        ))?;
        drop(rt);
        drop(fixture);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let isolated = rt.block_on(isolated(args.value("isolated-requests", 20_000), &paths));
    let memory = match isolated_only {
        true => Memory::default(),
        false => rt.block_on(memory()),
    };
    drop(rt);
    machine.finish();

    println!();
    println!("isolated (fake member answering at once, 1 in flight, one thread):");
    println!(
        "{:<24} {:<4} {:>8} {:>9} {:>8} {:>8}",
        "path", "op", "allocs", "bytes", "ns", "cpu ns"
    );
    for r in &isolated {
        println!(
            "{:<24} {:<4} {:>8.1} {:>9.0} {:>8.0} {:>8.0}",
            r.path, r.op, r.allocs, r.bytes, r.ns, r.cpu_ns
        );
    }
    println!();
    println!(
        "memory: health state {:.0} B per member ({} B with one member); a unary request in \
         flight holds {:.0} B straight to the member, {:.0} B through the stack (+{:.0} B)",
        memory.health_state_per_member,
        memory.health_state_one_member,
        memory.in_flight_direct,
        memory.in_flight_stack,
        memory.in_flight_stack - memory.in_flight_direct
    );
    let report = Report {
        machine,
        members,
        in_flight,
        requests,
        rounds,
        cluster,
        isolated,
        memory,
    };
    let path = write_json(&out, "overhead-profile.json", &report)?;
    println!(
        "load average at start {} / end {}",
        report.machine.loadavg_start.clone().unwrap_or_default(),
        report.machine.loadavg_end.clone().unwrap_or_default()
    );
    println!("report: {}", path.display());
    Ok(())
}

// === 1. against etcd ===

async fn against_etcd(
    cluster: &etcd_health_testing::Cluster,
    members: usize,
    kinds: &[Kind],
    ops: &[Op],
    requests: u64,
    in_flight: usize,
    rounds: usize,
) -> Result<Vec<ClusterRow>, Box<dyn std::error::Error>> {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (0..cluster.size())
        .find(|i| *i != leader)
        .expect("follower");
    let single = members == 1;
    let mut config = health_config();
    if single {
        // One member means one: discovery would find the other two.
        config.discovery.member_list = false;
    }
    let setup = Setup {
        raw_member: if single { 0 } else { follower },
        endpoints: if single {
            vec![cluster.endpoint(follower)]
        } else {
            cluster.endpoints()
        },
        deadline: None,
        config,
    };
    println!(
        "leader: member {leader}; {} member(s); raw tonic on member {follower}",
        if single { 1 } else { 3 }
    );
    let mut clients: Vec<Client> = Vec::new();
    for kind in kinds {
        clients.push(setup.build(*kind).await?);
    }
    clients[0].call(Op::Put).await?;
    for c in &clients {
        for op in ops {
            batch(c, *op, 1000, in_flight, None).await;
        }
    }
    let mut samples: HashMap<(Kind, Op), (Vec<PerRequest>, Vec<f64>)> = HashMap::new();
    for round in 0..rounds {
        let mut order = clients.clone();
        order.rotate_left(round % clients.len());
        for client in &order {
            for op in ops {
                let before = Counters::now();
                let b = batch(client, *op, requests, in_flight, None).await;
                let after = Counters::now();
                let s = samples.entry((client.kind, *op)).or_default();
                s.0.push(before.per_request(&after, requests));
                s.1.push(requests as f64 / b.elapsed.as_secs_f64());
                if b.errors > 0 {
                    println!(
                        "{} {}: {} errors, first: {:?}",
                        client.kind.label(),
                        op.label(),
                        b.errors,
                        b.first_error
                    );
                }
            }
        }
        println!("round {}/{rounds} done", round + 1);
    }
    println!();
    println!("per request at {in_flight} in flight (median of {rounds} rounds):");
    println!(
        "{:<11} {:<4} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "client", "op", "allocs", "bytes", "cpu µs", "rd+wr sc", "switches", "etcd µs", "req/s"
    );
    let mut rows = Vec::new();
    for op in ops {
        for kind in kinds {
            let (per, rps) = &samples[&(*kind, *op)];
            let p = median_of(per);
            let rps = median(rps);
            println!(
                "{:<11} {:<4} {:>8.1} {:>9.0} {:>8.1} {:>9.2} {:>9.2} {:>9.1} {:>8.0}",
                kind.label(),
                op.label(),
                p.allocs,
                p.bytes,
                p.cpu_us,
                p.syscalls,
                p.switches,
                p.server_cpu_us,
                rps
            );
            rows.push(ClusterRow {
                client: kind.label(),
                op: op.label(),
                per_request: p,
                requests_per_s: rps,
            });
        }
    }
    Ok(rows)
}

// === 2. isolated ===

/// The health stack over `members` fake members, all of them `fake`.
fn fake_stack(
    fake: &InstantMember,
    members: u16,
) -> Balance<impl etcd_health::extend::MakeMember<Service = InstantMember> + Send + Sync + 'static>
{
    let checker =
        HealthChecker::new(&instant::endpoints(members), quiet_config()).expect("checker");
    let fake = fake.clone();
    Balance::new(checker, move |_: &Member| fake.clone())
}

/// Allocations, bytes allocated, wall ns and the thread's CPU ns per request, over `n`
/// requests after `n / 10` to warm up.
async fn measure<F, Fut>(n: u64, mut f: F) -> (f64, f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        f().await;
    }
    let this_thread = std::path::Path::new("/proc/thread-self");
    let before = GLOBAL.stats();
    let cpu = thread_cpu_ns(this_thread);
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    let cpu_ns = thread_cpu_ns(this_thread).saturating_sub(cpu) as f64 / n as f64;
    let after = GLOBAL.stats();
    let allocs = ((after.allocations + after.reallocations)
        - (before.allocations + before.reallocations)) as f64
        / n as f64;
    let bytes = (after.bytes_allocated - before.bytes_allocated) as f64 / n as f64;
    (allocs, bytes, ns, cpu_ns)
}

async fn isolated(n: u64, paths: &[String]) -> Vec<IsolatedRow> {
    let fake = InstantMember::new();
    let direct = KvClient::new(fake.clone());
    let stack = KvClient::new(fake_stack(&fake, 3));
    let ec_direct = etcd_client::Client::from_channel(
        etcd_client::Channel::Custom(tower::util::BoxCloneSyncService::new(fake.clone())),
        None,
    )
    .await
    .expect("etcd-client")
    .kv_client();
    let ec_stack = etcd_client::Client::from_channel(
        etcd_health::into_etcd_channel(fake_stack(&fake, 3)),
        None,
    )
    .await
    .expect("etcd-client")
    .kv_client();
    let wanted = |key: &str| paths.iter().any(|p| p == key);
    let mut rows = Vec::new();
    let mut row = |path, op: Op, (allocs, bytes, ns, cpu_ns)| {
        rows.push(IsolatedRow {
            path,
            op: op.label(),
            allocs,
            bytes,
            ns,
            cpu_ns,
        })
    };
    for op in Op::ALL {
        if wanted("direct") {
            row(
                "tonic stubs, direct",
                op,
                measure(n, || one(&direct, op.into())).await,
            );
        }
        if wanted("stack") {
            row(
                "tonic stubs, stack",
                op,
                measure(n, || one(&stack, op.into())).await,
            );
        }
        if wanted("ec-direct") {
            let m = measure(n, || etcd_one(&ec_direct, op)).await;
            row("etcd-client, direct", op, m);
        }
        if wanted("ec-stack") {
            let m = measure(n, || etcd_one(&ec_stack, op)).await;
            row("etcd-client, stack", op, m);
        }
    }
    #[cfg(feature = "metrics")]
    if wanted("prometheus") {
        // The stack again, its handles registered with a real recorder this time (scraped
        // every 1000 requests, as a server scraping every few seconds would drain it).
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("recorder");
        let stack = KvClient::new(fake_stack(&fake, 3));
        for op in Op::ALL {
            let mut sent = 0u32;
            let m = measure(n, || {
                sent += 1;
                if sent % 1000 == 0 {
                    handle.run_upkeep();
                    drop(handle.render());
                }
                one(&stack, op.into())
            })
            .await;
            row("stack + prometheus", op, m);
        }
    }
    rows
}

async fn etcd_one(kv: &etcd_client::KvClient, op: Op) {
    let mut kv = kv.clone();
    let r = match op {
        Op::Get => kv.get(common::clients::KEY, None).await.map(|_| ()),
        Op::Put => kv
            .put(common::clients::KEY, common::clients::VALUE, None)
            .await
            .map(|_| ()),
    };
    r.expect("the fake member answers");
}

// === 3. memory ===

async fn memory() -> Memory {
    let mut m = Memory::default();
    // Health state per member: one member against 201.
    let state = |n: usize| {
        let endpoints: Vec<String> = (1..=n)
            .map(|p| format!("http://127.0.0.1:{}", 10_000 + p))
            .collect();
        let before = live_bytes();
        let checker = HealthChecker::new(&endpoints, quiet_config()).expect("checker");
        (checker, before)
    };
    // A second for the probe scheduler to make each member's probe channel.
    let (single, before) = state(1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    m.health_state_one_member = live_bytes() - before;
    drop(single);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (many, before) = state(201);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bytes_many = live_bytes() - before;
    drop(many);
    m.health_state_per_member = (bytes_many - m.health_state_one_member) as f64 / 200.0;

    // Per request in flight: N requests held by the fake member, straight and through the
    // stack (one member, so every request waits on the same service).
    const N: usize = 1000;
    let held = |through_stack: bool| async move {
        let (open, gate) = tokio::sync::watch::channel(false);
        let fake = InstantMember::gated(gate);
        let stack = KvClient::new(fake_stack(&fake, 1));
        let direct = KvClient::new(fake.clone());
        // Warm: one request each way, so lazily built parts are not counted.
        open.send_replace(true);
        one(&stack, instant::Op::Get).await;
        one(&direct, instant::Op::Get).await;
        open.send_replace(false);
        let before = live_bytes();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let (stack, direct) = (stack.clone(), direct.clone());
            tasks.spawn(async move {
                if through_stack {
                    one(&stack, instant::Op::Get).await
                } else {
                    one(&direct, instant::Op::Get).await
                }
            });
        }
        while fake.arrived() < N + 2 {
            tokio::task::yield_now().await;
        }
        // Settled (below the hedging delay, so nothing else starts).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let held = live_bytes() - before;
        open.send_replace(true);
        while tasks.join_next().await.is_some() {}
        held as f64 / N as f64
    };
    m.in_flight_direct = held(false).await;
    m.in_flight_stack = held(true).await;
    m
}
