//! Errors returned when building the stack.
//!
//! Errors of individual requests reach callers as [`tonic::Status`] (see
//! [`balance`](crate::balance)), because that is what every tonic client, etcd-client
//! included, knows how to handle.

use crate::config::ConfigError;

/// Why the health-checked stack could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration or an endpoint is not acceptable; the error names the field and
    /// the value.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// The configuration (endpoints included) is not acceptable.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config(_) | Error::Unsupported { .. })
    }

    /// The stack was built outside a tokio runtime.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self, Error::NoRuntime)
    }
}
