//! The metrics themselves, with the feature on: handles registered with the recorder once,
//! and the closed sets of label values.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label, Unit};

use super::*;
use crate::etcd::{method_index, METHODS, OTHER_METHOD};
use crate::health::{Source, Status};

/// The gRPC status codes by number, as gRFC A66 labels them.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `outcome` label values, by [`outcome_slot`].
const OUTCOMES: [&str; 6] = [
    "success",
    "failure",
    "tcp_failure",
    "timeout",
    "hang",
    "unjudged",
];

/// `reason` label values of ejections (failures only), by [`outcome_slot`].
const REASONS: [&str; 4] = ["failure", "tcp_failure", "timeout", "hang"];

/// `kind` label values of probes.
const KINDS: [&str; 5] = ["http", "https", "tcp", "grpc", "status"];

/// The index of `outcome` in [`OUTCOMES`].
pub(super) fn outcome_slot(outcome: Option<Outcome>) -> usize {
    match outcome {
        Some(Outcome::Success) => 0,
        Some(Outcome::Failure) => 1,
        Some(Outcome::TcpFailure) => 2,
        Some(Outcome::Timeout) => 3,
        Some(Outcome::Hang) => 4,
        None => 5,
    }
}

fn kind_slot(kind: ProbeType) -> usize {
    match kind {
        ProbeType::Http => 0,
        ProbeType::Https => 1,
        ProbeType::Tcp => 2,
        ProbeType::Grpc => 3,
        ProbeType::Status => 4,
    }
}

/// The `grpc.method` value of `path`'s slot: etcd's method without the leading `/`.
fn method_name(slot: usize) -> &'static str {
    METHODS.get(slot).map_or(OTHER_METHOD, |m| &m[1..])
}

/// The slot of `path` in a [`ByCall`] table.
fn method_slot(path: &str) -> usize {
    method_index(path).unwrap_or(METHODS.len())
}

/// The number of a gRPC code, in [`CODES`]' range.
fn code_slot(code: tonic::Code) -> usize {
    (code as usize).min(CODES.len() - 1)
}

/// The gRPC status of a call's output: the answer's head, or the error's.
pub(super) fn code_of<B>(out: &Result<http::Response<B>, tower::BoxError>) -> tonic::Code {
    match out {
        Ok(response) if response.status() != http::StatusCode::OK => tonic::Code::Unknown,
        Ok(response) => crate::grpc::header::find(response.headers(), &crate::grpc::header::STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(tonic::Code::Ok, tonic::Code::from_i32),
        Err(err) => err
            .downcast_ref::<tonic::Status>()
            .map_or(tonic::Code::Unknown, tonic::Status::code),
    }
}

/// Says what each metric is, once per health state (the recorder keeps the last).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        CALL_DURATION,
        Unit::Seconds,
        "etcd requests, from the call to the answer (retries and hedges included)"
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "attempts of etcd requests on one member"
    );
    describe_counter!(ATTEMPTS, "attempts by member and passive verdict");
    describe_gauge!(IN_FLIGHT, "attempts in flight to the member");
    describe_counter!(RETRIES, "attempts sent again to another member");
    describe_counter!(HEDGES, "reads also sent to another member");
    describe_counter!(HEDGES_WON, "reads answered first by a hedge");
    describe_counter!(
        NO_HEALTHY_MEMBER,
        "a member was wanted while none was healthy"
    );
    describe_gauge!(MEMBERS, "members by health status");
    describe_gauge!(MEMBER_HEALTHY, "1 while the member is in rotation");
    describe_counter!(EJECTIONS, "members ejected, by reason");
    describe_counter!(READMISSIONS, "ejected members put back into rotation");
    describe_histogram!(
        EJECTION_DURATION,
        Unit::Seconds,
        "how long each ejection lasted"
    );
    describe_counter!(PROBES, "active probes by kind and outcome");
    describe_histogram!(PROBE_DURATION, Unit::Seconds, "active probes' duration");
    describe_gauge!(LEADER_KNOWN, "1 while a leader is known");
    describe_counter!(LEADER_CHANGES, "new leaders seen");
    describe_counter!(DISCOVERY_ADDED, "members added, by source");
    describe_counter!(DISCOVERY_REMOVED, "members removed, by source");
    describe_counter!(STREAMS_OPENED, "drop-in streams opened, by kind");
    describe_gauge!(STREAMS_OPEN, "drop-in streams served now, by kind");
    describe_counter!(
        STREAM_RESUMPTIONS,
        "drop-in streams moved to another member"
    );
    describe_counter!(
        AUTHENTICATIONS,
        "tokens fetched by the auth layer, by result"
    );
    describe_counter!(TLS_RELOADS, "reads of the TLS files, by result");
    describe_counter!(
        KEEP_ALIVE_HEDGES,
        "drop-in keep-alive streams opened while one waited"
    );
    describe_gauge!(
        RETRY_BUDGET_LEFT,
        "retries and hedges the budget still allows"
    );
    describe_counter!(
        RETRY_BUDGET_REFUSED,
        "retries and hedges the budget refused"
    );
    describe_histogram!(
        CALL_RETRIES,
        "retries of a unary call that was retried (once per call)"
    );
    describe_histogram!(
        CALL_HEDGES,
        "hedges of a read that was hedged (once per call)"
    );
    describe_counter!(CONNECTS, "connections to the member tried, by result");
}

