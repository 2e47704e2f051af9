//! When to probe each member: a pure schedule.
//!
//! Why pure: the probe timing decides how soon a dead member leaves rotation and a recovered
//! one comes back, and its rules interlock (an interval per status, 0 turning probes off for
//! that status, a restart of the schedule on every status change, never before an ejection
//! ends, a member found by discovery probed at once, one that keeps failing probed only once
//! per discovery interval, one probe per member at a time). Here they take `now` and the
//! member's facts as arguments and are tested on made-up clocks; the driver in `scheduler.rs`
//! only gathers the facts, starts the probes [`Schedule::step`] asks for, and sleeps until the
//! earliest time it named.
//!
//! When an ejection ends is not computed here: that is the cluster state's timer
//! (`ClusterState::poll_timeout`), which the driver fires before it gathers the facts. While
//! it runs, a member's facts say [`ejected`](Facts::ejected) and its probe waits; once it
//! fired, the member is probed when its interval says (at once if that passed).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;

/// Failed probes after which a member found by discovery and never admitted is probed only
/// once per discovery interval (its advertised URL is likely unreachable from here).
const PENDING_FAST_PROBES: u64 = 5;

/// What the scheduler knows of one member at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Facts {
    /// In rotation.
    pub(super) healthy: bool,
    /// Found by discovery and never admitted yet.
    pub(super) pending: bool,
    /// Failed active checks so far.
    pub(super) failed_probes: u64,
    /// Its ejection runs (the cluster state's timer on it has not fired): no probe yet.
    pub(super) ejected: bool,
}

/// The probe intervals in force (from `checks.active` and `discovery`); 0 turns probes off
/// for members in that status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Intervals {
    /// `checks.active.healthy.interval`.
    pub(super) healthy: Duration,
    /// `checks.active.unhealthy.interval`.
    pub(super) unhealthy: Duration,
    /// `discovery.interval`: the slowest pace of a pending member that keeps failing.
    pub(super) discovery: Duration,
}

impl Intervals {
    /// The intervals of `config`.
    pub(super) fn of(config: &Config) -> Self {
        Self {
            healthy: config.checks.active.healthy.interval,
            unhealthy: config.checks.active.unhealthy.interval,
            discovery: config.discovery.interval,
        }
    }

    /// How often to probe a member in its current status.
    fn of_member(&self, facts: &Facts) -> Duration {
        if facts.healthy {
            self.healthy
        } else if facts.pending && facts.failed_probes >= PENDING_FAST_PROBES {
            self.unhealthy.max(self.discovery)
        } else {
            self.unhealthy
        }
    }

    /// When to probe a member next: one interval on (up to a fifth of it taken off by the
    /// jitter draw `unit`, so a fleet of clients does not probe in step); `None` when probes
    /// are off for its status. (Not before its ejection ends either: [`Slot::ejected`].)
    fn next_due(&self, now: Instant, facts: &Facts, unit: f64) -> Option<Instant> {
        let interval = self.of_member(facts);
        if interval.is_zero() {
            return None;
        }
        let interval = crate::timing::shorten(interval, crate::timing::PERIODIC, unit);
        Some(crate::timing::later(now, interval))
    }
}

/// What to do about one member now (see [`Schedule::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Probe it now (it counts as probing until [`Schedule::done`]).
    Probe,
    /// Probe it at this time: wake by then.
    At(Instant),
    /// Nothing to wait for here: a probe of it is running, probes are off for its status, or
    /// its ejection runs (the cluster state's deadline wakes the driver when it ends).
    Idle,
}

/// Scheduling state of one member.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The status its schedule was made for.
    healthy: bool,
    /// When its next probe is due; `None` while probing or with probes off.
    due: Option<Instant>,
    /// A probe of it is running.
    running: bool,
    /// Its ejection runs, as its facts said last: its probe waits, however due.
    ejected: bool,
}

