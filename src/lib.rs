//! Keep talking to an etcd cluster while its members die, hang or lose the quorum.
//!
//! With a stock gRPC client, one SIGSTOPped member of three stalls almost every request for as
//! long as it hangs, and one killed member makes about one request in six fail for ever: the
//! balancer keeps sending to it. `etcd-health` puts a health checker between the client and the
//! members, after the design of lua-resty-etcd's `cluster_healthcheck` (active probes, passive
//! failure counters, thresholds, a default config users override in part), rebuilt for gRPC:
//!
//! - [`HealthChecker`] holds the shared state of every member: the pure per-member state
//!   machines of [`health`], an active probe scheduler (`status`, `http`, `grpc` or `tcp`
//!   probes), the passive counters fed by every response, a [`snapshot`](HealthChecker::snapshot)
//!   API and an event stream ([`HealthChecker::subscribe`]).
//! - [`HealthLayer`] is a tower `Layer` that turns per-member tonic channels into a
//!   [`Balance`] service: requests go to healthy members only, chosen by power of two choices
//!   over latency and load; an unhealthy member is out of rotation at once and back as soon as
//!   the probes see it recover.
//! - The [`Balance`] service works under any tonic client: this crate's own etcd stubs in
//!   [`proto`], or `etcd_client::Client` through `Client::from_channel(Channel::Custom(..))`.
//!
//! Configuration lives in [`config`]; what each signal can see of etcd's real failures is
//! described in the [`probe`] and [`balance`] docs.
//!
//! Integrators plug their own parts in through [`HealthChecker::builder`]: a
//! [`Probe`](probe::Probe), a [`Classify`](health::Classify) hook for answers, an
//! [`EventSink`](checker::EventSink) and a [`MemberSource`](discovery::MemberSource).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod auth;
pub mod balance;
mod budget;
pub mod checker;
pub mod config;
pub mod discovery;
pub mod dropin;
mod error;
mod etcd;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
pub mod health;
mod leader;
pub mod lease;
mod load;
pub mod metrics;
mod passive;
pub mod probe;
pub mod proto;
mod resolve;
mod resume;
mod start;
mod timing;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls/absent.rs"]
mod tls;
pub mod watch;

// The common types, at the root: most users need nothing else.
pub use balance::{Balance, HealthLayer, MakeMember, TonicConnector};
pub use checker::HealthChecker;
pub use config::Config;
pub use dropin::{into_etcd_channel, EtcdChannel, HealthChannel};
pub use error::{outcome_unknown, Error, OUTCOME_HEADER, OUTCOME_UNKNOWN_VALUE};
pub use lease::{KeepAlive, KeepAliveOptions};
pub use resume::{BoxChannel, ChannelError, IntoBoxChannel};
pub use start::HealthCheckerBuilder;
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsStatus};
pub use watch::{ResumingWatch, WatchOptions};

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
