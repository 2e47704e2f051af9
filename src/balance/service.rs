//! The balancing [`Service`]: the request path of a [`Balance`].
//!
//! It reads and reports to the health state through the balancer's handle
//! ([`BalanceHealth`], made in `layer.rs`), so this file does not name the checker.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use tower::Service;

use tokio::time::Instant;

use super::attempt::{attempt, Attempt, Limits};
use super::hedge::HedgeDelay;
use super::layer::{Balance, BalanceHealth};
use super::pick::pick;
use super::unary::driver::{self, Health};
use super::unary::{Members, Replay};
use super::{AvoidMembers, MakeMember, ResponseFuture};
use crate::etcd::{Hedging, Method, MethodKind};
use crate::grpc::GrpcService;
use crate::member::{Member, MemberEntry};
use crate::passive::Tracker;

/// `hasleader` (etcd's fact, see [`crate::etcd::HAS_LEADER`]) as a `HeaderName` made once:
/// inserting a `&str` name that is not a standard header copies it into a new allocation on
/// every request.
const HAS_LEADER: HeaderName = HeaderName::from_static(crate::etcd::HAS_LEADER);

// === impl Balance: the request path ===

impl<M: MakeMember> Balance<M>
where
    M::Service: Clone,
{
    /// The service for one member: made on first use, and made anew each time the member is
    /// put back into rotation (see [`MemberEntry::returns`]: a connection that lived through
    /// the fault may stay silent for seconds after it); services of removed members are
    /// dropped. Requests already sent keep the service they were sent on.
    fn service_for(&self, entry: &MemberEntry, live: &[Arc<MemberEntry>]) -> M::Service {
        let index = entry.member().index();
        let returns = entry.returns();
        if let Some(Some((made_at, svc))) = self
            .shared
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(index)
        {
            if *made_at == returns {
                return svc.clone();
            }
        }
        let mut services = self
            .shared
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for (i, slot) in services.iter_mut().enumerate() {
            if slot.is_some() && !live.iter().any(|e| e.member().index() == i) {
                *slot = None;
            }
        }
        match services.get(index) {
            Some(Some((made_at, svc))) if *made_at == returns => return svc.clone(),
            Some(Some(_)) => tracing::debug!(
                member = %entry.member(),
                "member back in rotation: its channel is made anew"
            ),
            _ => {}
        }
        let svc = self.shared.make.make_member(entry.member());
        if services.len() <= index {
            services.resize_with(index + 1, || None);
        }
        services[index] = Some((returns, svc.clone()));
        svc
    }
}

/// For member services that carry tonic's requests and answer with a body of `Bytes` frames
/// (as a tonic `Channel` does), `Clone + Send + Sync + 'static`, with `Send` futures and errors
/// that box.
impl<M> Service<Request<tonic::body::Body>> for Balance<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    /// Always ready: the member is chosen per request, and its own readiness is awaited in
    /// the response future, so an unhealthy member never makes the whole stack fail.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        self.dispatch(req)
    }
}

#[allow(private_bounds, reason = "private methods: the bound never shows")]
impl<M> Balance<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    /// [`Service::call`] without `&mut`: the balancer is always ready and keeps no state
    /// per caller, so a wrapper that shares it (the drop-in's channel) routes through it
    /// without a clone of its own per request.
    pub(crate) fn dispatch(&self, mut req: Request<tonic::body::Body>) -> ResponseFuture {
        if self.shared.health.config().require_leader {
            req.headers_mut()
                .insert(HAS_LEADER, HeaderValue::from_static("true"));
        }
        // Members the caller asked to avoid count as tried already.
        let avoid: Vec<usize> = req
            .extensions_mut()
            .remove::<AvoidMembers>()
            .map(|a| a.0.iter().map(Member::index).collect())
            .unwrap_or_default();
        let method = Method::of(req.uri().path());
        // The clock read once for the request's start: its timer, its schedule, its first
        // attempt.
        let now = Instant::now();
        let timer = self
            .shared
            .health
            .metrics()
            .call(req.uri().path(), now.into_std());
        let deadline = crate::grpc::header::timeout(req.headers());
        // Two futures rather than one holding either: a unary request's is built and moved
        // into its box on every request, and would otherwise be as large as both.
        match method.kind {
            MethodKind::Unary => {
                let (parts, body) = req.into_parts();
                let replay = Replay::new(parts, method, self.shared.make.reads_extensions());
                let unary = driver::run(self.clone(), replay, body, avoid, deadline, now);
                ResponseFuture::new(timer.time(unary))
            }
            kind => {
                let pinned = req
                    .extensions_mut()
                    .remove::<super::EvenIfEjected>()
                    .map(|p| p.0.index());
                ResponseFuture::new(
                    timer.time(self.clone().stream(req, avoid, pinned, kind, deadline)),
                )
            }
        }
    }

    /// Sends a stream or a long-blocking call, once: to the `pinned` member if it is one
    /// (see [`EvenIfEjected`](super::EvenIfEjected)), else to one picked as usual.
    async fn stream(
        self,
        req: Request<tonic::body::Body>,
        avoid: Vec<usize>,
        pinned: Option<usize>,
        kind: MethodKind,
        deadline: Option<Duration>,
    ) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        let config = self.shared.health.config();
        let entries = self.shared.health.entries();
        let pinned = pinned.and_then(|i| entries.iter().find(|e| e.member().index() == i));
        let entry = match pinned {
            Some(entry) => entry.clone(),
            None => match pick(&entries, config.all_unhealthy, &avoid) {
                Ok(entry) => entry,
                Err(status) => return Err(status.into()),
            },
        };
        let limits = Limits {
            deadline,
            callers_deadline: deadline.is_some(),
            hang_after: None,
            has_leader: config.require_leader,
        };
        match self.attempt_on(entry, &entries, req, kind, limits).await {
            Attempt::Answer(response) => Ok(response),
            Attempt::Failed(failure) => failure.into_result(),
        }
    }

    /// One attempt on one member; `entries` is the membership `entry` was picked from.
    async fn attempt_on(
        &self,
        entry: std::sync::Arc<MemberEntry>,
        entries: &[std::sync::Arc<MemberEntry>],
        req: Request<tonic::body::Body>,
        kind: MethodKind,
        limits: Limits,
    ) -> Attempt {
        let svc = self.service_for(&entry, entries);
        let now = Instant::now();
        let tracker = self.tracker(entry, now);
        attempt(svc, req, tracker, kind, limits, now).await
    }

    /// Follows a request to `entry` from `now` on.
    fn tracker(&self, entry: Arc<MemberEntry>, now: Instant) -> Tracker {
        Tracker::start(self.shared.judge.clone(), entry, now.into_std())
    }
}

