//! The response future of [`Balance`](super::Balance).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Inner = Pin<
    Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, tower::BoxError>> + Send>,
>;

/// A change made to the response as it comes out (the drop-in's token refusals).
type MapResponse = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

/// Resolves to the member's response; errors are [`tonic::Status`] values naming the member.
pub struct ResponseFuture {
    inner: Inner,
    map: Option<MapResponse>,
}

impl ResponseFuture {
    #[inline(always)]
    pub(crate) fn new<F>(f: F) -> Self
    where
        F: Future<Output = Result<http::Response<tonic::body::Body>, tower::BoxError>>
            + Send
            + 'static,
    {
        Self {
            inner: Box::pin(f),
            map: None,
        }
    }

    /// The same future, its response passed through `map`: no second box per request, as
    /// wrapping it in another future would take.
    pub(crate) fn map_response(mut self, map: MapResponse) -> Self {
        self.map = Some(map);
        self
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<tonic::body::Body>, tower::BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = std::task::ready!(self.inner.as_mut().poll(cx));
        Poll::Ready(match (answer, self.map) {
            (Ok(response), Some(map)) => Ok(map(response)),
            (answer, _) => answer,
        })
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
