//! The balancer: one tonic channel per member, requests spread over the healthy ones.
//!
//! Why our own balancer: tonic's `Channel::balance_channel` never evicts a dead member (a
//! failed connect still counts as ready, its load is a constant 0), and tower's `Balance`
//! drops a member for good when its `poll_ready` fails. Here the choice is made per request
//! among the members the [`HealthChecker`](crate::HealthChecker) calls healthy, by power of
//! two choices over a peak-sensitive latency average times requests in flight; an unhealthy
//! member is skipped at once, without an error. `poll_ready` never fails: when no member can
//! take the request, the response future fails with `tonic::Status::unavailable`, which every
//! tonic client reports as such (an error from `poll_ready` would become `Unknown`).
//!
//! [`HealthLayer`] is the tower face of it: it turns a [`MakeMember`] (how to reach one
//! member, by default [`TonicConnector`]) into a [`Balance`] service usable under any tonic
//! client.

mod attempt;
mod buffered;
mod connect;
mod future;
mod hedge;
mod hint;
mod layer;
mod make;
pub(crate) mod pick;
mod route;
mod service;
mod unary;

pub use future::ResponseFuture;
pub(crate) use hint::EvenIfEjected;
pub use hint::{AskServedBy, AvoidMembers, ServedBy};
pub use layer::{Balance, HealthLayer};
pub(crate) use make::{keep_alive, transport_settings};
pub use make::{MakeMember, TonicConnector};
#[cfg(feature = "fuzzing")]
pub(crate) use unary::fuzz_schedule;
pub(crate) use unary::replay;
