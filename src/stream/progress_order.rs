//! Which members answer a watch stream's progress request *in order* with its events, so that
//! the answer's revision says every watch of the stream has been sent everything up to it.
//!
//! Why it matters: an idle watch's resume revision only advances with its events. After a
//! compaction past it, moving the watch to another member gets it cancelled with
//! `compact_revision` although nothing was missed. A progress answer can advance it — but only
//! where etcd guarantees the answer's revision, which depends on the version (etcd's
//! `server/etcdserver/api/v3rpc/watch.go`, `recvLoop`, and `watchable_store.go`,
//! `progressIfSync`):
//!
//! - etcd 3.4.0–3.4.24 and 3.5.0–3.5.7 answer in `recvLoop` through the control channel with
//!   the store revision at once, synced or not: the answer may overtake events still queued or
//!   still to be caught up. Its revision guarantees nothing for the watches.
//! - etcd 3.4.25+, 3.5.8+ and 3.6 (`cd019255b`, "Guarantee order of requested progress
//!   notifications") answer through the watch channel, only when every watcher of the stream
//!   is synced, with the store revision read under the store's lock: every event up to it was
//!   already queued ahead of the answer.
//!
//! The version comes from `Maintenance/Status` on the member serving the stream, asked once
//! per member a minute at most (per channel) and only when a watch stream opens there; an
//! unknown, unparsable or unreachable version counts as "not in order".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::balance::{AskServedBy, AvoidMembers, ServedBy};
use crate::member::Member;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::StatusRequest;
use crate::stream::resume::BoxChannel;

/// How long a member's answer is trusted (a rolling upgrade restarts members).
const KEEP: Duration = Duration::from_secs(60);

/// Whether etcd `version` ("3.5.8", "3.6.0-rc.1") answers progress requests in order.
pub(super) fn in_order(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return false;
    };
    let patch = parts.next().flatten().unwrap_or(0);
    match (major, minor) {
        (0..=2, _) => false,
        (3, 0..=3) => false,
        (3, 4) => patch >= 25,
        (3, 5) => patch >= 8,
        _ => true,
    }
}

/// What the members of one channel said, shared by its streams.
#[derive(Clone, Debug, Default)]
pub(super) struct ProgressOrders {
    known: Arc<Mutex<HashMap<usize, (bool, Instant)>>>,
}

// === impl ProgressOrders ===

impl ProgressOrders {
    /// What `member` said less than a minute before `now`.
    pub(super) fn known(&self, member: &Member, now: Instant) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(&member.index())
            .filter(|(_, at)| now.saturating_duration_since(*at) < KEEP)
            .map(|(ordered, _)| *ordered)
    }

    /// Asks `member` for its version through `channel` (every other member avoided), within
    /// `bound`; remembers and returns whether it answers in order. An answer from another
    /// member, or none, is "not in order" (and not remembered).
    pub(super) async fn ask(
        &self,
        channel: BoxChannel,
        member: Member,
        others: AvoidMembers,
        bound: Duration,
    ) -> bool {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(bound);
        req.extensions_mut().insert(others);
        req.extensions_mut().insert(AskServedBy);
        let asked = tokio::time::timeout(bound, MaintenanceClient::new(channel).status(req)).await;
        let Ok(Ok(resp)) = asked else {
            return false;
        };
        let from = resp.extensions().get::<ServedBy>().map(|s| s.0.index());
        if from != Some(member.index()) {
            return false;
        }
        let ordered = in_order(&resp.get_ref().version);
        tracing::debug!(
            %member,
            version = %resp.get_ref().version,
            ordered,
            "learned whether the member answers progress requests in order"
        );
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.index(), (ordered, Instant::now()));
        ordered
    }
}

#[cfg(test)]
mod tests {
    use super::in_order;

    #[test]
    fn versions_that_answer_progress_requests_in_order() {
        for v in [
            "3.4.25",
            "3.4.37",
            "3.5.8",
            "3.5.21",
            "3.6.0",
            "3.6.5",
            "3.7.0-alpha.0",
            "4.0.0",
        ] {
            assert!(in_order(v), "{v}");
        }
        for v in [
            "3.4.23", "3.4.24", "3.5.0", "3.5.7", "3.3.27", "2.3.8", "", "x", "3", "3.x.1",
        ] {
            assert!(!in_order(v), "{v:?}");
        }
    }
}
