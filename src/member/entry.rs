//! Everything the health state keeps about one member.
//!
//! Why the fields are private: every part of the stack reads a member through the methods
//! below, so how a status is mirrored for the hot path, or when a member counts as admitted,
//! is decided here alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::{Member, Origin, ProbeReport};
use crate::health::HealthState;
use crate::load::Load;

/// One member of the health state.
#[derive(Debug)]
pub(crate) struct MemberEntry {
    member: Member,
    pub(crate) state: Mutex<HealthState>,
    /// Mirror of `state.status()` for the request hot path.
    pub(crate) healthy: AtomicBool,
    /// The balancer's load estimate of the member, kept here so that every balancer over
    /// this state shares it and snapshots report it; the health state only restarts it when
    /// the member is re-admitted.
    load: Load,
    pub(crate) last_probe: Mutex<Option<ProbeReport>>,
    /// How to reach the member, when the user gave more than a URL.
    endpoint: Option<OwnEndpoint>,
    /// When the latest request the member answered had been *sent* (nanoseconds since the
    /// state's epoch, 0 for never): a hang is a request outliving its bound while peers answer
    /// requests sent after it. (Completion times would not do: right after a member hangs,
    /// its peers still complete requests that were in flight before, and every member would
    /// look hung next to them.)
    pub(crate) last_answer: AtomicU64,
    /// How the member entered the health state.
    origin: Origin,
    /// Whether it was ever in rotation: members found by `MemberList` start out of it, pending
    /// admission.
    pub(crate) admitted: AtomicBool,
    /// How many times it was put (back) into rotation: a balancer makes its channel to the
    /// member anew when this moved (see [`returns`](Self::returns)).
    pub(crate) returns: AtomicU64,
    /// When it was added.
    added: Instant,
    /// Requests in flight on the member end at once when this moves (see
    /// [`abandon`](Self::abandon)).
    abandoned: Abandoned,
    /// Its metrics' handles (nothing without the `metrics` feature).
    metrics: crate::metrics::PerMember,
}

/// How requests in flight on a member learn that it was ejected for sitting on them.
///
/// Why a counter and a `Notify` rather than a `watch` channel per request: the happy path only
/// reads the counter (one atomic load when an attempt starts); a request registers with the
/// `Notify` (a lock) only once it has waited long enough to be worth watching, and the counter
/// closes the race between that reading and the registration.
#[derive(Debug, Default)]
struct Abandoned {
    times: AtomicU64,
    notify: Notify,
}

/// A member's own tonic `Endpoint` (its TLS, credentials, timeouts).
#[derive(Clone, Debug)]
pub(crate) struct OwnEndpoint {
    endpoint: tonic::transport::Endpoint,
    configured_tls: bool,
}

// === impl MemberEntry ===

impl MemberEntry {
    /// A member added at `now`; a `pending` one starts out of rotation.
    pub(crate) fn new(
        member: Member,
        endpoint: Option<OwnEndpoint>,
        origin: Origin,
        pending: bool,
        now: Instant,
    ) -> Self {
        let state = if pending {
            HealthState::pending(now)
        } else {
            HealthState::new(now)
        };
        Self {
            metrics: crate::metrics::PerMember::new(member.authority(), !pending),
            member,
            state: Mutex::new(state),
            healthy: AtomicBool::new(!pending),
            load: Load::new(now),
            last_probe: Mutex::new(None),
            endpoint,
            last_answer: AtomicU64::new(0),
            origin,
            admitted: AtomicBool::new(!pending),
            returns: AtomicU64::new(0),
            added: now,
            abandoned: Abandoned::default(),
        }
    }

    /// The member.
    pub(crate) fn member(&self) -> &Member {
        &self.member
    }

    /// The member's metrics.
    pub(crate) fn metrics(&self) -> &crate::metrics::PerMember {
        &self.metrics
    }

    /// The balancer's load estimate of the member.
    pub(crate) fn load(&self) -> &Load {
        &self.load
    }

    /// How the member entered the health state.
    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }

    /// When it was added.
    pub(crate) fn added(&self) -> Instant {
        self.added
    }

    /// How to reach the member, when the user gave more than a URL.
    pub(crate) fn own_endpoint(&self) -> Option<&OwnEndpoint> {
        self.endpoint.as_ref()
    }

    /// Whether the member is in rotation.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// How many times the member was put (back) into rotation.
    ///
    /// Why a balancer makes a new channel when this moves: a connection that lived through the
    /// fault may not work when the member does again. Through a firewall that dropped packets,
    /// an old connection with data in flight stays silent until TCP's next retransmission,
    /// which backs off to seconds (12.6 s after a drop of 10 s), while the probes that
    /// re-admitted the member went through new connections at once; requests sent on the old
    /// one would outwait their deadline, and writes among them end *outcome unknown*.
    pub(crate) fn returns(&self) -> u64 {
        self.returns.load(Ordering::Acquire)
    }

    /// How many times requests in flight on the member were abandoned (see
    /// [`abandon`](Self::abandon)): an attempt reads it when it starts, and hands it to
    /// [`abandoned_after`](Self::abandoned_after) once it waits.
    pub(crate) fn abandons(&self) -> u64 {
        self.abandoned.times.load(Ordering::Acquire)
    }

    /// Resolves once requests on the member were abandoned after `seen` (a reading of
    /// [`abandons`](Self::abandons)), at once if that happened already.
    pub(crate) async fn abandoned_after(&self, seen: u64) {
        loop {
            let notified = self.abandoned.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the counter is read again: a bump in between still wakes it.
            notified.as_mut().enable();
            if self.abandons() != seen {
                return;
            }
            notified.await;
        }
    }

    /// The member was ejected because it sits on requests (it hangs, or lost the leadership
    /// and no longer answers): the requests in flight on it end at once instead of waiting for
    /// it (writes as *outcome unknown*, reads go to another member).
    pub(crate) fn abandon(&self) {
        self.abandoned.times.fetch_add(1, Ordering::AcqRel);
        self.abandoned.notify.notify_waiters();
    }

    /// While unhealthy: the earliest time a success may re-admit it.
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        lock(&self.state).ejected_until()
    }

    /// Found by discovery and never in rotation yet: it must prove it belongs to the cluster
    /// (a `Status` answer with the cluster's id) before it takes a request.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(
            self.origin,
            Origin::MemberList { .. } | Origin::Custom { .. }
        ) && !self.admitted.load(Ordering::Acquire)
    }

    /// Failed active checks so far.
    pub(crate) fn failed_probes(&self) -> u64 {
        let totals = lock(&self.state).totals();
        totals[1] + totals[2] + totals[3]
    }

    /// The last active probe of the member.
    pub(crate) fn last_probe(&self) -> Option<ProbeReport> {
        lock(&self.last_probe).clone()
    }
}

// === impl OwnEndpoint ===

impl OwnEndpoint {
    /// `endpoint` as the user gave it; `configured_tls`: `config.tls` was applied to it (the
    /// drop-in's `https://` members), so it is applied again, as it is then, to every channel
    /// made from it, and reloads reach them.
    pub(crate) fn new(endpoint: tonic::transport::Endpoint, configured_tls: bool) -> Self {
        Self {
            endpoint,
            configured_tls,
        }
    }

    /// The endpoint.
    pub(crate) fn endpoint(&self) -> &tonic::transport::Endpoint {
        &self.endpoint
    }

    /// Whether `config.tls` was applied to it (and must be again, as it is now).
    pub(crate) fn configured_tls(&self) -> bool {
        self.configured_tls
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
