//! Waiting for the health checker to evict the member that serves a stream.

use tokio::sync::broadcast;

use crate::event::HealthEvent;
use crate::member::Member;
use crate::stream::health::{health_news, HealthNews};

/// Drops the events that arrived before a stream is (re)opened. An eviction seen while no
/// stream was open has been acted on already (or is over: the balancer just picked the
/// member); left queued, it would end the new stream on that member the moment it opens.
pub(crate) fn forget_past(events: &mut Option<broadcast::Receiver<HealthEvent>>) {
    if let Some(rx) = events {
        *rx = rx.resubscribe();
    }
}

/// Resolves when `member` turns unhealthy in `events`; never resolves without events or
/// without a known member (the stream then relies on its own failure detection).
pub(crate) async fn evicted(
    events: &mut Option<broadcast::Receiver<HealthEvent>>,
    member: Option<&Member>,
) {
    let Some(member) = member else {
        return std::future::pending().await;
    };
    loop {
        // Leader news does not end a stream: only its member's eviction does.
        if let HealthNews::Evicted(index) = health_news(events).await {
            if index == member.index() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::EventKind;
    use crate::health::{Outcome, Source, Status, Transition};

    fn ejection(member: &Member) -> HealthEvent {
        HealthEvent {
            member: member.clone(),
            kind: EventKind::StatusChanged(Transition {
                from: Status::Healthy,
                to: Status::Unhealthy,
                source: Source::Passive,
                outcome: Outcome::Failure,
                count: 1,
                ejected_for: Some(Duration::from_secs(1)),
                ejections: 1,
            }),
        }
    }

    #[tokio::test]
    async fn an_eviction_from_before_the_stream_is_forgotten_a_new_one_is_seen() {
        let member = Member::new(1, "http://127.0.0.1:1".parse().expect("uri"));
        let (tx, rx) = broadcast::channel(16);
        let mut events = Some(rx);
        // Evicted while no stream was open, re-admitted since, picked again.
        tx.send(ejection(&member)).expect("send");
        forget_past(&mut events);
        let stale = tokio::time::timeout(
            Duration::from_millis(50),
            evicted(&mut events, Some(&member)),
        )
        .await;
        assert!(
            stale.is_err(),
            "a past eviction must not end the new stream"
        );
        // Evicted while the stream is open: seen.
        tx.send(ejection(&member)).expect("send");
        tokio::time::timeout(Duration::from_secs(1), evicted(&mut events, Some(&member)))
            .await
            .expect("a new eviction ends the stream");
    }
}
