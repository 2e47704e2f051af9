//! The whole `etcd_client` API through the drop-in: KV, txn, watch, lease, lock, election,
//! cluster, maintenance and auth, against a local 3-member cluster.
//!
//! The only line that differs from a stock etcd-client program is the constructor:
//! `Client::connect_with_balanced_channel(endpoints, options, HealthChannel::new(config))`
//! instead of `Client::connect(endpoints, options)`. `tests/dropin_api.rs` runs this same
//! code as a test.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use etcd_health::config::Config;
use etcd_health::HealthChannel;
use etcd_health_testing::Cluster;

/// Connects to `endpoints` through the health layer, as a user of etcd-client would.
pub async fn connect(
    endpoints: &[String],
    options: Option<ConnectOptions>,
) -> Result<Client, etcd_client::Error> {
    Client::connect_with_balanced_channel(endpoints, options, HealthChannel::new(Config::default()))
        .await
}

/// Uses every part of the API once; returns what it did, one line per area.
pub async fn exercise(endpoints: &[String]) -> Result<Vec<String>, etcd_client::Error> {
    let mut done = Vec::new();
    let mut client = connect(endpoints, None).await?;

    // KV and txn.
    client.put("api/a", "1", None).await?;
    let prev = client
        .put("api/a", "2", Some(PutOptions::new().with_prev_key()))
        .await?;
    assert_eq!(prev.prev_key().map(|kv| kv.value()), Some(&b"1"[..]));
    let txn = Txn::new()
        .when(vec![Compare::value("api/a", CompareOp::Equal, "2")])
        .and_then(vec![TxnOp::put("api/b", "from-txn", None)])
        .or_else(vec![TxnOp::put("api/b", "wrong", None)]);
    let resp = client.txn(txn).await?;
    assert!(resp.succeeded());
    let got = client
        .get("api/", Some(GetOptions::new().with_prefix()))
        .await?;
    assert_eq!(got.kvs().len(), 2);
    let deleted = client.delete("api/b", None).await?;
    assert_eq!(deleted.deleted(), 1);
    done.push(format!(
        "kv+txn: {} keys, revision {}",
        got.kvs().len(),
        resp.header().map_or(0, |h| h.revision())
    ));

    // Watch: a put after the watch starts is seen.
    let mut stream = client
        .watch("api/watched", Some(WatchOptions::new()))
        .await?;
    client.put("api/watched", "seen", None).await?;
    let event = loop {
        let resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .map_err(|_| etcd_client::Error::WatchError("no event within 5 s".into()))??
            .ok_or_else(|| etcd_client::Error::WatchError("watch ended".into()))?;
        if let Some(event) = resp.events().first() {
            break event.clone();
        }
    };
    assert_eq!(event.event_type(), EventType::Put);
    done.push(format!(
        "watch: {:?} {:?}",
        event.event_type(),
        event.kv().map(|kv| kv.value_str())
    ));

    // Lease: grant, attach, keep alive once, time to live, revoke.
    let lease = client.lease_grant(10, None).await?;
    client
        .put(
            "api/leased",
            "x",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await?;
    let (mut keeper, mut replies) = client.lease_keep_alive(lease.id()).await?;
    keeper.keep_alive().await?;
    let reply = replies.message().await?.map(|r| r.ttl());
    let ttl = client.lease_time_to_live(lease.id(), None).await?;
    client.lease_revoke(lease.id()).await?;
    let gone = client.get("api/leased", None).await?;
    assert!(gone.kvs().is_empty());
    done.push(format!(
        "lease: keep-alive ttl {reply:?}, time to live {}",
        ttl.ttl()
    ));

    // Lock and election.
    let lock = client.lock("api/lock", None).await?;
    client.unlock(lock.key()).await?;
    let campaign_lease = client.lease_grant(10, None).await?;
    let won = client
        .campaign("api/election", "me", campaign_lease.id())
        .await?;
    let leader = client.leader("api/election").await?;
    assert_eq!(leader.kv().map(|kv| kv.value()), Some(&b"me"[..]));
    if let Some(key) = won.leader() {
        client
            .resign(Some(
                etcd_client::ResignOptions::new().with_leader(key.clone()),
            ))
            .await?;
    }
    done.push("lock+election: locked, unlocked, elected, resigned".to_owned());

    // Cluster and maintenance.
    let members = client.member_list().await?;
    let status = client.status().await?;
    done.push(format!(
        "cluster+maintenance: {} members, leader {:x}, version {}",
        members.members().len(),
        status.leader(),
        status.version()
    ));

    // Auth: enable, use with credentials, disable. With auto refresh, etcd-client renews the
    // token when a member refuses it (simple tokens are lost when a member restarts).
    client.user_add("root", "demo-password", None).await?;
    client.user_grant_role("root", "root").await?;
    client.auth_enable().await?;
    let options = ConnectOptions::new()
        .with_user("root", "demo-password")
        .with_auto_token_refresh(true);
    let mut root = connect(endpoints, Some(options)).await?;
    root.put("api/auth", "ok", None).await?;
    let anonymous = client.get("api/auth", None).await;
    root.auth_disable().await?;
    done.push(format!(
        "auth: authenticated put ok, anonymous read refused: {}",
        anonymous.is_err()
    ));
    Ok(done)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = Cluster::start(3).await?;
    for line in exercise(&cluster.endpoints()).await? {
        println!("{line}");
    }
    Ok(())
}
