//! One renewal of the token at a time, its result (success or error) shared by every request
//! that waits for it, and a pause after a failure.
//!
//! Why: with a wrong or rotated password, a renewal fails; if each waiting request then tried
//! again in turn, every request would cost the members an `Authenticate` (a bcrypt comparison,
//! tens of milliseconds of CPU each), and a fleet of clients would keep the cluster busy
//! checking passwords. So:
//!
//! - one renewal runs at a time, on a task of its own (a caller that gives up does not cancel
//!   it for the others), and whatever it ends with is every waiter's answer;
//! - after a failure no renewal starts for a pause (2 s doubling to 16 s, minus up to half
//!   of it by jitter: at least 1 s, and a fleet's retries do not line up). Meanwhile requests
//!   fail at once with the same clear error when the members refused the credentials (they
//!   will say the same until an operator changes them), or wait for the pause to end, within
//!   their deadline, when the failure was the cluster's (unavailable, a timeout);
//! - a waiter waits no longer than its own deadline.
//!
//! At most one `Authenticate` per pause per stack, then: about one a second at worst, one every
//! 8-16 s once the pause has grown. A success ends the pause and resets it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::timing;

/// The pause after the first failed renewal, before jitter; it doubles with each failure in a
/// row.
const PAUSE_MIN: Duration = Duration::from_secs(2);
/// The longest pause, before jitter.
const PAUSE_MAX: Duration = Duration::from_secs(16);

/// How long to wait after the `failures`-th failed renewal in a row (1-based), placed by
/// `unit` (a uniform sample in `[0, 1)`): in `[d/2, d]` of `d = 2 s * 2^(failures-1)`, capped at
/// 16 s; never under 1 s.
pub(crate) fn pause(failures: u32, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let full = PAUSE_MIN.saturating_mul(1 << exp).min(PAUSE_MAX);
    timing::shorten(full, timing::BACKOFF, unit)
}

/// What a renewal ended with: the token, or the status every waiter gets.
type Outcome = Result<HeaderValue, tonic::Status>;

/// The last failed renewal, while its pause lasts.
#[derive(Clone, Debug)]
struct Failed {
    status: tonic::Status,
    /// The members refused the credentials: fail at once until `until`.
    refused: bool,
    until: Instant,
}

/// The renewal bookkeeping of one stack and its clones.
#[derive(Debug, Default)]
struct State {
    /// The renewal running now: its result, once it has one.
    running: Option<watch::Receiver<Option<Outcome>>>,
    failed: Option<Failed>,
    /// Failed renewals in a row.
    failures: u32,
}

/// What a caller of [`Renewal::renew`] does next.
enum Next {
    /// Use this token (or fail with this status).
    Done(Outcome),
    /// Wait for the renewal running now.
    Await(watch::Receiver<Option<Outcome>>),
    /// Start a renewal and wait for it.
    Start(
        watch::Sender<Option<Outcome>>,
        watch::Receiver<Option<Outcome>>,
    ),
    /// The cluster failed the last renewal: wait until then and look again.
    Sleep(Instant, tonic::Status),
}

/// The current token and its renewal, shared by an [`Auth`](super::Auth) and its clones.
#[derive(Debug, Default)]
pub(super) struct Renewal {
    /// Read on every request: a lock of its own.
    token: RwLock<Option<HeaderValue>>,
    state: Mutex<State>,
    /// Renewals that obtained a token.
    successes: std::sync::atomic::AtomicU64,
    /// Renewals started (each one `Authenticate` sent through the stack).
    started: std::sync::atomic::AtomicU64,
}

// === impl Renewal ===

