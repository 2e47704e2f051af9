//! Which transport failures prove that a request never reached the member's handler.
//!
//! Why a table of its own: a write whose attempt failed is sent again only when the member
//! certainly did not process it (etcd's Go client's rule, DESIGN.md section 3); otherwise the
//! caller gets it as *outcome unknown*. HTTP/2 itself says when that is certain, and gRPC
//! retries those failures transparently, even for non-idempotent calls (gRFC A6, "transparent
//! retries"):
//!
//! - `RST_STREAM` with `REFUSED_STREAM`: "the stream was refused prior to performing any
//!   application processing" (RFC 9113 section 8.7). grpc-go (etcd's server) sends it for a
//!   stream that arrives while it drains or past its stream limit.
//! - `GOAWAY` whose last stream id is below the request's stream: "the sender ... did not and
//!   will not process" streams above it (RFC 9113 section 6.8). etcd's graceful stop
//!   (`GracefulStop`: SIGTERM, a rolling restart) sends it.
//!
//! How they reach us through tonic 0.14, hyper 1 and h2 0.4 (read from their sources):
//!
//! - h2, on a `GOAWAY`, fails exactly the streams above its last stream id with
//!   `h2::Error` `is_go_away() && is_remote()` (`Streams::recv_go_away`), and keeps that error
//!   as the connection's: a request opened after the `GOAWAY` fails with it too, unsent
//!   (`ensure_no_conn_error` in `send_request`). A stream at or below the last stream id goes
//!   on; if the connection then closes under it, it fails with an I/O error ("stream closed
//!   because of a broken pipe"), which is *not* in this table: the member may have served it.
//! - A received `RST_STREAM` fails its stream with `h2::Error` `is_reset() && is_remote()` and
//!   the frame's reason.
//! - hyper queues a request for its connection task: one still queued when the connection
//!   closes, or sent on a connection found closed, fails with `hyper::Error::is_canceled()`
//!   ("connection closed", "connection was not ready") and was never written. tonic 0.14
//!   drives `hyper::client::conn::http2` directly (no hyper-util pool, so no retry of its
//!   own below us), and wraps both in its transport error: they are found in the source chain.
//! - A connection that could not be made: `tonic::ConnectError`.
//!
//! Everything else (a reset with another reason, a broken connection, a timeout) may have
//! been processed.

use std::error::Error;

/// Why a failed attempt certainly never reached the member's handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// No connection to the member could be made.
    NotConnected,
    /// The request waited for a connection that closed (or was found closed) before it was
    /// written.
    NotWritten,
    /// The member refused the stream before any processing (`REFUSED_STREAM`).
    Refused,
    /// The member's `GOAWAY` named a last stream below the request's, or came before the
    /// request was opened.
    AboveGoAway,
}

