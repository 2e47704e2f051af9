//! etcd-client's `Authenticate` calls, paused after the members refused the credentials.
//!
//! Why: through the drop-in, etcd-client renews its own token (`with_auto_token_refresh`):
//! concurrent requests refused for their token wait on one lock, and each of them, once it
//! has it, authenticates again unless the token changed meanwhile. A failed renewal changes
//! nothing, so with a wrong or rotated password every waiting request costs the members an
//! `Authenticate` (a bcrypt check), one after the other, for ever. The channel sees those
//! calls: once the members refused a set of credentials, the same call (the same request
//! bytes) is answered with that refusal at once, without reaching a member, for a pause of at
//! least 1 s (jittered, doubling up to 16 s: [`crate::auth::pause`]). The first call after the
//! pause goes through; an answer that is not a refusal ends the pause.
//!
//! Only a hash of the request (keyed per process) is kept, never the password. Failures of the
//! cluster (unavailable, a timeout) pass as they are: they say nothing of the credentials.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::time::Instant;

use crate::timing;

/// etcd's `Authenticate` path.
pub(super) const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
/// At most this many refused credentials are remembered (a client uses one or two); past it,
/// the ones whose pause ended longest ago are forgotten first.
const MAX_REMEMBERED: usize = 16;

/// One set of credentials the members refused.
#[derive(Clone, Debug)]
struct Refused {
    code: tonic::Code,
    message: String,
    /// Refusals in a row (the pause doubles with each).
    failures: u32,
    until: Instant,
}

/// The refused credentials of one channel, by a keyed hash of the request.
#[derive(Debug, Default)]
pub(super) struct AuthPause {
    hasher: std::collections::hash_map::RandomState,
    refused: Mutex<HashMap<u64, Refused>>,
}

// === impl AuthPause ===

impl AuthPause {
    /// The key of an `Authenticate` request's body.
    pub(super) fn key(&self, body: &Bytes) -> u64 {
        self.hasher.hash_one(body.as_ref())
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Refused>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer to give a call with `key` at `now` without sending it, while its pause lasts.
    pub(super) fn check(&self, key: u64, now: Instant) -> Option<tonic::Status> {
        let refused = self.refused();
        let r = refused.get(&key).filter(|r| now < r.until)?;
        let left = r.until.saturating_duration_since(now);
        Some(tonic::Status::new(
            r.code,
            format!(
                "{} (etcd-health: the members refused these credentials; not tried again for \
                 {} ms)",
                r.message,
                left.as_millis()
            ),
        ))
    }

    /// How the call with `key`, sent, was answered at `now`: the status of a trailers-only
    /// answer, if any (`unit` places the pause after a refusal).
    pub(super) fn answered(
        &self,
        key: u64,
        status: Option<&tonic::Status>,
        now: Instant,
        unit: f64,
    ) {
        let mut refused = self.refused();
        let Some(status) = status.filter(|s| {
            s.code() != tonic::Code::Ok && crate::etcd::refuses_credentials(s.code(), s.message())
        }) else {
            if refused.remove(&key).is_some() {
                tracing::info!("credentials accepted again: Authenticate calls go through");
            }
            return;
        };
        let failures = refused
            .get(&key)
            .map_or(0, |r| r.failures)
            .saturating_add(1);
        let wait = crate::auth::pause(failures, unit);
        if !refused.contains_key(&key) && refused.len() >= MAX_REMEMBERED {
            if let Some(oldest) = refused.iter().min_by_key(|(_, r)| r.until).map(|(k, _)| *k) {
                refused.remove(&oldest);
            }
        }
        tracing::warn!(
            code = ?status.code(),
            error = status.message(),
            failures,
            ?wait,
            "the members refused etcd-client's credentials; the same Authenticate is answered \
             with this refusal until the pause ends"
        );
        refused.insert(
            key,
            Refused {
                code: status.code(),
                message: status.message().to_owned(),
                failures,
                until: timing::later(now, wait),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn refusal() -> tonic::Status {
        tonic::Status::invalid_argument(crate::etcd::AUTH_FAILED)
    }

    #[test]
    fn refused_credentials_are_answered_at_once_until_the_pause_ends() {
        let pause = AuthPause::default();
        let t0 = Instant::now();
        let wrong = pause.key(&Bytes::from_static(b"\x0a\x04root\x12\x05wrong"));
        let right = pause.key(&Bytes::from_static(b"\x0a\x04root\x12\x05right"));
        assert_ne!(wrong, right);
        assert!(pause.check(wrong, t0).is_none(), "nothing known: sent");
        pause.answered(wrong, Some(&refusal()), t0, 0.0);
        let answer = pause
            .check(wrong, t0 + Duration::from_millis(10))
            .expect("paused");
        assert_eq!(answer.code(), tonic::Code::InvalidArgument);
        assert!(
            answer.message().starts_with(crate::etcd::AUTH_FAILED),
            "{answer:?}"
        );
        assert!(!answer.message().contains("wrong"));
        assert!(pause.check(right, t0).is_none(), "other credentials pass");
        // The pause (2 s without jitter) ends: one call goes through, refused again: 4 s.
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(2000))
            .is_none());
        pause.answered(
            wrong,
            Some(&refusal()),
            t0 + Duration::from_millis(2050),
            0.0,
        );
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(6000))
            .is_some());
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(6050))
            .is_none());
        // Accepted: no pause any more, and the count starts over.
        pause.answered(wrong, None, t0 + Duration::from_millis(6100), 0.0);
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(6101))
            .is_none());
        pause.answered(
            wrong,
            Some(&refusal()),
            t0 + Duration::from_millis(7000),
            0.0,
        );
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(8999))
            .is_some());
        assert!(pause
            .check(wrong, t0 + Duration::from_millis(9000))
            .is_none());
    }

    #[test]
    fn failures_of_the_cluster_do_not_pause() {
        let pause = AuthPause::default();
        let t0 = Instant::now();
        let key = pause.key(&Bytes::from_static(b"creds"));
        pause.answered(
            key,
            Some(&tonic::Status::unavailable("etcdserver: no leader")),
            t0,
            0.0,
        );
        assert!(pause.check(key, t0).is_none());
    }

    #[test]
    fn remembers_a_bounded_number_of_credentials() {
        let pause = AuthPause::default();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let key = pause.key(&Bytes::from(i.to_be_bytes().to_vec()));
            pause.answered(
                key,
                Some(&refusal()),
                t0 + Duration::from_millis(i.into()),
                0.0,
            );
        }
        assert_eq!(pause.refused().len(), MAX_REMEMBERED);
        let newest = pause.key(&Bytes::from(999u32.to_be_bytes().to_vec()));
        assert!(pause.check(newest, t0 + Duration::from_secs(1)).is_some());
    }
}