/// The probe timing of every member (see the [module docs](self)).
#[derive(Debug)]
pub(super) struct Schedule {
    intervals: Intervals,
    slots: HashMap<usize, Slot>,
    /// The jitter draws (a uniform sample in `[0, 1)` each): [`crate::timing::unit`], or a
    /// fixed one in tests.
    draw: fn() -> f64,
}

impl Schedule {
    /// An empty schedule: members join it at their first [`step`](Self::step).
    pub(super) fn new(intervals: Intervals) -> Self {
        Self::with_draw(intervals, crate::timing::unit)
    }

    /// [`new`](Self::new), with the jitter draws from `draw`.
    pub(super) fn with_draw(intervals: Intervals, draw: fn() -> f64) -> Self {
        Self {
            intervals,
            slots: HashMap::new(),
            draw,
        }
    }

    /// Forgets the members `live` no longer names.
    pub(super) fn retain(&mut self, live: impl Fn(usize) -> bool) {
        self.slots.retain(|index, _| live(*index));
    }

    /// Looks at member `index` at `now`: whether to probe it now, when, or not at all.
    ///
    /// A member seen for the first time, or whose status changed, gets a new schedule: one
    /// interval of its status on (never before its ejection ends), or at once when it was
    /// found by discovery and waits for admission.
    pub(super) fn step(&mut self, index: usize, facts: Facts, now: Instant) -> Step {
        let slot = self.slots.entry(index).or_insert(Slot {
            healthy: !facts.healthy,
            due: None,
            running: false,
            ejected: facts.ejected,
        });
        slot.ejected = facts.ejected;
        if slot.healthy != facts.healthy && facts.pending {
            // Found by discovery: probe it at once, so it takes traffic soon.
            slot.healthy = facts.healthy;
            slot.due = Some(now);
        }
        if slot.healthy != facts.healthy {
            // A status change restarts the member's schedule.
            slot.healthy = facts.healthy;
            slot.due = self.intervals.next_due(now, &facts, (self.draw)());
        }
        if slot.running || slot.ejected {
            return Step::Idle;
        }
        match slot.due {
            None => Step::Idle,
            Some(due) if due > now => Step::At(due),
            Some(_) => {
                slot.running = true;
                slot.due = None;
                Step::Probe
            }
        }
    }

    /// Looks at every member at `now` (those `members` no longer names are forgotten): the
    /// members to probe now, in the order given. [`poll_timeout`](Self::poll_timeout) then
    /// says when to look again.
    pub(super) fn poll(
        &mut self,
        now: Instant,
        members: impl IntoIterator<Item = (usize, Facts)>,
    ) -> Vec<usize> {
        let members: Vec<(usize, Facts)> = members.into_iter().collect();
        self.retain(|i| members.iter().any(|(m, _)| *m == i));
        members
            .into_iter()
            .filter(|(index, facts)| self.step(*index, *facts, now) == Step::Probe)
            .map(|(index, _)| index)
            .collect()
    }

