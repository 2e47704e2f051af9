//! The caller's newest auth token, for the streams the drop-in re-creates.
//!
//! Why: etcd-client renews its token when a unary call is refused for it (etcd forgot a simple
//! token unused for `--auth-token-ttl`, or an auth-store change made a JWT stale), and sends
//! the new one from then on. A watch the drop-in re-creates on another member would still
//! carry the token it was opened with, and etcd would cancel it. The channel sees every
//! request etcd-client sends, so it knows the token etcd-client uses now: a re-created
//! stream that was opened with a token is sent with that one.

use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;

/// The `token` metadata key as a `HeaderName` made once.
const TOKEN: HeaderName = HeaderName::from_static(crate::etcd::TOKEN);

/// The token of the newest request that carried one; clones share it.
#[derive(Clone, Debug, Default)]
pub(super) struct LatestToken(Arc<RwLock<Option<HeaderValue>>>);

impl LatestToken {
    /// Notes the token of a request going out (a read lock and a comparison unless it
    /// changed).
    pub(super) fn note(&self, headers: &HeaderMap) {
        let Some(token) = headers.get(&TOKEN) else {
            return;
        };
        if self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(token) {
            return;
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
    }

    /// The metadata of a stream to re-create: with the newest token instead of its own, if it
    /// was opened with one (a stream opened without stays without).
    pub(super) fn freshen(&self, metadata: &MetadataMap) -> MetadataMap {
        let mut headers = metadata.clone().into_headers();
        if headers.contains_key(&TOKEN) {
            if let Some(latest) = self.0.read().unwrap_or_else(|p| p.into_inner()).clone() {
                headers.insert(TOKEN, latest);
            }
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
        assert_eq!(
            latest.freshen(&opened).get("token").unwrap(),
            "t1",
            "nothing newer seen"
        );
        latest.note(&with_token("t1"));
        latest.note(&HeaderMap::new());
        latest.note(&with_token("t2"));
        assert_eq!(latest.freshen(&opened).get("token").unwrap(), "t2");
        let anonymous = MetadataMap::new();
        assert!(
            latest.freshen(&anonymous).get("token").is_none(),
            "a stream opened without a token stays without"
        );
    }
}
