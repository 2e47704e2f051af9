//! When leader checks run, and when one may stop waiting for its slowest members: pure.
//!
//! Why: during an election the health state learns the new leader only from a leader check
//! that starts after the election ended. A member that hangs (SIGSTOP, a paused VM: often the
//! old leader itself) holds every round for the whole `leader.timeout`, so a round already
//! running when the election ends, and the next one queued behind it, both wait for a member
//! known to be silent, and a keep-alive waiting for the new leader waits with them. So while
//! the cluster has no leader (a majority answered and none of them knows one) or the leader
//! it names is silent, a round ends as soon as a majority answered and every member still
//! asked is one that gave no answer last round ([`RoundPlan::may_end`]), and the next round
//! follows at the election pace.
//!
//! Faster rounds are more `Status` calls at the members while they elect, from every client
//! of a fleet at once: so rounds start at least [`ROUND_SPACING`] apart (plus jitter), however
//! short they were and however often an answer asks for one ([`Pace`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::Reply;
use crate::config::LeaderConfig;

/// The least time between the starts of two leader checks of one health state: at most ten
/// rounds a second at every member, from each client, however the rounds end.
pub(crate) const ROUND_SPACING: Duration = Duration::from_millis(100);

/// Why a round stopped waiting for its remaining members (see [`RoundPlan::may_end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EarlyEnd {
    /// A majority answered and none of them knows a leader: an election. The members not
    /// waited for count as silent again in the next round.
    Leaderless,
    /// A majority answered naming a leader that is among the members gave no answer last
    /// round and still gives none. They are waited for again in the next round (the leader
    /// may be back, only slower than its followers).
    LeaderSilent,
}

// === impl RoundPlan ===

/// What a leader check knows at its start: how many members it asks, and which of them gave
/// no answer last round (with their etcd ids, where known).
#[derive(Clone, Debug, Default)]
pub(crate) struct RoundPlan {
    members: usize,
    silent: HashMap<usize, Option<u64>>,
}

impl RoundPlan {
    /// A round asking `members` members, of which `silent` (index → etcd id) gave no answer
    /// last round.
    pub(crate) fn new(
        members: usize,
        silent: impl IntoIterator<Item = (usize, Option<u64>)>,
    ) -> Self {
        Self {
            members,
            silent: silent.into_iter().collect(),
        }
    }

    /// Whether the round may stop waiting now, with `answers` in and the members `pending`
    /// still asked: only when more than half of all members answered, every member still
    /// asked gave no answer last round, and the answers name no leader a majority follows
    /// but a silent one (see the [module docs](self)).
    pub(crate) fn may_end(
        &self,
        answers: &[(usize, Reply)],
        pending: impl IntoIterator<Item = usize>,
    ) -> Option<EarlyEnd> {
        let pending: Vec<usize> = pending.into_iter().collect();
        if pending.is_empty() || !pending.iter().all(|i| self.silent.contains_key(i)) {
            return None;
        }
        let reports: Vec<_> = answers
            .iter()
            .filter_map(|(_, r)| match r {
                Reply::Status(report) => Some(report),
                Reply::Failed => None,
            })
            .collect();
        if reports.len() * 2 <= self.members {
            return None;
        }
        let mut votes: HashMap<u64, usize> = HashMap::new();
        for r in &reports {
            if r.leader != 0 && !r.no_leader_error {
                *votes.entry(r.leader).or_default() += 1;
            }
        }
        let Some((leader, followers)) = votes.into_iter().max_by_key(|(_, n)| *n) else {
            return Some(EarlyEnd::Leaderless);
        };
        if followers * 2 <= self.members {
            // Some follow a leader, not a majority: an election under way.
            return Some(EarlyEnd::Leaderless);
        }
        let still_silent: HashSet<u64> = pending
            .iter()
            .filter_map(|i| self.silent.get(i).copied().flatten())
            .collect();
        still_silent
            .contains(&leader)
            .then_some(EarlyEnd::LeaderSilent)
    }
}

// === impl Pace ===

/// When the next leader check may start, from the start of the last one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pace {
    last_start: Option<Instant>,
}

