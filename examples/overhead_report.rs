//! What the health stack costs on the happy path, side by side with a raw tonic channel.
//!
//! ```sh
//! cargo run --release --example overhead_report -- [--rounds 5] [--requests 2000]
//!     [--latency-requests 300] [--raw-member N] [--single-member] [--out target/bench-reports]
//! ```
//!
//! One local 3-member cluster serves four clients: (a) a raw `tonic` channel to one member
//! with this crate's stubs, (b) stock `etcd_client::Client::connect` over the three members,
//! (c) `etcd_client::Client::from_channel` over the health stack, (d) the health stack with
//! this crate's stubs. They are measured in interleaved rounds (a, b, c, d, then b, c, d, a,
//! ...) so drift on a busy machine hits all four alike. In each round every client runs, for
//! get (linearizable Range) and put: `--latency-requests` requests one at a time (latency),
//! then `--requests` requests with 16 and with 64 in flight (throughput).
//!
//! It prints a table and the ratios of (c) and (d) to (a) against the goals (throughput at 64
//! in flight within 3 % of (a), median latency at 1 in flight within 5 µs of (a)), and writes
//! `overhead.json` to the output directory. (a) talks to a follower unless `--raw-member`
//! says otherwise; with `--single-member`, (b), (c) and (d) talk to that member only too, so
//! the server does the same work for all four and only the clients' own costs differ (with
//! all three members, (c) and (d) also spread reads over the leader, which answers
//! linearizable reads without the follower's round trip to it). Throughput ratios are the median of the per-round
//! ratios. The figures mean something only on an otherwise idle machine.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::args::Args;
use common::clients::{health_config, Client, Kind, Op, Setup};
use common::fixture::{client_runtime, Fixture};
use common::hist::{Latency, Summary};
use common::load::batch;
use common::report::{write_json, Machine, DEFAULT_OUT};
use etcd_health_testing::Cluster;
use serde::Serialize;

const USAGE: &str = "overhead_report [--rounds 5] [--requests 2000] [--latency-requests 300] \
                     [--raw-member N (default: a follower)] [--single-member] [--out target/bench-reports]";
const IN_FLIGHT: [usize; 3] = [1, 16, 64];
const GOAL_THROUGHPUT_RATIO: f64 = 0.97;
const GOAL_LATENCY_DELTA_US: f64 = 5.0;

#[derive(Default)]
struct Samples {
    /// Requests per second, per in-flight level, one entry per round.
    throughput: HashMap<usize, Vec<f64>>,
    latency: Option<Latency>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Serialize)]
struct ClientReport {
    client: &'static str,
    op: &'static str,
    /// Median over rounds, requests per second, by requests in flight.
    throughput: HashMap<usize, f64>,
    /// Latency one request at a time, all rounds together.
    latency_1: Summary,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Serialize)]
struct Ratio {
    client: &'static str,
    op: &'static str,
    /// Median over rounds of throughput(client) / throughput(a) at 64 in flight.
    throughput_64_ratio: f64,
    /// Median latency at 1 in flight minus (a)'s, in microseconds.
    latency_1_p50_delta_us: f64,
    throughput_goal_met: bool,
    latency_goal_met: bool,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    rounds: usize,
    requests: u64,
    latency_requests: u64,
    raw_member: usize,
    leader: usize,
    /// Whether (b), (c), (d) reached (a)'s member only.
    single_member: bool,
    goals: &'static str,
    clients: Vec<ClientReport>,
    ratios: Vec<Ratio>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let single = args.flag("single-member");
    let mut machine = Machine::now();

    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = (0..cluster.size())
        .find(|i| *i != leader)
        .expect("follower");
    let raw_member: usize = args.value("raw-member", follower);
    println!("leader: member {leader}; (a) talks to member {raw_member}");

