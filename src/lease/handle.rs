//! The caller's side: state, loss notification, stop.

use std::time::Duration;

use super::{keeper, KeepAliveOptions, LeaseError};
use crate::balance::Balance;
use crate::member::Member;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::LeaseRevokeRequest;
use crate::stream::resume::{set_metadata, BoxChannel, Driven, IntoBoxChannel};
use crate::stream::StreamHealth;

/// How long a revoke on stop may take.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a keep-alive went through so far, and where it stands.
///
/// The fields shared with [`WatchState`](crate::watch::WatchState) have the same names:
/// [`member`](Self::member), [`reopens`](Self::reopens), [`last_failure`](Self::last_failure),
/// [`ended`](Self::ended).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct KeepAliveState {
    /// The lease kept alive.
    pub lease_id: i64,
    /// The TTL etcd granted at the last renewal, in seconds.
    pub ttl: Option<i64>,
    /// Keep-alives answered.
    pub renewals: u64,
    /// Streams lost (failed, ended, evicted, or given up unanswered) and replaced.
    pub reopens: u64,
    /// Streams opened on another member while a keep-alive was unanswered.
    pub hedges: u64,
    /// When the lease must be presumed expired unless a keep-alive is answered before: the send
    /// time of the last one answered plus its TTL.
    pub expires: Option<std::time::Instant>,
    /// Whether that time has passed with no keep-alive answered (see [`LeaseError::Expired`]);
    /// renewals go on, and an answer sets it back to `false`.
    pub presumed_expired: bool,
    /// How many times the lease was presumed expired.
    pub expiries: u64,
    /// The member carrying the stream now (the one that answered last, while its stream is
    /// open), when the channel says ([`ServedBy`](crate::balance::ServedBy)).
    pub member: Option<Member>,
    /// Why the last re-open happened.
    pub last_failure: Option<String>,
    /// Set once the lease is lost (etcd said so) or keep-alives are refused for good; the
    /// helper stopped. (A lease only presumed expired is not: see
    /// [`presumed_expired`](Self::presumed_expired).)
    pub ended: Option<LeaseError>,
}

/// Keeps one lease alive across member failures: keep-alives go to the leader when the health
/// checker knows it, one unanswered for a while is sent on a second stream to another member
/// too, and [`lost`](Self::lost) resolves as soon as the lease must be presumed expired, so
/// whoever acts as its holder stops before etcd deletes its keys.
#[derive(Debug)]
pub struct KeepAlive {
    lease_id: i64,
    channel: BoxChannel,
    options: KeepAliveOptions,
    driven: Driven<KeepAliveState>,
}

// === impl KeepAlive ===

impl KeepAlive {
    /// Starts keeping `lease_id` alive through `channel` (a [`Balance`], a tonic `Channel` or
    /// any tower service a tonic stub can call). Must be called inside a tokio runtime.
    pub fn new(channel: impl IntoBoxChannel, lease_id: i64, options: KeepAliveOptions) -> Self {
        let channel = channel.into_box_channel();
        let initial = KeepAliveState {
            lease_id,
            ..Default::default()
        };
        let driven = Driven::spawn(initial, |state| {
            keeper::run(channel.clone(), lease_id, options.clone(), state)
        });
        Self {
            lease_id,
            channel,
            options,
            driven,
        }
    }

    /// Starts keeping `lease_id` alive through `balance`, re-opening the stream as soon as the
    /// health checker evicts its member.
    pub fn over_balance<M>(
        balance: &Balance<M>,
        lease_id: i64,
        mut options: KeepAliveOptions,
    ) -> Self
    where
        M: crate::balance::MakeMember,
        Balance<M>: IntoBoxChannel,
    {
        options.reopen = options
            .reopen
            .or_health(StreamHealth::new(balance.checker().clone()));
        Self::new(balance.clone(), lease_id, options)
    }

    /// The lease kept alive.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// What the keep-alive went through so far.
    pub fn state(&self) -> KeepAliveState {
        self.driven.state()
    }

    /// The member carrying the keep-alives now, if known.
    pub fn member(&self) -> Option<Member> {
        self.driven.read(|s| s.member.clone())
    }

    /// Waits until the lease is lost (etcd says it expired or was revoked), presumed expired (no
    /// keep-alive answered within its TTL: [`LeaseError::Expired`]), or keep-alives are refused
    /// for good, and says why; at once if that is the case now. Pending for ever while the
    /// lease lives. Whoever acts as the lease's holder (a lock, a leader election, a
    /// registration) should stop when this resolves.
    ///
    /// (The lease's counterpart of the watch's last item: a keep-alive yields nothing else.)
    pub async fn lost(&self) -> LeaseError {
        let mut rx = self.driven.subscribe();
        let lost = match rx
            .wait_for(|s| s.ended.is_some() || s.presumed_expired)
            .await
        {
            Ok(s) => Some(s.ended.clone().unwrap_or(LeaseError::Expired {
                lease_id: self.lease_id,
            })),
            Err(_) => None,
        };
        match lost {
            Some(err) => err,
            // The task is gone without a verdict: only happens after stop.
            None => std::future::pending().await,
        }
    }

    /// Stops the keep-alives. With [`KeepAliveOptions::revoke_on_stop`], also revokes the
    /// lease and returns etcd's answer; otherwise the lease expires after its TTL.
    pub async fn stop(mut self) -> Result<(), tonic::Status> {
        self.halt();
        if self.options.revoke_on_stop {
            self.options.revoke_on_stop = false;
            return revoke(
                self.channel.clone(),
                self.lease_id,
                self.options.reopen.require_leader,
            )
            .await;
        }
        Ok(())
    }

    fn halt(&mut self) {
        self.driven.halt();
    }
}

impl Drop for KeepAlive {
    /// Stops the keep-alives; revokes the lease in the background with `revoke_on_stop`.
    fn drop(&mut self) {
        self.halt();
        if self.options.revoke_on_stop {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (channel, id, leader) = (
                    self.channel.clone(),
                    self.lease_id,
                    self.options.reopen.require_leader,
                );
                rt.spawn(async move {
                    if let Err(status) = revoke(channel, id, leader).await {
                        tracing::warn!(lease = %format_args!("{id:x}"), %status, "revoke on drop failed");
                    }
                });
            }
        }
    }
}

/// Revokes the lease (once: a revoke is a write, and retrying after a timeout could not tell
/// us more than the TTL will).
async fn revoke(
    channel: BoxChannel,
    lease_id: i64,
    require_leader: bool,
) -> Result<(), tonic::Status> {
    let mut client = LeaseClient::new(channel);
    let mut req = tonic::Request::new(LeaseRevokeRequest { id: lease_id });
    req.set_timeout(REVOKE_TIMEOUT);
    set_metadata(&mut req, require_leader, Default::default());
    client.lease_revoke(req).await.map(|_| ())
}
