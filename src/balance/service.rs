//! The balancing [`Service`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tower::Service;

use super::attempt::{attempt, Attempt, Failure};
use super::pick::pick;
use super::retry::{backoff, Class};
use super::{AvoidMembers, MakeMember, ResponseFuture};
use crate::checker::{Member, MemberEntry};
use crate::passive::{MethodKind, Tracker};
use crate::HealthChecker;

/// Metadata that makes etcd reject a request at once when the member has no leader.
const HAS_LEADER: &str = "hasleader";

/// A health-checked balancer over one service per etcd member.
///
/// `Clone + Send + Sync`; clones share members, services and health state.
pub struct Balance<M: MakeMember> {
    checker: HealthChecker,
    make: Arc<M>,
    services: Arc<RwLock<HashMap<usize, M::Service>>>,
}

// === impl Balance ===

impl<M: MakeMember> Balance<M> {
    /// A balancer over the members of `checker`, reaching each through `make`.
    ///
    /// `make` is first shown the health state ([`MakeMember::attach`]): a [`TonicConnector`](super::TonicConnector)
    /// without TLS of its own takes the checker's, so requests present the same client
    /// certificate as the probes.
    pub fn new(checker: HealthChecker, mut make: M) -> Self {
        make.attach(&checker);
        Self {
            checker,
            make: Arc::new(make),
            services: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The shared health state.
    pub fn checker(&self) -> &HealthChecker {
        &self.checker
    }

    /// The per-member service maker.
    pub fn get_ref(&self) -> &M {
        &self.make
    }
}

impl<M: MakeMember> Balance<M>
where
    M::Service: Clone,
{
    /// The service for one member, made on first use; services of removed members are
    /// dropped.
    fn service_for(&self, member: &Member, live: &[Arc<MemberEntry>]) -> M::Service {
        if let Some(svc) = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&member.index())
        {
            return svc.clone();
        }
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        services.retain(|index, _| live.iter().any(|e| e.member.index() == *index));
        services
            .entry(member.index())
            .or_insert_with(|| self.make.make_member(member))
            .clone()
    }
}

impl<M: MakeMember> Clone for Balance<M> {
    fn clone(&self) -> Self {
        Self {
            checker: self.checker.clone(),
            make: self.make.clone(),
            services: self.services.clone(),
        }
    }
}

impl<M: MakeMember> std::fmt::Debug for Balance<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("members", &self.checker.members())
            .finish_non_exhaustive()
    }
}

impl<M, S, B> Service<Request<tonic::body::Body>> for Balance<M>
where
    M: MakeMember<Service = S> + Send + Sync + 'static,
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    /// Always ready: the member is chosen per request, and its own readiness is awaited in
    /// the response future, so an unhealthy member never makes the whole stack fail.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<tonic::body::Body>) -> Self::Future {
        if self.checker.inner.config.require_leader {
            req.headers_mut()
                .insert(HAS_LEADER, HeaderValue::from_static("true"));
        }
        ResponseFuture::new(self.clone().dispatch(req))
    }
}

impl<M, S, B> Balance<M>
where
    M: MakeMember<Service = S> + Send + Sync + 'static,
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    /// Sends a request, retrying unary ones on other members where etcd's rules allow.
    async fn dispatch(
        self,
        mut req: Request<tonic::body::Body>,
    ) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        let inner = self.checker.inner.clone();
        // Members the caller asked to avoid count as tried already.
        let mut tried: Vec<usize> = req
            .extensions_mut()
            .remove::<AvoidMembers>()
            .map(|a| a.0.iter().map(Member::index).collect())
            .unwrap_or_default();
        let config = &inner.config;
        let kind = MethodKind::of(req.uri().path());
        let deadline = grpc_timeout(req.headers());
        if kind != MethodKind::Unary || config.retry.max_attempts <= 1 {
            let entries = inner.entries();
            let entry = match pick(&entries, config.all_unhealthy, &tried) {
                Ok(entry) => entry,
                Err(status) => return Err(status.into()),
            };
            return match self.attempt_on(entry, &entries, req, kind, deadline).await {
                Attempt::Answer(response) => Ok(response),
                Attempt::Failed(failure) => failure.into_result(),
            };
        }

        // Unary: keep the request so it can be sent again.
        let class = Class::of(req.uri().path());
        let (parts, body) = req.into_parts();
        let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
        let started = tokio::time::Instant::now();
        let budget = deadline.unwrap_or(config.retry.budget);
        let read_timeout = match class {
            Class::Read if !config.retry.read_attempt_timeout.is_zero() => {
                Some(config.retry.read_attempt_timeout)
            }
            _ => None,
        };
        let mut attempt = 1;
        let mut last: Option<Failure> = None;
        loop {
            let remaining = budget.saturating_sub(started.elapsed());
            let entries = inner.entries();
            let failure = match pick(&entries, config.all_unhealthy, &tried) {
                // No member may take it (fail-fast with none healthy, or no members): that is
                // the answer at once, not a reason to wait and ask again. After a failed
                // attempt, the caller learns what happened to its request instead.
                Err(status) => return last.unwrap_or(Failure::not_sent(status)).into_result(),
                Ok(entry) => {
                    tried.push(entry.member.index());
                    // The caller's deadline bounds every attempt; a read attempt may have a
                    // shorter one of its own.
                    let limit = match (deadline.map(|_| remaining), read_timeout) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let mut req = replay(&parts, &body);
                    if let Some(limit) = limit {
                        set_grpc_timeout(req.headers_mut(), limit);
                    }
                    match self.attempt_on(entry, &entries, req, kind, limit).await {
                        Attempt::Answer(response) => return Ok(response),
                        Attempt::Failed(failure) => failure,
                    }
                }
            };
            let retryable = match class {
                Class::Read => true,
                Class::Write => !failure.maybe_processed,
            };
            let pause = backoff(&config.retry, attempt + 1);
            if !retryable
                || attempt >= config.retry.max_attempts
                || started.elapsed() + pause >= budget
            {
                return failure.into_result();
            }
            inner.count_retry();
            tracing::debug!(
                method = parts.uri.path(),
                attempt,
                status = ?failure.status,
                "retrying on another member"
            );
            last = Some(failure);
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One attempt on one member; `entries` is the membership `entry` was picked from.
    async fn attempt_on(
        &self,
        entry: std::sync::Arc<MemberEntry>,
        entries: &[std::sync::Arc<MemberEntry>],
        req: Request<tonic::body::Body>,
        kind: MethodKind,
        deadline: Option<Duration>,
    ) -> Attempt {
        let inner = self.checker.inner.clone();
        let svc = self.service_for(&entry.member, entries);
        let has_leader = inner.config.require_leader;
        let tracker = Tracker::start(inner, entry);
        attempt(svc, req, tracker, kind, deadline, has_leader).await
    }
}

