//! The gRPC wire's header names, each made once as a [`HeaderName`].
//!
//! Why constants rather than `&str`: `HeaderMap::get("grpc-status")` parses and hashes the
//! name on every call, and these are read on every answer (the profile of the happy path
//! showed the parsing). One place also keeps one spelling.

use http::HeaderName;

/// The status code, in trailers (or in the headers of a trailers-only answer).
pub(crate) const STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The status message, percent-encoded.
pub(crate) const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The status details, base64 (tonic panics on a bad one: see [`super::sanitize`]).
pub(crate) const DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
/// The caller's deadline (`grpc-timeout: 300m`).
pub(crate) const TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