impl Pace {
    /// A round starts at `now`.
    pub(crate) fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    /// The earliest a round may start: [`ROUND_SPACING`] after the last one started,
    /// lengthened by up to a fifth by the jitter draw `unit` (so a fleet's rounds do not come
    /// in step); now if none ran.
    fn earliest(&self, now: Instant, unit: f64) -> Instant {
        let spacing = ROUND_SPACING.mul_f64(1.0 + crate::timing::PERIODIC * unit.clamp(0.0, 1.0));
        self.last_start
            .map_or(now, |l| crate::timing::later(l, spacing).max(now))
    }

    /// When the next round is due after one ended at `now`: one election interval on while
    /// the leader is unsettled, else one `leader.interval` on (none when 0), up to a fifth
    /// taken off by the jitter draw `unit`; never before [`earliest`](Self::earliest).
    pub(crate) fn after_round(
        &self,
        now: Instant,
        unsettled: bool,
        config: &LeaderConfig,
        unit: f64,
    ) -> Option<Instant> {
        let interval = if unsettled {
            config.election_interval
        } else if config.interval.is_zero() {
            return None;
        } else {
            config.interval
        };
        let interval = crate::timing::shorten(interval, crate::timing::PERIODIC, unit);
        Some(crate::timing::later(now, interval).max(self.earliest(now, unit)))
    }

    /// When a round asked for at `now` (an answer suggested an election) may start: one
    /// election interval after the last one started, and never before
    /// [`earliest`](Self::earliest).
    pub(crate) fn wanted(&self, now: Instant, config: &LeaderConfig, unit: f64) -> Instant {
        let soonest = self.last_start.map_or(now, |l| {
            crate::timing::later(l, config.election_interval).max(now)
        });
        soonest.max(self.earliest(now, unit))
    }
}

// === impl LeaderChecks ===

/// When the probe scheduler runs a leader check: the whole timing of the rounds, pure.
///
/// A round is due at start, then one `leader.interval` after each (one election interval
/// while the leader is unsettled), and when an answer asks for one ([`want`](Self::want)),
/// never two at once and never closer than [`Pace`] allows. It also remembers which members
/// gave no answer last round, so the next round's [`RoundPlan`] need not wait for them.
/// The driver asks [`poll`](Self::poll) what to do at `now`, sleeps until
/// [`poll_timeout`](Self::poll_timeout), and reports the round's end with
/// [`ended`](Self::ended).
#[derive(Clone, Debug)]
pub(crate) struct LeaderChecks {
    config: LeaderConfig,
    /// When the next round is due; `None` while one runs or none is wanted.
    due: Option<Instant>,
    running: bool,
    pace: Pace,
    /// The members that gave no answer to the last round.
    silent: HashSet<usize>,
    /// The jitter draws: [`crate::timing::unit`], or a fixed one in tests.
    draw: fn() -> f64,
}

impl LeaderChecks {
    /// The rounds of `config`, the first due at `now`.
    pub(crate) fn new(config: LeaderConfig, now: Instant) -> Self {
        Self::with_draw(config, now, crate::timing::unit)
    }

    /// [`new`](Self::new), with the jitter draws from `draw`.
    pub(crate) fn with_draw(config: LeaderConfig, now: Instant, draw: fn() -> f64) -> Self {
        Self {
            config,
            due: Some(now),
            running: false,
            pace: Pace::default(),
            silent: HashSet::new(),
            draw,
        }
    }

    /// An answer at `now` suggested an election: a round as soon as [`Pace::wanted`] allows
    /// (sooner if one was due sooner).
    pub(crate) fn want(&mut self, now: Instant) {
        let at = self.pace.wanted(now, &self.config, (self.draw)());
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// Whether a round starts at `now`: if so, the members of it (`live` says which are
    /// still members) that gave no answer last round.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        live: impl Fn(usize) -> bool,
    ) -> Option<Vec<usize>> {
        if self.running || self.due.is_none_or(|due| due > now) {
            return None;
        }
        self.running = true;
        self.due = None;
        self.pace.started(now);
        self.silent.retain(|i| live(*i));
        let mut silent: Vec<usize> = self.silent.iter().copied().collect();
        silent.sort_unstable();
        Some(silent)
    }

