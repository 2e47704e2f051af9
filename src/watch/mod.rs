//! A watch that survives the loss of the member serving it.
//!
//! Why: an etcd watch is one long-lived stream on one member. When that member is killed, the
//! stream fails; when it hangs (SIGSTOP) or is cut off from the quorum, the stream just goes
//! quiet and the application silently stops seeing changes. etcd's own Go client re-creates
//! the watch on another member from the last revision it delivered + 1, with `hasleader`
//! metadata, so that no event is lost or repeated (`DESIGN.md`, section 3). [`ResumingWatch`]
//! does the same over any tonic channel, our [`Balance`](crate::Balance) in particular.
//!
//! It is a thin façade over the one stream engine the drop-in's watches use
//! (`src/stream/driver.rs` driving the pure `WatchBook`; entry `watch_engine.rs`): it
//! makes a `Watch/Watch` call to the engine as etcd-client makes one to the drop-in, and turns
//! the engine's answers into events and a final [`WatchError`] (`answer.rs`, pure; `pump.rs`,
//! its task). So the tower watch behaves as etcd-client's watches over the drop-in do, on
//! every etcd version:
//!
//! - a stream error, an unexpected end, or a cancel with "no leader" re-creates the watch from
//!   the revision after the last one delivered, on another member (the failed one avoided for
//!   a while); over a [`Balance`](crate::Balance) with a health checker the engine chooses a
//!   healthy member itself and the checker's eviction of the serving member moves the watch at
//!   once;
//! - silence is not trusted: a stream quiet for about half the idle timeout (jittered up to a
//!   fifth earlier) is asked for progress, asked again a quarter of it later, and moved when
//!   nothing was heard for half the idle timeout after the first request; any progress answer
//!   answers every request (etcd 3.5.8+ coalesces them), and a healthy member catching the
//!   watch up (3.5.13+ and 3.6 drop progress requests meanwhile) is not held hung for it;
//! - an idle watch's resume revision advances with progress answers where etcd guarantees them
//!   (3.4.25+, 3.5.8+, 3.6) and with its per-watch notifications, so a compaction does not end
//!   a watch that missed nothing when it moves;
//! - events are delivered once, in order (a fragmented revision resumed past the events given);
//! - a member that loses its leader ends the stream by itself ("no leader"), since the watch
//!   carries `hasleader`: the watch moves even when nothing else noticed the cut;
//! - over a stack that authenticates (the [`Auth`](crate::auth::Auth) layer), a watch
//!   re-created after an auth store change made the token stale is refused by etcd with a
//!   cancel the layer cannot see; the watch then reads its key once through the same stack,
//!   which renews the token, and is re-created (at most 5 refusals in a row; a stack that
//!   renews nothing ends it);
//! - a start or resume revision that was compacted is an error ([`WatchError::Compacted`]),
//!   never skipped silently: the caller must re-read its state;
//! - the first opening is bounded (`retry.budget` of the health checker's config, or each of
//!   its members failing or staying silent once); re-creations back off (50 ms doubling to
//!   1 s by default, jittered) and are logged with `tracing`.
//!
//! Dropping the [`ResumingWatch`] cancels it. [`ResumingWatch::state`] says what it went
//! through ([`WatchState`]: the member serving it, how many times it was re-opened, why the
//! last time), in the same terms as the lease's [`KeepAlive`](crate::KeepAlive).

mod answer;
mod error;
mod options;
mod pump;
mod stream;

pub use error::WatchError;
pub use options::WatchOptions;
pub use stream::{ResumingWatch, WatchState};
