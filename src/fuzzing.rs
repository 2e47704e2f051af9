//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): thin wrappers around
//! private parsers and classifiers, so they can be fed arbitrary input. Not a stable API.

use std::time::Duration;

use crate::config::Config;
use crate::etcd::Method;
use crate::health::Outcome;
use crate::passive::{judge, Classifier};

/// The deadline the balancer reads from a request's `grpc-timeout` header.
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    crate::grpc::header::timeout(headers)
}

/// How the passive checks judge an answer with these (trailers-only) headers or trailers,
/// for a request to `path`, under `config`: `None` when the headers carry no gRPC status,
/// else the verdict (itself `None` when it counts for nothing).
pub fn classify(config: &Config, path: &str, headers: &http::HeaderMap) -> Option<Option<Outcome>> {
    let mut headers = headers.clone();
    crate::grpc::sanitize(&mut headers);
    // What the caller's tonic client does with the same headers next: must not panic.
    let _ = tonic::Status::from_header_map(&headers);
    let status = crate::grpc::status_of(&headers)?;
    let outcome = Classifier::new(config).status(status.code(), status.message());
    Some(judge(outcome, Method::of(path).kind))
}

/// How the passive checks judge a non-gRPC HTTP status under `config`.
pub fn classify_http(config: &Config, status: u16) -> Option<Outcome> {
    Classifier::new(config).http(status)
}