/// `result` label values of connection attempts, by [`connect_slot`].
const CONNECT_RESULTS: [&str; 5] = ["ok", "refused", "timeout", "tls_error", "other"];

fn connect_slot(result: ConnectResult) -> usize {
    match result {
        ConnectResult::Ok => 0,
        ConnectResult::Refused => 1,
        ConnectResult::Timeout => 2,
        ConnectResult::TlsError => 3,
        ConnectResult::Other => 4,
    }
}

// === impl Connects ===

/// One member's connection attempts, by result.
#[derive(Debug)]
pub(super) struct Connects {
    by_result: [Counter; CONNECT_RESULTS.len()],
}

impl Connects {
    pub(super) fn new(authority: &str) -> Self {
        let member = Label::new("etcd.member", authority.to_owned());
        Self {
            by_result: CONNECT_RESULTS.map(|r| {
                metrics::counter!(
                    CONNECTS,
                    vec![member.clone(), Label::from_static_parts("result", r)]
                )
            }),
        }
    }

    pub(super) fn ended(&self, result: ConnectResult) {
        self.by_result[connect_slot(result)].increment(1);
    }
}

// === impl Budget ===

/// The retry budget's gauge and refusals.
#[derive(Debug)]
pub(super) struct Budget {
    left: Gauge,
    pub(super) refused: Counter,
    /// The value the gauge shows (`u64::MAX`: nothing yet). Read and written under the
    /// budget's lock: relaxed is enough.
    shown: std::sync::atomic::AtomicU64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            left: metrics::gauge!(RETRY_BUDGET_LEFT),
            refused: metrics::counter!(RETRY_BUDGET_REFUSED),
            shown: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl Budget {
    pub(super) fn left(&self, remaining: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.shown.load(Relaxed) != remaining {
            self.shown.store(remaining, Relaxed);
            self.left.set(remaining as f64);
        }
    }
}

// === impl CallTally ===

/// A call's retries and hedges so far, with the handles to record them: boxed at the call's
/// first retry or hedge (rare), so a call answered at once holds one empty word, which the
/// request's future has room for (`per_request_futures_stay_under_a_kibibyte`).
#[derive(Default)]
pub(super) struct CallTally(Option<Box<Tally>>);

/// What a call that was retried or hedged keeps.
struct Tally {
    checker: Arc<Checker>,
    retries: u16,
    hedges: u16,
}

impl CallTally {
    fn tally(&mut self, checker: &Arc<Checker>) -> &mut Tally {
        self.0.get_or_insert_with(|| {
            Box::new(Tally {
                checker: Arc::clone(checker),
                retries: 0,
                hedges: 0,
            })
        })
    }

    pub(super) fn retried(&mut self, checker: &Arc<Checker>) {
        let tally = self.tally(checker);
        tally.retries = tally.retries.saturating_add(1);
    }

    pub(super) fn hedged(&mut self, checker: &Arc<Checker>) {
        let tally = self.tally(checker);
        tally.hedges = tally.hedges.saturating_add(1);
    }

