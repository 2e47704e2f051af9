//! Which requests may be sent again, and when.
//!
//! The rules are etcd's own Go client's (DESIGN.md, section 3): a read may go to another
//! member after any member-level failure; a write only when it is certain the first member
//! never processed it. A write that timed out or lost its connection mid-flight is never
//! re-sent: it may have been applied, and applying it twice could break the caller's data.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

/// What a method does to the cluster, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes nothing: safe to send again anywhere.
    Read,
    /// May change the cluster: sent again only when certainly not processed.
    Write,
}

impl Class {
    /// The class of a unary gRPC method, by path.
    pub(crate) fn of(path: &str) -> Self {
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
            | "/grpc.health.v1.Health/Check" => Class::Read,
            _ => Class::Write,
        }
    }
}

/// The back-off before attempt `next` (2-based): `backoff * 2^(next-2)`, capped, with up to
/// half of it taken off at random so retries of many callers spread out.
pub(crate) fn backoff(config: &RetryConfig, next: u8) -> Duration {
    let exp = u32::from(next.saturating_sub(2)).min(16);
    let full = config
        .backoff
        .saturating_mul(1 << exp)
        .min(config.max_backoff);
    full.mul_f64(1.0 - rand::rng().random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes() {
        assert_eq!(Class::of("/etcdserverpb.KV/Range"), Class::Read);
        assert_eq!(Class::of("/etcdserverpb.Cluster/MemberList"), Class::Read);
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
            assert_eq!(Class::of(write), Class::Write, "{write}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = RetryConfig {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryConfig::default()
        };
        for _ in 0..100 {
            let b2 = backoff(&c, 2);
            assert!(b2 >= Duration::from_millis(50) && b2 <= Duration::from_millis(100));
            let b3 = backoff(&c, 3);
            assert!(b3 >= Duration::from_millis(100) && b3 <= Duration::from_millis(200));
            assert!(backoff(&c, 10) <= Duration::from_millis(300));
        }
    }
}
