//! The `http`/`https` probe's extra request headers (`checks.active.req_headers`), and which
//! of their values are secrets.
//!
//! Why one module: a header line is written by a person in a config file and may carry a
//! credential (`Authorization: Bearer ...` for a proxy in front of etcd's `/health`). How a line
//! is parsed, whether its value is a secret and how it is shown are one fact, so the config's
//! `Debug`, its validation errors and the probe that sends the header agree on it: a secret
//! value is shown as `***` and sent marked sensitive (`HeaderValue::set_sensitive`).

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{ActiveChecks, ConfigError};

/// Header names whose values are always secrets, compared without regard to case;
/// `checks.active.sensitive_headers` names more.
pub const SENSITIVE_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// What the value of a redacted header line is shown as.
const REDACTED: &str = "***";

/// Whether the value of header `name` is a secret: a name of [`SENSITIVE_HEADERS`] or of
/// `extra`, or a name that is not a valid header name at all (a typo such as `Authorization `
/// may still be meant as one).
fn is_sensitive(name: &str, extra: &[String]) -> bool {
    HeaderName::from_bytes(name.as_bytes()).is_err()
        || SENSITIVE_HEADERS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .any(|s| s.trim().eq_ignore_ascii_case(name))
}

/// A `Name: value` line as errors and `Debug` show it: the value as `***` when it is a secret
/// (see [`is_sensitive`]), the whole line as `***` when it has no colon (no name says what it
/// holds).
pub(crate) fn redact_header_line<'a>(line: &'a str, extra: &[String]) -> Cow<'a, str> {
    match line.split_once(':') {
        None => Cow::Borrowed(REDACTED),
        Some((name, _)) if is_sensitive(name, extra) => Cow::Owned(format!("{name}: {REDACTED}")),
        Some(_) => Cow::Borrowed(line),
    }
}

/// Parses `Name: value` (split at the first `:`, the value trimmed of blanks); a secret value
/// comes out marked sensitive, and an error never repeats it.
fn parse_header_line(line: &str, extra: &[String]) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(
            "expected `Name: value` (the line is not shown: without a name, it may hold a secret)"
                .to_owned(),
        );
    };
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name (expected `Name: value`)"))?;
    let value = value.trim_matches([' ', '\t']);
    let sensitive = is_sensitive(name, extra);
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        if sensitive {
            format!("the value of {name:?} is not a valid header value (not shown: a secret)")
        } else {
            format!("{value:?} is not a valid header value")
        }
    })?;
    value.set_sensitive(sensitive);
    Ok((header, value))
}

/// `req_headers` for `Debug`: each line through [`redact_header_line`].
pub(super) struct ShownHeaders<'a> {
    pub(super) lines: &'a [String],
    pub(super) sensitive: &'a [String],
}

impl fmt::Debug for ShownHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.lines
                    .iter()
                    .map(|l| redact_header_line(l, self.sensitive)),
            )
            .finish()
    }
}

// === impl ActiveChecks ===

impl ActiveChecks {
    /// `req_headers` as a header map, for building probe requests.
    ///
    /// Each entry is split at its first `:`; the name must be a valid HTTP header name and
    /// the value, trimmed of surrounding blanks, a valid header value. Values of
    /// [`SENSITIVE_HEADERS`] and `sensitive_headers` are marked sensitive. Fails on the first bad
    /// entry with its path (`checks.active.req_headers[0]`), a secret value shown as `***`.
    pub fn parsed_req_headers(&self) -> Result<HeaderMap, ConfigError> {
        self.parsed_req_headers_at("checks.active")
    }

