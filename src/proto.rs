//! Generated etcd v3 and `grpc.health.v1` clients.
//!
//! These are built from the protos in `proto/` by `build.rs`, so the crate does not depend on
//! etcd-client's private stubs and any tower stack of ours can be used with them.
#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// `mvccpb`: key-value and event types.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}
/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
/// `v3lockpb`: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
/// `v3electionpb`: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
/// `grpc.health.v1`: the standard gRPC health service.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
