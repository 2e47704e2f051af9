//! Hostile members: fake servers on loopback that answer garbage, answer for another cluster,
//! send huge or malformed gRPC messages or statuses (undecodable details, non-UTF-8 messages),
//! or accept and never answer. In every case: no panic,
//! no hang beyond the configured timeouts, the fake is taken out of rotation and never put
//! back, and the real members keep serving.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use etcd_health::config::{Config, ProbeType};
use etcd_health::observe::{EventKind, HealthEvent, Outcome, Status};
use etcd_health::proto::etcdserverpb::{
    kv_client::KvClient, RangeRequest, ResponseHeader, StatusResponse,
};
use etcd_health::{HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tower::Layer;

/// Probe timers for these tests: every member probed every 200 ms, a 500 ms probe deadline.
fn hostile_config(probe: ProbeType) -> Config {
    let mut c = fast_config();
    c.checks.active.probe_type = probe;
    c.checks.active.timeout = Duration::from_millis(500);
    c.checks.active.healthy.interval = Duration::from_millis(200);
    c.checks.active.unhealthy.interval = Duration::from_millis(200);
    c.ejection.base = Duration::from_millis(200);
    c.ejection.max = Duration::from_millis(800);
    c
}

/// Serves every connection to a fresh loopback port with `handle`; returns `127.0.0.1:port`.
async fn serve_raw<F, Fut>(handle: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr.to_string()
}

/// Reads (part of) the request, so the reply is not sent before the probe wrote it.
async fn read_some(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
}

/// A member that accepts and then never sends a byte (like a SIGSTOPped etcd).
async fn hung_member() -> String {
    serve_raw(|stream| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    })
    .await
}

/// Every event received so far.
fn drain(events: &mut broadcast::Receiver<HealthEvent>) -> Vec<HealthEvent> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}

