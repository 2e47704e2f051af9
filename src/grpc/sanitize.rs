//! Reading a member's gRPC status without trusting it.
//!
//! Why: tonic 0.14 panics (`expect`) on a `grpc-status-details-bin` that is not valid base64,
//! in `Status::from_header_map`, which its client calls on every trailers-only answer and on
//! every trailer block. One buggy or hostile member could so crash the caller's task, or a
//! probe task (leaving that member never probed again). Every response from a member passes
//! through here first: an undecodable details header is dropped (with a warning), the rest is
//! left as the member sent it. Our own classification reads the code and the message without
//! tonic's parser, decoding a non-UTF-8 message lossily: the code still counts (tonic would
//! turn it into `Unknown`, which says nothing about the member).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

use super::header::{DETAILS as GRPC_DETAILS, MESSAGE as GRPC_MESSAGE, STATUS as GRPC_STATUS};

/// The base64 tonic decodes details with: standard alphabet, padding optional.
const DETAILS_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Drops a `grpc-status-details-bin` that tonic could not decode.
pub(crate) fn sanitize(headers: &mut HeaderMap) {
    let bad = super::header::find(headers, &GRPC_DETAILS)
        .is_some_and(|v| DETAILS_BASE64.decode(v.as_bytes()).is_err());
    if bad {
        headers.remove(GRPC_DETAILS);
        tracing::warn!("a member sent an undecodable grpc-status-details-bin; dropped");
    }
}

/// The gRPC status in `headers` (trailers-only answers) or trailers, if any: the code as
/// sent (an unknown number is `Unknown`) and the message percent-decoded, lossily.
pub(crate) fn status_of(headers: &HeaderMap) -> Option<tonic::Status> {
    Some(status_from(
        super::header::find(headers, &GRPC_STATUS)?,
        headers,
    ))
}

/// The gRPC status whose `grpc-status` value, read from `headers` already, is `code`, with
/// the message `headers` carry (as [`status_of`]).
pub(crate) fn status_from(code: &http::HeaderValue, headers: &HeaderMap) -> tonic::Status {
    let code = tonic::Code::from_bytes(code.as_bytes());
    let message = super::header::find(headers, &GRPC_MESSAGE)
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    tonic::Status::new(code, message)
}

pin_project! {
    /// A response body whose trailers are [`sanitize`]d.
    #[derive(Debug)]
    pub(crate) struct SanitizedBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B> SanitizedBody<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self { inner }
    }
}

impl<B: Body<Data = Bytes>> Body for SanitizedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(self.project().inner.poll_frame(cx));
        Poll::Ready(frame.map(|r| {
            r.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    sanitize(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A gRPC client service whose responses are [`sanitize`]d, headers and trailers: what the
/// probes' tonic clients talk through.
#[derive(Clone, Debug)]
pub(crate) struct Sanitize<S> {
    inner: S,
}

impl<S> Sanitize<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Sanitize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<SanitizedBody<ResBody>>;
    type Error = S::Error;
    type Future = futures_util::future::MapOk<
        S::Future,
        fn(Response<ResBody>) -> Response<SanitizedBody<ResBody>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        use futures_util::TryFutureExt as _;
        self.inner.call(req).map_ok(sanitized)
    }
}

fn sanitized<B>(resp: Response<B>) -> Response<SanitizedBody<B>> {
    let (mut parts, body) = resp.into_parts();
    sanitize(&mut parts.headers);
    Response::from_parts(parts, SanitizedBody::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(http::HeaderName, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), http::HeaderValue::from_bytes(v).expect("value"));
        }
        h
    }

    #[test]
    fn undecodable_details_are_dropped_and_tonic_no_longer_panics() {
        let mut h = headers(&[(GRPC_STATUS, b"14"), (GRPC_DETAILS, b"!!not base64")]);
        assert!(std::panic::catch_unwind(|| tonic::Status::from_header_map(&h)).is_err());
        sanitize(&mut h);
        assert!(h.get(GRPC_DETAILS).is_none());
        let status = tonic::Status::from_header_map(&h).expect("a status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        // Valid details, padded or not, stay.
        for ok in [&b"CAE="[..], b"CAE"] {
            let mut h = headers(&[(GRPC_STATUS, b"14"), (GRPC_DETAILS, ok)]);
            sanitize(&mut h);
            assert!(h.get(GRPC_DETAILS).is_some());
            tonic::Status::from_header_map(&h).expect("a status");
        }
    }

    #[test]
    fn a_non_utf8_message_keeps_its_code() {
        let h = headers(&[(GRPC_STATUS, b"14"), (GRPC_MESSAGE, b"no%20leader%FF")]);
        assert_eq!(
            tonic::Status::from_header_map(&h).expect("status").code(),
            tonic::Code::Unknown,
            "what tonic makes of it"
        );
        let status = status_of(&h).expect("status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().starts_with("no leader"), "{status:?}");
        assert!(status_of(&HeaderMap::new()).is_none());
    }
}
