//! The copy of a unary request kept to send it again (a retry, a hedge): its head and its
//! whole body.
//!
//! Why a room of its own: keeping the request is what lets a read be hedged and any request
//! be retried, and it is most of what the balancer adds to a request's cost (see
//! `docs/overhead-profile.md`): how the body is read and kept, and how each copy is made,
//! is decided here and measured by `tests/allocations.rs`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};

use crate::balance::hint::{mark_served, AskServedBy};
use crate::etcd::Method;
use crate::member::Member;

/// Request bodies up to this size are copied out of tonic's encoding buffer to be kept (see
/// [`buffer`] and [`Replay::keep`]).
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
    /// The body as tonic encoded it. When it was copied into [`kept`](Self::kept) (a small
    /// one, the usual), the first copy sends it and the others the copy: hyper drops the frame
    /// once written, as behind a raw channel, and a `Bytes` shared for the first time
    /// allocates its reference count. Otherwise every copy sends it.
    first: Bytes,
    /// What the copies after the first need that the first takes with it: a small body copied
    /// out of tonic's buffer (see [`COPY_BODY_UP_TO`]), then the request's headers, encoded
    /// (see [`encode_headers`]). One allocation for both, where a copied body and a list of
    /// headers would be two; read back only for a retry or a hedge.
    kept: Bytes,
    /// Where the headers start in `kept`: the length of the body copied there (0 when the
    /// body is not copied, or empty).
    headers_at: usize,
    /// Whether the body was copied into `kept` (and `first` goes with the first copy).
    copied: bool,
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
    /// Whether the members read the request's extensions
    /// ([`MakeMember::reads_extensions`](crate::balance::MakeMember::reads_extensions)): when
    /// not, every copy goes without them, and the map stays here (for
    /// [`answer`](Self::answer)).
    forward_extensions: bool,
    /// The request asked for its answer to be marked [`ServedBy`](crate::balance::ServedBy)
    /// ([`AskServedBy`], taken out of its extensions: members never see it).
    served_by: bool,
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.tally.ended(self.parts.uri.path());
    }
}

impl Replay {
    /// A request whose body is still to be read (see [`keep`](Self::keep)).
    #[inline(always)]
    pub(crate) fn new(
        mut parts: http::request::Parts,
        method: Method,
        forward_extensions: bool,
    ) -> Self {
        let served_by = parts.extensions.remove::<AskServedBy>().is_some();
        let grpc_method = match parts.extensions.len() {
            1 => parts
                .extensions
                .get::<tonic::GrpcMethod<'static>>()
                .cloned(),
            _ => None,
        };
        Self {
            grpc_method,
            parts,
            first: Bytes::new(),
            kept: Bytes::new(),
            headers_at: 0,
            copied: false,
            method,
            tally: crate::metrics::CallTally::default(),
            served_by,
            forward_extensions,
        }
    }

