//! Members that join a running cluster: etcd's runtime reconfiguration, for discovery tests.
//!
//! etcd adds a member in two steps: `MemberAdd` (with the new member's peer URL) through a
//! client, then the new process starts with `--initial-cluster-state existing` and an
//! `--initial-cluster` naming every member. The fixture does the second step and leaves the
//! first to the test, which is what it exercises:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use etcd_health_testing::Cluster;
//!
//! let cluster = Cluster::start(3).await?;
//! let new = cluster.prepare_member().await?; // index 3: ports chosen, not started
//! let mut client = etcd_client::Client::connect(cluster.endpoints(), None).await?;
//! client.member_add([cluster.peer_url(new)], None).await?;
//! cluster.start_joining(new).await?;
//! # Ok(()) }
//! ```
//!
//! The new member gets a peer proxy (and a client proxy when the cluster has them), so the
//! usual faults apply to it by its index.

use etcd_client::{Client, ConnectOptions};

use super::cluster::Cluster;
use super::error::ClusterError;
use super::faults::Link;
use super::member::Member;
use super::proxy;

// === impl Cluster ===

impl Cluster {
    /// Reserves ports for a new member at the next index and returns that index; nothing runs
    /// yet. Add it to the cluster (`MemberAdd` with [`peer_url`](Self::peer_url)), then
    /// [`start_joining`](Self::start_joining) it.
    pub async fn prepare_member(&self) -> Result<usize, ClusterError> {
        let bind = || async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| ClusterError::io("bind a free loopback port", e))
        };
        let port = |l: &tokio::net::TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| ClusterError::io("read local port", e))
        };
        let client = bind().await?;
        let peer = bind().await?;
        let peer_proxy = bind().await?;
        let client_proxy = match self.client_proxy {
            true => Some(bind().await?),
            false => None,
        };
        let index = self.size();
        let scheme = if self.flags.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let member = Member::new(
            format!("m{index}"),
            self.dir(),
            port(&client)?,
            port(&peer)?,
            port(&peer_proxy)?,
            client_proxy.as_ref().map(port).transpose()?,
            scheme,
        );
        let (peer_port, client_port) = (member.peer_port, member.client_port);
        drop((client, peer));
        let index = self.push_member(member);
        let mut proxies = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        proxies.push(proxy::spawn(
            peer_proxy,
            ([127, 0, 0, 1], peer_port).into(),
            Link::Peer { to: index },
            self.faults.subscribe(),
        ));
        if let Some(listener) = client_proxy {
            proxies.push(proxy::spawn(
                listener,
                ([127, 0, 0, 1], client_port).into(),
                Link::Client { to: index },
                self.faults.subscribe(),
            ));
        }
        Ok(index)
    }

    /// The peer URL members dial to reach member `i` (what `MemberAdd` takes).
    pub fn peer_url(&self, i: usize) -> String {
        self.m(i).advertised_peer_url()
    }

    /// Starts member `i`, prepared with [`prepare_member`](Self::prepare_member) and added to
    /// the cluster with `MemberAdd` (as a voter or a learner), joining the running cluster,
    /// and waits until it answers `Status`.
    pub async fn start_joining(&self, i: usize) -> Result<(), ClusterError> {
        let member = self.m(i);
        let initial = self.initial_cluster_with(i).await?;
        *member.join.lock().unwrap_or_else(|p| p.into_inner()) = Some(initial);
        self.spawn_member(i)?;
        self.wait_members(&[i], self.ready_timeout, false).await
    }

    /// `--initial-cluster` for member `i` joining: every member the cluster lists, by name,
    /// with `i` under its own name (the list has none for a member not started yet).
    async fn initial_cluster_with(&self, i: usize) -> Result<String, ClusterError> {
        let own = self.peer_url(i);
        let running: Vec<String> = (0..self.size())
            .filter(|&j| j != i && self.pid(j).is_some())
            .map(|j| self.m(j).client_url())
            .collect();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.ready_timeout)
            .with_timeout(self.ready_timeout);
        if let Some(pki) = self.pki() {
            let tls = etcd_health::Tls::from_config(&pki.client_config())
                .map_err(|e| ClusterError::io("load test TLS", std::io::Error::other(e)))?;
            options = options.with_tls(tls.client_tls_config());
        }
        let failed = |what: &str, e: etcd_client::Error| {
            ClusterError::io(what.to_owned(), std::io::Error::other(e))
        };
        let mut client = Client::connect(running, Some(options))
            .await
            .map_err(|e| failed("connect to list members", e))?;
        // The member that answers may not have applied the `MemberAdd` yet (it came back from
        // another one): ask again until the list names the new member's peer URL.
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let list = loop {
            let list = client
                .member_list()
                .await
                .map_err(|e| failed("MemberList", e))?;
            let listed = list.members().iter().any(|m| m.peer_urls().contains(&own));
            if listed {
                break list;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::io(
                    "MemberList",
                    std::io::Error::other(format!(
                        "member {i} ({own}) not listed: was it added with MemberAdd?"
                    )),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let mut entries = Vec::new();
        for m in list.members() {
            for url in m.peer_urls() {
                let name = if *url == own {
                    self.m(i).name.clone()
                } else {
                    m.name().to_owned()
                };
                if !name.is_empty() {
                    entries.push(format!("{name}={url}"));
                }
            }
        }
        Ok(entries.join(","))
    }
}
