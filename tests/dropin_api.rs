//! Runs `examples/etcd_client_api.rs` as a test: every area of etcd-client's API works through
//! the drop-in against a real cluster.

#[path = "../examples/etcd_client_api.rs"]
#[allow(dead_code)]
mod api;

use etcd_health_testing::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_etcd_client_api_works_through_the_drop_in() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let done = api::exercise(&cluster.endpoints()).await.expect("api");
    for line in &done {
        println!("{line}");
    }
    assert_eq!(done.len(), 6, "every area ran");
    assert!(done.last().unwrap().ends_with("true"), "auth is enforced");
}
