//! Discovery by DNS SRV records (`discovery.srv`, the `dns-srv` feature) against a real
//! 3-member cluster: a small DNS server on a loopback port serves `_etcd-client._tcp.etcd.test`
//! with one target per member (and an `A` record per target), the client's resolver is pointed
//! at it with `discovery.srv.name_server`, and the records change while the client runs.
#![cfg(feature = "dns-srv")]

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::wait_for;
use etcd_client::Client;
use etcd_health::config::{Config, SrvConfig};
use etcd_health::observe::{MemberSnapshot, Origin, Status};
use etcd_health::HealthChannel;
use etcd_health::HealthChecker;
use etcd_health_testing::Cluster;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

const DOMAIN: &str = "etcd.test";
const RECORD: &str = "_etcd-client._tcp.etcd.test.";
/// Between SRV lookups. Answers carry a 1 s TTL, so a change shows within about 2 s.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a change may take to show in the health state on a loaded 2-core machine.
const FOLLOW: Duration = Duration::from_secs(8);

/// A DNS server for the zone `etcd.test`: `_etcd-client._tcp` lists `m<i>.etcd.test.` at
/// member `i`'s client port for every `i` served; `m<i>.etcd.test.` is `127.0.0.1`. Nothing
/// else exists (`_etcd-client-ssl._tcp` included: an empty answer).
struct Dns {
    addr: SocketAddr,
    /// Member index → client port, for the members listed now.
    listed: Arc<Mutex<BTreeMap<usize, u16>>>,
    /// While set, queries get no answer (the resolver times out).
    silent: Arc<AtomicBool>,
    /// Queries received, answered or not.
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    async fn start(ports: &[u16]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("address");
        let listed: Arc<Mutex<BTreeMap<usize, u16>>> =
            Arc::new(Mutex::new(ports.iter().copied().enumerate().collect()));
        let silent = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (listed, silent, received) = (listed.clone(), silent.clone(), received.clone());
            async move {
                let mut buf = [0u8; 512];
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                        return;
                    };
                    received.fetch_add(1, Ordering::Relaxed);
                    if silent.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let listed = listed.lock().unwrap().clone();
                    let answer = answer(&query, &listed);
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Self {
            addr,
            listed,
            silent,
            received,
            task,
        }
    }

    fn unlist(&self, i: usize) {
        self.listed.lock().unwrap().remove(&i);
    }

    fn list(&self, i: usize, port: u16) {
        self.listed.lock().unwrap().insert(i, port);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The response to `query`, serialized.
fn answer(query: &Message, listed: &BTreeMap<usize, u16>) -> Vec<u8> {
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let mut code = ResponseCode::NoError;
    for q in query.queries() {
        response.add_query(q.clone());
        let name = q.name().to_ascii().to_ascii_lowercase();
        let target = |i: usize| Name::from_str(&format!("m{i}.{DOMAIN}.")).expect("name");
        match q.query_type() {
            RecordType::SRV if name == RECORD => {
                for (&i, &port) in listed {
                    let srv = SRV::new(0, 0, port, target(i));
                    response.add_answer(Record::from_rdata(q.name().clone(), 1, RData::SRV(srv)));
                }
            }
            RecordType::A if (0..5).any(|i| target(i).to_ascii() == name) => {
                let a = A(Ipv4Addr::LOCALHOST);
                response.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(a)));
            }
            // The `-ssl` record and AAAA: the name exists, no data of that type.
            _ if name.ends_with(&format!("{DOMAIN}.")) => {}
            _ => code = ResponseCode::NXDomain,
        }
    }
    response.set_response_code(code);
    response.to_vec().expect("serialize")
}

fn port_of(cluster: &Cluster, i: usize) -> u16 {
    let url = cluster.endpoint(i);
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("address");
    addr.port()
}

fn srv_config(dns: &Dns) -> Config {
    let mut config = common::fast_config();
    // Only SRV may find members here.
    config.discovery.member_list = false;
    // A lookup DNS does not answer fails in half a second (the default is 2 s).
    config.discovery.timeout = Duration::from_millis(500);
    config.discovery.srv = Some(SrvConfig {
        interval: INTERVAL,
        name_server: Some(dns.addr.to_string()),
        ..SrvConfig::new(DOMAIN)
    });
    config
}

/// The members found by SRV, by port, with their status.
fn by_srv(checker: &HealthChecker) -> BTreeMap<u16, Status> {
    checker
        .snapshot()
        .into_iter()
        .filter(|m| matches!(&m.origin, Origin::Srv { record, .. } if record == RECORD.trim_end_matches('.')))
        .map(|m: MemberSnapshot| (m.member.uri().port_u16().expect("port"), m.status))
        .collect()
}

fn all_healthy(found: &BTreeMap<u16, Status>, ports: &[u16]) -> bool {
    found.len() == ports.len() && ports.iter().all(|p| found.get(p) == Some(&Status::Healthy))
}

