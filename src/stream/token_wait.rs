//! A stream the drop-in opened again, refused for its auth token: wait for etcd-client's next
//! token, then open it again, within a bound.
//!
//! Why: etcd checks a watch's token when it creates the watch, not while it runs. A watch the
//! drop-in moves to another member is created there again, with the newest token etcd-client
//! sent (see `latest_token.rs`); that member may have forgotten it (etcd's `simple` tokens
//! live in each member's memory and are dropped after `--auth-token-ttl` unused there) or
//! judge it stale (a JWT issued before an auth store change). etcd then refuses the creation
//! with a cancel whose reason says so (`"etcdserver: invalid auth token"`, `"... revision of
//! auth store is old"`), and the drop-in used to hand that cancel to the caller: the watch was
//! gone for good, although the caller's own token had been fine when it created it.
//!
//! The drop-in holds no credentials (etcd-client does), so it cannot renew the token itself:
//! it keeps the stream's watches and waits until etcd-client sends a newer token on any
//! request (it renews when one of its requests is refused, with
//! `ConnectOptions::with_auto_token_refresh(true)`), then opens the stream again with it. A
//! token change wakes the stream (no polling); re-creations are at least a jittered,
//! doubling back-off apart (250 ms to 4 s), so tokens that go stale as fast as they come cost
//! the members little. After [`MAX_REFUSALS`] refusals in a row, or [`TOKEN_WAIT`] without a
//! newer token, the stream ends with `Unauthenticated` and etcd's reason, saying what the
//! drop-in waited for.

use std::time::Duration;

use tokio::time::Instant;

use crate::timing;

/// Refusals in a row (each with a newer token) after which the stream ends.
pub(super) const MAX_REFUSALS: u32 = 5;
/// The longest a refused stream waits for etcd-client's next token.
pub(super) const TOKEN_WAIT: Duration = Duration::from_secs(60);
/// The back-off after the first refusal; it doubles with each further one, up to
/// [`MAX_BACKOFF`], jittered.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest back-off between two re-creations.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The stream's refusals for its token, if the last opening was refused.
#[derive(Debug, Default)]
pub(super) struct TokenWait {
    refused: Option<Refused>,
}

/// The last refusal.
#[derive(Debug)]
struct Refused {
    /// The token generation the refused stream was opened with.
    generation: u64,
    /// Refusals in a row.
    refusals: u32,
    /// etcd's reason (no token in it).
    reason: String,
    /// No re-creation before this.
    not_before: Instant,
    /// Without a newer token by then, the stream ends.
    give_up_at: Instant,
}

/// What a refused stream does when it would open again.
#[derive(Debug)]
pub(super) enum Next {
    /// Open it (nothing refused, or a newer token and the back-off over).
    Open,
    /// Wait until then (or until a newer token comes).
    WaitUntil(Instant),
    /// End it with this status.
    GiveUp(tonic::Status),
}

// === impl TokenWait ===

impl TokenWait {
    /// The stream, opened with the token of `generation`, was refused for it at `now` with
    /// etcd's `reason`; `unit` places the back-off's jitter. `Err`: the status to end the
    /// stream with, after [`MAX_REFUSALS`] in a row.
    pub(super) fn refused(
        &mut self,
        generation: u64,
        reason: &str,
        now: Instant,
        unit: f64,
    ) -> Result<Duration, tonic::Status> {
        let refusals = self.refused.as_ref().map_or(0, |r| r.refusals) + 1;
        if refusals > MAX_REFUSALS {
            self.refused = None;
            return Err(tonic::Status::unauthenticated(format!(
                "{reason} (etcd-health: the stream, opened again on another member, was refused \
                 for its auth token {MAX_REFUSALS} times in a row, each time with a newer token \
                 of etcd-client)"
            )));
        }
        let full = BACKOFF
            .saturating_mul(1 << (refusals - 1).min(16))
            .min(MAX_BACKOFF);
        let backoff = timing::shorten(full, timing::BACKOFF, unit);
        self.refused = Some(Refused {
            generation,
            refusals,
            reason: reason.to_owned(),
            not_before: timing::later(now, backoff),
            give_up_at: timing::later(now, TOKEN_WAIT),
        });
        Ok(backoff)
    }

    /// The token generation a refused stream waits to see passed (the token being at
    /// `current` now); `None` when nothing was refused or a newer token is already there.
    pub(super) fn waits_for(&self, current: u64) -> Option<u64> {
        self.refused
            .as_ref()
            .map(|r| r.generation)
            .filter(|&g| current <= g)
    }

