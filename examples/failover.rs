//! Failover benchmark: the same fault schedule through stock `etcd_client` and through
//! `etcd_client` over the health stack, each on a fresh local 3-member cluster.
//!
//! ```sh
//! cargo run --release --example failover -- [--seconds 40] [--readers 8] [--writers 2]
//!     [--deadline-ms 1000] [--leader-faults] [--only stock|ec-stack] [--out target/bench-reports]
//! ```
//!
//! `--readers` tasks issue linearizable gets and `--writers` tasks puts, one after another,
//! each request with a deadline of `--deadline-ms` (stock: `ConnectOptions::with_timeout`;
//! stack: the `grpc-timeout` header, which is what `tonic::Request::set_timeout` sends). The
//! stack is configured as in `examples/demo.rs`: `status` probe, healthy members probed every
//! 1 s, unhealthy ones every 0.5 s, passive timeouts counted.
//!
//! The schedule, as fractions of `--seconds` (times for 40 s):
//!
//! | at | fault |
//! |---|---|
//! | 5 s | pause (SIGSTOP) member A |
//! | 15 s | resume A |
//! | 20 s | kill (SIGKILL) member B |
//! | 25 s | restart B (it rejoins when it answers `Status`) |
//! | 30 s | isolate member C from its peers (clients still reach it) |
//! | 35 s | heal C |
//!
//! A and C are the first follower and B the second follower of the leader in office at the
//! time of the fault; with `--leader-faults`, each of A, B and C is the leader in office
//! instead (then etcd itself needs an election, about one election timeout, before any member
//! serves linearizable requests).
//!
//! Output: a per-second table of both runs side by side (ok, failed reads, failed writes,
//! p50/p99/max latency of every request that ended in that second, failed ones included),
//! totals, per-fault recovery (how long until a one-second window holds at least 90 % of the
//! steady throughput measured before the first fault), `failover.json` and `failover.svg`
//! (ok/s and errors/s of both runs over time, with fault markers) in the output directory.
//! The goals are reported, not asserted: through the stack, no failed read, and at least 90 %
//! of steady throughput within 1 s of each fault.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::args::Args;
use common::clients::{health_config, Kind, Op, Setup};
use common::faults::Fault;
use common::fixture::{client_runtime, Fixture};
use common::load::{batch, join_workers, spawn_workers, Counts, Timeline};
use common::report::{write_json, Machine, DEFAULT_OUT};
use etcd_health::testing::Cluster;
use serde::Serialize;

const USAGE: &str = "failover [--seconds 40] [--readers 8] [--writers 2] [--deadline-ms 1000] \
                     [--leader-faults] [--only stock|ec-stack] [--out target/bench-reports]";
/// Share of steady throughput that counts as recovered.
const RECOVERED: f64 = 0.9;
/// Width of the bins drawn in the SVG.
const PLOT_BIN: f64 = 0.2;

/// One plotted bin: start (s), ok/s, errors/s.
type Bin = (f64, f64, f64);
/// A plotted line: label, colour, and its value in a bin.
type Line = (&'static str, plotters::style::RGBColor, fn(&Bin) -> f64);

/// The schedule: (fraction of the run, fault, role A=0/B=1/C=2).
const SCHEDULE: [(f64, Fault, usize); 6] = [
    (0.125, Fault::Pause, 0),
    (0.375, Fault::Resume, 0),
    (0.5, Fault::Kill, 1),
    (0.625, Fault::Restart, 1),
    (0.75, Fault::Isolate, 2),
    (0.875, Fault::Heal, 2),
];
const ROLES: [&str; 3] = ["A", "B", "C"];

#[derive(Clone, Debug)]
struct Opts {
    seconds: f64,
    readers: usize,
    writers: usize,
    deadline: Duration,
    leader_faults: bool,
}

#[derive(Clone, Debug, Serialize)]
struct Event {
    at_s: f64,
    fault: Fault,
    role: &'static str,
    member: usize,
    leader_before: Option<usize>,
    /// How long the step itself took (a restart waits until the member answers).
    took_s: f64,
}

#[derive(Debug, Serialize)]
struct Second {
    t: usize,
    #[serde(flatten)]
    counts: Counts,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Debug, Serialize)]