    /// Keeps the request's body, as [`buffer`] read it, with the request's headers (see
    /// [`kept`](Self::kept)), and learns what the body says of the method
    /// ([`Method::for_body`]; `max_range_limit` decides whether a range may be hedged; other
    /// methods' bodies are not read). Not inlined: the decoders' locals would otherwise take
    /// room in the request's future, which is at its size limit.
    #[inline(never)]
    pub(crate) fn keep(&mut self, body: Bytes, max_range_limit: u64) {
        self.method = self.method.for_body(&body, max_range_limit);
        self.copied = body.len() <= COPY_BODY_UP_TO;
        let copy = if self.copied { &body[..] } else { &[][..] };
        self.headers_at = copy.len();
        self.kept = encode_headers(copy, &self.parts.headers);
        self.first = body;
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

    /// Whether the request asked for its answer to be marked
    /// [`ServedBy`](crate::balance::ServedBy) ([`AskServedBy`]).
    pub(crate) fn marks_served(&self) -> bool {
        self.served_by
    }

    /// The answer the caller gets, marked as served by `member` when the request asked (see
    /// [`mark_served`]): no copy is made after it, so the kept head's extensions, if the
    /// first copy did not take them, may serve as its map.
    pub(crate) fn answer(
        &mut self,
        mut response: Response<tonic::body::Body>,
        member: &Member,
    ) -> Response<tonic::body::Body> {
        if self.served_by {
            mark_served(
                response.extensions_mut(),
                member,
                &mut self.parts.extensions,
            );
        }
        response
    }

    /// A copy to send.
    pub(crate) fn request(&mut self) -> Request<tonic::body::Body> {
        let body = match self.copied {
            true => match std::mem::take(&mut self.first) {
                first if first.is_empty() => self.kept.slice(..self.headers_at),
                first => first,
            },
            false => self.first.clone(),
        };
        let mut req = Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = self.parts.uri.clone();
        *req.version_mut() = self.parts.version;
        *req.headers_mut() = match self.parts.headers.is_empty() {
            // The first copy (of a request with headers) takes the map; the others decode it.
            false => std::mem::take(&mut self.parts.headers),
            true => decode_headers(&self.kept, self.headers_at),
        };
        if !self.forward_extensions {
            // The members read none: every copy goes with an empty map (no allocation).
            return req;
        }
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

/// `body`, then `headers` encoded: their count, then for each a name's length (2 bytes), the
/// name, a value's length (4 bytes), whether it is sensitive (1 byte), the value; lengths and
/// count little-endian. In a buffer of exactly its size, so that it becomes a `Bytes` without
/// a second allocation.
fn encode_headers(body: &[u8], headers: &http::HeaderMap) -> Bytes {
    let entries = headers.iter();
    let size = entries
        .map(|(n, v)| 7 + n.as_str().len() + v.len())
        .sum::<usize>();
    let mut kept = Vec::with_capacity(body.len() + 4 + size);
    kept.extend_from_slice(body);
    // A map holds fewer than 2^15 entries, a name fewer than 2^16 bytes, a value fewer than
    // 2^32 (`http`'s own limits, and a request's size).
    kept.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        kept.extend_from_slice(&(name.as_str().len() as u16).to_le_bytes());
        kept.extend_from_slice(name.as_str().as_bytes());
        kept.extend_from_slice(&(value.len() as u32).to_le_bytes());
        kept.push(u8::from(value.is_sensitive()));
        kept.extend_from_slice(value.as_bytes());
    }
    Bytes::from(kept)
}

/// The headers [`encode_headers`] wrote into `kept` from `at` on, as a map again. Names and
/// values came from a map, so they parse; the values share `kept`.
fn decode_headers(kept: &Bytes, at: usize) -> http::HeaderMap {
    let mut at = at;
    let mut take = |n: usize| {
        let range = at..at + n;
        at += n;
        range
    };
    let Some(count) = kept.get(take(4)) else {
        return http::HeaderMap::new();
    };
    let count = u32::from_le_bytes(count.try_into().unwrap_or_default()) as usize;
    let mut headers = http::HeaderMap::with_capacity(count);
    for _ in 0..count {
        let len = u16::from_le_bytes(kept[take(2)].try_into().unwrap_or_default());
        let name = HeaderName::from_bytes(&kept[take(usize::from(len))]);
        let len = u32::from_le_bytes(kept[take(4)].try_into().unwrap_or_default());
        let sensitive = kept[take(1)][0] == 1;
        let value = HeaderValue::from_maybe_shared(kept.slice(take(len as usize)));
        debug_assert!(name.is_ok() && value.is_ok(), "a header kept from a map");
        if let (Ok(name), Ok(mut value)) = (name, value) {
            value.set_sensitive(sensitive);
            headers.append(name, value);
        }
    }
    headers
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

/// The whole body of a unary request: tonic's frame that carried it, or the frames joined.
///
/// tonic encodes a unary message as one data frame, split off its 8 KiB encoding buffer: that
/// `Bytes` keeps the whole buffer alive for as long as it is. A small message is therefore
/// copied to be kept (a few dozen bytes for a typical etcd request, against 8 KiB held per
/// request in flight; see [`Replay::keep`]), and the frame itself goes with the first copy of
/// the request (hyper drops it once written, as behind a raw channel); a large one fills its
/// buffer anyway and is kept as it is.
pub(crate) async fn buffer(body: tonic::body::Body) -> Result<Bytes, tower::BoxError> {
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
        (Some(joined), _) => joined.freeze(),
        (None, first) => first.unwrap_or_default(),
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

    /// A body is kept as tonic framed it; several frames are joined.
    #[tokio::test]
    async fn buffers_request_bodies() {
        use bytes::Bytes;
        let small = Bytes::from(vec![7u8; 10]);
        let frame = buffer(tonic::body::Body::new(http_body_util::Full::new(
            small.clone(),
        )))
        .await
        .expect("body");
        assert_eq!(frame.as_ptr(), small.as_ptr(), "the frame itself");

        let frames: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"cd"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"e"))),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let joined = buffer(tonic::body::Body::new(body)).await.expect("body");
        assert_eq!(joined, Bytes::from_static(b"abcde"));
        assert_eq!(
            buffer(tonic::body::Body::empty()).await.expect("body"),
            Bytes::new()
        );
    }

