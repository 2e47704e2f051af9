//! The one discovery driver: when to ask a source of members (pure, [`Cadence`]) and the thin
//! loop that asks ([`run`]).
//!
//! Why one: `MemberList`, DNS names, DNS SRV and the application's [`MemberSource`] were four
//! loops that did the same thing with a different question: ask at start, apply the answer,
//! ask again one jittered interval after the last answer, sooner when something suggests the
//! membership changed (no sooner than a minimum gap after the last pass), and stop when the
//! health state goes. Only the question differs ([`Ask`]); the timing is one pure
//! [`Cadence`], tested on made-up clocks, and the loop only reads the clock, asks when the
//! cadence says so, and sleeps until its next deadline or a wake-up.
//!
//! [`MemberSource`]: super::MemberSource

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::WeakCluster;
use crate::event::HealthEvent;
use crate::timing;

/// How a pass went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// Asked, and applied what came back (or kept the members on a failure).
    Asked,
    /// Nobody to ask yet (no member): wait for a wake-up.
    Idle,
    /// The health state is gone: stop.
    Stop,
}

/// One source of members: the question the driver asks each pass.
pub(super) trait Ask: Send + 'static {
    /// Asks once and applies the answer to the health state behind `weak`.
    fn pass(&mut self, weak: &WeakCluster) -> impl Future<Output = Pass> + Send;

    /// Whether a health event suggests asking soon (none by default).
    fn wanted_by(&self, _event: &HealthEvent) -> bool {
        false
    }
}

// === impl Cadence ===

/// When to ask: a pure schedule over `now` (see the [module docs](self)).
#[derive(Clone, Debug)]
pub(super) struct Cadence {
    /// One pass this long (before jitter) after the last; zero: no periodic pass.
    interval: Duration,
    /// A pass asked for comes no sooner than this after the last; `None`: nothing can ask for
    /// one (then the driver stops once no pass is due).
    gap: Option<Duration>,
    /// When the next pass is due.
    due: Option<Instant>,
    /// When the last pass ended.
    last: Option<Instant>,
    /// The jitter draws: [`timing::unit`], or a fixed one in tests.
    draw: fn() -> f64,
}

impl Cadence {
    /// A pass at `now`, then every `interval` (jittered); passes asked for come no sooner than
    /// `gap` after the last (`None`: none can be asked for).
    pub(super) fn new(interval: Duration, gap: Option<Duration>, now: Instant) -> Self {
        Self::with_draw(interval, gap, now, timing::unit)
    }

    /// [`new`](Self::new), with the jitter draws from `draw`.
    pub(super) fn with_draw(
        interval: Duration,
        gap: Option<Duration>,
        now: Instant,
        draw: fn() -> f64,
    ) -> Self {
        Self {
            interval,
            gap,
            due: Some(now),
            last: None,
            draw,
        }
    }

    /// Whether a pass is due at `now` (it then counts as running: nothing is due until
    /// [`passed`](Self::passed) or [`idle`](Self::idle)).
    pub(super) fn poll(&mut self, now: Instant) -> bool {
        if self.due.is_some_and(|due| due <= now) {
            self.due = None;
            return true;
        }
        false
    }

    /// A pass ended at `now`: the next one interval on (up to a fifth taken off by jitter, so
    /// a fleet of clients does not ask in step), none with an interval of zero.
    pub(super) fn passed(&mut self, now: Instant) {
        self.last = Some(now);
        self.due = (!self.interval.is_zero()).then(|| {
            let wait = timing::shorten(self.interval, timing::PERIODIC, (self.draw)());
            timing::later(now, wait)
        });
    }

    /// A pass found nobody to ask: none is due until one is asked for.
    pub(super) fn idle(&mut self) {
        self.due = None;
    }

