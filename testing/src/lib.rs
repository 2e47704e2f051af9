//! A real local etcd cluster with fault injection, for tests, benches and examples.
//!
//! The health layer exists because etcd members fail in ways a mock cannot reproduce: a killed
//! member refuses connections, a hung one accepts them and never answers, an isolated one
//! answers but has no leader (see `DESIGN.md`, section 1). So the tests run against real `etcd`
//! processes (`$ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`) and inject those failures for real: SIGKILL,
//! SIGSTOP/SIGCONT, and an in-process TCP proxy on every peer link (and optionally every client
//! link) that can cut a member from its peers, blackhole clients or add latency without root,
//! `tc netem` or iptables, so several test binaries can run clusters in parallel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_health_testing::ClusterError> {
//! use etcd_health_testing::Cluster;
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
//!
//! It is a crate of its own (`publish = false`), a dev-dependency of `etcd-health`, so the
//! library's users never build it and its needs (`nix` for signals, `rcgen` for certificates,
//! `tempfile`) stay out of the library's dependencies. It uses only the library's public API.
//!
//! # Members die with their test process
//!
//! A test process that is killed (SIGKILL, Ctrl-C, a CI timeout) runs no destructor, yet its
//! members must not outlive it, holding ports, memory and temp dirs. So each member is started
//! by a few lines of `/bin/sh` that fork a watcher and then `exec` etcd. The watcher reads a
//! pipe whose only writer is the test process: when the fixture stops a member (kill, restart,
//! drop) it reaps etcd and then writes a line, and the watcher exits; end of file without that
//! line means the test process is gone, whatever killed it (the kernel closes its
//! descriptors). Then the watcher SIGKILLs etcd if it still runs, waits until it is gone and
//! removes the cluster's temp dir. The watcher ignores SIGINT, SIGTERM and SIGHUP, so a Ctrl-C
//! or a SIGTERM to the whole process group is handled too; a SIGKILL to the whole group kills
//! the members as well, and only their temp dir is left, to the OS's temp cleaner.
//! `tests/fixture.rs` SIGKILLs a test process that runs a cluster: its members are gone within
//! about 10-70 ms and the directory soon after.
//!
//! Because etcd replaces the shell, the fixture's child *is* etcd: [`Cluster::pid`] is etcd's
//! pid, SIGSTOP, SIGCONT and SIGKILL reach etcd itself, and etcd's exit status is the child's.
//! Only `/bin/sh` (and Linux's `/proc`, which the fixture uses anyway) is needed: no `unsafe`,
//! no helper binary.
//!
//! The alternative, `PR_SET_PDEATHSIG` (e.g. `setpriv --pdeathsig KILL -- etcd ...`), was
//! rejected: the signal fires when the *thread* that spawned the member exits, and members are
//! spawned from whatever runtime thread a test runs on (tokio's blocking-pool threads end after
//! idling), so members would die at random in a living test unless one dedicated thread
//! spawned them all; it also needs `setpriv` or a `prctl` call, and leaves the temp dir behind.

mod builder;
mod cluster;
mod error;
pub mod fake;
mod faults;
pub mod instant;
mod join;
mod member;
mod metrics;
mod origin;
mod pki;
mod probe;
mod proxy;

pub use builder::ClusterBuilder;
pub use cluster::Cluster;
pub use error::{ClusterError, Unready};
pub use metrics::grpc_started_in;
pub use pki::TestPki;
