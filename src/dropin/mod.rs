//! The drop-in for `etcd_client::Client`.
//!
//! Why: most Rust users of etcd already hold an `etcd_client::Client` and its whole API (KV,
//! txn, watch, lease, lock, election, auth, cluster, maintenance). They get health-checked
//! failover by changing one line, how the client is built:
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_client::Error> {
//! use etcd_health::{Config, HealthChannel};
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
//! A stream the drop-in re-creates on another member (below) carries the token etcd-client
//! sends now, not the one it was opened with (which etcd may have forgotten or made stale
//! since): the channel keeps the newest token of the requests it carries. If the member still
//! refuses it (etcd-client has not renewed it yet), the stream waits for etcd-client's next
//! token and is re-created with it (at most 5 refusals in a row, 60 s without a newer token:
//! then it ends with `Unauthenticated`; `token_wait.rs`).
//!
//! Watches and lease keep-alives: a stream goes to one member, and etcd-client never
//! re-creates a watch or a keep-alive stream that failed or went silent, while its users hold
//! one client for weeks. So the drop-in answers etcd-client's `Watch/Watch` and
//! `Lease/LeaseKeepAlive` streams itself and carries each over one member at a time: when
//! that member fails (an error, the stream ended, "no leader"), hangs (a request unanswered
//! for `max(4 × hang.after, 2 s)`; a quiet watch stream is sent a progress request after half
//! of that, which a live member answers at once, and moves when nothing at all was heard for
//! the whole) or is evicted by the health checker, the
//! stream moves to another member unseen by etcd-client:
//!
//! - **keep-alives** go to the leader when the health state knows it (etcd forwards them to
//!   it anyway; an idle stream on a follower moves back to the leader), and are not moved but
//!   hedged (`src/stream/keepalive_driver.rs`, the keep-alive engine the tower
//!   [`KeepAlive`](crate::lease::KeepAlive) is a façade over): one unanswered for a quarter of
//!   2 × `hang.after` is sent to another member too (they are idempotent), at most 3 streams
//!   at once, the first answer passed on once. Every answer is a member's: none is made up, a
//!   lease gone is etcd's TTL 0;
//! - **watches** are created again on the new member from the revision after the last one
//!   delivered (the caller's `watch_id` asked for, any other id the member assigns mapped back
//!   in responses and in the caller's cancels), the re-creations' "created" answers
//!   swallowed, events given exactly once and in order. A resume revision etcd compacted ends
//!   that watch with etcd's own cancel (`compact_revision` set), as etcd-client would have
//!   seen re-creating it itself.
//!
//! Opening a stream is bounded: by the caller's deadline (`grpc-timeout`; then
//! `DeadlineExceeded`), else by `retry.budget`, or once each member failed or stayed silent
//! for the stream timeout; a silent opening counts against its member (`opening.rs`). Member
//! messages are decoded without a size limit of the drop-in's own: the caller's limit
//! (etcd-client's `max_decoding_message_size`, 4 MiB unless raised) applies when its stub
//! decodes them.
//!
//! Streams carry `hasleader: true` (`Config::require_leader`, on by default, so etcd-client's
//! own `ConnectOptions::with_require_leader` is not needed): a member cut off from the quorum
//! refuses a watch, or ends it with "no leader" after about three election timeouts, and the
//! stream moves on. [`HealthChannel::stream_stats`] counts the moves and names the member
//! serving each stream; each move is logged (`tracing`, from and to member, why, resume
//! revision). [`HealthChannel::resume_streams`]`(false)` turns this off: each stream then
//! stays on its member and fails or stalls with it, as with stock etcd-client. A stack built
//! by hand and given with [`into_etcd_channel`] resumes its streams the same way. (For the
//! tower stack without etcd-client: [`ResumingWatch`](crate::watch::ResumingWatch), a façade
//! over the stream engine (`src/stream/`), and [`KeepAlive`](crate::lease::KeepAlive).)

mod auth_pause;
mod channel;
mod stale_token;

pub use channel::{into_etcd_channel, EtcdChannel, HealthChannel};