    // With --single-member, (b), (c) and (d) reach (a)'s member only: the server does the
    // same work for all four and the differences are the clients' own.
    let endpoints = match single {
        true => vec![cluster.endpoint(raw_member)],
        false => cluster.endpoints(),
    };
    let setup = Setup {
        raw_member: if single { 0 } else { raw_member },
        endpoints,
        deadline: None,
        config: health_config(),
    };
    let mut clients: Vec<Client> = Vec::new();
    for kind in Kind::ALL {
        clients.push(setup.build(kind).await?);
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
                let hist = s.latency.get_or_insert_with(Latency::precise);
                let mut results =
                    vec![(1, batch(client, op, latency_requests, 1, Some(hist)).await)];
                let ones = latency_requests;
                for k in &IN_FLIGHT[1..] {
                    results.push((*k, batch(client, op, requests, *k, None).await));
                }
                for (k, b) in results {
                    let n = if k == 1 { ones } else { requests };
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
    machine.finish();

    let mut report = Report {
        machine,
        rounds,
        requests,
        latency_requests,
        raw_member,
        leader,
        single_member: single,
        goals: "(c) and (d): throughput at 64 in flight >= 97 % of (a); median latency at 1 in \
                flight <= (a) + 5 us",
        clients: Vec::new(),
        ratios: Vec::new(),
    };
    println!();
    println!(
        "{:<11} {:<4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "client", "op", "req/s@1", "req/s@16", "req/s@64", "p50@1 µs", "p99@1 µs", "errors"
    );
    for op in Op::ALL {
        for kind in Kind::ALL {
            let s = &samples[&(kind, op)];
            let throughput: HashMap<usize, f64> =
                s.throughput.iter().map(|(k, v)| (*k, median(v))).collect();
            let latency_1 = s.latency.as_ref().map(Latency::summary).unwrap_or_default();
            println!(
                "{:<11} {:<4} {:>9.0} {:>9.0} {:>9.0} {:>9.1} {:>9.1} {:>6}",
                kind.label(),
                op.label(),
                throughput[&1],
                throughput[&16],
                throughput[&64],
                latency_1.p50_us,
                latency_1.p99_us,
                s.errors
            );
            if let Some(e) = &s.first_error {
                println!("    first error: {e}");
            }
            report.clients.push(ClientReport {
                client: kind.label(),
                op: op.label(),
                throughput,
                latency_1,
                errors: s.errors,
                first_error: s.first_error.clone(),
            });
        }
    }

    println!();
    println!("against (a), goals: req/s@64 ratio >= {GOAL_THROUGHPUT_RATIO}, Δp50@1 <= {GOAL_LATENCY_DELTA_US} µs");
    println!(
        "{:<11} {:<4} {:>12} {:>5} {:>12} {:>5}",
        "client", "op", "req/s@64 ×a", "goal", "Δp50@1 µs", "goal"
    );
    for op in Op::ALL {
        let a = &samples[&(Kind::Raw, op)];
        let a_p50 = a.latency.as_ref().map_or(f64::NAN, |h| h.quantile_us(0.5));
        for kind in [Kind::Stock, Kind::EcStack, Kind::Stack, Kind::StackPlain] {
            let s = &samples[&(kind, op)];
            let per_round: Vec<f64> = s.throughput[&64]
                .iter()
                .zip(&a.throughput[&64])
                .map(|(x, y)| x / y)
                .collect();
            let ratio = median(&per_round);
            let delta = s.latency.as_ref().map_or(f64::NAN, |h| h.quantile_us(0.5)) - a_p50;
            let (t_ok, l_ok) = (
                ratio >= GOAL_THROUGHPUT_RATIO,
                delta <= GOAL_LATENCY_DELTA_US,
            );
            let mark = |ok: bool| if ok { "ok" } else { "MISS" };
            println!(
                "{:<11} {:<4} {:>12.3} {:>5} {:>+12.1} {:>5}",
                kind.label(),
                op.label(),
                ratio,
                mark(t_ok),
                delta,
                mark(l_ok)
            );
            report.ratios.push(Ratio {
                client: kind.label(),
                op: op.label(),
                throughput_64_ratio: ratio,
                latency_1_p50_delta_us: delta,
                throughput_goal_met: t_ok,
                latency_goal_met: l_ok,
            });
        }
    }
    println!("(b) is shown for reference; the goals concern (c) and (d).");
    let load = (
        report.machine.loadavg_start.clone().unwrap_or_default(),
        report.machine.loadavg_end.clone().unwrap_or_default(),
    );
    println!(
        "load average at start {} / end {}: figures from a busy machine are noise",
        load.0, load.1
    );
    let path = write_json(&out, "overhead.json", &report)?;
    println!("report: {}", path.display());
    Ok(())
}
