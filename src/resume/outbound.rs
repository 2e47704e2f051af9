//! The request side of a bidirectional stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// The messages a helper sends on its stream, as the `Stream` tonic wants.
///
/// A named type rather than `stream::unfold(..)`: a closure returning an `async` block makes
/// the helpers' futures fail the `Send` check of `tokio::spawn` (higher-ranked lifetimes).
#[derive(Debug)]
pub(crate) struct Outbound<T>(pub(crate) mpsc::Receiver<T>);

impl<T> futures_util::Stream for Outbound<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
