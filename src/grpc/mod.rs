//! gRPC as the stack carries it: the one shape of service and body, the status taken from
//! headers or trailers and made safe to hand on ([`sanitize`]), transport errors described
//! whole ([`describe`]).
//!
//! Why a module of its own: the balancer, the passive checks, the auth layer, the probes and the
//! drop-in all read gRPC answers; these are facts of gRPC, not of etcd (see `etcd/`) nor of
//! any one of them. It imports nothing of the crate.
//!
//! Why traits of our own: a member's channel, the balancer, the auth layer and the stream
//! helpers all take "a tower service that carries tonic's requests, answers with a body of
//! `Bytes` frames, and may move to another task"; spelled out, that is five bounds, which every
//! impl taking one would repeat. These traits say it once. Their blanket impls make every such
//! service and body one, so the set of types accepted is exactly what the bounds say, and
//! nothing is boxed: the hot path stays generic.

mod error;
pub(crate) mod header;
mod sanitize;

pub(crate) use error::{chain, describe};
pub(crate) use sanitize::{sanitize, status_of, Sanitize, SanitizedBody};

use bytes::Bytes;
use http::{Request, Response};
use tower::Service;

/// A response body of `Bytes` frames whose errors box.
pub(crate) trait GrpcBody:
    http_body::Body<Data = Bytes, Error: Into<tower::BoxError>>
{
}

impl<B> GrpcBody for B
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
}

/// A service that carries tonic's requests to etcd and may move to another task: a member's
/// channel, the balancer, or any stack over them.
pub(crate) trait GrpcService:
    Service<
        Request<tonic::body::Body>,
        Response = Response<Self::ResponseBody>,
        Future: Send,
        Error: Into<tower::BoxError>,
    > + Send
    + 'static
{
    /// The body of its answers.
    type ResponseBody: GrpcBody + Send + 'static;
}

impl<S, B> GrpcService for S
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
    B: GrpcBody + Send + 'static,
{
    type ResponseBody = B;
}
