//! Errors of the test fixture.
//!
//! A fixture failure is almost always "etcd did not come up", and the only useful thing to show
//! then is what etcd said: every variant about a member names it and carries its log tail.

use std::time::Duration;

/// Why a [`Cluster`](super::Cluster) could not be started or a member could not be restarted.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A local I/O operation of the fixture failed (temp dir, log file, port allocation).
    #[error("{context}: {source}")]
    Io {
        /// What the fixture was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The etcd binary could not be started.
    #[error("cannot start {member} with {bin}: {source}")]
    Spawn {
        /// Member name (`m0`, `m1`, ...).
        member: String,
        /// The etcd binary that was used (`$ETCD_BIN`, `etcd` on `PATH` or `/usr/bin/etcd`), or
        /// `/bin/sh`, which launches it, if the shell could not be started.
        bin: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A member's port was taken by someone else between allocation and etcd's bind.
    /// [`ClusterBuilder::start`](super::ClusterBuilder::start) retries these with fresh ports.
    #[error("{member} could not bind its port (address already in use); log tail:\n{log_tail}")]
    PortClash {
        /// Member name.
        member: String,
        /// Last lines of the member's log.
        log_tail: String,
    },
    /// A member process exited while the fixture waited for it.
    #[error("{member} exited with {status} while starting; log tail:\n{log_tail}")]
    Exited {
        /// Member name.
        member: String,
        /// Exit status as printed by the OS.
        status: String,
        /// Last lines of the member's log.
        log_tail: String,
    },
    /// Members did not all answer `Maintenance/Status`, or no leader was elected, in time.
    #[error("cluster not ready after {timeout:?}: {}", format_unready(.unready))]
    NotReady {
        /// How long the fixture waited.
        timeout: Duration,
        /// One entry per member that was not ready.
        unready: Vec<Unready>,
    },
    /// No member reported a leader in time.
    #[error("no leader after {timeout:?}")]
    NoLeader {
        /// How long the fixture waited.
        timeout: Duration,
    },
    /// Certificates for a TLS cluster could not be made.
    #[error("cannot make test certificates: {reason}")]
    Certificates {
        /// What failed.
        reason: String,
    },
    /// The member index is out of range.
    #[error("no member {index} in a cluster of {size}")]
    NoSuchMember {
        /// The index asked for.
        index: usize,
        /// Cluster size.
        size: usize,
    },
}

/// One member that was not ready when a readiness deadline passed.
#[derive(Debug, Clone)]
pub struct Unready {
    /// Member name.
    pub member: String,
    /// The last problem seen (connect error, timeout, "no leader", ...).
    pub last_error: String,
    /// Last lines of the member's log.
    pub log_tail: String,
}

fn format_unready(unready: &[Unready]) -> String {
    let mut out = String::new();
    for u in unready {
        out.push_str(&format!(
            "\n--- {} not ready: {}\n{}",
            u.member, u.last_error, u.log_tail
        ));
    }
    out
}

impl ClusterError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}
