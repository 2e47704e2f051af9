//! The options every stream helper takes, and their setters.

use std::time::Duration;

use crate::stream::health::StreamHealth;

/// How a helper re-opens its stream: back-off, avoidance, `hasleader`, and the health checker
/// whose evictions end a stream at once. Held by [`WatchOptions`](crate::watch::WatchOptions)
/// and [`KeepAliveOptions`](crate::lease::KeepAliveOptions), set through the setters
/// [`reopen_setters!`] gives both.
#[derive(Clone, Debug)]
pub(crate) struct ReopenOptions {
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) avoid_for: Duration,
    pub(crate) require_leader: bool,
    pub(crate) checker: Option<StreamHealth>,
}

impl Default for ReopenOptions {
    /// Back-off 50 ms doubling to 1 s, a failed member avoided for 10 s, `hasleader` sent, no
    /// health checker.
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            avoid_for: Duration::from_secs(10),
            require_leader: true,
            checker: None,
        }
    }
}

// === impl ReopenOptions ===

impl ReopenOptions {
    /// Follows `health`'s evictions unless the caller named a checker already (what
    /// `over_balance` does with the balance's own).
    pub(crate) fn or_health(mut self, health: StreamHealth) -> Self {
        self.checker.get_or_insert(health);
        self
    }
}

/// The setters of [`ReopenOptions`], for an options type with a `reopen: ReopenOptions` field
/// whose helper is `$handle` (named in the docs). Extra doc lines for `backoff` follow. The
/// setter that takes a checker is `stream/health.rs`'s (the stream room's one file that names
/// the checker).
macro_rules! reopen_setters {
    ($handle:ident $(, $backoff_doc:literal)* $(,)?) => {
        /// Delay between re-opens of the stream: `min` doubling to `max`, reset once a stream
        /// proved healthy.
        $(#[doc = $backoff_doc])*
        pub fn backoff(mut self, min: std::time::Duration, max: std::time::Duration) -> Self {
            self.reopen.backoff_min = min;
            self.reopen.backoff_max = max;
            self
        }

        /// How long a member the stream failed on is avoided when re-opening it (when another
        /// healthy member exists).
        pub fn avoid_failed_member_for(mut self, duration: std::time::Duration) -> Self {
            self.reopen.avoid_for = duration;
            self
        }

        /// Whether to send `hasleader: true`, so a member cut off from the quorum refuses the
        /// stream, or ends it ("no leader") once it has had no leader for about three
        /// election timeouts, instead of serving it stale: the stream is then re-opened on
        /// another member even when nothing else noticed the cut. On by default. (A
        /// [`Balance`](crate::Balance) whose config has `require_leader` sends it on every
        /// call anyway.)
        pub fn require_leader(mut self, require: bool) -> Self {
            self.reopen.require_leader = require;
            self
        }

        crate::stream::health_checker_setter!($handle);
    };
}

pub(crate) use reopen_setters;
