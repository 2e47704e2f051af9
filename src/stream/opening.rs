//! How long a caller waits for its stream to open, and what a silent opening says about its
//! member.
//!
//! Why: etcd-client's `watch()` and `keep_alive()` return once a member answers the stream's
//! headers (the keep-alive engine, `keepalive_driver.rs`, bounds its first open by the same
//! [`FirstOpen`]). With every member accepting connections and staying silent (SIGSTOPped
//! processes, a black-holed network path), the drop-in moved the opening from member to member
//! for ever, and the call never returned; nor was a silent member blamed for it, since an
//! opening given up on was only dropped.
//!
//! - **The caller's deadline** (`grpc-timeout`, tonic's `Request::set_timeout`) bounds the
//!   wait for the stream's headers: past it the call ends with `DeadlineExceeded`, as tonic's
//!   own channel ends it. It no longer applies once the stream is open (tonic's channel
//!   bounds only the wait for the headers, too), so an open stream still outlives its members.
//! - **Without one**, the opening is bounded as a unary request without a deadline is, by
//!   `retry.budget`; each member gets the stream timeout (`max(4 × hang.after, 2 s)`) to
//!   answer, and once each member failed or stayed silent (one more try), the last failure
//!   is the caller's answer.
//! - **A silent opening** (no headers within the stream timeout, on a stream being opened or
//!   moved) counts against its member as a request that timed out (the seed's
//!   `checks.passive.unhealthy.timeouts`, off by default) and, when peers answered requests
//!   meanwhile, as a hang (`hang.threshold`, as a unary request sitting on a member does); when
//!   nothing answered at all, a leader check is asked for instead, as for a unary request.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;

/// Until when the caller waits for its stream to open, and why that long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct FirstOpen {
    deadline: Option<Instant>,
    bound: Bound,
}

/// What sets the wait.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    /// The caller's deadline.
    Callers(Duration),
    /// `retry.budget` (the caller set none).
    Budget(Duration),
    /// Nothing (no deadline, and the stream is not resumed: as stock tonic).
    None,
}

// === impl FirstOpen ===

impl FirstOpen {
    /// The wait for a stream whose request carried `headers`, started at `now`; `resumed`
    /// says whether the drop-in moves the stream (off, only the caller's deadline bounds it).
    pub(super) fn new(
        headers: &http::HeaderMap,
        config: &Config,
        resumed: bool,
        now: Instant,
    ) -> Self {
        let bound = match crate::grpc::header::timeout(headers) {
            Some(d) => Bound::Callers(d),
            None if resumed => Bound::Budget(config.retry.budget),
            None => Bound::None,
        };
        let deadline = match bound {
            Bound::Callers(d) | Bound::Budget(d) => Some(crate::timing::later(now, d)),
            Bound::None => None,
        };
        Self { deadline, bound }
    }

    /// When the caller stops waiting for the stream to open.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The caller's answer when the deadline passed before any member opened the stream;
    /// `last` says why the last member tried did not (if one was tried).
    pub(super) fn expired(&self, last: Option<&str>) -> tonic::Status {
        let why = last.map_or(String::new(), |l| format!("; last: {l}"));
        match self.bound {
            Bound::Callers(d) => tonic::Status::deadline_exceeded(format!(
                "etcd-health: no member opened the stream within the caller's deadline of \
                 {d:?}{why}"
            )),
            Bound::Budget(d) => tonic::Status::deadline_exceeded(format!(
                "etcd-health: no member opened the stream within {d:?} (retry.budget: the \
                 request carried no deadline){why}"
            )),
            // Never the answer: without a bound there is no deadline to pass.
            Bound::None => tonic::Status::deadline_exceeded(format!(
                "etcd-health: the stream was not opened in time{why}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timeout: Option<&'static str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(t) = timeout {
            h.insert("grpc-timeout", http::HeaderValue::from_static(t));
        }
        h
    }

    #[test]
    fn the_callers_deadline_bounds_the_opening_else_the_retry_budget() {
        let now = Instant::now();
        let config = Config::default();
        let callers = FirstOpen::new(&headers(Some("1500m")), &config, true, now);
        assert_eq!(callers.deadline(), Some(now + Duration::from_millis(1500)));
        let s = callers.expired(Some("no answer within 2s"));
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert!(s.message().contains("caller's deadline of 1.5s"), "{s:?}");
        assert!(s.message().contains("last: no answer within 2s"), "{s:?}");

        let budget = FirstOpen::new(&headers(None), &config, true, now);
        assert_eq!(budget.deadline(), Some(now + config.retry.budget));
        let s = budget.expired(None);
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert!(s.message().contains("retry.budget"), "{s:?}");

        // Not resumed: as stock tonic, only the caller's deadline bounds it.
        assert_eq!(
            FirstOpen::new(&headers(None), &config, false, now).deadline(),
            None
        );
        assert!(FirstOpen::new(&headers(Some("2S")), &config, false, now)
            .deadline()
            .is_some());
        // A malformed header is no deadline (as tonic's server reads it).
        assert_eq!(
            FirstOpen::new(&headers(Some("soon")), &config, true, now).deadline(),
            Some(now + config.retry.budget)
        );
    }
}