/// Given no endpoint at all, the tower stack's members are the SRV targets, health-checked and
/// taking requests; a target removed from the record leaves within the re-lookup interval and
/// one added (back) joins; while the DNS server is silent, the members stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_targets_are_the_members_and_follow_the_records() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let ports: Vec<u16> = (0..3).map(|i| port_of(&cluster, i)).collect();
    let dns = Dns::start(&ports).await;
    let checker = HealthChecker::with_uris(std::iter::empty(), srv_config(&dns)).expect("checker");
    let found = wait_for("three SRV members, healthy", FOLLOW, || {
        all_healthy(&by_srv(&checker), &ports)
    })
    .await;
    let stack = checker.channel();
    common::put(&stack, "srv", "1")
        .await
        .expect("put through SRV members");

    dns.unlist(2);
    let left = wait_for("member 2 dropped", FOLLOW, || {
        !by_srv(&checker).contains_key(&ports[2])
    })
    .await;
    assert_eq!(checker.snapshot().len(), 2, "{:#?}", checker.snapshot());
    common::put(&stack, "srv", "2")
        .await
        .expect("put after a drop");

    // DNS silent for three passes: lookups time out, the two members stay and serve.
    dns.silent.store(true, Ordering::SeqCst);
    let before = dns.received.load(Ordering::Relaxed);
    let timeout = checker.config().discovery.timeout;
    tokio::time::sleep(3 * (INTERVAL + timeout) + timeout).await;
    let unanswered = dns.received.load(Ordering::Relaxed) - before;
    assert!(
        unanswered > 0,
        "the client kept asking while DNS was silent"
    );
    let mut two = ports[..2].to_vec();
    two.sort_unstable();
    assert_eq!(
        by_srv(&checker).keys().copied().collect::<Vec<_>>(),
        two,
        "the last good members stay while DNS is silent"
    );
    common::put(&stack, "srv", "3")
        .await
        .expect("put while DNS is silent");

    dns.list(2, ports[2]);
    dns.silent.store(false, Ordering::SeqCst);
    let back = wait_for("member 2 back and healthy", FOLLOW, || {
        all_healthy(&by_srv(&checker), &ports)
    })
    .await;
    println!(
        "SRV discovery: 3 members found and healthy in {found:?}; a record's target removed: \
         dropped in {left:?}; DNS silent 3 passes: members kept ({unanswered} queries \
         unanswered); target listed again: back and healthy in {back:?}"
    );
}

/// etcd-client over the drop-in, given one endpoint (a follower's) and `discovery.srv`: the
/// other two members come from the records. The leader leaving the record leaves the health
/// state; the seed (etcd-client's endpoint) stays although its record went too; with the seed's
/// member killed, the third member, found only through SRV, serves etcd-client's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_over_srv_follows_the_records() {
    common::init_tracing();
    let cluster = Cluster::start(3).await.expect("cluster");
    let ports: Vec<u16> = (0..3).map(|i| port_of(&cluster, i)).collect();
    // Killing a follower needs no election, so every put below must succeed.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("leader");
    let (seed, third) = ((leader + 1) % 3, (leader + 2) % 3);
    let dns = Dns::start(&ports).await;
    let checker = HealthChecker::with_uris(std::iter::empty(), srv_config(&dns)).expect("checker");
    let client = Client::connect_with_balanced_channel(
        [cluster.endpoint(seed)],
        None,
        HealthChannel::with_checker(checker.clone()),
    )
    .await
    .expect("client");
    let members = |checker: &HealthChecker| -> BTreeMap<u16, Status> {
        checker
            .snapshot()
            .into_iter()
            .map(|m| (m.member.uri().port_u16().expect("port"), m.status))
            .collect()
    };
    let found = wait_for("three members, healthy", FOLLOW, || {
        all_healthy(&members(&checker), &ports)
    })
    .await;
    assert!(by_srv(&checker).contains_key(&ports[third]));
    let mut kv = client.kv_client();
    kv.put("srv", "1", None).await.expect("put");

    dns.unlist(seed);
    dns.unlist(leader);
    let left = wait_for("the leader's member dropped", FOLLOW, || {
        !members(&checker).contains_key(&ports[leader])
    })
    .await;
    let mut kept = vec![ports[seed], ports[third]];
    kept.sort_unstable();
    assert_eq!(
        members(&checker).keys().copied().collect::<Vec<_>>(),
        kept,
        "the seed stays, the third member stays"
    );
    cluster.kill(seed);
    for i in 0..5 {
        kv.put("srv", i.to_string(), None)
            .await
            .expect("put with the seed's member dead");
    }
    let got = kv.get("srv", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"4");
    println!(
        "etcd-client over SRV: 3 members healthy in {found:?}; the seed's and the leader's \
         targets unlisted: the leader's member dropped in {left:?}, the seed kept; with the \
         seed's member killed, 5 puts and a get served by the third member"
    );
}
