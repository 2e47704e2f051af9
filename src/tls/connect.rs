//! The connector of TLS channels: TCP, then a TLS handshake with the material current *at
//! that moment*.
//!
//! Why our own connector: tonic's `Endpoint::tls_config` builds one rustls config when the
//! channel is made and keeps it for every reconnect of that channel, so a rotated client
//! certificate would reach a member only through a channel made after the rotation, and never
//! through the long-lived channel of a member that restarts. Here the channel's endpoint is
//! plain (`http://`, with the `https://` origin for the requests' `:scheme`) and every
//! connection it makes asks the [`Tls`] holder for its current rustls config.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::{material::ALPN_H2, Tls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A lazily connected channel to the `https://` member at `uri`, whose every connection
/// uses the TLS material `tls` holds then; `verify = false` accepts any member certificate
/// (probes only, when the config asks). `configure` adds the caller's endpoint settings
/// (timeouts, keep-alive); its connect timeout bounds the TCP connect and the handshake.
pub(crate) fn lazy_channel(
    uri: &Uri,
    tls: Tls,
    verify: bool,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Channel {
    lazy_channel_through(uri, tls, verify, configure, |connect| connect)
}

/// [`lazy_channel`], its connector wrapped by `wrap` (the balancer counts each connection
/// attempt by its result).
pub(crate) fn lazy_channel_through<C>(
    uri: &Uri,
    tls: Tls,
    verify: bool,
    configure: impl FnOnce(Endpoint) -> Endpoint,
    wrap: impl FnOnce(TlsConnect) -> C,
) -> Channel
where
    C: tower::Service<Uri> + Send + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Send + Unpin,
    C::Future: Send,
    BoxError: From<C::Error> + Send,
{
    let (plain, origin) = dial_and_origin(uri);
    let endpoint = configure(Endpoint::from(plain).origin(origin));
    endpoint.connect_with_connector_lazy(wrap(TlsConnect { tls, verify }))
}

/// The TLS part of a connection to a member failed, after its TCP connection was made (or
/// the member's name cannot be a TLS server name): told apart from the TCP failures by the
/// connection metrics. Its source says what failed.
#[derive(Debug)]
pub(crate) struct HandshakeFailed(pub(crate) BoxError);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TLS handshake with the member failed")
    }
}

impl std::error::Error for HandshakeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The `http://` URI the channel dials (so tonic adds no TLS of its own) and the `https://`
/// origin its requests carry. The port is made explicit: without one, `https` means 443.
fn dial_and_origin(uri: &Uri) -> (Uri, Uri) {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(443);
    let authority = format!("{host}:{port}");
    let build = |scheme: &str| {
        Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| uri.clone())
    };
    (build("http"), build("https"))
}

/// Makes one TLS connection per call, with the holder's current material.
#[derive(Clone, Debug)]
pub(crate) struct TlsConnect {
    tls: Tls,
    verify: bool,
}

impl tower::Service<Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Read now, per connection: a reconnect after a rotation uses the new material.
        let config = self.tls.current().grpc_config(self.verify);
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = self.tls.server_name(&host);
        Box::pin(async move {
            let server_name = server_name.map_err(|e| HandshakeFailed(e.into()))?;
            let ip_or_name = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((ip_or_name, port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| HandshakeFailed(e.into()))?;
            if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(HandshakeFailed(
                    "the member did not negotiate HTTP/2 (ALPN h2) over TLS".into(),
                )
                .into());
            }
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dials_plain_and_keeps_the_https_origin() {
        for (given, dial, origin) in [
            (
                "https://127.0.0.1:2379",
                "http://127.0.0.1:2379/",
                "https://127.0.0.1:2379/",
            ),
            (
                "https://etcd.example",
                "http://etcd.example:443/",
                "https://etcd.example:443/",
            ),
            (
                "https://[::1]:2379/",
                "http://[::1]:2379/",
                "https://[::1]:2379/",
            ),
        ] {
            let (d, o) = dial_and_origin(&given.parse().expect("uri"));
            assert_eq!(
                (d.to_string().as_str(), o.to_string().as_str()),
                (dial, origin)
            );
        }
    }
}
