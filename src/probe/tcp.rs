//! `tcp`: a connect and nothing more. Sees a dead member, not a hung one.

use std::time::Duration;

use tokio::net::TcpStream;

use super::Finding;
use crate::health::Outcome;

pub(crate) async fn probe(authority: &str, timeout: Duration) -> Finding {
    match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Finding::new(Outcome::Success, "connected"),
        Ok(Err(e)) => Finding::new(Outcome::TcpFailure, format!("connect: {e}")),
        Err(_) => Finding::timeout(timeout),
    }
}
