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
//! `ConnectOptions::new().with_user(..).with_auto_token_refresh(true)`. etcd's default
//! `simple` tokens live in each member's memory: once a member restarts (or the token's TTL
//! runs out on a member that was not serving it), that member answers
//! `"etcdserver: invalid auth token"`. Failover moves traffic to exactly such members, and
//! etcd-client only authenticates again and re-sends the request when auto refresh is on (it
//! is off by default). Otherwise every request that member serves fails until the client is
//! rebuilt.

mod channel;

pub use channel::{into_etcd_channel, EtcdChannel, HealthChannel};
