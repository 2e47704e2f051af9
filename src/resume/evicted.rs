//! Waiting for the health checker to evict the member that serves a stream.

use tokio::sync::broadcast;

use crate::checker::{EventKind, HealthEvent, Member};
use crate::health::Status;

/// Resolves when `member` turns unhealthy in `events`; never resolves without events or
/// without a known member (the stream then relies on its own failure detection).
pub(crate) async fn evicted(
    events: &mut Option<broadcast::Receiver<HealthEvent>>,
    member: Option<&Member>,
) {
    let (Some(rx), Some(member)) = (events.as_mut(), member) else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(HealthEvent {
                member: m,
                kind: EventKind::StatusChanged(t),
            }) if m.index() == member.index() && t.to == Status::Unhealthy => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                return std::future::pending().await;
            }
        }
    }
}
