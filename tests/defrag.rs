//! A member being defragmented stalls every request it serves for seconds (etcd 3.4 holds its
//! backend's locks while it copies the database into a new file). With `Config::default()`, it
//! must be treated like any slow member: reads go elsewhere (hedged reads, hang detection), so
//! no read fails and the read throughput holds.
//!
//! The database is made large first (150 MB of live 1 MB values, and 50 MB more overwritten
//! and compacted away, so the defragmentation also frees space); then, under a load of reads
//! through etcd-client over the drop-in, each member is defragmented in turn, as
//! `etcdctl defrag --cluster` does. The test prints how long each defragmentation took and
//! the read throughput during it against the throughput before.

mod common;

use std::time::{Duration, Instant};

use common::{first_failures, EtcdReads};
use etcd_client::Client;
use etcd_health_testing::Cluster;

const READERS: usize = 16;
/// The caller's own deadline on each read: a read not answered within it is a failed read.
const DEADLINE: Duration = Duration::from_secs(2);
/// Live data: this many 1 MB values.
const LIVE_MB: usize = 150;
/// Garbage: this many more 1 MB puts over the same keys, compacted away.
const OVERWRITTEN_MB: usize = 50;
const STEADY: Duration = Duration::from_secs(2);

/// Writes the large database; returns the revision to compact at.
async fn fill(cluster: &Cluster) -> i64 {
    let mut client = Client::connect(cluster.endpoints(), None)
        .await
        .expect("writer");
    let value = vec![b'x'; 1 << 20];
    let started = Instant::now();
    let mut revision = 0;
    for i in 0..LIVE_MB + OVERWRITTEN_MB {
        let put = client
            .put(format!("big/{}", i % LIVE_MB), value.clone(), None)
            .await
            .expect("put");
        revision = put.header().expect("header").revision();
    }
    client.put("load", "v", None).await.expect("put");
    println!(
        "wrote {} MB in {:?}",
        LIVE_MB + OVERWRITTEN_MB,
        started.elapsed()
    );
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");
    revision
}

/// Reads per second between two samples `(at, reads)`.
fn rate(from: (Instant, u64), to: (Instant, u64)) -> f64 {
    (to.1 - from.1) as f64 / to.0.duration_since(from.0).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_defragmentation_of_each_member() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    fill(&cluster).await;

    let (client, checker) = common::dropin_client(&cluster).await;
    let reads = EtcdReads::start(&client, READERS, DEADLINE);
    let sample = || (Instant::now(), reads.ok());

    tokio::time::sleep(Duration::from_secs(1)).await;
    let steady_from = sample();
    tokio::time::sleep(STEADY).await;
    let steady_to = sample();
    let steady = rate(steady_from, steady_to);
    println!("steady: {steady:.0} reads/s");

    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    for member in 0..cluster.size() {
        // Its own connection, straight to the member, as `etcdctl --endpoints` does.
        let mut maintenance = Client::connect([cluster.endpoint(member)], None)
            .await
            .expect("maintenance client");
        let before = maintenance.status().await.expect("status").db_size();
        let from = sample();
        maintenance.defragment().await.expect("defragment");
        let to = sample();
        let after = maintenance.status().await.expect("status").db_size();
        println!(
            "member {member}{}: defragmented in {:?}, db {} MB -> {} MB; reads during it \
             {:.0}/s ({:.0} % of steady), failed so far {}",
            if member == leader { " (leader)" } else { "" },
            to.0.duration_since(from.0),
            before >> 20,
            after >> 20,
            rate(from, to),
            100.0 * rate(from, to) / steady,
            reads.failed()
        );
        assert!(
            after < before,
            "member {member}: the defragmentation freed the compacted space ({before} -> {after})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (ok, failures) = reads.stop().await;
    for m in checker.snapshot() {
        println!(
            "  {}: {}, ejected {} times, counters {:?}",
            m.member, m.status, m.ejections, m.counters
        );
    }
    println!("reads ok {ok}, failed {}", failures.len());
    assert_eq!(
        failures.len(),
        0,
        "no read failed: {:#?}",
        first_failures(&failures, 8)
    );
}
