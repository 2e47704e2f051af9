//! Tests of the etcd test fixture itself, against real etcd processes.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use etcd_health::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
use etcd_health_testing::Cluster;

const CALL: Duration = Duration::from_secs(2);

async fn client(endpoints: &[String], timeout: Duration) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    Client::connect(endpoints, Some(options))
        .await
        .expect("lazy connect")
}

/// `Status` of one endpoint under a hard deadline: `Ok(leader id)` or the error text.
async fn status(endpoint: &str, deadline: Duration) -> Result<(u64, Vec<String>), String> {
    let call = async {
        let mut c = client(&[endpoint.to_string()], deadline).await;
        let s = c.status().await.map_err(|e| e.to_string())?;
        Ok((s.leader(), s.errors().to_vec()))
    };
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err("deadline exceeded".into()))
}

async fn put(endpoints: &[String], key: &str, value: &str) -> Result<(), String> {
    let mut c = client(endpoints, CALL).await;
    tokio::time::timeout(CALL, c.put(key, value, None))
        .await
        .map_err(|_| "deadline exceeded".to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Serializable read: what this member itself has applied.
async fn local_get(endpoint: &str, key: &str) -> Result<Option<String>, String> {
    let mut c = client(&[endpoint.to_string()], CALL).await;
    let resp = tokio::time::timeout(
        CALL,
        c.get(key, Some(GetOptions::new().with_serializable())),
    )
    .await
    .map_err(|_| "deadline exceeded".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(resp
        .kvs()
        .first()
        .map(|kv| kv.value_str().unwrap_or_default().to_string()))
}

/// Retries `f` until it returns `Ok`, or panics with the last error after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: still failing: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn others(c: &Cluster, skip: usize) -> Vec<String> {
    (0..c.size())
        .filter(|&i| i != skip)
        .map(|i| c.direct_endpoint(i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_start_with_one_leader() {
    let t0 = Instant::now();
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let took = t0.elapsed();
    println!("3-member cluster ready in {took:?}");
    assert!(took < Duration::from_secs(15), "start-up took {took:?}");
    assert_eq!(cluster.size(), 3);

    let leader = cluster.leader().await.expect("a leader");
    let leader_id = cluster.member_id(leader);
    let mut ids = Vec::new();
    for i in 0..3 {
        assert_eq!(cluster.endpoint(i), cluster.direct_endpoint(i));
        ids.push(cluster.member_id(i));
        let agreed = eventually(
            "members agree on the leader",
            Duration::from_secs(5),
            || {
                let ep = cluster.endpoint(i);
                async move {
                    match status(&ep, CALL).await? {
                        (l, _) if l == leader_id => Ok(()),
                        (l, _) => Err(format!("member {i} says leader {l:x}")),
                    }
                }
            },
        );
        agreed.await;
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct member ids");
    assert!(ids.iter().all(|&id| id != 0));
    put(&cluster.endpoints(), "k", "v").await.expect("put");

    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
    drop(cluster);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "member {pid} still alive after drop"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_member_refuses_and_the_rest_keep_working() {
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let victim = cluster.wait_for_leader(CALL).await.expect("leader");
    let port = cluster
        .direct_endpoint(victim)
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    cluster.kill(victim);
    assert_eq!(cluster.pid(victim), None);

    let err = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect_err("killed member must refuse");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    let rest = others(&cluster, victim);
    eventually(
        "survivors elect a leader",
        Duration::from_secs(10),
        || async {
            match cluster.leader().await {
                Some(l) if l != victim => Ok(()),
                other => Err(format!("leader {other:?}")),
            }
        },
    )
    .await;
    eventually("survivors accept a put", Duration::from_secs(10), || {
        put(&rest, "after-kill", "yes")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_member_hangs_until_resumed() {
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let ep = cluster.direct_endpoint(1);
    cluster.pause(1);

    let addr = ep.trim_start_matches("http://").to_string();
    tokio::net::TcpStream::connect(&addr)
        .await
        .expect("a stopped process's listen socket still accepts");
    let t0 = Instant::now();
    let r = status(&ep, Duration::from_secs(1)).await;
    assert!(r.is_err(), "paused member answered: {r:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "failed fast: {r:?}"
    );

    cluster.resume(1);
    eventually("resumed member answers", Duration::from_secs(5), || {
        status(&ep, Duration::from_secs(1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up() {
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let pid_before = cluster.pid(2);
    cluster.kill(2);
    let rest = others(&cluster, 2);
    eventually(
        "put while member 2 is down",
        Duration::from_secs(10),
        || put(&rest, "while-down", "42"),
    )
    .await;

    cluster.restart(2).await.expect("restart");
    assert!(cluster.pid(2).is_some() && cluster.pid(2) != pid_before);
    status(&cluster.direct_endpoint(2), CALL)
        .await
        .expect("restarted member answers Status");
    let ep = cluster.direct_endpoint(2);
    eventually(
        "restarted member has the write",
        Duration::from_secs(10),
        || async {
            match local_get(&ep, "while-down").await? {
                Some(v) if v == "42" => Ok(()),
                other => Err(format!("got {other:?}")),
            }
        },
    )
    .await;
}

/// A put with `hasleader: true` metadata through the crate's own stubs.
async fn put_require_leader(endpoint: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("uri")
        .connect_timeout(CALL)
        .timeout(CALL)
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(PutRequest {
        key: b"isolated-put".to_vec(),
        value: b"x".to_vec(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("hasleader", "true".parse().unwrap());
    KvClient::new(channel).put(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_member_loses_leader_and_rejoins_after_heal() {
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let x = cluster.wait_for_leader(CALL).await.expect("leader");
    let x_ep = cluster.direct_endpoint(x);
    let rest = others(&cluster, x);
    cluster.isolate(x);

    // 500 ms election timeout: a few of them.
    eventually(
        "isolated member reports no leader",
        Duration::from_secs(5),
        || async {
            match status(&x_ep, CALL).await {
                Ok((0, _)) => Ok(()),
                Ok((_, errors)) if errors.iter().any(|e| e.contains("no leader")) => Ok(()),
                Err(e) if e.contains("no leader") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let x_id = cluster.member_id(x);
    eventually(
        "the other two elect a leader",
        Duration::from_secs(10),
        || async {
            for ep in &rest {
                let (leader, _) = status(ep, CALL).await?;
                if leader == 0 || leader == x_id {
                    return Err(format!("{ep} says leader {leader:x}"));
                }
            }
            Ok(())
        },
    )
    .await;
    for n in 0..3 {
        let key = format!("during-isolation-{n}");
        eventually("majority accepts writes", Duration::from_secs(10), || {
            put(&rest, &key, "w")
        })
        .await;
    }

    let err = put_require_leader(&x_ep)
        .await
        .expect_err("isolated member must refuse a hasleader put");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no leader"), "{err:?}");

    cluster.heal(x);
    eventually(
        "healed member has a leader",
        Duration::from_secs(10),
        || async {
            match status(&x_ep, CALL).await? {
                (0, errors) => Err(format!("no leader yet: {errors:?}")),
                _ => Ok(()),
            }
        },
    )
    .await;
    eventually(
        "healed member catches up",
        Duration::from_secs(10),
        || async {
            match local_get(&x_ep, "during-isolation-2").await? {
                Some(_) => Ok(()),
                None => Err("write not there yet".into()),
            }
        },
    )
    .await;
    put_require_leader(&x_ep)
        .await
        .expect("healed member accepts a hasleader put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_proxy_blackhole_and_latency() {
    let cluster = Cluster::builder()
        .client_proxy(true)
        .start()
        .await
        .expect("cluster starts");
    assert_ne!(cluster.endpoint(0), cluster.direct_endpoint(0));
    status(&cluster.endpoint(0), CALL)
        .await
        .expect("through the proxy");

    cluster.blackhole_client(0, true);
    let t0 = Instant::now();
    let r = status(&cluster.endpoint(0), Duration::from_secs(1)).await;
    assert!(r.is_err(), "blackholed member answered: {r:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "failed fast: {r:?}"
    );
    status(&cluster.direct_endpoint(0), CALL)
        .await
        .expect("direct endpoint bypasses the blackhole");
    cluster.blackhole_client(0, false);
    let ep0 = cluster.endpoint(0);
    eventually("unblackholed", Duration::from_secs(5), || {
        status(&ep0, Duration::from_secs(1))
    })
    .await;

    let latency = Duration::from_millis(200);
    cluster.set_client_latency(1, latency);
    let mut c = client(&[cluster.endpoint(1)], Duration::from_secs(5)).await;
    c.status().await.expect("connection warm-up");
    let t0 = Instant::now();
    c.status().await.expect("status with latency");
    let took = t0.elapsed();
    println!("Status with {latency:?} added latency took {took:?}");
    assert!(took >= latency, "took only {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_in_parallel() {
    let (a, b) = tokio::join!(Cluster::start(3), Cluster::start(3));
    let (a, b) = (a.expect("cluster a"), b.expect("cluster b"));
    let mut all: Vec<String> = a.endpoints().into_iter().chain(b.endpoints()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "distinct endpoints");
    assert_ne!(format!("{a:?}"), format!("{b:?}"));

    put(&a.endpoints(), "only-in-a", "1").await.expect("put a");
    put(&b.endpoints(), "only-in-b", "1").await.expect("put b");
    let mut ca = client(&a.endpoints(), CALL).await;
    let mut cb = client(&b.endpoints(), CALL).await;
    assert_eq!(ca.get("only-in-b", None).await.unwrap().kvs().len(), 0);
    assert_eq!(cb.get("only-in-a", None).await.unwrap().kvs().len(), 0);
    assert_eq!(ca.get("only-in-a", None).await.unwrap().kvs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_start() {
    let t0 = Instant::now();
    let cluster = Cluster::start(5).await.expect("cluster starts");
    println!("5-member cluster ready in {:?}", t0.elapsed());
    assert_eq!(cluster.size(), 5);
    assert!(cluster.leader().await.is_some());
    put(&cluster.endpoints(), "k", "v").await.expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_paused_members_without_hanging() {
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
    cluster.pause(0);
    cluster.pause(1);
    cluster.isolate(2);
    let t0 = Instant::now();
    drop(cluster);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t0.elapsed()
    );
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_names_the_member_and_shows_its_log() {
    let err = Cluster::builder()
        .etcd_bin("/bin/false")
        .start()
        .await
        .expect_err("/bin/false is not etcd");
    let text = err.to_string();
    assert!(text.contains("m0") && text.contains("exited"), "{text}");

    let err = Cluster::builder()
        .etcd_bin("/nonexistent/etcd")
        .start()
        .await
        .expect_err("no such binary");
    assert!(err.to_string().contains("/nonexistent/etcd"), "{err}");

    // m2 starts right before the first readiness poll: it cannot be serving yet.
    let err = Cluster::builder()
        .ready_timeout(Duration::from_millis(1))
        .start()
        .await
        .expect_err("nothing is ready within 1 ms");
    let text = err.to_string();
    assert!(text.contains("m2 not ready"), "{text}");
    assert!(
        text.contains("\"msg\""),
        "log tail (zap JSON) missing: {text}"
    );
}

/// Set in the child process of [`members_die_with_a_killed_test_process`], which re-runs this
/// test binary to run [`cluster_in_a_child_process`] only.
const CHILD_ENV: &str = "ETCD_HEALTH_FIXTURE_CHILD";

/// The child's half of [`members_die_with_a_killed_test_process`]: starts a cluster, prints its
/// members' pids and ports and its dir on one line, then waits to be killed. Does nothing in a
/// normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_a_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = Cluster::start(3).await.expect("cluster starts");
    let pids: Vec<String> = (0..3)
        .map(|i| cluster.pid(i).expect("running").to_string())
        .collect();
    let ports: Vec<String> = (0..3)
        .map(|i| {
            let endpoint = cluster.direct_endpoint(i);
            endpoint.rsplit(':').next().unwrap().to_string()
        })
        .collect();
    println!(
        "CLUSTER pids={} ports={} dir={}",
        pids.join(","),
        ports.join(","),
        cluster.dir().display()
    );
    // The parent kills this process long before; the limit only bounds a parent gone wrong.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Whether process `pid` is gone: no such process, or a zombie (dead, not yet reaped by
/// whoever inherited it) none of whose threads is still exiting (a SIGKILLed Go process's
/// main thread turns zombie while its other threads still hold its sockets).
fn gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "pid (comm) state ...": the state follows the last ')'.
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    zombie && threads <= 1
}

#[test]
fn members_die_with_a_killed_test_process() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("own test binary");
    let mut child = Command::new(exe)
        .args([
            "cluster_in_a_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-run this test binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test <name> ... " first, on the same line.
            if let Some((_, rest)) = line.split_once("CLUSTER ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            panic!("the child did not report its cluster: {e}");
        }
    };
    let field = |name: &str| -> String {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    let pids: Vec<u32> = field("pids")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let ports: Vec<u16> = field("ports")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let dir = std::path::PathBuf::from(field("dir"));
    assert!(pids.iter().all(|&pid| !gone(pid)), "members run: {pids:?}");
    assert!(dir.is_dir(), "{} exists", dir.display());

    child.kill().expect("SIGKILL the child");
    let killed = Instant::now();
    child.wait().expect("reap the child");
    while !pids.iter().all(|&pid| gone(pid)) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "members still running 1 s after their test process was killed: {:?}",
            pids.iter().filter(|&&pid| !gone(pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let members_gone = killed.elapsed();
    for port in ports {
        let err = std::net::TcpStream::connect(("127.0.0.1", port))
            .expect_err("a dead member's client port refuses connections");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
    while dir.exists() {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "{} still there 5 s after its test process was killed",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "after SIGKILL of the test process: members gone in {members_gone:?}, \
         cluster dir removed in {:?}",
        killed.elapsed()
    );
}
