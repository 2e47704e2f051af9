//! What the health stack costs on the happy path, side by side with a raw tonic channel and
//! with stock etcd-client.
//!
//! ```sh
//! cargo run --release --example overhead_report -- [--members 1|3|both] [--rounds 5]
//!     [--requests 2000] [--latency-requests 300] [--pairs 40] [--pair-requests 2000]
//!     [--out target/bench-reports]
//! ```
//!
//! One local 3-member cluster serves five clients: (a) a raw `tonic` channel to one follower
//! with this crate's stubs (the floor: no balancing, no checks); (b) stock
//! `etcd_client::Client::connect`; (c) the drop-in, `etcd_client::Client::
//! connect_with_balanced_channel(.., HealthChannel)`, as users build it; (d) the tower stack
//! with this crate's stubs; (e) as (d) with hedging, hang detection, leader routing of writes
//! and retry rounds off, to show what they cost; with 3 members also (f), the drop-in with
//! `leader.route_writes = false`, to show what sending writes to the leader gains. In each round every client runs, for get
//! (linearizable Range) and put: `--latency-requests` requests one at a time, then `--requests`
//! with 16 and with 64 in flight; clients take turns in a rotating order (a, b, c, d, e, then
//! b, c, d, e, a, ...) so drift on a busy machine hits all alike. Throughput is the median
//! over rounds; ratios are medians of per-round ratios.
//!
//! Two modes (`--members both`, the default, runs one after the other):
//!
//! - **1 member**: (b) to (e) are given (a)'s member only, and (c) to (e) do not discover the
//!   others (`discovery.member_list = false`): the server does the same work for all five, and
//!   only the clients' own costs differ. Goals: (c) and (d) ≥ 0.97 of (a) at 64 in flight;
//!   the median latency one at a time within noise of (a)'s (its own spread between rounds).
//! - **3 members**: (b) to (e) get every member, as an application would configure them; (a)
//!   stays on one follower as the floor. Goals: (c) ≥ 1.00 of (b) for get and ≥ 1.05 for put
//!   at 64 in flight, with a p99 no worse than (b)'s.
//!
//! The throughput goals are then decided by **paired turns** (`common::paired`): `--pairs`
//! pairs of short turns (`--pair-requests` each, 64 in flight) of the client and its base back
//! to back, alternating which goes first, and the median of the per-pair ratios with its 95 %
//! interval. The rounds' ratios compare batches seconds apart and swing by ±5–10 % on a
//! 2-core machine; the pairs resolve 2–3 %. Each mode first pairs (a) with a second raw client
//! on its own connection (an A/A comparison: it should come out at 1.00, and its interval is
//! the method's own error). A goal is met when the whole interval is at or above it.
//!
//! It prints tables (req/s, p50/p99 at 1 and at 64 in flight, ratios against the goals, the
//! paired verdicts) and writes `overhead.json` to the output directory. The figures mean
//! something only on an otherwise idle machine: the load average at start and end is printed
//! and recorded.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::args::Args;
use common::clients::{health_config, Client, Kind, Op, Setup};
use common::fixture::{client_runtime, Fixture};
use common::hist::{Latency, Summary};
use common::load::batch;
use common::paired::{paired_ratios, PairedRatio, Verdict};
use common::report::{loadavg, write_json, Machine, DEFAULT_OUT};
use common::stats::median;
use etcd_health_testing::Cluster;
use serde::Serialize;

const USAGE: &str = "overhead_report [--members 1|3|both] [--rounds 5] [--requests 2000] \
                     [--latency-requests 300] [--pairs 40] [--pair-requests 2000] \
                     [--raw-member N (default: a follower)] [--single-member (= --members 1)] \
                     [--out target/bench-reports]";
/// The clients, in report order; with 3 members also (f), the drop-in with writes sent to
/// any member (`leader.route_writes = false`), to show what sending them to the leader gains.
const KINDS: [Kind; 5] = [
    Kind::Raw,
    Kind::Stock,
    Kind::DropIn,
    Kind::Stack,
    Kind::StackPlain,
];
const GOAL_RAW_RATIO: f64 = 0.97;
const GOAL_STOCK_GET: f64 = 1.00;
const GOAL_STOCK_PUT: f64 = 1.05;
/// Below this, a median latency difference is within noise whatever the rounds' spread.
const LATENCY_FLOOR_US: f64 = 5.0;

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::DropIn => "c-dropin",
        Kind::DropInAnyMember => "f-dropin-any",
        k => k.label(),
    }
}

