//! `status`: `Maintenance/Status`, the probe that sees etcd itself.
//!
//! A member is fit when it knows a leader, reports no "no leader" error, is not a learner and
//! belongs to the cluster the other members belong to. This catches a member cut off from the
//! quorum within about one election timeout, which neither TCP nor gRPC health can.

use std::time::Duration;

use tonic::transport::Channel;

use super::{grpc_failure, Finding};
use crate::health::Outcome;
use crate::proto::etcdserverpb::{maintenance_client::MaintenanceClient, StatusRequest};

/// Probes a member; `cluster_id` is the id the healthy members agree on, once known.
/// Returns the finding and the member's cluster id, when it answered.
pub(crate) async fn probe(
    channel: Channel,
    timeout: Duration,
    cluster_id: Option<u64>,
) -> (Finding, Option<u64>) {
    let mut client = MaintenanceClient::new(channel);
    let resp = match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
        Err(_) => return (Finding::timeout(timeout), None),
        Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
            // Some versions need admin rights for Status: the member answered, so it is up.
            return (
                Finding::new(Outcome::Success, "status not permitted; member answered"),
                None,
            );
        }
        Ok(Err(status)) => return (grpc_failure(&status), None),
        Ok(Ok(resp)) => resp.into_inner(),
    };
    let id = resp.header.as_ref().map(|h| h.cluster_id);
    let finding = if resp.leader == 0 {
        Finding::new(Outcome::Failure, "no leader")
    } else if let Some(err) = resp.errors.iter().find(|e| e.contains("no leader")) {
        Finding::new(Outcome::Failure, err.clone())
    } else if resp.is_learner {
        Finding::new(Outcome::Failure, "member is a learner")
    } else if let (Some(want), Some(got)) = (cluster_id, id) {
        if want == got {
            Finding::new(Outcome::Success, format!("leader {:x}", resp.leader))
        } else {
            Finding::new(
                Outcome::Failure,
                format!("cluster id {got:x}, expected {want:x}"),
            )
        }
    } else {
        Finding::new(Outcome::Success, format!("leader {:x}", resp.leader))
    };
    (finding, id)
}
