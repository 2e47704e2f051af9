//! A unary answer read within its attempt, handed on as a body again.
//!
//! Why read it first: an answer whose head arrived may still break off before its message or
//! its status (a member killed mid-answer). Handed on as it arrives, that would reach the
//! caller as a bare protocol error, past any retry; read to its end within the attempt, it is
//! a failed attempt like any other: a read goes to another member, a write is reported as
//! *outcome unknown*. tonic reads a unary answer whole before decoding it anyway, so nothing is
//! held longer than it would be.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// Data frames in order, the first without an allocation of its own (most answers are one).
#[derive(Debug, Default)]
pub(crate) struct Frames {
    first: Option<Bytes>,
    more: VecDeque<Bytes>,
    /// Bytes in all of them.
    len: usize,
}

impl Frames {
    /// Appends a frame.
    pub(crate) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(data);
        } else {
            self.more.push_back(data);
        }
    }

    /// Bytes in all frames.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no data was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pop(&mut self) -> Option<Bytes> {
        let data = self.first.take().or_else(|| self.more.pop_front())?;
        self.len -= data.len();
        Some(data)
    }
}

/// The data of an answer, then its trailers (or, for an answer too large to read whole, the
/// rest of it as it arrives): what the member sent, replayed to the caller.
#[derive(Debug)]
pub(crate) struct Buffered {
    frames: Frames,
    trailers: Option<HeaderMap>,
    rest: Option<tonic::body::Body>,
}

impl Buffered {
    /// A whole answer: its data, then its trailers.
    pub(crate) fn new(frames: Frames, trailers: Option<HeaderMap>) -> Self {
        Self {
            frames,
            trailers,
            rest: None,
        }
    }

    /// The start of an answer, then the rest of it from `rest`.
    pub(crate) fn then(frames: Frames, rest: tonic::body::Body) -> Self {
        Self {
            frames,
            trailers: None,
            rest: Some(rest),
        }
    }
}

impl Body for Buffered {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        while let Some(data) = self.frames.pop() {
            // An empty frame says nothing; tonic would only skip it.
            if !data.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
        if let Some(rest) = &mut self.rest {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.frames.len() as u64;
        match &self.rest {
            None => SizeHint::with_exact(read),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower().saturating_add(read));
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper.saturating_add(read));
                }
                sum
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn frames(parts: &[&'static [u8]]) -> Frames {
        let mut f = Frames::default();
        for p in parts {
            f.push(Bytes::from_static(p));
        }
        f
    }

    #[tokio::test]
    async fn replays_data_then_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let body = Buffered::new(frames(&[b"ab", b"", b"c"]), Some(trailers));
        assert_eq!(body.size_hint().exact(), Some(3));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"abc"));
        assert!(Buffered::new(Frames::default(), None).is_end_stream());
    }

    #[tokio::test]
    async fn goes_on_with_the_rest() {
        let rest = tonic::body::Body::new(http_body_util::Full::new(Bytes::from_static(b"de")));
        let body = Buffered::then(frames(&[b"abc"]), rest);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"abcde"));
    }
}
