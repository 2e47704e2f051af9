//! Load loops: a batch with a fixed number of requests in flight (overhead), and long-running
//! readers and writers that record what they see over time (failover).

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::clients::{Client, Op};
use super::hist::Latency;

/// Result of [`batch`].
#[derive(Debug, Default)]
pub struct Batch {
    /// Wall time of the whole batch.
    pub elapsed: Duration,
    /// Requests that failed.
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
}

/// Issues `n` requests of `op` with `in_flight` outstanding at any time (a new one starts as
/// soon as one ends); records each latency in `latency` if given.
pub async fn batch(
    client: &Client,
    op: Op,
    n: u64,
    in_flight: usize,
    mut latency: Option<&mut Latency>,
) -> Batch {
    let start = Instant::now();
    let mut out = Batch::default();
    let mut calls = stream::iter(0..n)
        .map(|_| async move {
            let t = Instant::now();
            let r = client.call(op).await;
            (r, t.elapsed())
        })
        .buffer_unordered(in_flight.max(1));
    while let Some((result, took)) = calls.next().await {
        if let Err(e) = result {
            out.errors += 1;
            out.first_error.get_or_insert(e);
        }
        if let Some(h) = latency.as_deref_mut() {
            h.record(took);
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Width of a [`Timeline`] tick.
pub const TICK: Duration = Duration::from_millis(100);

/// Counts of one tick.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    /// Reads that succeeded.
    pub read_ok: u64,
    /// Reads that failed.
    pub read_err: u64,
    /// Writes that succeeded.
    pub write_ok: u64,
    /// Writes that failed.
    pub write_err: u64,
}

impl Counts {
    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.read_ok + self.write_ok
    }

    /// Failed requests.
    pub fn errors(&self) -> u64 {
        self.read_err + self.write_err
    }

    fn add(&mut self, o: &Counts) {
        self.read_ok += o.read_ok;
        self.read_err += o.read_err;
        self.write_ok += o.write_ok;
        self.write_err += o.write_err;
    }
}

/// What workers saw over time: counts per [`TICK`] by completion time, and the latency of
/// every request (failed ones too, so stalls show) per second.
#[derive(Clone, Debug)]
pub struct Timeline {
    start: Instant,
    /// Counts per tick.
    pub ticks: Vec<Counts>,
    /// Latencies per second.
    pub seconds: Vec<Latency>,
    /// A few error messages, for the report.
    pub sample_errors: Vec<String>,
}

impl Timeline {
    /// An empty timeline whose time 0 is `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            ticks: Vec::new(),
            seconds: Vec::new(),
            sample_errors: Vec::new(),
        }
    }

    /// Time 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one request that ended at `end` after `took`.
    pub fn record(&mut self, op: Op, result: &Result<(), String>, end: Instant, took: Duration) {
        let at = end.saturating_duration_since(self.start);
        let tick = (at.as_nanos() / TICK.as_nanos()) as usize;
        if self.ticks.len() <= tick {
            self.ticks.resize(tick + 1, Counts::default());
        }
        let c = &mut self.ticks[tick];
        match (op, result.is_ok()) {
            (Op::Get, true) => c.read_ok += 1,
            (Op::Get, false) => c.read_err += 1,
            (Op::Put, true) => c.write_ok += 1,
            (Op::Put, false) => c.write_err += 1,
        }
        let second = at.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize(second + 1, Latency::coarse());
        }
        self.seconds[second].record(took);
        if let Err(e) = result {
            if self.sample_errors.len() < 20 && !self.sample_errors.contains(e) {
                self.sample_errors.push(e.clone());
            }
        }
    }

    /// Adds `other` (same start) into this one.
    pub fn merge(&mut self, other: &Timeline) {
        if self.ticks.len() < other.ticks.len() {
            self.ticks.resize(other.ticks.len(), Counts::default());
        }
        for (a, b) in self.ticks.iter_mut().zip(&other.ticks) {
            a.add(b);
        }
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), Latency::coarse());
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.merge(b);
        }
        for e in &other.sample_errors {
            if self.sample_errors.len() < 20 && !self.sample_errors.contains(e) {
                self.sample_errors.push(e.clone());
            }
        }
    }

    /// Counts over `[from, to)` seconds (tick resolution).
    pub fn window(&self, from: f64, to: f64) -> Counts {
        let per_s = 1.0 / TICK.as_secs_f64();
        let (a, b) = (
            (from * per_s).round() as usize,
            (to * per_s).round() as usize,
        );
        let mut c = Counts::default();
        for t in self.ticks.iter().take(b).skip(a) {
            c.add(t);
        }
        c
    }
}

/// Starts `readers` + `writers` workers, each issuing one request after another until
/// `stop_at`. A failed request is followed by a 10 ms pause, so fast failures do not spin.
/// `guard` bounds every request from outside, whatever the client does with its deadline.
pub fn spawn_workers(
    client: &Client,
    readers: usize,
    writers: usize,
    start: Instant,
    stop_at: Instant,
    guard: Duration,
) -> Vec<tokio::task::JoinHandle<Timeline>> {
    (0..readers + writers)
        .map(|n| {
            let op = if n < readers { Op::Get } else { Op::Put };
            let client = client.clone();
            tokio::spawn(async move {
                let mut timeline = Timeline::new(start);
                while Instant::now() < stop_at {
                    let t = Instant::now();
                    let result = match tokio::time::timeout(guard, client.call(op)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("no answer within the {guard:?} guard")),
                    };
                    let end = Instant::now();
                    timeline.record(op, &result, end, end - t);
                    if result.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                timeline
            })
        })
        .collect()
}

/// Waits for the workers and merges what they saw.
pub async fn join_workers(
    start: Instant,
    workers: Vec<tokio::task::JoinHandle<Timeline>>,
) -> Timeline {
    let mut all = Timeline::new(start);
    for w in workers {
        all.merge(&w.await.expect("worker panicked"));
    }
    all
}
