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
    /// Share of the chunks on each member's client proxy that are lost (and retransmitted).
    pub client_loss: Vec<f64>,
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
            client_loss: vec![0.0; size],
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
        self.client_loss.push(0.0);
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

    /// Share of the chunks moved through `link` that are lost (see [`loss_delay`]).
    pub(crate) fn loss(&self, link: Link) -> f64 {
        match link {
            Link::Client { to } => self.client_loss[to],
            Link::Peer { .. } => 0.0,
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

/// How late a chunk sent over a link that loses `ratio` of its packets arrives: each
/// transmission is lost with that probability (`draw` gives uniform samples in `[0, 1)`), and
/// TCP sends it again [`FIRST_RTO`] later, then twice as far apart each time (200 ms, +400 ms,
/// +800 ms, ...). Zero when the first transmission gets through. Chunks after it wait behind it,
/// as TCP delivers in order.
pub(crate) fn loss_delay(ratio: f64, mut draw: impl FnMut() -> f64) -> Duration {
    let ratio = ratio.clamp(0.0, 0.99);
    let mut delay = Duration::ZERO;
    let mut rto = FIRST_RTO;
    while ratio > 0.0 && draw() < ratio {
        delay += rto;
        rto = rto.saturating_mul(2).min(Duration::from_secs(120));
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_chunk_arrives_at_the_retransmissions() {
        let ms = Duration::from_millis;
        let draws = |d: &'static [f64]| {
            let mut it = d.iter().copied();
            move || it.next().expect("no more draws than losses + 1")
        };
        assert_eq!(loss_delay(0.3, draws(&[0.5])), Duration::ZERO);
        assert_eq!(loss_delay(0.3, draws(&[0.1, 0.9])), ms(200));
        assert_eq!(loss_delay(0.3, draws(&[0.1, 0.2, 0.9])), ms(600));
        assert_eq!(loss_delay(0.3, draws(&[0.1, 0.2, 0.29, 0.3])), ms(1400));
        assert_eq!(
            loss_delay(0.0, || panic!("no draw without loss")),
            Duration::ZERO
        );
        // Over many chunks: about 30 % are late, and a late one 200 ms at least.
        let mut rng = rand::rng();
        let delays: Vec<Duration> = (0..10_000)
            .map(|_| loss_delay(0.3, || rand::Rng::random::<f64>(&mut rng)))
            .collect();
        let late = delays.iter().filter(|d| !d.is_zero()).count();
        assert!((2_700..3_300).contains(&late), "{late}");
        assert!(delays.iter().all(|d| d.is_zero() || *d >= ms(200)));
    }

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
