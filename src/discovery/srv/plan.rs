//! The pure part of SRV discovery: which records to ask, what URL a record's target becomes,
//! and which members an answer adds and drops.
//!
//! Why pure: the rules that decide whether a client keeps its members when DNS misbehaves (a
//! timeout, one of the two records missing, a target whose address lookup failed) are where
//! SRV discovery could talk itself out of a working cluster; each is a unit test here.

use std::net::IpAddr;

use http::Uri;

use crate::config::{same_endpoint, SrvConfig};
use crate::discovery::reconcile::MAX_MEMBERS;
use crate::member::Origin;

/// One of the two SRV records asked, with the scheme its targets are reached with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Service {
    /// The record's fully qualified name, without the final dot:
    /// `_etcd-client-ssl._tcp.etcd.example.com`.
    pub(crate) record: String,
    /// `https` for the `-ssl` record, `http` for the other.
    pub(crate) scheme: &'static str,
}

/// The records etcd's `client/pkg/srv.GetClient` asks, in its order: `_etcd-client-ssl` first
/// (`https`), then `_etcd-client` (`http`), each with `-<service_name>` appended when set.
pub(crate) fn services(srv: &SrvConfig) -> [Service; 2] {
    let domain = srv.domain.strip_suffix('.').unwrap_or(&srv.domain);
    let suffix = if srv.service_name.is_empty() {
        String::new()
    } else {
        format!("-{}", srv.service_name)
    };
    [("-ssl", "https"), ("", "http")].map(|(ssl, scheme)| Service {
        record: format!("_etcd-client{ssl}{suffix}._tcp.{domain}"),
        scheme,
    })
}

/// How a record's target is dialed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dial {
    /// By this URL as it is (an address, or a name kept for its certificate).
    Url(Uri),
    /// By the addresses of this name (without its final dot), each a member.
    Resolve(String),
}

/// What the target `target` (as the record gives it, often with a final dot) at `port` of a
/// record with `scheme` becomes. `https_by_address`: `tls.domain_name` is set, so an `https`
/// target may be dialed by address (its certificate is checked against that name). `None`
/// for the target `.` ("no such service here", RFC 2782) and targets that make no URL.
pub(crate) fn dial(target: &str, port: u16, scheme: &str, https_by_address: bool) -> Option<Dial> {
    // SRV targets are fully qualified (`etcd-0.example.com.`); a URL's host is not.
    let host = target.strip_suffix('.').unwrap_or(target);
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return url(scheme, ip, port).map(Dial::Url);
    }
    if scheme == "https" && !https_by_address {
        return format!("{scheme}://{host}:{port}/")
            .parse()
            .ok()
            .map(Dial::Url);
    }
    Some(Dial::Resolve(host.to_owned()))
}

/// `scheme://ip:port/`.
pub(crate) fn url(scheme: &str, ip: IpAddr, port: u16) -> Option<Uri> {
    let addr = std::net::SocketAddr::new(ip, port);
    format!("{scheme}://{addr}/").parse().ok()
}

/// One target of an answer: its `host:port` and the URLs it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port`, as in [`Origin::Srv`]'s `target`.
    pub(crate) name: String,
    /// Its URLs, or why its addresses are unknown.
    pub(crate) urls: Result<Vec<Uri>, String>,
}

/// One record's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The record's name.
    pub(crate) record: String,
    /// Its targets (empty: the record does not exist), or why the lookup failed.
    pub(crate) targets: Result<Vec<Target>, String>,
}

/// What one SRV pass changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Members to add: URL, origin, why.
    pub(crate) add: Vec<(Uri, Origin, String)>,
    /// Members to drop: URL, why.
    pub(crate) remove: Vec<(Uri, String)>,
    /// Why nothing changed although records were asked: every lookup failed or no record
    /// named a usable target. The members of the last good answer keep serving.
    pub(crate) kept: Option<String>,
    /// URLs answered but not added: the health state is full.
    pub(crate) skipped: usize,
}

