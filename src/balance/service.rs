//! The balancing [`Service`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tower::{Service, ServiceExt};

use super::pick::pick;
use super::{AvoidMembers, MakeMember, ResponseFuture, ServedBy};
use crate::checker::{Member, MemberEntry};
use crate::health::Outcome;
use crate::passive::{ClassifiedBody, MethodKind, Tracker};
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
    pub fn new(checker: HealthChecker, make: M) -> Self {
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
    M: MakeMember<Service = S>,
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + 'static,
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
        let inner = self.checker.inner.clone();
        let entries = inner.entries();
        let avoid = req.extensions_mut().remove::<AvoidMembers>();
        let entry = match pick(&entries, inner.config.all_unhealthy, avoid.as_ref()) {
            Ok(entry) => entry,
            Err(status) => return ResponseFuture::new(async move { Err(status.into()) }),
        };
        let svc = self.service_for(&entry.member, &entries);
        if inner.config.require_leader {
            req.headers_mut()
                .insert(HAS_LEADER, HeaderValue::from_static("true"));
        }
        let kind = MethodKind::of(req.uri().path());
        let deadline = grpc_timeout(req.headers());
        let tracker = Tracker::start(inner, entry);
        ResponseFuture::new(dispatch(svc, req, tracker, kind, deadline))
    }
}

/// Sends one request to the chosen member and judges the answer.
async fn dispatch<S, B>(
    svc: S,
    req: Request<tonic::body::Body>,
    tracker: Tracker,
    kind: MethodKind,
    deadline: Option<Duration>,
) -> Result<Response<tonic::body::Body>, tower::BoxError>
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let member = tracker.entry().member.clone();
    let call = svc.oneshot(req);
    let result = match deadline {
        Some(d) => match tokio::time::timeout(d, call).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => {
                tracker.finish(
                    crate::passive::judge(Outcome::Timeout, kind),
                    kind == MethodKind::Unary,
                );
                return Err(tonic::Status::deadline_exceeded(format!(
                    "etcd-health: {member} did not answer within {d:?}"
                ))
                .into());
            }
        },
        None => call.await.map_err(Into::into),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            let outcome = crate::passive::transport_error(err.as_ref());
            tracker.finish(crate::passive::judge(outcome, kind), false);
            let status = match outcome {
                Outcome::Timeout => tonic::Status::deadline_exceeded(format!(
                    "etcd-health: {member} did not answer in time: {err}"
                )),
                _ => tonic::Status::unavailable(format!(
                    "etcd-health: {member} is unreachable: {err}"
                )),
            };
            return Err(status.into());
        }
    };
    let (mut parts, body) = resp.into_parts();
    parts.extensions.insert(ServedBy(member.clone()));
    let classifier = &tracker.inner().classifier;
    if parts.status != http::StatusCode::OK {
        let outcome = classifier.http(parts.status.as_u16());
        tracker.finish(outcome, false);
        return Ok(Response::from_parts(parts, tonic::body::Body::new(body)));
    }
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        // A trailers-only answer: the status is in the headers.
        let outcome = classifier.status(status.code(), status.message());
        tracker.finish(
            crate::passive::judge(outcome, kind),
            kind == MethodKind::Unary,
        );
        return Ok(Response::from_parts(parts, tonic::body::Body::new(body)));
    }
    let body = match kind {
        MethodKind::Stream => {
            // The stream is open: the member serves it.
            tracker.finish(Some(Outcome::Success), false);
            tonic::body::Body::new(body)
        }
        _ => tonic::body::Body::new(ClassifiedBody::new(body, tracker, kind)),
    };
    Ok(Response::from_parts(parts, body))
}

/// The deadline a tonic client put in the `grpc-timeout` header, if any.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
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
    use std::time::Duration;

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
