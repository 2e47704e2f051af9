//! What a user of the stream engine sets for its streams, and what the engine tells it back
//! about one stream.
//!
//! Why: the engine (`driver.rs`) serves two users. The drop-in takes every setting from
//! the health state's config and reports to the channel's [`StreamStats`](super::StreamStats);
//! the tower stack's [`ResumingWatch`](crate::watch::ResumingWatch) has options of its own
//! (idle timeout, back-off, avoidance, `hasleader`) and a state per watch (the member serving
//! it, how many times it moved, why the last time). Both are plain values here, so the driver
//! reads one setting in one place whoever started it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::member::Member;
use crate::stream::resume::ReopenOptions;

/// How long a member the drop-in's streams failed on is avoided.
const AVOID_FOR: Duration = Duration::from_secs(10);

/// Makes whatever authenticates the stream's requests renew its token; `Err` when it cannot
/// (the status to end the stream with).
pub(crate) type Renew =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>> + Send + Sync>;

/// The settings of the streams one user starts.
#[derive(Clone)]
pub(crate) struct Tuning {
    /// The stream timeout (see `driver.rs`); `None`: from the health state's config.
    pub(crate) timeout: Option<Duration>,
    /// Back-off between members and how long a failed member is avoided (its `checker` and
    /// `require_leader` are not read: see the fields below).
    pub(crate) reopen: ReopenOptions,
    /// Whether each opening carries `hasleader: true` itself (the drop-in leaves it to the
    /// balancer, which sends it when its config says so).
    pub(crate) require_leader: bool,
    /// How many member failures the first opening may meet before they are the caller's
    /// answer; `None`: one per member of the health state (and one more).
    pub(crate) first_open_failures: Option<usize>,
    /// For a stream refused for an auth token it does not carry (a layer below the engine
    /// adds it): how to have that layer renew it. `None`: such a refusal ends the stream.
    pub(crate) renew: Option<Renew>,
}

impl Default for Tuning {
    /// The drop-in's: timeout from the config, back-off 50 ms doubling to 1 s, a failed member
    /// avoided for 10 s, `hasleader` left to the balancer.
    fn default() -> Self {
        Self {
            timeout: None,
            reopen: ReopenOptions {
                avoid_for: AVOID_FOR,
                ..ReopenOptions::default()
            },
            require_leader: false,
            first_open_failures: None,
            renew: None,
        }
    }
}

impl fmt::Debug for Tuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tuning")
            .field("timeout", &self.timeout)
            .field("reopen", &self.reopen)
            .field("require_leader", &self.require_leader)
            .field("first_open_failures", &self.first_open_failures)
            .field("renew", &self.renew.is_some())
            .finish()
    }
}

/// What one stream went through so far, as the engine publishes it (for a
/// [`ResumingWatch`](crate::watch::ResumingWatch)'s state).
#[derive(Clone, Debug, Default)]
pub(crate) struct Followed {
    /// The member serving the stream now.
    pub(crate) member: Option<Member>,
    /// Times the stream lost its member (a failure, a hang, an eviction, a token refusal).
    pub(crate) losses: u64,
    /// Why the last time.
    pub(crate) last_loss: Option<String>,
    /// Creations the engine made again on a new member and the member accepted.
    pub(crate) recreated: u64,
    /// Events dropped because the caller had them already.
    pub(crate) duplicates: u64,
}
