//! The caller's newest auth token, for the streams the drop-in re-creates.
//!
//! Why: etcd-client renews its token when a unary call is refused for it (etcd forgot a simple
//! token unused for `--auth-token-ttl`, or an auth-store change made a JWT stale), and sends
//! the new one from then on. A watch the drop-in re-creates on another member would still
//! carry the token it was opened with, and etcd would cancel it. The channel sees every
//! request etcd-client sends, so it knows the token etcd-client uses now: a re-created
//! stream that was opened with a token is sent with that one.
//!
//! The token is a secret: etcd-client does not mark it sensitive, so the channel does, on every
//! request it carries and on every stream it re-creates. A sensitive value is never entered in
//! HTTP/2's HPACK table (h2 sends it as a literal "never indexed", RFC 7541 §7.1.3) and its
//! `Debug` shows `Sensitive`.

use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;

/// The `token` metadata key as a `HeaderName` made once.
const TOKEN: HeaderName = HeaderName::from_static(crate::etcd::TOKEN);

/// The token of the newest request that carried one; clones share it.
#[derive(Clone, Debug, Default)]
pub(super) struct LatestToken(Arc<RwLock<Option<HeaderValue>>>);

impl LatestToken {
    /// Marks the token of a request going out sensitive and notes it (a read lock and a
    /// comparison unless it changed).
    pub(super) fn note(&self, headers: &mut HeaderMap) {
        let Some(token) = headers.get_mut(&TOKEN) else {
            return;
        };
        token.set_sensitive(true);
        let token = &*token;
        if self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(token) {
            return;
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
    }

    /// The metadata of a stream to re-create: with the newest token instead of its own, if it
    /// was opened with one (a stream opened without stays without), marked sensitive.
    pub(super) fn freshen(&self, metadata: &MetadataMap) -> MetadataMap {
        let mut headers = metadata.clone().into_headers();
        if let Some(token) = headers.get_mut(&TOKEN) {
            if let Some(latest) = self.0.read().unwrap_or_else(|p| p.into_inner()).clone() {
                *token = latest;
            }
            token.set_sensitive(true);
        }
        MetadataMap::from_headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(t: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TOKEN, HeaderValue::from_static(t));
        h
    }

    #[test]
    fn a_stream_opened_with_a_token_is_re_created_with_the_newest() {
        let latest = LatestToken::default();
        let opened = MetadataMap::from_headers(with_token("t1"));
        let fresh = latest.freshen(&opened);
        assert_eq!(fresh.get("token").unwrap(), "t1", "nothing newer seen");
        assert!(
            fresh.get("token").unwrap().is_sensitive(),
            "its own, marked"
        );
        latest.note(&mut with_token("t1"));
        latest.note(&mut HeaderMap::new());
        let mut going_out = with_token("t2");
        latest.note(&mut going_out);
        assert!(going_out[&TOKEN].is_sensitive(), "marked on the way out");
        let fresh = latest.freshen(&opened);
        assert_eq!(fresh.get("token").unwrap(), "t2");
        assert!(fresh.get("token").unwrap().is_sensitive());
        assert!(
            !format!("{latest:?} {fresh:?}").contains("t2"),
            "Debug shows no token"
        );
        let anonymous = MetadataMap::new();
        assert!(
            latest.freshen(&anonymous).get("token").is_none(),
            "a stream opened without a token stays without"
        );
    }
}
