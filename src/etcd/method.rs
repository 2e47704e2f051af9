//! The one table of etcd's gRPC methods: what the stack must know of each.
//!
//! Why one table: whether a method may be sent again, whether it answers promptly, and whether
//! only the leader may serve it are three facts about the same method paths; kept apart, a
//! method added to one list and not to the others is judged by the passive checks as one kind
//! of call and retried by the balancer as another.

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
    /// Unary, but may legitimately block for long (Lock, Campaign): never a timeout.
    LongBlocking,
    /// A stream (Watch, LeaseKeepAlive, Snapshot, Observe): judged on its opening only.
    Stream,
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
}

impl Method {
    const fn new(class: Class, kind: MethodKind) -> Self {
        Self {
            class,
            kind,
            leader_only: false,
        }
    }

    /// The method at `path` (`/package.Service/Method`).
    pub(crate) fn of(path: &str) -> Self {
        use Class::{Read, Write};
        use MethodKind::{LongBlocking, Stream, Unary};
        match path {
            "/etcdserverpb.KV/Range"
            | "/etcdserverpb.Maintenance/Status"
            | "/etcdserverpb.Maintenance/Hash"
            | "/etcdserverpb.Maintenance/HashKV"
            | "/etcdserverpb.Cluster/MemberList"
            | "/etcdserverpb.Lease/LeaseTimeToLive"
            | "/etcdserverpb.Lease/LeaseLeases"
            | "/etcdserverpb.Auth/Authenticate"
            | "/etcdserverpb.Auth/UserGet"
            | "/etcdserverpb.Auth/UserList"
            | "/etcdserverpb.Auth/RoleGet"
            | "/etcdserverpb.Auth/RoleList"
            | "/v3electionpb.Election/Leader"
            | "/grpc.health.v1.Health/Check" => Self::new(Read, Unary),
            "/etcdserverpb.Watch/Watch"
            | "/etcdserverpb.Maintenance/Snapshot"
            | "/v3electionpb.Election/Observe"
            | "/grpc.health.v1.Health/Watch" => Self::new(Read, Stream),
            "/etcdserverpb.Lease/LeaseKeepAlive" => Self::new(Write, Stream),
            "/v3lockpb.Lock/Lock" | "/v3electionpb.Election/Campaign" => {
                Self::new(Write, LongBlocking)
            }
            "/etcdserverpb.Maintenance/MoveLeader" => Self {
                leader_only: true,
                ..Self::new(Write, Unary)
            },
            _ => Self::new(Write, Unary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn leader_only() {
        assert!(Method::of("/etcdserverpb.Maintenance/MoveLeader").leader_only);
        assert!(!Method::of("/etcdserverpb.KV/Range").leader_only);
    }
}