#[derive(Default)]
struct Samples {
    /// Requests per second, per in-flight level, one entry per round.
    throughput: HashMap<usize, Vec<f64>>,
    /// Latency one at a time, per round.
    latency_1: Vec<Latency>,
    /// Latency at 64 in flight, all rounds.
    latency_64: Option<Latency>,
    errors: u64,
    first_error: Option<String>,
    /// At 64 in flight, all rounds: what the health stack did (clients that have one).
    spread: Option<Spread>,
}

/// What a health-checked client did with its requests at 64 in flight: how they spread over
/// the members (by URL) and how many extra copies hedging and retries sent. Behaviour, not
/// cost: a balancer that piles reads on one member, or hedges often, shows here.
#[derive(Clone, Debug, Default, Serialize)]
struct Spread {
    requests: u64,
    per_member: std::collections::BTreeMap<String, u64>,
    hedges: u64,
    retries: u64,
}

impl Spread {
    fn now(checker: &etcd_health::HealthChecker) -> Self {
        let per_member = checker
            .snapshot()
            .into_iter()
            .map(|s| (s.member.uri().to_string(), s.requests))
            .collect();
        Self {
            requests: 0,
            per_member,
            hedges: checker.hedges(),
            retries: checker.retries(),
        }
    }

    /// Adds what happened between `before` and `after` (`n` requests sent by the caller).
    fn add(&mut self, before: &Self, after: &Self, n: u64) {
        self.requests += n;
        for (uri, a) in &after.per_member {
            let b = before.per_member.get(uri).copied().unwrap_or(0);
            *self.per_member.entry(uri.clone()).or_default() += a.saturating_sub(b);
        }
        self.hedges += after.hedges.saturating_sub(before.hedges);
        self.retries += after.retries.saturating_sub(before.retries);
    }
}

#[derive(Serialize)]
struct ClientReport {
    client: &'static str,
    op: &'static str,
    /// Median over rounds, requests per second, by requests in flight.
    throughput: HashMap<usize, f64>,
    /// Latency one at a time, all rounds together.
    latency_1: Summary,
    /// Latency at 64 in flight, all rounds together.
    latency_64: Summary,
    errors: u64,
    first_error: Option<String>,
    /// At 64 in flight: where requests went, hedges and retries (health-checked clients).
    spread: Option<Spread>,
}

#[derive(Serialize)]
struct Ratio {
    client: &'static str,
    op: &'static str,
    /// Median over rounds of throughput(client) / throughput(a) at 64 in flight.
    vs_raw_64: f64,
    /// The same against (b), stock etcd-client.
    vs_stock_64: f64,
    /// Median over rounds of (median latency at 1 in flight minus (a)'s), µs.
    p50_1_delta_us: f64,
    /// Half the spread of (a)'s own per-round median latency at 1 in flight, µs: the noise.
    p50_1_noise_us: f64,
    /// p99 at 64 in flight minus (b)'s, µs.
    p99_64_vs_stock_us: f64,
    /// Whether this row's goals are met (`None`: no goal for this client in this mode).
    goal_met: Option<bool>,
}

/// A throughput goal at 64 in flight decided by paired turns (see `common::paired`).
#[derive(Serialize)]
struct PairedGoal {
    client: &'static str,
    base: &'static str,
    op: &'static str,
    /// `None`: a comparison without a goal (the A/A one).
    goal: Option<f64>,
    ratio: PairedRatio,
    verdict: Option<Verdict>,
}

#[derive(Serialize)]
struct ModeReport {
    members: usize,
    raw_member: usize,
    leader: usize,
    loadavg_start: Option<String>,
    loadavg_end: Option<String>,
    goals: &'static str,
    clients: Vec<ClientReport>,
    ratios: Vec<Ratio>,
    /// The throughput goals decided by paired turns.
    paired: Vec<PairedGoal>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    rounds: usize,
    requests: u64,
    latency_requests: u64,
    pairs: usize,
    pair_requests: u64,
    modes: Vec<ModeReport>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env(USAGE);
    println!("starting a local 3-member etcd cluster...");
    let fixture = Fixture::start(3)?;
    let rt = client_runtime();
    let result = rt.block_on(run(&args, &fixture.cluster));
    drop(rt);
    drop(fixture);
    result
}

