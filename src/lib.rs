//! Keep talking to an etcd cluster while its members die, hang or lose the quorum.
//!
//! With a stock gRPC client, one SIGSTOPped member of three stalls almost every request for as
//! long as it hangs, and one killed member makes about one request in six fail for ever: the
//! balancer keeps sending to it. `etcd-health` puts a health checker between the client and the
//! members, after the design of lua-resty-etcd's `cluster_healthcheck` (active probes, passive
//! failure counters, thresholds, a default config users override in part), rebuilt for gRPC:
//!
//! - [`HealthChecker`] holds the shared state of every member: a health machine per member,
//!   an active probe scheduler (`status`, `http`, `grpc` or `tcp` probes), the passive
//!   counters fed by every response, a [`snapshot`](HealthChecker::snapshot) API and an event
//!   stream ([`HealthChecker::subscribe`]).
//! - [`HealthLayer`] is a tower `Layer` that turns per-member tonic channels into a
//!   [`Balance`] service: requests go to healthy members only, chosen by power of two choices
//!   over latency and load; an unhealthy member is out of rotation at once and back as soon as
//!   the probes see it recover. It works under any tonic client, this crate's own etcd stubs
//!   in [`proto`] included.
//! - [`HealthChannel`] is the drop-in for `etcd_client::Client`
//!   (`Client::connect_with_balanced_channel`), and [`into_etcd_channel`] hands a [`Balance`]
//!   to `Client::from_channel`.
//! - [`ResumingWatch`] and [`KeepAlive`] are a watch and a lease keep-alive that outlive the
//!   member serving them.
//!
//! # The public face
//!
//! The root holds what a program names to build a client. Besides it:
//!
//! - [`config`]: the config table, its defaults and its loaders;
//! - [`observe`]: what the stack lets you see (member snapshots, health events, the leader,
//!   the retry budget, the streams' states and statistics, why a helper ended);
//! - [`extend`]: what you plug in through [`HealthChecker::builder`] or under the
//!   [`HealthLayer`] (a probe, a classifier, an event sink, a member source, a resolver, your
//!   own member channels) and the bounds those meet;
//! - [`auth`]: the tower auth layer for the stack (the drop-in keeps etcd-client's own);
//! - [`metrics`]: the names of the metrics the `metrics` feature records;
//! - [`proto`]: tonic stubs for etcd's v3 API.
//!
//! Why so few: every other module is the stack's own business and may change shape at any
//! release; a user names a type from one of the places above, and from no other.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod auth;
mod balance;
mod budget;
mod checker;
mod cluster;
pub mod config;
mod discovery;
mod dropin;
mod error;
mod etcd;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod health;
mod leader;
mod lease;
mod load;
mod member;
pub mod metrics;
mod passive;
mod probe;
pub mod proto;
mod resolve;
mod start;
mod stream;
mod timing;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls/absent.rs"]
mod tls;
mod watch;

// What a program names to build a client: most users need nothing else.
pub use balance::{Balance, HealthLayer, TonicConnector};
pub use checker::HealthChecker;
pub use config::Config;
pub use dropin::{into_etcd_channel, HealthChannel};
pub use error::{outcome_unknown, Error};
pub use lease::{KeepAlive, KeepAliveOptions};
#[cfg(feature = "tls")]
pub use tls::Tls;
pub use watch::{ResumingWatch, WatchOptions};

/// What the stack lets you see: member snapshots, health events, the leader, the retry budget,
/// the streams' states and statistics, and why a stream helper ended.
///
/// Why one module: these are the types a program reads and never builds, returned by
/// [`HealthChecker`]'s accessors ([`snapshot`](HealthChecker::snapshot),
/// [`subscribe`](HealthChecker::subscribe), [`leader`](HealthChecker::leader),
/// [`retry_budget`](HealthChecker::retry_budget)), by [`HealthChannel::stream_stats`] and by
/// the stream helpers' `state()`; gathered here, a reader finds every one of them in one place.
pub mod observe {
    pub use crate::balance::ServedBy;
    pub use crate::budget::RetryBudgetSnapshot;
    pub use crate::error::{OUTCOME_HEADER, OUTCOME_UNKNOWN_VALUE};
    pub use crate::event::{EventKind, HealthEvent};
    pub use crate::health::{Counters, Outcome, Source, Status, Transition};
    pub use crate::leader::LeaderSnapshot;
    pub use crate::lease::{KeepAliveState, LeaseError};
    pub use crate::member::{Member, MemberSnapshot, Origin, ProbeReport};
    pub use crate::stream::{ServingStream, StreamCounts, StreamKind, StreamStats};
    #[cfg(feature = "tls")]
    pub use crate::tls::TlsStatus;
    pub use crate::watch::{WatchError, WatchState};
}

/// What you plug in: through [`HealthChecker::builder`] (a probe, a classifier, an event sink,
/// a member source) or [`HealthChecker::set_resolver`], under the [`HealthLayer`] (your own
/// member channels), and the bounds those meet.
///
/// Why a module of its own: a program that only connects never names these; an integrator
/// finds every hook, and what each must satisfy, here. Each trait's docs have a compiled
/// example.
pub mod extend {
    pub use crate::balance::{AskServedBy, AvoidMembers, MakeMember, ResponseFuture};
    pub use crate::discovery::{BoxError, MemberSource};
    pub use crate::dropin::EtcdChannel;
    pub use crate::event::EventSink;
    pub use crate::grpc::{GrpcBody, GrpcService};
    pub use crate::health::{Classify, DefaultClassifier};
    pub use crate::probe::{
        BoxFuture, Finding, GrpcProbe, HttpProbe, Probe, ProbeTarget, StatusProbe, TcpProbe,
    };
    pub use crate::resolve::{Resolve, TokioResolver};
    pub use crate::start::HealthCheckerBuilder;
    pub use crate::stream::resume::{BoxChannel, ChannelError, IntoBoxChannel};
}

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