struct Recovery {
    at_s: f64,
    fault: Fault,
    role: &'static str,
    /// Successful requests in the first second after the step, over steady throughput.
    first_second_ratio: f64,
    /// Until a one-second window holds `RECOVERED` of steady throughput (none: not before
    /// the next step or the end).
    recovered_after_s: Option<f64>,
    within_1s: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    client: &'static str,
    leader_at_start: usize,
    steady_ok_per_s: f64,
    totals: Counts,
    seconds: Vec<Second>,
    /// `PLOT_BIN`-wide bins, as rates per second: (start, ok/s, errors/s).
    bins: Vec<Bin>,
    events: Vec<Event>,
    recoveries: Vec<Recovery>,
    goal_no_failed_reads: bool,
    goal_recovery_within_1s: bool,
    sample_errors: Vec<String>,
    /// The stack's view of each member at the end.
    health_at_end: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    seconds: f64,
    readers: usize,
    writers: usize,
    deadline_ms: u128,
    leader_faults: bool,
    goals: &'static str,
    runs: Vec<Run>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env(USAGE);
    let opts = Opts {
        seconds: args.value("seconds", 40.0),
        readers: args.value("readers", 8),
        writers: args.value("writers", 2),
        deadline: Duration::from_millis(args.value("deadline-ms", 1000)),
        leader_faults: args.flag("leader-faults"),
    };
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let kinds: Vec<Kind> = match args.value("only", String::new()).as_str() {
        "" => vec![Kind::Stock, Kind::EcStack],
        s => vec![Kind::parse(s).ok_or(format!("--only: unknown client {s}"))?],
    };
    let mut machine = Machine::now();
    let rt = client_runtime();
    let mut runs = Vec::new();
    for kind in kinds {
        println!("== {}: starting a fresh 3-member cluster", kind.label());
        let fixture = Fixture::start(3)?;
        let run = rt.block_on(run(kind, &fixture.cluster, &opts))?;
        drop(fixture);
        runs.push(run);
    }
    drop(rt);
    machine.finish();

    print_table(&runs);
    let report = Report {
        machine,
        seconds: opts.seconds,
        readers: opts.readers,
        writers: opts.writers,
        deadline_ms: opts.deadline.as_millis(),
        leader_faults: opts.leader_faults,
        goals: "through the stack: 0 failed reads; >= 90 % of steady throughput within 1 s of \
                each fault",
        runs,
    };
    let json = write_json(&out, "failover.json", &report)?;
    let svg = out.join("failover.svg");
    draw(&svg, &report)?;
    println!();
    println!("report: {}", json.display());
    println!("chart:  {}", svg.display());
    Ok(())
}

async fn run(
    kind: Kind,
    cluster: &Cluster,
    opts: &Opts,
) -> Result<Run, Box<dyn std::error::Error>> {
    let leader_at_start = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let setup = Setup {
        endpoints: cluster.endpoints(),
        raw_member: 0,
        deadline: Some(opts.deadline),
        config: health_config(),
    };
    let client = setup.build(kind).await?;
    client.call(Op::Put).await?;
    batch(&client, Op::Get, 100, 8, None).await;

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.seconds);
    let workers = spawn_workers(
        &client,
        opts.readers,
        opts.writers,
        start,
        end,
        opts.deadline + Duration::from_secs(2),
    );
    let mut events = Vec::new();
    let mut targets = [None; 3];
    for (fraction, fault, role) in SCHEDULE {
        tokio::time::sleep_until((start + Duration::from_secs_f64(opts.seconds * fraction)).into())
            .await;
        let leader = match fault.breaks() {
            true => cluster.leader().await,
            false => None,
        };
        let member = match targets[role] {
            Some(m) if !fault.breaks() => m,
            _ => {
                let l = leader.unwrap_or(leader_at_start);
                let followers: Vec<usize> = (0..cluster.size()).filter(|i| *i != l).collect();
                if opts.leader_faults {
                    l
                } else {
                    followers[role % 2]
                }
            }
        };
        targets[role] = Some(member);
        let at = start.elapsed();
        fault.apply(cluster, member).await?;
        let event = Event {
            at_s: at.as_secs_f64(),
            fault,
            role: ROLES[role],
            member,
            leader_before: leader,
            took_s: (start.elapsed() - at).as_secs_f64(),
        };
        println!(
            "  {:>5.1} s  {} {} = member {member}{}",
            event.at_s,
            fault.name(),
            event.role,
            if leader == Some(member) {
                " (leader)"
            } else {
                ""
            }
        );
        events.push(event);
    }
    let timeline = join_workers(start, workers).await;
    let health_at_end = client
        .balance
        .iter()
        .flat_map(|b| b.checker().snapshot())
        .map(|m| {
            format!(
                "{}: {}, ejected {} times, totals (ok, failures, tcp, timeouts) {:?}",
                m.member, m.status, m.ejections_total, m.totals
            )
        })
        .collect();
    Ok(analyse(
        kind,
        leader_at_start,
        opts.seconds,
        timeline,
        events,
        health_at_end,
    ))
}

