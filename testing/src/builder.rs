//! Configuring and launching a [`Cluster`].
//!
//! Ports are found by binding `127.0.0.1:0`; the ones etcd must bind itself are released just
//! before it starts, so another process can take them in between. That race is detected from
//! etcd's log and the whole cluster is retried with fresh ports instead of failing the test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::cluster::Cluster;
use super::error::ClusterError;
use super::faults::{Faults, Link};
use super::member::{CommonFlags, Member};
use super::proxy;

const START_ATTEMPTS: usize = 3;
const MEMBER_STAGGER: Duration = Duration::from_millis(100);

/// Options for a [`Cluster`]; get one from [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    members: usize,
    pre_vote: bool,
    heartbeat_ms: u64,
    election_ms: u64,
    client_proxy: bool,
    ready_timeout: Duration,
    etcd_bin: Option<String>,
    extra_args: Vec<String>,
    tls: bool,
    jwt: bool,
}

// === impl Cluster ===

/// The ways to start a [`Cluster`] live here, beside the options they take, so the cluster
/// itself never names its builder.
impl Cluster {
    /// Options for a new cluster: 3 members, pre-vote on, 50 ms heartbeat, 500 ms election.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts a cluster of `members` members with the default options.
    pub async fn start(members: usize) -> Result<Cluster, ClusterError> {
        Self::builder().members(members).start().await
    }
}

// === impl ClusterBuilder ===

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            members: 3,
            pre_vote: true,
            heartbeat_ms: 50,
            election_ms: 500,
            client_proxy: false,
            ready_timeout: Duration::from_secs(15),
            etcd_bin: None,
            extra_args: Vec::new(),
            tls: false,
            jwt: false,
        }
    }
}

impl ClusterBuilder {
    /// Number of members (default 3).
    pub fn members(mut self, members: usize) -> Self {
        self.members = members;
        self
    }

    /// More etcd flags for every member, e.g. `["--auth-token-ttl", "1"]`.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--pre-vote` (default `true`; etcd 3.4's own default is `false`).
    pub fn pre_vote(mut self, pre_vote: bool) -> Self {
        self.pre_vote = pre_vote;
        self
    }

