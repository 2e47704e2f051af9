//! The fake member's server: gRPC (tonic's server codec over hyper's HTTP/2) and etcd's
//! HTTP/1.1 `/health` on one loopback port, as etcd serves both on its client port.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use etcd_health::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, Member, MemberListRequest, MemberListResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader, StatusRequest,
    StatusResponse, WatchRequest, WatchResponse,
};
use etcd_health::proto::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
};
use futures_util::stream::BoxStream;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tonic::{Request, Response, Status, Streaming};

use super::store::Store;
use super::watch::WatchStream;
use super::MemberSpec;

/// What one member's connections share.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) spec: MemberSpec,
    /// Every member of the cluster: (id, client URL).
    pub(crate) members: Arc<Vec<(u64, String)>>,
    /// Whether it holds keep-alive streams (see `FakeCluster::hold_keep_alives`).
    pub(crate) holds: Arc<AtomicBool>,
}

impl Shared {
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: super::CLUSTER_ID,
            member_id: self.spec.id,
            revision,
            raft_term: 2,
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections until the task is aborted; each connection lives in `conns`, so that
/// aborting them all is the member's death.
pub(crate) async fn accept(listener: TcpListener, shared: Shared, mut conns: JoinSet<()>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        conns.spawn(connection(stream, shared));
        // Reap finished connections.
        while conns.try_join_next().is_some() {}
    }
}

/// Serves one connection: HTTP/2 (gRPC) when it starts with the HTTP/2 preface, else HTTP/1.1.
async fn connection(stream: TcpStream, shared: Shared) {
    let mut preface = [0u8; 3];
    let h2 = matches!(stream.peek(&mut preface).await, Ok(3) if &preface == b"PRI");
    let io = TokioIo::new(stream);
    if h2 {
        let svc = hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(grpc(shared, req).await) }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let body = if req.uri().path() == "/health" {
                (200, r#"{"health":"true","reason":""}"#)
            } else {
                (404, "404 page not found")
            };
            async move {
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .status(body.0)
                        .body(Full::new(Bytes::from_static(body.1.as_bytes())))
                        .expect("a valid response"),
                )
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

type Codec<Req, Resp> = tonic_prost::ProstCodec<Resp, Req>;

macro_rules! unary {
    ($shared:expr, $req:expr, $Req:ty, $Resp:ty, $f:expr) => {{
        let shared = $shared.clone();
        let svc = tower::service_fn(move |r: Request<$Req>| {
            let shared = shared.clone();
            async move {
                let f: fn(&Shared, $Req) -> Result<$Resp, Status> = $f;
                f(&shared, r.into_inner()).map(Response::new)
            }
        });
        tonic::server::Grpc::new(Codec::<$Req, $Resp>::default())
            .unary(svc, $req)
            .await
    }};
}

async fn grpc(
    shared: Shared,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<tonic::body::Body> {
    let req = req.map(tonic::body::Body::new);
    match req.uri().path() {
        "/etcdserverpb.Watch/Watch" => {
            let shared = shared.clone();
            let svc = tower::service_fn(move |r: Request<Streaming<WatchRequest>>| {
                let shared = shared.clone();
                async move {
                    let (tx, rx) = mpsc::channel(128);
                    tokio::spawn(watch_stream(shared, r.into_inner(), tx));
                    let out: BoxStream<'static, Result<WatchResponse, Status>> =
                        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                            rx.recv().await.map(|m| (Ok(m), rx))
                        }));
                    Ok::<_, Status>(Response::new(out))
                }
            });
            tonic::server::Grpc::new(Codec::<WatchRequest, WatchResponse>::default())
                .streaming(svc, req)
                .await
        }
        "/etcdserverpb.Lease/LeaseKeepAlive" => {
            let shared = shared.clone();
            let svc = tower::service_fn(move |r: Request<Streaming<LeaseKeepAliveRequest>>| {
                let shared = shared.clone();
                async move {
                    if shared.holds.load(Ordering::Relaxed) {
                        // Held: neither headers nor an answer, until the stream is dropped.
                        std::future::pending::<()>().await;
                    }
                    let header = shared.header(shared.store().rev());
                    let out: BoxStream<'static, Result<LeaseKeepAliveResponse, Status>> = Box::pin(
                        futures_util::stream::unfold(r.into_inner(), move |mut inbound| {
                            let header = header;
                            async move {
                                let req = inbound.message().await.ok()??;
                                let resp = LeaseKeepAliveResponse {
                                    header: Some(header),
                                    id: req.id,
                                    ttl: super::LEASE_TTL,
                                };
                                Some((Ok(resp), inbound))
                            }
                        }),
                    );
                    Ok::<_, Status>(Response::new(out))
                }
            });
            tonic::server::Grpc::new(
                Codec::<LeaseKeepAliveRequest, LeaseKeepAliveResponse>::default(),
            )
            .streaming(svc, req)
            .await
        }
        "/etcdserverpb.KV/Range" => unary!(shared, req, RangeRequest, RangeResponse, range),
        "/etcdserverpb.KV/Put" => unary!(shared, req, PutRequest, PutResponse, put),
        "/etcdserverpb.KV/DeleteRange" => {
            unary!(shared, req, DeleteRangeRequest, DeleteRangeResponse, delete)
        }
        "/etcdserverpb.KV/Compact" => {
            unary!(shared, req, CompactionRequest, CompactionResponse, compact)
        }
        "/etcdserverpb.Maintenance/Status" => {
            unary!(shared, req, StatusRequest, StatusResponse, status)
        }
        "/etcdserverpb.Cluster/MemberList" => {
            unary!(
                shared,
                req,
                MemberListRequest,
                MemberListResponse,
                member_list
            )
        }
        "/grpc.health.v1.Health/Check" => {
            unary!(
                shared,
                req,
                HealthCheckRequest,
                HealthCheckResponse,
                |_, _| Ok(HealthCheckResponse {
                    status: ServingStatus::Serving as i32
                })
            )
        }
        other => {
            Status::unimplemented(format!("the fake member does not serve {other}")).into_http()
        }
    }
}

