//! Counting at the members: etcd's own Prometheus `/metrics`, scraped over plain HTTP/1.1.
//!
//! Why: a promise like "a wrong password costs about one `Authenticate` a second" or "retries
//! add at most 10 % of the requests" is about the load the members see, and the members count
//! it themselves (`grpc_server_started_total{grpc_method="..."}`), whatever the client thinks
//! it sent (hedged copies, retries, re-authentications and probes included).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::ClusterError;
use super::Cluster;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

impl Cluster {
    /// The text of member `i`'s `/metrics` (on its own client port, bypassing any proxy).
    /// Plain-HTTP clusters only: a TLS cluster's is an error.
    pub async fn metrics(&self, i: usize) -> Result<String, ClusterError> {
        let member = self.m(i);
        if member.scheme != "http" {
            return Err(ClusterError::io(
                format!("scrape {}'s /metrics", member.name),
                std::io::Error::other("only plain-HTTP clusters are scraped"),
            ));
        }
        let context = || format!("scrape {}'s /metrics", member.name);
        let port = member.client_port;
        let scrape = async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(SCRAPE_TIMEOUT, scrape)
            .await
            .map_err(|_| ClusterError::io(context(), std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| ClusterError::io(context(), e))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if head.lines().next().is_some_and(|l| l.contains(" 200 ")) {
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            Ok(if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            })
        } else {
            Err(ClusterError::io(
                context(),
                std::io::Error::other(head.lines().next().unwrap_or("no answer").to_owned()),
            ))
        }
    }

    /// How many gRPC calls of `method` (the bare name: `"Range"`, `"Authenticate"`) member
    /// `i` started since it (last) started: etcd's `grpc_server_started_total`, summed over
    /// its services and call types.
    pub async fn grpc_started(&self, i: usize, method: &str) -> Result<u64, ClusterError> {
        Ok(grpc_started_in(&self.metrics(i).await?, method))
    }

    /// [`grpc_started`](Self::grpc_started), summed over every member that runs now (a
    /// killed member counts for nothing).
    pub async fn grpc_started_total(&self, method: &str) -> Result<u64, ClusterError> {
        let mut total = 0;
        for i in 0..self.size() {
            if self.pid(i).is_some() {
                total += self.grpc_started(i, method).await?;
            }
        }
        Ok(total)
    }
}

/// The sum of `grpc_server_started_total` samples whose `grpc_method` is `method`.
pub fn grpc_started_in(metrics: &str, method: &str) -> u64 {
    let label = format!("grpc_method=\"{method}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("grpc_server_started_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_method_over_services_and_types() {
        let text = "\
# HELP grpc_server_started_total Total number of RPCs started on the server.
grpc_server_started_total{grpc_method=\"Authenticate\",grpc_service=\"etcdserverpb.Auth\",grpc_type=\"unary\"} 12
grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 7
grpc_server_started_total{grpc_method=\"Authenticate\",grpc_service=\"other.Auth\",grpc_type=\"unary\"} 3
grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Authenticate\",grpc_service=\"etcdserverpb.Auth\",grpc_type=\"unary\"} 99
";
        assert_eq!(grpc_started_in(text, "Authenticate"), 15);
        assert_eq!(grpc_started_in(text, "Range"), 7);
        assert_eq!(grpc_started_in(text, "Put"), 0);
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