    pub(super) fn parsed_req_headers_at(&self, at: &str) -> Result<HeaderMap, ConfigError> {
        let mut map = HeaderMap::new();
        for (i, line) in self.req_headers.iter().enumerate() {
            let (name, value) =
                parse_header_line(line, &self.sensitive_headers).map_err(|reason| {
                    ConfigError::invalid(
                        format!("{at}.req_headers[{i}]"),
                        format!("{:?}", redact_header_line(line, &self.sensitive_headers)),
                        reason,
                    )
                })?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// Every entry of `sensitive_headers` is a header name.
    pub(super) fn validate_sensitive_headers(&self, at: &str) -> Result<(), ConfigError> {
        for (i, name) in self.sensitive_headers.iter().enumerate() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    format!("{at}.sensitive_headers[{i}]"),
                    format!("{name:?}"),
                    "not a valid header name (expected a name such as `X-Api-Key`)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra() -> Vec<String> {
        vec!["X-Api-Key".to_owned()]
    }

    #[test]
    fn secret_values_are_shown_as_stars() {
        for (line, shown) in [
            ("Authorization: Bearer tok", "Authorization: ***"),
            ("proxy-authorization:Basic x", "proxy-authorization: ***"),
            ("COOKIE: a=b", "COOKIE: ***"),
            ("x-api-key: k", "x-api-key: ***"),
            // Not a header name: perhaps a secret's, mistyped.
            ("Authorization : Bearer tok", "Authorization : ***"),
            // No name at all.
            ("Bearer tok", "***"),
            ("User-Agent: curl/7.29.0", "User-Agent: curl/7.29.0"),
            ("Accept:", "Accept:"),
        ] {
            assert_eq!(redact_header_line(line, &extra()), shown, "{line}");
        }
    }

    #[test]
    fn secret_values_are_parsed_sensitive_and_never_echoed() {
        let (name, value) = parse_header_line("Authorization: Bearer tok", &[]).unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value, "Bearer tok");
        assert!(value.is_sensitive());
        assert_eq!(format!("{value:?}"), "Sensitive");
        let (_, value) = parse_header_line("X-Api-Key: k", &extra()).unwrap();
        assert!(value.is_sensitive(), "named by the user");
        let (_, value) = parse_header_line("User-Agent: curl", &extra()).unwrap();
        assert!(!value.is_sensitive());
        let why = parse_header_line("Authorization: Bearer tok\u{7f}en", &[]).unwrap_err();
        assert!(!why.contains("tok"), "{why}");
        let why = parse_header_line("Accept: a\u{7f}b", &[]).unwrap_err();
        assert!(why.contains("a\\u{7f}b"), "not a secret: shown: {why}");
    }

    #[test]
    fn debug_of_the_lines_hides_secrets() {
        let lines = vec![
            "User-Agent: curl".to_owned(),
            "Authorization: Bearer tok".to_owned(),
        ];
        let shown = format!(
            "{:?}",
            ShownHeaders {
                lines: &lines,
                sensitive: &[],
            }
        );
        assert_eq!(shown, r#"["User-Agent: curl", "Authorization: ***"]"#);
    }

    #[test]
    fn config_debug_and_errors_hide_secret_values() {
        let config = crate::config::Config::from_json(
            r#"{"checks": {"active": {"sensitive_headers": ["X-Api-Key"],
                "req_headers": ["Authorization: Bearer tok-1", "x-api-key: key-2", "Accept: a"]}}}"#,
        )
        .unwrap();
        let shown = format!("{config:?} {config:#?}");
        assert!(
            !shown.contains("tok-1") && !shown.contains("key-2"),
            "{shown}"
        );
        assert!(shown.contains("Authorization: ***") && shown.contains("Accept: a"));
        let headers = config.checks.active.parsed_req_headers().unwrap();
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-api-key"].is_sensitive());
        assert!(!headers["accept"].is_sensitive());

        let err = crate::config::Config::from_json(
            r#"{"checks": {"active": {"req_headers": ["Accept: a", "Authorization: Bearer tok-1\u007f"]}}}"#,
        )
        .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("tok-1"), "{shown}");
        assert_eq!(err.path(), Some("checks.active.req_headers[1]"));
        assert!(shown.contains(r#""Authorization: ***""#), "{shown}");
    }
}
