//! etcd's "token no longer good" answers, shown to etcd-client as the one it renews tokens on.
//!
//! Why: etcd-client 0.21, with `ConnectOptions::with_auto_token_refresh(true)`, authenticates
//! again and re-sends a request only when etcd answers `Unauthenticated` (its "invalid auth
//! token"). After any auth store change (a user added, a role granted, a password changed),
//! members answer requests made with a JWT issued before it `InvalidArgument "etcdserver:
//! revision of auth store is old"`, and etcd-client would keep sending that token, every
//! request failing, until the application rebuilt the client. etcd's Go client authenticates
//! again on this answer and on "user name is empty" too. The drop-in changes the code of
//! those answers to `Unauthenticated`, etcd's message kept, so etcd-client's own refresh does
//! the same. Re-sending is safe, writes included: etcd refused the request before it changed
//! anything (see [`crate::etcd::is_stale_token`]).

use http::{HeaderValue, Response};

use crate::grpc::header::STATUS as GRPC_STATUS;

/// `resp`, with a refusal of its token (other than `Unauthenticated` already) turned into
/// `Unauthenticated`.
pub(crate) fn as_unauthenticated<B>(mut resp: Response<B>) -> Response<B> {
    let Some(status) = crate::grpc::status_of(resp.headers()) else {
        return resp;
    };
    if status.code() == tonic::Code::Unauthenticated
        || !crate::etcd::is_stale_token(status.code(), status.message())
    {
        return resp;
    }
    tracing::debug!(
        refusal = status.message(),
        code = ?status.code(),
        "token refused; answered as Unauthenticated so that etcd-client authenticates again"
    );
    let unauthenticated = HeaderValue::from(tonic::Code::Unauthenticated as i32);
    resp.headers_mut().insert(GRPC_STATUS, unauthenticated);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: tonic::Code, message: &str) -> Response<()> {
        let mut resp = Response::new(());
        resp.headers_mut()
            .insert(GRPC_STATUS, HeaderValue::from(code as i32));
        resp.headers_mut()
            .insert("grpc-message", HeaderValue::from_str(message).unwrap());
        resp
    }

    fn status(resp: &Response<()>) -> tonic::Status {
        crate::grpc::status_of(resp.headers()).expect("a status")
    }

    #[test]
    fn stale_tokens_become_unauthenticated_with_the_message_kept() {
        for (code, message) in [
            (
                tonic::Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            (
                tonic::Code::Unknown,
                "etcdserver: revision of auth store is old",
            ),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (tonic::Code::Unknown, "etcdserver: invalid auth token"),
        ] {
            let s = status(&as_unauthenticated(answer(code, message)));
            assert_eq!(s.code(), tonic::Code::Unauthenticated, "{message}");
            assert_eq!(s.message(), message);
        }
    }

    #[test]
    fn other_answers_are_left_alone() {
        let s = status(&as_unauthenticated(answer(
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided",
        )));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = status(&as_unauthenticated(answer(
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        )));
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        let ok = as_unauthenticated(Response::new(()));
        assert!(ok.headers().get(GRPC_STATUS).is_none());
    }
}
