//! The fault switchboard shared by the cluster and its proxies.
//!
//! Faults are state, not events: a proxy connection asks "may bytes flow on this link now, and
//! how late?" each time it moves a chunk. Keeping that state in one `watch` channel means a
//! `heal` wakes every parked connection at once and a dropped cluster ends them all.

use std::time::Duration;

use tokio::time::Instant;

/// TCP's first retransmission timeout on a fast link (Linux's minimum RTO): after it, each
/// retransmission waits twice as long as the one before.
const FIRST_RTO: Duration = Duration::from_millis(200);

/// Which proxy a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Raft traffic into member `to`'s peer port.
    Peer { to: usize },
    /// Client traffic into member `to`'s client port.
    Client { to: usize },
}

/// Who dialed a peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Not known (client connections, or a peer connection we could not attribute).
    Unknown,
    /// The etcd member id from the `X-Server-From` header.
    Id(u64),
    /// A member index, found by socket ownership.
    Member(usize),
}

/// Current faults of one cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// Member ids by index, 0 until the member answered `Status` once.
    pub ids: Vec<u64>,
    /// Current process id of each member, for attributing peer connections.
    pub pids: Vec<Option<u32>>,
    /// Members cut from their peers.
    pub isolated: Vec<bool>,
    /// Members whose client proxy forwards nothing.
    pub client_blackhole: Vec<bool>,
    /// Added one-way delay on each member's client proxy.
    pub client_latency: Vec<Duration>,
    /// Members whose client packets a firewall drops, and since when.
    pub client_dropped: Vec<Option<Instant>>,
}

impl Faults {
    pub(crate) fn new(size: usize) -> Self {
        Faults {
            ids: vec![0; size],
            pids: vec![None; size],
            isolated: vec![false; size],
            client_blackhole: vec![false; size],
            client_latency: vec![Duration::ZERO; size],
            client_dropped: vec![None; size],
        }
    }

    /// Room for one more member (joined after the start).
    pub(crate) fn push(&mut self) {
        self.ids.push(0);
        self.pids.push(None);
        self.isolated.push(false);
        self.client_blackhole.push(false);
        self.client_latency.push(Duration::ZERO);
        self.client_dropped.push(None);
    }

    fn origin_index(&self, origin: Origin) -> Option<usize> {
        match origin {
            Origin::Unknown => None,
            Origin::Member(i) => Some(i),
            Origin::Id(id) => self.ids.iter().position(|&x| x != 0 && x == id),
        }
    }

    /// Whether bytes must not flow on a connection through `link` dialed by `origin`.
    pub(crate) fn blocked(&self, link: Link, origin: Origin) -> bool {
        match link {
            Link::Client { to } => self.client_blackhole[to] || self.client_dropped[to].is_some(),
            Link::Peer { to } => {
                self.isolated[to]
                    || self
                        .origin_index(origin)
                        .is_some_and(|from| self.isolated[from])
            }
        }
    }

    /// Since when a firewall drops the packets of `link`, if it does.
    pub(crate) fn dropped_since(&self, link: Link) -> Option<Instant> {
        match link {
            Link::Client { to } => self.client_dropped[to],
            Link::Peer { .. } => None,
        }
    }

    /// Delay added to each chunk moved through `link`.
    pub(crate) fn latency(&self, link: Link) -> Duration {
        match link {
            Link::Client { to } => self.client_latency[to],
            Link::Peer { .. } => Duration::ZERO,
        }
    }
}

/// When a TCP connection whose packets were dropped from `since` on, with data in flight,
/// next retransmits at or after `now`: retransmissions go out [`FIRST_RTO`] after the loss and
/// then twice as far apart each time (200 ms, 600 ms, 1.4 s, 3 s, 6.2 s, 12.6 s, ...), so a
/// connection that lived through a drop stays silent after it ends until the next of them,
/// while a new connection goes through at once.
pub(crate) fn next_retransmission(since: Instant, now: Instant) -> Instant {
    let mut at = since + FIRST_RTO;
    let mut rto = FIRST_RTO;
    while at < now {
        rto = rto.saturating_mul(2).min(Duration::from_secs(120));
        at += rto;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_back_off_from_the_drop() {
        let since = Instant::now();
        let ms = |n: u64| since + Duration::from_millis(n);
        assert_eq!(next_retransmission(since, since), ms(200));
        assert_eq!(next_retransmission(since, ms(200)), ms(200));
        assert_eq!(next_retransmission(since, ms(201)), ms(600));
        // A 4 s drop: silent until 6.2 s; a 10 s one until 12.6 s.
        assert_eq!(next_retransmission(since, ms(4_000)), ms(6_200));
        assert_eq!(next_retransmission(since, ms(10_000)), ms(12_600));
    }

    #[test]
    fn a_dropped_client_link_is_blocked_and_says_since_when() {
        let mut f = Faults::new(2);
        let at = Instant::now();
        f.client_dropped[1] = Some(at);
        assert!(f.blocked(Link::Client { to: 1 }, Origin::Unknown));
        assert_eq!(f.dropped_since(Link::Client { to: 1 }), Some(at));
        assert!(!f.blocked(Link::Client { to: 0 }, Origin::Unknown));
        assert_eq!(f.dropped_since(Link::Client { to: 0 }), None);
        assert_eq!(f.dropped_since(Link::Peer { to: 1 }), None);
    }

    #[test]
    fn isolation_cuts_both_ways_and_nothing_else() {
        let mut f = Faults::new(3);
        f.ids = vec![10, 11, 12];
        f.isolated[1] = true;
        // Everything into the isolated member's peer port.
        assert!(f.blocked(Link::Peer { to: 1 }, Origin::Unknown));
        assert!(f.blocked(Link::Peer { to: 1 }, Origin::Id(10)));
        // What it dialed to others, however attributed.
        assert!(f.blocked(Link::Peer { to: 0 }, Origin::Id(11)));
        assert!(f.blocked(Link::Peer { to: 2 }, Origin::Member(1)));
        // Links between the others, and clients, untouched.
        assert!(!f.blocked(Link::Peer { to: 0 }, Origin::Id(12)));
        assert!(!f.blocked(Link::Peer { to: 2 }, Origin::Unknown));
        assert!(!f.blocked(Link::Client { to: 1 }, Origin::Unknown));
    }
}
