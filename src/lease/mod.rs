//! Keeping a lease alive while members die.
//!
//! Why: a lease's keep-alives travel on one long-lived `LeaseKeepAlive` stream to one member.
//! If that member is killed, hangs or loses the quorum, the keep-alives stop, the lease
//! expires after its TTL and every key attached to it vanishes: locks are released, service
//! registrations disappear, although the cluster as a whole was fine. Worse, a follower
//! forwards each keep-alive to the leader over the peer network, and while the leader hangs
//! it holds the keep-alive for up to etcd's request timeout (5 s plus two election timeouts),
//! longer than many TTLs; a second stream on another follower waits the same way. Back-to-back
//! elections therefore lose leases unless the client asks again, elsewhere, once a new leader
//! is there.
//!
//! [`KeepAlive`] sends a keep-alive every TTL/3, to the leader when the health checker knows
//! it. A keep-alive unanswered for a quarter of the response timeout is sent on another
//! stream, to another member, too (keep-alives are idempotent; at most 3 streams), and the
//! first stream to answer carries the lease on. A stream that fails (error, unexpected end,
//! eviction of its member by the health checker) is replaced, backing off (50 ms doubling to
//! 1 s, at most TTL/6) so it never spins; one that leaves a keep-alive unanswered for the
//! response timeout is given up.
//!
//! When no keep-alive has been answered for a whole TTL (counted from the *send* time of the
//! last one answered, which etcd received later), the lease must be presumed expired: the
//! helper ends with [`LeaseError::Expired`] so the application stops acting as the holder
//! before etcd deletes the keys, as etcd's Go client does from its deadline loop.
//!
//! The loss of the lease itself is a different matter and is reported as such: etcd answers a
//! keep-alive for an expired or revoked lease with TTL 0, which ends the helper with
//! [`LeaseError::Lost`] (see [`KeepAlive::lost`]). Re-opening cannot fix that: the caller must
//! grant a new lease and re-create what hung on the old one.
//!
//! Dropping the helper (or [`KeepAlive::stop`]) stops the keep-alives; with
//! [`KeepAliveOptions::revoke_on_stop`] it also revokes the lease, so its keys go at once
//! instead of after the TTL.
//!
//! [`KeepAlive::state`] says what it went through ([`KeepAliveState`]), in the same terms as
//! the watch's [`ResumingWatch`](crate::ResumingWatch): the member carrying it, how many times
//! a stream was re-opened, why the last time.
//!
//! What is shared with the resuming watch (`src/resume/`): the options and setters for
//! back-off, avoidance, `hasleader` and the health checker; how a stream is opened (its
//! metadata, the members it avoids, the member that took it); what counts as a member failure;
//! the re-open bookkeeping (back-off, avoided members, the count). What is not, and why: the
//! watch runs one stream at a time in a plain loop, since two watch streams would deliver
//! every event twice; keep-alives are idempotent, so the lease hedges an unanswered one on up
//! to three streams at once, each in a task of its own (`lane.rs`), on members it chooses
//! itself, the leader first (`choose.rs`), timed by its pure renewal schedule
//! (`schedule.rs`): its driver (`task.rs`) is built around that and shares only the pieces.
//! The drop-in's answer to etcd-client's keep-alive streams (`dropin/keepalive_stream.rs`)
//! hedges with the same three pieces; only the caller's side differs (etcd-client's keeper
//! decides when to renew, and each of its keep-alives gets exactly one answer).

mod error;
mod handle;
mod options;
mod task;

pub use error::LeaseError;
pub use handle::{KeepAlive, KeepAliveState};
pub use options::KeepAliveOptions;
