//! The tower [`Layer`] of [`Auth`].

use std::sync::Arc;

use tower::Layer;

use super::{Auth, Credentials};

/// Adds etcd authentication to a stack (usually over a [`Balance`](crate::Balance)).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    credentials: Arc<Credentials>,
}

impl AuthLayer {
    /// A layer that authenticates as `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials: Arc::new(credentials),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth::new(inner, self.credentials.clone())
    }
}