    pub(super) fn ended(&mut self, path: &str) {
        let Some(tally) = self.0.take() else {
            return;
        };
        let method = method_slot(path);
        for (count, table) in [
            (tally.retries, &tally.checker.call_retries),
            (tally.hedges, &tally.checker.call_hedges),
        ] {
            if count > 0 {
                table.record(method, f64::from(count));
            }
        }
    }
}

impl std::fmt::Debug for CallTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (retries, hedges) = self.0.as_ref().map_or((0, 0), |t| (t.retries, t.hedges));
        f.debug_struct("CallTally")
            .field("retries", &retries)
            .field("hedges", &hedges)
            .finish()
    }
}

// === impl ByMethod ===

/// One histogram per method, each registered the first time it is needed.
pub(super) struct ByMethod {
    name: &'static str,
    rows: Box<[OnceLock<Histogram>]>,
}

impl ByMethod {
    fn new(name: &'static str) -> Self {
        let rows = (0..=METHODS.len()).map(|_| OnceLock::new()).collect();
        Self { name, rows }
    }

    fn record(&self, method: usize, value: f64) {
        self.rows[method]
            .get_or_init(|| metrics::histogram!(self.name, "grpc.method" => method_name(method)))
            .record(value);
    }
}

impl std::fmt::Debug for ByMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByMethod")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl Timer ===

/// Whatever holds a [`ByCall`] table.
pub(super) trait HasByCall: Send + Sync + 'static {
    fn by_call(&self) -> &ByCall;
}

impl HasByCall for Checker {
    fn by_call(&self) -> &ByCall {
        &self.calls
    }
}

impl HasByCall for PerMember {
    fn by_call(&self) -> &ByCall {
        &self.attempt_durations
    }
}

/// A request or attempt being timed into `T`'s table.
#[derive(Debug)]
pub(super) struct Timer<T> {
    table: Arc<T>,
    method: usize,
    start: Instant,
}

impl<T: HasByCall> Timer<T> {
    pub(super) fn start(table: Arc<T>, path: &str) -> Self {
        Self::start_at(table, path, Instant::now())
    }

    /// Starts timing at `start`, the caller's reading of the clock.
    pub(super) fn start_at(table: Arc<T>, path: &str, start: Instant) -> Self {
        Self {
            table,
            method: method_slot(path),
            start,
        }
    }

    /// Awaits `fut` and records its duration with the status `code` reads from its output; a
    /// future dropped before its end (a hedge that lost, a caller that gave up) is recorded as
    /// `CANCELLED`, as gRPC's own clients do.
    ///
    /// A hand-written future, not an `async fn`: one of those keeps `fut` twice (as its argument
    /// and as the value awaited), and the attempt and call futures it wraps are allocated on
    /// every request (`per_request_futures_stay_under_a_kibibyte`).
    pub(super) fn time<F: Future>(
        self,
        fut: F,
        code: fn(&F::Output) -> tonic::Code,
    ) -> Timed<F, T> {
        Timed {
            fut,
            timer: Running::new(self),
            code,
        }
    }

    fn record(self, code: tonic::Code) {
        self.table
            .by_call()
            .record(self.method, code, self.start.elapsed());
    }
}

pin_project_lite::pin_project! {
    /// A future timed by [`Timer::time`].
    pub(super) struct Timed<F: Future, T: HasByCall> {
        #[pin]
        fut: F,
        timer: Running<T>,
        code: fn(&F::Output) -> tonic::Code,
    }
}

impl<F: Future, T: HasByCall> Future for Timed<F, T> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        this.timer.polled();
        let out = std::task::ready!(this.fut.poll(cx));
        this.timer.end((this.code)(&out));
        std::task::Poll::Ready(out)
    }
}

/// A timer whose future may be dropped before it ends: once polled, that is recorded as
/// `CANCELLED`; a future dropped before it was ever polled never started, and records nothing.
pub(super) struct Running<T: HasByCall> {
    timer: Option<Timer<T>>,
    polled: bool,
}

impl<T: HasByCall> Running<T> {
    /// `timer`, for a future not polled yet.
    pub(super) fn new(timer: Timer<T>) -> Self {
        Self {
            timer: Some(timer),
            polled: false,
        }
    }

