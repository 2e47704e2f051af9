//! The copy of a unary request kept to send it again (a retry, a hedge): its head and its
//! whole body.
//!
//! Why a room of its own: keeping the request is what lets a read be hedged and any request
//! be retried, and it is most of what the balancer adds to a request's cost (see
//! `docs/overhead-profile.md`): how the body is read and kept, and how each copy is made,
//! is decided here and measured by `tests/allocations.rs`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};

use crate::balance::hint::mark_served;
use crate::etcd::Method;
use crate::member::Member;

/// Request bodies up to this size are copied out of tonic's encoding buffer (see [`buffer`]).
const COPY_BODY_UP_TO: usize = 4096;

/// A unary request kept to be sent again: its head and its whole body.
///
/// Why held in the unary driver's future rather than boxed: that future is itself boxed on
/// every request and keeps the request's head from its start anyway, so the head is kept
/// where it already is (no allocation of its own); the future stays under 1 KiB, which
/// glibc's allocator serves from a per-thread cache (larger blocks come from its shared arenas,
/// which consolidate free blocks on the way; see `docs/overhead-profile.md`).
pub(crate) struct Replay {
    parts: http::request::Parts,
    /// The whole body, in a buffer of its own (see [`buffer`]): what every copy after the
    /// first sends.
    body: Bytes,
    /// The body as tonic encoded it, for the first copy only (empty once sent, or when it is
    /// `body` itself): sending it leaves `body` unshared, and a `Bytes` shared for the first
    /// time allocates its reference count.
    first: Bytes,
    /// What it is (etcd's table), once [`keep`](Self::keep) read what its body says
    /// ([`Method::for_body`]: a `Txn` of reads is a read; a `Range` over many keys, like a
    /// write or an expensive read, is never hedged).
    method: Method,
    /// The call's retries and hedges (gRFC A96's per-call metrics), recorded on drop.
    tally: crate::metrics::CallTally,
    /// tonic's method name, when it is the request's only extension (every request of a tonic
    /// stub): the first copy then takes the request's own map, and the copies after it are
    /// given this one value. A map cloned costs three allocations (the map, its table, the
    /// value), and most requests make one copy. With other extensions, each copy gets the map
    /// cloned whole.
    grpc_method: Option<tonic::GrpcMethod<'static>>,
    /// The request's headers for the copies after the first, which takes the request's own
    /// map: kept as a list (one allocation, where a map cloned costs two), made into a map for
    /// each later copy. Empty until the first copy is made.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.tally.ended(self.parts.uri.path());
    }
}

impl Replay {
    /// A request whose body is still to be read (see [`keep`](Self::keep)).
    pub(crate) fn new(parts: http::request::Parts, method: Method) -> Self {
        let grpc_method = match parts.extensions.len() {
            1 => parts
                .extensions
                .get::<tonic::GrpcMethod<'static>>()
                .cloned(),
            _ => None,
        };
        Self {
            grpc_method,
            headers: Vec::new(),
            parts,
            body: Bytes::new(),
            first: Bytes::new(),
            method,
            tally: crate::metrics::CallTally::default(),
        }
    }

    /// Keeps the request's body, as [`buffer`] read it, and learns what the body says of the
    /// method ([`Method::for_body`]; `max_range_limit` decides whether a range may be hedged;
    /// other methods' bodies are not read). Not inlined: the decoders' locals would otherwise
    /// take room in the request's future, which is at its size limit.
    #[inline(never)]
    pub(crate) fn keep(&mut self, (body, first): (Bytes, Bytes), max_range_limit: u64) {
        // Read from tonic's frame when there is one: sharing it allocates nothing more.
        let frame = if first.is_empty() { &body } else { &first };
        self.method = self.method.for_body(frame, max_range_limit);
        self.body = body;
        self.first = first;
    }

    /// What the request is (etcd's table, and what its body said once kept).
    pub(crate) fn method(&self) -> Method {
        self.method
    }

    /// The request's path, `/service/method`.
    pub(crate) fn path(&self) -> &str {
        self.parts.uri.path()
    }