    /// The earliest time a member's probe is due (none: nothing to wake for; a probe's end
    /// wakes the driver anyway, and so does the end of an ejection, by the cluster state's
    /// deadline).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|slot| !slot.running && !slot.ejected)
            .filter_map(|slot| slot.due)
            .min()
    }

    /// The probe of member `index` ended at `now`: its next one is due one interval on (of
    /// its status now; a status changed meanwhile restarts its schedule).
    pub(super) fn done(&mut self, index: usize, facts: Facts, now: Instant) {
        let Some(slot) = self.slots.get_mut(&index) else {
            return;
        };
        slot.running = false;
        slot.ejected = facts.ejected;
        // Whether the status changed or not, the next probe is one interval on.
        slot.healthy = facts.healthy;
        slot.due = self.intervals.next_due(now, &facts, (self.draw)());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Healthy members every 1 s, unhealthy ones every 100 ms, discovery every 30 s.
    fn intervals() -> Intervals {
        Intervals {
            healthy: ms(1000),
            unhealthy: ms(100),
            discovery: ms(30_000),
        }
    }

    /// With no jitter taken off, so the times below are exact.
    fn schedule() -> Schedule {
        Schedule::with_draw(intervals(), || 0.0)
    }

    fn healthy() -> Facts {
        Facts {
            healthy: true,
            pending: false,
            failed_probes: 0,
            ejected: false,
        }
    }

    fn unhealthy() -> Facts {
        Facts {
            healthy: false,
            ..healthy()
        }
    }

    fn pending(failed_probes: u64) -> Facts {
        Facts {
            pending: true,
            failed_probes,
            ..unhealthy()
        }
    }

    #[test]
    fn a_healthy_member_is_probed_every_healthy_interval() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(
            s.step(0, healthy(), t0),
            Step::At(t0 + ms(1000)),
            "not at once"
        );
        assert_eq!(s.step(0, healthy(), t0 + ms(999)), Step::At(t0 + ms(1000)));
        assert_eq!(s.step(0, healthy(), t0 + ms(1000)), Step::Probe);
        assert_eq!(
            s.step(0, healthy(), t0 + ms(1001)),
            Step::Idle,
            "one at a time"
        );
        // The interval counts from the end of the probe.
        s.done(0, healthy(), t0 + ms(1200));
        assert_eq!(s.step(0, healthy(), t0 + ms(1200)), Step::At(t0 + ms(2200)));
        assert_eq!(
            s.step(0, healthy(), t0 + ms(2300)),
            Step::Probe,
            "late is due"
        );
    }

    #[test]
    fn an_unhealthy_member_is_probed_every_unhealthy_interval() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(s.step(0, unhealthy(), t0), Step::At(t0 + ms(100)));
        assert_eq!(s.step(0, unhealthy(), t0 + ms(100)), Step::Probe);
        s.done(0, unhealthy(), t0 + ms(110));
        assert_eq!(s.step(0, unhealthy(), t0 + ms(110)), Step::At(t0 + ms(210)));
    }

    /// While the cluster state's timer on its ejection runs, a member is not probed, however
    /// due, and nothing here wakes the driver (the state's deadline does); once it fired, the
    /// member is probed at once when its interval passed meanwhile.
    #[test]
    fn an_ejected_member_is_not_probed_before_its_ejection_ends() {
        let t0 = Instant::now();
        let mut s = schedule();
        let ejected = Facts {
            ejected: true,
            ..unhealthy()
        };
        assert_eq!(s.step(0, ejected, t0), Step::Idle);
        assert_eq!(
            s.poll_timeout(),
            None,
            "the state's deadline wakes the driver"
        );
        assert_eq!(s.step(0, ejected, t0 + ms(4999)), Step::Idle);
        // The state fired its timer at 5 s: the ejection ended.
        assert_eq!(s.step(0, unhealthy(), t0 + ms(5000)), Step::Probe);
        // Once the ejection is over, the interval alone counts.
        s.done(0, unhealthy(), t0 + ms(5010));
        assert_eq!(
            s.step(0, unhealthy(), t0 + ms(5010)),
            Step::At(t0 + ms(5110))
        );
    }

    /// A member ejected for less than its interval: the end of its ejection does not bring its
    /// probe forward.
    #[test]
    fn a_short_ejection_waits_for_the_interval() {
        let t0 = Instant::now();
        let mut s = schedule();
        let ejected = Facts {
            ejected: true,
            ..unhealthy()
        };
        assert_eq!(s.step(0, healthy(), t0), Step::At(t0 + ms(1000)));
        assert_eq!(s.step(0, ejected, t0 + ms(10)), Step::Idle);
        assert_eq!(s.step(0, unhealthy(), t0 + ms(60)), Step::At(t0 + ms(110)));
        assert_eq!(s.poll_timeout(), Some(t0 + ms(110)));
    }

    /// A status change restarts the schedule at the new status's interval, also while a probe
    /// runs; the probe's end then counts one interval on again.
    #[test]
    fn a_status_change_restarts_the_schedule() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(s.step(0, healthy(), t0), Step::At(t0 + ms(1000)));
        assert_eq!(s.step(0, unhealthy(), t0 + ms(300)), Step::At(t0 + ms(400)));
        assert_eq!(s.step(0, unhealthy(), t0 + ms(400)), Step::Probe);
        assert_eq!(s.step(0, healthy(), t0 + ms(420)), Step::Idle, "probing");
        s.done(0, healthy(), t0 + ms(450));
        assert_eq!(s.step(0, healthy(), t0 + ms(450)), Step::At(t0 + ms(1450)));
        // A change seen only when the probe ends restarts it too.
        assert_eq!(s.step(0, healthy(), t0 + ms(1450)), Step::Probe);
        s.done(0, unhealthy(), t0 + ms(1460));
        assert_eq!(
            s.step(0, unhealthy(), t0 + ms(1460)),
            Step::At(t0 + ms(1560))
        );
    }

    #[test]
    fn an_interval_of_zero_turns_probes_off_for_that_status() {
        let t0 = Instant::now();
        let mut s = Schedule::with_draw(
            Intervals {
                healthy: Duration::ZERO,
                unhealthy: ms(100),
                discovery: ms(30_000),
            },
            || 0.0,
        );
        assert_eq!(s.step(0, healthy(), t0), Step::Idle);
        assert_eq!(s.step(0, healthy(), t0 + ms(100_000)), Step::Idle);
        assert_eq!(
            s.step(0, unhealthy(), t0 + ms(100_000)),
            Step::At(t0 + ms(100_100))
        );
        assert_eq!(s.step(0, unhealthy(), t0 + ms(100_100)), Step::Probe);
        s.done(0, healthy(), t0 + ms(100_110));
        assert_eq!(
            s.step(0, healthy(), t0 + ms(200_000)),
            Step::Idle,
            "back: off"
        );

        let mut s = Schedule::with_draw(
            Intervals {
                healthy: ms(1000),
                unhealthy: Duration::ZERO,
                discovery: ms(30_000),
            },
            || 0.0,
        );
        assert_eq!(s.step(0, unhealthy(), t0), Step::Idle);
        assert_eq!(s.step(0, healthy(), t0), Step::At(t0 + ms(1000)));
    }

    /// A member found by discovery is probed at once, so it takes traffic soon; a new member
    /// given in the configuration waits one interval like any other.
    #[test]
    fn a_member_found_by_discovery_is_probed_at_once() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(s.step(7, pending(0), t0), Step::Probe);
        assert_eq!(s.step(8, unhealthy(), t0), Step::At(t0 + ms(100)));
        assert_eq!(s.step(9, healthy(), t0), Step::At(t0 + ms(1000)));
        // Once probing, the pending member keeps the unhealthy pace.
        s.done(7, pending(1), t0 + ms(10));
        assert_eq!(s.step(7, pending(1), t0 + ms(10)), Step::At(t0 + ms(110)));
    }

    /// A pending member that failed its first probes (its advertised URL is likely unreachable
    /// from here) is probed once per discovery interval.
    #[test]
    fn a_pending_member_that_keeps_failing_slows_to_the_discovery_interval() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(s.step(0, pending(0), t0), Step::Probe);
        s.done(0, pending(4), t0);
        assert_eq!(s.step(0, pending(4), t0), Step::At(t0 + ms(100)));
        assert_eq!(s.step(0, pending(4), t0 + ms(100)), Step::Probe);
        s.done(0, pending(5), t0 + ms(100));
        assert_eq!(
            s.step(0, pending(5), t0 + ms(100)),
            Step::At(t0 + ms(30_100))
        );
        // Not pending (say, configured): the unhealthy interval, however many failed.
        let mut s = schedule();
        let failing = Facts {
            failed_probes: 50,
            ..unhealthy()
        };
        assert_eq!(s.step(0, failing, t0), Step::At(t0 + ms(100)));
    }

    /// A member removed is forgotten: its probe's end is ignored, and a member of that index
    /// added later starts anew.
    #[test]
    fn removed_members_are_forgotten() {
        let t0 = Instant::now();
        let mut s = schedule();
        assert_eq!(s.step(0, unhealthy(), t0), Step::At(t0 + ms(100)));
        assert_eq!(s.step(1, unhealthy(), t0), Step::At(t0 + ms(100)));
        assert_eq!(s.step(1, unhealthy(), t0 + ms(100)), Step::Probe);
        s.retain(|i| i == 0);
        s.done(1, unhealthy(), t0 + ms(150));
        assert_eq!(s.step(0, unhealthy(), t0 + ms(150)), Step::Probe);
        assert_eq!(
            s.step(1, healthy(), t0 + ms(150)),
            Step::At(t0 + ms(1150)),
            "anew"
        );
    }

    /// A fleet of clients probing one healthy member: each schedule draws its own jitter, so
    /// their probes spread over the last fifth of the interval instead of coming at once.
    #[test]
    fn a_fleet_probes_spread_over_the_interval() {
        let t0 = Instant::now();
        let mut dues: Vec<Duration> = (0..300)
            .map(|_| {
                let mut s = Schedule::new(intervals());
                match s.step(0, healthy(), t0) {
                    Step::At(at) => at - t0,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        dues.sort();
        let (first, last) = (dues[0], dues[dues.len() - 1]);
        assert!(first >= ms(800) && last <= ms(1000), "{first:?}..{last:?}");
        assert!(last - first >= ms(150), "spread: {first:?}..{last:?}");
    }

    #[test]
    fn jitter_only_shortens_the_interval() {
        let t0 = Instant::now();
        let i = intervals();
        assert_eq!(i.next_due(t0, &healthy(), 0.0), Some(t0 + ms(1000)));
        assert_eq!(i.next_due(t0, &healthy(), 0.5), Some(t0 + ms(900)));
        let due = i.next_due(t0, &unhealthy(), 0.999_999).expect("due");
        assert_eq!((due - t0).as_millis(), 80);
    }

    /// `poll` over three members whose status flips, with probes that end after random
    /// delays: a member is never handed out while its probe runs, the driver is never told
    /// to wake at once (no busy loop), and no member with probes on is forgotten (its next
    /// probe is due within one interval of its status, or when its ejection ends).
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One step of the driver: time passes, a member's status may flip, a probe may end.
        fn steps() -> impl Strategy<Value = Vec<(u64, usize, bool, bool)>> {
            proptest::collection::vec((0u64..1500, 0usize..3, any::<bool>(), any::<bool>()), 1..60)
        }

        proptest! {
            #[test]
            fn polls_never_overlap_busy_loop_or_starve(steps in steps(), draw in 0.0f64..1.0) {
                static DRAW: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);
                *DRAW.lock().unwrap() = draw;
                let mut s = Schedule::with_draw(intervals(), || *DRAW.lock().unwrap());
                let t0 = Instant::now();
                let mut now = t0;
                let mut facts = [healthy(), unhealthy(), pending(0)];
                let mut running = [false; 3];
                for (advance, member, flip, end) in steps {
                    now += ms(advance);
                    if flip {
                        facts[member].healthy = !facts[member].healthy;
                    }
                    if end && running[member] {
                        running[member] = false;
                        s.done(member, facts[member], now);
                    }
                    for index in s.poll(now, facts.iter().copied().enumerate()) {
                        prop_assert!(!running[index], "member {index} handed out twice");
                        running[index] = true;
                    }
                    if let Some(wake) = s.poll_timeout() {
                        prop_assert!(wake > now, "wake at {wake:?}, now {now:?}");
                    }
                    for (index, running) in running.iter().enumerate() {
                        if *running {
                            continue;
                        }
                        let slot = s.slots[&index];
                        let due = slot.due.expect("probes are on for every status here");
                        prop_assert!(due <= now + ms(30_000), "member {index} starved");
                    }
                }
            }
        }
    }
}
