//! `http` and `https`: the seed's probe, `GET http_path` over HTTP/1.1 (etcd's `/health`).
//!
//! etcd serves HTTP/1.1 and gRPC on the same client port; `/health` answers 503 when the
//! member has no leader or an alarm is raised, so it sees death, hangs and partitions. With
//! TLS (an `https` probe, or an `http` probe of an `https://` member, whose port speaks
//! nothing else) the probe presents the configured client certificate, as requests do.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Cluster;
use super::{BoxFuture, Finding, Probe, ProbeTarget};
use crate::config::ActiveChecks;
use crate::grpc::describe;
use crate::health::Outcome;
use crate::member::Member;

/// etcd's health endpoint, asked to leave cluster-wide alarms out.
///
/// A NOSPACE or CORRUPT alarm makes `/health` answer 503 on every member at once (alarms are
/// raised for the cluster), so counting it would eject them all: panic mode at best, and with
/// `all_unhealthy = fail_fast` a refusal of the reads etcd still serves. etcd (3.4.10 and
/// later) then still answers 503 for a member without a leader. Only the bare `/health` is
/// rewritten; any other path is sent as configured.
const ETCD_HEALTH: &str = "/health?exclude=NOSPACE&exclude=CORRUPT";

fn request_path(configured: &str) -> &str {
    if configured == "/health" {
        ETCD_HEALTH
    } else {
        configured
    }
}

/// How long a failed request waits for its connection's error, which explains it.
const CONN_ERROR_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The built-in `http` and `https` probes: `GET checks.active.http_path` over HTTP/1.1, judged
/// by `checks.active.healthy/unhealthy.http_statuses` (a status in neither list counts for
/// nothing). An `http` probe of an `https://` member speaks TLS too (that port speaks nothing
/// else), with the configured client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    https: bool,
}

impl HttpProbe {
    /// The `http` probe.
    pub const HTTP: Self = Self { https: false };
    /// The `https` probe: always over TLS.
    pub const HTTPS: Self = Self { https: true };
}

impl Probe for HttpProbe {
    fn probe<'a>(&'a self, target: ProbeTarget<'a>) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            let tls = match target.checker() {
                Some(checker) => http_tls(&*checker, target.member(), self.https),
                None => return Finding::ignored("the health state is gone"),
            };
            match tls {
                Ok(tls) => probe(target.member().authority(), target.checks(), tls).await,
                Err(e) => Finding::failure(format!("TLS set-up: {e}")),
            }
        })
    }
}

/// How an `http`/`https` probe secures its connection: `https` probes always use TLS, `http`
/// probes when the member's URL is `https://` (its port speaks nothing else).
#[cfg(feature = "tls")]
fn http_tls(
    checker: &dyn Cluster,
    member: &Member,
    https: bool,
) -> Result<Option<ProbeTls>, String> {
    let https_member = member.uri().scheme_str() == Some("https");
    if !https && !https_member {
        return Ok(None);
    }
    let tls = checker
        .tls()
        .cloned()
        .or_else(crate::tls::Tls::system_default)
        .ok_or("no TLS roots could be loaded")?;
    let active = &checker.config().checks.active;
    // `host` is a validated authority that may carry a port; the name to verify is its host.
    let configured = active.host.parse::<http::uri::Authority>().ok();
    let host = match &configured {
        Some(authority) => authority.host(),
        None => member.uri().host().unwrap_or_default(),
    };
    Ok(Some(ProbeTls {
        config: tls.probe_config(active.https_verify_certificate),
        server_name: tls.server_name(host)?,
    }))
}

#[cfg(not(feature = "tls"))]
fn http_tls(
    _checker: &dyn Cluster,
    _member: &Member,
    _https: bool,
) -> Result<Option<ProbeTls>, String> {
    Ok(None)
}

/// How a probe secures its connection, when it does.
#[cfg(feature = "tls")]
pub(crate) struct ProbeTls {
    pub(crate) config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    pub(crate) server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

/// Without the `tls` feature a probe never speaks TLS.
#[cfg(not(feature = "tls"))]
pub(crate) enum ProbeTls {}

async fn probe(authority: &str, checks: &ActiveChecks, tls: Option<ProbeTls>) -> Finding {
    let timeout = checks.timeout;
    match tokio::time::timeout(timeout, connect(authority, checks, tls)).await {
        Err(_) => Finding::timeout(timeout),
        Ok(finding) => finding,
    }
}

async fn connect(authority: &str, checks: &ActiveChecks, tls: Option<ProbeTls>) -> Finding {
    let stream = match TcpStream::connect(authority).await {
        Ok(s) => s,
        Err(e) => return Finding::new(Outcome::TcpFailure, format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => get(TokioIo::new(stream), authority, checks).await,
        #[cfg(feature = "tls")]
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config);
            match connector.connect(tls.server_name, stream).await {
                Ok(stream) => get(TokioIo::new(stream), authority, checks).await,
                // A refused certificate (ours or the member's) is a failure of this member's
                // TLS, seen before any HTTP: the connection could not be made.
                Err(e) => Finding::new(
                    Outcome::TcpFailure,
                    format!("TLS handshake: {}", describe(&e)),
                ),
            }
        }
    }
}

async fn get<IO>(io: IO, authority: &str, checks: &ActiveChecks) -> Finding
where
    IO: Read + Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(e) => return Finding::new(Outcome::TcpFailure, format!("handshake: {}", describe(&e))),
    };
    let conn = tokio::spawn(conn);
    let host = if checks.host.is_empty() {
        authority
    } else {
        &checks.host
    };
    // Parsed as validated, secret values (`Authorization`, ...) marked sensitive. Errors show
    // no secret.
    let headers = match checks.parsed_req_headers() {
        Ok(headers) => headers,
        Err(e) => return Finding::new(Outcome::Failure, format!("bad probe request: {e}")),
    };
    let req = http::Request::get(request_path(&checks.http_path))
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new());
    let mut req = match req {
        Ok(r) => r,
        Err(e) => return Finding::new(Outcome::Failure, format!("bad probe request: {e}")),
    };
    for (name, value) in &headers {
        req.headers_mut().append(name, value.clone());
    }
    let result = sender.send_request(req).await;
    let status = match result {
        Ok(resp) => {
            conn.abort();
            resp.status().as_u16()
        }
        Err(e) => {
            // The connection's own error says why the request failed (a TLS alert such as
            // "certificate required", sent after the handshake in TLS 1.3); the request's
            // error only says that it did.
            let why = match tokio::time::timeout(CONN_ERROR_WAIT, conn).await {
                Ok(Ok(Err(conn_error))) => describe(&conn_error),
                _ => describe(&e),
            };
            return Finding::new(Outcome::TcpFailure, format!("request: {why}"));
        }
    };
    let detail = format!("status {status}");
    if checks.healthy.http_statuses.contains(&status) {
        Finding::new(Outcome::Success, detail)
    } else if checks.unhealthy.http_statuses.contains(&status) {
        Finding::new(Outcome::Failure, detail)
    } else {
        // lua-resty-healthcheck: a status in neither list counts for nothing.
        Finding::ignored(format!("{detail} (in neither status list; ignored)"))
    }
}