    /// What to do when the stream would open at `now`, the token being at generation
    /// `current`.
    pub(super) fn next(&self, current: u64, now: Instant) -> Next {
        let Some(r) = &self.refused else {
            return Next::Open;
        };
        if current > r.generation {
            return match now >= r.not_before {
                true => Next::Open,
                false => Next::WaitUntil(r.not_before),
            };
        }
        if now >= r.give_up_at {
            return Next::GiveUp(tonic::Status::unauthenticated(format!(
                "{} (etcd-health: the stream, opened again on another member, was refused for \
                 its auth token, and etcd-client sent no newer token within {TOKEN_WAIT:?}; it \
                 renews its token when one of its requests is refused, with \
                 ConnectOptions::with_auto_token_refresh(true))",
                r.reason
            )));
        }
        Next::WaitUntil(r.give_up_at)
    }

    /// A member accepted the stream: refusals start over.
    pub(super) fn accepted(&mut self) {
        if let Some(r) = self.refused.take() {
            tracing::info!(
                refusals = r.refusals,
                "stream accepted with a newer auth token"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASON: &str = "etcdserver: invalid auth token";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `next` as a comparable value: `None` for `GiveUp`.
    fn next(w: &TokenWait, current: u64, now: Instant) -> Option<Option<Instant>> {
        match w.next(current, now) {
            Next::Open => Some(None),
            Next::WaitUntil(at) => Some(Some(at)),
            Next::GiveUp(_) => None,
        }
    }

    #[test]
    fn a_refused_stream_opens_again_only_with_a_newer_token_after_the_back_off() {
        let t0 = Instant::now();
        let mut w = TokenWait::default();
        assert_eq!(next(&w, 3, t0), Some(None), "nothing refused: open");
        assert_eq!(w.waits_for(3), None);
        assert_eq!(w.refused(3, REASON, t0, 0.0).expect("first"), ms(250));
        assert_eq!(
            w.waits_for(3),
            Some(3),
            "waits for a token newer than the refused one"
        );
        assert_eq!(
            next(&w, 3, t0 + ms(300)),
            Some(Some(t0 + TOKEN_WAIT)),
            "the same token: no re-creation"
        );
        assert_eq!(w.waits_for(4), None, "a newer one came");
        assert_eq!(next(&w, 4, t0 + ms(100)), Some(Some(t0 + ms(250))));
        assert_eq!(next(&w, 4, t0 + ms(250)), Some(None));
        w.accepted();
        assert_eq!(next(&w, 4, t0 + ms(300)), Some(None));
        assert_eq!(
            w.refused(4, REASON, t0, 0.0).expect("again"),
            ms(250),
            "accepted: the count started over"
        );
    }

    #[test]
    fn back_offs_double_with_jitter_and_refusals_in_a_row_end_the_stream() {
        let t0 = Instant::now();
        let mut w = TokenWait::default();
        let waits: Vec<Duration> = (0..MAX_REFUSALS as u64)
            .map(|g| w.refused(g, REASON, t0, 0.0).expect("within the bound"))
            .collect();
        assert_eq!(waits, vec![ms(250), ms(500), ms(1000), ms(2000), ms(4000)]);
        let end = w.refused(9, REASON, t0, 0.0).expect_err("one too many");
        assert_eq!(end.code(), tonic::Code::Unauthenticated);
        assert!(end.message().starts_with(REASON), "{end:?}");
        assert!(end.message().contains("5 times in a row"), "{end:?}");

        let mut w = TokenWait::default();
        let jittered = w.refused(0, REASON, t0, 0.999).expect("first");
        assert!(
            jittered >= ms(125) && jittered < ms(250),
            "up to half taken off: {jittered:?}"
        );
    }

    #[test]
    fn without_a_newer_token_the_stream_ends_after_the_wait_with_etcd_s_reason() {
        let t0 = Instant::now();
        let mut w = TokenWait::default();
        w.refused(7, REASON, t0, 0.5).expect("first");
        assert_eq!(
            next(&w, 7, t0 + TOKEN_WAIT - ms(1)),
            Some(Some(t0 + TOKEN_WAIT))
        );
        let Next::GiveUp(status) = w.next(7, t0 + TOKEN_WAIT) else {
            panic!("gives up");
        };
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().starts_with(REASON), "{status:?}");
        assert!(
            status.message().contains("with_auto_token_refresh"),
            "{status:?}"
        );
    }
}
