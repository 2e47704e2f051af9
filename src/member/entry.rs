//! Everything the health state keeps about one member.
//!
//! Why the fields are private: every part of the stack reads a member through the methods
//! below. What the health rules decide (its status, whether it is pending, its ejection) lives
//! in the cluster state (`cluster/`); this entry holds a mirror of it that the request path
//! reads without a lock, and what belongs to the member alone: its load, its answers' times,
//! its abandoned requests, its endpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::{Member, Origin, ProbeReport};
use crate::load::Load;

/// One member of the health state.
#[derive(Debug)]
pub(crate) struct MemberEntry {
    member: Member,
    /// Mirror of the member's status in the cluster state, for the request hot path (this
    /// and the other mirrors are written by the health state's handle only, under its lock,
    /// after every event that touched the member; see [`Mirror`]).
    healthy: AtomicBool,
    /// Mirror: found by discovery and never in rotation yet.
    pending: AtomicBool,
    /// Mirror: failed active checks so far.
    failed_probes: AtomicU64,
    /// Mirror: its ejection runs (the cluster state's timer on it has not fired yet).
    ejected: AtomicBool,
    /// Mirror: a passive success would change nothing but its totals.
    settled: AtomicBool,
    /// Passive successes counted while settled, to fold into the cluster state.
    quiet: QuietSuccesses,
    /// The balancer's load estimate of the member, kept here so that every balancer over
    /// this state shares it and snapshots report it; the health state only restarts it when
    /// the member is re-admitted.
    load: Load,
    /// The last active probe's report (a leaf lock: nothing else is taken while it is held).
    last_probe: Mutex<Option<ProbeReport>>,
    /// How to reach the member, when the user gave more than a URL.
    endpoint: Option<OwnEndpoint>,
    /// When the latest request the member answered had been *sent* (nanoseconds since the
    /// state's epoch, 0 for never): a hang is a request outliving its bound while peers answer
    /// requests sent after it. (Completion times would not do: right after a member hangs,
    /// its peers still complete requests that were in flight before, and every member would
    /// look hung next to them.)
    last_answer: AtomicU64,
    /// How the member entered the health state.
    origin: Origin,
    /// How many times it was put (back) into rotation: a balancer makes its channel to the
    /// member anew when this moved (see [`returns`](Self::returns)).
    returns: AtomicU64,
    /// When it was added.
    added: Instant,
    /// Requests in flight on the member end at once when this moves (see
    /// [`abandon`](Self::abandon)).
    abandoned: Abandoned,
    /// Its metrics' handles (nothing without the `metrics` feature).
    metrics: crate::metrics::PerMember,
}

/// What the request path reads of a member without the state's lock: the health state's
/// handle copies it into the member's entry under its lock, after every event that touched
/// the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mirror {
    /// In rotation.
    pub(crate) healthy: bool,
    /// Found by discovery and never in rotation yet.
    pub(crate) pending: bool,
    /// Failed active checks so far.
    pub(crate) failed_probes: u64,
    /// Its ejection runs: the state's timer on it has not fired yet (see
    /// `ClusterState::poll_timeout`), so no probe is due.
    pub(crate) ejected: bool,
    /// In rotation with no failure counted since its last success
    /// (`HealthState::is_settled`): a passive success would change nothing but its totals,
    /// so it may be counted here without the state's lock (see
    /// [`count_quiet_success`](MemberEntry::count_quiet_success)).
    pub(crate) settled: bool,
}

/// Passive successes counted while the member was settled, not yet folded into the cluster
/// state (see [`MemberEntry::count_quiet_success`]).
///
/// Why: every answered request reports a success, and taking the health state's one lock for
/// each (shared by every request of the process) to add one to a total was a tenth of what the
/// stack added to a request's CPU, and a point every thread of a busy client met. The lock is
/// taken anyway for anything that can change a status; these are folded in first.
#[derive(Debug, Default)]
struct QuietSuccesses {
    count: AtomicU64,
    /// When the last of them came (a stamp of the health state's epoch).
    last: AtomicU64,
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
    /// A member added at `now`, as the cluster state shows it in `mirror`.
    pub(crate) fn new(
        member: Member,
        endpoint: Option<OwnEndpoint>,
        origin: Origin,
        mirror: Mirror,
        now: Instant,
    ) -> Self {
        let entry = Self {
            metrics: crate::metrics::PerMember::new(member.authority(), mirror.healthy),
            member,
            healthy: AtomicBool::new(mirror.healthy),
            pending: AtomicBool::new(mirror.pending),
            failed_probes: AtomicU64::new(0),
            ejected: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            quiet: QuietSuccesses::default(),
            load: Load::new(now),
            last_probe: Mutex::new(None),
            endpoint,
            last_answer: AtomicU64::new(0),
            origin,
            returns: AtomicU64::new(0),
            added: now,
            abandoned: Abandoned::default(),
        };
        entry.mirror(mirror);
        entry
    }

    /// Writes the cluster state's view of the member (under the state's lock).
    pub(crate) fn mirror(&self, mirror: Mirror) {
        self.healthy.store(mirror.healthy, Ordering::Release);
        self.pending.store(mirror.pending, Ordering::Release);
        self.failed_probes
            .store(mirror.failed_probes, Ordering::Release);
        self.ejected.store(mirror.ejected, Ordering::Release);
        self.settled.store(mirror.settled, Ordering::Release);
    }

    /// Counts a passive success, at `stamp` (of the health state's epoch), without the state's
    /// lock, if the member is settled (see [`Mirror::settled`]); `false` if it is not, and the
    /// success must be recorded under the lock. A failure recorded between the check and the
    /// count is folded in after this success, not before: its count then stays where a success
    /// would have reset it, the cautious side.
    pub(crate) fn count_quiet_success(&self, stamp: u64) -> bool {
        if !self.settled.load(Ordering::Acquire) {
            return false;
        }
        self.quiet.last.fetch_max(stamp, Ordering::Relaxed);
        self.quiet.count.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Takes the successes counted by [`count_quiet_success`](Self::count_quiet_success)
    /// since the last call (under the state's lock, to fold them in): how many, and the stamp
    /// of the last one; `None` if there were none.
    pub(crate) fn take_quiet_successes(&self) -> Option<(u64, u64)> {
        match self.quiet.count.swap(0, Ordering::AcqRel) {
            0 => None,
            n => Some((n, self.quiet.last.load(Ordering::Relaxed))),
        }
    }

    /// The member was put back into rotation (under the state's lock).
    pub(crate) fn returned(&self) {
        self.returns.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that the member answered a request sent at `sent` (a stamp of the health state's
    /// clock: nanoseconds since its epoch).
    pub(crate) fn answered(&self, sent: u64) {
        self.last_answer.fetch_max(sent.max(1), Ordering::Relaxed);
    }

    /// When the latest request the member answered had been sent (a stamp; 0 for never).
    pub(crate) fn last_answer(&self) -> u64 {
        self.last_answer.load(Ordering::Relaxed)
    }

    /// Keeps the last active probe's report.
    pub(crate) fn set_last_probe(&self, report: ProbeReport) {
        *lock(&self.last_probe) = Some(report);
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

    /// Its ejection runs: the cluster state's timer on it has not fired yet, so it is not due
    /// for a probe.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// Found by discovery and never in rotation yet: it must prove it belongs to the cluster
    /// (a `Status` answer with the cluster's id) before it takes a request.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Failed active checks so far.
    pub(crate) fn failed_probes(&self) -> u64 {
        self.failed_probes.load(Ordering::Acquire)
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
