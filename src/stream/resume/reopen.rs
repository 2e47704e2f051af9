//! Between two streams: how long to wait, whom to avoid, how many times so far.
//!
//! Why a pure state: both helpers take the same decisions each time a stream is lost (avoid
//! its member for a while, or not; count the re-open; wait a doubling delay so that a cluster
//! with no member answering is not hammered), and they are easier to get right on made-up
//! clocks than inside the helpers' `select!` loops, which only act on what this returns.

use std::time::Duration;

use tokio::time::Instant;

use super::avoid::AvoidList;
use super::backoff::Backoff;
use super::{Lost, ReopenOptions};
use crate::balance::AvoidMembers;

/// The re-open bookkeeping of one helper (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Reopen {
    backoff: Backoff,
    avoid: AvoidList,
    reopens: u64,
}

// === impl Reopen ===

impl Reopen {
    pub(crate) fn new(options: &ReopenOptions) -> Self {
        Self {
            backoff: Backoff::new(options.backoff_min, options.backoff_max),
            avoid: AvoidList::new(options.avoid_for),
            reopens: 0,
        }
    }

    /// A stream was lost at `now` and is to be replaced; its member is avoided for a while if
    /// `avoid` (not when every member is slow alike, as during an election). Returns how many
    /// times a stream was replaced so far.
    pub(crate) fn lost(&mut self, lost: &Lost, avoid: bool, now: Instant) -> u64 {
        if let (true, Some(member)) = (avoid, &lost.member) {
            self.avoid.add(member.clone(), now);
        }
        self.reopens = self.reopens.saturating_add(1);
        self.reopens
    }

    /// How long to wait before the next stream is opened (jittered: see
    /// [`Backoff`]); the next wait doubles.
    pub(crate) fn delay(&mut self) -> Duration {
        self.delay_with(crate::timing::unit())
    }

    /// [`delay`](Self::delay) placed by `unit`, a uniform sample in `[0, 1)`.
    pub(crate) fn delay_with(&mut self, unit: f64) -> Duration {
        self.backoff.next_delay(unit)
    }

    /// A stream proved healthy (a watch created, a keep-alive answered): the next loss waits
    /// the shortest delay again.
    pub(crate) fn healthy(&mut self) {
        self.backoff.reset();
    }

    /// The members the next stream, opened at `now`, should avoid.
    pub(crate) fn avoid(&mut self, now: Instant) -> AvoidMembers {
        self.avoid.hint(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Member;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn lost_on(i: usize) -> Lost {
        Lost::new(
            Some(Member::new(
                i,
                format!("http://m{i}:2379").parse().expect("uri"),
            )),
            "Unavailable: gone",
        )
    }

    fn avoided(r: &mut Reopen, now: Instant) -> Vec<usize> {
        r.avoid(now).0.iter().map(Member::index).collect()
    }

    #[test]
    fn losses_back_off_and_avoid_their_member_until_a_stream_proves_healthy() {
        let t0 = Instant::now();
        let options = ReopenOptions {
            backoff_min: ms(50),
            backoff_max: ms(300),
            avoid_for: ms(1000),
            ..ReopenOptions::default()
        };
        let mut r = Reopen::new(&options);
        assert_eq!(r.lost(&lost_on(0), true, t0), 1);
        assert_eq!(r.delay_with(0.0), ms(50));
        assert_eq!(avoided(&mut r, t0 + ms(50)), [0]);
        assert_eq!(r.lost(&lost_on(1), true, t0 + ms(100)), 2);
        assert_eq!(r.delay_with(0.0), ms(100));
        assert_eq!(r.lost(&lost_on(1), true, t0 + ms(300)), 3);
        assert_eq!(r.delay_with(0.0), ms(200));
        assert_eq!(r.delay_with(0.0), ms(300), "capped");
        assert_eq!(avoided(&mut r, t0 + ms(999)), [0, 1]);
        assert_eq!(avoided(&mut r, t0 + ms(1000)), [1], "0's time is over");
        r.healthy();
        assert_eq!(r.delay_with(0.0), ms(50), "reset by a healthy stream");
        assert!(avoided(&mut r, t0 + ms(1300)).is_empty());
    }

    #[test]
    fn a_loss_not_blamed_on_its_member_avoids_nobody_but_counts() {
        let t0 = Instant::now();
        let mut r = Reopen::new(&ReopenOptions::default());
        assert_eq!(r.lost(&lost_on(2), false, t0), 1);
        assert_eq!(r.lost(&Lost::new(None, "quiet"), true, t0), 2);
        assert!(avoided(&mut r, t0).is_empty());
    }

    /// A member dies under a fleet: 500 clients lose their stream on it at the same instant.
    /// Their re-opens (each drawing its own jitter) spread over the back-off's band instead of
    /// landing on one millisecond, first and second re-open alike.
    #[test]
    fn a_fleet_does_not_reopen_in_lockstep() {
        let t0 = Instant::now();
        let mut fleet: Vec<Reopen> = (0..500)
            .map(|_| Reopen::new(&ReopenOptions::default()))
            .collect();
        for round in 0..2 {
            let mut at: Vec<Duration> = fleet
                .iter_mut()
                .map(|r| {
                    r.lost(&lost_on(0), true, t0);
                    r.delay()
                })
                .collect();
            at.sort();
            let (first, last) = (at[0], at[at.len() - 1]);
            let full = ms(50) * (1 << round);
            assert!(
                first >= full / 2 && last <= full,
                "round {round}: {first:?}..{last:?}"
            );
            assert!(
                last - first >= full * 2 / 5,
                "round {round}: spread {first:?}..{last:?}"
            );
            // At most a tenth of the fleet within any 1 ms (lockstep would be all of it).
            let crowded = at
                .windows(50)
                .map(|w| w[w.len() - 1] - w[0])
                .min()
                .expect("a window");
            assert!(
                crowded >= Duration::from_micros(500),
                "round {round}: 50 re-opens within {crowded:?}"
            );
        }
    }
}
