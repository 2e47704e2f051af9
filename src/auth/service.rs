//! The authenticating [`Service`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

use super::renewal::Renewal;
use super::Credentials;
use crate::balance::ResponseFuture;
use crate::grpc::GrpcService;
use crate::proto::etcdserverpb::{AuthenticateRequest, AuthenticateResponse};

use crate::etcd::TOKEN;
use tokio::time::Instant;
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
/// How many times one request may authenticate again and be re-sent. Once is the rule; the
/// spare ones cover auth store changes that come back to back (a user added, then a role
/// granted to it), each of which makes the token just obtained stale again.
const MAX_RENEWALS: usize = 3;

/// Sends every request with a token for its credentials; when a member refuses the token
/// (invalid or expired, issued before the latest auth store change, or naming no user: see
/// `is_stale_token` in `src/etcd/mod.rs`), authenticates again and re-sends the request.
///
/// Renewals are shared and paused after a failure (see `renewal.rs`): a wrong password costs
/// the members about one `Authenticate` per pause (1 s at first, up to 16 s), however many
/// requests are sent, and those requests fail at once with the clear error meanwhile.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    credentials: Arc<Credentials>,
    renewal: Arc<Renewal>,
}

// === impl Auth ===

impl<S> Auth<S> {
    /// Authenticates requests to `inner` as `credentials`.
    pub fn new(inner: S, credentials: Arc<Credentials>) -> Self {
        Self {
            inner,
            credentials,
            renewal: Arc::new(Renewal::default()),
        }
    }

    /// How many times this stack (and its clones) authenticated: once at first use, then
    /// once per renewal.
    pub fn authentications(&self) -> u64 {
        self.renewal.successes()
    }

    /// How many `Authenticate` requests this stack (and its clones) sent, successful or not.
    pub fn authenticate_calls(&self) -> u64 {
        self.renewal.started()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn current(&self) -> Option<HeaderValue> {
        self.renewal.current()
    }
}

#[allow(private_bounds, reason = "private methods: the bound never shows")]
impl<S: GrpcService + Clone> Auth<S> {
    /// A fresh token, unless `stale` is no longer the current one (another request already
    /// renewed it while this one waited); waits no later than `deadline` (see `renewal.rs`).
    async fn renew(
        &self,
        stale: Option<&HeaderValue>,
        deadline: Option<Instant>,
    ) -> Result<HeaderValue, tower::BoxError> {
        let (inner, credentials) = (self.inner.clone(), self.credentials.clone());
        let token = self
            .renewal
            .renew(
                stale,
                deadline,
                self.credentials.user(),
                move || async move {
                    let token = authenticate(inner, &credentials).await;
                    crate::metrics::authenticated(token.is_ok());
                    token
                },
            )
            .await?;
        Ok(token)
    }

    async fn send(
        self,
        req: Request<tonic::body::Body>,
    ) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        // The caller's deadline bounds the renewals too: what they take is taken off the
        // deadline the request is then sent with.
        let deadline = crate::grpc::header::timeout(req.headers())
            .map(|d| crate::timing::later(Instant::now(), d));
        let token = match self.current() {
            Some(token) => token,
            None => self.renew(None, deadline).await?,
        };
        let (mut parts, body) = req.into_parts();
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            crate::grpc::header::set_timeout(&mut parts.headers, left);
        }
        let stream =
            crate::etcd::Method::of(parts.uri.path()).kind != crate::etcd::MethodKind::Unary;
        if stream {
            // Streams cannot be replayed here: send once with the current token.
            let mut req = Request::from_parts(parts, body);
            req.headers_mut().insert(TOKEN, token);
            return self.call_inner(req).await;
        }
        let body = body.collect().await?.to_bytes();
        let mut token = token;
        let mut renewals = 0;
        loop {
            let resp = self
                .call_inner(with_token(&parts, &body, token.clone()))
                .await?;
            let Some(refusal) = refusal(&resp) else {
                return Ok(resp);
            };
            if renewals == MAX_RENEWALS {
                tracing::warn!(
                    method = parts.uri.path(),
                    refusal = refusal.message(),
                    renewals,
                    "token still refused after authenticating again; giving up"
                );
                return Ok(resp);
            }
            renewals += 1;
            // etcd refused the request before it changed anything (see
            // `crate::etcd::is_stale_token`): re-sending a write is safe.
            tracing::info!(
                method = parts.uri.path(),
                refusal = refusal.message(),
                "token refused; authenticating again"
            );
            token = self.renew(Some(&token), deadline).await?;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                crate::grpc::header::set_timeout(&mut parts.headers, left);
            }
        }
    }

    async fn call_inner(
        &self,
        req: Request<tonic::body::Body>,
    ) -> Result<Response<tonic::body::Body>, tower::BoxError> {
        let resp = self.inner.clone().oneshot(req).await.map_err(Into::into)?;
        Ok(resp.map(tonic::body::Body::new))
    }
}