async fn run(args: &Args, cluster: &Cluster) -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = args.value("rounds", 5);
    let requests: u64 = args.value("requests", 2000);
    let latency_requests: u64 = args.value("latency-requests", 300);
    let pairs: usize = args.value("pairs", 40);
    let pair_requests: u64 = args.value("pair-requests", 2000);
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let members: String = match args.flag("single-member") {
        true => "1".into(),
        false => args.value("members", "both".to_string()),
    };
    let modes: Vec<bool> = match members.as_str() {
        "1" => vec![true],
        "3" => vec![false],
        "both" => vec![true, false],
        other => {
            eprintln!("--members takes 1, 3 or both, not {other:?}");
            std::process::exit(2)
        }
    };
    let mut machine = Machine::now();
    let mut report = Report {
        machine: Machine::now(),
        rounds,
        requests,
        latency_requests,
        pairs,
        pair_requests,
        modes: Vec::new(),
    };
    for single in modes {
        let counts = Counts {
            rounds,
            requests,
            latency_requests,
            pairs,
            pair_requests,
        };
        let mode = run_mode(args, cluster, single, counts).await?;
        report.modes.push(mode);
    }
    machine.finish();
    report.machine = machine;
    let path = write_json(&out, "overhead.json", &report)?;
    println!("report: {}", path.display());
    Ok(())
}

/// How much each mode measures.
#[derive(Clone, Copy)]
struct Counts {
    rounds: usize,
    requests: u64,
    latency_requests: u64,
    pairs: usize,
    pair_requests: u64,
}

