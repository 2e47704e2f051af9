//! The one shape of service and body the stack carries gRPC through.
//!
//! Why traits of our own: a member's channel, the balancer, the auth layer and the stream
//! helpers all take "a tower service that carries tonic's requests, answers with a body of
//! `Bytes` frames, and may move to another task"; spelled out, that is five bounds, which every
//! impl taking one would repeat. These traits say it once. Their blanket impls make every such
//! service and body one, so the set of types accepted is exactly what the bounds say, and
//! nothing is boxed: the hot path stays generic.

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
