//! Failover benchmark: the library's promise, scenario by scenario, through `etcd_client`
//! over the drop-in, as users build it:
//!
//! ```text
//! etcd_client::Client::connect_with_balanced_channel(endpoints, None,
//!     HealthChannel::with_checker(checker))   // checker = HealthChecker::with_uris(∅, config)
//! ```
//!
//! ```sh
//! cargo run --release --example failover -- [--scenario NAME[,NAME..]] [--config default|tuned|both]
//!     [--stock] [--fault-seconds 6] [--readers 16] [--writers 2] [--deadline-ms 2000]
//!     [--steady-seconds 3] [--after-seconds 4] [--etcd-timing] [--out target/bench-reports]
//! ```
//!
//! Each scenario runs on a fresh local cluster, once per client setup: `default`
//! (`Config::default()`, no tuning), `tuned` (`examples/common/clients.rs::health_config()`:
//! `status` probe every 1 s, 0.5 s when unhealthy, passive timeouts counted, 300 ms read
//! attempts) and, with `--stock`, stock `etcd_client::Client::connect` for comparison.
//!
//! The load: `--readers` tasks issue linearizable gets and `--writers` tasks puts, one after
//! another. The caller enforces the deadline itself, `tokio::time::timeout(--deadline-ms, ..)`
//! around every request, and the drop-in is given none (no `grpc-timeout` header, no
//! `ConnectOptions::with_timeout`): a read unanswered within the deadline is a failed read; a
//! write unanswered within it is counted as *outcome unknown (caller timeout)*. The stack's
//! own outcome-unknown marking is `etcd_health::outcome_unknown(&status)` on
//! `etcd_client::Error::GRpcStatus(status)`. (Stock etcd-client also gets
//! `ConnectOptions::with_timeout(deadline)`.)
//!
//! Each run: `--steady-seconds` of load, the fault, the repair, `--after-seconds` more.
//! The clusters run with the test clusters' timing (heartbeat 50 ms, election timeout 500 ms,
//! `--pre-vote`); `--etcd-timing` gives them etcd 3.4's own defaults instead (100 ms, 1 s, no
//! pre-vote), as an etcd started without flags has: elections take twice as long, and a
//! healed member knocks the leader over (see `docs/failover-scenarios.md`).
//! The scenarios (F = `--fault-seconds`):
//!
//! | name | members | fault | repair |
//! |---|---|---|---|
//! | `follower-pause` | 3 | SIGSTOP a follower | SIGCONT after F |
//! | `follower-kill` | 3 | SIGKILL a follower | restart after F |
//! | `leader-pause` | 3 | SIGSTOP the leader | SIGCONT after F |
//! | `leader-kill` | 3 | SIGKILL the leader | restart after F |
//! | `leader-isolate` | 3 | cut the leader from its peers (clients still reach it) | heal after F |
//! | `follower-blackhole` | 3 | a follower's client path drops everything (raft intact; client proxies on) | undo after F |
//! | `leader-blackhole` | 3 | the leader's client path drops everything (it stays leader; client proxies on) | undo after F |
//! | `leader-drop` | 3 | a firewall drops the leader's client packets (it stays leader; client proxies on): as `leader-blackhole`, but connections open during the drop resume only at TCP's next retransmission, 12.6 s after the drop began | let through after 8 s |
//! | `leader-lossy` | 3 | the leader's client path loses 30 % of what it carries, each loss delivered at TCP's retransmission time (200 ms, doubling); it stays leader, its peer links fine (client proxies on) | lossless after F |
//! | `follower-flap` | 3 | a follower paused 90 ms of every 100 ms, for F | last SIGCONT |
//! | `rolling-restart` | 3 | each member in turn (leader included): SIGKILL, restart 2 s later, settle 2 s | each restart |
//! | `two-of-five-isolated` | 5 | two followers cut from their peers at once | heal both after F |
//!
//! Reported per scenario and setup: failed reads; failed writes split into outcome unknown
//! (marked by the stack, or the caller's deadline ran out) and other (must be 0 through the
//! drop-in); steady throughput (ok/s from 1 s after the start to the fault); the ok count of
//! each full second of the fault window as a fraction of steady, and its minimum leaving out
//! the first second (follower faults) or two (faults that hit the leader, which cost an
//! election: etcd serves no linearizable request for about one election timeout); the fraction
//! in the second after a member returns (resume, restart answering, heal; the lowest if
//! several); the stack's `retries()` and `hedges()`. Output: a markdown table, the errors seen,
//! `failover.json` and `failover.svg` (each scenario's ok/s over time as a fraction of steady,
//! one line per setup, the fault window shaded) in the output directory. The promise is
//! reported, not asserted (`tests/leader.rs` asserts it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::args::Args;
use common::clients::{health_config, Kind, Op, Setup};
use common::faults::Fault;
use common::fixture::{client_runtime, Fixture};
use common::load::{batch, join_workers, spawn_workers, Counts, Timeline};
use common::report::{write_json, Machine, DEFAULT_OUT};
use etcd_health::config::Config;
use etcd_health_testing::Cluster;
use serde::Serialize;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "failover [--scenario NAME[,NAME..]] [--config default|tuned|both] [--stock] \
                     [--fault-seconds 6] [--readers 16] [--writers 2] [--deadline-ms 2000] \
                     [--steady-seconds 3] [--after-seconds 4] [--etcd-timing] \
                     [--out target/bench-reports]\n\
                     scenarios: follower-pause follower-kill leader-pause leader-kill \
                     leader-isolate follower-blackhole leader-blackhole leader-drop leader-lossy \
                     follower-flap \
                     rolling-restart \
                     two-of-five-isolated";
