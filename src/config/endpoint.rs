//! Parsing the list of etcd member endpoints.
//!
//! Endpoints come from flags, environment variables and files, written by hand, so they are
//! checked once, up front, with errors naming the entry (`endpoints[2] = "..."`), instead of
//! surfacing later as a connect failure that the health checker would mistake for a dead
//! member. Like etcd-client, a bare `host:port` means `http://host:port`.
//!
//! A URL may carry a password (`http://user:pw@host:2379`): this module also owns how a URL is
//! shown ([`redact_userinfo`]) and which part of it names a member ([`without_userinfo`]), so
//! no error, log line or `Debug` output repeats the userinfo.

use std::borrow::Cow;
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
        // Every error shows the entry with its userinfo, if any, as `***`.
        let shown = format!("{:?}", redact_userinfo(original));
        let invalid = |reason: String| ConfigError::invalid(path.clone(), shown.clone(), reason);
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

/// Whether two URLs reach the same endpoint (scheme and `host:port`, host case-insensitive,
/// userinfo ignored): the identity of a member everywhere in the crate.
pub(crate) fn same_endpoint(a: &Uri, b: &Uri) -> bool {
    let host_port = |u: &Uri| {
        u.authority().map(|x| {
            let text = x.as_str();
            let at = text.rfind('@').map_or(0, |i| i + 1);
            text[at..].to_ascii_lowercase()
        })
    };
    a.scheme_str() == b.scheme_str() && host_port(a) == host_port(b)
}

/// `url` as errors and logs show it: any userinfo (`user:password@`) replaced by `***`
/// (`http://***@10.0.0.1:2379`). Works on text that is not a valid URL too, since it shows what
/// was refused, and errs on the side of hiding: everything between the scheme (or the start)
/// and the last `@` goes, so a `/`, `?` or `#` typed in a password does not end the hidden part
/// early (an `@` in a path or query hides more than needed; endpoints have neither).
pub(crate) fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let is_scheme = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    };
    let start = url
        .find("://")
        .filter(|&i| is_scheme(&url[..i]))
        .map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &url[start + at..])),
        None => Cow::Borrowed(url),
    }
}

/// `uri` without its userinfo, or `None` when it has none: the URL a member is known by and
/// dialed at (gRPC sends it as `:authority`, which must not carry userinfo, RFC 9113 §8.3.1).
pub(crate) fn without_userinfo(uri: &Uri) -> Option<Uri> {
    let authority = uri.authority()?.as_str();
    let (_, host_port) = authority.rsplit_once('@')?;
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host_port.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The URL of `endpoint` without userinfo, and the endpoint sending that URL as its requests'
/// `:authority` (tonic sends the endpoint's own authority, userinfo and all, otherwise).
pub(crate) fn endpoint_without_userinfo(
    endpoint: tonic::transport::Endpoint,
) -> (Uri, tonic::transport::Endpoint) {
    match without_userinfo(endpoint.uri()) {
        Some(bare) => (bare.clone(), endpoint.origin(bare)),
        None => (endpoint.uri().clone(), endpoint),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_shown_as_stars() {
        for (given, shown) in [
            ("http://user:pw@10.0.0.1:2379", "http://***@10.0.0.1:2379"),
            ("https://pw@h:1/", "https://***@h:1/"),
            ("user:pw@h:1", "***@h:1"),
            // A `/`, `?`, `#` or `@` typed in a password does not end the hidden part.
            ("http://us/er:p@w@h:1", "http://***@h:1"),
            ("http://u:p?w#x@h:1", "http://***@h:1"),
            // Nor does a `://` that is not after a scheme start it late.
            ("u:pw@h:1/x://y", "***@h:1/x://y"),
            ("ftp://u:p@h:1", "ftp://***@h:1"),
            ("http://10.0.0.1:2379", "http://10.0.0.1:2379"),
            // More hidden than needed, never less.
            ("http://h:1/?q=a@b", "http://***@b"),
            ("", ""),
        ] {
            assert_eq!(redact_userinfo(given), shown, "{given}");
        }
        assert!(matches!(redact_userinfo("http://h:1"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// Whatever surrounds it, a password before the last `@` is never shown.
        #[test]
        fn a_password_is_never_shown(
            scheme in "([a-z+.-]{1,6}://)?",
            user in "[^@]{0,12}",
            rest in "[^@]{0,24}",
        ) {
            let url = format!("{scheme}{user}:Pw-Zq8vK2@{rest}");
            let shown = redact_userinfo(&url);
            proptest::prop_assert!(!shown.contains("Pw-Zq8vK2"), "{}", shown);
            proptest::prop_assert!(shown.ends_with(&format!("***@{rest}")), "{}", shown);
        }
    }

    #[test]
    fn without_userinfo_keeps_the_rest() {
        let uri: Uri = "http://user:pw@Host:2379/".parse().unwrap();
        let bare = without_userinfo(&uri).expect("had userinfo");
        assert_eq!(bare, "http://Host:2379/".parse::<Uri>().unwrap());
        assert!(same_endpoint(&uri, &bare));
        assert!(same_endpoint(&uri, &"http://host:2379".parse().unwrap()));
        assert!(without_userinfo(&bare).is_none());
        assert!(!same_endpoint(&uri, &"https://host:2379".parse().unwrap()));
    }

    #[test]
    fn no_error_repeats_the_userinfo() {
        for bad in [
            "http://user:pw-Secret1@10.0.0.1:2379",
            "ftp://user:pw-Secret1@10.0.0.1:2379",
            "http://user:pw-Secret1@10.0.0.1",
            "http://user:pw-Secret1@10.0.0.1:2379/path",
            "http://user:pw-Secret1@10.0.0.1:99999",
            "http://us er:pw-Secret1@10.0.0.1:2379",
            "http://user:pw-Secret1@[::1:2379",
            "user:pw-Secret1@10.0.0.1:2379",
        ] {
            let err = parse_endpoints(&[bad]).expect_err(bad);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("pw-Secret1"), "{shown}");
            assert!(!shown.contains("user:"), "{shown}");
            assert_eq!(err.path(), Some("endpoints[0]"), "{shown}");
        }
        let err = parse_endpoints(&["http://user:pw@10.0.0.1:2379"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "endpoints[0] = \"http://***@10.0.0.1:2379\" is invalid: credentials in the \
             endpoint are not supported; use the client's options"
        );
    }
}
