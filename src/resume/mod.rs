//! What the resuming watch and the lease keep-alive share: one boxed channel type, a backoff,
//! the list of members to avoid when re-opening a stream, and the rule that tells a member
//! failure (re-open elsewhere) from an answer about the request itself (give up).
//!
//! Why shared: both helpers re-open a long-lived bidirectional stream after its member was
//! lost, and must agree on what "lost" means and on not spinning while no member answers.

mod avoid;
mod backoff;
mod channel;
mod classify;
mod evicted;
mod outbound;

pub(crate) use avoid::AvoidList;
pub(crate) use backoff::Backoff;
pub use channel::{BoxChannel, ChannelError, IntoBoxChannel};
pub(crate) use classify::{is_member_failure, set_stream_metadata};
pub(crate) use evicted::{evicted, forget_past, next_eviction};
pub(crate) use outbound::Outbound;