    /// The timed future was polled: dropped before its end, it is recorded as cancelled.
    pub(super) fn polled(&mut self) {
        self.polled = true;
    }

    /// The timed future ended with `code`: recorded once.
    pub(super) fn end(&mut self, code: tonic::Code) {
        if let Some(timer) = self.timer.take() {
            timer.record(code);
        }
    }
}

impl<T: HasByCall> std::fmt::Debug for Running<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("running", &self.timer.is_some())
            .field("polled", &self.polled)
            .finish()
    }
}

impl<T: HasByCall> Drop for Running<T> {
    fn drop(&mut self) {
        if let (Some(timer), true) = (self.timer.take(), self.polled) {
            timer.record(tonic::Code::Cancelled);
        }
    }
}

// === impl ByCall ===

/// Duration histograms by method and status, each registered the first time it is needed.
/// A method's row is made the first time it is needed too: a member's table is 51 pointers
/// until then (not 51 × 17 handles).
pub(super) struct ByCall {
    name: &'static str,
    /// Labels every histogram of the table carries (the member's).
    labels: Vec<Label>,
    rows: Box<[OnceLock<Row>]>,
}

/// One method's histograms, by status code.
type Row = Box<[OnceLock<Histogram>; CODES.len()]>;

impl ByCall {
    fn new(name: &'static str, labels: Vec<Label>) -> Self {
        let rows = (0..=METHODS.len()).map(|_| OnceLock::new()).collect();
        Self { name, labels, rows }
    }

