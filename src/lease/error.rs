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
    /// No keep-alive was answered within the lease's TTL (counted from the send time of the
    /// last one answered, or from the start with
    /// [`granted_ttl`](super::KeepAliveOptions::granted_ttl)): etcd may have expired the lease,
    /// or will any moment, so the caller must stop acting as its holder (release the lock,
    /// stop serving as the elected one). Reported before etcd can have deleted the keys, never
    /// after.
    ///
    /// Not final: the helper keeps renewing, because while the cluster has no leader nobody can
    /// expire a lease and the next leader renews every lease by its TTL. If a member then
    /// answers, the lease lives on ([`KeepAliveState::presumed_expired`](super::KeepAliveState)
    /// goes back to `false`); if it was expired, the answer is TTL 0 and the helper ends with
    /// [`LeaseError::Lost`]. A caller that stepped down should [`stop`](super::KeepAlive::stop)
    /// the helper (with `revoke_on_stop`, the lease and its keys go at once), or keys it no
    /// longer acts for stay alive.
    #[error("lease {lease_id:x} presumed expired: no keep-alive answered within its TTL")]
    Expired {
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
    /// Whether the lease itself is gone, or must be presumed gone (as opposed to keep-alives
    /// being refused).
    pub fn is_lost(&self) -> bool {
        matches!(self, LeaseError::Lost { .. } | LeaseError::Expired { .. })
    }

    /// Whether the lease's TTL ran out locally with no keep-alive answered
    /// ([`LeaseError::Expired`]).
    pub fn is_expired(&self) -> bool {
        matches!(self, LeaseError::Expired { .. })
    }
}
