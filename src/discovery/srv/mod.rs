//! Discovery by DNS SRV records (`discovery.srv`, the `dns-srv` feature): the members are the
//! targets of `_etcd-client-ssl._tcp.<domain>` and `_etcd-client._tcp.<domain>`.
//!
//! Why: this is how etcd documents client discovery (etcd's `client/pkg/srv`, etcdctl's
//! `--discovery-srv`), and how Kubernetes headless services and Consul publish a changing set
//! of members with their ports. etcdctl looks the records up once; a long-lived client must
//! follow them, so they are asked again every `discovery.srv.interval` like host names are
//! (jittered), and each answer is reconciled with the members SRV gave before. A failed lookup
//! changes nothing. [`plan`] is the pure decision; [`run`] the thin driver on hickory's
//! resolver.

mod plan;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use http::Uri;

use self::plan::{dial, services, url, Answer, Dial, Service, Target};
use super::driver::{Ask, Pass};
use super::Origin;
use super::WeakCluster;
use crate::config::SrvConfig;

/// The resolver `srv` asks: its `name_server`, else the system's configuration.
fn resolver(srv: &SrvConfig, timeout: Duration) -> Result<TokioResolver, ResolveError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = match srv.name_server.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(server)) => {
            let servers =
                NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                provider,
            )
        }
        // `Config::validate` refused any other value.
        Some(Err(_)) | None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    // One bounded try per pass; the next pass is the retry.
    options.timeout = timeout;
    options.attempts = 1;
    Ok(builder.build())
}

/// Asks one record and the addresses of its targets.
async fn ask(
    resolver: &TokioResolver,
    service: &Service,
    https_by_address: bool,
    timeout: Duration,
) -> Answer {
    let fqdn = format!("{}.", service.record);
    let looked_up = match tokio::time::timeout(timeout, resolver.srv_lookup(fqdn)).await {
        Ok(Ok(records)) => Ok(records),
        // No such name, or no SRV data under it: the record does not exist.
        Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => {
            return Answer {
                record: service.record.clone(),
                targets: Ok(Vec::new()),
            };
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    let records = match looked_up {
        Ok(records) => records,
        Err(e) => {
            return Answer {
                record: service.record.clone(),
                targets: Err(e),
            }
        }
    };
    let mut targets = Vec::new();
    // etcd ignores priority and weight: every target is a member, balanced by health and
    // load like the others.
    for record in records.iter() {
        let raw = record.target().to_ascii();
        let port = record.port();
        let name = format!("{}:{port}", raw.strip_suffix('.').unwrap_or(&raw));
        let urls = match dial(&raw, port, service.scheme, https_by_address) {
            None => continue,
            Some(Dial::Url(uri)) => Ok(vec![uri]),
            Some(Dial::Resolve(host)) => {
                let lookup = resolver.lookup_ip(format!("{host}."));
                match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(ips)) => Ok(ips
                        .iter()
                        .filter_map(|ip| url(service.scheme, ip, port))
                        .collect::<Vec<Uri>>()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no address within {timeout:?}")),
                }
            }
        };
        if !targets.iter().any(|t: &Target| t.name == name) {
            targets.push(Target { name, urls });
        }
    }
    Answer {
        record: service.record.clone(),
        targets: Ok(targets),
    }
}

/// Starts the SRV driver: a pass at start and every `discovery.srv.interval` (jittered: a
/// fleet of clients must not query DNS in step).
pub(crate) async fn run(weak: WeakCluster) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let Some(srv) = checker.config().discovery.srv.clone() else {
        return;
    };
    let timeout = checker.config().discovery.timeout;
    let https_by_address = checker.config().tls.domain_name.is_some();
    drop(checker);
    let services = services(&srv);
    let resolver = match resolver(&srv, timeout) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::error!(%error, domain = %srv.domain, "SRV discovery is off: the system's DNS configuration could not be read (set discovery.srv.name_server)");
            return;
        }
    };
    tracing::debug!(domain = %srv.domain, records = ?services.iter().map(|s| &s.record).collect::<Vec<_>>(), "SRV discovery started");
    let ask = Records {
        srv,
        services,
        resolver,
        timeout,
        https_by_address,
        failing: false,
    };
    let interval = ask.srv.interval;
    super::driver::run(weak, ask, interval, None).await;
}

/// The SRV driver's question: etcd's two records and their targets' addresses.
struct Records {
    srv: SrvConfig,
    services: [Service; 2],
    resolver: TokioResolver,
    /// `discovery.timeout`: how long a lookup may take.
    timeout: Duration,
    /// `tls.domain_name` is set: `https` targets are dialled by address.
    https_by_address: bool,
    /// The last pass found no member (warned once until it answers again).
    failing: bool,
}

impl Ask for Records {
    async fn pass(&mut self, weak: &WeakCluster) -> Pass {
        let (srv, timeout) = (&self.srv, self.timeout);
        let asks = self
            .services
            .iter()
            .map(|service| ask(&self.resolver, service, self.https_by_address, timeout));
        let answers = futures_util::future::join_all(asks).await;
        let Some(checker) = weak.upgrade() else {
            return Pass::Stop;
        };
        let members: Vec<(Uri, Origin)> = checker
            .entries()
            .iter()
            .map(|e| (e.member().uri().clone(), e.origin().clone()))
            .collect();
        let plan = plan::plan(&checker.seeds(), &members, &answers);
        for answer in &answers {
            match &answer.targets {
                Err(error) => {
                    tracing::debug!(record = %answer.record, %error, "SRV lookup failed; keeping the members it gave")
                }
                Ok(targets) => {
                    for t in targets {
                        if let Err(error) = &t.urls {
                            tracing::debug!(record = %answer.record, target = %t.name, %error, "SRV target's address lookup failed; keeping the members it gave");
                        }
                    }
                }
            }
        }
        match &plan.kept {
            Some(why) if !self.failing => {
                self.failing = true;
                tracing::warn!(domain = %srv.domain, why = %why, "SRV discovery found no member; the members found before keep serving");
            }
            Some(_) => {}
            None if self.failing => {
                self.failing = false;
                tracing::info!(domain = %srv.domain, "SRV discovery answers again");
            }
            None => {}
        }
        if plan.skipped > 0 {
            tracing::warn!(
                domain = %srv.domain,
                skipped = plan.skipped,
                max = super::reconcile::MAX_MEMBERS,
                "SRV records list more members than the health state takes; the rest are not added"
            );
        }
        // Add first, so that a target that moved is never without a member.
        for (uri, origin, reason) in plan.add {
            let _ = checker.add_found(uri, origin, false, &reason);
        }
        for (uri, reason) in plan.remove {
            checker.drop_member(&uri, &reason);
        }
        Pass::Asked
    }
}
