//! Where a member came from, so snapshots and events can say why it is in the health state.

use std::fmt;

/// How a member entered the health state.
///
/// Seeds are the endpoints the caller gave (to [`HealthChecker::new`](crate::HealthChecker::new),
/// [`add_member`](crate::HealthChecker::add_member) or etcd-client's `add_endpoint`): discovery
/// never drops them. The others are found by discovery and dropped by it again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Given by the caller.
    Seed,
    /// One address of an endpoint given as a host name.
    Dns {
        /// The `host:port` it was resolved from.
        name: String,
    },
    /// Listed by the cluster's `Cluster/MemberList`.
    MemberList {
        /// The member's etcd name.
        name: String,
        /// The member's etcd id.
        id: u64,
    },
    /// A target of a DNS SRV record (`discovery.srv`), or one address of it.
    Srv {
        /// The record's name, e.g. `_etcd-client._tcp.etcd.example.com`.
        record: String,
        /// Its target and port, e.g. `etcd-0.etcd.example.com:2379`.
        target: String,
    },
    /// Listed by the application's own
    /// [`MemberSource`](crate::discovery::MemberSource).
    Custom {
        /// The source's [`name`](crate::discovery::MemberSource::name).
        source: String,
    },
}

impl Origin {
    /// Whether the member was found by discovery rather than given.
    pub fn is_discovered(&self) -> bool {
        !matches!(self, Origin::Seed)
    }

    /// The source's name, one of a closed set (the metrics' `source` label).
    pub(crate) fn source_name(&self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::Dns { .. } => "dns",
            Origin::Srv { .. } => "srv",
            Origin::MemberList { .. } => "member_list",
            Origin::Custom { .. } => "custom",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Seed => f.write_str("seed"),
            Origin::Dns { name } => write!(f, "dns ({name})"),
            Origin::MemberList { name, id } => write!(f, "member list ({name}, {id:x})"),
            Origin::Srv { record, target } => write!(f, "dns srv ({record}: {target})"),
            Origin::Custom { source } => write!(f, "custom ({source})"),
        }
    }
}