/// Transitions of member `index` to `to` among `events`.
fn transitions(events: &[HealthEvent], index: usize, to: Status) -> usize {
    events
        .iter()
        .filter(|e| {
            e.member.index() == index
                && matches!(&e.kind, EventKind::StatusChanged(t) if t.to == to)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_health_never_counts_as_success() {
    init_tracing();
    let random = serve_raw(|mut s| async move {
        read_some(&mut s).await;
        let junk: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let _ = s.write_all(&junk).await;
    })
    .await;
    let endless_header = serve_raw(|mut s| async move {
        read_some(&mut s).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").await;
        let chunk = vec![b'a'; 16 * 1024];
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let huge_body = serve_raw(|mut s| async move {
        read_some(&mut s).await;
        let size = 10 * 1024 * 1024;
        let head = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {size}\r\n\r\n");
        let _ = s.write_all(head.as_bytes()).await;
        let chunk = vec![b'{'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
    .await;
    let status_999 = serve_raw(|mut s| async move {
        read_some(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let hung = hung_member().await;

    let config = hostile_config(ProbeType::Http);
    let timeout = config.checks.active.timeout;
    let endpoints = [&random, &endless_header, &huge_body, &status_999, &hung];
    let checker = HealthChecker::new(&endpoints, config).expect("checker");
    let mut events = checker.subscribe();
    let started = Instant::now();
    for i in [0, 1, 2, 4] {
        wait_status(
            &mut events,
            &checker,
            i,
            Status::Unhealthy,
            Duration::from_secs(5),
        )
        .await;
    }
    // Keep probing for a while: the checker keeps working and nothing comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = drain(&mut events);
    let snapshot = checker.snapshot();
    println!("after {:?}: {snapshot:#?}", started.elapsed());
    for s in &snapshot {
        let i = s.member.index();
        assert_eq!(s.totals[0], 0, "member {i} had a successful probe: {s:#?}");
        assert_eq!(transitions(&events, i, Status::Healthy), 0, "member {i}");
        if let Some(p) = &s.last_probe {
            assert!(
                p.elapsed <= timeout + Duration::from_millis(300),
                "probe of {i} ran past its deadline: {p:?}"
            );
        }
        if i == 3 {
            // 999 is in neither status list: ignored, as lua-resty-healthcheck does.
            assert_eq!(s.status, Status::Healthy);
            assert!(s.last_probe.is_none(), "{s:#?}");
        } else {
            assert_eq!(s.status, Status::Unhealthy, "member {i}: {s:#?}");
            // Probed again and again while unhealthy: the scheduler is not stuck.
            assert!(
                s.totals.iter().sum::<u64>() >= 3,
                "member {i} probed too few times: {s:#?}"
            );
        }
    }
    let hung_probe = snapshot[4].last_probe.as_ref().expect("probed");
    assert_eq!(hung_probe.outcome, Outcome::Timeout);
    assert_eq!(
        snapshot[2].last_probe.as_ref().expect("probed").outcome,
        Outcome::Failure
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_member_times_out_every_probe_and_request() {
    init_tracing();
    for probe in [ProbeType::Http, ProbeType::Grpc, ProbeType::Status] {
        let hung = hung_member().await;
        let config = hostile_config(probe);
        let timeout = config.checks.active.timeout;
        let checker = HealthChecker::new(&[&hung], config).expect("checker");
        let mut events = checker.subscribe();
        let took = wait_status(
            &mut events,
            &checker,
            0,
            Status::Unhealthy,
            Duration::from_secs(3),
        )
        .await;
        let s = &checker.snapshot()[0];
        let probe_report = s.last_probe.as_ref().expect("probed");
        println!("{probe:?}: unhealthy after {took:?}: {probe_report:?}");
        assert_eq!(probe_report.outcome, Outcome::Timeout, "{probe:?}");
        assert!(probe_report.elapsed <= timeout + Duration::from_millis(300));

        // A request to it ends with an error at its deadline, not later.
        let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
        let mut req = tonic::Request::new(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_millis(700));
        let start = Instant::now();
        let err = KvClient::new(stack).range(req).await.expect_err("hung");
        println!(
            "{probe:?}: request failed after {:?}: {err:?}",
            start.elapsed()
        );
        assert!(start.elapsed() < Duration::from_millis(1500), "{err:?}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            transitions(&drain(&mut events), 0, Status::Healthy),
            0,
            "{probe:?}"
        );
        assert_eq!(checker.snapshot()[0].status, Status::Unhealthy);
    }
}

/// One read through `kv` with a 1 s deadline, which must end by then.
async fn read(
    kv: &KvClient<etcd_health::Balance<TonicConnector>>,
) -> Result<tonic::Response<etcd_health::proto::etcdserverpb::RangeResponse>, tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let result = kv.clone().range(req).await;
    assert!(start.elapsed() < Duration::from_millis(1500), "{result:?}");
    result
}

/// What a fake gRPC member answers to every call.
#[derive(Clone, Copy, Debug)]
enum Fake {
    /// A healthy-looking `Status` answer with this cluster id.
    ClusterId(u64),
    /// A message that declares a length of 100 MB.
    Huge,
    /// Bytes that are no protobuf message.
    Garbage,
    /// A trailers-only `Unavailable` with a `grpc-status-details-bin` that is not base64
    /// (tonic 0.14's status parser panics on it).
    BadDetails,
    /// The same, in the trailers after an empty body.
    BadDetailsInTrailers,
    /// A trailers-only `Unavailable` whose message is not UTF-8 once percent-decoded.
    NonUtf8Message,
}

/// One gRPC message frame: flag, 4-byte length, payload.
fn grpc_frame(declared: u32, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(declared);
    b.put_slice(payload);
    b.freeze()
}

fn fake_answer(
    fake: Fake,
) -> http::Response<StreamBody<futures_util::stream::Iter<std::vec::IntoIter<FrameResult>>>> {
    let unavailable = |details: Option<&'static str>, message: &'static str| {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        h.insert("grpc-message", http::HeaderValue::from_static(message));
        if let Some(details) = details {
            h.insert(
                "grpc-status-details-bin",
                http::HeaderValue::from_static(details),
            );
        }
        h
    };
    let respond = |headers: http::HeaderMap, frames: Vec<FrameResult>| {
        let mut resp = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .expect("response");
        resp.headers_mut().extend(headers);
        resp
    };
    match fake {
        Fake::BadDetails => {
            return respond(unavailable(Some("!!not base64!!"), "unavailable"), vec![])
        }
        Fake::NonUtf8Message => {
            // Not an election symptom ("no leader", "request timed out"): those go to a leader
            // check rather than ejecting at once.
            return respond(unavailable(None, "member%20down%FF%FE"), vec![]);
        }
        Fake::BadDetailsInTrailers => {
            let trailers = unavailable(Some("!!not base64!!"), "unavailable");
            return respond(http::HeaderMap::new(), vec![Ok(Frame::trailers(trailers))]);
        }
        _ => {}
    }
    let message = match fake {
        Fake::ClusterId(id) => {
            let msg = StatusResponse {
                header: Some(ResponseHeader {
                    cluster_id: id,
                    member_id: 0xfeed,
                    revision: 1,
                    raft_term: 2,
                }),
                version: "3.5.0".to_owned(),
                leader: 0xfeed,
                raft_index: 1,
                raft_term: 2,
                ..Default::default()
            }
            .encode_to_vec();
            grpc_frame(msg.len() as u32, &msg)
        }
        Fake::Huge => grpc_frame(100 * 1024 * 1024, &[0u8; 1024]),
        Fake::Garbage => grpc_frame(16, &[0xff; 16]),
        Fake::BadDetails | Fake::BadDetailsInTrailers | Fake::NonUtf8Message => {
            unreachable!("answered above")
        }
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = vec![Ok(Frame::data(message)), Ok(Frame::trailers(trailers))];
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .expect("response")
}

type FrameResult = Result<Frame<Bytes>, Infallible>;

/// A fake member speaking HTTP/2 (h2c) that answers every call as `fake` says.
async fn grpc_fake(fake: Fake) -> String {
    let addr = serve_raw(move |stream| async move {
        let svc = hyper::service::service_fn(move |_req| async move {
            Ok::<_, Infallible>(fake_answer(fake))
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
    .await;
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_of_another_cluster_is_ejected_and_the_real_ones_are_not() {
    let cluster = Cluster::start(3).await.expect("cluster");
    init_tracing();
    let stranger = grpc_fake(Fake::ClusterId(0xbad)).await;
    let mut endpoints = cluster.endpoints();
    endpoints.push(stranger);
    let checker =
        HealthChecker::new(&endpoints, hostile_config(ProbeType::Status)).expect("checker");
    let mut events = checker.subscribe();
    let took = wait_status(
        &mut events,
        &checker,
        3,
        Status::Unhealthy,
        Duration::from_secs(5),
    )
    .await;
    println!("stranger ejected after {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = drain(&mut events);
    let snapshot = checker.snapshot();
    for i in 0..3 {
        assert_eq!(
            transitions(&events, i, Status::Unhealthy),
            0,
            "real member {i} was ejected: {snapshot:#?}"
        );
        assert_eq!(snapshot[i].status, Status::Healthy);
    }
    assert_eq!(transitions(&events, 3, Status::Healthy), 0);
    let stranger = &snapshot[3];
    assert_eq!(stranger.status, Status::Unhealthy);
    let report = stranger.last_probe.as_ref().expect("probed");
    assert!(report.detail.contains("cluster id bad"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_malformed_grpc_answers_fail_and_others_keep_serving() {
    let cluster = Cluster::start(3).await.expect("cluster");
    init_tracing();
    let huge = grpc_fake(Fake::Huge).await;
    let garbage = grpc_fake(Fake::Garbage).await;

    // Alone, each fake fails requests with an error, promptly.
    for fake in [&huge, &garbage] {
        let checker =
            HealthChecker::new(&[fake], hostile_config(ProbeType::Status)).expect("checker");
        let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
        let mut req = tonic::Request::new(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(1));
        let start = Instant::now();
        let err = KvClient::new(stack).range(req).await.expect_err("fake");
        println!("{fake}: {:?} after {:?}", err, start.elapsed());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err.code(), tonic::Code::OutOfRange | tonic::Code::Internal),
            "{err:?}"
        );
    }

    let mut endpoints = cluster.endpoints();
    endpoints.push(huge);
    endpoints.push(garbage);
    let checker =
        HealthChecker::new(&endpoints, hostile_config(ProbeType::Status)).expect("checker");
    let mut events = checker.subscribe();
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    let kv = KvClient::new(stack);
    // Reads while the fakes are still in rotation: some may fail, none hangs.
    let mut failed = 0;
    for _ in 0..40 {
        if read(&kv).await.is_err() {
            failed += 1;
        }
    }
    for i in [3, 4] {
        wait_status(
            &mut events,
            &checker,
            i,
            Status::Unhealthy,
            Duration::from_secs(5),
        )
        .await;
    }
    // Once they are out, every read is served by the real members.
    for n in 0..100 {
        read(&kv)
            .await
            .unwrap_or_else(|e| panic!("read {n} after ejection: {e:?}"));
    }
    let events = drain(&mut events);
    let snapshot = checker.snapshot();
    println!("{failed} of 40 early reads failed; {snapshot:#?}");
    for i in [3, 4] {
        assert_eq!(transitions(&events, i, Status::Healthy), 0, "fake {i}");
        assert_eq!(snapshot[i].status, Status::Unhealthy);
        assert_eq!(
            snapshot[i].last_probe.as_ref().expect("probed").outcome,
            Outcome::Failure
        );
    }
    for s in &snapshot[..3] {
        assert_eq!(s.status, Status::Healthy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_status_details_and_non_utf8_messages_crash_nothing() {
    init_tracing();
    for fake in [
        Fake::BadDetails,
        Fake::BadDetailsInTrailers,
        Fake::NonUtf8Message,
    ] {
        let member = grpc_fake(fake).await;

        // Passive only: one request, and its verdict alone ejects the member.
        let mut config = hostile_config(ProbeType::Status);
        config.checks.active.healthy.interval = Duration::ZERO;
        config.checks.active.unhealthy.interval = Duration::ZERO;
        config.retry.max_attempts = 1;
        let checker = HealthChecker::new(&[&member], config).expect("checker");
        let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
        let err = read(&KvClient::new(stack)).await.expect_err("fake");
        let s = &checker.snapshot()[0];
        println!(
            "{fake:?}: caller got {err:?}; member {} {:?}",
            s.status, s.last_outcome
        );
        match fake {
            // tonic's own reading of a non-UTF-8 message; the member still counts as failed.
            Fake::NonUtf8Message => assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}"),
            _ => assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}"),
        }
        assert_eq!(s.status, Status::Unhealthy, "{fake:?}: {s:#?}");

        // Probes: the probe task survives every answer and keeps probing.
        let checker =
            HealthChecker::new(&[&member], hostile_config(ProbeType::Status)).expect("checker");
        let mut events = checker.subscribe();
        wait_status(
            &mut events,
            &checker,
            0,
            Status::Unhealthy,
            Duration::from_secs(5),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        let s = &checker.snapshot()[0];
        let probes: u64 = s.totals.iter().sum();
        println!("{fake:?}: {probes} probes, last {:?}", s.last_probe);
        assert!(probes >= 3, "{fake:?}: probing stopped: {s:#?}");
        assert_eq!(
            s.last_probe.as_ref().expect("probed").outcome,
            Outcome::Failure,
            "{fake:?}"
        );
    }
}

/// A member that answers reads with a head and then resets the stream (as a member killed
/// mid-answer does): every read still succeeds, retried on a real member within its deadline,
/// with the defaults; the member counts the failures and is taken out of rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_broken_off_after_their_head_are_retried_on_real_members() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let cluster = Cluster::start(3).await.expect("cluster");
    init_tracing();
    let ranges = Arc::new(AtomicUsize::new(0));
    let counted = ranges.clone();
    let addr = serve_raw(move |stream| {
        let ranges = counted.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                if req.uri().path().ends_with("/Range") {
                    ranges.fetch_add(1, Ordering::Relaxed);
                }
                async move {
                    // The head goes out first; the stream is reset a moment later.
                    let broken = futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err::<Frame<Bytes>, _>(std::io::Error::other("killed mid-answer"))
                    });
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(StreamBody::new(broken))
                        .expect("response");
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await;
    let mut endpoints = cluster.endpoints();
    endpoints.push(format!("http://{addr}"));
    let checker = HealthChecker::new(&endpoints, Config::default()).expect("checker");
    let mut events = checker.subscribe();
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    let kv = KvClient::new(stack);
    // Many reads at once while the fake is still in rotation: some land on it.
    let reads = (0..200).map(|_| read(&kv));
    let results = futures_util::future::join_all(reads).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let sent = ranges.load(Ordering::Relaxed);
    println!("{sent} reads reached the fake");
    assert!(sent >= 1, "no read reached the fake");
    assert!(
        failed.is_empty(),
        "{} reads failed: {failed:?}",
        failed.len()
    );
    // Reads outrun by a peer (hedged) are judged when they end, after the answer.
    wait_status(
        &mut events,
        &checker,
        3,
        Status::Unhealthy,
        Duration::from_secs(5),
    )
    .await;
    let s = &checker.snapshot()[3];
    assert!(s.totals[2] >= 1, "TCP failures counted: {s:?}");
}
