//! One etcd member as every part of the stack sees it: who it is ([`Member`]), how it came
//! ([`Origin`]), the shared handle requests use ([`MemberEntry`]) and a copy of its state for
//! users ([`MemberSnapshot`], [`ProbeReport`]).
//!
//! Why a room of its own: the balancer, the stream helpers, the probes and discovery all name
//! members, but only a few of them need the health state (`checker/`); they import this small
//! room instead of the hub.

mod entry;
mod origin;
mod snapshot;

pub(crate) use entry::{MemberEntry, Mirror, OwnEndpoint};
pub use origin::Origin;
pub use snapshot::{MemberSnapshot, ProbeReport};

use std::fmt;

use http::Uri;

/// One etcd member, known by the client URL it is reached at, without any userinfo (so its
/// `Display` and `Debug` never show a password given in an endpoint).
///
/// The `index` is stable for the life of the health state: members added later get higher
/// indexes, removed ones leave a gap. It keys snapshots, events and per-member services.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    index: usize,
    uri: Uri,
}

impl Member {
    pub(crate) fn new(index: usize, uri: Uri) -> Self {
        let uri = crate::config::without_userinfo(&uri).unwrap_or(uri);
        Self { index, uri }
    }

    /// Position of the member in the health state (stable, unique).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The member's client URL (userinfo left out).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// `host:port` of the member (what probes dial).
    pub fn authority(&self) -> &str {
        self.uri.authority().map(|a| a.as_str()).unwrap_or("")
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member {} ({})", self.index, self.uri)
    }
}
