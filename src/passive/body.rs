//! A response body that reports the gRPC status found in its trailers.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{NotLeader, Tracker};
use crate::etcd::MethodKind;
use crate::grpc::GrpcBody;
use crate::health::Outcome;

pin_project! {
    /// Passes frames through; on trailers, end of stream or error, reports to the tracker.
    #[derive(Debug)]
    pub(crate) struct ClassifiedBody<B> {
        #[pin]
        inner: B,
        tracker: Option<Tracker>,
        kind: MethodKind,
    }
}

impl<B> ClassifiedBody<B> {
    pub(crate) fn new(inner: B, tracker: Tracker, kind: MethodKind) -> Self {
        Self {
            inner,
            tracker: Some(tracker),
            kind,
        }
    }
}

impl<B: GrpcBody> Body for ClassifiedBody<B> {
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let unary = *this.kind == MethodKind::Unary;
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    if let Some(tracker) = this.tracker.take() {
                        if crate::grpc::header::find(trailers, &crate::grpc::header::STATUS)
                            .map(|v| v.as_bytes())
                            == Some(b"0")
                        {
                            // The common case, read without building a `tonic::Status` (an
                            // allocation on every answer).
                            tracker.finish(Some(Outcome::Success), unary);
                            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
                        }
                        match crate::grpc::status_of(trailers) {
                            Some(status) => {
                                tracker.finish_status(&status, *this.kind, NotLeader::Classified);
                            }
                            None => tracker.finish(judge(Outcome::Success, *this.kind), unary),
                        }
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(tracker) = this.tracker.take() {
                    let outcome = judge(Outcome::TcpFailure, *this.kind);
                    tracker.finish(outcome, false);
                }
            }
            None => {
                // Ended without trailers: nothing to judge.
                this.tracker.take();
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Long-blocking calls and streams never count timeouts.
pub(crate) fn judge(outcome: Outcome, kind: MethodKind) -> Option<Outcome> {
    match (outcome, kind) {
        (Outcome::Timeout, MethodKind::LongBlocking | MethodKind::Stream) => None,
        (o, _) => Some(o),
    }
}