/// A copy of a buffered unary request, to send (again).
pub(crate) fn replay(parts: &http::request::Parts, body: &Bytes) -> Request<tonic::body::Body> {
    let mut req = Request::new(tonic::body::Body::new(http_body_util::Full::new(
        body.clone(),
    )));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

/// Writes a deadline as a `grpc-timeout` header (milliseconds, rounded up).
fn set_grpc_timeout(headers: &mut http::HeaderMap, timeout: Duration) {
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
        headers.insert("grpc-timeout", value);
    }
}

/// The deadline a tonic client put in the `grpc-timeout` header, if any.
pub(crate) fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::grpc_timeout;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tower::ServiceExt;

    use crate::checker::Member;
    use crate::config::{AllUnhealthyPolicy, Config};
    use crate::health::{Outcome, Source, Status};
    use crate::{Balance, HealthChecker};

    /// A balancer over `n` members, all ejected, whose services count their calls.
    fn all_ejected(n: u16, policy: AllUnhealthyPolicy) -> (Stack, Arc<AtomicUsize>) {
        let mut config = Config {
            all_unhealthy: policy,
            ..Config::default()
        };
        config.checks.active.unhealthy.interval = Duration::ZERO;
        let endpoints: Vec<String> = (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker = HealthChecker::new(&endpoints, config).expect("checker");
        for m in checker.members() {
            let status = checker.record(&m, Source::Passive, Outcome::TcpFailure);
            assert_eq!(status, Some(Status::Unhealthy));
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let make = move |_: &Member| {
            let calls = counted.clone();
            tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
                calls.fetch_add(1, Ordering::Relaxed);
                async {
                    Err::<http::Response<tonic::body::Body>, _>(tower::BoxError::from(
                        tonic::Status::unavailable("refused"),
                    ))
                }
            })
        };
        let balance = Balance::new(checker, make);
        (tower::util::BoxCloneSyncService::new(balance), calls)
    }

    type Stack = tower::util::BoxCloneSyncService<
        http::Request<tonic::body::Body>,
        http::Response<tonic::body::Body>,
        tower::BoxError,
    >;

    fn range() -> http::Request<tonic::body::Body> {
        http::Request::builder()
            .uri("/etcdserverpb.KV/Range")
            .body(tonic::body::Body::empty())
            .expect("request")
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_answers_at_once_without_waiting_to_retry() {
        let (balance, calls) = all_ejected(3, AllUnhealthyPolicy::FailFast);
        let started = tokio::time::Instant::now();
        let err = balance.oneshot(range()).await.expect_err("nothing healthy");
        let status = err.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("no healthy etcd member"),
            "{status:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 0, "nothing sent");
        assert_eq!(started.elapsed(), Duration::ZERO, "no back-off slept");
    }

    #[tokio::test(start_paused = true)]
    async fn panic_mode_still_tries_and_retries() {
        let (balance, calls) = all_ejected(3, AllUnhealthyPolicy::TryAll);
        let started = tokio::time::Instant::now();
        balance
            .oneshot(range())
            .await
            .expect_err("every member refuses");
        assert_eq!(calls.load(Ordering::Relaxed), 3, "retry.max_attempts");
        assert!(started.elapsed() >= Duration::from_millis(25), "backed off");
    }

    #[test]
    fn parses_grpc_timeout() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_timeout(&h), None);
        for (v, d) in [
            ("1S", Duration::from_secs(1)),
            ("250m", Duration::from_millis(250)),
            ("2M", Duration::from_secs(120)),
            ("7u", Duration::from_micros(7)),
        ] {
            h.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(grpc_timeout(&h), Some(d));
        }
        for bad in ["", "S", "12x", "-1S", "1.5S"] {
            h.insert("grpc-timeout", bad.parse().unwrap());
            assert_eq!(grpc_timeout(&h), None, "{bad}");
        }
    }
}