    /// One more copy of the request went out as a retry (gRFC A96's per-call count).
    pub(crate) fn retried(&mut self, metrics: &crate::metrics::Checker) {
        self.tally.retried(metrics);
    }

    /// One more copy of the request went out as a hedge (gRFC A96's per-call count).
    pub(crate) fn hedged(&mut self, metrics: &crate::metrics::Checker) {
        self.tally.hedged(metrics);
    }

    /// The answer the caller gets, marked as served by `member` (see [`mark_served`]): no
    /// copy is made after it, so the kept head's extensions, if the first copy did not take
    /// them, may serve as its map.
    pub(crate) fn answer(
        &mut self,
        mut response: Response<tonic::body::Body>,
        member: &Member,
    ) -> Response<tonic::body::Body> {
        mark_served(
            response.extensions_mut(),
            member,
            &mut self.parts.extensions,
        );
        response
    }

    /// A copy to send.
    pub(crate) fn request(&mut self) -> Request<tonic::body::Body> {
        let body = match std::mem::take(&mut self.first) {
            first if first.is_empty() => self.body.clone(),
            first => first,
        };
        let mut req = Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = self.parts.uri.clone();
        *req.version_mut() = self.parts.version;
        *req.headers_mut() = match self.parts.headers.is_empty() {
            // The first copy (of a request with headers): the list is made, the map taken.
            false => {
                self.headers.reserve_exact(self.parts.headers.len());
                let all = self.parts.headers.iter();
                self.headers
                    .extend(all.map(|(n, v)| (n.clone(), v.clone())));
                std::mem::take(&mut self.parts.headers)
            }
            true => {
                let mut headers = http::HeaderMap::with_capacity(self.headers.len());
                for (name, value) in &self.headers {
                    headers.append(name.clone(), value.clone());
                }
                headers
            }
        };
        *req.extensions_mut() = match &self.grpc_method {
            // The first copy takes the map; the others get tonic's method alone, as it was.
            Some(grpc_method) if self.parts.extensions.is_empty() => {
                let mut extensions = http::Extensions::new();
                extensions.insert(grpc_method.clone());
                extensions
            }
            Some(_) => std::mem::take(&mut self.parts.extensions),
            None => self.parts.extensions.clone(),
        };
        req
    }
}

/// A copy of a buffered unary request, to send (again).
pub(crate) fn replay(parts: &http::request::Parts, body: &Bytes) -> Request<tonic::body::Body> {
    replay_with(parts, body.clone())
}

