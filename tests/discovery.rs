//! Following the cluster (discovery): one endpoint is enough, members added and removed at
//! run time take and leave traffic, learners get none, a host name spreads load over its
//! addresses. Every case runs against a real etcd cluster and prints what it measured.

mod common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, EtcdReads};

use etcd_client::{Client, MemberAddOptions};
use etcd_health::config::Config;
use etcd_health::extend::Resolve;
use etcd_health::observe::{MemberSnapshot, Origin, Status};
use etcd_health::{HealthChannel, HealthChecker, HealthLayer, TonicConnector};
use etcd_health_testing::Cluster;
use futures_util::future::BoxFuture;
use tower::Layer;

const READERS: usize = 8;
const DEADLINE: Duration = Duration::from_secs(2);
/// etcd refuses `MemberAdd` ("etcdserver: unhealthy cluster", its strict reconfiguration
/// check) until every member has been connected to the leader for 5 s.
const RECONFIG_READY: Duration = Duration::from_millis(5500);

/// etcd-client over the drop-in, given `endpoints`, and its health state.
async fn client(endpoints: Vec<String>, config: Config) -> (Client, HealthChecker) {
    common::init_tracing();
    let checker = HealthChecker::with_uris(std::iter::empty(), config).expect("checker");
    let client = Client::connect_with_balanced_channel(
        endpoints,
        None,
        HealthChannel::with_checker(checker.clone()),
    )
    .await
    .expect("client");
    client
        .kv_client()
        .put("load", "x", None)
        .await
        .expect("put");
    (client, checker)
}

/// The snapshot of the member reached at `url`, if it is in the health state.
fn member_at(checker: &HealthChecker, url: &str) -> Option<MemberSnapshot> {
    let url = url.trim_end_matches('/');
    checker
        .snapshot()
        .into_iter()
        .find(|m| m.member.uri().to_string().trim_end_matches('/') == url)
}

fn table(checker: &HealthChecker) -> Vec<String> {
    checker
        .snapshot()
        .iter()
        .map(|m| {
            format!(
                "{} {} [{}] {} req={}",
                m.member.index(),
                m.member.uri(),
                m.origin,
                m.status,
                m.requests
            )
        })
        .collect()
}

