//! Member channels made from an `Endpoint` someone else built (etcd-client's, in the drop-in),
//! with the configured material applied to it: made again when the material changes.
//!
//! Why not the per-connection connector of [`connect`](super::connect): that one needs an
//! endpoint built here (a plain URI with an `https` origin), and rebuilding etcd-client's would
//! lose the settings it carries (keep-alive, request timeout) that tonic does not let us read
//! back. So the endpoint is kept as given, the material is applied to it as tonic allows
//! (captured by the channel), and a new channel replaces the old one for requests that come
//! after a rotation. Requests and streams already on the old channel keep its connection until
//! they end.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};

use super::Tls;
use crate::config::redact_userinfo;

/// A tonic channel to one member that follows the rotations of `tls`.
#[derive(Debug)]
pub(crate) struct RotatingChannel {
    shared: Arc<Rotating>,
    /// The channel this handle was made ready on (`poll_ready` before `call`).
    ready: Option<Channel>,
}

/// What the clones of a [`RotatingChannel`] share.
#[derive(Debug)]
struct Rotating {
    endpoint: Endpoint,
    tls: Tls,
    /// The channel made with the material of that generation.
    current: Mutex<(u64, Channel)>,
}

impl Clone for RotatingChannel {
    fn clone(&self) -> Self {
        // A clone is not ready: readiness belongs to the handle that polled it.
        Self {
            shared: self.shared.clone(),
            ready: None,
        }
    }
}

// === impl RotatingChannel ===

impl RotatingChannel {
    /// `endpoint` (an `https://` member) with `tls` applied, now and after each rotation.
    pub(crate) fn new(endpoint: Endpoint, tls: Tls) -> Self {
        let generation = tls.generation();
        let channel = connect(&endpoint, &tls);
        Self {
            shared: Arc::new(Rotating {
                endpoint,
                tls,
                current: Mutex::new((generation, channel)),
            }),
            ready: None,
        }
    }

    /// The channel of the current material, made now if the material changed since.
    fn channel(&self) -> Channel {
        let Rotating {
            endpoint,
            tls,
            current,
        } = &*self.shared;
        let generation = tls.generation();
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            tracing::debug!(uri = %redact_userinfo(&endpoint.uri().to_string()), generation, "new TLS material: a new channel for the requests that follow");
            *current = (generation, connect(endpoint, tls));
        }
        current.1.clone()
    }
}

fn connect(endpoint: &Endpoint, tls: &Tls) -> Channel {
    match tls.apply(endpoint.clone(), true, None) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(error) => {
            // Material is checked when loaded, so this is not expected.
            tracing::error!(uri = %redact_userinfo(&endpoint.uri().to_string()), %error, "config.tls could not be applied; keeping the endpoint's own TLS");
            endpoint.connect_lazy()
        }
    }
}

impl tower::Service<Request<Body>> for RotatingChannel {
    type Response = Response<Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready.is_none() {
            self.ready = Some(self.channel());
        }
        match &mut self.ready {
            Some(channel) => channel.poll_ready(cx),
            None => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut channel = self
            .ready
            .take()
            .expect("RotatingChannel::call before poll_ready returned Ready");
        channel.call(req)
    }
}