/// The unary driver reaches the members through the balancer: their services, the trackers
/// that judge their answers, the hedging estimates.
#[allow(
    private_bounds,
    reason = "a crate-internal trait: the bound never shows"
)]
impl<M> Members for Balance<M>
where
    M: MakeMember + Send + Sync + 'static,
    M::Service: GrpcService + Clone + Sync,
{
    type Health = BalanceHealth;

    fn health(&self) -> &BalanceHealth {
        &self.shared.health
    }

    fn hedge(&self, hedging: Hedging) -> Option<&HedgeDelay> {
        self.shared.hedge.of(hedging)
    }

    /// The member's service and the load tracker are taken here, so the future is the attempt
    /// itself (each layer of `async` around it would be one more copy of it per request).
    fn attempt(
        &self,
        entry: Arc<MemberEntry>,
        entries: &[Arc<MemberEntry>],
        req: Request<tonic::body::Body>,
        limits: Limits,
        now: Instant,
    ) -> futures_util::future::BoxFuture<'static, Attempt> {
        let svc = self.service_for(&entry, entries);
        let tracker = self.tracker(entry, now);
        Box::pin(attempt(svc, req, tracker, MethodKind::Unary, limits, now))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::balance::Balance;
    use crate::checker::HealthChecker;
    use crate::config::Config;
    use crate::health::{Outcome, Source, Status};
    use crate::member::Member;

    /// A member put back into rotation is reached through a service made anew (its old
    /// connection may stay silent after the fault); one that stays in rotation, or stays out,
    /// keeps its own.
    #[tokio::test]
    async fn a_member_back_in_rotation_gets_a_new_service() {
        let mut config = Config::default();
        config.ejection.base = Duration::ZERO;
        config.ejection.jitter = 0.0;
        let checker = HealthChecker::new(&["http://127.0.0.1:1", "http://127.0.0.1:2"], config)
            .expect("checker");
        let made = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let record = made.clone();
        let make = move |m: &Member| {
            record.lock().unwrap().push(m.index());
            tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
                Err::<http::Response<tonic::body::Body>, tower::BoxError>("unused".into())
            })
        };
        let balance = Balance::new(checker.clone(), make);
        let entries = checker.entries();
        let (first, second) = (&entries[0], &entries[1]);
        let services = |balance: &Balance<_>| {
            let _ = balance.service_for(first, &entries);
            let _ = balance.service_for(second, &entries);
        };
        services(&balance);
        services(&balance);
        assert_eq!(*made.lock().unwrap(), [0, 1], "each made once");

        let member = first.member().clone();
        let status = checker.record(&member, Source::Passive, Outcome::TcpFailure);
        assert_eq!(status, Some(Status::Unhealthy));
        services(&balance);
        assert_eq!(
            *made.lock().unwrap(),
            [0, 1],
            "an ejected member keeps its service"
        );

        let status = checker.record(&member, Source::Active, Outcome::Success);
        assert_eq!(status, Some(Status::Healthy));
        services(&balance);
        services(&balance);
        assert_eq!(
            *made.lock().unwrap(),
            [0, 1, 0],
            "made anew once on re-admission; the other member's kept"
        );
    }
}
