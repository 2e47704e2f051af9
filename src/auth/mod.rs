//! Authentication for the tower stack: etcd user/password, with the token renewed when a
//! member says it is invalid or expired.
//!
//! Why a layer of its own: with etcd's default `simple` tokens, a token lives in each
//! member's memory and its TTL is refreshed only on the member that serves it. Once the
//! balancer moves traffic to another member (exactly what failover does), or a member
//! restarts, that member may answer `Unauthenticated "etcdserver: invalid auth token"` to a
//! token that was fine a second ago. [`Auth`] authenticates again and re-sends the request,
//! once, so callers never see it. (Users of `etcd_client::Client` through the drop-in get the
//! same from etcd-client itself, once they turn it on with
//! `ConnectOptions::with_auto_token_refresh(true)`: see [`dropin`](crate::dropin).)
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
mod service;

pub use credentials::Credentials;
pub use layer::AuthLayer;
pub use service::Auth;
