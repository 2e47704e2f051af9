//! Allocations the health stack adds to a unary request, counted (not timed): the same tonic
//! stubs over an in-process fake member, straight and through [`Balance`], one request at a
//! time on one thread, under a counting global allocator.
//!
//! Why a test: allocation counts do not depend on the machine's load, so the request path's
//! budget can be held like any other behaviour. Throughput and CPU time stay in
//! `docs/overhead-profile.md`, with what each of the allocations left is for.
//!
//! One test in this binary: the allocator counts every thread's allocations, and a second test
//! running beside it would be counted too.

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use etcd_health::config::Config;
use etcd_health::observe::Member;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health::{Balance, HealthChecker};
use http_body::Frame;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocations the stack may add to a unary request over a raw channel: 18 before issue
/// 28's work on the request path. Issue 28 asked for 5; the copy of the request kept for
/// retries and hedges costs 7 of the 13 left (`docs/overhead-profile.md`).
const STACK_BUDGET: usize = 13;

/// Allocations (and reallocations) so far, every thread's.
fn allocations() -> usize {
    let s = GLOBAL.stats();
    s.allocations + s.reallocations
}

type FakeBody = http_body_util::StreamBody<
    futures_util::stream::Iter<std::array::IntoIter<Result<Frame<Bytes>, Infallible>, 2>>,
>;

/// A fake etcd member: reads the request body as hyper would, then answers an empty message
/// with `grpc-status: 0` in its trailers, at once.
#[derive(Clone, Debug)]
struct FakeMember;

impl tower::Service<http::Request<tonic::body::Body>> for FakeMember {
    type Response = http::Response<FakeBody>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            http_body_util::BodyExt::collect(req.into_body()).await?;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = [
                // An empty message: no compression flag, length 0.
                Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                Ok(Frame::trailers(trailers)),
            ];
            let mut resp = http::Response::new(http_body_util::StreamBody::new(
                futures_util::stream::iter(frames),
            ));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            Ok(resp)
        })
    }
}

/// Nothing in the background (no discovery, no leader checks; healthy members are probed
/// seconds apart): every allocation counted is a request's.
fn quiet_config() -> Config {
    let mut config = Config::default();
    config.discovery.member_list = false;
    config.discovery.dns_interval = Duration::ZERO;
    config.leader.interval = Duration::ZERO;
    config
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Put,
}

async fn one<T>(kv: &KvClient<T>, op: Op)
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut kv = kv.clone();
    let answer = match op {
        Op::Get => kv
            .range(RangeRequest {
                key: b"key".to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Put => kv
            .put(PutRequest {
                key: b"key".to_vec(),
                value: b"value".to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
    };
    answer.expect("the fake member answers");
}

/// The median allocations of one request, over `n` requests after as many to warm up.
async fn per_request<T>(kv: &KvClient<T>, op: Op, n: usize) -> usize
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    for _ in 0..n {
        one(kv, op).await;
    }
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        let before = allocations();
        one(kv, op).await;
        counts.push(allocations() - before);
    }
    counts.sort_unstable();
    counts[n / 2]
}

/// Through `Balance` over three fake members, a unary get or put makes at most
/// [`STACK_BUDGET`] allocations more than the same stubs straight to the fake member.
#[tokio::test]
async fn the_stack_adds_at_most_13_allocations_per_unary_request() {
    let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
    let checker = HealthChecker::new(&endpoints, quiet_config()).expect("checker");
    let direct = KvClient::new(FakeMember);
    let stack = KvClient::new(Balance::new(checker, |_: &Member| FakeMember));
    let mut added = Vec::new();
    for op in [Op::Get, Op::Put] {
        let raw = per_request(&direct, op, 200).await;
        let through = per_request(&stack, op, 200).await;
        added.push((op, raw, through));
    }
    for (op, raw, through) in added.iter().copied() {
        assert!(
            through <= raw + STACK_BUDGET,
            "{op:?}: {through} allocations through the stack, {raw} straight: {} added, \
             at most {STACK_BUDGET} allowed (all: {added:?})",
            through.saturating_sub(raw)
        );
    }
}