    /// Something at `now` suggests asking: a pass as soon as the gap after the last allows
    /// (sooner if one was due sooner). Ignored when nothing may ask for passes.
    pub(super) fn want(&mut self, now: Instant) {
        let Some(gap) = self.gap else { return };
        let at = self.last.map_or(now, |l| timing::later(l, gap)).max(now);
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// When the next pass is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// No pass is due and none can be asked for: the driver may stop.
    pub(super) fn finished(&self) -> bool {
        self.due.is_none() && self.gap.is_none()
    }
}

/// What woke the driver (fed to the cadence at the next turn, with that turn's `now`).
enum Wake {
    Timer,
    Wanted,
    Passed(Pass),
}

/// The driver: asks `ask` at start, then every `interval` (zero: once); `wanted`, when given,
/// asks for a pass no sooner than `gap` after the last (so do events [`Ask::wanted_by`]
/// picks). Stops when the health state goes (see [`Cadence`]).
pub(super) async fn run<A: Ask>(
    weak: WeakCluster,
    mut ask: A,
    interval: Duration,
    wanted: Option<(Arc<Notify>, Duration)>,
) {
    let Some(checker) = weak.upgrade() else {
        return;
    };
    let mut cadence = Cadence::new(interval, wanted.as_ref().map(|w| w.1), Instant::now());
    let mut events = checker.subscribe();
    let mut changes = checker.changes();
    drop(checker);
    let mut woke = Wake::Timer;
    loop {
        let now = Instant::now();
        match std::mem::replace(&mut woke, Wake::Timer) {
            Wake::Timer => {}
            Wake::Wanted => cadence.want(now),
            Wake::Passed(Pass::Asked) => cadence.passed(now),
            Wake::Passed(Pass::Idle) => cadence.idle(),
            Wake::Passed(Pass::Stop) => return,
        }
        if cadence.poll(now) {
            woke = Wake::Passed(ask.pass(&weak).await);
            continue;
        }
        if cadence.finished() {
            return;
        }
        let wanted = async {
            match &wanted {
                Some((wanted, _)) => wanted.notified().await,
                None => std::future::pending().await,
            }
        };
        woke = tokio::select! {
            _ = timing::sleep_until(cadence.poll_timeout()) => Wake::Timer,
            _ = wanted => Wake::Wanted,
            event = events.recv() => match event {
                Ok(event) if ask.wanted_by(&event) => Wake::Wanted,
                Ok(_) | Err(RecvError::Lagged(_)) => Wake::Timer,
                Err(RecvError::Closed) => return,
            },
            // Changes of the health state only tell when it is gone.
            changed = changes.changed() => match changed {
                Ok(()) => Wake::Timer,
                Err(_) => return,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_pass_at_start_then_one_interval_after_each() {
        let t0 = Instant::now();
        let mut c = Cadence::with_draw(ms(1000), None, t0, || 0.0);
        assert_eq!(c.poll_timeout(), Some(t0));
        assert!(c.poll(t0));
        assert!(!c.poll(t0), "one pass at a time");
        assert_eq!(c.poll_timeout(), None);
        c.passed(t0 + ms(300));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1300)), "from the pass's end");
        assert!(!c.poll(t0 + ms(1299)));
        assert!(c.poll(t0 + ms(1300)));
        // Jitter only shortens, by up to a fifth.
        let mut c = Cadence::with_draw(ms(1000), None, t0, || 0.5);
        assert!(c.poll(t0));
        c.passed(t0);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(900)));
    }

    #[test]
    fn an_interval_of_zero_asks_once() {
        let t0 = Instant::now();
        let mut c = Cadence::with_draw(Duration::ZERO, None, t0, || 0.0);
        assert!(c.poll(t0));
        c.passed(t0 + ms(5));
        assert_eq!(c.poll_timeout(), None);
        assert!(c.finished(), "nothing can ask for another");
        // One that can be asked for waits for that.
        let mut c = Cadence::with_draw(Duration::ZERO, Some(ms(1000)), t0, || 0.0);
        assert!(c.poll(t0));
        c.passed(t0 + ms(5));
        assert!(!c.finished());
        c.want(t0 + ms(2000));
        assert!(c.poll(t0 + ms(2000)));
    }

    /// A pass asked for comes at once, but no sooner than the gap after the last pass, and
    /// never later than one due already; without a gap, nothing asks.
    #[test]
    fn a_pass_asked_for_keeps_the_gap() {
        let t0 = Instant::now();
        let mut c = Cadence::with_draw(ms(30_000), Some(ms(1000)), t0, || 0.0);
        assert!(c.poll(t0));
        c.passed(t0 + ms(100));
        c.want(t0 + ms(200));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1100)), "the gap");
        assert!(c.poll(t0 + ms(1100)));
        c.passed(t0 + ms(1200));
        c.want(t0 + ms(5000));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(5000)), "at once");
        let mut c = Cadence::with_draw(ms(30_000), None, t0, || 0.0);
        assert!(c.poll(t0));
        c.passed(t0);
        c.want(t0 + ms(10));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(30_000)), "ignored");
    }

    /// Nobody to ask: no pass until one is asked for (a seed added).
    #[test]
    fn an_idle_pass_waits_to_be_asked() {
        let t0 = Instant::now();
        let mut c = Cadence::with_draw(ms(30_000), Some(ms(1000)), t0, || 0.0);
        assert!(c.poll(t0));
        c.idle();
        assert_eq!(c.poll_timeout(), None);
        assert!(!c.finished());
        c.want(t0 + ms(50));
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(50)),
            "no pass ended yet: at once"
        );
    }
}
