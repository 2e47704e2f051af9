//! Fake etcd members that speak *newer* etcd's watch behaviour (3.5, 3.6), for what the real
//! members here (Debian's etcd 3.4.23) cannot show.
//!
//! Why a fake: etcd 3.5.8 changed how a watch stream's progress requests are answered (in order
//! with events, only when every watcher of the stream is synced, deferred and coalesced), and
//! 3.5.13/3.6 changed it again (not answered at all while a watcher catches up). A client that
//! counts one answer per request, or takes silence for a hung member, works on 3.4 and breaks
//! on what users run. Only 3.4.23 can be installed here, so these members model the newer
//! behaviour from etcd's own source (see [`Behaviour`] and `watch.rs` for the functions each
//! rule comes from) and nothing else: no raft, no leases, no auth.
//!
//! A [`FakeCluster`] is a few members on loopback over one shared store (as a perfectly
//! replicated cluster): each is a real gRPC server (tonic's codec over hyper's HTTP/2) serving
//! `Watch/Watch`, `KV/{Range,Put,DeleteRange,Compact}`, `Maintenance/Status`,
//! `Cluster/MemberList`, `Lease/LeaseKeepAlive` (every lease alive with [`LEASE_TTL`]; a member
//! can be made to hold keep-alives, as a follower does for a hung leader) and `grpc.health.v1`, plus etcd's HTTP/1.1 `/health` on the same port,
//! so the drop-in (`HealthChannel`, `Config::default()`) and the tower stack can be pointed at
//! it as at real members. A member can be killed (its listener and every connection dropped:
//! the client sees connections refused and streams reset) and restarted on the same port.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use etcd_health_testing::fake::{Behaviour, FakeCluster};
//!
//! let cluster = FakeCluster::start(3, Behaviour::Etcd36).await?;
//! let endpoints = cluster.endpoints();
//! cluster.kill(0);
//! cluster.restart(0).await?;
//! # Ok(()) }
//! ```

mod serve;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::task::{AbortHandle, JoinSet};

pub use watch::Behaviour;

/// The TTL every keep-alive is answered with: the fake keeps no leases, each is alive.
pub const LEASE_TTL: i64 = 3;

/// The fake cluster's id in response headers.
const CLUSTER_ID: u64 = 0xfa6e;

/// How a fake member behaves.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    /// Its member id (headers, `MemberList`).
    pub id: u64,
    /// Which etcd it speaks.
    pub behaviour: Behaviour,
    /// How long an unsynced watcher (created from a past revision) takes to be caught up:
    /// etcd's sync loop runs every 100 ms; a busy member takes longer.
    pub catch_up: Duration,
    /// The per-watcher progress notification interval (etcd's
    /// `--experimental-watch-progress-notify-interval`, default 10 minutes).
    pub progress_notify_interval: Duration,
}

/// One member: where it listens and the task that serves it while alive.
#[derive(Debug)]
struct FakeMember {
    addr: SocketAddr,
    spec: MemberSpec,
    serving: Option<AbortHandle>,
    /// Whether it holds keep-alives (never answers them, nor the stream's headers).
    holds: Arc<AtomicBool>,
}

/// Fake members over one shared store (see the [module docs](self)). Dropping it stops them.
#[derive(Debug)]
pub struct FakeCluster {
    store: Arc<Mutex<store::Store>>,
    members: Mutex<Vec<FakeMember>>,
    urls: Arc<Vec<(u64, String)>>,
}

// === impl FakeCluster ===

impl FakeCluster {
    /// `n` members speaking `behaviour`, catching watchers up in etcd's 100 ms.
    pub async fn start(n: usize, behaviour: Behaviour) -> std::io::Result<Self> {
        Self::start_with(n, |id| MemberSpec {
            id,
            behaviour,
            catch_up: Duration::from_millis(100),
            progress_notify_interval: Duration::from_secs(600),
        })
        .await
    }

    /// `n` members, member `i` (id `i + 1`) as `spec(i + 1)` says.
    pub async fn start_with(n: usize, spec: impl Fn(u64) -> MemberSpec) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(n);
        for i in 0..n {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind("127.0.0.1:0".parse().expect("an address"))?;
            let listener = socket.listen(128)?;
            listeners.push((spec(i as u64 + 1), listener));
        }
        let urls: Vec<(u64, String)> = listeners
            .iter()
            .map(|(s, l)| Ok((s.id, format!("http://{}", l.local_addr()?))))
            .collect::<std::io::Result<_>>()?;
        let cluster = Self {
            store: Arc::new(Mutex::new(store::Store::new())),
            members: Mutex::new(Vec::new()),
            urls: Arc::new(urls),
        };
        for (spec, listener) in listeners {
            let addr = listener.local_addr()?;
            let holds = Arc::new(AtomicBool::new(false));
            let serving = cluster.serve(spec.clone(), holds.clone(), listener);
            cluster.lock().push(FakeMember {
                addr,
                spec,
                serving: Some(serving),
                holds,
            });
        }
        Ok(cluster)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FakeMember>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve(
        &self,
        spec: MemberSpec,
        holds: Arc<AtomicBool>,
        listener: tokio::net::TcpListener,
    ) -> AbortHandle {
        let shared = serve::Shared {
            store: self.store.clone(),
            spec,
            members: self.urls.clone(),
            holds,
        };
        // The accept task owns the connections' JoinSet: aborting it drops them all.
        tokio::spawn(serve::accept(listener, shared, JoinSet::new())).abort_handle()
    }

    /// Every member's client URL (`http://127.0.0.1:port`), in index order.
    pub fn endpoints(&self) -> Vec<String> {
        self.urls.iter().map(|(_, u)| u.clone()).collect()
    }

    /// Kills member `index`: its port refuses connections and its connections (with their
    /// streams) are dropped.
    pub fn kill(&self, index: usize) {
        if let Some(serving) = self.lock()[index].serving.take() {
            serving.abort();
        }
    }

    /// Starts a killed member again on its port.
    pub async fn restart(&self, index: usize) -> std::io::Result<()> {
        let (addr, spec, holds) = {
            let members = self.lock();
            let m = &members[index];
            (m.addr, m.spec.clone(), m.holds.clone())
        };
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let serving = self.serve(spec, holds, socket.listen(128)?);
        self.lock()[index].serving = Some(serving);
        Ok(())
    }

    /// Makes member `index` hold keep-alive streams opened from now on (`true`: no headers,
    /// no answer, as etcd sends a keep-alive stream's headers with its first answer and a
    /// follower holds that while the leader hangs), or answer them again.
    pub fn hold_keep_alives(&self, index: usize, hold: bool) {
        self.lock()[index].holds.store(hold, Ordering::Relaxed);
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).rev()
    }

    /// Writes `key = value` (as a `Put` on any member would); returns the new revision.
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> i64 {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.put(key.into(), value.into()).0
    }

    /// Compacts the history below `revision`; `Err` with etcd's message if it was compacted
    /// already or is in the future.
    pub fn compact(&self, revision: i64) -> Result<(), String> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store
            .compact(revision)
            .map_err(|e| e.message().to_string())?;
        debug_assert!(store.compacted() == revision);
        Ok(())
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for m in self.lock().iter_mut() {
            if let Some(s) = m.serving.take() {
                s.abort();
            }
        }
    }
}
