//! What the resuming watch and the lease keep-alive share: both keep a long-lived
//! bidirectional stream open on one member and, when that member is lost, open it again on
//! another.
//!
//! Why shared: the two helpers must agree on what "lost" means, on how a stream is opened
//! (`hasleader`, the members to avoid, which member took it), on not spinning while no member
//! answers and on what they tell their caller; they were once hand-copied twins that drifted.
//!
//! - [`ReopenOptions`] and [`reopen_setters!`]: the options both take (back-off, avoidance,
//!   `hasleader`, the health checker), with one set of setters;
//! - [`stream_request`] and [`served_by`]: a stream request with its metadata and avoid
//!   hints, and the member the balancer put it on;
//! - [`Lost`] and [`classify`]: a member failure (open the stream elsewhere) told from an
//!   answer about the request itself (final);
//! - [`Reopen`]: the pure bookkeeping between two streams (back-off, members avoided for a
//!   while, the count of re-opens), on the caller's clock;
//! - [`evicted`]: the health checker's evictions, which end a stream at once;
//! - [`Driven`]: the caller's handle on the spawned driver and its published state.
//!
//! What is not shared, and why: the watch runs one stream at a time, in a plain loop (open,
//! follow until the stream ends or its member is evicted, back off, open again), and resumes
//! from its [`Cursor`](crate::watch); the lease keep-alive is the drop-in's keep-alive engine
//! (`dropin/keepalive_stream.rs`, the tower `KeepAlive` a façade over it), which runs up to
//! three streams at once (a keep-alive left unanswered is hedged on another member, and the
//! first stream to answer carries the lease on), each in a task of its own, chooses their
//! members itself (the leader first) and is timed by its pure schedule. Forcing both into one
//! driver would make the watch pay for hedging it cannot use (a watch is not idempotent: two
//! streams would deliver every event twice) or strip the lease of it.

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