fn analyse(
    kind: Kind,
    leader_at_start: usize,
    seconds: f64,
    timeline: Timeline,
    events: Vec<Event>,
    health_at_end: Vec<String>,
) -> Run {
    let whole = seconds.ceil() as usize;
    let first_fault = events.first().map_or(seconds, |e| e.at_s);
    // Steady state: after a one-second warm-up, before the first fault (all of it if short).
    let from = if first_fault > 1.5 { 1.0 } else { 0.0 };
    let steady = timeline.window(from, first_fault).ok() as f64 / (first_fault - from).max(0.1);
    let recoveries = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let until = events.get(i + 1).map_or(seconds, |n| n.at_s);
            let enough = |d: f64| {
                timeline.window(e.at_s + d, e.at_s + d + 1.0).ok() as f64 >= RECOVERED * steady
            };
            let recovered_after_s = (0..)
                .map(|step| step as f64 * 0.1)
                .take_while(|d| e.at_s + d + 1.0 <= until + 1e-9)
                .find(|d| enough(*d));
            Recovery {
                at_s: e.at_s,
                fault: e.fault,
                role: e.role,
                first_second_ratio: timeline.window(e.at_s, e.at_s + 1.0).ok() as f64 / steady,
                recovered_after_s,
                within_1s: recovered_after_s.is_some_and(|d| d <= 1.0 + 1e-9),
            }
        })
        .collect::<Vec<_>>();
    let seconds_rows = (0..whole)
        .map(|t| {
            let lat = timeline
                .seconds
                .get(t)
                .map(|h| h.summary())
                .unwrap_or_default();
            Second {
                t,
                counts: timeline.window(t as f64, t as f64 + 1.0),
                p50_us: lat.p50_us,
                p99_us: lat.p99_us,
                max_us: lat.max_us,
            }
        })
        .collect();
    let bins = (0..(seconds / PLOT_BIN).ceil() as usize)
        .map(|i| {
            let t = i as f64 * PLOT_BIN;
            let c = timeline.window(t, t + PLOT_BIN);
            (t, c.ok() as f64 / PLOT_BIN, c.errors() as f64 / PLOT_BIN)
        })
        .collect();
    let totals = timeline.window(0.0, seconds + 10.0);
    Run {
        client: kind.label(),
        leader_at_start,
        steady_ok_per_s: steady,
        goal_no_failed_reads: totals.read_err == 0,
        goal_recovery_within_1s: recoveries.iter().all(|r| r.within_1s),
        totals,
        seconds: seconds_rows,
        bins,
        events,
        recoveries,
        sample_errors: timeline.sample_errors.clone(),
        health_at_end,
    }
}

