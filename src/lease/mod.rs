//! Keeping a lease alive while members die.
//!
//! Why: a lease's keep-alives travel on one long-lived `LeaseKeepAlive` stream to one member.
//! If that member is killed, hangs or loses the quorum, the keep-alives stop, the lease
//! expires after its TTL and every key attached to it vanishes: locks are released, service
//! registrations disappear, although the cluster as a whole was fine. [`KeepAlive`] sends a
//! keep-alive every TTL/3, and when the stream fails (error, unexpected end, no answer within
//! the response timeout, or eviction of its member by the health checker) re-opens it on
//! another member, backing off (50 ms doubling to 1 s) so it never spins.
//!
//! The loss of the lease itself is a different matter and is reported as such: etcd answers a
//! keep-alive for an expired or revoked lease with TTL 0, which ends the helper with
//! [`LeaseError::Lost`] (see [`KeepAlive::lost`]). Re-opening cannot fix that: the caller must
//! grant a new lease and re-create what hung on the old one.
//!
//! Dropping the helper (or [`KeepAlive::stop`]) stops the keep-alives; with
//! [`KeepAliveOptions::revoke_on_stop`] it also revokes the lease, so its keys go at once
//! instead of after the TTL.

mod error;
mod handle;
mod options;
mod task;

pub use error::LeaseError;
pub use handle::{KeepAlive, KeepAliveState};
pub use options::KeepAliveOptions;