/// Seconds at the start left out of the steady throughput (connections warming up).
const WARM_UP: f64 = 1.0;
/// Width of the bins drawn in the SVG, in seconds.
const PLOT_BIN: f64 = 0.5;
/// How long to wait for a leader before a fault is chosen.
const LEADER_WAIT: Duration = Duration::from_secs(15);

/// A scenario: one fault pattern, always on a fresh cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    FollowerPause,
    FollowerKill,
    LeaderPause,
    LeaderKill,
    LeaderIsolate,
    FollowerBlackhole,
    LeaderBlackhole,
    LeaderDrop,
    LeaderLossy,
    FollowerFlap,
    RollingRestart,
    TwoOfFiveIsolated,
}

/// Which members a held fault hits.
#[derive(Clone, Copy, Debug)]
enum Victims {
    /// The leader in office when the fault starts.
    Leader,
    /// This many followers of the leader in office.
    Followers(usize),
}

/// How a scenario injects its fault.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// `fault` on the victims, held for the fault time, then its repair.
    Hold(Fault, Victims),
    /// As [`Plan::Hold`], held this long whatever the fault time.
    HoldFor(Fault, Victims, Duration),
    /// A follower paused `on` of every `on + off`, for the fault time.
    Flap { on: Duration, off: Duration },
    /// Each member in turn: killed, restarted `down` later, then `settle` before the next.
    Rolling { down: Duration, settle: Duration },
}

/// What a scenario is: its cluster and its fault plan.
#[derive(Clone, Copy, Debug)]
struct Spec {
    scenario: Scenario,
    name: &'static str,
    members: usize,
    /// Clients go through the fixture's client proxies (needed to black-hole a client path).
    client_proxy: bool,
    plan: Plan,
}

