//! The response future of [`Balance`](super::Balance).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Inner = Pin<
    Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, tower::BoxError>> + Send>,
>;

/// Resolves to the member's response; errors are [`tonic::Status`] values naming the member.
pub struct ResponseFuture {
    inner: Inner,
}

impl ResponseFuture {
    pub(crate) fn new<F>(f: F) -> Self
    where
        F: Future<Output = Result<http::Response<tonic::body::Body>, tower::BoxError>>
            + Send
            + 'static,
    {
        Self { inner: Box::pin(f) }
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<tonic::body::Body>, tower::BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
