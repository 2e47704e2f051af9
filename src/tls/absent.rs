//! TLS in a build without the `tls` feature: the one choice left is to refuse, up front, what
//! needs it, rather than failing on every connection.

use http::Uri;

use crate::config::Config;

const REASON: &str = "this build has no TLS: enable the `tls` feature of etcd-health";

/// Refuses a config or endpoints that need TLS: `https` probes, `config.tls` files, or
/// `https://` members.
pub(crate) fn refuse(config: &Config, endpoints: &[Uri]) -> Result<(), crate::error::Error> {
    if config.checks.active.probe_type == crate::config::ProbeType::Https {
        return Err(crate::error::Error::Unsupported {
            field: "checks.active.type",
            value: "https".to_owned(),
            reason: REASON,
        });
    }
    if !config.tls.is_empty() {
        return Err(crate::error::Error::Unsupported {
            field: "tls",
            value: format!("{:?}", config.tls),
            reason: REASON,
        });
    }
    if let Some(uri) = endpoints.iter().find(|u| u.scheme_str() == Some("https")) {
        return Err(crate::error::Error::Unsupported {
            field: "endpoints",
            value: crate::config::redact_userinfo(&uri.to_string()).into_owned(),
            reason: REASON,
        });
    }
    Ok(())
}
