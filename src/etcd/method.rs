//! The one table of etcd's gRPC methods: what the stack must know of each.
//!
//! Why one table: whether a method may be sent again, whether it answers promptly, whether
//! only the leader may serve it and whether it may be hedged are facts about the same method
//! paths; kept apart, a method added to one list and not to the others is judged by the
//! passive checks as one kind of call and retried by the balancer as another.

/// What a method does to the cluster, as far as sending it again is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes nothing: safe to send again anywhere.
    Read,
    /// May change the cluster: sent again only when certainly not processed.
    Write,
}

/// How a method behaves over time, which decides how its answers are judged and whether the
/// balancer may buffer, retry and hedge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodKind {
    /// Answers promptly: latency and timeouts say something about the member.
    Unary,
    /// Unary, but may legitimately block for long (Lock, Campaign, Defragment): never a
    /// timeout, never bounded by `retry.budget`.
    LongBlocking,
    /// A stream (Watch, LeaseKeepAlive, Snapshot, Observe): judged on its opening only.
    Stream,
}

/// Whether a read may be hedged (a second copy sent to another member while the first is slow),
/// and which latency estimate judges it slow: each kind of read has its own, so one slow
/// method does not set the hedging delay of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hedging {
    /// Never hedged: a write, a stream or long-blocking call, or a read too expensive to run
    /// twice (`Hash` and `HashKV` walk the whole store, `Authenticate` runs bcrypt).
    Never,
    /// `Range`: hedged when small (see [`small_range`](super::small_range)).
    Range,
    /// Lease reads (`LeaseTimeToLive`, `LeaseLeases`).
    Lease,
    /// The cluster's own state: `Status`, `MemberList`, `Election/Leader`, health checks.
    Cluster,
    /// Other reads (user and role reads).
    Other,
}

impl Hedging {
    /// The hedged kinds, in a fixed order (each has one latency estimate).
    pub(crate) const HEDGED: [Hedging; 4] = [Self::Range, Self::Lease, Self::Cluster, Self::Other];
}

/// What the stack knows of one gRPC method. Methods it does not know are unary writes: never
/// sent twice unless certainly not processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Method {
    /// Whether it may be sent again anywhere.
    pub(crate) class: Class,
    /// Whether it answers promptly.
    pub(crate) kind: MethodKind,
    /// Only the leader may serve it; elsewhere etcd answers [`NOT_LEADER`](super::NOT_LEADER).
    pub(crate) leader_only: bool,
    /// Whether it may be hedged, and by which latency estimate.
    pub(crate) hedging: Hedging,
    /// Its body decides what it is ([`for_body`](Self::for_body)): a `Range` over many keys
    /// is not hedged, a `Txn` of reads is a read.
    by_body: ByBody,
}

/// What a method's body may change in what the stack knows of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByBody {
    /// Nothing: the body is never looked at.
    Nothing,
    /// A `Range`: hedged only when small.
    Range,
    /// A `Txn`: a read when all its operations read.
    Txn,
}

impl Method {
    const fn new(class: Class, kind: MethodKind) -> Self {
        Self {
            class,
            kind,
            leader_only: false,
            hedging: Hedging::Never,
            by_body: ByBody::Nothing,
        }
    }

    /// A unary read hedged as `hedging`.
    const fn read(hedging: Hedging) -> Self {
        Self {
            hedging,
            ..Self::new(Class::Read, MethodKind::Unary)
        }
    }

    /// The method at `path` (`/package.Service/Method`), before its body is known (see
    /// [`for_body`](Self::for_body)).
    pub(crate) fn of(path: &str) -> Self {
        use Class::{Read, Write};
        use MethodKind::{LongBlocking, Stream, Unary};
        match path {
            "/etcdserverpb.KV/Range" => Self {
                by_body: ByBody::Range,
                ..Self::read(Hedging::Range)
            },
            "/etcdserverpb.KV/Txn" => Self {
                by_body: ByBody::Txn,
                ..Self::new(Write, Unary)
            },
            "/etcdserverpb.Maintenance/Status"
            | "/etcdserverpb.Cluster/MemberList"
            | "/v3electionpb.Election/Leader"
            | "/grpc.health.v1.Health/Check" => Self::read(Hedging::Cluster),
            "/etcdserverpb.Lease/LeaseTimeToLive" | "/etcdserverpb.Lease/LeaseLeases" => {
                Self::read(Hedging::Lease)
            }
            "/etcdserverpb.Auth/UserGet"
            | "/etcdserverpb.Auth/UserList"
            | "/etcdserverpb.Auth/RoleGet"
            | "/etcdserverpb.Auth/RoleList" => Self::read(Hedging::Other),
            "/etcdserverpb.Maintenance/Hash"
            | "/etcdserverpb.Maintenance/HashKV"
            | "/etcdserverpb.Auth/Authenticate" => Self::new(Read, Unary),
            "/etcdserverpb.Watch/Watch"
            | "/etcdserverpb.Maintenance/Snapshot"
            | "/v3electionpb.Election/Observe"
            | "/grpc.health.v1.Health/Watch" => Self::new(Read, Stream),
            "/etcdserverpb.Lease/LeaseKeepAlive" => Self::new(Write, Stream),
            // Defragment holds the member for as long as it copies its database (minutes for
            // a large one): no bound of ours applies (see `retry.budget`), and the wait is no
            // hang.
            "/v3lockpb.Lock/Lock"
            | "/v3electionpb.Election/Campaign"
            | "/etcdserverpb.Maintenance/Defragment" => Self::new(Write, LongBlocking),
            "/etcdserverpb.Maintenance/MoveLeader" => Self {
                leader_only: true,
                ..Self::new(Write, Unary)
            },
            _ => Self::new(Write, Unary),
        }
    }

