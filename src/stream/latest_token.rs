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
//!
//! Each new token bumps a generation that a stream refused for its token waits on
//! ([`changed_after`](LatestToken::changed_after)): it is created again once etcd-client has
//! a newer token (see `token_wait.rs`), without polling.

use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

/// The `token` metadata key as a `HeaderName` made once.
const TOKEN: HeaderName = HeaderName::from_static(crate::etcd::TOKEN);

/// The token of the newest request that carried one; clones share it.
#[derive(Clone, Debug, Default)]
pub(super) struct LatestToken(Arc<Shared>);

/// What the clones of one [`LatestToken`] share.
#[derive(Debug)]
struct Shared {
    token: RwLock<Option<HeaderValue>>,
    /// How many times the token changed.
    generation: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            token: RwLock::default(),
            generation: watch::Sender::new(0),
        }
    }
}

// === impl LatestToken ===

impl LatestToken {
    /// Marks the token of a request going out sensitive and notes it (a read lock and a
    /// comparison unless it changed).
    pub(super) fn note(&self, headers: &mut HeaderMap) {
        let Some(token) = headers.get_mut(&TOKEN) else {
            return;
        };
        token.set_sensitive(true);
        let token = &*token;
        if self
            .0
            .token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            == Some(token)
        {
            return;
        }
        let mut newest = self.0.token.write().unwrap_or_else(|p| p.into_inner());
        if newest.as_ref() != Some(token) {
            *newest = Some(token.clone());
            self.0.generation.send_modify(|g| *g += 1);
        }
    }

    /// Whether a stream opened with `metadata` carries a token at all (one without never will:
    /// no newer token can help it).
    pub(super) fn carried_by(metadata: &MetadataMap) -> bool {
        metadata.as_ref().contains_key(&TOKEN)
    }

    /// A layer below the channel renewed the token it adds itself (a stream opened without
    /// one, through an auth layer of the tower stack): counts as a newer token.
    pub(super) fn renewed(&self) {
        self.0.generation.send_modify(|g| *g += 1);
    }

    /// How many times the token changed so far (a stream notes it when it is opened).
    pub(super) fn generation(&self) -> u64 {
        *self.0.generation.borrow()
    }

    /// Resolves once the token is newer than at `generation`.
    pub(super) async fn changed_after(&self, generation: u64) {
        let mut changes = self.0.generation.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while it waits.
        let _ = changes.wait_for(|g| *g > generation).await;
    }

    /// The metadata of a stream to re-create: with the newest token instead of its own, if it
    /// was opened with one (a stream opened without stays without), marked sensitive.
    pub(super) fn freshen(&self, metadata: &MetadataMap) -> MetadataMap {
        let mut headers = metadata.clone().into_headers();
        if let Some(token) = headers.get_mut(&TOKEN) {
            if let Some(latest) = self
                .0
                .token
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
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
        assert!(LatestToken::carried_by(&opened));
        assert!(!LatestToken::carried_by(&anonymous));
        assert!(
            latest.freshen(&anonymous).get("token").is_none(),
            "a stream opened without a token stays without"
        );
    }

    #[tokio::test]
    async fn a_new_token_bumps_the_generation_and_wakes_its_waiters() {
        let latest = LatestToken::default();
        assert_eq!(latest.generation(), 0);
        latest.note(&mut with_token("t1"));
        latest.note(&mut with_token("t1"));
        assert_eq!(
            latest.generation(),
            1,
            "the same token again changes nothing"
        );
        let waiter = tokio::spawn({
            let latest = latest.clone();
            async move { latest.changed_after(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        latest.note(&mut with_token("t2"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("waiter");
        assert_eq!(latest.generation(), 2);
        // Already newer: resolves at once.
        latest.changed_after(0).await;
    }
}
