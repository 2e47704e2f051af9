//! State changes published to subscribers.

use crate::health::Transition;
use crate::member::{Member, Origin};

/// A change in the health state, as sent by [`HealthChecker::subscribe`](crate::HealthChecker::subscribe).
#[derive(Clone, Debug)]
pub struct HealthEvent {
    /// The member concerned. For [`EventKind::LeaderChanged`], the new leader when it is one
    /// of ours, else the member whose answer showed the change.
    pub member: Member,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a member.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The member joined the health state.
    Added {
        /// Given by the caller, or found by discovery (and how).
        origin: Origin,
        /// Why, e.g. `listed by MemberList as m3 (8e9e05c52164694d)`.
        reason: String,
    },
    /// The member left the health state; requests in flight to it finish.
    Removed {
        /// How it had entered it.
        origin: Origin,
        /// Why, e.g. `no longer listed by MemberList (removed from the cluster)`.
        reason: String,
    },
    /// The member's status changed.
    StatusChanged(Transition),
    /// Every member is unhealthy: the stack now follows the configured
    /// [`AllUnhealthyPolicy`](crate::config::AllUnhealthyPolicy).
    AllUnhealthy,
    /// A leader check found a new leader (`leader_id`, at `term`), or that no member knows a
    /// leader (`leader_id: None`: an election; requests wait for its end within their
    /// deadlines, and nobody is ejected for it).
    LeaderChanged {
        /// The etcd id of the leader, `None` while no member knows one.
        leader_id: Option<u64>,
        /// The highest raft term seen.
        term: u64,
    },
}

/// Receives every [`HealthEvent`] the health state publishes, as it happens: an application's
/// own log, alerting or metrics pipeline, beside [`subscribe`](crate::HealthChecker::subscribe).
///
/// Why beside the broadcast channel: a subscriber that falls behind loses old events
/// (`Lagged`), and one must be polled by a task of its own; a sink sees every event, in
/// order, on the thread that caused it, with nothing to poll.
///
/// [`event`](Self::event) is called synchronously wherever the state changes: on request
/// paths (a passive failure that ejects a member), in the probe scheduler, in discovery. It
/// **must not block** and should be quick (count, log, push into a channel with `try_send`).
/// No lock of the health state is held during the call, so a sink may read it
/// ([`snapshot`](crate::HealthChecker::snapshot)); it must never wait on a request through the
/// stack (that request may be the one that called it). A sink that panics takes down the
/// caller's task, as any panic would.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use etcd_health::extend::EventSink;
/// use etcd_health::observe::{EventKind, HealthEvent, Status};
///
/// /// Counts ejections.
/// #[derive(Debug, Default)]
/// struct Ejections(AtomicU64);
///
/// impl EventSink for Ejections {
///     fn event(&self, event: &HealthEvent) {
///         if let EventKind::StatusChanged(t) = &event.kind {
///             if t.to == Status::Unhealthy {
///                 self.0.fetch_add(1, Ordering::Relaxed);
///             }
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), etcd_health::Error> {
/// let ejections = Arc::new(Ejections::default());
/// let checker = etcd_health::HealthChecker::builder(etcd_health::Config::default())
///     .event_sink(ejections.clone())
///     .build(&["http://127.0.0.1:2379"])?;
/// # drop(checker);
/// # Ok(())
/// # }
/// ```
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// One event; must not block.
    fn event(&self, event: &HealthEvent);
}
