//! Active probes: the health checker asking a member, on its own, whether it can serve.
//!
//! Why several kinds: each sees a different failure (DESIGN.md, section 1). A TCP connect sees
//! a dead member but not a hung one; `grpc.health.v1` sees a hung member but not a partition
//! (etcd sets it once at start-up); `GET /health` (the seed's probe) and `Maintenance/Status`
//! see all three. Every probe has its own deadline, because a SIGSTOPped member accepts TCP
//! and then never answers.

mod grpc;
mod http;
mod schedule;
mod scheduler;
mod status;
mod tcp;

use std::time::Duration;

pub(crate) use scheduler::{probe_channel, spawn};

use crate::health::Outcome;

/// What one probe found: a verdict (none when the answer is neither healthy nor unhealthy
/// by the configured lists) and a description.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) outcome: Option<Outcome>,
    pub(crate) detail: String,
    /// The member knows no leader: for a member in rotation, a leader check decides whether
    /// that is an election or this member cut off.
    pub(crate) leaderless: bool,
}

impl Finding {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome: Some(outcome),
            detail: detail.into(),
            leaderless: false,
        }
    }

    fn timeout(after: Duration) -> Self {
        Self::new(Outcome::Timeout, format!("no answer within {after:?}"))
    }
}

/// Classifies a failed gRPC probe call: transport failures are `tcp_failures`, anything the
/// member answered is an `http_failure`.
fn grpc_failure(status: &tonic::Status) -> Finding {
    use std::error::Error as _;
    // A status with a source is the client's own: the transport failed before any answer.
    match status.source() {
        Some(err) => {
            let outcome = crate::passive::transport_error(err);
            Finding::new(outcome, format!("transport: {}", status.message()))
        }
        None => Finding::new(
            Outcome::Failure,
            format!("{:?}: {}", status.code(), status.message()),
        ),
    }
}
