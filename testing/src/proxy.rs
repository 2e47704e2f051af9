//! A userspace TCP proxy with fault injection.
//!
//! `tc netem` is not available and iptables needs root and per-cluster naming, so faults are
//! injected here instead: every member's peer port (and, on request, its client port) sits
//! behind one of these proxies. A blocked link stops reading and writing but keeps the sockets
//! open, which looks to etcd like packets being dropped, not like a closed connection; latency
//! delays each chunk. The proxy is a tokio task: aborting it drops every connection it owns.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::faults::{Faults, Link, Origin};
use super::origin;

/// Chunks read but not yet written, per direction of a connection.
const IN_FLIGHT_CHUNKS: usize = 64;

/// Starts a proxy task that forwards connections on `listener` to `upstream`.
pub(crate) fn spawn(
    listener: TcpListener,
    upstream: SocketAddr,
    link: Link,
    faults: watch::Receiver<Faults>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((conn, _)) = accepted {
                        conns.spawn(handle(conn, upstream, link, faults.clone()));
                    }
                }
                Some(_) = conns.join_next() => {}
            }
        }
    })
}

async fn handle(
    mut conn: TcpStream,
    upstream: SocketAddr,
    link: Link,
    mut faults: watch::Receiver<Faults>,
) {
    let (head, origin) = match link {
        Link::Client { .. } => (Vec::new(), Origin::Unknown),
        Link::Peer { .. } => {
            let (head, from) = origin::sniff_head(&mut conn).await;
            let origin = match from {
                Some(id) => Origin::Id(id),
                None => match (conn.peer_addr(), conn.local_addr()) {
                    (Ok(dialer), Ok(local)) => {
                        let pids = faults.borrow().pids.clone();
                        origin::owner(dialer, local, &pids)
                    }
                    _ => Origin::Unknown,
                },
            };
            (head, origin)
        }
    };
    // A connection accepted while its link is blocked is held, never forwarded, until healed.
    if faults.wait_for(|f| !f.blocked(link, origin)).await.is_err() {
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    if !head.is_empty() && up.write_all(&head).await.is_err() {
        return;
    }
    let (client_rd, client_wr) = conn.into_split();
    let (up_rd, up_wr) = up.into_split();
    tokio::join!(
        pump(client_rd, up_wr, link, origin, faults.clone()),
        pump(up_rd, client_wr, link, origin, faults),
    );
}

/// Waits until bytes may flow on `link`; `false` once the cluster is gone.
///
/// After a firewall drop (not a black hole, which the proxy holds itself), a connection that
/// was open during it stays silent until TCP's next retransmission, as through a real
/// firewall: it is the connection's own back-off, so new connections pass at once.
async fn pass(faults: &mut watch::Receiver<Faults>, link: Link, origin: Origin) -> bool {
    let dropped = faults.borrow().dropped_since(link);
    if faults.wait_for(|f| !f.blocked(link, origin)).await.is_err() {
        return false;
    }
    if let Some(since) = dropped {
        tokio::time::sleep_until(super::faults::next_retransmission(since, Instant::now())).await;
    }
    true
}

/// Copies one direction, pausing while the link is blocked and delaying each chunk by the
/// link's latency, and a lost one until TCP would retransmit it (see
/// [`loss_delay`](super::faults::loss_delay)). Reading and writing are decoupled by a small queue of timestamped chunks, so
/// latency is a one-way delay (like a long wire), not a per-chunk stall that adds up.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Link,
    origin: Origin,
    faults: watch::Receiver<Faults>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let mut read_faults = faults.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !pass(&mut read_faults, link, origin).await {
                return;
            }
            let n = tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                changed = read_faults.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let (latency, loss) = {
                let f = read_faults.borrow();
                (f.latency(link), f.loss(link))
            };
            let lost = match loss > 0.0 {
                true => {
                    let mut rng = rand::rng();
                    super::faults::loss_delay(loss, || rand::Rng::random::<f64>(&mut rng))
                }
                false => Duration::ZERO,
            };
            let due = Instant::now() + latency + lost;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let mut write_faults = faults;
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            // Without latency `due` has passed already; sleeping anyway would wait for the
            // timer's next millisecond tick and add up to 1 ms to every chunk on every hop.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if !pass(&mut write_faults, link, origin).await {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