fn print_table(runs: &[Run]) {
    println!();
    let mut header = format!("{:>4}", "t");
    for r in runs {
        header += &format!(
            " | {:<10} {:>6} {:>5} {:>5} {:>7} {:>7} {:>7}",
            r.client, "ok", "r-err", "w-err", "p50 ms", "p99 ms", "max ms"
        );
    }
    println!("{header} | steps");
    let rows = runs.iter().map(|r| r.seconds.len()).max().unwrap_or(0);
    for t in 0..rows {
        let mut line = format!("{t:>4}");
        let mut steps = Vec::new();
        for r in runs {
            match r.seconds.get(t) {
                Some(s) => {
                    line += &format!(
                        " | {:<10} {:>6} {:>5} {:>5} {:>7.2} {:>7.2} {:>7.1}",
                        "",
                        s.counts.ok(),
                        s.counts.read_err,
                        s.counts.write_err,
                        s.p50_us / 1e3,
                        s.p99_us / 1e3,
                        s.max_us / 1e3
                    )
                }
                None => line += &format!(" | {:<56}", ""),
            }
            for e in r.events.iter().filter(|e| e.at_s as usize == t) {
                let step = format!("{} {}", e.fault.name(), e.role);
                if !steps.contains(&step) {
                    steps.push(step);
                }
            }
        }
        println!("{line} | {}", steps.join(", "));
    }
    for r in runs {
        println!();
        println!(
            "{}: ok {} (reads {}, writes {}), failed reads {}, failed writes {}; steady {:.0} ok/s",
            r.client,
            r.totals.ok(),
            r.totals.read_ok,
            r.totals.write_ok,
            r.totals.read_err,
            r.totals.write_err,
            r.steady_ok_per_s
        );
        for x in &r.recoveries {
            println!(
                "  {:>5.1} s {:<7} {}: first second {:>5.1} % of steady, ≥ 90 % after {}",
                x.at_s,
                x.fault.name(),
                x.role,
                x.first_second_ratio * 100.0,
                x.recovered_after_s
                    .map_or("never (before the next step)".to_string(), |d| format!(
                        "{d:.1} s"
                    ))
            );
        }
        println!(
            "  goals: no failed read: {}; ≥ 90 % within 1 s of every step: {}",
            yes(r.goal_no_failed_reads),
            yes(r.goal_recovery_within_1s)
        );
        for e in r.sample_errors.iter().take(5) {
            println!("  error seen: {e}");
        }
        for h in &r.health_at_end {
            println!("  health: {h}");
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// Both timelines, one panel each on the same scale, with the fault steps marked.
fn draw(path: &Path, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let runs = &report.runs;
    let root = SVGBackend::new(path, (1100, 300 * runs.len() as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw(&Text::new(
        format!(
            "failover: {} readers + {} writers, deadline {} ms, {:.0} s{}",
            report.readers,
            report.writers,
            report.deadline_ms,
            report.seconds,
            if report.leader_faults {
                ", faults on the leader"
            } else {
                ", faults on followers"
            }
        ),
        (10, 12),
        ("sans-serif", 18).into_font(),
    ))?;
    let y_max = runs
        .iter()
        .flat_map(|r| r.bins.iter().map(|b| b.1.max(b.2)))
        .fold(1.0, f64::max)
        * 1.3;
    for (panel, run) in body.split_evenly((runs.len(), 1)).iter().zip(runs) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{}: {} ok, {} failed reads, {} failed writes",
                    run.client,
                    run.totals.ok(),
                    run.totals.read_err,
                    run.totals.write_err
                ),
                ("sans-serif", 15).into_font(),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..report.seconds, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("requests/s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        for e in &run.events {
            let color = if e.fault.breaks() { RED } else { BLUE };
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(e.at_s, 0.0), (e.at_s, y_max)],
                color.mix(0.4).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{} {} (m{})", e.fault.name(), e.role, e.member),
                (e.at_s, y_max * 0.97),
                ("sans-serif", 11).into_font().color(&color),
            )))?;
        }
        let green = RGBColor(0, 140, 60);
        let series: [Line; 2] = [("ok/s", green, |b| b.1), ("errors/s", RED, |b| b.2)];
        for (label, color, value) in series {
            chart
                .draw_series(LineSeries::new(
                    run.bins.iter().map(|b| (b.0 + PLOT_BIN / 2.0, value(b))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
