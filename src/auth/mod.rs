//! Authentication for the tower stack: etcd user/password, with the token renewed when a
//! member refuses it.
//!
//! Why a layer of its own: a token that was fine a second ago can be refused, and callers
//! should never see it:
//!
//! - with etcd's default `simple` tokens, a token lives in each member's memory and its TTL
//!   is refreshed only on the member that serves it. Once the balancer moves traffic to
//!   another member (exactly what failover does), or a member restarts, that member may
//!   answer `Unauthenticated "etcdserver: invalid auth token"`;
//! - after any auth store change (a user added, a role granted, a password changed), members
//!   answer `InvalidArgument "etcdserver: revision of auth store is old"` to every request
//!   whose JWT (`--auth-token jwt,...`) was issued before it (and, rarely, to a simple token's
//!   request that raced with the change).
//!
//! [`Auth`] authenticates again and re-sends the request, as etcd's Go client does (it also
//! counts "user name is empty"); writes too, since etcd refused the request before it changed
//! anything (`src/etcd/mod.rs`, `is_stale_token`, says where in etcd). Once per refusal, at most 3
//! times per request, for auth store changes that come back to back. Concurrent requests
//! refused together authenticate once, and share the result, success or error. After a failed
//! renewal no new one starts for a jittered pause of at least 1 s (doubling up to 16 s), and
//! meanwhile requests fail at once with the clear error if the members refused the
//! credentials (a wrong or rotated password): a misconfigured fleet costs the members about
//! one `Authenticate` (a bcrypt check) per client per pause, not one per request. A renewal
//! is waited for no longer than the request's own deadline. Streams (watches, keep-alives) are sent once, with the
//! current token. (Users of `etcd_client::Client` through the drop-in get the same from
//! etcd-client itself, once they turn it on with `ConnectOptions::with_auto_token_refresh(true)`:
//! see [`HealthChannel`](crate::HealthChannel).)
//!
//! ```no_run
//! # async fn demo(balance: etcd_health::Balance<etcd_health::TonicConnector>) {
//! use etcd_health::auth::{AuthLayer, Credentials};
//! use tower::Layer;
//!
//! let stack = AuthLayer::new(Credentials::new("root", "secret")).layer(balance);
//! let kv = etcd_health::proto::etcdserverpb::kv_client::KvClient::new(stack);
//! # }
//! ```

mod credentials;
mod layer;
mod renewal;
mod service;

pub use credentials::Credentials;
pub use layer::AuthLayer;
pub(crate) use renewal::pause;
pub use service::Auth;
