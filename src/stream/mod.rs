//! The one stream engine: watches and lease keep-alives kept alive across member faults.
//!
//! Why one room: a watch or a keep-alive stream goes to one member, once: the balancer cannot
//! retry or hedge what is not a single request, and etcd-client never re-creates a watch or a
//! keep-alive stream that failed or went silent, while users hold one client for weeks. The
//! engine here answers the caller's stream itself and carries it over one member at a time (a
//! watch) or several at once (a slow keep-alive, hedged). Every user of streams goes through it,
//! so they share one policy (where a keep-alive is sent, how many streams it keeps during
//! trouble, when a lease is presumed lost, how a watch is poked and moved):
//!
//! - the drop-in ([`HealthChannel`](crate::HealthChannel)): etcd-client's `Watch/Watch` and
//!   `Lease/LeaseKeepAlive` streams;
//! - the tower [`ResumingWatch`](crate::watch::ResumingWatch), through [`WatchEngine`];
//! - the tower [`KeepAlive`](crate::lease::KeepAlive), through [`spawn_local`].
//!
//! The pieces, pure ones first:
//!
//! - the books ([`Book`](book::Book)): what a stream's caller asked for and what it was given,
//!   with no I/O: `watch_book.rs` (watches, resume revisions, ids, progress) and
//!   `keepalive_book.rs` (keep-alives and their answers, each passed on once);
//!   `keepalive_schedule.rs` (when a keep-alive is hedged, a stream given up),
//!   `choose.rs` (which member, in the balancer's words), `progress_order.rs` (which members answer progress
//!   requests in order), `token_wait.rs` (waiting for the caller's next token);
//! - the drivers (`dispatch.rs` hands each caller's stream to one): `driver.rs` moves a
//!   watch's one stream from member to member (and passes a keep-alive stream through with
//!   resumption off); `keepalive_driver.rs` sends each keep-alive to the leader and hedges it
//!   over several member streams (`keepalive_lane.rs`: each one's keep-alives and answers);
//! - `lane.rs`: the one way both drivers open, feed and close a member stream (a task per
//!   stream: the caller's metadata and token, `hasleader`, avoid hints, even-if-ejected, a
//!   request queue; it reports opened, messages and the end by its id);
//! - what the drivers share: `opening.rs` (the bound on a stream's first open), `frame.rs`
//!   (gRPC frames to and from the caller), `latest_token.rs` (the newest auth token),
//!   `tuning.rs` (a user's settings), `stats.rs` (what operators see), and [`resume`] (what
//!   "lost" means, how a stream is opened on a member, back-off and avoidance between two).
//!
//! Why a watch is moved while a keep-alive is hedged: a watch is not idempotent (two streams
//! would deliver every event twice), a keep-alive is, and every second a keep-alive waits
//! comes off the lease's margin.

mod book;
mod choose;
mod dispatch;
mod driver;
mod frame;
mod health;
mod keepalive_book;
mod keepalive_caller;
mod keepalive_driver;
mod keepalive_lane;
mod keepalive_schedule;
mod lane;
mod latest_token;
mod opening;
mod progress_order;
pub(crate) mod resume;
mod stats;
mod token_wait;
mod tuning;
mod watch_book;
mod watch_engine;
#[cfg(feature = "fuzzing")]
pub(crate) use keepalive_schedule::fuzz_answers;
#[cfg(feature = "fuzzing")]
pub(crate) use watch_book::fuzz_watch_book;

pub(crate) use dispatch::{call, takes};
pub(crate) use driver::Streams;
pub(crate) use health::{health_checker_setter, StreamHealth};
pub(crate) use keepalive_caller::{Answer, LocalEnds, Progress};
pub(crate) use keepalive_driver::spawn_local;
pub(crate) use keepalive_schedule::{Schedule, Timing};
pub use stats::{ServingStream, StreamCounts, StreamKind, StreamStats};
pub(crate) use tuning::{Followed, Renew, Tuning};
pub(crate) use watch_engine::WatchEngine;
