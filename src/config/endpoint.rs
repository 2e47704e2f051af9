//! Parsing the list of etcd member endpoints.
//!
//! Endpoints come from flags, environment variables and files, written by hand, so they are
//! checked once, up front, with errors naming the entry (`endpoints[2] = "..."`), instead of
//! surfacing later as a connect failure that the health checker would mistake for a dead
//! member. Like etcd-client, a bare `host:port` means `http://host:port`.

use std::fmt;

use http::Uri;

use super::ConfigError;

/// The transport of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain text (`http://`, or no scheme at all).
    Http,
    /// TLS (`https://`).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One etcd member endpoint, checked: the URL the caller gave, taken apart. (Named so it is
/// not confused with tonic's `Endpoint`, the connection settings built from it.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name or IP address; an IPv6 address keeps its brackets (`[::1]`).
    pub host: String,
    /// TCP port (never 0).
    pub port: u16,
    /// The string the endpoint was parsed from, for messages.
    pub original: String,
}

/// The former name of [`EndpointUrl`].
#[deprecated(note = "renamed `EndpointUrl` (tonic's `Endpoint` is another thing)")]
pub type Endpoint = EndpointUrl;

impl EndpointUrl {
    /// The endpoint as a URI, `scheme://host:port/`.
    pub fn uri(&self) -> Uri {
        // Always succeeds: the parts were taken from a URI that parsed. The fallback keeps
        // this function total all the same.
        Uri::builder()
            .scheme(self.scheme.as_str())
            .authority(format!("{}:{}", self.host, self.port))
            .path_and_query("/")
            .build()
            .unwrap_or_default()
    }

    /// Parses one endpoint; `index` is only used in error paths (`endpoints[index]`).
    fn parse(index: usize, original: &str) -> Result<Self, ConfigError> {
        let path = format!("endpoints[{index}]");
        let invalid =
            |reason: String| ConfigError::invalid(path.clone(), format!("{original:?}"), reason);
        let text = if let Some((scheme, _)) = original.split_once("://") {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(invalid(format!(
                    "unsupported scheme {scheme:?}; expected http, https or none"
                )));
            }
            original.to_owned()
        } else {
            format!("http://{original}")
        };
        let uri: Uri = text
            .parse()
            .map_err(|e| invalid(format!("not a URL ({e})")))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => {
                return Err(invalid(format!(
                    "unsupported scheme {s:?}; expected http, https or none"
                )))
            }
            None => return Err(invalid("not a URL (no scheme)".to_owned())),
        };
        let Some(authority) = uri.authority() else {
            return Err(invalid("missing host".to_owned()));
        };
        if authority.as_str().contains('@') {
            return Err(invalid(
                "credentials in the endpoint are not supported; use the client's options"
                    .to_owned(),
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("missing host".to_owned()));
        }
        // `http` is lenient about hosts (it takes `ht[` from `ht[::2]x:1`): accept only a
        // host name or IPv4 address, or an IPv6 address in brackets.
        if !valid_host(host) {
            return Err(invalid(format!(
                "invalid host {host:?}; expected a host name, an IPv4 address or [IPv6]"
            )));
        }
        // `http` drops a port that does not fit in 16 bits; tell that from a missing one.
        let written_port = authority
            .as_str()
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let port = match (authority.port_u16(), written_port) {
            (Some(0), _) => return Err(invalid("port 0 is not a valid port".to_owned())),
            (Some(p), _) => p,
            (None, Some(p)) => {
                return Err(invalid(format!("port {p} is out of range (1..=65535)")))
            }
            (None, None) => return Err(invalid("missing port (as in host:2379)".to_owned())),
        };
        if let Some(pq) = uri.path_and_query() {
            if pq.as_str() != "/" && !pq.as_str().is_empty() {
                return Err(invalid(format!(
                    "has path {:?}; an endpoint is only scheme://host:port",
                    pq.as_str()
                )));
            }
        }
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            original: original.to_owned(),
        })
    }

    /// Identity for duplicate detection: host names are case-insensitive.
    fn key(&self) -> (Scheme, String, u16) {
        (self.scheme, self.host.to_ascii_lowercase(), self.port)
    }
}

impl fmt::Display for EndpointUrl {
    /// `scheme://host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A host name or IPv4 address (letters, digits, `-`, `_`, `.`), or an IPv6 address in
/// brackets, optionally with a zone (`[fe80::1%25eth0]`).
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return false;
        };
        let (addr, zone) = inner.split_once("%25").unwrap_or((inner, "x"));
        return addr.parse::<std::net::Ipv6Addr>().is_ok()
            && !zone.is_empty()
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether two URLs reach the same endpoint (scheme and authority, host case-insensitive):
/// the identity of a member everywhere in the crate.
pub(crate) fn same_endpoint(a: &Uri, b: &Uri) -> bool {
    a.scheme_str() == b.scheme_str()
        && a.authority().map(|x| x.as_str().to_ascii_lowercase())
            == b.authority().map(|x| x.as_str().to_ascii_lowercase())
}

/// Parses and checks a list of endpoints (`http://h:p`, `https://h:p` or bare `h:p`).
///
/// Fails on an empty list, an entry that is not a URL, a scheme other than http/https, a
/// missing host or port, a path other than `/`, credentials in the URL, or the same member
/// listed twice (`a:1` and `http://A:1` are the same).
pub fn parse_endpoints<S: AsRef<str>>(endpoints: &[S]) -> Result<Vec<EndpointUrl>, ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::NoEndpoints);
    }
    let mut out: Vec<EndpointUrl> = Vec::with_capacity(endpoints.len());
    for (i, text) in endpoints.iter().enumerate() {
        let endpoint = EndpointUrl::parse(i, text.as_ref())?;
        if let Some(first) = out.iter().position(|e| e.key() == endpoint.key()) {
            return Err(ConfigError::invalid(
                format!("endpoints[{i}]"),
                format!("{:?}", endpoint.original),
                format!(
                    "duplicate of endpoints[{first}] = {:?}",
                    out[first].original
                ),
            ));
        }
        out.push(endpoint);
    }
    Ok(out)
}
