//! The connector under each member channel the [`TonicConnector`](super::TonicConnector)
//! makes: it bounds a connection attempt by the connect timeout and counts it by member and
//! result (`etcd_health.subchannel.connection_attempts`).
//!
//! Why the timeout lives here and not in the `Endpoint`: tonic applies an endpoint's connect
//! timeout *around* a custom connector, so a connect it cuts off would be dropped unseen, never
//! counted as a timeout. Here the deadline is the connector's own, and its error is the same
//! `io::ErrorKind::TimedOut` tonic's would be (the passive checks judge it a timeout, as
//! before).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;

use crate::metrics::{ConnectResult, Connects};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector bounded by `timeout`, each attempt counted in `connects`.
#[derive(Clone, Debug)]
pub(crate) struct CountedConnect<C> {
    inner: C,
    timeout: Duration,
    connects: Connects,
}

impl<C> CountedConnect<C> {
    pub(crate) fn new(inner: C, timeout: Duration, connects: Connects) -> Self {
        Self {
            inner,
            timeout,
            connects,
        }
    }
}

/// The plain TCP connector of an `http://` member, as tonic's own `Endpoint::connect_lazy`
/// builds it (no Nagle delay; the timeout is [`CountedConnect`]'s).
pub(crate) fn tcp() -> hyper_util::client::legacy::connect::HttpConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

impl<C> tower::Service<Uri> for CountedConnect<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
    BoxError: From<C::Error>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(BoxError::from)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let (timeout, connects) = (self.timeout, self.connects.clone());
        Box::pin(async move {
            let (result, out) = match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(io)) => (ConnectResult::Ok, Ok(io)),
                Ok(Err(err)) => {
                    let err = BoxError::from(err);
                    (result_of(&*err), Err(err))
                }
                Err(_) => (
                    ConnectResult::Timeout,
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within the connect timeout ({timeout:?})"),
                    )
                    .into()),
                ),
            };
            connects.ended(result);
            out
        })
    }
}

/// What a failed connection attempt's error says happened.
fn result_of(err: &(dyn std::error::Error + 'static)) -> ConnectResult {
    #[cfg(feature = "tls")]
    if crate::grpc::chain(err).any(|e| e.is::<crate::tls::HandshakeFailed>()) {
        return ConnectResult::TlsError;
    }
    let kind = crate::grpc::chain(err).find_map(|e| {
        e.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .filter(|k| *k != std::io::ErrorKind::Other)
    });
    match kind {
        Some(std::io::ErrorKind::ConnectionRefused) => ConnectResult::Refused,
        Some(std::io::ErrorKind::TimedOut) => ConnectResult::Timeout,
        _ => ConnectResult::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    fn refused() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
    }

    #[test]
    fn failures_are_told_apart_by_their_chain() {
        assert_eq!(result_of(&refused()), ConnectResult::Refused);
        // hyper-util's connector wraps the io error in its own.
        let wrapped: BoxError = Box::new(tonic::ConnectError(Box::new(refused())));
        assert_eq!(result_of(&*wrapped), ConnectResult::Refused);
        let late = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(result_of(&late), ConnectResult::Timeout);
        let unreachable = std::io::Error::from(std::io::ErrorKind::NetworkUnreachable);
        assert_eq!(result_of(&unreachable), ConnectResult::Other);
        let odd: BoxError = "no address".into();
        assert_eq!(result_of(&*odd), ConnectResult::Other);
        #[cfg(feature = "tls")]
        {
            // A handshake the member broke off: an io error inside, yet a TLS failure.
            let tls: BoxError =
                Box::new(tonic::ConnectError(Box::new(crate::tls::HandshakeFailed(
                    Box::new(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                ))));
            assert_eq!(result_of(&*tls), ConnectResult::TlsError);
        }
    }

    /// Against real sockets: a port that refuses, one that accepts, and a connect that never
    /// ends, each counted once under its result (feature `metrics`: read back through
    /// metrics-util's debugging recorder).
    #[cfg(feature = "metrics")]
    #[tokio::test(start_paused = false)]
    async fn each_attempt_is_counted_by_its_result() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let member = crate::member::Member::new(1, "http://127.0.0.1:2379".parse().expect("uri"));
        let connects =
            metrics::with_local_recorder(&recorder, || Connects::new(member.authority()));
        let timeout = Duration::from_millis(200);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open: Uri = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("uri");
        drop(listener);
        let mut tcp = CountedConnect::new(tcp(), timeout, connects.clone());
        let err = tcp
            .ready()
            .await
            .expect("ready")
            .call(open.clone())
            .await
            .expect_err("nothing listens");
        assert_eq!(result_of(&*err), ConnectResult::Refused, "{err}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open: Uri = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("uri");
        tcp.ready()
            .await
            .expect("ready")
            .call(open)
            .await
            .expect("a listening port");

        let never = tower::service_fn(|_: Uri| std::future::pending::<Result<(), BoxError>>());
        let mut stuck = CountedConnect::new(never, timeout, connects);
        let err = stuck
            .ready()
            .await
            .expect("ready")
            .call(Uri::from_static("http://127.0.0.1:1"))
            .await
            .expect_err("never connects");
        assert_eq!(
            crate::passive::transport_error(&*err),
            crate::health::Outcome::Timeout,
            "judged a timeout by the passive checks, as tonic's own timeout was"
        );

        let counts: std::collections::HashMap<String, u64> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let key = key.key().clone();
                let result = key
                    .labels()
                    .find(|l| l.key() == "result")?
                    .value()
                    .to_owned();
                match value {
                    DebugValue::Counter(n) => Some((result, n)),
                    _ => None,
                }
            })
            .collect();
        for (result, n) in [
            ("refused", 1),
            ("ok", 1),
            ("timeout", 1),
            ("tls_error", 0),
            ("other", 0),
        ] {
            assert_eq!(counts.get(result), Some(&n), "{result}: {counts:?}");
        }
    }
}