impl Renewal {
    /// The current token, if any.
    pub(super) fn current(&self) -> Option<HeaderValue> {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Renewals that obtained a token.
    pub(super) fn successes(&self) -> u64 {
        self.successes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Renewals started (`Authenticate` requests sent).
    pub(super) fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token newer than `stale` (the one a member refused; `None` when there was none),
    /// renewing it with `authenticate` unless a renewal runs already (then its result is
    /// shared) or the last one failed and its pause lasts. Waits no later than `deadline`.
    pub(super) async fn renew<F, Fut>(
        self: &Arc<Self>,
        stale: Option<&HeaderValue>,
        deadline: Option<Instant>,
        user: &str,
        authenticate: F,
    ) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, tonic::Status>> + Send + 'static,
    {
        let mut authenticate = Some(authenticate);
        loop {
            let next = self.next(stale, Instant::now(), authenticate.is_some());
            let mut rx = match next {
                Next::Done(outcome) => return outcome,
                Next::Sleep(until, status) => {
                    if deadline.is_some_and(|d| d < until) {
                        return Err(status);
                    }
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                Next::Await(rx) => rx,
                Next::Start(tx, rx) => {
                    let Some(authenticate) = authenticate.take() else {
                        unreachable!("a renewal is started only with `authenticate` at hand");
                    };
                    self.spawn(tx, authenticate(), user.to_owned());
                    rx
                }
            };
            let result = async {
                match rx.wait_for(Option::is_some).await {
                    Ok(outcome) => outcome.clone(),
                    Err(_) => None,
                }
            };
            let outcome = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, result).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        return Err(tonic::Status::deadline_exceeded(format!(
                            "etcd-health: authenticating as {user:?} took longer than the \
                             request's deadline"
                        )))
                    }
                },
                None => result.await,
            };
            match outcome {
                Some(outcome) => return outcome,
                // The renewal's task ended without a word (its runtime shut down): look again.
                None => continue,
            }
        }
    }

    /// The decision of a caller at `now` (see [`renew`](Self::renew)); `may_start` is whether
    /// it can start a renewal.
    fn next(&self, stale: Option<&HeaderValue>, now: Instant, may_start: bool) -> Next {
        let mut state = self.state();
        if let Some(current) = self.current() {
            if Some(&current) != stale {
                return Next::Done(Ok(current));
            }
        }
        if let Some(failed) = state.failed.as_ref().filter(|f| now < f.until) {
            if failed.refused {
                let left = failed.until.saturating_duration_since(now);
                let status = tonic::Status::new(
                    failed.status.code(),
                    format!(
                        "{} (not tried again for {} ms)",
                        failed.status.message(),
                        left.as_millis()
                    ),
                );
                return Next::Done(Err(status));
            }
            return Next::Sleep(failed.until, failed.status.clone());
        }
        if let Some(rx) = state.running.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return Next::Await(rx.clone());
        }
        if !may_start {
            // This caller started one already, which ended without a word.
            return Next::Done(Err(tonic::Status::unavailable(
                "etcd-health: the token renewal ended without an answer",
            )));
        }
        let (tx, rx) = watch::channel(None);
        state.running = Some(rx.clone());
        Next::Start(tx, rx)
    }

    /// Runs `authenticate` on a task of its own and shares what it ends with.
    fn spawn<Fut>(
        self: &Arc<Self>,
        tx: watch::Sender<Option<Outcome>>,
        authenticate: Fut,
        user: String,
    ) where
        Fut: std::future::Future<Output = Result<String, tonic::Status>> + Send + 'static,
    {
        let this = self.clone();
        let started = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        tracing::debug!(user, renewals = started, "authenticating");
        tokio::spawn(async move {
            let result = authenticate.await;
            let outcome = this.finish(result, &user, Instant::now(), timing::unit());
            let _ = tx.send(Some(outcome));
        });
    }

    /// Records how a renewal ended at `now` (`unit` places the pause after a failure).
    fn finish(
        &self,
        result: Result<String, tonic::Status>,
        user: &str,
        now: Instant,
        unit: f64,
    ) -> Outcome {
        let token = result.and_then(|token| {
            let mut token = HeaderValue::from_str(&token).map_err(|_| {
                tonic::Status::internal(format!(
                    "etcd-health: authenticating as {user:?}: the token etcd gave is not a \
                     valid header value"
                ))
            })?;
            token.set_sensitive(true);
            Ok(token)
        });
        let mut state = self.state();
        state.running = None;
        match &token {
            Ok(token) => {
                *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
                state.failed = None;
                state.failures = 0;
                let authentications = self
                    .successes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                tracing::info!(user, authentications, "authenticated");
            }
            Err(status) => {
                state.failures = state.failures.saturating_add(1);
                let wait = pause(state.failures, unit);
                let refused = crate::etcd::refuses_credentials(status.code(), status.message());
                tracing::warn!(
                    user,
                    code = ?status.code(),
                    error = status.message(),
                    failures = state.failures,
                    ?wait,
                    refused,
                    "authentication failed; no new attempt before the pause ends"
                );
                state.failed = Some(Failed {
                    status: status.clone(),
                    refused,
                    until: timing::later(now, wait),
                });
            }
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_pause_is_at_least_a_second_jittered_growing_and_capped() {
        assert_eq!(pause(1, 0.0), ms(2000));
        assert_eq!(pause(1, 0.999_999_9).as_millis(), 1000);
        assert_eq!(pause(2, 0.0), ms(4000));
        assert_eq!(pause(3, 0.5), ms(6000));
        assert_eq!(pause(4, 0.0), ms(16_000));
        assert_eq!(pause(5, 0.0), ms(16_000), "capped");
        assert_eq!(pause(u32::MAX, 0.0), ms(16_000));
        assert!((0..1000).all(|_| pause(1, timing::unit()) >= ms(1000)));
    }

    fn refused() -> tonic::Status {
        tonic::Status::invalid_argument(format!(
            "etcd-health: authenticating as \"root\" failed: {}",
            crate::etcd::AUTH_FAILED
        ))
    }

    /// 64 requests find the token refused at once; the renewal fails. One `Authenticate`,
    /// every request gets its error, and requests during the pause fail at once without one.
    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_is_shared_and_paused() {
        let renewal = Arc::new(Renewal::default());
        let calls = Arc::new(AtomicU32::new(0));
        let authenticate = |calls: Arc<AtomicU32>| {
            move || async move {
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(ms(50)).await;
                Err::<String, _>(refused())
            }
        };
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let (renewal, calls) = (renewal.clone(), calls.clone());
                tokio::spawn(
                    async move { renewal.renew(None, None, "root", authenticate(calls)).await },
                )
            })
            .collect();
        for w in waiters {
            let err = w.await.expect("task").expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains("authentication failed"), "{err:?}");
        }
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "one Authenticate for 64 waiters"
        );
        // During the pause: the error at once, no Authenticate.
        let t = Instant::now();
        let err = renewal
            .renew(None, None, "root", authenticate(calls.clone()))
            .await
            .expect_err("still refused");
        assert_eq!(t.elapsed(), Duration::ZERO, "failed fast");
        assert!(err.message().contains("not tried again for"), "{err:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // After the pause (at most 2 s), one more.
        tokio::time::sleep(ms(2001)).await;
        let _ = renewal
            .renew(None, None, "root", authenticate(calls.clone()))
            .await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(renewal.started(), 2);
        assert_eq!(renewal.successes(), 0);
    }

    /// 10 s of 64 requests in a loop against a wrong password: about one `Authenticate` per
    /// pause, never more than one a second.
    #[tokio::test(start_paused = true)]
    async fn a_wrong_password_under_load_costs_about_one_authenticate_a_second_at_most() {
        let renewal = Arc::new(Renewal::default());
        let calls = Arc::new(AtomicU32::new(0));
        let end = Instant::now() + Duration::from_secs(10);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (renewal, calls) = (renewal.clone(), calls.clone());
                tokio::spawn(async move {
                    let mut failed = 0u32;
                    while Instant::now() < end {
                        let calls = calls.clone();
                        let r = renewal
                            .renew(
                                None,
                                Some(Instant::now() + ms(2000)),
                                "root",
                                move || async move {
                                    calls.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(ms(80)).await;
                                    Err::<String, _>(refused())
                                },
                            )
                            .await;
                        assert!(r.is_err());
                        failed += 1;
                        tokio::time::sleep(ms(5)).await;
                    }
                    failed
                })
            })
            .collect();
        let mut requests = 0;
        for t in tasks {
            requests += t.await.expect("task");
        }
        let calls = calls.load(Ordering::Relaxed);
        assert!(requests > 64 * 1000, "{requests} requests");
        // Pauses of [1, 2] s, [2, 4] s, [4, 8] s, ...: 3 to 6 in 10 s.
        assert!(
            (2..=10).contains(&calls),
            "{calls} Authenticate calls in 10 s"
        );
    }

    /// A failure of the cluster (not a refusal): waiters with time left wait for the pause to
    /// end and the next renewal, which succeeds; one whose deadline comes first gets the error.
    #[tokio::test(start_paused = true)]
    async fn after_a_cluster_failure_waiters_wait_within_their_deadline() {
        let renewal = Arc::new(Renewal::default());
        let first = renewal
            .renew(None, None, "root", || async {
                Err::<String, _>(tonic::Status::unavailable("etcdserver: no leader"))
            })
            .await;
        assert_eq!(first.expect_err("failed").code(), tonic::Code::Unavailable);
        let short = renewal
            .renew(None, Some(Instant::now() + ms(100)), "root", || async {
                Ok::<_, tonic::Status>("never".to_owned())
            })
            .await;
        assert_eq!(short.expect_err("no time").code(), tonic::Code::Unavailable);
        let t = Instant::now();
        let token = renewal
            .renew(None, Some(Instant::now() + ms(5000)), "root", || async {
                Ok::<_, tonic::Status>("t2".to_owned())
            })
            .await
            .expect("renewed after the pause");
        assert_eq!(token, "t2");
        assert!(t.elapsed() >= ms(1000), "{:?}", t.elapsed());
        assert_eq!(renewal.started(), 2);
        // A success ends the pause: the next stale token renews at once.
        let t3 = renewal
            .renew(Some(&token), None, "root", || async {
                Ok::<_, tonic::Status>("t3".to_owned())
            })
            .await
            .expect("t3");
        assert_eq!(t3, "t3");
    }

    /// A waiter's deadline bounds its wait for a slow renewal, which goes on for the others.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline_and_the_renewal_goes_on() {
        let renewal = Arc::new(Renewal::default());
        let slow = || async {
            tokio::time::sleep(ms(3000)).await;
            Ok::<_, tonic::Status>("t1".to_owned())
        };
        let err = renewal
            .renew(None, Some(Instant::now() + ms(200)), "root", slow)
            .await
            .expect_err("deadline");
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        let token = renewal
            .renew(None, None, "root", || async {
                Ok::<_, tonic::Status>("other".to_owned())
            })
            .await
            .expect("the first renewal's token");
        assert_eq!(token, "t1", "shared, not a second Authenticate");
        assert_eq!(renewal.started(), 1);
    }
}