fn range(shared: &Shared, r: RangeRequest) -> Result<RangeResponse, Status> {
    let store = shared.store();
    if r.revision != 0 && r.revision != store.rev() {
        return Err(Status::unimplemented(
            "the fake member reads the current revision only",
        ));
    }
    let mut kvs = store.range(&r.key, &r.range_end);
    let count = kvs.len() as i64;
    if r.count_only {
        kvs.clear();
    }
    Ok(RangeResponse {
        header: Some(shared.header(store.rev())),
        kvs,
        more: false,
        count,
    })
}

fn put(shared: &Shared, r: PutRequest) -> Result<PutResponse, Status> {
    let mut store = shared.store();
    let (rev, prev) = store.put(r.key, r.value);
    Ok(PutResponse {
        header: Some(shared.header(rev)),
        prev_kv: if r.prev_kv { prev } else { None },
    })
}

fn delete(shared: &Shared, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, Status> {
    let mut store = shared.store();
    let (rev, gone) = store.delete(&r.key, &r.range_end);
    Ok(DeleteRangeResponse {
        header: Some(shared.header(rev)),
        deleted: gone.len() as i64,
        prev_kvs: if r.prev_kv { gone } else { Vec::new() },
    })
}

fn compact(shared: &Shared, r: CompactionRequest) -> Result<CompactionResponse, Status> {
    let mut store = shared.store();
    store
        .compact(r.revision)
        .map_err(|e| Status::out_of_range(e.message()))?;
    Ok(CompactionResponse {
        header: Some(shared.header(store.rev())),
    })
}

fn status(shared: &Shared, _: StatusRequest) -> Result<StatusResponse, Status> {
    let rev = shared.store().rev();
    Ok(StatusResponse {
        header: Some(shared.header(rev)),
        version: shared.spec.behaviour.version().into(),
        leader: shared.members.first().map_or(0, |m| m.0),
        raft_term: 2,
        raft_index: rev as u64,
        raft_applied_index: rev as u64,
        db_size: 4096,
        db_size_in_use: 4096,
        ..Default::default()
    })
}

fn member_list(shared: &Shared, _: MemberListRequest) -> Result<MemberListResponse, Status> {
    let rev = shared.store().rev();
    Ok(MemberListResponse {
        header: Some(shared.header(rev)),
        members: shared
            .members
            .iter()
            .map(|(id, url)| Member {
                id: *id,
                name: format!("fake-{id}"),
                client_ur_ls: vec![url.clone()],
                ..Default::default()
            })
            .collect(),
    })
}

/// Drives one watch stream's [`WatchStream`] model: requests, new revisions, catch-ups and
/// the progress ticker, in one task (as etcd's send loop serialises one stream's responses).
async fn watch_stream(
    shared: Shared,
    mut inbound: Streaming<WatchRequest>,
    tx: mpsc::Sender<WatchResponse>,
) {
    let mut revs = shared.store().subscribe();
    let mut model = WatchStream::new(
        shared.spec.behaviour,
        shared.spec.catch_up,
        shared.header(0),
    );
    let mut ticker = tokio::time::interval(shared.spec.progress_notify_interval);
    ticker.tick().await;
    loop {
        let catch_up = model.next_catch_up();
        let out = tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(req)) => {
                    let store = shared.store();
                    model.on_request(req, &store, Instant::now())
                }
                _ => return,
            },
            changed = revs.changed() => {
                if changed.is_err() {
                    return;
                }
                model.deliver(&shared.store(), Instant::now())
            }
            _ = sleep_until_opt(catch_up) => model.deliver(&shared.store(), Instant::now()),
            _ = ticker.tick() => model.tick(&shared.store(), Instant::now()),
        };
        for resp in out {
            if tx.send(resp).await.is_err() {
                return;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
