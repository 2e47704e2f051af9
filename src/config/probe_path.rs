//! `checks.active.http_path` as errors and `Debug` show it: query values, a fragment and
//! anything that looks like userinfo masked.
//!
//! Why: the `http`/`https` probe's path is written by a person in a config file and may carry
//! a credential, as a proxy or load balancer in front of etcd's `/health` may ask for one
//! (`/health?token=...`, `/health?access_key=...`), or userinfo pasted with a URL
//! (`//user:password@proxy/health`). The path is sent as configured; every place that shows it
//! (the config's `Debug`, its validation errors) goes through [`redact_http_path`], so none
//! repeats the secret. Probe findings, events, logs and metric labels never carry the path.
//! A secret in the path itself (`/token/abc`) cannot be told from a name: send it as a
//! sensitive header (`checks.active.req_headers`) instead.

use std::borrow::Cow;

/// What a masked part is shown as.
const REDACTED: &str = "***";

/// `path` as errors and `Debug` show it: each query parameter's value as `***` (a parameter
/// without `=` wholly, since it may be a bare token), a fragment as `#***`, and anything up to
/// the last `@` before the query (userinfo, `user:password@`) as `***`. A path with none of
/// these is shown as it is. Works on text that is not a valid path too, since it shows what
/// was refused.
pub(crate) fn redact_http_path(path: &str) -> Cow<'_, str> {
    let (before_fragment, fragment) = match path.split_once('#') {
        Some((before, _)) => (before, Some(REDACTED)),
        None => (path, None),
    };
    let (path_part, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    if fragment.is_none() && query.is_none() && !path_part.contains('@') {
        return Cow::Borrowed(path);
    }
    let mut shown = String::with_capacity(path.len());
    match path_part.rfind('@') {
        Some(at) => {
            // Keep what says where the userinfo starts: a scheme's `://` or leading slashes.
            let start = match path_part.find("://") {
                Some(i) if i < at => i + 3,
                _ => path_part.len() - path_part.trim_start_matches('/').len(),
            };
            shown.push_str(&path_part[..start.min(at)]);
            shown.push_str(REDACTED);
            shown.push_str(&path_part[at..]);
        }
        None => shown.push_str(path_part),
    }
    if let Some(query) = query {
        shown.push('?');
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                shown.push('&');
            }
            match param.split_once('=') {
                Some((name, _)) => {
                    shown.push_str(name);
                    shown.push('=');
                    shown.push_str(REDACTED);
                }
                None if param.is_empty() => {}
                None => shown.push_str(REDACTED),
            }
        }
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::redact_http_path;

    #[test]
    fn a_path_without_query_or_userinfo_is_shown_as_it_is() {
        for path in ["/health", "/", "/v3/health", "health", "/a b", ""] {
            assert_eq!(redact_http_path(path), path);
        }
    }

    #[test]
    fn query_values_are_masked_and_their_names_kept() {
        for (path, shown) in [
            ("/health?token=s3cret", "/health?token=***"),
            (
                "/health?exclude=NOSPACE&access_key=k3y",
                "/health?exclude=***&access_key=***",
            ),
            ("/health?s3cret", "/health?***"),
            ("/health?", "/health?"),
            ("/health?a=1&&b=", "/health?a=***&&b=***"),
            ("/health?a=x=y", "/health?a=***"),
            ("/health?a=1#frag", "/health?a=***#***"),
            ("/health#s3cret?x", "/health#***"),
        ] {
            assert_eq!(redact_http_path(path), shown, "{path}");
        }
    }

    #[test]
    fn anything_up_to_the_last_at_sign_is_masked_as_userinfo() {
        for (path, shown) in [
            ("//user:s3cret@proxy/health", "//***@proxy/health"),
            ("/user:s3cret@proxy/health", "/***@proxy/health"),
            ("http://user:s3cret@proxy/health", "http://***@proxy/health"),
            ("user:s3cret@proxy/health", "***@proxy/health"),
            ("//a@b:s3cret@proxy/health", "//***@proxy/health"),
            (
                "//user:s3cret@proxy/health?t=s3cret",
                "//***@proxy/health?t=***",
            ),
            // An `@` in the query is the query's: its value is masked as one.
            ("/health?t=s3cret@x", "/health?t=***"),
        ] {
            assert_eq!(redact_http_path(path), shown, "{path}");
        }
    }

    #[test]
    fn no_masked_text_remains_in_what_is_shown() {
        let secret = "s3cretZ";
        for path in [
            format!("/health?token={secret}"),
            format!("/health?{secret}"),
            format!("/health?a=b&token={secret}&c=d"),
            format!("//root:{secret}@proxy/health"),
            format!("http://root:{secret}@proxy/health"),
            format!("/health#{secret}"),
            format!("health?token={secret}"),
            format!("/a b?token={secret}"),
        ] {
            let shown = redact_http_path(&path);
            assert!(!shown.contains(secret), "{path} shown as {shown}");
        }
    }
}
