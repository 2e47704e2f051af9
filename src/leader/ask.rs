//! One `Maintenance/Status` call.

use std::time::Duration;

use tonic::transport::Channel;

use super::Report;
use crate::proto::etcdserverpb::{maintenance_client::MaintenanceClient, StatusRequest};

/// Asks one member for its status, within `timeout`.
///
/// `Err` carries the failure as a gRPC status (a timeout as `DeadlineExceeded`).
pub(crate) async fn ask(channel: Channel, timeout: Duration) -> Result<Report, tonic::Status> {
    let mut client = MaintenanceClient::new(crate::grpc::Sanitize::new(channel));
    let resp = match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
        Err(_) => {
            return Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            )))
        }
        Ok(Err(status)) => return Err(status),
        Ok(Ok(resp)) => resp.into_inner(),
    };
    let header = resp.header.unwrap_or_default();
    Ok(Report {
        id: header.member_id,
        cluster_id: header.cluster_id,
        leader: resp.leader,
        term: resp.raft_term.max(header.raft_term),
        committed: resp.raft_index,
        applied: resp.raft_applied_index,
        is_learner: resp.is_learner,
        no_leader_error: resp.errors.iter().any(|e| e.contains("no leader")),
    })
}
