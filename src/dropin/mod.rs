//! The drop-in for `etcd_client::Client`.
//!
//! Why: most Rust users of etcd already hold an `etcd_client::Client` and its whole API (KV,
//! txn, watch, lease, lock, election, auth, cluster, maintenance). They get health-checked
//! failover by changing one line, how the client is built:
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_client::Error> {
//! use etcd_health::{config::Config, dropin::HealthChannel};
//!
//! let endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"];
//! // stock: etcd_client::Client::connect(endpoints, None).await?
//! let client = etcd_client::Client::connect_with_balanced_channel(
//!     endpoints,
//!     None,
//!     HealthChannel::new(Config::default()),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! etcd-client keeps building the per-member tonic `Endpoint`s (TLS, timeouts, keep-alive
//! from its `ConnectOptions`) and handles auth tokens (see below); its `add_endpoint` and
//! `remove_endpoint` feed the health state. The other way in, for a stack built by hand, is
//! `Client::from_channel(etcd_client::Channel::Custom(..))` with [`into_etcd_channel`].
//!
//! With etcd auth on, give the client
//! `ConnectOptions::new().with_user(..).with_auto_token_refresh(true)`: etcd-client then
//! authenticates again and re-sends a request (once) when a member refuses its token, and
//! without it (it is off by default) every request that member serves fails until the client
//! is rebuilt. Members refuse a token that was fine a second ago in two ways:
//!
//! - `"etcdserver: invalid auth token"`: etcd's default `simple` tokens live in each member's
//!   memory, so a member that restarted, or on which the token's TTL ran out while another
//!   member served it, does not know it. Failover moves traffic to exactly such members.
//! - `"etcdserver: revision of auth store is old"` (and `"user name is empty"`): after any
//!   auth store change (a user added, a role granted, a password changed), for every request
//!   with a JWT (`--auth-token jwt,...`) issued before it, and for simple tokens when the change
//!   races with the request. etcd answers `InvalidArgument`, which etcd-client 0.21 does not
//!   renew tokens on; the drop-in hands these answers to it as `Unauthenticated`, etcd's message
//!   kept, so its refresh covers them too, as etcd's Go client does. Re-sending is safe for
//!   writes as well: etcd refused the request before it changed anything.
//!
//! etcd-client re-sends once: a request caught by two auth store changes in a row (the token
//! renewed after the first is stale again at once) fails with the second refusal.
//!
//! Watches and lease keep-alives: the drop-in sends `hasleader: true` on every call, streams
//! included (`Config::require_leader`, on by default, so etcd-client's own
//! `ConnectOptions::with_require_leader` is not needed). A member cut off from the quorum then
//! refuses a new watch, and ends one it serves with `Unavailable "etcdserver: no leader"` once
//! it has had no leader for about three election timeouts, instead of leaving the application
//! on a stream that silently stops delivering. etcd-client does not re-create a watch:
//! re-create it from the last revision seen + 1 (a cut-off member also answers "no leader"
//! to the leader checks, which take it out of rotation), or use
//! [`ResumingWatch`](crate::watch::ResumingWatch), which does all that.

mod book;
mod channel;
mod frame;
mod keepalive_book;
mod resume_stream;
mod stale_token;
mod stats;
mod watch_book;

pub use channel::{into_etcd_channel, EtcdChannel, HealthChannel};
pub use stats::{ServingStream, StreamCounts, StreamKind, StreamStats};