    /// `--heartbeat-interval` in milliseconds (default 50).
    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self
    }

    /// `--election-timeout` in milliseconds (default 500).
    pub fn election_ms(mut self, ms: u64) -> Self {
        self.election_ms = ms;
        self
    }

    /// Put a fault-injecting proxy in front of every client port (default `false`), enabling
    /// [`Cluster::set_client_latency`], [`Cluster::blackhole_client`] and [`Cluster::drop_client`].
    pub fn client_proxy(mut self, enabled: bool) -> Self {
        self.client_proxy = enabled;
        self
    }

    /// How long start-up and restarts wait for readiness (default 15 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Client ports speak TLS only and demand a client certificate (default `false`), with
    /// certificates made for this cluster: see [`Cluster::pki`]. Peer links stay plain, so
    /// [`Cluster::isolate`] works as without TLS.
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// Members issue JWT auth tokens (`--auth-token jwt,...`, ES256) instead of etcd's default
    /// `simple` ones (default `false`), with a key pair made for this cluster. A JWT carries
    /// the auth store's revision it was issued at, so any later auth store change (user added,
    /// role granted, password changed) makes members refuse it with "revision of auth store
    /// is old" until the client authenticates again. Takes effect once auth is enabled.
    pub fn jwt_tokens(mut self, enabled: bool) -> Self {
        self.jwt = enabled;
        self
    }

    /// The etcd binary (default `$ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`).
    pub fn etcd_bin(mut self, path: impl Into<String>) -> Self {
        self.etcd_bin = Some(path.into());
        self
    }

    /// Starts the members and waits until every one answers `Status` and a leader exists.
    pub async fn start(self) -> Result<Cluster, ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_start().await {
                Err(ClusterError::PortClash { .. }) if attempt < START_ATTEMPTS => continue,
                result => return result,
            }
        }
    }

    async fn try_start(&self) -> Result<Cluster, ClusterError> {
        let n = self.members;
        let dir = tempfile::Builder::new()
            .prefix("etcd-health-")
            .tempdir()
            .map_err(|e| ClusterError::io("create cluster temp dir", e))?;
        let pki = if self.tls {
            Some(super::pki::TestPki::generate(dir.path(), "cluster")?)
        } else {
            None
        };
        let mut extra_args = self.extra_args.clone();
        if self.jwt {
            extra_args.extend(jwt_flags(dir.path())?);
        }
        let scheme = if self.tls { "https" } else { "http" };
        // Hold every reserved port until all are chosen so they are distinct.
        let mut reserved = Vec::new();
        let mut members = Vec::new();
        let mut listeners = Vec::new();
        for i in 0..n {
            let client = bind().await?;
            let peer = bind().await?;
            let peer_proxy = bind().await?;
            let client_proxy = if self.client_proxy {
                Some(bind().await?)
            } else {
                None
            };
            members.push(Member::new(
                format!("m{i}"),
                dir.path(),
                port(&client)?,
                port(&peer)?,
                port(&peer_proxy)?,
                client_proxy.as_ref().map(port).transpose()?,
                scheme,
            ));
            reserved.push((client, peer));
            listeners.push((peer_proxy, client_proxy));
        }
        drop(reserved);

        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.advertised_peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let flags = CommonFlags {
            bin: self
                .etcd_bin
                .clone()
                .or_else(|| std::env::var("ETCD_BIN").ok())
                .unwrap_or_else(super::member::default_etcd_bin),
            initial_cluster,
            token: unique_token(),
            heartbeat_ms: self.heartbeat_ms,
            election_ms: self.election_ms,
            pre_vote: self.pre_vote,
            extra_args,
            tls: pki,
        };

        let (faults, _) = watch::channel(Faults::new(n));
        let mut proxies = Vec::new();
        for (i, (peer_proxy, client_proxy)) in listeners.into_iter().enumerate() {
            let upstream = ([127, 0, 0, 1], members[i].peer_port).into();
            proxies.push(proxy::spawn(
                peer_proxy,
                upstream,
                Link::Peer { to: i },
                faults.subscribe(),
            ));
            if let Some(client_proxy) = client_proxy {
                let upstream = ([127, 0, 0, 1], members[i].client_port).into();
                proxies.push(proxy::spawn(
                    client_proxy,
                    upstream,
                    Link::Client { to: i },
                    faults.subscribe(),
                ));
            }
        }

        // From here on, dropping `cluster` (also on error) kills whatever was started.
        let cluster = Cluster::new(
            members,
            faults,
            proxies,
            flags,
            self.ready_timeout,
            self.client_proxy,
            dir,
        );
        for i in 0..n {
            if i > 0 {
                tokio::time::sleep(MEMBER_STAGGER).await;
            }
            cluster.spawn_member(i)?;
        }
        cluster.wait_ready(self.ready_timeout).await?;
        Ok(cluster)
    }
}

async fn bind() -> Result<TcpListener, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ClusterError::io("bind a free loopback port", e))
}

fn port(listener: &TcpListener) -> Result<u16, ClusterError> {
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| ClusterError::io("read local port", e))
}

/// Writes an ES256 key pair for JWT tokens into `dir`; the `--auth-token` flag naming it.
fn jwt_flags(dir: &std::path::Path) -> Result<Vec<String>, ClusterError> {
    let key = rcgen::KeyPair::generate().map_err(|e| ClusterError::Certificates {
        reason: format!("JWT signing key: {e}"),
    })?;
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem)
            .map_err(|e| ClusterError::io(format!("write {}", path.display()), e))?;
        Ok::<_, ClusterError>(path)
    };
    let private = write("jwt-key.pem", key.serialize_pem())?;
    let public = write("jwt-pub.pem", key.public_key_pem())?;
    Ok(vec![
        "--auth-token".to_owned(),
        format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=10m",
            public.display(),
            private.display()
        ),
    ])
}

fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "etcd-health-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