    fn record(&self, method: usize, code: tonic::Code, elapsed: Duration) {
        let code = code_slot(code);
        self.rows[method].get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())))[code]
            .get_or_init(|| {
                let mut labels = self.labels.clone();
                labels.push(Label::from_static_parts("grpc.method", method_name(method)));
                labels.push(Label::from_static_parts("grpc.status", CODES[code]));
                metrics::histogram!(self.name, labels)
            })
            .record(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for ByCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByCall")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl Checker ===

/// The series of one health state.
#[derive(Debug)]
pub(super) struct Checker {
    calls: ByCall,
    call_retries: ByMethod,
    call_hedges: ByMethod,
    pub(super) retries: Counter,
    pub(super) hedges: Counter,
    pub(super) hedges_won: Counter,
    healthy: Gauge,
    unhealthy: Gauge,
    leader_known: Gauge,
    leader_changes: Counter,
}

impl Default for Checker {
    fn default() -> Self {
        describe();
        let status = |s: &'static str| metrics::gauge!(MEMBERS, "status" => s);
        Self {
            calls: ByCall::new(CALL_DURATION, Vec::new()),
            call_retries: ByMethod::new(CALL_RETRIES),
            call_hedges: ByMethod::new(CALL_HEDGES),
            retries: metrics::counter!(RETRIES),
            hedges: metrics::counter!(HEDGES),
            hedges_won: metrics::counter!(HEDGES_WON),
            healthy: status("healthy"),
            unhealthy: status("unhealthy"),
            leader_known: metrics::gauge!(LEADER_KNOWN),
            leader_changes: metrics::counter!(LEADER_CHANGES),
        }
    }
}

impl Checker {
    pub(super) fn published(&self, healthy: usize, members: usize, change: Change) {
        self.healthy.set(healthy as f64);
        self.unhealthy.set(members.saturating_sub(healthy) as f64);
        match change {
            Change::Added(source) => {
                metrics::counter!(DISCOVERY_ADDED, "source" => source).increment(1)
            }
            Change::Removed(source) => {
                metrics::counter!(DISCOVERY_REMOVED, "source" => source).increment(1)
            }
            Change::Leader { known } => {
                self.leader_known.set(f64::from(u8::from(known)));
                if known {
                    self.leader_changes.increment(1);
                }
            }
            Change::Other => {}
        }
    }
}

pub(super) fn no_healthy_member(policy: AllUnhealthyPolicy) {
    let policy = match policy {
        AllUnhealthyPolicy::TryAll => "try_all",
        AllUnhealthyPolicy::FailFast => "fail_fast",
    };
    metrics::counter!(NO_HEALTHY_MEMBER, "policy" => policy).increment(1);
}

// === impl PerMember ===

/// The series of one member.
pub(super) struct PerMember {
    attempt_durations: ByCall,
    pub(super) attempts: [Counter; OUTCOMES.len()],
    in_flight: Gauge,
    /// Set once the member left: its in-flight gauge stays at 0 as its last attempts end.
    gone: std::sync::atomic::AtomicBool,
    healthy: Gauge,
    /// By source (active, passive), then reason.
    ejections: [[Counter; REASONS.len()]; 2],
    readmissions: Counter,
    ejection_duration: Histogram,
    /// When the current ejection began.
    ejected_at: Mutex<Option<Instant>>,
    /// By kind, then outcome; registered at the first probe of a kind.
    probes: [OnceLock<[Counter; OUTCOMES.len()]>; KINDS.len()],
    probe_durations: [OnceLock<Histogram>; KINDS.len()],
    member: Label,
}

impl PerMember {
    pub(super) fn new(authority: &str, healthy: bool) -> Self {
        let member = Label::new("etcd.member", authority.to_owned());
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![member.clone()];
            labels.extend(extra.iter().map(|(k, v)| Label::from_static_parts(k, v)));
            labels
        };
        let ejections = |source: &'static str| {
            REASONS
                .map(|r| metrics::counter!(EJECTIONS, with(&[("reason", r), ("source", source)])))
        };
        let this = Self {
            attempt_durations: ByCall::new(ATTEMPT_DURATION, vec![member.clone()]),
            attempts: OUTCOMES.map(|o| metrics::counter!(ATTEMPTS, with(&[("outcome", o)]))),
            in_flight: metrics::gauge!(IN_FLIGHT, with(&[])),
            gone: std::sync::atomic::AtomicBool::new(false),
            healthy: metrics::gauge!(MEMBER_HEALTHY, with(&[])),
            ejections: [ejections("active"), ejections("passive")],
            readmissions: metrics::counter!(READMISSIONS, with(&[])),
            ejection_duration: metrics::histogram!(EJECTION_DURATION, with(&[])),
            ejected_at: Mutex::new((!healthy).then(Instant::now)),
            probes: Default::default(),
            probe_durations: Default::default(),
            member,
        };
        this.healthy.set(f64::from(u8::from(healthy)));
        this
    }

    pub(super) fn transition(&self, t: &Transition) {
        let mut ejected_at = self.ejected_at.lock().unwrap_or_else(|p| p.into_inner());
        match t.to {
            Status::Unhealthy => {
                self.healthy.set(0.0);
                let source = match t.source {
                    Source::Active => 0,
                    Source::Passive => 1,
                };
                // A failure of some kind ejects; a success never does.
                let reason = outcome_slot(Some(t.outcome)).clamp(1, REASONS.len()) - 1;
                self.ejections[source][reason].increment(1);
                *ejected_at = Some(Instant::now());
            }
            Status::Healthy => {
                self.healthy.set(1.0);
                self.readmissions.increment(1);
                if let Some(at) = ejected_at.take() {
                    self.ejection_duration.record(at.elapsed().as_secs_f64());
                }
            }
        }
    }

    pub(super) fn probed(&self, kind: ProbeType, outcome: Option<Outcome>, elapsed: Duration) {
        let kind = kind_slot(kind);
        let with = |extra: (&'static str, &'static str)| {
            vec![
                self.member.clone(),
                Label::from_static_parts("kind", KINDS[kind]),
                Label::from_static_parts(extra.0, extra.1),
            ]
        };
        self.probes[kind]
            .get_or_init(|| OUTCOMES.map(|o| metrics::counter!(PROBES, with(("outcome", o)))))
            [outcome_slot(outcome)]
        .increment(1);
        self.probe_durations[kind]
            .get_or_init(|| {
                metrics::histogram!(
                    PROBE_DURATION,
                    vec![
                        self.member.clone(),
                        Label::from_static_parts("kind", KINDS[kind])
                    ]
                )
            })
            .record(elapsed.as_secs_f64());
    }

    pub(super) fn in_flight(&self, delta: f64) {
        if !self.gone.load(std::sync::atomic::Ordering::Relaxed) {
            self.in_flight.increment(delta);
        }
    }

    pub(super) fn left(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
        self.healthy.set(0.0);
        self.in_flight.set(0.0);
    }
}