    /// When the next round is due, unless one runs.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.due.filter(|_| !self.running)
    }

    /// The round ended at `now`: `silent` gave no answer, `skipped` were not waited for
    /// (and count as silent still when it ended for `Leaderless`); `unsettled` is whether the
    /// health state, having heard the round, still looks for the leader.
    pub(crate) fn ended(
        &mut self,
        now: Instant,
        silent: &[usize],
        ended: Option<(EarlyEnd, &[usize])>,
        unsettled: bool,
    ) {
        self.silent = silent.iter().copied().collect();
        if let Some((EarlyEnd::Leaderless, skipped)) = ended {
            // Still silent as far as anyone knows: the next round does not wait for them
            // either while the election lasts.
            self.silent.extend(skipped.iter().copied());
        }
        self.running = false;
        let next = self
            .pace
            .after_round(now, unsettled, &self.config, (self.draw)());
        self.due = match (self.due, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::Report;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn says(id: u64, leader: u64) -> (usize, Reply) {
        let index = (id - 10) as usize;
        (
            index,
            Reply::Status(Report {
                id,
                cluster_id: 7,
                leader,
                term: 4,
                committed: 0,
                applied: 0,
                is_learner: false,
                no_leader_error: false,
            }),
        )
    }

    /// Members 0, 1, 2 have ids 10, 11, 12; member 0 (the old leader) gave no answer last round.
    fn plan() -> RoundPlan {
        RoundPlan::new(3, [(0, Some(10))])
    }

    #[test]
    fn an_election_does_not_wait_for_a_member_silent_last_round() {
        let p = plan();
        let no_leader = [says(11, 0), says(12, 0)];
        assert_eq!(p.may_end(&no_leader, [0]), Some(EarlyEnd::Leaderless));
        // Some voted, no majority yet: still an election.
        let split = [says(11, 11), says(12, 0)];
        assert_eq!(p.may_end(&split, [0]), Some(EarlyEnd::Leaderless));
        // "No leader" listed as an error counts as knowing none.
        let mut listed = says(12, 11);
        if let Reply::Status(r) = &mut listed.1 {
            r.no_leader_error = true;
        }
        assert_eq!(
            p.may_end(&[says(11, 0), listed], [0]),
            Some(EarlyEnd::Leaderless)
        );
    }

    #[test]
    fn a_silent_leader_named_by_a_majority_is_not_waited_for() {
        let p = plan();
        let still_follow = [says(11, 10), says(12, 10)];
        assert_eq!(p.may_end(&still_follow, [0]), Some(EarlyEnd::LeaderSilent));
        // Back and answering: its round runs whole.
        let five = RoundPlan::new(5, [(0, Some(10)), (3, Some(13)), (4, Some(14))]);
        let back = [says(10, 10), says(11, 10), says(12, 10)];
        assert_eq!(five.may_end(&back, [3, 4]), None);
    }

    #[test]
    fn a_round_waits_when_it_may_learn_something() {
        let p = plan();
        // A new leader a majority follows: the whole round judges it (the early word has
        // already told the health state).
        assert_eq!(p.may_end(&[says(11, 11), says(12, 11)], [0]), None);
        // No majority answered yet.
        assert_eq!(p.may_end(&[says(11, 0)], [0, 2]), None);
        assert_eq!(p.may_end(&[says(11, 0), (2, Reply::Failed)], [0]), None);
        // A member still asked that answered last round.
        assert_eq!(p.may_end(&[says(11, 0), says(12, 0)], [0, 3]), None);
        let five = RoundPlan::new(5, [(0, Some(10))]);
        assert_eq!(five.may_end(&[says(11, 0), says(12, 0)], [0, 3, 4]), None);
        // Nothing left to wait for: the round ends anyway.
        assert_eq!(p.may_end(&[says(11, 0), says(12, 0)], []), None);
        // Nobody silent last round: every round runs whole.
        let calm = RoundPlan::new(3, []);
        assert_eq!(calm.may_end(&[says(11, 0), says(12, 0)], [0]), None);
        // A silent member whose id is unknown is not taken for the leader.
        let unknown = RoundPlan::new(3, [(0, None)]);
        assert_eq!(unknown.may_end(&[says(11, 10), says(12, 10)], [0]), None);
        assert_eq!(
            unknown.may_end(&[says(11, 0), says(12, 0)], [0]),
            Some(EarlyEnd::Leaderless)
        );
    }

    #[test]
    fn rounds_start_at_least_the_spacing_apart() {
        let t0 = Instant::now();
        let config = LeaderConfig {
            interval: ms(1000),
            election_interval: ms(50),
            ..Default::default()
        };
        let mut pace = Pace::default();
        assert_eq!(pace.wanted(t0, &config, 0.0), t0, "none ran: at once");
        pace.started(t0);
        // A round that ended early, 5 ms in: the election interval would be 55 ms.
        assert_eq!(
            pace.after_round(t0 + ms(5), true, &config, 0.0),
            Some(t0 + ms(100))
        );
        assert_eq!(pace.wanted(t0 + ms(5), &config, 0.0), t0 + ms(100));
        // Jitter lengthens the spacing by up to a fifth.
        assert_eq!(
            pace.after_round(t0 + ms(5), true, &config, 0.5),
            Some(t0 + ms(110))
        );
        // A long round: one election interval after its end.
        assert_eq!(
            pace.after_round(t0 + ms(250), true, &config, 0.0),
            Some(t0 + ms(300))
        );
        assert_eq!(pace.wanted(t0 + ms(250), &config, 0.0), t0 + ms(250));
        // A fleet of clients: never two rounds of one within 100 ms, spread over 20 ms.
        let mut at: Vec<Instant> = (0..200)
            .map(|_| {
                pace.after_round(t0 + ms(5), true, &config, crate::timing::unit())
                    .expect("due")
            })
            .collect();
        at.sort();
        assert!(at[0] >= t0 + ms(100));
        assert!(at[at.len() - 1] - at[0] >= ms(10));
    }

    #[test]
    fn leader_checks_are_jittered_within_their_interval() {
        let t0 = Instant::now();
        let config = LeaderConfig {
            interval: ms(1000),
            election_interval: ms(100),
            ..Default::default()
        };
        let pace = Pace::default();
        assert_eq!(
            pace.after_round(t0, false, &config, 0.0),
            Some(t0 + ms(1000))
        );
        assert_eq!(
            pace.after_round(t0, false, &config, 0.5),
            Some(t0 + ms(900))
        );
        assert_eq!(pace.after_round(t0, true, &config, 0.5), Some(t0 + ms(90)));
        let off = LeaderConfig {
            interval: Duration::ZERO,
            ..config.clone()
        };
        assert_eq!(pace.after_round(t0, false, &off, 0.5), None);
        assert_eq!(pace.after_round(t0, true, &off, 0.0), Some(t0 + ms(100)));
        // A fleet's draws spread the checks over the last fifth of the interval.
        let mut at: Vec<Instant> = (0..200)
            .filter_map(|_| pace.after_round(t0, false, &config, crate::timing::unit()))
            .collect();
        at.sort();
        assert!(at[at.len() - 1] - at[0] >= ms(150));
    }

    fn checks() -> LeaderChecks {
        let config = LeaderConfig {
            interval: ms(1000),
            election_interval: ms(200),
            ..Default::default()
        };
        LeaderChecks::with_draw(config, Instant::now(), || 0.0)
    }

    /// The first round at start; none while one runs; the next one interval after its end.
    #[test]
    fn leader_checks_run_one_at_a_time_every_interval() {
        let mut c = checks();
        let t0 = c.poll_timeout().expect("due at start");
        assert_eq!(c.poll(t0, |_| true), Some(vec![]));
        assert_eq!(c.poll_timeout(), None, "running");
        assert_eq!(c.poll(t0 + ms(5000), |_| true), None, "one at a time");
        c.ended(t0 + ms(30), &[], None, false);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1030)));
        assert_eq!(c.poll(t0 + ms(1029), |_| true), None);
        assert_eq!(c.poll(t0 + ms(1030), |_| true), Some(vec![]));
        // Unsettled: the election interval.
        c.ended(t0 + ms(1040), &[], None, true);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1240)));
    }

    /// An answer asking for a round: as soon as the pace allows, also while one runs (it
    /// follows that one), never later than one due already.
    #[test]
    fn a_wanted_leader_check_comes_at_the_election_pace() {
        let mut c = checks();
        let t0 = c.poll_timeout().expect("due");
        assert!(c.poll(t0, |_| true).is_some());
        c.want(t0 + ms(10));
        assert_eq!(c.poll_timeout(), None, "running");
        c.ended(t0 + ms(20), &[], None, false);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(200)),
            "election interval after the start"
        );
        assert!(c.poll(t0 + ms(200), |_| true).is_some());
        c.ended(t0 + ms(300), &[], None, false);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1300)));
        c.want(t0 + ms(500));
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(500)),
            "long after the last: at once"
        );
        // Interval 0: only wanted rounds after the first.
        let off = LeaderConfig {
            interval: Duration::ZERO,
            ..c.config.clone()
        };
        let mut c = LeaderChecks::with_draw(off, t0, || 0.0);
        assert!(c.poll(t0, |_| true).is_some());
        c.ended(t0 + ms(10), &[], None, false);
        assert_eq!(c.poll_timeout(), None);
        c.want(t0 + ms(400));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(400)));
    }

    /// Members silent last round are handed to the next round's plan; those not waited for in
    /// an election stay silent, those skipped for a silent leader are asked in full again;
    /// removed members are forgotten.
    #[test]
    fn the_next_round_knows_who_was_silent() {
        let mut c = checks();
        let t0 = c.poll_timeout().expect("due");
        assert!(c.poll(t0, |_| true).is_some());
        c.ended(t0 + ms(10), &[2], None, true);
        assert_eq!(c.poll(t0 + ms(210), |_| true), Some(vec![2]));
        c.ended(
            t0 + ms(220),
            &[],
            Some((EarlyEnd::Leaderless, &[2, 4])),
            true,
        );
        assert_eq!(c.poll(t0 + ms(420), |_| true), Some(vec![2, 4]));
        c.ended(
            t0 + ms(430),
            &[1],
            Some((EarlyEnd::LeaderSilent, &[4])),
            true,
        );
        assert_eq!(c.poll(t0 + ms(630), |_| true), Some(vec![1]));
        c.ended(t0 + ms(640), &[1, 3], None, true);
        assert_eq!(c.poll(t0 + ms(840), |i| i != 1), Some(vec![3]));
    }

    /// Leader checks under any mix of wanted rounds and round ends: never two at once, no
    /// two starts closer than [`ROUND_SPACING`], and never a wake-up in the past.
    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn rounds_never_overlap_or_crowd(
                steps in proptest::collection::vec((0u64..300, any::<bool>(), any::<bool>(), any::<bool>()), 1..80),
            ) {
                let mut c = checks();
                let t0 = c.poll_timeout().expect("due");
                let mut now = t0;
                let mut running = false;
                let mut last_start: Option<Instant> = None;
                for (advance, want, end, unsettled) in steps {
                    now += ms(advance);
                    if want {
                        c.want(now);
                    }
                    if end && running {
                        running = false;
                        c.ended(now, &[], None, unsettled);
                    }
                    if c.poll(now, |_| true).is_some() {
                        prop_assert!(!running, "two rounds at once");
                        if let Some(last) = last_start {
                            prop_assert!(now - last >= ROUND_SPACING, "{:?} apart", now - last);
                        }
                        running = true;
                        last_start = Some(now);
                    }
                    if let Some(wake) = c.poll_timeout() {
                        prop_assert!(!running && wake > now, "wake at {wake:?}, now {now:?}");
                    }
                }
            }
        }
    }
}