async fn run_mode(
    args: &Args,
    cluster: &Cluster,
    single: bool,
    counts: Counts,
) -> Result<ModeReport, Box<dyn std::error::Error>> {
    let Counts {
        rounds,
        requests,
        latency_requests,
        ..
    } = counts;
    let loadavg_start = loadavg();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (0..cluster.size())
        .find(|i| *i != leader)
        .expect("follower");
    let raw_member: usize = args.value("raw-member", follower);
    let members = if single { 1 } else { cluster.size() };
    println!();
    println!(
        "=== {members} member(s): leader is member {leader}; (a) talks to member {raw_member} ==="
    );
    let mut config = health_config();
    let endpoints = if single {
        // One member means one: the stack would otherwise find the other two through
        // `MemberList`, spread reads over them and send writes to the leader.
        config.discovery.member_list = false;
        vec![cluster.endpoint(raw_member)]
    } else {
        cluster.endpoints()
    };
    let setup = Setup {
        raw_member: if single { 0 } else { raw_member },
        endpoints,
        deadline: None,
        config,
    };
    let kinds: Vec<Kind> = match single {
        true => KINDS.to_vec(),
        false => KINDS
            .iter()
            .copied()
            .chain([Kind::DropInAnyMember])
            .collect(),
    };
    let mut clients: Vec<Client> = Vec::new();
    for kind in &kinds {
        clients.push(setup.build(*kind).await?);
    }
    // The key exists; every client connects and warms up.
    clients[0].call(Op::Put).await?;
    for c in &clients {
        for op in Op::ALL {
            batch(c, op, 200, 16, None).await;
        }
    }

    let mut samples: HashMap<(Kind, Op), Samples> = HashMap::new();
    for round in 0..rounds {
        let mut order = clients.clone();
        order.rotate_left(round % clients.len());
        for client in &order {
            for op in Op::ALL {
                let s = samples.entry((client.kind, op)).or_default();
                let mut hist1 = Latency::precise();
                let mut results = vec![(
                    1,
                    batch(client, op, latency_requests, 1, Some(&mut hist1)).await,
                )];
                s.latency_1.push(hist1);
                results.push((16, batch(client, op, requests, 16, None).await));
                let hist64 = s.latency_64.get_or_insert_with(Latency::precise);
                let before = client.checker.as_ref().map(Spread::now);
                results.push((64, batch(client, op, requests, 64, Some(hist64)).await));
                if let (Some(checker), Some(before)) = (&client.checker, before) {
                    let after = Spread::now(checker);
                    s.spread
                        .get_or_insert_with(Spread::default)
                        .add(&before, &after, requests);
                }
                for (k, b) in results {
                    let n = if k == 1 { latency_requests } else { requests };
                    s.throughput
                        .entry(k)
                        .or_default()
                        .push(n as f64 / b.elapsed.as_secs_f64());
                    s.errors += b.errors;
                    if s.first_error.is_none() {
                        s.first_error = b.first_error;
                    }
                }
            }
        }
        println!("round {}/{rounds} done", round + 1);
    }
    let loadavg_end = loadavg();

    let mut mode = ModeReport {
        members,
        raw_member,
        leader,
        loadavg_start,
        loadavg_end,
        goals: if single {
            "(c) and (d): req/s at 64 in flight >= 0.97 of (a); median latency at 1 in flight \
             within noise of (a)"
        } else {
            "(c): req/s at 64 in flight >= 1.00 of (b) for get, >= 1.05 for put; p99 at 64 in \
             flight no worse than (b)"
        },
        clients: Vec::new(),
        ratios: Vec::new(),
        paired: Vec::new(),
    };
    println!();
    println!(
        "{:<10} {:<4} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "client",
        "op",
        "req/s@1",
        "req/s@16",
        "req/s@64",
        "p50@1 µs",
        "p99@1 µs",
        "p50@64",
        "p99@64",
        "errors"
    );
    for op in Op::ALL {
        for kind in kinds.iter().copied() {
            let s = &samples[&(kind, op)];
            let throughput: HashMap<usize, f64> =
                s.throughput.iter().map(|(k, v)| (*k, median(v))).collect();
            let mut all_1 = Latency::precise();
            for h in &s.latency_1 {
                all_1.merge(h);
            }
            let latency_1 = all_1.summary();
            let latency_64 = s
                .latency_64
                .as_ref()
                .map(Latency::summary)
                .unwrap_or_default();
            println!(
                "{:<10} {:<4} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>6}",
                label(kind),
                op.label(),
                throughput[&1],
                throughput[&16],
                throughput[&64],
                latency_1.p50_us,
                latency_1.p99_us,
                latency_64.p50_us,
                latency_64.p99_us,
                s.errors
            );
            if let Some(e) = &s.first_error {
                println!("    first error: {e}");
            }
            mode.clients.push(ClientReport {
                client: label(kind),
                op: op.label(),
                throughput,
                latency_1,
                latency_64,
                errors: s.errors,
                first_error: s.first_error.clone(),
                spread: s.spread.clone(),
            });
        }
    }

    println!();
    println!(
        "at 64 in flight, health-checked clients: share of the copies sent to each member \
         (members 0..{}, leader {leader}), extra copies per 1000 requests",
        cluster.size()
    );
    println!(
        "{:<12} {:<4} {:<24} {:>9} {:>9}",
        "client", "op", "share by member", "hedges", "retries"
    );
    for op in Op::ALL {
        for kind in kinds.iter().copied() {
            let Some(spread) = &samples[&(kind, op)].spread else {
                continue;
            };
            let sent: u64 = spread.per_member.values().sum::<u64>().max(1);
            // In the cluster's member order, so the leader's column is the one named above.
            let shares: Vec<String> = (0..cluster.size())
                .map(|i| {
                    let url = cluster.endpoint(i);
                    let n: u64 = spread
                        .per_member
                        .iter()
                        .filter(|(u, _)| u.trim_end_matches('/') == url.trim_end_matches('/'))
                        .map(|(_, n)| *n)
                        .sum();
                    format!("{:.2}", n as f64 / sent as f64)
                })
                .collect();
            let per_1000 = |n: u64| n as f64 * 1000.0 / spread.requests.max(1) as f64;
            println!(
                "{:<12} {:<4} {:<24} {:>9.1} {:>9.1}",
                label(kind),
                op.label(),
                shares.join(" / "),
                per_1000(spread.hedges),
                per_1000(spread.retries),
            );
        }
    }

    println!();
    println!("goals: {}", mode.goals);
    println!(
        "{:<10} {:<4} {:>9} {:>11} {:>12} {:>9} {:>14} {:>5}",
        "client", "op", "×a @64", "×b @64", "Δp50@1 µs", "noise µs", "p99@64 −b µs", "goal"
    );
    for op in Op::ALL {
        let a = &samples[&(Kind::Raw, op)];
        let b = &samples[&(Kind::Stock, op)];
        let a_p50s: Vec<f64> = a.latency_1.iter().map(|h| h.quantile_us(0.5)).collect();
        let noise = {
            let (lo, hi) = a_p50s
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            ((hi - lo) / 2.0).max(LATENCY_FLOOR_US)
        };
        let b_p99 = b
            .latency_64
            .as_ref()
            .map_or(f64::NAN, |h| h.quantile_us(0.99));
        for kind in kinds.iter().copied().filter(|k| *k != Kind::Raw) {
            let s = &samples[&(kind, op)];
            let per_round = |base: &Samples| {
                let v: Vec<f64> = s.throughput[&64]
                    .iter()
                    .zip(&base.throughput[&64])
                    .map(|(x, y)| x / y)
                    .collect();
                median(&v)
            };
            let vs_raw = per_round(a);
            let vs_stock = per_round(b);
            let deltas: Vec<f64> = s
                .latency_1
                .iter()
                .zip(&a_p50s)
                .map(|(h, a)| h.quantile_us(0.5) - a)
                .collect();
            let delta = median(&deltas);
            let p99 = s
                .latency_64
                .as_ref()
                .map_or(f64::NAN, |h| h.quantile_us(0.99))
                - b_p99;
            let goal_met = match (single, kind) {
                (true, Kind::DropIn | Kind::Stack) => {
                    Some(vs_raw >= GOAL_RAW_RATIO && delta <= noise)
                }
                (false, Kind::DropIn) => {
                    let want = if op == Op::Get {
                        GOAL_STOCK_GET
                    } else {
                        GOAL_STOCK_PUT
                    };
                    Some(vs_stock >= want && p99 <= 0.0)
                }
                _ => None,
            };
            println!(
                "{:<10} {:<4} {:>9.3} {:>11.3} {:>+12.1} {:>9.1} {:>+14.0} {:>5}",
                label(kind),
                op.label(),
                vs_raw,
                vs_stock,
                delta,
                noise,
                p99,
                match goal_met {
                    Some(true) => "ok",
                    Some(false) => "MISS",
                    None => "-",
                }
            );
            mode.ratios.push(Ratio {
                client: label(kind),
                op: op.label(),
                vs_raw_64: vs_raw,
                vs_stock_64: vs_stock,
                p50_1_delta_us: delta,
                p50_1_noise_us: noise,
                p99_64_vs_stock_us: p99,
                goal_met,
            });
        }
    }
    if counts.pairs > 0 {
        // A second raw client on its own connection: (a) against it shows the method's own
        // error (an A/A comparison should come out at 1.00).
        let twin = setup.build(Kind::Raw).await?;
        batch(&twin, Op::Get, 200, 16, None).await;
        mode.paired = run_paired(&clients, &twin, single, counts).await;
        mode.loadavg_end = loadavg();
    }
    println!(
        "load average at start {} / end {}: figures from a busy machine are noise",
        mode.loadavg_start.clone().unwrap_or_default(),
        mode.loadavg_end.clone().unwrap_or_default()
    );
    Ok(mode)
}

