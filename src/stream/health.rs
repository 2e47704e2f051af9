//! The health state as the streams see it: the stream room's one handle on it.
//!
//! Why one handle: the engine's books, lanes and choices read the members, their health and
//! the leader, and report an opening left unanswered; they talk to [`StreamHealth`], which
//! says what they may ask. Only this file names the checker: it also gives the public option
//! that takes one ([`health_checker_setter!`], part of `resume/options.rs`'s setters).
//! [`health_news`] reads the state's events for what matters to a stream (an eviction, a new
//! leader), for the keep-alive driver and the resumed streams alike.

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::budget::RetryBudget;
use crate::checker::HealthChecker;
use crate::config::Config;
use crate::event::{EventKind, HealthEvent};
use crate::health::{Outcome, Source, Status};
use crate::leader::LeaderSnapshot;
use crate::member::{Member, MemberEntry, MemberSnapshot};

/// The streams' handle on the health state (cheap to clone: one pointer).
#[derive(Clone, Debug)]
pub(crate) struct StreamHealth(HealthChecker);

impl StreamHealth {
    /// The streams' view of `checker`.
    pub(crate) fn new(checker: HealthChecker) -> Self {
        Self(checker)
    }

    /// A health state with no members and nothing that probes or discovers (a stream helper
    /// given no checker): choices are then the channel's, and nothing is evicted.
    pub(crate) fn memberless() -> Self {
        let mut config = Config::default();
        config.discovery.member_list = false;
        let checker = HealthChecker::with_uris(Vec::new(), config)
            .expect("the default config is valid, and callers run inside a tokio runtime");
        Self(checker)
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> &Config {
        self.0.config()
    }

    /// A stream of state changes (evictions end a stream at once).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.0.subscribe()
    }

    /// A copy of every member's state.
    pub(crate) fn snapshot(&self) -> Vec<MemberSnapshot> {
        self.0.snapshot()
    }

    /// Who leads, as the leader checks found.
    pub(crate) fn leader(&self) -> LeaderSnapshot {
        self.0.leader()
    }

    /// The members' shared entries, in index order (no snapshot built).
    pub(crate) fn entries(&self) -> std::sync::Arc<Vec<std::sync::Arc<MemberEntry>>> {
        self.0.entries()
    }

    /// The index of the member that leads, if known.
    pub(crate) fn leader_index(&self) -> Option<usize> {
        self.0.leader_index()
    }

    /// The members, in index order.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.0.members()
    }

    /// The retry budget the keep-alive hedges draw from.
    pub(crate) fn budget(&self) -> &RetryBudget {
        self.0.budget()
    }

    /// Asks for a leader check as soon as one can run.
    pub(crate) fn want_leader_check(&self) {
        self.0.want_leader_check()
    }

    /// Counts an opening that `member` left unanswered since `since` against it: a request
    /// that timed out, and a hang if a peer answered a request sent after it; when no member
    /// answered anything since, only a leader check can tell, so one is asked for.
    pub(crate) fn charge_silent(&self, member: &Member, since: Instant) {
        let checker = &self.0;
        checker.record(member, Source::Passive, Outcome::Timeout);
        let Some(entry) = checker.entry(member.index()) else {
            return;
        };
        let since = since.into_std();
        if checker.hangs(&entry, since) {
            tracing::info!(%member, "stream opening left unanswered while peers answered: a hang");
            checker.record_hang(&entry);
        } else if checker.quiet_since(since) {
            checker.want_leader_check();
        }
    }
}

/// What the health state said that matters to a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HealthNews {
    /// The member with this index was evicted (turned unhealthy).
    Evicted(usize),
    /// A new leader was found.
    Leader,
}

/// The next eviction or new leader in `events`; never resolves without events, nor once the
/// health state is gone. A lagged receiver skips what it missed. One function for both
/// readers: the keep-alive driver acts on both kinds, a resumed stream's wait for its
/// member's eviction (`resume/evicted.rs`) ignores leader news.
pub(crate) async fn health_news(
    events: &mut Option<broadcast::Receiver<HealthEvent>>,
) -> HealthNews {
    let Some(rx) = events.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(HealthEvent {
                member,
                kind: EventKind::StatusChanged(t),
            }) if t.to == Status::Unhealthy => return HealthNews::Evicted(member.index()),
            Ok(HealthEvent {
                kind:
                    EventKind::LeaderChanged {
                        leader_id: Some(_), ..
                    },
                ..
            }) => return HealthNews::Leader,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// The streams' view of a checker a user hands a stream helper.
impl From<HealthChecker> for StreamHealth {
    fn from(checker: HealthChecker) -> Self {
        Self::new(checker)
    }
}

/// The public setter `health_checker`, for an options type with a `reopen: ReopenOptions`
/// field whose helper is `$handle` (named in the docs); given through `reopen_setters!`.
macro_rules! health_checker_setter {
    ($handle:ident) => {
        #[doc = concat!(
            "Re-open the stream as soon as this checker evicts its member (set for you by [`",
            stringify!($handle), "::over_balance`](super::", stringify!($handle),
            "::over_balance))."
        )]
        pub fn health_checker(mut self, checker: crate::checker::HealthChecker) -> Self {
            self.reopen.checker = Some(checker.into());
            self
        }
    };
}

pub(crate) use health_checker_setter;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::broadcast;

    use super::{health_news, HealthNews};
    use crate::event::{EventKind, HealthEvent};
    use crate::health::{Outcome, Source, Status, Transition};
    use crate::member::Member;

    fn changed(member: &Member, to: Status) -> HealthEvent {
        HealthEvent {
            member: member.clone(),
            kind: EventKind::StatusChanged(Transition {
                from: Status::Healthy,
                to,
                source: Source::Passive,
                outcome: Outcome::Failure,
                count: 1,
                ejected_for: None,
                ejections: 1,
            }),
        }
    }

    fn leader(member: &Member, leader_id: Option<u64>) -> HealthEvent {
        HealthEvent {
            member: member.clone(),
            kind: EventKind::LeaderChanged { leader_id, term: 2 },
        }
    }

    /// Evictions and new leaders are news, in order; a leader lost (no id) and other changes
    /// are not; without events nothing ever is.
    #[tokio::test]
    async fn evictions_and_new_leaders_are_news() {
        let member = Member::new(3, "http://127.0.0.1:1".parse().expect("uri"));
        let (tx, rx) = broadcast::channel(16);
        let mut events = Some(rx);
        tx.send(changed(&member, Status::Healthy)).expect("send");
        tx.send(leader(&member, None)).expect("send");
        tx.send(changed(&member, Status::Unhealthy)).expect("send");
        tx.send(leader(&member, Some(7))).expect("send");
        assert_eq!(health_news(&mut events).await, HealthNews::Evicted(3));
        assert_eq!(health_news(&mut events).await, HealthNews::Leader);
        let none = tokio::time::timeout(Duration::from_millis(20), health_news(&mut events));
        assert!(none.await.is_err(), "nothing more");
        let mut no_events = None;
        let none = tokio::time::timeout(Duration::from_millis(20), health_news(&mut no_events));
        assert!(none.await.is_err(), "no events: no news");
    }
}