/// The changes one pass makes. `seeds` are the endpoints the caller gave; `members` the
/// current members with their origins; `answers` the two records' answers.
///
/// - No record answered with a target: nothing changes (`kept` says why), as etcd refuses
///   to start from an empty SRV answer; the last good set keeps serving.
/// - A record whose lookup failed keeps the members it gave; so does a target whose address
///   lookup failed. A record that does not exist (`NXDOMAIN`, no SRV data) gives none.
/// - Members found by SRV that no answer gives any more are dropped; URLs given that no
///   member has are added (the health state takes at most [`MAX_MEMBERS`]). Seeds (also one
///   SRV had found before the caller gave it) and members found otherwise are never dropped
///   here.
pub(crate) fn plan(seeds: &[Uri], members: &[(Uri, Origin)], answers: &[Answer]) -> Plan {
    let mut plan = Plan::default();
    let answered = answers
        .iter()
        .filter_map(|a| a.targets.as_ref().ok())
        .any(|targets| !targets.is_empty());
    if !answered {
        let why: Vec<String> = answers
            .iter()
            .map(|a| match &a.targets {
                Ok(_) => format!("{}: no record", a.record),
                Err(e) => format!("{}: {e}", a.record),
            })
            .collect();
        plan.kept = Some(why.join("; "));
        return plan;
    }
    let unknown = |record: &str, target: &str| {
        answers.iter().any(|a| {
            a.record == record
                && match &a.targets {
                    Err(_) => true,
                    Ok(targets) => targets.iter().any(|t| t.name == target && t.urls.is_err()),
                }
        })
    };
    // Each URL answered, with the record and target that gave it first.
    let mut wanted: Vec<(&Uri, &str, &str)> = Vec::new();
    for answer in answers {
        let Ok(targets) = &answer.targets else {
            continue;
        };
        for target in targets {
            for uri in target.urls.iter().flatten() {
                if !wanted.iter().any(|(u, _, _)| same_endpoint(u, uri)) {
                    wanted.push((uri, &answer.record, &target.name));
                }
            }
        }
    }
    for (uri, origin) in members {
        let Origin::Srv { record, target } = origin else {
            continue;
        };
        if unknown(record, target)
            || wanted.iter().any(|(u, _, _)| same_endpoint(u, uri))
            || seeds.iter().any(|s| same_endpoint(s, uri))
        {
            continue;
        }
        plan.remove.push((
            uri.clone(),
            format!("{record} no longer lists {target} at this address"),
        ));
    }
    let mut room = MAX_MEMBERS.saturating_sub(members.len() - plan.remove.len());
    for (uri, record, target) in wanted {
        if members.iter().any(|(m, _)| same_endpoint(m, uri)) {
            continue;
        }
        if room == 0 {
            plan.skipped += 1;
            continue;
        }
        room -= 1;
        let origin = Origin::Srv {
            record: record.to_owned(),
            target: target.to_owned(),
        };
        plan.add
            .push((uri.clone(), origin, format!("{record} lists {target}")));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn srv(record: &str, target: &str) -> Origin {
        Origin::Srv {
            record: record.into(),
            target: target.into(),
        }
    }

    const PLAIN: &str = "_etcd-client._tcp.example.com";
    const SSL: &str = "_etcd-client-ssl._tcp.example.com";

    fn target(name: &str, urls: &[&str]) -> Target {
        Target {
            name: name.into(),
            urls: Ok(urls.iter().map(|u| uri(u)).collect()),
        }
    }

    fn answer(record: &str, targets: Vec<Target>) -> Answer {
        Answer {
            record: record.into(),
            targets: Ok(targets),
        }
    }

    fn failed(record: &str) -> Answer {
        Answer {
            record: record.into(),
            targets: Err("timed out".into()),
        }
    }

    fn added(p: &Plan) -> Vec<String> {
        p.add.iter().map(|(u, _, _)| u.to_string()).collect()
    }

    fn removed(p: &Plan) -> Vec<String> {
        p.remove.iter().map(|(u, _)| u.to_string()).collect()
    }

    #[test]
    fn the_records_asked_are_etcds() {
        let names = |srv: &SrvConfig| services(srv).map(|s| (s.record, s.scheme));
        assert_eq!(
            names(&SrvConfig::new("example.com")),
            [(SSL.to_owned(), "https"), (PLAIN.to_owned(), "http")]
        );
        let mut named = SrvConfig::new("example.com.");
        named.service_name = "east".into();
        assert_eq!(
            names(&named),
            [
                ("_etcd-client-ssl-east._tcp.example.com".to_owned(), "https"),
                ("_etcd-client-east._tcp.example.com".to_owned(), "http")
            ]
        );
    }

    #[test]
    fn a_target_loses_its_final_dot_and_keeps_its_port() {
        assert_eq!(
            dial("etcd-0.example.com.", 2379, "http", false),
            Some(Dial::Resolve("etcd-0.example.com".into()))
        );
        // https without tls.domain_name: by name, for the certificate.
        assert_eq!(
            dial("etcd-0.example.com.", 2479, "https", false),
            Some(Dial::Url(uri("https://etcd-0.example.com:2479/")))
        );
        assert_eq!(
            dial("etcd-0.example.com", 2479, "https", true),
            Some(Dial::Resolve("etcd-0.example.com".into()))
        );
        // Addresses as targets (which etcd's own tests use) are dialed as they are.
        assert_eq!(
            dial("10.0.0.1", 2480, "https", false),
            Some(Dial::Url(uri("https://10.0.0.1:2480/")))
        );
        assert_eq!(
            dial("::1", 2379, "http", false),
            Some(Dial::Url(uri("http://[::1]:2379/")))
        );
        // `.`: the service is decidedly not offered here.
        assert_eq!(dial(".", 2379, "http", false), None);
    }

    #[test]
    fn targets_of_both_records_become_members() {
        let answers = [
            answer(
                SSL,
                vec![target(
                    "a.example.com:2479",
                    &["https://a.example.com:2479/"],
                )],
            ),
            answer(
                PLAIN,
                vec![target(
                    "b.example.com:2379",
                    &["http://10.0.0.2:2379/", "http://10.0.0.3:2379/"],
                )],
            ),
        ];
        let p = plan(&[], &[], &answers);
        assert_eq!(
            added(&p),
            [
                "https://a.example.com:2479/",
                "http://10.0.0.2:2379/",
                "http://10.0.0.3:2379/"
            ]
        );
        assert_eq!(p.add[1].1, srv(PLAIN, "b.example.com:2379"));
        assert_eq!(p.remove, []);
        assert_eq!(p.kept, None);
    }

    #[test]
    fn a_target_gone_is_dropped_and_a_new_one_added() {
        let members = [
            (uri("http://10.0.0.1:2379/"), srv(PLAIN, "a:2379")),
            (uri("http://10.0.0.2:2379/"), srv(PLAIN, "b:2379")),
            (uri("http://10.0.0.9:2379/"), Origin::Seed),
        ];
        let answers = [
            answer(SSL, vec![]),
            answer(
                PLAIN,
                vec![
                    target("b:2379", &["http://10.0.0.2:2379/"]),
                    target("c:2379", &["http://10.0.0.3:2379/"]),
                ],
            ),
        ];
        let p = plan(&[], &members, &answers);
        assert_eq!(added(&p), ["http://10.0.0.3:2379/"]);
        assert_eq!(removed(&p), ["http://10.0.0.1:2379/"]);
        assert!(
            p.remove[0].1.contains("no longer lists a:2379"),
            "{:?}",
            p.remove
        );
    }

    #[test]
    fn failures_keep_the_last_good_members() {
        let members = [
            (uri("http://10.0.0.1:2379/"), srv(PLAIN, "a:2379")),
            (
                uri("https://s.example.com:2479/"),
                srv(SSL, "s.example.com:2479"),
            ),
        ];
        // Both lookups failed, or neither record exists: nothing changes.
        for answers in [
            [failed(SSL), failed(PLAIN)],
            [answer(SSL, vec![]), answer(PLAIN, vec![])],
        ] {
            let p = plan(&[], &members, &answers);
            assert_eq!((p.add.len(), p.remove.len()), (0, 0));
            assert!(p.kept.is_some());
        }
        // One record failed: its members stay while the other's follow their answer.
        let p = plan(
            &[],
            &members,
            &[
                failed(SSL),
                answer(PLAIN, vec![target("b:2379", &["http://10.0.0.2:2379/"])]),
            ],
        );
        assert_eq!(added(&p), ["http://10.0.0.2:2379/"]);
        assert_eq!(removed(&p), ["http://10.0.0.1:2379/"]);
        // A target whose addresses are unknown keeps its members; the `-ssl` record, now
        // missing while the other answers, drops its own.
        let unresolved = Target {
            name: "a:2379".into(),
            urls: Err("SERVFAIL".into()),
        };
        let p = plan(
            &[],
            &members,
            &[answer(SSL, vec![]), answer(PLAIN, vec![unresolved])],
        );
        assert_eq!(removed(&p), ["https://s.example.com:2479/"]);
        assert_eq!(p.add, []);
    }

    #[test]
    fn members_found_otherwise_are_not_srvs_to_drop_or_add() {
        let members = [
            (uri("http://10.0.0.1:2379/"), Origin::Seed),
            (
                uri("http://10.0.0.2:2379/"),
                Origin::Dns {
                    name: "etcd:2379".into(),
                },
            ),
        ];
        let answers = [
            answer(SSL, vec![]),
            answer(PLAIN, vec![target("a:2379", &["http://10.0.0.1:2379/"])]),
        ];
        let p = plan(&[], &members, &answers);
        assert_eq!((p.add.len(), p.remove.len()), (0, 0));
        // A member SRV found, which the caller then gave as an endpoint, is a seed now.
        let members = [(uri("http://10.0.0.1:2379/"), srv(PLAIN, "a:2379"))];
        let answers = [answer(
            PLAIN,
            vec![target("b:2379", &["http://10.0.0.2:2379/"])],
        )];
        let p = plan(&[uri("http://10.0.0.1:2379")], &members, &answers);
        assert_eq!(p.remove, []);
        assert_eq!(
            removed(&plan(&[], &members, &answers)),
            ["http://10.0.0.1:2379/"]
        );
    }

    #[test]
    fn an_answer_adds_at_most_the_cap() {
        let urls: Vec<String> = (0..100)
            .map(|i| format!("http://10.0.0.{i}:2379/"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let members = [(uri("http://10.9.9.9:2379/"), Origin::Seed)];
        let p = plan(
            &[],
            &members,
            &[answer(PLAIN, vec![target("many:2379", &urls)])],
        );
        assert_eq!(p.add.len(), MAX_MEMBERS - 1);
        assert_eq!(p.skipped, 100 - (MAX_MEMBERS - 1));
    }
}