/// The throughput goals of this mode, each decided by `counts.pairs` paired turns of the
/// client and its base at 64 in flight: one member, (c) and (d) against (a), goal 0.97; three
/// members, (c) against (b), goals 1.00 (get) and 1.05 (put). First, `twin` (another raw
/// client) against (a), the method's own error (no goal).
async fn run_paired(
    clients: &[Client],
    twin: &Client,
    single: bool,
    counts: Counts,
) -> Vec<PairedGoal> {
    let find = |kind: Kind| clients.iter().find(|c| c.kind == kind).expect("client");
    let mut goals: Vec<(&Client, Kind, Op, Option<f64>)> =
        Op::ALL.map(|op| (twin, Kind::Raw, op, None)).to_vec();
    if single {
        for kind in [Kind::DropIn, Kind::Stack] {
            for op in Op::ALL {
                goals.push((find(kind), Kind::Raw, op, Some(GOAL_RAW_RATIO)));
            }
        }
    } else {
        goals.push((
            find(Kind::DropIn),
            Kind::Stock,
            Op::Get,
            Some(GOAL_STOCK_GET),
        ));
        goals.push((
            find(Kind::DropIn),
            Kind::Stock,
            Op::Put,
            Some(GOAL_STOCK_PUT),
        ));
    }
    println!();
    println!(
        "goals decided by {} paired turns of {} requests at 64 in flight (the two clients back \
         to back, alternating which goes first; median of the per-pair ratios and its 95 % \
         interval; 'undecided': the goal is inside the interval)",
        counts.pairs, counts.pair_requests
    );
    println!(
        "{:<10} {:<8} {:<4} {:>7} {:>7} {:>17} {:>6} {:>9}",
        "client", "base", "op", "goal", "median", "95 % interval", "errors", "verdict"
    );
    let mut out = Vec::new();
    for (client, base, op, goal) in goals {
        let (ratios, errors) = paired_ratios(
            client,
            find(base),
            op,
            counts.pairs,
            counts.pair_requests,
            64,
        )
        .await;
        let ratio = PairedRatio::of(&ratios, errors);
        let verdict = goal.map(|g| ratio.verdict(g));
        let name = match std::ptr::eq(client, twin) {
            true => "a-raw'",
            false => label(client.kind),
        };
        println!(
            "{:<10} {:<8} {:<4} {:>7} {:>7.3} {:>8.3} – {:<6.3} {:>6} {:>9}",
            name,
            label(base),
            op.label(),
            goal.map_or("-".to_string(), |g| format!("{g:.2}")),
            ratio.median,
            ratio.low,
            ratio.high,
            errors,
            verdict.map_or("-", Verdict::label)
        );
        out.push(PairedGoal {
            client: name,
            base: label(base),
            op: op.label(),
            goal,
            ratio,
            verdict,
        });
    }
    out
}