/// Cases share two cores; one at a time keeps their timings meaningful.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Given one endpoint of three, the client finds the other two; when the member behind that
/// endpoint is killed, reads go on (none fails from 1 s after the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_is_enough_when_its_member_dies() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let (client, checker) = client(vec![cluster.endpoint(0)], Config::default()).await;
    let found = wait_for("3 members in rotation", Duration::from_secs(10), || {
        checker
            .snapshot()
            .iter()
            .filter(|m| m.status == Status::Healthy)
            .count()
            == 3
    })
    .await;
    let reads = EtcdReads::start(&client, READERS, DEADLINE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reads.ok();
    let killed_at = Instant::now();
    cluster.kill(0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_kill = reads.ok() - before;
    let late = reads.failed_since(killed_at + Duration::from_secs(1));
    let health = table(&checker);
    let (ok, failures) = reads.stop().await;
    let early: Vec<&String> = failures.iter().map(|(_, e)| e).take(3).collect();
    println!(
        "one endpoint, its member killed: others found and admitted in {found:?}; reads ok={ok} \
         (after the kill {after_kill}) failed={} (from 1 s after the kill: {late}); retries={}; \
         health: {health:?}; errors: {early:?}",
        failures.len(),
        checker.retries(),
    );
    assert_eq!(late, 0, "reads failed from 1 s after the kill");
    assert!(after_kill > 0, "reads were served after the kill");
    let seeds = checker
        .snapshot()
        .iter()
        .filter(|m| m.origin == Origin::Seed)
        .count();
    assert_eq!(seeds, 1, "the seed stays, dead or not");
}

/// A member added at run time (MemberAdd through the client, then started) takes traffic
/// within one discovery interval; removed again (MemberRemove, then killed) it leaves rotation
/// with no failed read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_takes_traffic_and_a_member_removed_leaves() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut config = Config::default();
    config.discovery.interval = Duration::from_secs(2);
    let interval = config.discovery.interval;
    let (mut client, checker) = client(cluster.endpoints(), config).await;
    let reads = EtcdReads::start(&client, READERS, DEADLINE);
    let reads_began = Instant::now();
    tokio::time::sleep(RECONFIG_READY).await;

    let new = cluster.prepare_member().await.expect("prepare");
    let adding = Instant::now();
    let added = client
        .member_add([cluster.peer_url(new)], None)
        .await
        .expect("MemberAdd");
    let id = added.member().expect("member").id();
    let starting = Instant::now();
    cluster.start_joining(new).await.expect("join");
    let answered = Instant::now();
    let url = cluster.endpoint(new);
    let took = wait_for("the new member takes requests", interval * 3, || {
        member_at(&checker, &url).is_some_and(|m| m.requests > 0)
    })
    .await;
    // The same strict check holds a MemberRemove back until the new member has been connected
    // for 5 s.
    tokio::time::sleep(RECONFIG_READY).await;
    let share = member_at(&checker, &url).map_or(0, |m| m.requests);
    let health_with = table(&checker);

    let removed_at = Instant::now();
    client.member_remove(id).await.expect("MemberRemove");
    cluster.kill(new);
    let left = wait_for("the removed member leaves", interval * 3, || {
        member_at(&checker, &url).is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failures) = reads.stop().await;
    let after_removal = failures.iter().filter(|(t, _)| *t >= removed_at).count();
    println!(
        "member added: takes requests {took:?} after it answers (discovery interval {interval:?}), \
         {share} requests in its first 5.5 s; removed: out of the health state {left:?} after \
         MemberRemove; reads ok={ok} failed={} (after the removal: {after_removal}); \
         health while 4: {health_with:?}; now: {:?}; errors: {:?}; MemberAdd sent, new member \
         started and answering at {:?}, {:?}, {:?} after the readers began, removal at {:?}, \
         failures at {:?}",
        failures.len(),
        table(&checker),
        failures.iter().map(|(_, e)| e).take(3).collect::<Vec<_>>(),
        adding - reads_began,
        starting - reads_began,
        answered - reads_began,
        removed_at - reads_began,
        failures
            .iter()
            .map(|(t, _)| *t - reads_began)
            .collect::<Vec<_>>(),
    );
    assert!(took <= interval + Duration::from_secs(1), "{took:?}");
    assert!(failures.is_empty(), "failed reads: {failures:?}");
}

/// A learner is never sent a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_gets_no_requests() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut config = Config::default();
    config.discovery.interval = Duration::from_secs(1);
    let (mut client, checker) = client(cluster.endpoints(), config).await;
    let reads = EtcdReads::start(&client, READERS, DEADLINE);
    tokio::time::sleep(RECONFIG_READY).await;
    let new = cluster.prepare_member().await.expect("prepare");
    client
        .member_add(
            [cluster.peer_url(new)],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("MemberAddAsLearner");
    cluster.start_joining(new).await.expect("join");
    // Several discovery passes while the learner runs.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (ok, failures) = reads.stop().await;
    let learner = member_at(&checker, &cluster.endpoint(new));
    println!(
        "learner: reads ok={ok} failed={}; learner in the health state: {:?}; health: {:?}",
        failures.len(),
        learner.as_ref().map(|m| (m.status, m.requests)),
        table(&checker),
    );
    assert_eq!(learner.map_or(0, |m| m.requests), 0);
    assert!(failures.is_empty(), "failed reads: {failures:?}");
}

/// A made-up name resolved by an injected resolver to the three members' addresses.
#[derive(Debug)]
struct FakeDns(HashMap<String, Vec<SocketAddr>>);

impl Resolve for FakeDns {
    fn resolve(&self, host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let answer = self
            .0
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, host.to_owned()));
        Box::pin(async move { answer })
    }
}

/// One endpoint given as a host name with three addresses: load spreads over all three
/// (tower stack, `MemberList` off so that only DNS can find them; the name and its addresses
/// come from an injected resolver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_three_addresses_is_three_members() {
    let _serial = serial().await;
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| {
            let url = cluster.endpoint(i);
            url.trim_start_matches("http://").parse().expect("address")
        })
        .collect();
    let mut config = Config::default();
    config.discovery.member_list = false;
    let checker = HealthChecker::new(&["http://etcd-cluster.test:2379"], config).expect("checker");
    checker.set_resolver(Arc::new(FakeDns(HashMap::from([(
        "etcd-cluster.test".to_owned(),
        addrs.clone(),
    )]))));
    let resolved = wait_for("three addresses", Duration::from_secs(10), || {
        let s = checker.snapshot();
        s.len() == 3 && s.iter().all(|m| matches!(m.origin, Origin::Dns { .. }))
    })
    .await;
    let stack = HealthLayer::new(checker.clone()).layer(TonicConnector::default());
    let load = common::Load::start(&stack, READERS, DEADLINE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = load.stop().await;
    let requests: Vec<u64> = checker.snapshot().iter().map(|m| m.requests).collect();
    let total: u64 = requests.iter().sum();
    println!(
        "name with 3 addresses (injected resolver): resolved in {resolved:?}; reads ok={} \
         failed={}; requests per address {requests:?}; health: {:?}",
        stats.ok(),
        stats.failed(),
        table(&checker),
    );
    assert_eq!(stats.failed(), 0);
    for r in &requests {
        assert!(
            *r * 10 >= total,
            "each address takes a fair share: {requests:?}"
        );
    }
}
