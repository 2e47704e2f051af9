//! DNS discovery: an endpoint given as a host name stands for every address it resolves to.
//!
//! Why: `etcd.example:2379` with three A records is three members, but a tonic channel dials
//! one address of it, so the health checker would see (and eject) one "member" that is really
//! three. Each address becomes a member of its own; the name serves until the first resolution
//! succeeds, so requests work at once. A failed resolution changes nothing: what was resolved
//! last keeps serving. [`plan`] is the pure decision; [`run`] the thin driver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Uri;

use super::driver::{Ask, Pass};
use super::reconcile::MAX_MEMBERS;
use super::Origin;
use super::WeakCluster;
use crate::config::same_endpoint;

/// A seed given as a host name, by its `host:port`.
pub(crate) fn name_of(uri: &Uri) -> Option<(String, u16)> {
    let host = uri.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return None;
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some((host.to_owned(), port))
}

/// The key of a name in origins and answers.
fn key(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// What a DNS pass changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Members to add: URL, the name it came from, why.
    pub(crate) add: Vec<(Uri, String, String)>,
    /// Members to drop: URL, why.
    pub(crate) remove: Vec<(Uri, String)>,
}

/// The changes for one pass. `seeds` are the endpoints given; `members` the current members'
/// URLs with their origins; `answers` the resolution of each name seed (by `host:port`) that
/// was asked. Names not asked change nothing; failed or empty answers change nothing but
/// bring the name itself back if nothing of it is left.
pub(crate) fn plan(
    seeds: &[Uri],
    members: &[(Uri, Origin)],
    answers: &HashMap<String, Result<Vec<SocketAddr>, String>>,
) -> Plan {
    let mut plan = Plan::default();
    let present = |uri: &Uri| members.iter().any(|(m, _)| same_endpoint(m, uri));
    let mut names = Vec::new();
    for seed in seeds {
        let Some((host, port)) = name_of(seed) else {
            continue;
        };
        let name = key(&host, port);
        names.push(name.clone());
        let Some(answer) = answers.get(&name) else {
            continue;
        };
        let of_name: Vec<&Uri> = members
            .iter()
            .filter(|(_, o)| matches!(o, Origin::Dns { name: n } if *n == name))
            .map(|(u, _)| u)
            .collect();
        match answer {
            Ok(addrs) if !addrs.is_empty() => {
                let scheme = seed.scheme_str().unwrap_or("http");
                let mut targets: Vec<Uri> = addrs
                    .iter()
                    .filter_map(|a| format!("{scheme}://{a}/").parse().ok())
                    .collect();
                if targets.len() > MAX_MEMBERS {
                    // A name is a handful of members; thousands of addresses would be as many
                    // probes, channels and connections.
                    tracing::warn!(
                        %name,
                        addresses = targets.len(),
                        max = MAX_MEMBERS,
                        "a name resolves to more addresses than the health state takes; the \
                         first ones are used"
                    );
                    targets.truncate(MAX_MEMBERS);
                }
                for t in &targets {
                    if !present(t) && !plan.add.iter().any(|(u, _, _)| same_endpoint(u, t)) {
                        plan.add.push((
                            t.clone(),
                            name.clone(),
                            format!(
                                "{name} resolves to {}",
                                t.authority().map_or("", |a| a.as_str())
                            ),
                        ));
                    }
                }
                for u in of_name {
                    if !targets.iter().any(|t| same_endpoint(t, u)) {
                        plan.remove
                            .push((u.clone(), format!("{name} no longer resolves to it")));
                    }
                }
                if present(seed) {
                    plan.remove.push((
                        seed.clone(),
                        format!(
                            "replaced by the {} address(es) {name} resolves to",
                            targets.len()
                        ),
                    ));
                }
            }
            answer => {
                if of_name.is_empty() && !present(seed) {
                    let why = match answer {
                        Err(e) => e.clone(),
                        Ok(_) => "no address".to_owned(),
                    };
                    plan.add.push((
                        seed.clone(),
                        name.clone(),
                        format!("{name} did not resolve ({why}): dialing the name"),
                    ));
                }
            }
        }
    }
    for (uri, origin) in members {
        if let Origin::Dns { name } = origin {
            if !names.contains(name) {
                plan.remove
                    .push((uri.clone(), format!("seed {name} was removed")));
            }
        }
    }
    plan
}

/// Starts the DNS driver: resolves name seeds at start, every `discovery.dns_interval`
/// (jittered) and when seeds change.
pub(crate) async fn run(weak: WeakCluster) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let interval = checker.config().discovery.dns_interval;
    let ask = Names {
        timeout: checker.config().discovery.timeout,
        https_names: checker.config().tls.domain_name.is_some(),
        warned_https: false,
    };
    let (_, wanted) = checker.discovery_wanted();
    drop(checker);
    if interval.is_zero() {
        return;
    }
    super::driver::run(weak, ask, interval, Some((wanted, Duration::ZERO))).await;
}

/// The DNS driver's question: what each name seed resolves to.
#[derive(Debug)]
struct Names {
    /// `discovery.timeout`: how long a resolution may take.
    timeout: Duration,
    /// `tls.domain_name` is set: `https` names are resolved too.
    https_names: bool,
    warned_https: bool,
}

impl Names {
    /// The seeds given as host names, as `(host, port)`: those this driver resolves.
    fn names(&mut self, seeds: &[Uri]) -> Vec<(String, u16)> {
        let mut names = Vec::new();
        for seed in seeds {
            if let Some((host, port)) = name_of(seed) {
                if seed.scheme_str() == Some("https") && !self.https_names {
                    if !self.warned_https {
                        self.warned_https = true;
                        tracing::warn!(%seed, "https endpoint given as a host name is not resolved to its addresses: certificates are checked against the name; set tls.domain_name to resolve it");
                    }
                    continue;
                }
                names.push((host, port));
            }
        }
        names
    }
}

