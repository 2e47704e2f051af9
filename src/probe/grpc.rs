//! `grpc`: `grpc.health.v1.Health/Check`. Sees dead and hung members, not partitions.

use std::time::Duration;

use tonic::transport::Channel;

use super::{grpc_failure, BoxFuture, Finding, Probe, ProbeTarget};
use crate::health::Outcome;
use crate::proto::health::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// The built-in `grpc` probe: `grpc.health.v1.Health/Check` over the member's probe channel;
/// `SERVING` is a success, any other answer a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcProbe;

impl Probe for GrpcProbe {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            match target.channel() {
                Ok(channel) => probe(channel.clone(), target.timeout()).await,
                Err(e) => Finding::failure(e),
            }
        })
    }
}

async fn probe(channel: Channel, timeout: Duration) -> Finding {
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
