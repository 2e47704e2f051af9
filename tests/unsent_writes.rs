//! Writes that were certainly not processed are sent again; writes that may have been are
//! not; a `Txn` that only reads is a read.
//!
//! HTTP/2 `REFUSED_STREAM` and a `GOAWAY` whose last stream id is below the request's mean the
//! member never processed the request (gRPC retries them transparently, gRFC A6). The first
//! tests serve fake members on loopback, speaking h2 themselves, that fault one `Put` exactly
//! as etcd's gRPC server would; the later ones run against real etcd.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use etcd_health::config::Config;
use etcd_health::extend::AvoidMembers;
use etcd_health::proto::etcdserverpb::{
    kv_client::KvClient, request_op::Request as Op, PutRequest, PutResponse, RangeRequest,
    RequestOp, ResponseHeader, TxnRequest,
};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;

/// The value of the one `Put` the fake members see.
const VALUE: &[u8] = b"the one value";

/// How a fake member faults the first `Put` any of them sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `RST_STREAM` `REFUSED_STREAM`, the request unread.
    Refuse,
    /// `GOAWAY` naming no stream as processed (last stream id 0), sent on the connection
    /// once the whole `Put` is in the member's socket but before h2 read any of it; then the
    /// connection closes.
    GoAway,
    /// The `Put` is read whole and applied, then its stream is reset (`INTERNAL_ERROR`): it
    /// may have been processed, as far as the client can tell.
    ResetAfterApply,
}

/// What the fake members saw, shared by all of them.
#[derive(Default)]
struct Seen {
    /// Whether the fault is still to be played.
    armed: AtomicBool,
    /// Faults played.
    faults: AtomicUsize,
    /// `Put` values applied (read whole by a member), with how many times each.
    applied: Mutex<HashMap<Vec<u8>, usize>>,
}

/// Starts `n` fake members that answer `Put` (and fault the first one as `fault` says);
/// returns their endpoints and what they saw.
async fn fake_members(n: usize, fault: Fault) -> (Vec<String>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    seen.armed.store(true, Ordering::SeqCst);
    let mut endpoints = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        endpoints.push(format!("http://{}", listener.local_addr().expect("addr")));
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, fault, seen.clone()));
            }
        });
    }
    (endpoints, seen)
}

/// One connection of a fake member.
async fn serve(stream: TcpStream, fault: Fault, seen: Arc<Seen>) {
    if fault == Fault::GoAway {
        let first = first_request(&stream).await;
        let is_the_put = first.windows(VALUE.len()).any(|w| w == VALUE);
        if is_the_put && seen.armed.swap(false, Ordering::SeqCst) {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            // Before any frame after the preface is read: the GOAWAY names stream 0 as the
            // last processed, and h2 never hands on a stream above it.
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
            seen.faults.fetch_add(1, Ordering::SeqCst);
            if let Some(Ok((_req, mut respond))) = conn.accept().await {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                panic!("a stream above the GOAWAY was handed on");
            }
            return;
        }
    }
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            if req.uri().path() != "/etcdserverpb.KV/Put" {
                let head = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "12")
                    .body(())
                    .expect("head");
                let _ = respond.send_response(head, true);
                return;
            }
            if fault == Fault::Refuse && seen.armed.swap(false, Ordering::SeqCst) {
                seen.faults.fetch_add(1, Ordering::SeqCst);
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                return;
            }
            let Some(put) = read_put(req.into_body()).await else {
                respond.send_reset(h2::Reason::PROTOCOL_ERROR);
                return;
            };
            let revision = {
                let mut applied = seen.applied.lock().unwrap();
                *applied.entry(put.value.clone()).or_default() += 1;
                applied.values().sum::<usize>() as i64
            };
            if fault == Fault::ResetAfterApply && seen.armed.swap(false, Ordering::SeqCst) {
                seen.faults.fetch_add(1, Ordering::SeqCst);
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            let head = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .expect("head");
            let Ok(mut send) = respond.send_response(head, false) else {
                return;
            };
            let answer = PutResponse {
                header: Some(ResponseHeader {
                    revision,
                    ..Default::default()
                }),
                prev_kv: None,
            };
            let _ = send.send_data(grpc_frame(&answer.encode_to_vec()), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        });
    }
}

