//! The clients' own cost per request, without etcd: every client of `overhead_report` against
//! an in-process HTTP/2 server on loopback that answers every call at once.
//!
//! ```sh
//! cargo run --release --example overhead_loopback -- [--pairs 30] [--pair-requests 5000]
//!     [--path-requests 6000] [--out target/bench-reports]
//! ```
//!
//! Why: against etcd the clients' costs hide behind the member's ~100–200 µs of CPU per
//! request and the machine's noise, yet `overhead_report` shows about 1 % of throughput lost per
//! µs on the caller's path (its answers come in bursts, handled one after another). Here the
//! server costs next to nothing, so two things can be measured that etcd hides:
//!
//! 1. **Client-bound cost**: each client against raw tonic, paired turns (`common::paired`)
//!    of `--pair-requests` gets at 64 in flight; µs per request and the ratio; and the CPU
//!    time per request of the calling thread alone (from its `schedstat`), which is the
//!    figure that moves throughput against etcd (about 1 % per µs) and the steadiest one
//!    here: wall time also counts the server's and the connection tasks' threads.
//! 2. **The stack's path**, one request at a time: a member service wrapped around the tonic
//!    channel stamps when a request reaches it and when the answer's headers come back, so the
//!    time spent before the member call and after the answer is measured apart from the round
//!    trip, through the health stack and without it (the same wrapper on the same channel).
//!
//! The server answers every method with an empty message (a valid default of any response
//! type). The stack's members are probed by TCP connect: the canned `Status` answer would name
//! no leader. Figures are medians; the machine's load is printed.

mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::args::Args;
use common::clients::{health_config, Client, Kind, Op, Setup};
use common::fixture::client_runtime;
use common::load::batch;
use common::paired::{paired_ratios, PairedRatio};
use common::report::{thread_cpu_ns, write_json, Machine, DEFAULT_OUT};
use common::stats::median;
use etcd_health::config::{Config, ProbeType};
use etcd_health::observe::Member;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
use etcd_health::{Balance, HealthChecker};
use etcd_health_testing::instant::ok_response;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

const USAGE: &str = "overhead_loopback [--pairs 30] [--pair-requests 5000] \
                     [--path-requests 6000] [--out target/bench-reports]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env(USAGE);
    let pairs: usize = args.value("pairs", 30);
    let pair_requests: u64 = args.value("pair-requests", 5000);
    let path_requests: usize = args.value("path-requests", 6000);
    let out: PathBuf = args.value("out", PathBuf::from(DEFAULT_OUT));
    let mut machine = Machine::now();

    // The server on a runtime of its own, as a member would be a process of its own.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loopback-server")
        .enable_all()
        .build()?;
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    server_rt.spawn(serve(listener));

    let rt = client_runtime();
    let (client_bound, path) = rt.block_on(async {
        let bound = client_bound(&url, pairs, pair_requests).await?;
        let path = stack_path(&url, path_requests).await?;
        Ok::<_, Box<dyn std::error::Error>>((bound, path))
    })?;
    drop(rt);
    drop(server_rt);
    machine.finish();
    let report = Report {
        machine,
        pairs,
        pair_requests,
        client_bound,
        path,
    };
    println!(
        "load average at start {} / end {}",
        report.machine.loadavg_start.clone().unwrap_or_default(),
        report.machine.loadavg_end.clone().unwrap_or_default()
    );
    let path = write_json(&out, "overhead-loopback.json", &report)?;
    println!("report: {}", path.display());
    Ok(())
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    pairs: usize,
    pair_requests: u64,
    client_bound: Vec<BoundRow>,
    path: Vec<PathRow>,
}

// === server ===

/// Accepts connections and answers every request with an empty gRPC message and status 0.
async fn serve(listener: tokio::net::TcpListener) {
    while let Ok((socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                    Ok::<_, Infallible>(ok_response())
                },
            );
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                .await;
        });
    }
}

/// The health config of the benchmarks, for a member that is no etcd: probed by TCP connect,
/// no membership discovery, no leader polling.
fn loopback_config() -> Config {
    let mut config = health_config();
    config.checks.active.probe_type = ProbeType::Tcp;
    config.discovery.member_list = false;
    config.discovery.dns_interval = Duration::ZERO;
    config.leader.interval = Duration::ZERO;
    config
}

// === client-bound cost ===

#[derive(Serialize)]
struct BoundRow {
    client: &'static str,
    /// Median over pairs of throughput(client) / throughput(raw).
    vs_raw: PairedRatio,
    /// Raw's median µs per request at 64 in flight, and the client's (raw's divided by the
    /// ratio).
    raw_us: f64,
    client_us: f64,
    /// CPU time of the calling thread per request (median of 5 turns of the client alone):
    /// the work done where the 64 requests are issued and their answers handled, which is
    /// what delays the next request; the runtime's other threads excluded.
    caller_cpu_us: f64,
}

/// Median CPU µs of the calling thread per request, over 5 turns of `requests` gets at 64 in
/// flight. Run on the thread that `block_on`s it, which issues and completes every request.
async fn caller_cpu_us(client: &Client, requests: u64) -> f64 {
    let this_thread = std::path::Path::new("/proc/thread-self");
    let mut v = Vec::new();
    for _ in 0..5 {
        let before = thread_cpu_ns(this_thread);
        batch(client, Op::Get, requests, 64, None).await;
        let used = thread_cpu_ns(this_thread).saturating_sub(before);
        v.push(used as f64 / 1e3 / requests as f64);
    }
    median(&v)
}

