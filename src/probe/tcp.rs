//! `tcp`: a connect and nothing more. Sees a dead member, not a hung one.

use std::time::Duration;

use tokio::net::TcpStream;

use super::{BoxFuture, Finding, Probe, ProbeTarget};
use crate::health::Outcome;

/// The built-in `tcp` probe: a connect to the member's `host:port`, and nothing more.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpProbe;

impl Probe for TcpProbe {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(probe(target.member().authority(), target.timeout()))
    }
}

async fn probe(authority: &str, timeout: Duration) -> Finding {
    match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Finding::new(Outcome::Success, "connected"),
        Ok(Err(e)) => Finding::new(Outcome::TcpFailure, format!("connect: {e}")),
        Err(_) => Finding::timeout(timeout),
    }
}
