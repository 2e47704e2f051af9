//! Opening a stream: its request side, its metadata, and the member that took it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::balance::{AvoidMembers, ServedBy};
use crate::etcd::HAS_LEADER;
use crate::member::Member;

/// How many messages a helper may queue on its stream before the member reads them (a
/// keep-alive or a progress request at a time: a full queue means the member is not reading).
const OUTBOUND: usize = 4;

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

/// A stream request whose first message is `first`, carrying `hasleader: true` (when asked)
/// and the members to avoid; the sender is for the messages that follow.
pub(crate) fn stream_request<T>(
    first: T,
    require_leader: bool,
    avoid: AvoidMembers,
) -> (mpsc::Sender<T>, tonic::Request<Outbound<T>>) {
    let (requests, outbound) = mpsc::channel(OUTBOUND);
    let _ = requests.try_send(first);
    let mut req = tonic::Request::new(Outbound(outbound));
    set_metadata(&mut req, require_leader, avoid);
    (requests, req)
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
    fn the_request_carries_its_first_message_and_its_hints() {
        let m = Member::new(1, "http://m1:2379".parse().expect("uri"));
        let (_tx, mut req) = stream_request(7u8, true, AvoidMembers(vec![m]));
        assert_eq!(
            req.metadata().get(HAS_LEADER).and_then(|v| v.to_str().ok()),
            Some("true")
        );
        let avoid = req.extensions().get::<AvoidMembers>().expect("avoid hint");
        assert_eq!(avoid.0[0].index(), 1);
        assert_eq!(req.get_mut().0.try_recv().ok(), Some(7));

        let (_tx, req) = stream_request(7u8, false, AvoidMembers::default());
        assert!(req.metadata().get(HAS_LEADER).is_none());
        assert!(req.extensions().get::<AvoidMembers>().is_none());
    }
}
