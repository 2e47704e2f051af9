//! The health state as the streams see it: the stream room's one handle on it.
//!
//! Why one handle: the engine's books, lanes and choices read the members, their health and
//! the leader, and report an opening left unanswered; they talk to [`StreamHealth`], which
//! says what they may ask. Only this file, and the public option that takes a checker
//! (`resume/options.rs`), name the checker.

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::budget::RetryBudget;
use crate::checker::HealthChecker;
use crate::config::Config;
use crate::event::HealthEvent;
use crate::health::{Outcome, Source};
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