/// Calls `Auth/Authenticate` through `svc` and returns the token.
///
/// Written out by hand (gRPC framing of one prost message) rather than through the generated
/// `AuthClient`, whose future cannot be proven `Send` inside this generic service.
///
/// Errors are statuses, so one can be shared with every request that waited for it, and
/// name the user, never the password.
async fn authenticate<S: GrpcService>(
    svc: S,
    credentials: &Credentials,
) -> Result<String, tonic::Status> {
    use prost::Message;

    let msg = AuthenticateRequest {
        name: credentials.user().to_owned(),
        password: credentials.password().to_owned(),
    }
    .encode_to_vec();
    let mut frame = Vec::with_capacity(5 + msg.len());
    frame.push(0);
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let req = Request::post(AUTHENTICATE)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame),
        )))
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let failed = |status: tonic::Status| -> tonic::Status {
        tonic::Status::new(
            status.code(),
            format!(
                "etcd-health: authenticating as {:?} failed: {}",
                credentials.user(),
                status.message()
            ),
        )
    };
    let from_error = |e: tower::BoxError| failed(status_of_error(e));
    let resp = svc.oneshot(req).await.map_err(|e| from_error(e.into()))?;
    if let Some(status) = crate::grpc::status_of(resp.headers()) {
        return Err(failed(status));
    }
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| from_error(e.into()))?;
    if let Some(status) = collected
        .trailers()
        .and_then(crate::grpc::status_of)
        .filter(|s| s.code() != tonic::Code::Ok)
    {
        return Err(failed(status));
    }
    let bytes = collected.to_bytes();
    let body = bytes
        .get(5..)
        .ok_or_else(|| failed(tonic::Status::internal("empty Authenticate answer")))?;
    let resp = AuthenticateResponse::decode(body)
        .map_err(|e| failed(tonic::Status::internal(e.to_string())))?;
    Ok(resp.token)
}

/// The status an error of the stack carries, or `Unavailable` with its whole description.
fn status_of_error(err: tower::BoxError) -> tonic::Status {
    match err.downcast::<tonic::Status>() {
        Ok(status) => *status,
        Err(err) => tonic::Status::unavailable(crate::grpc::describe(&*err)),
    }
}

/// A copy of a buffered request carrying `token`.
fn with_token(
    parts: &http::request::Parts,
    body: &Bytes,
    token: HeaderValue,
) -> Request<tonic::body::Body> {
    let mut req = crate::balance::replay(parts, body);
    req.headers_mut().insert(TOKEN, token);
    req
}

/// The refusal of the token, if a (trailers-only) answer is one.
fn refusal(resp: &Response<tonic::body::Body>) -> Option<tonic::Status> {
    crate::grpc::status_of(resp.headers())
        .filter(|s| crate::etcd::is_stale_token(s.code(), s.message()))
}

/// For inner services that carry tonic's requests and answer with a body of `Bytes` frames
/// (the [`Balance`](crate::Balance), a tonic `Channel`), `Clone + Send + Sync + 'static`, with
/// `Send` futures and errors that box.
impl<S: GrpcService + Clone + Sync> Service<Request<tonic::body::Body>> for Auth<S> {
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of `inner` is awaited per request (`oneshot`), on a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == AUTHENTICATE {
            let inner = self.inner.clone();
            return ResponseFuture::new(async move {
                let resp = inner.oneshot(req).await.map_err(Into::into)?;
                Ok(resp.map(tonic::body::Body::new))
            });
        }
        ResponseFuture::new(self.clone().send(req))
    }
}
