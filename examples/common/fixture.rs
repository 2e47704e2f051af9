//! The test cluster, with its in-process proxies on a runtime of their own.
//!
//! The fixture's peer proxies run as tokio tasks. On the clients' runtime they would queue
//! behind the load being measured and inflate every raft round trip; on their own one-thread
//! runtime they compete for the CPU only, as a real network would not at all.

use std::sync::Arc;

use etcd_health_testing::{Cluster, ClusterBuilder, ClusterError};
use tokio::runtime::Runtime;

/// A local cluster and the runtime its proxies run on. Create and drop it outside any
/// runtime (a plain `fn main`).
pub struct Fixture {
    /// The cluster; its fault methods may be called from any runtime.
    pub cluster: Arc<Cluster>,
    // Dropped after the cluster (fields drop in order).
    _rt: Runtime,
}

impl Fixture {
    /// Starts a cluster of `members` with the fixture's defaults.
    pub fn start(members: usize) -> Result<Self, ClusterError> {
        Self::start_with(Cluster::builder().members(members))
    }

    /// Starts a cluster as `builder` describes.
    pub fn start_with(builder: ClusterBuilder) -> Result<Self, ClusterError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-fixture")
            .enable_all()
            .build()
            .expect("fixture runtime");
        let cluster = rt.block_on(builder.start())?;
        Ok(Self {
            cluster: Arc::new(cluster),
            _rt: rt,
        })
    }
}

/// Name of the client runtime's threads, so a profile can tell their CPU time from the
/// fixture's.
pub const CLIENT_THREAD: &str = "bench-client";

/// The runtime the clients and the load run on: two workers, as many as the machine's cores.
pub fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("client runtime")
}
