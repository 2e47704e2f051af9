//! What the two stream drivers share: the watch driver (`src/stream/driver.rs`,
//! behind etcd-client's watches and the tower [`ResumingWatch`](crate::watch::ResumingWatch),
//! a façade over it) and the keep-alive driver (`src/stream/keepalive_driver.rs`, behind
//! etcd-client's keep-alives and the tower [`KeepAlive`](crate::lease::KeepAlive)). Each keeps
//! a long-lived bidirectional stream on a member and, when that member is lost, opens it again
//! on another.
//!
//! Why shared: they must agree on what "lost" means, on how a stream is opened (`hasleader`,
//! the members to avoid, which member took it), on not spinning while no member answers and
//! on what they tell their caller.
//!
//! - [`ReopenOptions`] and [`reopen_setters!`]: the options the tower façades take (back-off,
//!   avoidance, `hasleader`, the health checker), with one set of setters; the watch engine
//!   reads its back-off and avoidance from them too;
//! - [`set_metadata`], [`Outbound`] and [`served_by`]: a stream request's metadata and avoid
//!   hints, its request side, and the member the balancer put it on;
//! - [`Lost`] and [`classify`]: a member failure (open the stream elsewhere) told from an
//!   answer about the request itself (final);
//! - [`Reopen`]: the pure bookkeeping between two streams (back-off, members avoided for a
//!   while, the count of re-opens), on the caller's clock;
//! - [`evicted`](fn@evicted) / [`forget_past`]: the health checker's evictions, which end a
//!   stream at once;
//! - [`Driven`]: the caller's handle on a spawned driver and its published state;
//! - [`BoxChannel`] / [`IntoBoxChannel`]: the one channel type the façades hold.
//!
//! What is not shared, and why: a watch runs one stream at a time (a watch is not idempotent:
//! two streams would deliver every event twice); a keep-alive is, so the keep-alive engine
//! hedges a slow one on other members (up to three streams at once, the leader first, timed by
//! its pure schedule).

mod avoid;
mod backoff;
mod channel;
mod driven;
mod end;
mod evicted;
mod open;
mod options;
mod reopen;

pub use channel::{BoxChannel, ChannelError, IntoBoxChannel};
pub(crate) use driven::Driven;
pub(crate) use end::{classify, Lost};
pub(crate) use evicted::{evicted, forget_past};
pub(crate) use open::{served_by, set_metadata, Outbound};
pub(crate) use options::{reopen_setters, ReopenOptions};
pub(crate) use reopen::Reopen;
