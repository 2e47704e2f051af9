//! Passive checks: every response through the stack says something about the member that
//! served it.
//!
//! Why classification matters: most gRPC errors are the application's (a missing key, a
//! compacted revision, a denied permission, NOSPACE) and say nothing about the member; counting
//! them would eject healthy members. Only connect failures, timeouts and member-level answers
//! (`Unavailable`, "no leader", "leader changed", "request timed out", `Unknown "context
//! deadline exceeded"`) count, and long-blocking calls (Watch, Lock, Campaign, lease keep-alive
//! streams) are never timeouts. The gRPC status arrives either in the response headers
//! (trailers-only answers) or in the body's trailers; both are read.

mod body;
mod classify;
mod tracker;

pub(crate) use body::judge;
pub(crate) use body::ClassifiedBody;
pub(crate) use classify::transport_error;
pub(crate) use classify::{Classifier, NotLeader, Verdict};
pub(crate) use tracker::Tracker;