async fn client_bound(
    url: &str,
    pairs: usize,
    requests: u64,
) -> Result<Vec<BoundRow>, Box<dyn std::error::Error>> {
    let setup = Setup {
        raw_member: 0,
        endpoints: vec![url.to_string()],
        deadline: None,
        config: loopback_config(),
    };
    let raw = setup.build(Kind::Raw).await?;
    let mut clients: Vec<Client> = Vec::new();
    for kind in [
        Kind::Raw,
        Kind::Stock,
        Kind::DropIn,
        Kind::Stack,
        Kind::StackPlain,
    ] {
        clients.push(setup.build(kind).await?);
    }
    for c in clients.iter().chain([&raw]) {
        batch(c, Op::Get, 2000, 16, None).await;
    }
    let raw_us = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let b = batch(&raw, Op::Get, requests, 64, None).await;
            v.push(b.elapsed.as_secs_f64() * 1e6 / requests as f64);
        }
        median(&v)
    };
    let raw_cpu = caller_cpu_us(&raw, requests).await;
    println!("client-bound, gets at 64 in flight against an answer-at-once server ({pairs} paired turns of {requests}; the first row is raw against a second raw client; caller: CPU µs per request of the thread that issues and completes them, median of 5 turns)");
    println!(
        "{:<16} {:>8} {:>17} {:>9} {:>9} {:>9} {:>9}",
        "client", "×raw", "95 % interval", "µs/req", "Δ µs", "caller", "Δ caller"
    );
    let mut rows = Vec::new();
    for c in &clients {
        let (ratios, errors) = paired_ratios(c, &raw, Op::Get, pairs, requests, 64).await;
        let ratio = PairedRatio::of(&ratios, errors);
        let client_us = raw_us / ratio.median;
        let caller = caller_cpu_us(c, requests).await;
        let name = match c.kind {
            Kind::Raw => "a-raw'",
            k => k.label(),
        };
        println!(
            "{:<16} {:>8.3} {:>8.3} – {:<6.3} {:>9.2} {:>+9.2} {:>9.2} {:>+9.2}{}",
            name,
            ratio.median,
            ratio.low,
            ratio.high,
            client_us,
            client_us - raw_us,
            caller,
            caller - raw_cpu,
            if errors > 0 { "  (errors!)" } else { "" }
        );
        rows.push(BoundRow {
            client: name,
            vs_raw: ratio,
            raw_us,
            client_us,
            caller_cpu_us: caller,
        });
    }
    Ok(rows)
}

// === the stack's path ===

/// When the last request reached the member's channel, and when its answer's headers came
/// back (one request at a time, so one slot each is enough).
static REACHED: Mutex<Option<Instant>> = Mutex::new(None);
static ANSWERED: Mutex<Option<Instant>> = Mutex::new(None);

/// A tonic channel that stamps [`REACHED`] and [`ANSWERED`].
#[derive(Clone, Debug)]
struct Stamped(Channel);

impl tower::Service<http::Request<tonic::body::Body>> for Stamped {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        *REACHED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let call = tower::Service::call(&mut self.0, req);
        Box::pin(async move {
            let answer = call.await;
            *ANSWERED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            answer
        })
    }
}

#[derive(Serialize)]
struct PathRow {
    path: &'static str,
    /// Median µs from the call to the member's channel being reached.
    before_us: f64,
    /// Median µs in the channel (the round trip to the server).
    channel_us: f64,
    /// Median µs from the answer's headers to the caller holding the decoded answer.
    after_us: f64,
}

async fn stack_path(url: &str, n: usize) -> Result<Vec<PathRow>, Box<dyn std::error::Error>> {
    let channel = Endpoint::from_shared(url.to_string())?.connect().await?;
    let direct = KvClient::new(Stamped(channel.clone()));
    let checker = HealthChecker::new(&[url.to_string()], loopback_config())?;
    let member_channel = channel.clone();
    let stack = KvClient::new(Balance::new(checker, move |_: &Member| {
        Stamped(member_channel.clone())
    }));
    let mut samples: [[Vec<f64>; 3]; 2] = Default::default();
    // Alternating blocks of 500, so drift hits both alike; the first block of each warms up.
    for block in 0..(2 * n.div_ceil(500)) {
        let through_stack = block % 2 == 1;
        for _ in 0..500 {
            let t0 = Instant::now();
            let result = match through_stack {
                true => stack.clone().range(RangeRequest::default()).await,
                false => direct.clone().range(RangeRequest::default()).await,
            };
            let t3 = Instant::now();
            result?;
            let t1 = REACHED.lock().unwrap_or_else(|p| p.into_inner()).take();
            let t2 = ANSWERED.lock().unwrap_or_else(|p| p.into_inner()).take();
            let (Some(t1), Some(t2)) = (t1, t2) else {
                continue;
            };
            if block >= 2 {
                let s = &mut samples[usize::from(through_stack)];
                s[0].push((t1 - t0).as_secs_f64() * 1e6);
                s[1].push((t2 - t1).as_secs_f64() * 1e6);
                s[2].push((t3 - t2).as_secs_f64() * 1e6);
            }
        }
    }
    println!();
    println!("one request at a time, µs (medians): before the member's channel | in it | after the answer's headers");
    let mut rows = Vec::new();
    for (i, name) in ["direct", "through the stack"].into_iter().enumerate() {
        let [before, channel, after] = &samples[i];
        let row = PathRow {
            path: name,
            before_us: median(before),
            channel_us: median(channel),
            after_us: median(after),
        };
        println!(
            "{:<18} {:>8.1} {:>8.1} {:>8.1}",
            name, row.before_us, row.channel_us, row.after_us
        );
        rows.push(row);
    }
    Ok(rows)
}
