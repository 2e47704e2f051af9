//! gRPC message framing on the caller's side of a resumed stream.
//!
//! Why by hand: the drop-in sits *under* etcd-client's tonic stubs, as their channel. A resumed
//! stream must read the caller's requests one message at a time (to remember and re-send them)
//! and answer with messages of its own choosing (rewritten watch ids, swallowed re-creations),
//! so it speaks the wire format tonic speaks: each message behind a 5-byte header (a
//! compression flag, then the length, big-endian), the status in the trailers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

/// Length of the gRPC message header.
const HEADER: usize = 5;

/// The most a single caller message may take (etcd's own default limit is 1.5 MiB; etcd-client
/// raises tonic's to `i32::MAX`, which no watch or keep-alive request comes near).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Reads the caller's request body as a sequence of protobuf messages.
pub(super) struct Decoder {
    body: tonic::body::Body,
    buf: BytesMut,
    ended: bool,
}

// === impl Decoder ===

impl Decoder {
    pub(super) fn new(body: tonic::body::Body) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            ended: false,
        }
    }

    /// The next message; `None` once the caller closed its side. Cancel-safe: bytes read
    /// stay buffered.
    pub(super) async fn next<M: prost::Message + Default>(
        &mut self,
    ) -> Result<Option<M>, tonic::Status> {
        loop {
            if let Some(message) = self.split()? {
                return M::decode(message).map(Some).map_err(|e| {
                    tonic::Status::internal(format!("the caller's stream message: {e}"))
                });
            }
            if self.ended {
                if !self.buf.is_empty() {
                    return Err(tonic::Status::internal(format!(
                        "the caller's stream ended inside a message ({} bytes left)",
                        self.buf.len()
                    )));
                }
                return Ok(None);
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// One whole message off the buffer, if there is one.
    fn split(&mut self) -> Result<Option<Bytes>, tonic::Status> {
        split_message(&mut self.buf)
    }
}

fn split_message(buf: &mut BytesMut) -> Result<Option<Bytes>, tonic::Status> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let compressed = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if compressed != 0 {
        return Err(tonic::Status::unimplemented(format!(
            "compressed stream messages (flag {compressed}) are not supported by the drop-in's \
             stream resumption"
        )));
    }
    if len > MAX_MESSAGE {
        return Err(tonic::Status::resource_exhausted(format!(
            "a stream message of {len} bytes exceeds {MAX_MESSAGE}"
        )));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    buf.advance(HEADER);
    Ok(Some(buf.split_to(len).freeze()))
}

/// `message` behind its gRPC header.
pub(super) fn encode<M: prost::Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Cannot fail: the buffer was sized for the message.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// The trailers that end a stream with `status`.
pub(super) fn trailers(status: &tonic::Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert(
            crate::grpc::header::STATUS,
            http::HeaderValue::from(status.code() as i32),
        );
    }
    headers
}

/// The response headers of a resumed stream (its messages follow in [`ReplyBody`]).
pub(super) fn response(body: ReplyBody) -> http::Response<tonic::body::Body> {
    let mut resp = http::Response::new(tonic::body::Body::new(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// The caller's response body: the frames the stream's driver hands over.
#[derive(Debug)]
pub(super) struct ReplyBody {
    frames: mpsc::Receiver<Frame<Bytes>>,
}

impl ReplyBody {
    pub(super) fn new(frames: mpsc::Receiver<Frame<Bytes>>) -> Self {
        Self { frames }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.frames.poll_recv(cx).map(|f| f.map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::LeaseKeepAliveRequest;

    #[tokio::test]
    async fn messages_split_across_frames_are_joined_and_several_in_one_are_split() {
        let a = encode(&LeaseKeepAliveRequest { id: 7 });
        let b = encode(&LeaseKeepAliveRequest { id: 300_000 });
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b[..3]);
        let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = vec![
            Ok(Frame::data(both.freeze())),
            Ok(Frame::data(b.slice(3..))),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut d = Decoder::new(tonic::body::Body::new(body));
        let m: LeaseKeepAliveRequest = d.next().await.expect("ok").expect("one");
        assert_eq!(m.id, 7);
        let m: LeaseKeepAliveRequest = d.next().await.expect("ok").expect("two");
        assert_eq!(m.id, 300_000);
        assert!(d
            .next::<LeaseKeepAliveRequest>()
            .await
            .expect("ok")
            .is_none());
    }

    #[tokio::test]
    async fn a_truncated_or_compressed_message_is_a_clear_error() {
        let a = encode(&LeaseKeepAliveRequest { id: 7 });
        let body = http_body_util::Full::new(a.slice(..a.len() - 1));
        let mut d = Decoder::new(tonic::body::Body::new(body));
        let err = d.next::<LeaseKeepAliveRequest>().await.expect_err("cut");
        assert!(err.message().contains("ended inside a message"), "{err:?}");

        let mut c = BytesMut::from(&a[..]);
        c[0] = 1;
        let mut d = Decoder::new(tonic::body::Body::new(http_body_util::Full::new(
            c.freeze(),
        )));
        let err = d
            .next::<LeaseKeepAliveRequest>()
            .await
            .expect_err("compressed");
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    }

    #[test]
    fn trailers_carry_the_status() {
        let t = trailers(&tonic::Status::unavailable("etcdserver: no leader"));
        let s = crate::grpc::status_of(&t).expect("status");
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.message(), "etcdserver: no leader");
    }
}
