//! gRPC as the stack carries it: the one shape of service and body, the status taken from
//! headers or trailers and made safe to hand on ([`sanitize`](fn@sanitize)), transport errors
//! described whole ([`describe`]), and which of them prove a request never reached the member
//! ([`unsent`](fn@unsent)).
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
//! nothing is boxed: the hot path stays generic. They are public (as
//! [`extend::GrpcService`](crate::extend::GrpcService) and `GrpcBody`) because they appear in
//! public bounds, where users must be able to name them, and sealed, because they only name a
//! set of bounds: no one should implement them by hand.

mod error;
pub(crate) mod header;
mod sanitize;
mod unsent;

pub(crate) use error::{chain, describe};
pub(crate) use sanitize::{sanitize, status_from, status_of, Sanitize, SanitizedBody};
pub(crate) use unsent::unsent;

use bytes::Bytes;
use http::{Request, Response};
use tower::Service;

/// A response body of `Bytes` frames whose errors box: the body of every answer the stack
/// carries (a member's channel's, and the [`Balance`](crate::Balance)'s own).
///
/// Sealed: implemented for every `http_body::Body<Data = Bytes>` whose error converts into
/// [`tower::BoxError`], and for nothing else; it only names that set of bounds.
pub trait GrpcBody:
    http_body::Body<Data = Bytes, Error: Into<tower::BoxError>> + sealed::Body
{
}

impl<B> GrpcBody for B
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
}

/// A service that carries tonic's requests to etcd and may move to another task: a member's
/// channel, the balancer, or any stack over them. The bound on what
/// [`MakeMember`](crate::extend::MakeMember) makes, and on what
/// [`IntoBoxChannel`](crate::extend::IntoBoxChannel), the auth layer and the drop-in take.
///
/// Sealed: it only names, once, the five bounds such a service meets (a tower `Service` of
/// `http::Request<tonic::body::Body>`, answering `http::Response` with a [`GrpcBody`], its
/// future `Send`, its error converting into [`tower::BoxError`], itself `Send + 'static`).
/// Every such service implements it already (a `tonic::transport::Channel`, a
/// [`Balance`](crate::Balance), an [`Auth`](crate::auth::Auth), your own tower stack over
/// them); nothing else can.
///
/// ```
/// fn takes_any_member_service<S: etcd_health::extend::GrpcService>(_: S) {}
///
/// # fn demo(channel: tonic::transport::Channel) {
/// takes_any_member_service(channel);
/// # }
/// ```
pub trait GrpcService:
    Service<
        Request<tonic::body::Body>,
        Response = Response<Self::ResponseBody>,
        Future: Send,
        Error: Into<tower::BoxError>,
    >
    + Send
    + 'static
    + sealed::Service
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

/// The seals: public traits in a private module, so no one outside the crate can name them,
/// hence implement [`GrpcService`] or [`GrpcBody`] for a type the blanket impls leave out.
mod sealed {
    use super::*;

    /// Seals [`GrpcBody`].
    pub trait Body {}

    impl<B> Body for B
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<tower::BoxError>,
    {
    }

    /// Seals [`GrpcService`].
    pub trait Service {}

    impl<S, B> Service for S
    where
        S: tower::Service<Request<tonic::body::Body>, Response = Response<B>> + Send + 'static,
        S::Future: Send,
        S::Error: Into<tower::BoxError>,
        B: super::GrpcBody + Send + 'static,
    {
    }
}