/// What the connection's first request has put into the socket (without reading it): waits
/// until a `DATA` frame ending a stream is there (a unary request is whole), or 2 s.
async fn first_request(stream: &TcpStream) -> Vec<u8> {
    const PREFACE: usize = 24;
    let mut buf = vec![0u8; 64 * 1024];
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let n = stream.peek(&mut buf).await.unwrap_or(0);
        let mut at = PREFACE;
        while at + 9 <= n {
            let len = (usize::from(buf[at]) << 16)
                | (usize::from(buf[at + 1]) << 8)
                | usize::from(buf[at + 2]);
            let (kind, flags) = (buf[at + 3], buf[at + 4]);
            if kind == 0x0 && flags & 0x1 != 0 && at + 9 + len <= n {
                buf.truncate(n);
                return buf;
            }
            at += 9 + len;
        }
        if Instant::now() >= until {
            buf.truncate(n);
            return buf;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads a unary request's body whole and decodes its `PutRequest`.
async fn read_put(mut body: h2::RecvStream) -> Option<PutRequest> {
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    PutRequest::decode(data.get(5..)?).ok()
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Only requests: no probes, no leader checks, no `MemberList` (the fault must meet the
/// `Put`).
fn quiet_config() -> Config {
    let mut c = Config::default();
    c.checks.active.healthy.interval = Duration::ZERO;
    c.checks.active.unhealthy.interval = Duration::ZERO;
    c.leader.interval = Duration::ZERO;
    c.discovery.member_list = false;
    c
}

/// One `Put` through the stack over two fake members faulting the first `Put` as `fault` says.
async fn put_through(fault: Fault) -> (Result<i64, tonic::Status>, Arc<Seen>, u64) {
    init_tracing();
    let (endpoints, seen) = fake_members(2, fault).await;
    let checker = HealthChecker::new(&endpoints, quiet_config()).expect("checker");
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    let mut req = tonic::Request::new(PutRequest {
        key: b"k".to_vec(),
        value: VALUE.to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    let result = KvClient::new(stack)
        .put(req)
        .await
        .map(|r| r.into_inner().header.expect("header").revision);
    (result, seen, checker.retries())
}

/// A `Put` refused with `REFUSED_STREAM` goes to the other member once, and is acknowledged;
/// it was applied once. (Before: the caller got it as *outcome unknown*.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_put_is_sent_again_once_and_acknowledged() {
    let (result, seen, retries) = put_through(Fault::Refuse).await;
    assert_eq!(
        seen.faults.load(Ordering::SeqCst),
        1,
        "the fault was played"
    );
    let revision = result.expect("acknowledged");
    assert_eq!(revision, 1);
    assert_eq!(retries, 1, "sent again exactly once");
    let applied = seen.applied.lock().unwrap().clone();
    assert_eq!(applied, HashMap::from([(VALUE.to_vec(), 1)]));
}

/// A `Put` above its member's `GOAWAY` goes to the other member once, and is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_above_the_goaway_is_sent_again_once_and_acknowledged() {
    let (result, seen, retries) = put_through(Fault::GoAway).await;
    assert_eq!(
        seen.faults.load(Ordering::SeqCst),
        1,
        "the fault was played"
    );
    result.expect("acknowledged");
    assert_eq!(retries, 1, "sent again exactly once");
    let applied = seen.applied.lock().unwrap().clone();
    assert_eq!(applied, HashMap::from([(VALUE.to_vec(), 1)]));
}

/// A `Put` whose stream is reset for another reason after the member read it may have been
/// applied: it is not sent again, and the caller learns its outcome is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reset_after_it_was_read_is_not_sent_again() {
    let (result, seen, retries) = put_through(Fault::ResetAfterApply).await;
    assert_eq!(
        seen.faults.load(Ordering::SeqCst),
        1,
        "the fault was played"
    );
    let status = result.expect_err("reset");
    assert!(etcd_health::outcome_unknown(&status), "{status:?}");
    assert_eq!(retries, 0);
    let applied = seen.applied.lock().unwrap().clone();
    assert_eq!(applied, HashMap::from([(VALUE.to_vec(), 1)]));
}

fn range_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// A `Txn` of reads sent to a SIGSTOPped member is answered by another one within a fraction
/// of its deadline; a `Txn` with a `Put` sent there is not sent anywhere else, fails as
/// *outcome unknown*, and is applied once (when the member resumes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_txn_to_a_paused_member_is_answered_elsewhere_a_writing_one_is_not_resent() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let stack = stack(&cluster, fast_config());
    let checker = stack.checker().clone();
    put(&stack, "txn/a", "1").await.expect("seed");
    let mut kv = KvClient::new(stack);
    let paused = follower(&cluster).await;
    let others: Vec<_> = checker
        .members()
        .into_iter()
        .filter(|m| m.index() != paused)
        .collect();
    let txn = |success: Vec<RequestOp>, deadline: Duration| {
        let mut req = tonic::Request::new(TxnRequest {
            compare: vec![],
            success,
            failure: vec![range_op(b"txn/b")],
        });
        req.set_timeout(deadline);
        // The first attempt goes to the paused member.
        req.extensions_mut().insert(AvoidMembers(others.clone()));
        req
    };
    let txns_before = cluster.grpc_started_total("Txn").await.expect("metrics");
    cluster.pause(paused);

    let start = Instant::now();
    let answer = kv
        .txn(txn(
            vec![range_op(b"txn/a"), range_op(b"txn/b")],
            Duration::from_secs(8),
        ))
        .await
        .expect("a read-only txn is answered");
    let took = start.elapsed();
    println!("read-only Txn answered after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?} of an 8 s deadline");
    assert_eq!(answer.into_inner().responses.len(), 2);

    let others_before = txns_started(&cluster, paused).await;
    let writing = vec![
        range_op(b"txn/a"),
        RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: b"txn/written".to_vec(),
                value: b"once".to_vec(),
                ..Default::default()
            })),
        },
    ];
    let status = kv
        .txn(txn(writing, Duration::from_secs(2)))
        .await
        .expect_err("its member is paused");
    println!("writing Txn: {status:?}");
    assert!(etcd_health::outcome_unknown(&status), "{status:?}");
    assert_eq!(
        txns_started(&cluster, paused).await,
        others_before,
        "the writing Txn went to no other member"
    );
    cluster.resume(paused);

    // Applied once at most: by the member that was paused, if the request it holds was not
    // cancelled first (the caller gave up on it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = kv
        .range(RangeRequest {
            key: b"txn/written".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let version = got.kvs.first().map(|kv| kv.version);
    println!("the writing Txn's key after the member resumed: version {version:?}");
    assert!(version.is_none_or(|v| v == 1), "applied twice: {version:?}");
    let txns = cluster.grpc_started_total("Txn").await.expect("metrics") - txns_before;
    println!("Txn calls started at the members: {txns}");
}

/// `Txn` calls started on the members other than `paused` (its metrics cannot be read while
/// it is stopped).
async fn txns_started(cluster: &Cluster, paused: usize) -> u64 {
    let mut total = 0;
    for i in (0..cluster.size()).filter(|&i| i != paused) {
        total += cluster.grpc_started(i, "Txn").await.expect("metrics");
    }
    total
}
