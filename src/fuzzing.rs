//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): thin wrappers around
//! private parsers and classifiers, so they can be fed arbitrary input. Not a stable API.

use std::time::Duration;

use crate::config::Config;
use crate::etcd::Method;
use crate::health::Outcome;
use crate::health::{Classify as _, DefaultClassifier};
use crate::passive::judge;

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
    let outcome = DefaultClassifier::new(config).outcome(status.code(), status.message());
    Some(judge(outcome, Method::of(path).kind))
}

/// How the passive checks judge a non-gRPC HTTP status under `config`.
pub fn classify_http(config: &Config, status: u16) -> Option<Outcome> {
    DefaultClassifier::new(config).http(status)
}

/// The instant a request's deadline (from its `grpc-timeout` header) ends at, as the
/// balancer's schedule computes it (with the hedge of its first attempt due `hedge_after`
/// on): `None` without a deadline in the header. Must never panic.
pub fn deadline_instant(
    headers: &http::HeaderMap,
    hedge_after: Duration,
) -> Option<tokio::time::Instant> {
    let deadline = crate::grpc::header::timeout(headers);
    let end = crate::balance::fuzz_schedule(deadline, hedge_after);
    deadline.map(|_| end)
}

/// A lease keep-alive schedule fed answers with these TTLs (seconds, as a member sends them)
/// `gap` milliseconds apart, after a caller's `granted_ttl`. Must never panic.
pub fn lease_answers(granted_ttl: Option<Duration>, answers: &[(i64, u64)]) {
    crate::stream::fuzz_answers(granted_ttl, answers)
}

/// The drop-in's watch book fed `(op, watch id, revision)` steps: creations, the member's
/// created answers, events (whole or fragments), cancels and moves. Must never panic.
pub fn watch_book(steps: &[(u8, i64, i64)]) {
    crate::stream::fuzz_watch_book(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values near the ends of the ranges, where the overflows were, and anything else.
    fn wire_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MAX - 1),
            Just(i64::MIN),
            Just(-1i64),
            Just(0i64),
            Just(9_000_000_000i64),
            any::<i64>(),
            0i64..100,
        ]
    }

    proptest! {
        /// The fuzz targets' entry points, on the same kind of input, in the ordinary test run.
        #[test]
        fn wire_numbers_never_panic(
            timeout in "[0-9]{0,24}[HMSmunx]?",
            hedge_nanos in any::<u64>(),
            granted in prop::option::of(any::<u64>()),
            steps in prop::collection::vec((any::<u8>(), wire_i64(), wire_i64()), 0..40),
        ) {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", http::HeaderValue::from_str(&timeout).unwrap());
            let _ = deadline_instant(&headers, Duration::from_nanos(hedge_nanos));
            let answers: Vec<(i64, u64)> = steps.iter().map(|&(_, a, b)| (a, b as u64)).collect();
            lease_answers(granted.map(Duration::from_secs), &answers);
            watch_book(&steps);
        }
    }
}
