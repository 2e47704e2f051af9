//! Finding out which member dialed a peer connection.
//!
//! Isolating member X must also cut the connections X dials to its peers, and on loopback all
//! connections look alike. etcd's rafthttp names the sender in the first request head
//! (`X-Server-From: <hex member id>` on stream and pipeline requests), so the peer proxy reads
//! that head before it forwards anything. Some requests carry no such header (`GET
//! /raft/probing`, `GET /version`) and their keep-alive connections can later carry `POST /raft`,
//! so for those we fall back to asking the kernel which member process owns the dialing socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::faults::Origin;

const MAX_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the first request head of `conn` (up to the blank line, or whatever arrived within a
/// short deadline) and returns the bytes read plus the `X-Server-From` id if there was one.
pub(crate) async fn sniff_head(conn: &mut TcpStream) -> (Vec<u8>, Option<u64>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let from = server_from(&head);
    (head, from)
}

/// Extracts the `X-Server-From` member id from a request head.
pub(crate) fn server_from(head: &[u8]) -> Option<u64> {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    let text = String::from_utf8_lossy(&head[..end]);
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("x-server-from") {
            u64::from_str_radix(value.trim(), 16).ok()
        } else {
            None
        }
    })
}

/// Finds the member whose process owns the client end of an accepted loopback connection.
///
/// `dialer` is the accepted connection's peer address and `listener` its local address; the
/// dialer's socket is the `/proc/net/tcp` entry with exactly those addresses swapped, and its
/// inode shows up as `socket:[inode]` among the owner's file descriptors.
pub(crate) fn owner(dialer: SocketAddr, listener: SocketAddr, pids: &[Option<u32>]) -> Origin {
    let Some(inode) = socket_inode(dialer, listener) else {
        return Origin::Unknown;
    };
    let want = format!("socket:[{inode}]");
    for (index, pid) in pids.iter().enumerate() {
        let Some(pid) = pid else { continue };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                return Origin::Member(index);
            }
        }
    }
    Origin::Unknown
}

fn proc_addr(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(a) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )),
        SocketAddr::V6(_) => None,
    }
}

fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (local, remote) = (proc_addr(local)?, proc_addr(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() > 9 && cols[1] == local && cols[2] == remote)
            .then(|| cols[9].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_from() {
        let head = b"GET /raft/stream/msgapp/bb7d371eb677b2bf HTTP/1.1\r\nHost: x\r\n\
X-Raft-To: e285923851f2723f\r\nX-Server-From: bb7d371eb677b2bf\r\n\r\nbody";
        assert_eq!(server_from(head), Some(0xbb7d371eb677b2bf));
        assert_eq!(
            server_from(b"GET /raft/probing HTTP/1.1\r\nHost: x\r\n\r\n"),
            None
        );
    }

    #[test]
    fn formats_proc_addresses() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(proc_addr(a).unwrap(), "0100007F:1F90");
    }
}
