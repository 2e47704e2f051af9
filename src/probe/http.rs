//! `http`: the seed's probe, `GET http_path` over HTTP/1.1 (etcd's `/health`).
//!
//! etcd serves HTTP/1.1 and gRPC (h2c) on the same client port; `/health` answers 503 when
//! the member has no leader or an alarm is raised, so it sees death, hangs and partitions.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Finding;
use crate::config::ActiveChecks;
use crate::health::Outcome;

pub(crate) async fn probe(authority: &str, checks: &ActiveChecks) -> Finding {
    let timeout = checks.timeout;
    match tokio::time::timeout(timeout, get(authority, checks)).await {
        Err(_) => Finding::timeout(timeout),
        Ok(finding) => finding,
    }
}

async fn get(authority: &str, checks: &ActiveChecks) -> Finding {
    let stream = match TcpStream::connect(authority).await {
        Ok(s) => s,
        Err(e) => return Finding::new(Outcome::TcpFailure, format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return Finding::new(Outcome::TcpFailure, format!("handshake: {e}")),
    };
    let conn = tokio::spawn(conn);
    let host = if checks.host.is_empty() {
        authority
    } else {
        &checks.host
    };
    let mut req = http::Request::get(checks.http_path.as_str()).header(http::header::HOST, host);
    for line in &checks.req_headers {
        if let Some((name, value)) = line.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
    }
    let req = match req.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return Finding::new(Outcome::Failure, format!("bad probe request: {e}")),
    };
    let result = sender.send_request(req).await;
    conn.abort();
    let status = match result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => return Finding::new(Outcome::TcpFailure, format!("request: {e}")),
    };
    let detail = format!("status {status}");
    if checks.healthy.http_statuses.contains(&status) {
        Finding::new(Outcome::Success, detail)
    } else if checks.unhealthy.http_statuses.contains(&status) {
        Finding::new(Outcome::Failure, detail)
    } else {
        // lua-resty-healthcheck: a status in neither list counts for nothing.
        Finding {
            outcome: None,
            detail: format!("{detail} (in neither status list; ignored)"),
        }
    }
}
