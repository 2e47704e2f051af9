//! Errors returned when building the stack.
//!
//! Errors of individual requests reach callers as [`tonic::Status`] (see
//! [`balance`](crate::balance)), because that is what every tonic client, etcd-client
//! included, knows how to handle.

/// Why the health-checked stack could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint list is empty.
    #[error("endpoints: the list is empty")]
    NoEndpoints,
    /// The stack was built outside a tokio runtime; its probe scheduler needs one.
    #[error("no tokio runtime: build the health checker inside a tokio runtime")]
    NoRuntime,
    /// A configured feature is not available in this build.
    #[error("{field} = {value:?} is not supported: {reason}")]
    Unsupported {
        /// Path of the config field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn no_endpoints() -> Self {
        Error::NoEndpoints
    }

    pub(crate) fn no_runtime() -> Self {
        Error::NoRuntime
    }

    /// The configuration (endpoints included) is not acceptable.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::NoEndpoints | Error::Unsupported { .. })
    }

    /// The stack was built outside a tokio runtime.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self, Error::NoRuntime)
    }
}
