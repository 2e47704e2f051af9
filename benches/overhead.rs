//! Happy-path cost of the health stack: unary get (linearizable Range) and put, at 1, 16 and
//! 64 requests in flight, through four clients of one local 3-member cluster started once:
//!
//! - `a-raw`: a raw `tonic::transport::Channel` to one follower, this crate's stubs;
//! - `b-stock`: stock `etcd_client::Client::connect` over the three members;
//! - `c-ec-stack`: `etcd_client::Client::from_channel(Channel::Custom(..))` over the stack;
//! - `d-stack`: `HealthLayer::new(checker).layer(TonicConnector::default())`, our stubs.
//!
//! ```sh
//! cargo bench --bench overhead                       # everything, a few minutes
//! cargo bench --bench overhead -- get/               # one group
//! cargo bench --bench overhead -- --measurement-time 10 --warm-up-time 3 --sample-size 30
//! ```
//!
//! One criterion iteration is `k` requests at `k` in flight: `iter_custom` streams
//! `iters * k` requests through `buffer_unordered(k)` and reports the wall time, and the
//! throughput is `Elements(k)`. Defaults are short (1 s warm-up, 2 s measurement, 10
//! samples); criterion's command-line options override them. At the end a table compares
//! (b), (c) and (d) with (a) from this run's own tallies (mean latency at 1 in flight, since
//! criterion keeps its samples to itself). For medians and interleaved rounds that cancel
//! drift on a busy machine, run `cargo run --release --example overhead_report`.

#[path = "../examples/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use common::clients::{health_config, Client, Kind, Op, Setup};
use common::fixture::{client_runtime, Fixture};
use common::load::batch;
use criterion::{BenchmarkId, Criterion, Throughput};

const IN_FLIGHT: [usize; 3] = [1, 16, 64];

/// Requests and wall time per (client, op, in flight), everything criterion ran.
type Tally = BTreeMap<(&'static str, &'static str, usize), (u64, Duration)>;

fn main() {
    let fixture = Fixture::start(3).expect("start the etcd cluster");
    let cluster = fixture.cluster.clone();
    let rt = client_runtime();
    let clients: Vec<Client> = rt.block_on(async {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
        let follower = (0..cluster.size())
            .find(|i| *i != leader)
            .expect("follower");
        let setup = Setup {
            endpoints: cluster.endpoints(),
            raw_member: follower,
            deadline: None,
            config: health_config(),
        };
        let mut clients = Vec::new();
        for kind in Kind::ALL {
            clients.push(setup.build(kind).await.expect("client"));
        }
        clients[0].call(Op::Put).await.expect("first put");
        clients
    });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();
    let tally = RefCell::new(Tally::new());
    for op in Op::ALL {
        let mut group = c.benchmark_group(op.label());
        for k in IN_FLIGHT {
            group.throughput(Throughput::Elements(k as u64));
            for client in &clients {
                let id = BenchmarkId::new(client.kind.label(), k);
                group.bench_with_input(id, &k, |b, &k| {
                    b.iter_custom(|iters| {
                        let n = iters * k as u64;
                        let result = rt.block_on(batch(client, op, n, k, None));
                        if let Some(e) = &result.first_error {
                            eprintln!(
                                "{}: {} of {n} failed: {e}",
                                client.kind.label(),
                                result.errors
                            );
                        }
                        let mut t = tally.borrow_mut();
                        let entry = t.entry((client.kind.label(), op.label(), k)).or_default();
                        entry.0 += n;
                        entry.1 += result.elapsed;
                        result.elapsed
                    })
                });
            }
        }
        group.finish();
    }
    c.final_summary();
    print_ratios(&tally.into_inner());
    drop(rt);
    drop(fixture);
}

/// (b), (c), (d) against (a): throughput at 64 in flight, mean latency at 1 in flight.
fn print_ratios(tally: &Tally) {
    let rate = |kind: Kind, op: Op, k: usize| {
        tally
            .get(&(kind.label(), op.label(), k))
            .map(|(n, t)| *n as f64 / t.as_secs_f64())
    };
    println!();
    println!("against a-raw (this run's tallies, warm-up included; goals: ≥ 0.97, ≤ +5 µs)");
    println!(
        "{:<11} {:<4} {:>12} {:>14}",
        "client", "op", "req/s@64 ×a", "Δmean@1 µs"
    );
    for op in Op::ALL {
        for kind in [Kind::Stock, Kind::EcStack, Kind::Stack, Kind::StackPlain] {
            let ratio = rate(kind, op, 64)
                .zip(rate(Kind::Raw, op, 64))
                .map(|(x, a)| x / a);
            let delta = rate(kind, op, 1)
                .zip(rate(Kind::Raw, op, 1))
                .map(|(x, a)| (1.0 / x - 1.0 / a) * 1e6);
            let show =
                |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:+.prec$}"));
            println!(
                "{:<11} {:<4} {:>12} {:>14}",
                kind.label(),
                op.label(),
                show(ratio, 3).trim_start_matches('+'),
                show(delta, 1)
            );
        }
    }
}
