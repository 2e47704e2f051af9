//! Why a lease is no longer kept alive.

/// The end of a [`KeepAlive`](super::KeepAlive), other than the caller stopping it.
///
/// Member failures never end it (the stream is re-opened elsewhere); these do.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// etcd answered a keep-alive with TTL 0: the lease expired or was revoked, and the keys
    /// attached to it are gone. Grant a new lease.
    #[error("lease {lease_id:x} is gone: etcd says it expired or was revoked (TTL 0)")]
    Lost {
        /// The lease.
        lease_id: i64,
    },
    /// A keep-alive failed with a status that would be the same on every member (e.g.
    /// permission denied).
    #[error("keep-alive of lease {lease_id:x} failed: {status}")]
    Status {
        /// The lease.
        lease_id: i64,
        /// etcd's answer.
        status: tonic::Status,
    },
}

impl LeaseError {
    /// Whether the lease itself is gone (as opposed to keep-alives being refused).
    pub fn is_lost(&self) -> bool {
        matches!(self, LeaseError::Lost { .. })
    }
}