/// Why `err` (a failed call, with its sources) certainly never reached the member's handler;
/// `None` when it may have (see the [module docs](self)).
pub(crate) fn unsent(err: &(dyn Error + 'static)) -> Option<Unsent> {
    for e in super::chain(err) {
        if e.is::<tonic::ConnectError>() {
            return Some(Unsent::NotConnected);
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return Some(Unsent::NotWritten);
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            // The innermost HTTP/2 fact decides: nothing below it says more.
            return h2_unsent(h2);
        }
    }
    None
}

/// The verdict on an HTTP/2 error: only frames received from the member count, never an error
/// our side raised.
fn h2_unsent(err: &h2::Error) -> Option<Unsent> {
    if !err.is_remote() {
        return None;
    }
    if err.is_go_away() {
        return Some(Unsent::AboveGoAway);
    }
    (err.is_reset() && err.reason() == Some(h2::Reason::REFUSED_STREAM)).then_some(Unsent::Refused)
}

#[cfg(test)]
mod tests {
    //! Real h2 errors: h2 builds a reset or a `GOAWAY` error only from frames it received, so
    //! each case runs a real h2 server and client over an in-memory pipe.

    use super::*;
    use std::time::Duration;

    /// What `requests` requests get from a server that does `serve` to its connection.
    async fn client_errors<S, F>(requests: usize, serve: S) -> Vec<Result<(), h2::Error>>
    where
        S: FnOnce(h2::server::Connection<tokio::io::DuplexStream, bytes::Bytes>) -> F
            + Send
            + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let conn = h2::server::handshake(server_io)
                .await
                .expect("server handshake");
            serve(conn).await
        });
        let (client, conn) = h2::client::handshake(client_io)
            .await
            .expect("client handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut responses = Vec::new();
        for _ in 0..requests {
            let mut client = client.clone().ready().await.expect("ready");
            let req = http::Request::post("http://member/etcdserverpb.KV/Put")
                .body(())
                .expect("request");
            let (response, _body) = client.send_request(req, true).expect("sent");
            responses.push(response);
        }
        let mut out = Vec::new();
        for response in responses {
            let r = tokio::time::timeout(Duration::from_secs(5), response)
                .await
                .expect("answered in time");
            out.push(r.map(|_| ()));
        }
        // The server waits for the connection to close, which the client holds open.
        server.abort();
        out
    }

    #[tokio::test]
    async fn a_refused_stream_was_not_processed() {
        let errors = client_errors(1, |mut conn| async move {
            let (_req, mut respond) = conn.accept().await.expect("a stream").expect("ok");
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        })
        .await;
        let err = errors[0].as_ref().expect_err("refused");
        assert!(err.is_reset() && err.is_remote(), "{err:?}");
        assert_eq!(unsent(err), Some(Unsent::Refused));
    }

    #[tokio::test]
    async fn a_stream_reset_for_another_reason_may_have_been_processed() {
        for reason in [
            h2::Reason::CANCEL,
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::NO_ERROR,
            h2::Reason::ENHANCE_YOUR_CALM,
        ] {
            let errors = client_errors(1, move |mut conn| async move {
                let (_req, mut respond) = conn.accept().await.expect("a stream").expect("ok");
                respond.send_reset(reason);
                let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
            })
            .await;
            let err = errors[0].as_ref().expect_err("reset");
            assert_eq!(err.reason(), Some(reason));
            assert_eq!(unsent(err), None, "{reason:?}");
        }
    }

    /// The member sends `GOAWAY` naming stream 1 as its last, then closes: stream 3, sent
    /// before the `GOAWAY` arrived (or refused by h2 once it had), was not processed; stream 1,
    /// cut by the close, may have been.
    #[tokio::test]
    async fn a_stream_above_the_goaway_was_not_processed_one_at_or_below_may_have_been() {
        let (first_seen_tx, first_seen_rx) = tokio::sync::oneshot::channel::<()>();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.expect("handshake");
            let (_req, _respond) = conn.accept().await.expect("first").expect("ok");
            let _ = first_seen_tx.send(());
            // Not polled since stream 1 was read: the GOAWAY names it as the last stream.
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        });
        let (client, conn) = h2::client::handshake(client_io).await.expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let post = || {
            http::Request::post("http://member/etcdserverpb.KV/Put")
                .body(())
                .expect("request")
        };
        let mut c = client.clone().ready().await.expect("ready");
        let (first, _) = c.send_request(post(), true).expect("first sent");
        first_seen_rx.await.expect("first received");
        let second = match client.clone().ready().await {
            Ok(mut c) => match c.send_request(post(), true) {
                Ok((second, _)) => tokio::time::timeout(Duration::from_secs(5), second)
                    .await
                    .expect("in time")
                    .map(|_| ()),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        let err = second.expect_err("above the GOAWAY");
        assert!(err.is_go_away() && err.is_remote(), "{err:?}");
        assert_eq!(unsent(&err), Some(Unsent::AboveGoAway));
        let first = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("in time");
        let err = first.expect_err("cut by the close");
        assert_eq!(unsent(&err), None, "at or below the GOAWAY: {err:?}");
        let _ = server.await;
    }

    /// A stream the member received, on a connection that then broke: it may have been
    /// processed.
    #[tokio::test]
    async fn a_stream_cut_by_a_broken_connection_may_have_been_processed() {
        let errors = client_errors(1, |mut conn| async move {
            let (_req, _respond) = conn.accept().await.expect("a stream").expect("ok");
            drop(conn);
        })
        .await;
        let err = errors[0].as_ref().expect_err("broken");
        assert!(err.is_io() || !err.is_remote(), "{err:?}");
        assert_eq!(unsent(err), None);
    }

    /// A connect error is proof; our own h2 errors, a reset connection and a timeout are not
    /// (`tests/unsent_writes.rs` sees the h2 ones through tonic's and hyper's wrapping).
    #[test]
    fn wrapped_and_local_errors() {
        let connect = tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(unsent(&connect), Some(Unsent::NotConnected));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(unsent(&reset), None);
        let local = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(!local.is_remote());
        assert_eq!(
            unsent(&local),
            None,
            "a reason our side made up proves nothing"
        );
        let timeout = tonic::TimeoutExpired(());
        assert_eq!(unsent(&timeout), None);
    }

    /// hyper's refusal of a request on a connection found closed ("connection was not
    /// ready"), found through a box as the balancer sees it.
    #[tokio::test]
    async fn a_request_on_a_closed_connection_was_not_written() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (mut send, conn) =
            hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(client_io),
            )
            .await
            .expect("handshake");
        tokio::spawn(conn);
        drop(server_io);
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while !send.is_closed() {
            assert!(std::time::Instant::now() < until, "never closed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let req = http::Request::post("http://member/etcdserverpb.KV/Put")
            .body(http_body_util::Empty::new())
            .expect("request");
        let err = send.send_request(req).await.expect_err("never written");
        assert!(err.is_canceled(), "{err:?}");
        let wrapped: Box<dyn Error + Send + Sync> = Box::new(err);
        assert_eq!(unsent(wrapped.as_ref()), Some(Unsent::NotWritten));
    }
}