/// Every scenario, in run order.
const SCENARIOS: [Spec; 12] = {
    const fn spec(scenario: Scenario, name: &'static str, plan: Plan) -> Spec {
        Spec {
            scenario,
            name,
            members: 3,
            client_proxy: false,
            plan,
        }
    }
    [
        spec(
            Scenario::FollowerPause,
            "follower-pause",
            Plan::Hold(Fault::Pause, Victims::Followers(1)),
        ),
        spec(
            Scenario::FollowerKill,
            "follower-kill",
            Plan::Hold(Fault::Kill, Victims::Followers(1)),
        ),
        spec(
            Scenario::LeaderPause,
            "leader-pause",
            Plan::Hold(Fault::Pause, Victims::Leader),
        ),
        spec(
            Scenario::LeaderKill,
            "leader-kill",
            Plan::Hold(Fault::Kill, Victims::Leader),
        ),
        spec(
            Scenario::LeaderIsolate,
            "leader-isolate",
            Plan::Hold(Fault::Isolate, Victims::Leader),
        ),
        Spec {
            client_proxy: true,
            ..spec(
                Scenario::FollowerBlackhole,
                "follower-blackhole",
                Plan::Hold(Fault::Blackhole, Victims::Followers(1)),
            )
        },
        Spec {
            client_proxy: true,
            ..spec(
                Scenario::LeaderBlackhole,
                "leader-blackhole",
                Plan::Hold(Fault::Blackhole, Victims::Leader),
            )
        },
        Spec {
            client_proxy: true,
            ..spec(
                Scenario::LeaderDrop,
                "leader-drop",
                // 8 s: TCP retransmits 6.2 s and 12.6 s after the drop began, so a connection
                // held through it stays silent 4.6 s after it ends (after 6 s, only 0.2 s).
                Plan::HoldFor(Fault::Drop, Victims::Leader, Duration::from_secs(8)),
            )
        },
        Spec {
            client_proxy: true,
            ..spec(
                Scenario::LeaderLossy,
                "leader-lossy",
                Plan::Hold(Fault::Lossy, Victims::Leader),
            )
        },
        spec(
            Scenario::FollowerFlap,
            "follower-flap",
            Plan::Flap {
                on: Duration::from_millis(90),
                off: Duration::from_millis(10),
            },
        ),
        spec(
            Scenario::RollingRestart,
            "rolling-restart",
            Plan::Rolling {
                down: Duration::from_secs(2),
                settle: Duration::from_secs(2),
            },
        ),
        Spec {
            members: 5,
            ..spec(
                Scenario::TwoOfFiveIsolated,
                "two-of-five-isolated",
                Plan::Hold(Fault::Isolate, Victims::Followers(2)),
            )
        },
    ]
};

impl Spec {
    /// The scenario named `name`.
    fn find(name: &str) -> Option<Spec> {
        SCENARIOS.into_iter().find(|s| s.name == name)
    }

    /// Whether the fault hits the leader (then etcd itself needs an election).
    fn hits_leader(&self) -> bool {
        matches!(
            self.scenario,
            Scenario::LeaderPause
                | Scenario::LeaderKill
                | Scenario::LeaderIsolate
                | Scenario::RollingRestart
        )
    }

    /// Seconds at the start of the fault window left out of its minimum throughput.
    fn grace(&self) -> usize {
        if self.hits_leader() {
            2
        } else {
            1
        }
    }
}

/// The client a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum ClientSetup {
    /// The drop-in with `Config::default()`.
    Default,
    /// The drop-in with `health_config()`.
    Tuned,
    /// Stock `etcd_client::Client::connect`.
    Stock,
}

impl ClientSetup {
    fn label(self) -> &'static str {
        match self {
            ClientSetup::Default => "default",
            ClientSetup::Tuned => "tuned",
            ClientSetup::Stock => "stock",
        }
    }

    fn kind(self) -> Kind {
        match self {
            ClientSetup::Stock => Kind::Stock,
            _ => Kind::DropIn,
        }
    }

    fn config(self) -> Config {
        match self {
            ClientSetup::Tuned => health_config(),
            _ => Config::default(),
        }
    }
}

/// Command-line options.
#[derive(Clone, Debug, Serialize)]
struct Opts {
    fault_s: f64,
    steady_s: f64,
    after_s: f64,
    readers: usize,
    writers: usize,
    deadline_ms: u64,
    /// etcd's own timing (`--heartbeat-interval 100 --election-timeout 1000`, no pre-vote)
    /// instead of the test clusters' faster 50 / 500 ms with pre-vote.
    etcd_timing: bool,
}

