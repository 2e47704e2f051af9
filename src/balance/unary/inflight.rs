//! The attempts of one request that are in flight.
//!
//! Why not `FuturesUnordered`: a request has one attempt in flight almost always and a few at
//! most (hedges, retries while an outrun attempt runs on), and `FuturesUnordered` allocates a
//! ready queue, a stub task and a task node per future to schedule each independently — three
//! allocations and their reference counting on every request. Polling the few futures in turn
//! when any of them wakes costs less than that bookkeeping.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

/// A handful of futures polled in turn, each with a tag (its copy's slot); yields each output
/// once with its tag, in completion order. The first one pushed is held apart, so the usual
/// request (one attempt) allocates no vector; the others' vector is boxed (a word where a
/// vector takes three), as this lives in every unary request's future, and a request rarely has
/// two copies in flight. The tag is kept here rather than in a `map` around each future, so a
/// future is boxed as it was made (one move fewer per attempt).
pub(crate) struct InFlight<T> {
    first: Option<Tagged<T>>,
    #[allow(
        clippy::box_collection,
        reason = "a word in every request's future; the extra allocation only with hedges"
    )]
    more: Option<Box<Vec<Tagged<T>>>>,
}

/// A future in flight and its tag.
type Tagged<T> = (usize, BoxFuture<'static, T>);

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> InFlight<T> {
    pub(crate) fn new() -> Self {
        Self {
            first: None,
            more: None,
        }
    }

    pub(crate) fn push(&mut self, tag: usize, future: BoxFuture<'static, T>) {
        match self.first {
            None => self.first = Some((tag, future)),
            Some(_) => self
                .more
                .get_or_insert_with(Box::default)
                .push((tag, future)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map_or(0, |more| more.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next output; `None` once none is left.
    pub(crate) fn next(&mut self) -> Next<'_, T> {
        Next { set: self }
    }
}

/// Future of [`InFlight::next`].
pub(crate) struct Next<'a, T> {
    set: &'a mut InFlight<T>,
}

impl<T> Future for Next<'_, T> {
    type Output = Option<(usize, T)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<(usize, T)>> {
        let set = &mut *self.set;
        if set.is_empty() {
            return Poll::Ready(None);
        }
        if let Some((tag, first)) = &mut set.first {
            if let Poll::Ready(out) = first.as_mut().poll(cx) {
                let tag = *tag;
                set.first = None;
                return Poll::Ready(Some((tag, out)));
            }
        }
        let more = set
            .more
            .as_deref_mut()
            .map_or(&mut [][..], |more| &mut more[..]);
        for i in 0..more.len() {
            let (tag, future) = &mut more[i];
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                let tag = *tag;
                if let Some(more) = &mut set.more {
                    drop(more.swap_remove(i));
                }
                return Poll::Ready(Some((tag, out)));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn yields_each_output_once_in_completion_order() {
        use std::time::Duration;
        let mut set = InFlight::new();
        for (n, ms) in [(1, 30), (2, 10), (3, 20), (4, 5)] {
            set.push(
                n * 10,
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    n
                }),
            );
        }
        assert_eq!(set.len(), 4);
        let mut got = Vec::new();
        while let Some((tag, n)) = set.next().await {
            assert_eq!(tag, n * 10, "each output with its own tag");
            got.push(n);
        }
        assert_eq!(got, [4, 2, 3, 1]);
        assert!(set.is_empty());
        assert_eq!(set.next().await, None);
    }
}
