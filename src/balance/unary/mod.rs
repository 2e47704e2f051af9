//! A unary request's way through the balancer: kept ([`replay`](mod@replay)), its copies decided on
//! ([`plan`]: where and whether; [`schedule`]: when) and sent ([`driver`]).
//!
//! Why a room of its own: a unary request may be hedged, retried after a failure, held through
//! a round's back-off and given up on, and each of those decisions bounds what the request may
//! cost the cluster or whether a write may run twice. They are taken by pure types tested on
//! made-up clocks; the driver that runs them is a thin loop, tested on paused time over fake
//! members. The balancer's service (`service.rs`) only hands each unary request to
//! [`driver::run`].

pub(crate) mod driver;
mod inflight;
pub(crate) mod plan;
pub(crate) mod replay;
pub(crate) mod schedule;

pub(crate) use driver::Members;
pub(crate) use replay::{replay, Replay};
#[cfg(feature = "fuzzing")]
pub(crate) use schedule::fuzz_schedule;
pub(crate) use schedule::jitter;