impl Opts {
    fn fault(&self) -> Duration {
        Duration::from_secs_f64(self.fault_s)
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// One fault step as it happened.
#[derive(Clone, Debug, Serialize)]
struct Event {
    /// Seconds since the load started.
    at_s: f64,
    step: String,
    member: usize,
    /// The member led the cluster when the step was taken.
    was_leader: bool,
}

/// What [`inject`] did.
#[derive(Debug, Default)]
struct Injected {
    events: Vec<Event>,
    /// The fault window, seconds since the load started: first break to first repair (for
    /// rolling restarts and flapping: to the last return).
    from_s: f64,
    to_s: f64,
    /// When each member returned: resumed, healed, or restarted and answering.
    returns_s: Vec<f64>,
}

/// One scenario × setup, measured.
#[derive(Debug, Serialize)]
struct Row {
    scenario: &'static str,
    setup: ClientSetup,
    members: usize,
    leader_at_start: usize,
    leader_at_end: Option<usize>,
    steady_ok_per_s: f64,
    totals: Counts,
    fault_from_s: f64,
    fault_to_s: f64,
    /// Ok count of each full second of the fault window over steady.
    fault_seconds: Vec<f64>,
    /// Seconds at the start of the window left out of `min_fault_fraction`.
    grace_s: usize,
    min_fault_fraction: Option<f64>,
    /// Ok count of the second after each return, over steady.
    return_fractions: Vec<f64>,
    retries: Option<u64>,
    hedges: Option<u64>,
    events: Vec<Event>,
    /// Ok/s over steady per `PLOT_BIN`, from the start.
    bins: Vec<f64>,
    /// Counts per second, from the start.
    seconds: Vec<Counts>,
    errors: Vec<(String, u64)>,
    health_at_end: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    command: String,
    opts: Opts,
    deadline: &'static str,
    promise: &'static str,
    rows: Vec<Row>,
}

fn main() -> Result<(), BoxError> {
    let args = Args::from_env(USAGE);
    let opts = Opts {
        fault_s: args.value("fault-seconds", 6.0),
        steady_s: args.value("steady-seconds", 3.0),
        after_s: args.value("after-seconds", 4.0),
        readers: args.value("readers", 16),
        writers: args.value("writers", 2),
        deadline_ms: args.value("deadline-ms", 2000),
        etcd_timing: args.flag("etcd-timing"),
    };
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let specs = match args.value("scenario", String::new()).as_str() {
        "" => SCENARIOS.to_vec(),
        names => names
            .split(',')
            .map(|n| Spec::find(n).ok_or(format!("--scenario: unknown {n:?}\n{USAGE}")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut setups = match args.value("config", "both".to_string()).as_str() {
        "default" => vec![ClientSetup::Default],
        "tuned" => vec![ClientSetup::Tuned],
        "both" => vec![ClientSetup::Default, ClientSetup::Tuned],
        other => return Err(format!("--config: default, tuned or both, not {other:?}").into()),
    };
    if args.flag("stock") {
        setups.push(ClientSetup::Stock);
    }

    let mut machine = Machine::now();
    let mut rows = Vec::new();
    for spec in &specs {
        for &setup in &setups {
            println!(
                "== {} / {}: fresh {}-member cluster",
                spec.name,
                setup.label(),
                spec.members
            );
            let row = run_on_fresh_cluster(spec, setup, &opts)?;
            print_row_summary(&row);
            rows.push(row);
        }
    }
    machine.finish();

    println!();
    print_table(&rows);
    let report = Report {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        opts,
        deadline: "enforced by the caller: tokio::time::timeout around every request; no \
                   grpc-timeout is sent through the drop-in",
        promise: "Config::default(): 0 failed reads; failed writes only outcome unknown",
        rows,
    };
    let json = write_json(&out, "failover.json", &report)?;
    let svg = out.join("failover.svg");
    draw(&svg, &report)?;
    println!();
    println!("report: {}", json.display());
    println!("chart:  {}", svg.display());
    Ok(())
}

/// Starts the scenario's cluster and a client runtime of its own, runs, and tears both down.
fn run_on_fresh_cluster(spec: &Spec, setup: ClientSetup, opts: &Opts) -> Result<Row, BoxError> {
    let mut builder = Cluster::builder()
        .members(spec.members)
        .client_proxy(spec.client_proxy);
    if opts.etcd_timing {
        builder = builder.heartbeat_ms(100).election_ms(1000).pre_vote(false);
    }
    let fixture = Fixture::start_with(builder)?;
    let rt = client_runtime();
    let row = rt.block_on(run(spec, setup, &fixture.cluster, opts));
    drop(rt);
    drop(fixture);
    row
}

/// One run: load, steady phase, fault, repair, after phase; then the analysis.
async fn run(
    spec: &Spec,
    setup: ClientSetup,
    cluster: &Arc<Cluster>,
    opts: &Opts,
) -> Result<Row, BoxError> {
    let leader_at_start = cluster.wait_for_leader(LEADER_WAIT).await?;
    let client = Setup {
        endpoints: cluster.endpoints(),
        raw_member: 0,
        // Only stock etcd-client uses it (`ConnectOptions::with_timeout`).
        deadline: Some(opts.deadline()),
        config: setup.config(),
    }
    .build(setup.kind())
    .await
    .map_err(|e| e.to_string())?;
    client.call(Op::Put).await?;
    batch(&client, Op::Get, 100, 8, None).await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_workers(
        &client,
        opts.readers,
        opts.writers,
        start,
        stop.clone(),
        opts.deadline(),
    );
    tokio::time::sleep(Duration::from_secs_f64(opts.steady_s)).await;
    let injected = inject(spec, cluster, opts, start).await;
    // Whatever happened, the load ends and the workers are joined before an error returns.
    let end = start.elapsed().as_secs_f64() + opts.after_s;
    tokio::time::sleep_until((start + Duration::from_secs_f64(end)).into()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let timeline = join_workers(start, workers).await;
    let injected = injected?;
    let leader_at_end = cluster.leader().await;
    let health_at_end = client
        .checker
        .iter()
        .flat_map(|c| c.snapshot())
        .map(|m| {
            format!(
                "{}: {}, ejected {} times",
                m.member, m.status, m.ejections_total
            )
        })
        .collect();
    Ok(analyse(
        spec,
        setup,
        opts,
        Measured {
            leader_at_start,
            leader_at_end,
            injected,
            timeline,
            end_s: end,
            retries: client.checker.as_ref().map(|c| c.retries()),
            hedges: client.checker.as_ref().map(|c| c.hedges()),
            health_at_end,
        },
    ))
}

/// Seconds since `start`.
fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// The leader now, waiting for one if there is none.
async fn leader(cluster: &Cluster) -> Result<usize, BoxError> {
    Ok(cluster.wait_for_leader(LEADER_WAIT).await?)
}

/// Injects the scenario's fault and repairs it; returns the steps and the fault window.
async fn inject(
    spec: &Spec,
    cluster: &Arc<Cluster>,
    opts: &Opts,
    start: Instant,
) -> Result<Injected, BoxError> {
    match spec.plan {
        Plan::Hold(fault, victims) => hold(cluster, fault, victims, opts.fault(), start).await,
        Plan::HoldFor(fault, victims, time) => hold(cluster, fault, victims, time, start).await,
        Plan::Flap { on, off } => flap(cluster, on, off, opts.fault(), start).await,
        Plan::Rolling { down, settle } => rolling(cluster, down, settle, start).await,
    }
}

/// Applies `fault` to the victims, waits `hold`, applies its repair.
async fn hold(
    cluster: &Arc<Cluster>,
    fault: Fault,
    victims: Victims,
    hold: Duration,
    start: Instant,
) -> Result<Injected, BoxError> {
    let leader = leader(cluster).await?;
    let members: Vec<usize> = match victims {
        Victims::Leader => vec![leader],
        Victims::Followers(n) => (0..cluster.size())
            .filter(|i| *i != leader)
            .take(n)
            .collect(),
    };
    let repair = fault.repair().expect("a held fault has a repair");
    let mut out = Injected {
        from_s: since(start),
        ..Default::default()
    };
    for &m in &members {
        let at_s = since(start);
        fault.apply(cluster, m).await?;
        out.events.push(event(at_s, fault.name(), m, leader));
    }
    tokio::time::sleep(hold).await;
    out.to_s = since(start);
    for &m in &members {
        let at_s = since(start);
        repair.apply(cluster, m).await?;
        out.events.push(event(at_s, repair.name(), m, leader));
    }
    // A restart returns once the member answers; resume and heal at once.
    out.returns_s.push(since(start));
    Ok(out)
}

/// Pauses a follower `on` of every `on + off` for `hold`, on a thread of its own (signals are
/// cheap and the timing should not wait for the client runtime).
async fn flap(
    cluster: &Arc<Cluster>,
    on: Duration,
    off: Duration,
    hold: Duration,
    start: Instant,
) -> Result<Injected, BoxError> {
    let leader = leader(cluster).await?;
    let victim = (0..cluster.size())
        .find(|i| *i != leader)
        .expect("a follower");
    let from_s = since(start);
    let c = cluster.clone();
    let cycles = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + hold;
        let mut cycles = 0u32;
        while Instant::now() < until {
            c.pause(victim);
            std::thread::sleep(on);
            c.resume(victim);
            std::thread::sleep(off);
            cycles += 1;
        }
        cycles
    })
    .await?;
    let to_s = since(start);
    Ok(Injected {
        events: vec![
            event(from_s, "pause-loop", victim, leader),
            event(to_s, &format!("resume ({cycles} cycles)"), victim, leader),
        ],
        from_s,
        to_s,
        returns_s: vec![to_s],
    })
}

/// Kills and restarts each member in turn, leader included.
async fn rolling(
    cluster: &Arc<Cluster>,
    down: Duration,
    settle: Duration,
    start: Instant,
) -> Result<Injected, BoxError> {
    let mut out = Injected {
        from_s: since(start),
        ..Default::default()
    };
    for m in 0..cluster.size() {
        if m > 0 {
            tokio::time::sleep(settle).await;
        }
        let leader = leader(cluster).await?;
        out.events.push(event(since(start), "kill", m, leader));
        cluster.kill(m);
        tokio::time::sleep(down).await;
        out.events.push(event(since(start), "restart", m, leader));
        cluster.restart(m).await?;
        out.returns_s.push(since(start));
    }
    out.to_s = since(start);
    Ok(out)
}

fn event(at_s: f64, step: &str, member: usize, leader: usize) -> Event {
    Event {
        at_s,
        step: step.to_string(),
        member,
        was_leader: member == leader,
    }
}

/// Everything a run measured, before analysis.
struct Measured {
    leader_at_start: usize,
    leader_at_end: Option<usize>,
    injected: Injected,
    timeline: Timeline,
    end_s: f64,
    retries: Option<u64>,
    hedges: Option<u64>,
    health_at_end: Vec<String>,
}

/// Turns a run's timeline into the reported figures.
fn analyse(spec: &Spec, setup: ClientSetup, opts: &Opts, m: Measured) -> Row {
    let t = &m.timeline;
    let inj = &m.injected;
    let steady_from = if opts.steady_s > WARM_UP + 0.5 {
        WARM_UP
    } else {
        0.0
    };
    let steady = t.window(steady_from, inj.from_s).ok() as f64 / (inj.from_s - steady_from);
    let fraction = |from: f64, to: f64| t.window(from, to).ok() as f64 / (to - from) / steady;
    let fault_seconds: Vec<f64> = (0..)
        .map(|k| inj.from_s + k as f64)
        .take_while(|s| s + 1.0 <= inj.to_s + 1e-6)
        .map(|s| fraction(s, s + 1.0))
        .collect();
    let min_fault_fraction = fault_seconds
        .iter()
        .skip(spec.grace())
        .copied()
        .reduce(f64::min);
    let return_fractions = inj
        .returns_s
        .iter()
        .map(|&r| fraction(r, r + 1.0))
        .collect();
    let bins = (0..(m.end_s / PLOT_BIN).ceil() as usize)
        .map(|i| fraction(i as f64 * PLOT_BIN, (i + 1) as f64 * PLOT_BIN))
        .collect();
    let seconds = (0..m.end_s.ceil() as usize)
        .map(|s| t.window(s as f64, s as f64 + 1.0))
        .collect();
    Row {
        scenario: spec.name,
        setup,
        members: spec.members,
        leader_at_start: m.leader_at_start,
        leader_at_end: m.leader_at_end,
        steady_ok_per_s: steady,
        totals: t.window(0.0, m.end_s + 60.0),
        fault_from_s: inj.from_s,
        fault_to_s: inj.to_s,
        fault_seconds,
        grace_s: spec.grace(),
        min_fault_fraction,
        return_fractions,
        retries: m.retries,
        hedges: m.hedges,
        events: m.injected.events,
        bins,
        seconds,
        errors: m.timeline.errors,
        health_at_end: m.health_at_end,
    }
}

/// A fraction as a whole percentage.
fn pct(f: f64) -> String {
    format!("{:.0}", f * 100.0)
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or("–".to_string(), |v| v.to_string())
}

/// The steps, the totals and the errors of one run, printed as soon as it ends.
fn print_row_summary(r: &Row) {
    for e in &r.events {
        println!(
            "  {:>5.1} s  {} member {}{}",
            e.at_s,
            e.step,
            e.member,
            if e.was_leader { " (leader)" } else { "" }
        );
    }
    println!(
        "  reads ok {} failed {}; writes ok {} unknown {} (+{} caller timeouts) other {}; \
         steady {:.0} ok/s; fault seconds (% of steady) [{}]; at return [{}]; retries {} hedges {}",
        r.totals.read_ok,
        r.totals.read_err,
        r.totals.write_ok,
        r.totals.write_unknown,
        r.totals.write_caller_timeout,
        r.totals.write_other(),
        r.steady_ok_per_s,
        r.fault_seconds
            .iter()
            .map(|f| pct(*f))
            .collect::<Vec<_>>()
            .join(" "),
        r.return_fractions
            .iter()
            .map(|f| pct(*f))
            .collect::<Vec<_>>()
            .join(" "),
        opt_u64(r.retries),
        opt_u64(r.hedges),
    );
    for (e, n) in &r.errors {
        println!("  error ×{n}: {e}");
    }
}

/// The markdown table: one row per scenario × setup.
fn print_table(rows: &[Row]) {
    println!(
        "| scenario | config | failed reads | failed writes: unknown (caller timeout) / other \
         | steady ok/s | each fault second, % of steady | min after grace | at return | \
         retries | hedges |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} ({}) / {} | {:.0} | {} | {} (grace {} s) | {} | {} | {} |",
            r.scenario,
            r.setup.label(),
            r.totals.read_err,
            r.totals.write_unknown + r.totals.write_caller_timeout,
            r.totals.write_caller_timeout,
            r.totals.write_other(),
            r.steady_ok_per_s,
            r.fault_seconds
                .iter()
                .map(|f| pct(*f))
                .collect::<Vec<_>>()
                .join(" "),
            r.min_fault_fraction
                .map_or("–".to_string(), |f| pct(f) + " %"),
            r.grace_s,
            r.return_fractions
                .iter()
                .copied()
                .reduce(f64::min)
                .map_or("–".to_string(), |f| pct(f) + " %"),
            opt_u64(r.retries),
            opt_u64(r.hedges),
        );
    }
}

/// One panel per scenario: ok/s over steady against time, one line per setup, the fault
/// window shaded and each step marked.
fn draw(path: &Path, report: &Report) -> Result<(), BoxError> {
    use plotters::prelude::*;

    let mut names: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !names.contains(&r.scenario) {
            names.push(r.scenario);
        }
    }
    let cols = names.len().clamp(1, 3);
    let rows_n = names.len().div_ceil(cols).max(1);
    let root =
        SVGBackend::new(path, (420 * cols as u32, 260 * rows_n as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw(&Text::new(
        format!(
            "failover: ok/s as a fraction of steady; {} readers + {} writers, {} ms deadline, \
             fault {} s (shaded); blue default, green tuned, grey stock",
            report.opts.readers, report.opts.writers, report.opts.deadline_ms, report.opts.fault_s
        ),
        (10, 12),
        ("sans-serif", 15).into_font(),
    ))?;
    let x_max = report
        .rows
        .iter()
        .map(|r| r.bins.len() as f64 * PLOT_BIN)
        .fold(1.0, f64::max);
    for (panel, name) in body.split_evenly((rows_n, cols)).iter().zip(&names) {
        let runs: Vec<&Row> = report.rows.iter().filter(|r| r.scenario == *name).collect();
        let mut chart = ChartBuilder::on(panel)
            .caption(*name, ("sans-serif", 14).into_font())
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(36)
            .build_cartesian_2d(0.0..x_max, 0.0..1.4)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .draw()?;
        if let Some(r) = runs.first() {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(r.fault_from_s, 0.0), (r.fault_to_s, 1.4)],
                RED.mix(0.08).filled(),
            )))?;
        }
        for r in &runs {
            let color = match r.setup {
                ClientSetup::Default => RGBColor(30, 90, 200),
                ClientSetup::Tuned => RGBColor(0, 140, 60),
                ClientSetup::Stock => RGBColor(140, 140, 140),
            };
            chart.draw_series(LineSeries::new(
                r.bins
                    .iter()
                    .enumerate()
                    .map(|(i, f)| ((i as f64 + 0.5) * PLOT_BIN, f.min(1.4))),
                color.stroke_width(2),
            ))?;
            for e in &r.events {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(e.at_s, 0.0), (e.at_s, 1.4)],
                    color.mix(0.3).stroke_width(1),
                )))?;
            }
        }
    }
    root.present()?;
    Ok(())
}
