//! The running cluster and the faults a test can inject into it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::{ClusterError, Unready};
use super::faults::Faults;
use super::member::{CommonFlags, Member};
use super::probe;

/// Deadline of each `Status` call the fixture makes itself.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const LOG_TAIL_LINES: usize = 20;

/// A local etcd cluster of real `etcd` processes, with fault injection.
///
/// Every member's peer traffic goes through an in-process TCP proxy so that
/// [`isolate`](Self::isolate) can cut it; with
/// [`ClusterBuilder::client_proxy`](crate::ClusterBuilder::client_proxy) its client traffic does too. All methods take `&self`, so a
/// test can share an `Arc<Cluster>` with load tasks.
///
/// Dropping the cluster (also while a test panics) SIGKILLs and reaps every member, stops the
/// proxies and removes the data directories.
pub struct Cluster {
    /// Grows when a member joins ([`Cluster::prepare_member`]); indexes never change.
    members: RwLock<Vec<Arc<Member>>>,
    pub(crate) faults: watch::Sender<Faults>,
    pub(crate) proxies: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) flags: CommonFlags,
    pub(crate) ready_timeout: Duration,
    pub(crate) client_proxy: bool,
    // Last field: removed after `Drop::drop` has killed the members.
    dir: TempDir,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field(
                "members",
                &self.members.read().unwrap_or_else(|p| p.into_inner()),
            )
            .field("client_proxy", &self.client_proxy)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn new(
        members: Vec<Member>,
        faults: watch::Sender<Faults>,
        proxies: Vec<JoinHandle<()>>,
        flags: CommonFlags,
        ready_timeout: Duration,
        client_proxy: bool,
        dir: TempDir,
    ) -> Self {
        Cluster {
            members: RwLock::new(members.into_iter().map(Arc::new).collect()),
            faults,
            proxies: Mutex::new(proxies),
            flags,
            ready_timeout,
            client_proxy,
            dir,
        }
    }

    /// Number of members, joined ones included.
    pub fn size(&self) -> usize {
        self.members.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Member `i`.
    pub(crate) fn m(&self, i: usize) -> Arc<Member> {
        self.members.read().unwrap_or_else(|p| p.into_inner())[i].clone()
    }

    /// Adds a member (not started) at the next index.
    pub(crate) fn push_member(&self, member: Member) -> usize {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        members.push(Arc::new(member));
        self.faults.send_modify(|f| f.push());
        members.len() - 1
    }

    /// Client URLs as clients should use them (through the client proxies when enabled).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i` as clients should use it.
    pub fn endpoint(&self, i: usize) -> String {
        let member = self.m(i);
        match member.client_proxy_port {
            Some(port) => format!("{}://127.0.0.1:{port}", member.scheme),
            None => member.client_url(),
        }
    }

    /// The cluster's temp dir: every member's data dir and log, and the certificates of a TLS
    /// cluster. Removed when the cluster is dropped, or when its process dies (see the
    /// [module doc](super#members-die-with-their-test-process)).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The certificates of a cluster built with [`ClusterBuilder::tls`](crate::ClusterBuilder::tls).
    pub fn pki(&self) -> Option<&super::pki::TestPki> {
        self.flags.tls.as_ref()
    }

    /// Member `i`'s own client URL, bypassing any client proxy.
    pub fn direct_endpoint(&self, i: usize) -> String {
        self.m(i).client_url()
    }

    /// etcd member id of member `i`, as learned at start-up.
    pub fn member_id(&self, i: usize) -> u64 {
        self.faults.borrow().ids[i]
    }

    /// Current process id of member `i`, `None` once killed.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.m(i).pid()
    }

    /// The last `lines` lines of member `i`'s log (all its runs, appended).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.m(i).log_tail(lines)
    }

    /// The leader most reachable members report right now (each asked with a short deadline),
    /// as a member index.
    pub async fn leader(&self) -> Option<usize> {
        let answers = join_all(
            (0..self.size())
                .map(|i| probe::status(self.m(i).client_url(), self.pki(), PROBE_TIMEOUT)),
        )
        .await;
        let mut votes = vec![0usize; self.size()];
        for status in answers.into_iter().flatten() {
            if let Some(i) = self.index_of(status.leader) {
                votes[i] += 1;
            }
        }
        let (best, count) = votes.iter().enumerate().max_by_key(|(_, &c)| c)?;
        (*count > 0).then_some(best)
    }

    /// Polls [`leader`](Self::leader) until there is one.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader { timeout });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs member `i` and reaps it; its ports refuse connections afterwards.
    pub fn kill(&self, i: usize) {
        self.m(i).kill();
        self.faults.send_modify(|f| f.pids[i] = None);
    }

    /// SIGSTOPs member `i`: it still accepts TCP connections but never answers.
    pub fn pause(&self, i: usize) {
        self.m(i).signal(Signal::SIGSTOP);
    }

    /// SIGCONTs member `i` after [`pause`](Self::pause).
    pub fn resume(&self, i: usize) {
        self.m(i).signal(Signal::SIGCONT);
    }

    /// Starts member `i` again with its data dir and ports (SIGKILLing it first if running)
    /// and waits until it answers `Status`.
    pub async fn restart(&self, i: usize) -> Result<(), ClusterError> {
        if i >= self.size() {
            return Err(ClusterError::NoSuchMember {
                index: i,
                size: self.size(),
            });
        }
        self.kill(i);
        self.spawn_member(i)?;
        self.wait_members(&[i], self.ready_timeout, false).await
    }

    /// Stops member `i` as an operator's rolling restart does: SIGTERM (etcd's gRPC server
    /// stops gracefully, sending `GOAWAY` and finishing the requests it took), SIGKILL if it
    /// has not exited within 10 s. Its ports refuse connections afterwards.
    pub async fn stop(&self, i: usize) {
        self.m(i).stop(Duration::from_secs(10)).await;
        self.faults.send_modify(|f| f.pids[i] = None);
    }

    /// [`stop`](Self::stop)s member `i`, starts it again with its data dir and ports, and waits
    /// until it answers `Status`.
    pub async fn restart_gracefully(&self, i: usize) -> Result<(), ClusterError> {
        if i >= self.size() {
            return Err(ClusterError::NoSuchMember {
                index: i,
                size: self.size(),
            });
        }
        self.stop(i).await;
        self.spawn_member(i)?;
        self.wait_members(&[i], self.ready_timeout, false).await
    }

    /// Cuts member `i` from its peers: raft traffic in both directions stops (connections stay
    /// open, as with dropped packets) while clients can still reach its client port.
    pub fn isolate(&self, i: usize) {
        self.faults.send_modify(|f| f.isolated[i] = true);
    }

    /// Undoes [`isolate`](Self::isolate): held connections resume and new ones are forwarded.
    pub fn heal(&self, i: usize) {
        self.faults.send_modify(|f| f.isolated[i] = false);
    }

    /// Delays everything member `i`'s client proxy forwards by `latency`, in each direction
    /// (so a request-response round trip takes at least twice as long).
    ///
    /// # Panics
    /// If the cluster was built without [`ClusterBuilder::client_proxy`](crate::ClusterBuilder::client_proxy).
    pub fn set_client_latency(&self, i: usize, latency: Duration) {
        self.require_client_proxy("set_client_latency");
        self.faults.send_modify(|f| f.client_latency[i] = latency);
    }

    /// While `on`, member `i`'s client proxy accepts connections but forwards nothing.
    ///
    /// # Panics
    /// If the cluster was built without [`ClusterBuilder::client_proxy`](crate::ClusterBuilder::client_proxy).
    pub fn blackhole_client(&self, i: usize, on: bool) {
        self.require_client_proxy("blackhole_client");
        self.faults.send_modify(|f| f.client_blackhole[i] = on);
    }

    /// While `on`, a firewall drops every packet between clients and member `i`'s client
    /// port (the member stays up and in the cluster); off, it lets them through again.
    ///
    /// Unlike [`blackhole_client`](Self::blackhole_client), which resumes every held
    /// connection at once, this behaves as dropped packets do: a connection that was open
    /// while they were dropped resumes only at TCP's next retransmission (200 ms after the drop
    /// began, then twice as far apart each time: 6.2 s after a drop of 4 s), while a new
    /// connection passes at once.
    ///
    /// # Panics
    /// If the cluster was built without [`ClusterBuilder::client_proxy`](crate::ClusterBuilder::client_proxy).
    pub fn drop_client(&self, i: usize, on: bool) {
        self.require_client_proxy("drop_client");
        let now = tokio::time::Instant::now();
        self.faults.send_modify(|f| {
            f.client_dropped[i] = match on {
                true => f.client_dropped[i].or(Some(now)),
                false => None,
            }
        });
    }

    /// Member `i`'s client path loses `ratio` (in `[0, 1)`) of what it carries, in each
    /// direction; 0 heals it. A lost chunk is delivered when TCP would retransmit it (200 ms
    /// later, then 400 ms more if that is lost too, doubling), and what follows it on the
    /// connection waits behind it, as TCP delivers in order. The member stays up, in the
    /// cluster, and its peer links are untouched.
    ///
    /// # Panics
    /// If the cluster was built without [`ClusterBuilder::client_proxy`](crate::ClusterBuilder::client_proxy).
    pub fn lossy_client(&self, i: usize, ratio: f64) {
        self.require_client_proxy("lossy_client");
        self.faults
            .send_modify(|f| f.client_loss[i] = ratio.clamp(0.0, 0.99));
    }

    fn require_client_proxy(&self, what: &str) {
        assert!(
            self.client_proxy,
            "{what} needs Cluster::builder().client_proxy(true)"
        );
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        if id == 0 {
            return None;
        }
        self.faults.borrow().ids.iter().position(|&x| x == id)
    }

    pub(crate) fn spawn_member(&self, i: usize) -> Result<(), ClusterError> {
        let pid = self.m(i).spawn(&self.flags)?;
        self.faults.send_modify(|f| f.pids[i] = Some(pid));
        Ok(())
    }

    /// Waits until every member answers `Status` and a leader exists.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let all: Vec<usize> = (0..self.size()).collect();
        self.wait_members(&all, timeout, true).await
    }

    /// Waits until each member in `which` answers `Status` (and, with `need_leader`, until one
    /// of them knows a leader that is a member). Records member ids on the way.
    pub(crate) async fn wait_members(
        &self,
        which: &[usize],
        timeout: Duration,
        need_leader: bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            for &i in which {
                let member = self.m(i);
                if let Some(status) = member.exited() {
                    let log_tail = member.log_tail(LOG_TAIL_LINES);
                    return Err(if member.port_clash() {
                        ClusterError::PortClash {
                            member: member.name.clone(),
                            log_tail,
                        }
                    } else {
                        ClusterError::Exited {
                            member: member.name.clone(),
                            status,
                            log_tail,
                        }
                    });
                }
            }
            let answers = join_all(
                which
                    .iter()
                    .map(|&i| probe::status(self.m(i).client_url(), self.pki(), PROBE_TIMEOUT)),
            )
            .await;
            self.faults.send_modify(|f| {
                for (&i, answer) in which.iter().zip(&answers) {
                    if let Ok(status) = answer {
                        if status.member_id != 0 {
                            f.ids[i] = status.member_id;
                        }
                    }
                }
            });
            let all_answer = answers.iter().all(|a| a.is_ok());
            let has_leader = answers
                .iter()
                .flatten()
                .any(|s| self.index_of(s.leader).is_some());
            if all_answer && (has_leader || !need_leader) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let unready = which
                    .iter()
                    .zip(&answers)
                    .filter_map(|(&i, answer)| {
                        let last_error = match answer {
                            Err(e) => e.clone(),
                            Ok(s) if self.index_of(s.leader).is_none() => {
                                format!("no leader (errors: {:?})", s.errors)
                            }
                            Ok(_) => return None,
                        };
                        Some(Unready {
                            member: self.m(i).name.clone(),
                            last_error,
                            log_tail: self.m(i).log_tail(LOG_TAIL_LINES),
                        })
                    })
                    .collect();
                return Err(ClusterError::NotReady { timeout, unready });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in self
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            member.kill();
        }
        for proxy in self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            proxy.abort();
        }
    }
}
