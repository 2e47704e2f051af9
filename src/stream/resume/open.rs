//! Opening a stream: its request side, its metadata, and the member that took it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::balance::{AvoidMembers, ServedBy};
use crate::etcd::HAS_LEADER;
use crate::member::Member;

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

/// Adds `hasleader: true` (when asked) and the members to avoid to a request.
pub(crate) fn set_metadata<T>(
    req: &mut tonic::Request<T>,
    require_leader: bool,
    avoid: AvoidMembers,
) {
    if require_leader {
        req.metadata_mut().insert(
            HAS_LEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    if !avoid.0.is_empty() {
        req.extensions_mut().insert(avoid);
    }
}

/// The member that took the stream, when the channel says ([`ServedBy`]).
pub(crate) fn served_by<T>(resp: &tonic::Response<T>) -> Option<Member> {
    resp.extensions().get::<ServedBy>().map(|s| s.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_its_hints() {
        let m = Member::new(1, "http://m1:2379".parse().expect("uri"));
        let mut req = tonic::Request::new(7u8);
        set_metadata(&mut req, true, AvoidMembers(vec![m]));
        assert_eq!(
            req.metadata().get(HAS_LEADER).and_then(|v| v.to_str().ok()),
            Some("true")
        );
        let avoid = req.extensions().get::<AvoidMembers>().expect("avoid hint");
        assert_eq!(avoid.0[0].index(), 1);

        let mut req = tonic::Request::new(7u8);
        set_metadata(&mut req, false, AvoidMembers::default());
        assert!(req.metadata().get(HAS_LEADER).is_none());
        assert!(req.extensions().get::<AvoidMembers>().is_none());
    }
}
