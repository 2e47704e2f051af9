//! A real local etcd cluster with fault injection, for tests, benches and examples.
//!
//! The health layer exists because etcd members fail in ways a mock cannot reproduce: a killed
//! member refuses connections, a hung one accepts them and never answers, an isolated one
//! answers but has no leader (see `DESIGN.md`, section 1). So the tests run against real `etcd`
//! processes (`$ETCD_BIN`, else `/usr/bin/etcd`) and inject those failures for real: SIGKILL,
//! SIGSTOP/SIGCONT, and an in-process TCP proxy on every peer link (and optionally every client
//! link) that can cut a member from its peers, blackhole clients or add latency without root,
//! `tc netem` or iptables, so several test binaries can run clusters in parallel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_health::testing::ClusterError> {
//! use etcd_health::testing::Cluster;
//! use std::time::Duration;
//!
//! let cluster = Cluster::builder().members(3).client_proxy(true).start().await?;
//! let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
//! cluster.isolate(leader);
//! cluster.set_client_latency(0, Duration::from_millis(100));
//! # Ok(()) }
//! ```
//!
//! With [`ClusterBuilder::tls`] the client ports speak only TLS and demand a client
//! certificate (`--client-cert-auth`), with a CA made for the cluster ([`TestPki`]).
//!
//! Everything is torn down when the [`Cluster`] is dropped, including on panic.

mod builder;
mod cluster;
mod error;
mod faults;
mod join;
mod member;
mod origin;
mod pki;
mod probe;
mod proxy;

pub use builder::ClusterBuilder;
pub use cluster::Cluster;
pub use error::{ClusterError, Unready};
pub use pki::TestPki;
