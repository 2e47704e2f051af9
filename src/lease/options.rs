//! How often to renew, how long to wait, what to do on stop.

use std::time::Duration;

use crate::stream::resume::{reopen_setters, ReopenOptions};
use crate::stream::Timing;

/// Settings of a [`KeepAlive`](super::KeepAlive).
#[derive(Clone, Debug)]
pub struct KeepAliveOptions {
    pub(super) interval: Option<Duration>,
    pub(super) response_timeout: Option<Duration>,
    pub(super) hedge_after: Option<Duration>,
    pub(super) granted_ttl: Option<Duration>,
    pub(super) reopen: ReopenOptions,
    pub(super) revoke_on_stop: bool,
}

impl Default for KeepAliveOptions {
    /// A keep-alive every TTL/3, each answer awaited as long but at most twice the health
    /// checker's `hang.after` (1 s by default) when it has one, another member asked too after
    /// a quarter of that, backoff 50 ms doubling to 1 s (at most the hedge delay), `hasleader`
    /// sent, a failed member avoided for 10 s, no revoke on stop.
    fn default() -> Self {
        Self {
            interval: None,
            response_timeout: None,
            hedge_after: None,
            granted_ttl: None,
            reopen: ReopenOptions::default(),
            revoke_on_stop: false,
        }
    }
}

impl KeepAliveOptions {
    /// The settings the keep-alive engine's [`Timing`] takes.
    pub(super) fn timing(&self) -> Timing {
        Timing {
            interval: self.interval,
            response_timeout: self.response_timeout,
            hedge_after: self.hedge_after,
            granted_ttl: self.granted_ttl,
            response_ceiling: None,
        }
    }

    /// Sends a keep-alive this often instead of every TTL/3.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval.max(Duration::from_millis(10)));
        self
    }

    /// How long a stream may leave a keep-alive unanswered before it is given up (default:
    /// the interval, at most twice the health checker's `hang.after` when it has one, as for
    /// etcd-client's keep-alives through the drop-in). Other streams are asked long before (see [`hedge_after`](Self::hedge_after)).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout.max(Duration::from_millis(10)));
        self
    }

    /// How long a keep-alive may go unanswered before it is sent on another stream, to another
    /// member, too (default: a quarter of the response timeout, at least 50 ms). Keep-alives
    /// are idempotent, so asking several members costs nothing but a message; it is what keeps
    /// a lease alive when the member carrying it hangs, or waits for a leader that hangs.
    pub fn hedge_after(mut self, delay: Duration) -> Self {
        self.hedge_after = Some(delay);
        self
    }

    /// The TTL the lease was granted with (`LeaseGrantResponse::ttl`). Until the first
    /// keep-alive is answered, the lease is presumed to expire this long after the helper
    /// started (see [`KeepAlive::lost`](super::KeepAlive::lost)); without it, only an answer
    /// starts the local clock.
    pub fn granted_ttl(mut self, ttl: Duration) -> Self {
        self.granted_ttl = Some(ttl);
        self
    }

    reopen_setters!(
        KeepAlive,
        "A keep-alive stream proves healthy with each answer; the delay is never more than \
         the hedge delay (jittered), nor half the interval (TTL/6), since the lease expires \
         meanwhile."
    );

    /// Revoke the lease when the helper is stopped or dropped, so its keys go at once.
    pub fn revoke_on_stop(mut self, revoke: bool) -> Self {
        self.revoke_on_stop = revoke;
        self
    }
}
