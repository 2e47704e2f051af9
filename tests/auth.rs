//! The auth layer over the balancer, against a cluster with auth enabled: the token is renewed
//! without a visible error when members forget it (restart), and a wrong password is a clear
//! error that does not show the password.

mod common;

use std::time::Duration;

use common::*;
use etcd_health::auth::{AuthLayer, Credentials};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use etcd_health_testing::Cluster;
use tower::Layer;

const PASSWORD: &str = "s3cret-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_renewed_when_members_forget_it() {
    // Simple tokens expire after 1 s without use on a member.
    let cluster = Cluster::builder()
        .extra_args(["--auth-token-ttl", "1"])
        .start()
        .await
        .expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, fast_config());
    let authed = AuthLayer::new(Credentials::new("root", PASSWORD)).layer(balance.clone());
    let counter = authed.clone();
    let mut kv = KvClient::new(authed);

    // Without credentials, etcd refuses.
    let err = KvClient::new(balance)
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("auth is on");
    println!("anonymous put: {err:?}");

    let put = |v: &str| PutRequest {
        key: b"k".to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    };
    kv.put(put("1")).await.expect("authenticated put");

    // Let the token expire on every member, then use it: the layer renews it unseen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..20 {
        kv.put(put(&n.to_string()))
            .await
            .expect("put after the token was forgotten");
    }
    let got = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.kvs[0].value, b"19");
    println!("authentications: {}", counter.authentications());
    assert!(
        counter.authentications() >= 2,
        "the expired token was renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error_without_the_password() {
    let cluster = Cluster::start(3).await.expect("cluster");
    enable_auth(&cluster, PASSWORD).await;
    let balance = stack(&cluster, fast_config());
    let authed = AuthLayer::new(Credentials::new("root", "not-the-password")).layer(balance);
    let err = KvClient::new(authed)
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("wrong password");
    println!("{err:?}");
    assert!(
        err.message().contains("authenticating as \"root\" failed"),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("not-the-password"));
}