impl Ask for Names {
    async fn pass(&mut self, weak: &WeakCluster) -> Pass {
        let Some(checker) = weak.upgrade() else {
            return Pass::Stop;
        };
        let seeds = checker.seeds();
        let resolver = checker.resolver();
        drop(checker);
        let names = self.names(&seeds);
        let timeout = self.timeout;
        let asks = names.iter().map(|(host, port)| {
            let lookup =
                resolver.resolve(host.trim_start_matches('[').trim_end_matches(']'), *port);
            async move {
                let answer = match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(addrs)) => Ok(addrs),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (key(host, *port), answer)
            }
        });
        let answers: HashMap<_, _> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect();
        let Some(checker) = weak.upgrade() else {
            return Pass::Stop;
        };
        for (name, answer) in &answers {
            if let Err(e) = answer {
                tracing::debug!(%name, error = %e, "DNS resolution failed; keeping the members it gave");
            }
        }
        let members: Vec<(Uri, Origin)> = checker
            .entries()
            .iter()
            .map(|e| (e.member().uri().clone(), e.origin().clone()))
            .collect();
        let plan = plan(&checker.seeds(), &members, &answers);
        // Add first, so that the name is replaced without a moment with no member.
        for (uri, name, reason) in plan.add {
            let origin = if seeds.iter().any(|s| same_endpoint(s, &uri)) {
                Origin::Seed
            } else {
                Origin::Dns { name }
            };
            let _ = checker.add_found(uri, origin, false, &reason);
        }
        for (uri, reason) in plan.remove {
            checker.drop_member(&uri, &reason);
        }
        Pass::Asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn addrs(ports: &[u16]) -> Result<Vec<SocketAddr>, String> {
        Ok(ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect())
    }

    fn dns(s: &str) -> (Uri, Origin) {
        (
            uri(s),
            Origin::Dns {
                name: "etcd.test:2379".into(),
            },
        )
    }

    #[test]
    fn names_only() {
        assert_eq!(name_of(&uri("http://10.0.0.1:2379")), None);
        assert_eq!(name_of(&uri("http://[::1]:2379")), None);
        assert_eq!(
            name_of(&uri("http://etcd.test:2379")),
            Some(("etcd.test".into(), 2379))
        );
    }

    #[test]
    fn a_name_is_replaced_by_its_addresses() {
        let seed = uri("http://etcd.test:2379/");
        let members = [(seed.clone(), Origin::Seed)];
        let answers = HashMap::from([("etcd.test:2379".to_owned(), addrs(&[1, 2, 3]))]);
        let p = plan(std::slice::from_ref(&seed), &members, &answers);
        let added: Vec<String> = p.add.iter().map(|(u, _, _)| u.to_string()).collect();
        assert_eq!(
            added,
            [
                "http://127.0.0.1:1/",
                "http://127.0.0.1:2/",
                "http://127.0.0.1:3/"
            ]
        );
        assert_eq!(p.remove.len(), 1);
        assert!(same_endpoint(&p.remove[0].0, &seed));
        assert!(
            p.remove[0].1.contains("replaced by the 3"),
            "{}",
            p.remove[0].1
        );
    }

    #[test]
    fn re_resolution_adds_and_drops_addresses() {
        let seed = uri("http://etcd.test:2379/");
        let members = [dns("http://127.0.0.1:1/"), dns("http://127.0.0.1:2/")];
        let answers = HashMap::from([("etcd.test:2379".to_owned(), addrs(&[2, 3]))]);
        let p = plan(std::slice::from_ref(&seed), &members, &answers);
        assert_eq!(p.add.len(), 1);
        assert_eq!(p.add[0].0, uri("http://127.0.0.1:3/"));
        assert_eq!(p.remove.len(), 1);
        assert_eq!(p.remove[0].0, uri("http://127.0.0.1:1/"));
    }

    #[test]
    fn a_failed_resolution_keeps_what_is_there() {
        let seed = uri("http://etcd.test:2379/");
        let members = [dns("http://127.0.0.1:1/")];
        let answers = HashMap::from([("etcd.test:2379".to_owned(), Err("timeout".to_owned()))]);
        assert_eq!(
            plan(std::slice::from_ref(&seed), &members, &answers),
            Plan::default()
        );
        // Nothing left of it: the name comes back.
        let p = plan(std::slice::from_ref(&seed), &[], &answers);
        assert_eq!(p.add.len(), 1);
        assert!(same_endpoint(&p.add[0].0, &seed));
        // Not asked: nothing at all.
        assert_eq!(plan(&[seed], &[], &HashMap::new()), Plan::default());
    }

    #[test]
    fn addresses_of_a_removed_seed_go() {
        let members = [
            dns("http://127.0.0.1:1/"),
            (uri("http://10.0.0.9:2379/"), Origin::Seed),
        ];
        let p = plan(&[uri("http://10.0.0.9:2379/")], &members, &HashMap::new());
        assert_eq!(p.add, vec![]);
        assert_eq!(p.remove.len(), 1);
        assert!(p.remove[0].1.contains("removed"));
    }

    /// A resolver answering with thousands of addresses: at most `MAX_MEMBERS` are added.
    #[test]
    fn a_name_adds_at_most_the_cap() {
        let seed = uri("http://etcd.test:2379");
        let ports: Vec<u16> = (10_000..15_000).collect();
        let answers = HashMap::from([("etcd.test:2379".to_owned(), addrs(&ports))]);
        let p = plan(&[seed], &[], &answers);
        assert_eq!(p.add.len(), MAX_MEMBERS);
    }
}
