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

/// Metadata key (a response header, so a gRPC metadata entry) the stack sets on the error of a
/// write whose outcome is unknown; its value is [`OUTCOME_UNKNOWN_VALUE`].
pub const OUTCOME_HEADER: &str = "etcd-health-outcome";
/// The value of [`OUTCOME_HEADER`] on a write that may or may not have been applied.
pub const OUTCOME_UNKNOWN_VALUE: &str = "unknown";
/// What the message of an *outcome unknown* error starts with.
pub(crate) const OUTCOME_UNKNOWN_PREFIX: &str =
    "etcd-health: outcome unknown (the write may have been applied; it was not sent again): ";

/// Whether a request failed with its outcome unknown: a write (Put, DeleteRange, Txn, lease
/// grant, ...) sent to a member that then hung, died or lost its leader mid-flight, so it may
/// or may not have been applied. The stack never sends such a write again; the caller decides
/// (re-read, or re-send if the write is idempotent for it).
///
/// Any other failed write was certainly not applied. Works on the [`tonic::Status`] of this
/// crate's own stubs and on the one inside `etcd_client::Error::GRpcStatus`:
///
/// ```
/// # fn handle(err: etcd_client::Error) {
/// if let etcd_client::Error::GRpcStatus(status) = &err {
///     if etcd_health::outcome_unknown(status) {
///         // re-read the key before deciding what to do
///     }
/// }
/// # }
/// ```
pub fn outcome_unknown(status: &tonic::Status) -> bool {
    status
        .metadata()
        .get(OUTCOME_HEADER)
        .is_some_and(|v| v == OUTCOME_UNKNOWN_VALUE)
}

/// Marks gRPC metadata as *outcome unknown*.
pub(crate) fn mark_outcome_unknown(metadata: &mut tonic::metadata::MetadataMap) {
    metadata.insert(
        OUTCOME_HEADER,
        tonic::metadata::MetadataValue::from_static(OUTCOME_UNKNOWN_VALUE),
    );
}

/// Marks response headers (a trailers-only answer's metadata) as *outcome unknown*.
pub(crate) fn mark_outcome_unknown_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        OUTCOME_HEADER,
        http::HeaderValue::from_static(OUTCOME_UNKNOWN_VALUE),
    );
}
