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
//! it. A keep-alive unanswered for a quarter of the response timeout (the interval, at most
//! twice `hang.after`) is sent on another stream, to another member, too (keep-alives are
//! idempotent; at most 3 streams; past the retry budget only while the lease is short of
//! time), and the first stream to answer carries the lease on. A stream that fails (error,
//! unexpected end, eviction of its member by the health checker) is replaced, backing off
//! (50 ms doubling to 1 s, at most the hedge delay) so it never spins; one that leaves a
//! keep-alive unanswered for the response timeout is given up; a new leader is sent the
//! keep-alive at once.
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
//! Where it runs: [`KeepAlive`] is a façade over the drop-in's keep-alive engine
//! (`stream/keepalive_driver.rs`), the one that also answers etcd-client's `LeaseKeepAlive`
//! streams, so both keep leases by one policy (the leader first, hedges, give-ups, back-off,
//! the retry budget). Its keeper (`keeper.rs`) does for it what etcd-client's keeper loop does
//! for the drop-in: it feeds the engine a keep-alive every TTL/3, reads its answers, and
//! presumes the lease expired when none came within its TTL (the engine's renewal schedule,
//! `stream/keepalive_schedule.rs`). The options and setters for back-off, avoidance,
//! `hasleader` and the health checker are shared with the resuming watch (`src/stream/resume/`).

mod error;
mod handle;
mod keeper;
mod options;

pub use error::LeaseError;
pub use handle::{KeepAlive, KeepAliveState};
pub use options::KeepAliveOptions;