impl std::fmt::Debug for PerMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerMember")
            .field("member", &self.member.value())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;

    use super::*;
    use crate::health::Source;

    /// What `recorder` holds: (kind, name, sorted labels) → value.
    fn values(recorder: &DebuggingRecorder) -> Vec<(MetricKind, String, Vec<String>, DebugValue)> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (kind, key) = key.into_parts();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (kind, key.name().to_owned(), labels, value)
            })
            .collect()
    }

    fn find<'a>(
        values: &'a [(MetricKind, String, Vec<String>, DebugValue)],
        name: &str,
        labels: &[&str],
    ) -> &'a DebugValue {
        &values
            .iter()
            .find(|(_, n, l, _)| n == name && labels.iter().all(|x| l.iter().any(|y| y == x)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {values:#?}"))
            .3
    }

    fn transition(to: Status, outcome: Outcome) -> Transition {
        Transition {
            from: Status::Healthy,
            to,
            source: Source::Passive,
            outcome,
            count: 1,
            ejected_for: None,
            ejections: 1,
        }
    }

    #[test]
    fn a_call_records_its_retries_and_hedges_once_and_a_plain_call_nothing() {
        let recorder = DebuggingRecorder::new();
        let checker = metrics::with_local_recorder(&recorder, super::super::Checker::new);
        metrics::with_local_recorder(&recorder, || {
            // No retry, no hedge: nothing registered, nothing recorded (gRFC A96).
            super::super::CallTally::default().ended("/etcdserverpb.KV/Range");
            assert!(values(&recorder)
                .iter()
                .all(|(_, n, _, _)| n != CALL_RETRIES && n != CALL_HEDGES));
            let mut tally = super::super::CallTally::default();
            tally.retried(&checker);
            tally.retried(&checker);
            tally.hedged(&checker);
            tally.ended("/etcdserverpb.KV/Range");
            // Once: a second end records nothing more.
            tally.ended("/etcdserverpb.KV/Range");
            let mut tally = super::super::CallTally::default();
            tally.retried(&checker);
            tally.ended("/etcdserverpb.KV/Put");
        });
        let out = values(&recorder);
        let m = "grpc.method=etcdserverpb.KV/Range";
        assert_eq!(
            find(&out, CALL_RETRIES, &[m]),
            &DebugValue::Histogram(vec![2.0.into()])
        );
        assert_eq!(
            find(&out, CALL_HEDGES, &[m]),
            &DebugValue::Histogram(vec![1.0.into()])
        );
        assert_eq!(
            find(&out, CALL_RETRIES, &["grpc.method=etcdserverpb.KV/Put"]),
            &DebugValue::Histogram(vec![1.0.into()])
        );
        assert!(out
            .iter()
            .all(|(_, n, l, _)| n != CALL_HEDGES || l.iter().all(|x| !x.contains("Put"))));
    }

    #[test]
    fn a_tower_stream_is_counted_opened_open_and_resumed_like_the_dropins() {
        let recorder = DebuggingRecorder::new();
        // A snapshot of the debugging recorder resets what it reads: the gauge, moved by
        // increments, is the sum of the snapshots; the counters are read once, at the end.
        let mut gauge = 0.0;
        let mut counters = Vec::new();
        metrics::with_local_recorder(&recorder, || {
            let mut open = |recorder: &DebuggingRecorder| {
                let out = values(recorder);
                if let DebugValue::Gauge(v) = find(&out, STREAMS_OPEN, &["kind=watch"]) {
                    gauge += v.into_inner();
                }
                counters.extend(out.into_iter().filter(|(k, ..)| *k == MetricKind::Counter));
                gauge
            };
            let mut watch = StreamMeter::watch();
            watch.serving(Some(1));
            assert_eq!(open(&recorder), 1.0);
            // Lost, then served by a new stream: one resumption.
            watch.serving(None);
            assert_eq!(open(&recorder), 0.0);
            watch.serving(Some(2));
            // The same stream again (a keep-alive's first lane answering on): no resumption.
            watch.serving(Some(2));
            // Another stream took over without a gap (a keep-alive hedge won): one more.
            watch.serving(Some(3));
            assert_eq!(open(&recorder), 1.0);
            let mut other = StreamMeter::watch();
            other.serving(Some(1));
            assert_eq!(open(&recorder), 2.0);
            drop(watch);
            drop(other);
            assert_eq!(open(&recorder), 0.0);
            let _never_served = StreamMeter::keep_alive();
        });
        counters.extend(values(&recorder));
        let total = |name: &str, kind: &str| -> u64 {
            counters
                .iter()
                .filter(|(_, n, l, _)| n == name && l.iter().any(|x| x == kind))
                .map(|(.., v)| match v {
                    DebugValue::Counter(c) => *c,
                    _ => 0,
                })
                .sum()
        };
        assert_eq!(total(STREAMS_OPENED, "kind=watch"), 2);
        assert_eq!(total(STREAM_RESUMPTIONS, "kind=watch"), 2);
        assert_eq!(total(STREAMS_OPENED, "kind=keep_alive"), 1);
    }

    #[test]
    fn the_budget_gauge_follows_deposits_and_refills_when_shown() {
        let recorder = DebuggingRecorder::new();
        let mut config = crate::config::RetryConfig {
            extra_ratio: 0.5,
            extra_min_per_second: 0,
            ..Default::default()
        };
        let epoch = Instant::now();
        let budget = metrics::with_local_recorder(&recorder, || {
            crate::budget::RetryBudget::new(&config, epoch)
        });
        let left = || match find(&values(&recorder), RETRY_BUDGET_LEFT, &[]) {
            DebugValue::Gauge(v) => v.into_inner(),
            other => panic!("{other:?}"),
        };
        for _ in 0..4 {
            budget.deposit(epoch);
        }
        // 4 requests at 0.5: 2 extra allowed, shown without any retry asking.
        assert_eq!(left(), 2.0);
        assert!(budget.try_withdraw(epoch, crate::budget::Extra::Retry));
        assert!(budget.try_withdraw(epoch, crate::budget::Extra::Retry));
        assert!(!budget.try_withdraw(epoch, crate::budget::Extra::Retry));
        // (A snapshot resets what it reads: both from one.)
        let out = values(&recorder);
        assert_eq!(
            find(&out, RETRY_BUDGET_LEFT, &[]),
            &DebugValue::Gauge(0.0.into())
        );
        assert_eq!(
            find(&out, RETRY_BUDGET_REFUSED, &[]),
            &DebugValue::Counter(1)
        );
        // Two requests later, one more extra is allowed.
        budget.deposit(epoch);
        budget.deposit(epoch);
        assert_eq!(left(), 1.0);
        // No traffic: the window's seconds run out, and the gauge says so when shown.
        budget.show(epoch + Duration::from_secs(11));
        assert_eq!(left(), 0.0);
        budget.show(epoch + Duration::from_secs(11));
        config.extra_min_per_second = 1;
        let floor = metrics::with_local_recorder(&recorder, || {
            crate::budget::RetryBudget::new(&config, epoch)
        });
        for _ in 0..10 {
            assert!(floor.try_withdraw(epoch, crate::budget::Extra::Retry));
        }
        assert_eq!(left(), 0.0);
        floor.show(epoch + Duration::from_secs(11));
        assert_eq!(left(), 10.0, "refilled to the floor with no request");
    }

    #[test]
    fn labels_are_closed_sets() {
        assert_eq!(
            method_name(method_slot("/etcdserverpb.KV/Range")),
            "etcdserverpb.KV/Range"
        );
        assert_eq!(method_name(method_slot("/my.Own/Service")), "_OTHER");
        assert_eq!(method_name(method_slot("")), "_OTHER");
        let ok = http::Response::new(());
        assert_eq!(code_of(&Ok(ok)), tonic::Code::Ok);
        let mut refused = http::Response::new(());
        refused
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(code_of(&Ok(refused)), tonic::Code::Unavailable);
        let mut odd = http::Response::new(());
        odd.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(CODES[code_slot(code_of(&Ok(odd)))], "UNKNOWN");
        let mut not_grpc = http::Response::new(());
        *not_grpc.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(code_of(&Ok(not_grpc)), tonic::Code::Unknown);
        let late: Result<http::Response<()>, tower::BoxError> =
            Err(tonic::Status::deadline_exceeded("late").into());
        assert_eq!(code_of(&late), tonic::Code::DeadlineExceeded);
        let io: Result<http::Response<()>, tower::BoxError> = Err("broken".into());
        assert_eq!(code_of(&io), tonic::Code::Unknown);
    }

    #[test]
    fn a_member_is_ejected_readmitted_and_zeroed_when_it_leaves() {
        let recorder = DebuggingRecorder::new();
        let handles =
            metrics::with_local_recorder(&recorder, || PerMember::new("127.0.0.1:2379", true));
        // Registered once: what follows goes through the handles, no recorder in scope.
        handles.in_flight(1.0);
        handles.in_flight(1.0);
        handles.transition(&transition(Status::Unhealthy, Outcome::Timeout));
        let out = values(&recorder);
        let m = "etcd.member=127.0.0.1:2379";
        assert_eq!(
            find(&out, MEMBER_HEALTHY, &[m]),
            &DebugValue::Gauge(0.0.into())
        );
        assert_eq!(find(&out, IN_FLIGHT, &[m]), &DebugValue::Gauge(2.0.into()));
        assert_eq!(
            find(&out, EJECTIONS, &[m, "reason=timeout", "source=passive"]),
            &DebugValue::Counter(1)
        );
        assert_eq!(
            find(&out, EJECTIONS, &[m, "reason=hang", "source=passive"]),
            &DebugValue::Counter(0)
        );
        handles.transition(&Transition {
            from: Status::Unhealthy,
            ..transition(Status::Healthy, Outcome::Success)
        });
        handles.left();
        handles.in_flight(-1.0);
        let out = values(&recorder);
        assert_eq!(
            find(&out, MEMBER_HEALTHY, &[m]),
            &DebugValue::Gauge(0.0.into())
        );
        assert_eq!(find(&out, IN_FLIGHT, &[m]), &DebugValue::Gauge(0.0.into()));
        assert_eq!(find(&out, READMISSIONS, &[m]), &DebugValue::Counter(1));
        match find(&out, EJECTION_DURATION, &[m]) {
            DebugValue::Histogram(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timed_call_is_recorded_with_its_method_and_status_once_and_a_dropped_one_as_cancelled() {
        let recorder = DebuggingRecorder::new();
        let checker = metrics::with_local_recorder(&recorder, || Arc::new(Checker::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // The histograms are registered at their first use: with the recorder then in scope
        // (the global one, in an application).
        metrics::with_local_recorder(&recorder, || {
            let answered = Timer::start(checker.clone(), "/etcdserverpb.KV/Put");
            rt.block_on(answered.time(
                async {
                    Err::<http::Response<()>, tower::BoxError>(
                        tonic::Status::unavailable("x").into(),
                    )
                },
                code_of,
            ))
            .expect_err("the call's own answer");
            // Dropped before it was ever polled: never started, nothing recorded.
            let unpolled = Timer::start(checker.clone(), "/my.Own/Service");
            drop(unpolled.time(std::future::pending::<()>(), |_| tonic::Code::Ok));
            let out = values(&recorder);
            match find(
                &out,
                CALL_DURATION,
                &["grpc.method=etcdserverpb.KV/Put", "grpc.status=UNAVAILABLE"],
            ) {
                DebugValue::Histogram(v) => assert_eq!(v.len(), 1),
                other => panic!("{other:?}"),
            }
            assert!(out
                .iter()
                .all(|(_, n, l, _)| n != CALL_DURATION || !l.iter().any(|x| x.contains("_OTHER"))));
            let started = Timer::start(checker, "/my.Own/Service");
            let mut fut = Box::pin(started.time(std::future::pending::<()>(), |_| tonic::Code::Ok));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            drop(fut);
        });
        let out = values(&recorder);
        match find(
            &out,
            CALL_DURATION,
            &["grpc.method=_OTHER", "grpc.status=CANCELLED"],
        ) {
            DebugValue::Histogram(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
    }
}
