//! A one-shot `Maintenance/Status` call with hard deadlines.
//!
//! A SIGSTOPped member accepts TCP and then never answers, so the fixture's own look at a member
//! must be bounded at every step: connect, call, and the whole thing.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// What one member said about itself.
#[derive(Debug, Clone)]
pub(crate) struct MemberStatus {
    /// The answering member's id (from the response header).
    pub member_id: u64,
    /// The leader it believes in, 0 for none.
    pub leader: u64,
    /// Errors it reports, e.g. `etcdserver: no leader`.
    pub errors: Vec<String>,
}

/// Asks `url` for its status, giving up after `timeout`.
pub(crate) async fn status(
    url: String,
    pki: Option<&super::pki::TestPki>,
    timeout: Duration,
) -> Result<MemberStatus, String> {
    let call = async {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        if let Some(pki) = pki {
            let tls =
                etcd_health::Tls::from_config(&pki.client_config()).map_err(|e| e.to_string())?;
            options = options.with_tls(tls.client_tls_config());
        }
        let mut client = Client::connect([url], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        let resp = client.status().await.map_err(|e| e.to_string())?;
        Ok(MemberStatus {
            member_id: resp.header().map_or(0, |h| h.member_id()),
            leader: resp.leader(),
            errors: resp.errors().to_vec(),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("Status timed out after {timeout:?}")),
    }
}
