//! Load loops: a batch with a fixed number of requests in flight (overhead), and long-running
//! readers and writers that record what they see over time (failover).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::clients::{Client, Failure, Op};
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
/// Distinct error messages a [`Timeline`] keeps (with their counts).
const MAX_ERRORS: usize = 20;

/// Counts of one tick.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    /// Reads that succeeded.
    pub read_ok: u64,
    /// Reads that failed (the caller's deadline included).
    pub read_err: u64,
    /// Writes that succeeded.
    pub write_ok: u64,
    /// Writes that failed, all kinds.
    pub write_err: u64,
    /// Of `write_err`: marked *outcome unknown* by the stack (`etcd_health::outcome_unknown`).
    pub write_unknown: u64,
    /// Of `write_err`: still in flight when the caller's deadline ran out (outcome unknown
    /// too, without a status to say so).
    pub write_caller_timeout: u64,
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

    /// Failed writes whose outcome is known to the caller: certainly not applied, or a failure
    /// the stack did not classify (the promise is that there are none).
    pub fn write_other(&self) -> u64 {
        self.write_err - self.write_unknown - self.write_caller_timeout
    }

    fn add(&mut self, o: &Counts) {
        self.read_ok += o.read_ok;
        self.read_err += o.read_err;
        self.write_ok += o.write_ok;
        self.write_err += o.write_err;
        self.write_unknown += o.write_unknown;
        self.write_caller_timeout += o.write_caller_timeout;
    }
}

/// What workers saw over time: counts per [`TICK`] by completion time, the latency of every
/// request (failed ones too, so stalls show) per second, and the distinct errors.
#[derive(Clone, Debug)]
pub struct Timeline {
    start: Instant,
    /// Counts per tick.
    pub ticks: Vec<Counts>,
    /// Latencies per second.
    pub seconds: Vec<Latency>,
    /// Distinct error messages (prefixed `read:` / `write:`) with how often each was seen,
    /// the first [`MAX_ERRORS`] kinds only.
    pub errors: Vec<(String, u64)>,
}

impl Timeline {
    /// An empty timeline whose time 0 is `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            ticks: Vec::new(),
            seconds: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Time 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one request that ended at `end` after `took`.
    pub fn record(&mut self, op: Op, result: &Result<(), Failure>, end: Instant, took: Duration) {
        let at = end.saturating_duration_since(self.start);
        let tick = (at.as_nanos() / TICK.as_nanos()) as usize;
        if self.ticks.len() <= tick {
            self.ticks.resize(tick + 1, Counts::default());
        }
        let c = &mut self.ticks[tick];
        match (op, result) {
            (Op::Get, Ok(())) => c.read_ok += 1,
            (Op::Get, Err(_)) => c.read_err += 1,
            (Op::Put, Ok(())) => c.write_ok += 1,
            (Op::Put, Err(f)) => {
                c.write_err += 1;
                if f.caller_timeout {
                    c.write_caller_timeout += 1;
                } else if f.outcome_unknown {
                    c.write_unknown += 1;
                }
            }
        }
        let second = at.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize(second + 1, Latency::coarse());
        }
        self.seconds[second].record(took);
        if let Err(f) = result {
            let unknown = if f.outcome_unknown {
                " [outcome unknown]"
            } else {
                ""
            };
            self.note_error(format!("{}: {}{unknown}", op.label(), f.message), 1);
        }
    }

    fn note_error(&mut self, message: String, n: u64) {
        if let Some((_, count)) = self.errors.iter_mut().find(|(m, _)| *m == message) {
            *count += n;
        } else if self.errors.len() < MAX_ERRORS {
            self.errors.push((message, n));
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
        for (m, n) in &other.errors {
            self.note_error(m.clone(), *n);
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

/// Starts `readers` + `writers` workers, each issuing one request after another until `stop`
/// is set. Every request is bounded by the caller's own `deadline` (`tokio::time::timeout`,
/// whatever the client does with deadlines of its own): one still unanswered then is a failed
/// request. A failed request is followed by a 10 ms pause, so fast failures do not spin.
pub fn spawn_workers(
    client: &Client,
    readers: usize,
    writers: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
    deadline: Duration,
) -> Vec<tokio::task::JoinHandle<Timeline>> {
    (0..readers + writers)
        .map(|n| {
            let op = if n < readers { Op::Get } else { Op::Put };
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut timeline = Timeline::new(start);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let result = match tokio::time::timeout(deadline, client.try_call(op)).await {
                        Ok(r) => r,
                        Err(_) => Err(Failure::caller_timeout(deadline)),
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