    /// The method as its unary request's `body` (a gRPC frame) shows it: a `Range` over many
    /// keys without a small limit (`max_range_limit`) is never hedged (see
    /// [`small_range`](super::small_range)); a `Txn` whose operations all read (see
    /// [`read_only_txn`](super::read_only_txn)) is a read, hedged like a `Range` when every
    /// range in it is small. Other methods are returned as they are, their body unread.
    pub(crate) fn for_body(self, body: &bytes::Bytes, max_range_limit: u64) -> Self {
        match self.by_body {
            ByBody::Nothing => self,
            ByBody::Range if super::small_range(body, max_range_limit) => self,
            ByBody::Range => Self {
                hedging: Hedging::Never,
                ..self
            },
            ByBody::Txn => match super::read_only_txn(body, max_range_limit) {
                None => self,
                Some(small) => Self {
                    class: Class::Read,
                    hedging: match small {
                        true => Hedging::Range,
                        false => Hedging::Never,
                    },
                    ..self
                },
            },
        }
    }
}

/// Every method of etcd's v3 API (and gRPC health) by path: the closed set of method names
/// the stack reports (metric labels). A path outside it is reported as [`OTHER_METHOD`], so a
/// caller's own services cannot grow the number of series.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const METHODS: [&str; 50] = [
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberPromote",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Maintenance/Downgrade",
    "/etcdserverpb.Auth/AuthEnable",
    "/etcdserverpb.Auth/AuthDisable",
    "/etcdserverpb.Auth/AuthStatus",
    "/etcdserverpb.Auth/Authenticate",
    "/etcdserverpb.Auth/UserAdd",
    "/etcdserverpb.Auth/UserGet",
    "/etcdserverpb.Auth/UserList",
    "/etcdserverpb.Auth/UserDelete",
    "/etcdserverpb.Auth/UserChangePassword",
    "/etcdserverpb.Auth/UserGrantRole",
    "/etcdserverpb.Auth/UserRevokeRole",
    "/etcdserverpb.Auth/RoleAdd",
    "/etcdserverpb.Auth/RoleGet",
    "/etcdserverpb.Auth/RoleList",
    "/etcdserverpb.Auth/RoleDelete",
    "/etcdserverpb.Auth/RoleGrantPermission",
    "/etcdserverpb.Auth/RoleRevokePermission",
    "/v3lockpb.Lock/Lock",
    "/v3lockpb.Lock/Unlock",
    "/v3electionpb.Election/Campaign",
    "/v3electionpb.Election/Proclaim",
    "/v3electionpb.Election/Leader",
    "/v3electionpb.Election/Observe",
    "/v3electionpb.Election/Resign",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The name reported for a method outside [`METHODS`] (OpenTelemetry's `rpc.method` for an
/// unknown method).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const OTHER_METHOD: &str = "_OTHER";

/// The position of `path` in [`METHODS`], `None` for any other path.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn method_index(path: &str) -> Option<usize> {
    METHODS.iter().position(|m| *m == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_names_are_a_closed_set_of_distinct_paths() {
        for (i, path) in METHODS.iter().enumerate() {
            assert_eq!(method_index(path), Some(i), "{path}");
            assert!(path.starts_with('/') && path[1..].contains('/'), "{path}");
        }
        assert_eq!(method_index("/some.Unknown/Method"), None);
        assert_eq!(method_index("etcdserverpb.KV/Range"), None);
    }

    #[test]
    fn reads_and_writes() {
        let class = |path| Method::of(path).class;
        assert_eq!(class("/etcdserverpb.KV/Range"), Class::Read);
        assert_eq!(class("/etcdserverpb.Cluster/MemberList"), Class::Read);
        for write in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/DeleteRange",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.KV/Compact",
            "/etcdserverpb.Lease/LeaseGrant",
            "/etcdserverpb.Lease/LeaseRevoke",
            "/etcdserverpb.Cluster/MemberAdd",
            "/etcdserverpb.Auth/UserAdd",
            "/etcdserverpb.Maintenance/Alarm",
            "/v3lockpb.Lock/Unlock",
            "/some.Unknown/Method",
        ] {
            assert_eq!(class(write), Class::Write, "{write}");
        }
    }

    #[test]
    fn method_kinds() {
        let kind = |path| Method::of(path).kind;
        assert_eq!(kind("/etcdserverpb.KV/Range"), MethodKind::Unary);
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), MethodKind::Stream);
        assert_eq!(
            kind("/etcdserverpb.Lease/LeaseKeepAlive"),
            MethodKind::Stream
        );
        assert_eq!(kind("/v3lockpb.Lock/Lock"), MethodKind::LongBlocking);
        assert_eq!(
            kind("/etcdserverpb.Maintenance/Defragment"),
            MethodKind::LongBlocking
        );
    }

    /// Expensive reads, writes and streams are never hedged; the others each have a kind.
    #[test]
    fn hedging() {
        let hedging = |path| Method::of(path).hedging;
        for never in [
            "/etcdserverpb.Maintenance/Hash",
            "/etcdserverpb.Maintenance/HashKV",
            "/etcdserverpb.Maintenance/Snapshot",
            "/etcdserverpb.Maintenance/Defragment",
            "/etcdserverpb.Auth/Authenticate",
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.Watch/Watch",
            "/v3lockpb.Lock/Lock",
            "/some.Unknown/Method",
        ] {
            assert_eq!(hedging(never), Hedging::Never, "{never}");
        }
        assert_eq!(hedging("/etcdserverpb.KV/Range"), Hedging::Range);
        assert_eq!(
            hedging("/etcdserverpb.Lease/LeaseTimeToLive"),
            Hedging::Lease
        );
        assert_eq!(
            hedging("/etcdserverpb.Maintenance/Status"),
            Hedging::Cluster
        );
        assert_eq!(hedging("/etcdserverpb.Auth/RoleGet"), Hedging::Other);
        // Every read that is hedged is a unary read.
        for path in ["/etcdserverpb.KV/Range", "/etcdserverpb.Cluster/MemberList"] {
            let m = Method::of(path);
            assert_eq!((m.class, m.kind), (Class::Read, MethodKind::Unary));
        }
        assert_eq!(
            Method::of("/etcdserverpb.Auth/Authenticate").class,
            Class::Read
        );
    }

    /// A `Txn` is a write until its body shows only reads; a `Range`'s body decides whether it
    /// is hedged; other methods' bodies are never read.
    #[test]
    fn bodies_decide_for_txn_and_range_only() {
        use crate::proto::etcdserverpb::{
            request_op::Request, PutRequest, RangeRequest, RequestOp, TxnRequest,
        };
        use prost::Message;
        let framed = |msg: &dyn Fn() -> Vec<u8>| {
            let msg = msg();
            let mut out = vec![0u8];
            out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            out.extend_from_slice(&msg);
            bytes::Bytes::from(out)
        };
        let op = |request| RequestOp {
            request: Some(request),
        };
        let get = |end: &[u8]| {
            Request::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            })
        };
        let reads = framed(&|| {
            TxnRequest {
                success: vec![op(get(b""))],
                ..Default::default()
            }
            .encode_to_vec()
        });
        let prefix = framed(&|| {
            TxnRequest {
                success: vec![op(get(b"b"))],
                ..Default::default()
            }
            .encode_to_vec()
        });
        let writes = framed(&|| {
            TxnRequest {
                success: vec![op(get(b"")), op(Request::RequestPut(PutRequest::default()))],
                ..Default::default()
            }
            .encode_to_vec()
        });
        let txn = Method::of("/etcdserverpb.KV/Txn");
        assert_eq!((txn.class, txn.hedging), (Class::Write, Hedging::Never));
        let m = txn.for_body(&reads, 10);
        assert_eq!(
            (m.class, m.kind, m.hedging),
            (Class::Read, MethodKind::Unary, Hedging::Range)
        );
        let m = txn.for_body(&prefix, 10);
        assert_eq!((m.class, m.hedging), (Class::Read, Hedging::Never));
        assert_eq!(txn.for_body(&writes, 10), txn);
        assert_eq!(
            txn.for_body(&bytes::Bytes::new(), 10),
            txn,
            "unreadable: a write"
        );
        let range = Method::of("/etcdserverpb.KV/Range");
        let one_key = framed(&|| {
            RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            }
            .encode_to_vec()
        });
        assert_eq!(range.for_body(&one_key, 10).hedging, Hedging::Range);
        assert_eq!(
            range.for_body(&bytes::Bytes::new(), 10).hedging,
            Hedging::Never
        );
        // A Put's body is never read: not even a Txn's bytes make it a read.
        let put = Method::of("/etcdserverpb.KV/Put");
        assert_eq!(put.for_body(&reads, 10), put);
    }

    #[test]
    fn leader_only() {
        assert!(Method::of("/etcdserverpb.Maintenance/MoveLeader").leader_only);
        assert!(!Method::of("/etcdserverpb.KV/Range").leader_only);
    }
}
