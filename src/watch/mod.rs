//! A watch that survives the loss of the member serving it.
//!
//! Why: an etcd watch is one long-lived stream on one member. When that member is killed, the
//! stream fails; when it hangs (SIGSTOP) or is cut off from the quorum, the stream just goes
//! quiet and the application silently stops seeing changes. etcd's own Go client re-creates
//! the watch on another member from the last revision it delivered + 1, with `hasleader`
//! metadata, so that no event is lost or repeated (`DESIGN.md`, section 3). [`ResumingWatch`]
//! does the same over any tonic channel, our [`Balance`](crate::Balance) in particular:
//!
//! - a stream error, an unexpected end, or a cancel with "no leader" re-creates the watch from
//!   the last delivered revision + 1, on another member if one is healthy (the failed member is
//!   avoided for a while through [`AvoidMembers`](crate::balance::AvoidMembers));
//! - silence is not trusted: after about half the idle timeout without any response (jittered)
//!   the watch asks for a progress notification, asks again at three quarters, and after the
//!   whole idle timeout it assumes the member is stuck and re-creates the watch; anything the
//!   member sends resets that clock (catch-up events included), and any progress answer
//!   answers both requests;
//! - when built over a [`Balance`](crate::Balance), the member serving the stream is known
//!   ([`ServedBy`](crate::balance::ServedBy)) and its eviction by the health checker
//!   re-creates the watch at once;
//! - events whose revision was already delivered are dropped (defensively: a resume from
//!   `last + 1` should not repeat any);
//! - a member that loses its leader ends the stream by itself ("no leader"), since the watch
//!   is created with `hasleader`: the watch moves even when nothing else noticed the cut;
//! - over a stack that authenticates (the [`Auth`](crate::auth::Auth) layer), a watch
//!   re-created after an auth store change made the token stale is refused by etcd with a
//!   cancel the layer cannot see; the watch then reads its key once through the same stack,
//!   which renews the token, and re-creates itself (a stack that renews nothing ends it);
//! - a resume revision that was compacted meanwhile is an error ([`WatchError::Compacted`]),
//!   never skipped silently: the caller must re-read its state;
//! - re-creations back off (50 ms doubling to 1 s by default) and are logged with `tracing`.
//!
//! Dropping the [`ResumingWatch`] cancels it. [`ResumingWatch::state`] says what it went
//! through ([`WatchState`]: the member serving it, how many times it was re-opened, why the
//! last time), in the same terms as the lease's [`KeepAlive`](crate::KeepAlive).
//!
//! The re-open bookkeeping (back-off, avoided members, `hasleader`, the options that set
//! them) is shared with the lease keep-alive (`src/resume/`); the watch keeps only its own
//! pure state: its cursor (`cursor.rs`: where to resume without gap or duplicate) and its
//! idle clock (`idle.rs`: when to ask a quiet member for progress, when to give it up).

mod answer;
mod error;
mod options;
mod pump;
mod stream;

pub use error::WatchError;
pub use options::WatchOptions;
pub use stream::{ResumingWatch, WatchState};
