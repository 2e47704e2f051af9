//! Which engine takes a caller's stream.
//!
//! Why a file of its own: the watch driver and the keep-alive driver do not know each other;
//! the choice between them (and the pass-through with resumption off) is made here, above both.

use super::book::Book;
use super::driver::Streams;
use super::keepalive_book::KeepAliveBook;
use super::watch_book::WatchBook;
use crate::balance::ResponseFuture;

/// Whether the engine answers calls to `path` itself (watches and keep-alives).
pub(crate) fn takes(path: &str) -> bool {
    path == WatchBook::PATH || path == KeepAliveBook::PATH
}

/// Takes a stream request of the caller that [`takes`] names: a watch to the resuming driver,
/// a keep-alive to the hedging one (or, with resumption off, passed through on one member).
pub(crate) fn call(streams: &Streams, req: http::Request<tonic::body::Body>) -> ResponseFuture {
    if req.uri().path() == WatchBook::PATH {
        streams.start(req, WatchBook::default())
    } else if streams.resumes() {
        super::keepalive_driver::start(streams.clone(), req)
    } else {
        streams.start(req, KeepAliveBook::default())
    }
}