/// A request of `parts`' head and `body`.
fn replay_with(parts: &http::request::Parts, body: Bytes) -> Request<tonic::body::Body> {
    let mut req = Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

/// The whole body of a unary request in a buffer of its own, and tonic's frame that carried it
/// (empty when it is the buffer itself, or when there were several).
///
/// tonic encodes a unary message as one data frame, split off its 8 KiB encoding buffer: that
/// `Bytes` keeps the whole buffer alive for as long as it is. A small message is therefore
/// copied to be kept (a few dozen bytes for a typical etcd request, against 8 KiB held per
/// request in flight), and the frame itself goes with the first copy of the request (hyper
/// drops it once written, as behind a raw channel); a large one fills its buffer anyway and is
/// kept as it is. More frames are joined.
pub(crate) async fn buffer(body: tonic::body::Body) -> Result<(Bytes, Bytes), tower::BoxError> {
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        // A unary request has no trailers: data frames only.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
            (Some(first), None) => {
                let mut both = bytes::BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(first);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(match (joined, first) {
        (Some(joined), _) => (joined.freeze(), Bytes::new()),
        (None, Some(first)) if first.len() <= COPY_BODY_UP_TO => {
            (Bytes::copy_from_slice(&first), first)
        }
        (None, first) => (first.unwrap_or_default(), Bytes::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-key read, as tonic frames it.
    fn range() -> http::Request<tonic::body::Body> {
        use prost::Message;
        let msg = crate::proto::etcdserverpb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        http::Request::builder()
            .uri("/etcdserverpb.KV/Range")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from(framed),
            )))
            .expect("request")
    }

    /// A small body is copied out of the frame that carried it (which may pin a large
    /// buffer), and the frame handed on for the first copy; a large one is kept as it is;
    /// several frames are joined.
    #[tokio::test]
    async fn buffers_request_bodies() {
        use bytes::Bytes;
        let small = Bytes::from(vec![7u8; 10]);
        let (kept, first) = buffer(tonic::body::Body::new(http_body_util::Full::new(
            small.clone(),
        )))
        .await
        .expect("body");
        assert_eq!(kept, small);
        assert_ne!(kept.as_ptr(), small.as_ptr(), "copied");
        assert_eq!(
            first.as_ptr(),
            small.as_ptr(),
            "the frame, for the first copy"
        );

        let large = Bytes::from(vec![7u8; COPY_BODY_UP_TO + 1]);
        let (kept, first) = buffer(tonic::body::Body::new(http_body_util::Full::new(
            large.clone(),
        )))
        .await
        .expect("body");
        assert_eq!(kept.as_ptr(), large.as_ptr(), "kept");
        assert!(first.is_empty());

        let frames: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"cd"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"e"))),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let (kept, first) = buffer(tonic::body::Body::new(body)).await.expect("body");
        assert_eq!(kept, Bytes::from_static(b"abcde"));
        assert!(first.is_empty());
        assert_eq!(
            buffer(tonic::body::Body::empty()).await.expect("body"),
            (Bytes::new(), Bytes::new())
        );
    }

    /// Every copy of a kept request carries the whole body: the first tonic's own frame, the
    /// others the kept buffer.
    #[tokio::test]
    async fn every_copy_of_a_kept_request_carries_its_body() {
        use http_body_util::BodyExt;
        let (parts, body) = range().into_parts();
        let mut replay = Replay::new(parts, crate::etcd::Method::of("/etcdserverpb.KV/Put"));
        let kept = buffer(body).await.expect("body");
        let whole = kept.0.clone();
        assert!(whole.len() > 5, "a framed message");
        replay.keep(kept, 0);
        for _ in 0..3 {
            let req = replay.request();
            assert_eq!(req.uri().path(), "/etcdserverpb.KV/Range");
            let got = req.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(got, whole);
        }
    }

    /// Every copy carries the request's headers (the first copy takes the request's map, the
    /// others a map made anew) and its extensions: tonic's method alone (the first copy takes
    /// the request's own map, the others a map of it), or whatever else the caller put there
    /// (a clone each).
    #[tokio::test]
    async fn every_copy_carries_the_requests_headers_and_extensions() {
        #[derive(Clone, Debug, PartialEq)]
        struct Mine(u8);
        let method = tonic::GrpcMethod::new("etcdserverpb.KV", "Range");
        for with_mine in [false, true] {
            let (mut parts, body) = range().into_parts();
            parts.extensions.insert(method.clone());
            let h = |s: &'static str| http::HeaderValue::from_static(s);
            parts.headers.insert("te", h("trailers"));
            parts.headers.append("token", h("a"));
            parts.headers.append("token", h("b"));
            let headers = parts.headers.clone();
            if with_mine {
                parts.extensions.insert(Mine(7));
            }
            let mut replay = Replay::new(parts, crate::etcd::Method::of("/etcdserverpb.KV/Range"));
            replay.keep(buffer(body).await.expect("body"), 0);
            for copy in 0..3 {
                let req = replay.request();
                let got = req.extensions().get::<tonic::GrpcMethod<'static>>();
                assert_eq!(
                    got.map(|m| (m.service(), m.method())),
                    Some(("etcdserverpb.KV", "Range")),
                    "copy {copy}"
                );
                let mine = req.extensions().get::<Mine>();
                assert_eq!(mine, with_mine.then_some(&Mine(7)), "copy {copy}");
                assert_eq!(
                    req.extensions().len(),
                    1 + usize::from(with_mine),
                    "copy {copy}"
                );
                assert_eq!(
                    req.headers(),
                    &headers,
                    "copy {copy}: every header, every value"
                );
            }
        }
    }
}
