//! `grpc`: `grpc.health.v1.Health/Check`. Sees dead and hung members, not partitions.

use std::time::Duration;

use tonic::transport::Channel;

use super::{grpc_failure, Finding};
use crate::health::Outcome;
use crate::proto::health::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

pub(crate) async fn probe(channel: Channel, timeout: Duration) -> Finding {
    let mut client = HealthClient::new(crate::grpc::Sanitize::new(channel));
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Finding::timeout(timeout),
        Ok(Err(status)) => grpc_failure(&status),
        Ok(Ok(resp)) => match resp.into_inner().status() {
            ServingStatus::Serving => Finding::new(Outcome::Success, "SERVING"),
            other => Finding::new(Outcome::Failure, other.as_str_name()),
        },
    }
}
