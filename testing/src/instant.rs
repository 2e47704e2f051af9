//! An in-process fake member that answers every unary request at once, and what the request
//! path's counts need around it: a config with nothing running in the background, and one
//! get or put through tonic's `KvClient`.
//!
//! Why here: `tests/allocations.rs` (the allocation budget of a request) and
//! `examples/overhead_profile.rs` (its allocation and CPU counts) measure the same request path
//! over the same member; one copy keeps the two figures comparable. No socket and no etcd:
//! the member is a `tower::Service` the stack calls directly (`Balance::new(checker, |_|
//! member.clone())`), so what is counted is the stack's own work.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use etcd_health::config::Config;
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use hyper::body::Frame;

/// The body of an [`InstantMember`]'s answer: an empty message, then `grpc-status: 0` in the
/// trailers (allocation-free: a fixed array of two frames).
pub type InstantBody = http_body_util::StreamBody<
    futures_util::stream::Iter<std::array::IntoIter<Result<Frame<Bytes>, Infallible>, 2>>,
>;

/// A fake etcd member: reads the request body as hyper would, then answers an empty message
/// (an empty `RangeResponse` or `PutResponse`) with `grpc-status: 0` in its trailers, at once,
/// or once its gate opens ([`InstantMember::gated`]).
#[derive(Clone, Debug, Default)]
pub struct InstantMember {
    gate: Option<tokio::sync::watch::Receiver<bool>>,
    arrived: Arc<AtomicUsize>,
}

impl InstantMember {
    /// A member answering every request at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A member that answers each request only once `gate` holds `true` (requests pile up in
    /// flight meanwhile).
    pub fn gated(gate: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            gate: Some(gate),
            arrived: Arc::default(),
        }
    }

    /// Requests whose body this member (or a clone of it) has read.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::Relaxed)
    }
}

/// Answers with a `tonic::body::Body`, as a tonic `Channel` does (it boxes hyper's body once,
/// whoever calls it): a stack that reads a member's answer takes a channel's body as it is,
/// and the stubs straight to the member box it once either way, so the counts compare the
/// stack's own work, not the fake's body type.
impl tower::Service<http::Request<tonic::body::Body>> for InstantMember {
    type Response = http::Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let gate = self.gate.clone();
        let arrived = self.arrived.clone();
        Box::pin(async move {
            http_body_util::BodyExt::collect(req.into_body()).await?;
            arrived.fetch_add(1, Ordering::Relaxed);
            if let Some(mut gate) = gate {
                let _ = gate.wait_for(|open| *open).await;
            }
            Ok(ok_response().map(tonic::body::Body::new))
        })
    }
}

/// The answer of an [`InstantMember`]: one gRPC message of length 0 (the default value of
/// any response type), then `grpc-status: 0` in the trailers. Also what a fake member served
/// over a real HTTP/2 connection can answer.
pub fn ok_response() -> http::Response<InstantBody> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [
        // An empty message: no compression flag, length 0.
        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(http_body_util::StreamBody::new(
        futures_util::stream::iter(frames),
    ));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// `n` endpoints on loopback ports `1..=n`, where nothing listens: for a health state whose
/// members are [`InstantMember`]s (the stack never dials them).
pub fn endpoints(n: u16) -> Vec<String> {
    (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect()
}

/// The config of the in-process stacks: nothing runs in the background (no discovery, no
/// leader checks; healthy members are probed seconds apart), so every allocation counted is a
/// request's.
pub fn quiet_config() -> Config {
    let mut config = Config::default();
    config.discovery.member_list = false;
    config.discovery.dns_interval = Duration::ZERO;
    config.leader.interval = Duration::ZERO;
    config
}

/// The key [`one`] reads or writes.
pub const KEY: &[u8] = b"bench/key";
/// The value [`one`] writes (16 bytes).
pub const VALUE: &[u8] = b"0123456789abcdef";

/// A unary request of the counts: a get of [`KEY`] or a put of [`VALUE`] to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `KV/Range` of [`KEY`].
    Get,
    /// `KV/Put` of [`KEY`] = [`VALUE`].
    Put,
}

/// Sends one `op` through `kv` and panics unless it is answered with OK.
pub async fn one<T>(kv: &KvClient<T>, op: Op)
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
                key: KEY.to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Put => kv
            .put(PutRequest {
                key: KEY.to_vec(),
                value: VALUE.to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
    };
    answer.expect("the fake member answers");
}