    /// Every copy of a kept request carries the whole body. A small body goes as tonic's own
    /// frame with the first copy, and as a copy of it (which does not pin tonic's buffer) with
    /// the others; a large one goes as it is with every copy.
    #[tokio::test]
    async fn every_copy_of_a_kept_request_carries_its_body() {
        use http_body_util::BodyExt;
        let small = range()
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(small.len() > 5, "a framed message");
        let large = Bytes::from(vec![7u8; COPY_BODY_UP_TO + 1]);
        for whole in [small, large] {
            let (parts, _) = range().into_parts();
            let mut replay =
                Replay::new(parts, crate::etcd::Method::of("/etcdserverpb.KV/Put"), true);
            replay.keep(whole.clone(), 0);
            for copy in 0..3 {
                let req = replay.request();
                assert_eq!(req.uri().path(), "/etcdserverpb.KV/Range");
                let got = req.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(got, whole, "copy {copy}");
                let frame = copy == 0 || whole.len() > COPY_BODY_UP_TO;
                assert_eq!(got.as_ptr() == whole.as_ptr(), frame, "copy {copy}");
            }
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
            let mut secret = h("b");
            secret.set_sensitive(true);
            parts.headers.append("token", secret);
            parts.headers.insert("hasleader", h("true"));
            let headers = parts.headers.clone();
            if with_mine {
                parts.extensions.insert(Mine(7));
            }
            let range = crate::etcd::Method::of("/etcdserverpb.KV/Range");
            let mut replay = Replay::new(parts, range, true);
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
                let sensitive = req.headers().get_all("token").iter();
                let sensitive: Vec<bool> = sensitive.map(|v| v.is_sensitive()).collect();
                assert_eq!(sensitive, [false, true], "copy {copy}");
            }
        }
    }

    /// A unary answer is marked `ServedBy` its member only when its request asked
    /// ([`AskServedBy`]), which the copies sent to members do not carry; to members that read
    /// no extensions (a `TonicConnector`'s), the copies go with none.
    #[tokio::test]
    async fn answers_are_marked_served_by_only_when_asked() {
        use crate::balance::ServedBy;
        let member = Member::new(2, "http://127.0.0.1:2".parse().expect("uri"));
        let method = tonic::GrpcMethod::new("etcdserverpb.KV", "Range");
        for (asked, forward) in [(false, true), (true, true), (false, false), (true, false)] {
            let (mut parts, body) = range().into_parts();
            parts.extensions.insert(method.clone());
            if asked {
                parts.extensions.insert(AskServedBy);
            }
            let range = crate::etcd::Method::of("/etcdserverpb.KV/Range");
            let mut replay = Replay::new(parts, range, forward);
            assert_eq!(replay.marks_served(), asked);
            replay.keep(buffer(body).await.expect("body"), 0);
            for copy in 0..2 {
                let req = replay.request();
                let extensions = req.extensions();
                assert!(
                    extensions.get::<AskServedBy>().is_none(),
                    "kept from members"
                );
                let tonics = extensions.get::<tonic::GrpcMethod<'static>>().is_some();
                assert_eq!(tonics, forward, "copy {copy}, forward: {forward}");
                assert_eq!(extensions.len(), usize::from(forward), "copy {copy}");
            }
            let answer = replay.answer(Response::new(tonic::body::Body::empty()), &member);
            let served = answer.extensions().get::<ServedBy>().map(|s| s.0.index());
            assert_eq!(
                served,
                asked.then_some(2),
                "asked: {asked}, forward: {forward}"
            );
        }
        use crate::balance::MakeMember;
        assert!(!crate::balance::TonicConnector::default().reads_extensions());
        let closure = |_: &Member| ();
        assert!(
            closure.reads_extensions(),
            "members made by the caller may read them"
        );
    }
}
