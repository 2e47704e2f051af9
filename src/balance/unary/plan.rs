//! Where one unary request goes next, and whether it goes at all: retry, hedge, wait or give
//! up, from its attempts so far, the retry budget, the deadline and the clock.
//!
//! Why pure: these decisions bound what a request may cost the cluster and whether a write can
//! run twice, and they are easy to get subtly wrong inside an async loop. [`Plan`] keeps which
//! members a request went to; [`Dispatch`] joins it to the [`Schedule`] (when) and takes every
//! decision of the request: it is given the clock (`now`), the members as they are, what is in
//! flight and a way to draw from the retry budget, and tested on made-up clocks. The driver
//! (`driver.rs`) only sends, sleeps and reports back.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::schedule::{
    backoff, may_resend, resend_is_free, AfterFailure, Failed, Fire, Next, Schedule,
};
use crate::balance::attempt::Limits;
use crate::balance::pick::{has_fresh, pick, pick_fresh};
use crate::config::{AllUnhealthyPolicy, Config, HedgeConfig, RetryConfig};
use crate::etcd::Class;
use crate::member::MemberEntry;

/// One copy of a request sent to a member.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) entry: Arc<MemberEntry>,
    pub(crate) at: Instant,
}

/// The bookkeeping of one request's attempts: which members serve it now, which were tried in
/// the current round, how many attempts and rounds so far. Pure: [`Dispatch`] asks it where to
/// go next.
///
/// One list of attempts holds it all (a request's members of the round are those of the
/// attempts started since the round began), its first attempt inline, so a request answered
/// at the first attempt allocates nothing here.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Attempts by slot.
    sent: Slots,
    /// The first slot of the current round.
    round_start: usize,
    /// Members counted as tried in this round besides those of its attempts: the ones the
    /// caller asked to avoid (first round), those still serving the request (later rounds).
    carried: Vec<usize>,
    rounds: u8,
}

/// One attempt.
#[derive(Debug)]
struct Slot {
    /// Index of the member it went to.
    member: usize,
    /// `None` once answered.
    live: Option<Sent>,
}

/// Attempts by slot, the first without an allocation of its own (most requests make one).
#[derive(Debug, Default)]
struct Slots {
    first: Option<Slot>,
    more: Vec<Slot>,
}

// === impl Slots ===

impl Slots {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// Appends a slot; returns its index.
    fn push(&mut self, slot: Slot) -> usize {
        match self.first {
            None => self.first = Some(slot),
            Some(_) => self.more.push(slot),
        }
        self.len() - 1
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        match index {
            0 => self.first.as_mut(),
            i => self.more.get_mut(i - 1),
        }
    }

    /// The slots in order.
    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.first.iter().chain(&self.more)
    }
}

// === impl Plan ===

impl Plan {
    fn new(avoid: Vec<usize>) -> Self {
        Self {
            sent: Slots::default(),
            round_start: 0,
            carried: avoid,
            rounds: 0,
        }
    }

    /// Attempts started so far.
    fn attempts(&self) -> u8 {
        u8::try_from(self.sent.len()).unwrap_or(u8::MAX)
    }

    /// Records an attempt on `entry`, sent `at` (now); returns its slot.
    fn start(&mut self, entry: Arc<MemberEntry>, at: Instant) -> usize {
        self.sent.push(Slot {
            member: entry.member().index(),
            live: Some(Sent { entry, at }),
        })
    }

    /// The attempt in `slot` ended.
    fn finish(&mut self, slot: usize) -> Sent {
        self.sent
            .get_mut(slot)
            .and_then(|s| s.live.take())
            .expect("an attempt ends once")
    }

    fn live(&self) -> impl Iterator<Item = &Sent> {
        self.sent.iter().filter_map(|s| s.live.as_ref())
    }

    /// Attempts still unanswered that were sent before `winner`.
    fn outrun_by<'a>(&'a self, winner: &'a Sent) -> impl Iterator<Item = &'a Sent> {
        self.live()
            .filter(move |s| s.at < winner.at && s.entry.member() != winner.entry.member())
    }

    /// When the oldest attempt still unanswered was sent.
    fn oldest(&self) -> Option<Instant> {
        self.live().map(|s| s.at).min()
    }

    /// Members serving this request now.
    fn busy(&self) -> Vec<usize> {
        self.sent
            .iter()
            .filter(|s| s.live.is_some())
            .map(|s| s.member)
            .collect()
    }

    /// Whether member `index` serves this request now or was tried in this round.
    fn excluded(&self, index: usize) -> bool {
        self.carried.contains(&index)
            || self
                .sent
                .iter()
                .skip(self.round_start)
                .any(|s| s.member == index)
            || self
                .sent
                .iter()
                .any(|s| s.member == index && s.live.is_some())
    }

    /// Whether a member not tried in this round may take the request.
    fn has_fresh(&self, entries: &[Arc<MemberEntry>], policy: AllUnhealthyPolicy) -> bool {
        has_fresh(entries, policy, |i| self.excluded(i))
    }

    /// The member for the next attempt: `leader` (for requests only the leader may serve)
    /// unless tried in this round, else one not tried in this round; `None` when the round is
    /// over. The members' costs are read at `now`.
    fn choose(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
        leader: Option<Arc<MemberEntry>>,
        now: Instant,
    ) -> Option<Arc<MemberEntry>> {
        leader
            .filter(|l| l.is_healthy() && !self.excluded(l.member().index()))
            .or_else(|| pick_fresh(entries, policy, |i| self.excluded(i), now.into_std()))
    }

    /// The back-off that ending the current round would start; `unit` is a uniform sample in
    /// `[0, 1)` for its jitter.
    fn round_backoff(&self, config: &RetryConfig, unit: f64) -> Duration {
        backoff(config, self.rounds.saturating_add(2), unit)
    }

    /// Ends a round: every member may be tried again (after the back-off
    /// [`round_backoff`](Self::round_backoff) gave).
    fn end_round(&mut self) {
        self.rounds = self.rounds.saturating_add(1);
        self.carried = self.busy();
        self.round_start = self.sent.len();
    }
}

/// Every decision of one unary request: where its next copy goes ([`Plan`]), when
/// ([`Schedule`]), and what follows an answer or a failure.
///
/// Plain data but for [`Plan`]'s rare spill (no allocation for a request answered at its first
/// attempt): it lives in every unary request's future.
#[derive(Debug)]
pub(crate) struct Dispatch {
    plan: Plan,
    schedule: Schedule,
    class: Class,
}

/// What the driver knows of the moment of a decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moment<'a> {
    /// The members as they are now.
    pub(crate) entries: &'a [Arc<MemberEntry>],
    /// `all_unhealthy`: whether a request may go to a member out of rotation.
    pub(crate) policy: AllUnhealthyPolicy,
    /// Copies of the request still in flight.
    pub(crate) in_flight: usize,
    pub(crate) now: Instant,
}

/// What one failed attempt tells.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FailedCopy<'a> {
    /// Whether the member may have processed the request.
    pub(crate) maybe_processed: bool,
    /// The status message the member (or the transport) gave.
    pub(crate) message: &'a str,
}

/// What bounds every copy of one request (see [`Dispatch::limits`]): read off the config when a
/// copy is sent, so the request's future does not keep it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// The caller set a deadline (`grpc-timeout`).
    pub(crate) has_deadline: bool,
    /// A read's copy fails after this long (`retry.read_attempt_timeout`), if set.
    pub(crate) read_timeout: Option<Duration>,
    /// A copy still unanswered after this long while peers answer hangs (`hang.after`).
    pub(crate) hang_after: Option<Duration>,
    /// The request carries `hasleader`.
    pub(crate) has_leader: bool,
}

// === impl Bounds ===

impl Bounds {
    /// The bounds of a request of `class`, by `config`; `has_deadline` if the caller set one.
    pub(crate) fn new(config: &Config, class: Class, has_deadline: bool) -> Self {
        let read_timeout = config.retry.read_attempt_timeout;
        Self {
            has_deadline,
            read_timeout: (class == Class::Read && !read_timeout.is_zero()).then_some(read_timeout),
            hang_after: (config.hang.threshold > 0).then_some(config.hang.after),
            has_leader: config.require_leader,
        }
    }
}

/// How an answered copy compares with the others (see [`Dispatch::answered`]).
#[derive(Debug)]
pub(crate) struct Answered {
    /// The copy that answered.
    pub(crate) sent: Sent,
    /// Copies sent before it are still unanswered: it outran them (a hedge or a retry won).
    pub(crate) won: bool,
    /// What the answer says of hedging this kind of read, if hedges were sent.
    pub(crate) hedge: Option<HedgeVerdict>,
}

/// Whether the hedges of a read paid off (see [`HedgeDelay`](crate::balance::hedge::HedgeDelay)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HedgeVerdict {
    /// The first copy answered though others were sent while it ran: they were load for
    /// nothing.
    Lost,
    /// A later copy answered first: the member of an earlier one was slower than a peer.
    Won,
}

// === impl Dispatch ===

impl Dispatch {
    /// A request of `class` that arrived `now` with the caller's `deadline`, if any; the
    /// caller asked it to `avoid` these members (they count as tried in its first round).
    pub(crate) fn new(
        class: Class,
        avoid: Vec<usize>,
        now: Instant,
        deadline: Option<Duration>,
        retry: &RetryConfig,
        hedge: &HedgeConfig,
    ) -> Self {
        Self {
            plan: Plan::new(avoid),
            schedule: Schedule::new(class, now, deadline, retry, hedge),
            class,
        }
    }

    /// The request's body was read: it turned out to be of `class` (a `Txn` of reads is a
    /// read). Nothing was sent yet.
    pub(crate) fn start(&mut self, class: Class, hedge: &HedgeConfig) {
        self.class = class;
        self.schedule.reclass(class, hedge);
    }

    /// Attempts started so far, hedges included.
    pub(crate) fn attempts(&self) -> u8 {
        self.plan.attempts()
    }

    /// When the driver's timer must fire next (see [`Schedule::wake`]).
    pub(crate) fn wake(&self) -> Option<Instant> {
        self.schedule.wake()
    }

    /// Whether a change of the health state or the leader would bring the next attempt
    /// forward: one is set, after a round's back-off.
    pub(crate) fn waits_for_changes(&self) -> bool {
        self.schedule.attempt_set()
    }

    /// The health state or the leader changed at `now`: a back-off ends now.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.schedule.changed(now);
    }

    /// The driver's timer fired at `now`, `in_flight` copies unanswered: what to send.
    pub(crate) fn on_timer(&mut self, now: Instant, in_flight: usize) -> Fire {
        self.schedule.on_timer(now, self.plan.attempts(), in_flight)
    }

    /// The member for the next attempt: `preferred` (the leader a request needs, or where a
    /// write should go) unless tried in this round, else one not tried in this round, else
    /// (the round over, yet the schedule says go) any member the request is not on already.
    /// The error when no member may take it (fail-fast with none healthy, or no members).
    /// The members' costs are read at `now`.
    pub(crate) fn member_for_attempt(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
        preferred: Option<Arc<MemberEntry>>,
        now: Instant,
    ) -> Result<Arc<MemberEntry>, tonic::Status> {
        match self.plan.choose(entries, policy, preferred, now) {
            Some(entry) => Ok(entry),
            None => pick(entries, policy, &self.plan.busy()),
        }
    }

    /// The member for a hedge: one not tried in this round; `None` sends no hedge. The
    /// members' costs are read at `now`.
    pub(crate) fn member_for_hedge(
        &self,
        entries: &[Arc<MemberEntry>],
        policy: AllUnhealthyPolicy,
        now: Instant,
    ) -> Option<Arc<MemberEntry>> {
        self.plan.choose(entries, policy, None, now)
    }

    /// A copy is sent to `entry` at `now`, for what `fire` said (an attempt or a hedge), with
    /// `in_flight` other copies unanswered; `hedge_delay` is the hedging delay of this kind of
    /// read (`None`: not hedged, or no other member to hedge to). Returns the copy's slot.
    pub(crate) fn sent(
        &mut self,
        fire: Fire,
        entry: Arc<MemberEntry>,
        now: Instant,
        in_flight: usize,
        hedge_delay: Option<Duration>,
    ) -> usize {
        let slot = self.plan.start(entry, now);
        let in_flight = in_flight + 1;
        match (fire, hedge_delay) {
            (Fire::Hedge, Some(delay)) => self.schedule.hedge_sent(now, in_flight, delay),
            _ => self.schedule.attempt_sent(now, in_flight, hedge_delay),
        }
        slot
    }

    /// The copy in `slot` answered: how it compares with the others.
    pub(crate) fn answered(&mut self, slot: usize) -> Answered {
        let sent = self.plan.finish(slot);
        let won = self.plan.outrun_by(&sent).next().is_some();
        let hedge = if slot == 0 && self.plan.attempts() > 1 {
            Some(HedgeVerdict::Lost)
        } else {
            won.then_some(HedgeVerdict::Won)
        };
        Answered { sent, won, hedge }
    }

    /// Copies still unanswered that were sent before `winner`: their members are slower than
    /// a peer right now.
    pub(crate) fn outrun_by<'a>(&'a self, winner: &'a Sent) -> impl Iterator<Item = &'a Sent> {
        self.plan.outrun_by(winner)
    }

    /// How long the copies still in flight after `winner` answered are left to run, detached,
    /// so a member that merely lost a race can answer and one that hangs is caught (its
    /// attempt's own hang check runs `hang_after` after it was sent): `None` when nothing is
    /// in flight or hangs are not watched.
    pub(crate) fn drain_until(
        &self,
        winner: &Sent,
        hang_after: Option<Duration>,
        in_flight: usize,
    ) -> Option<Instant> {
        let after = hang_after.filter(|_| in_flight > 0)?;
        Some(self.plan.oldest().unwrap_or(winner.at) + after + HANG_SLACK)
    }

    /// The copy in `slot` failed (seen at `moment`): what follows. A write that may have
    /// been processed is never sent again; a retry that may cost a member work goes only when
    /// no copy is still in flight (that copy, a hedge, already is its retry; more hedges follow
    /// on its timer) and `withdraw` draws it from the retry budget. A round over (every member
    /// tried) is ended here: the driver then also wakes on changes of the health state.
    /// `unit` is a uniform sample in `[0, 1)` for the back-off's jitter.
    pub(crate) fn failed(
        &mut self,
        slot: usize,
        failure: FailedCopy<'_>,
        moment: Moment<'_>,
        retry: &RetryConfig,
        unit: f64,
        withdraw: impl FnOnce() -> bool,
    ) -> (Sent, AfterFailure) {
        let sent = self.plan.finish(slot);
        let in_flight_empty = moment.in_flight == 0;
        let facts = Failed {
            class: self.class,
            maybe_processed: failure.maybe_processed,
            attempts: self.plan.attempts(),
            in_flight_empty,
            has_fresh: self.plan.has_fresh(moment.entries, moment.policy),
            backoff: self.plan.round_backoff(retry, unit),
        };
        let mut decision = self.schedule.after_failure(facts, moment.now);
        if matches!(decision.next, Next::RetryAt(_) | Next::BackOff(_))
            && !resend_is_free(failure.maybe_processed, failure.message)
            && (!in_flight_empty || !withdraw())
        {
            decision.next = self.schedule.refuse_retry(in_flight_empty);
        }
        if decision.round_over {
            self.plan.end_round();
        }
        (sent, decision)
    }

    /// The limits of one copy sent `now`: the caller's deadline bounds every copy, or without
    /// one what is left of `retry.budget` (a hung member must not hold a caller that set none
    /// for ever: etcd-client's default options set none); a read's copy may have a shorter
    /// bound of its own.
    pub(crate) fn limits(&self, bounds: &Bounds, now: Instant) -> Limits {
        let remaining = self.schedule.end().saturating_duration_since(now);
        let (deadline, callers_deadline) = match bounds.read_timeout {
            Some(read) if read < remaining => (read, true),
            _ => (remaining, bounds.has_deadline),
        };
        Limits {
            deadline: Some(deadline),
            callers_deadline,
            hang_after: bounds.hang_after,
            has_leader: bounds.has_leader,
        }
    }

    /// Whether the caller of a failed request learns it as *outcome unknown*: a write the
    /// member may have processed.
    pub(crate) fn outcome_unknown(&self, maybe_processed: bool) -> bool {
        !may_resend(self.class, maybe_processed)
    }
}

/// How long past `hang.after` an outrun attempt is kept, so its own hang check runs.
const HANG_SLACK: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn retry(max_attempts: u8) -> RetryConfig {
        RetryConfig {
            max_attempts,
            backoff: ms(100),
            max_backoff: ms(300),
            budget: ms(1000),
            ..RetryConfig::default()
        }
    }

    /// Members of the round's attempts and those still serving the request are excluded;
    /// a new round frees those that answered, not those still in flight.
    #[tokio::test]
    async fn rounds_exclude_tried_and_busy_members() {
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker =
            crate::checker::HealthChecker::new(&endpoints, crate::config::Config::default())
                .expect("ok");
        let entries = checker.entries();
        let policy = AllUnhealthyPolicy::TryAll;
        let mut plan = Plan::new(vec![2]);
        assert!(plan.excluded(2), "avoided in the first round");
        let first = plan.start(entries[0].clone(), Instant::now());
        let _second = plan.start(entries[1].clone(), Instant::now());
        assert!(
            !plan.has_fresh(&entries, policy),
            "all three tried or avoided"
        );
        plan.finish(first);
        assert!(plan.excluded(0), "tried in this round");
        plan.end_round();
        assert!(!plan.excluded(0) && !plan.excluded(2), "a new round");
        assert!(plan.excluded(1), "still serving the request");
        assert_eq!(plan.busy(), vec![1]);
        let next = plan
            .choose(&entries, policy, None, Instant::now())
            .expect("a fresh member");
        assert_ne!(next.member().index(), 1);
        assert_eq!(plan.attempts(), 2);
    }

    /// The first round's back-off is `backoff`, then it doubles round after round.
    #[test]
    fn round_backoffs_double() {
        let c = retry(5);
        let mut plan = Plan::new(Vec::new());
        assert_eq!(plan.round_backoff(&c, 0.0), ms(100));
        plan.end_round();
        assert_eq!(plan.round_backoff(&c, 0.0), ms(200));
        plan.end_round();
        assert_eq!(plan.round_backoff(&c, 0.0), ms(300));
    }

    fn three() -> (crate::checker::HealthChecker, Arc<Vec<Arc<MemberEntry>>>) {
        let endpoints: Vec<String> = (1..=3).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let checker =
            crate::checker::HealthChecker::new(&endpoints, crate::config::Config::default())
                .expect("ok");
        let entries = checker.entries();
        (checker, entries)
    }

    /// A request of `class` with a deadline of 1 s, up to 5 attempts, 3 copies at once; its
    /// first attempt sent to member 0 at `t0`, hedges due 10 ms later.
    fn dispatched(class: Class, entries: &[Arc<MemberEntry>], t0: Instant) -> Dispatch {
        let hedge = HedgeConfig {
            max_attempts: 3,
            ..HedgeConfig::default()
        };
        let mut d = Dispatch::new(class, Vec::new(), t0, Some(ms(1000)), &retry(5), &hedge);
        assert_eq!(d.on_timer(t0, 0), Fire::Attempt);
        assert_eq!(
            d.sent(Fire::Attempt, entries[0].clone(), t0, 0, Some(ms(10))),
            0
        );
        d
    }

    fn moment(entries: &[Arc<MemberEntry>], in_flight: usize, now: Instant) -> Moment<'_> {
        Moment {
            entries,
            policy: AllUnhealthyPolicy::TryAll,
            in_flight,
            now,
        }
    }

    const TIMED_OUT: FailedCopy<'static> = FailedCopy {
        maybe_processed: true,
        message: "etcdserver: request timed out",
    };

    const NO_LEADER: FailedCopy<'static> = FailedCopy {
        maybe_processed: false,
        message: "etcdserver: no leader",
    };

    fn no_draw() -> bool {
        panic!("the retry budget is not asked")
    }

    /// A read's retry after a failure that may have cost the member work is drawn from the
    /// retry budget: granted, it goes at once to another member; refused, the caller gets the
    /// failure. One the member certainly never ran is free: the budget is not asked.
    #[tokio::test]
    async fn retries_that_may_cost_work_are_drawn_from_the_budget() {
        let (_checker, entries) = three();
        let t0 = Instant::now();
        let now = t0 + ms(5);

        let mut d = dispatched(Class::Read, &entries, t0);
        let (sent, after) = d.failed(
            0,
            TIMED_OUT,
            moment(&entries, 0, now),
            &retry(5),
            0.0,
            || true,
        );
        assert_eq!(sent.entry.member().index(), 0);
        assert_eq!(after.next, Next::RetryAt(now));
        assert_eq!(d.on_timer(now, 0), Fire::Attempt);
        let next = d.member_for_attempt(&entries, AllUnhealthyPolicy::TryAll, None, Instant::now());
        assert_ne!(
            next.expect("a member").member().index(),
            0,
            "another member"
        );

        let mut d = dispatched(Class::Read, &entries, t0);
        let (_, after) = d.failed(
            0,
            TIMED_OUT,
            moment(&entries, 0, now),
            &retry(5),
            0.0,
            || false,
        );
        assert_eq!(after.next, Next::GiveUp, "refused by the budget");
        assert_eq!(
            d.wake(),
            Some(t0 + ms(10)),
            "only the hedge timer, with nothing in flight"
        );
        assert_eq!(d.on_timer(now, 0), Fire::Nothing);

        let mut d = dispatched(Class::Write, &entries, t0);
        let (_, after) = d.failed(
            0,
            NO_LEADER,
            moment(&entries, 0, now),
            &retry(5),
            0.0,
            no_draw,
        );
        assert_eq!(after.next, Next::RetryAt(now), "free");
    }

    /// While another copy of a read is in flight, a failure sends no retry (that copy is its
    /// retry), and the budget is not asked.
    #[tokio::test]
    async fn a_copy_in_flight_stands_in_for_the_retry() {
        let (_checker, entries) = three();
        let t0 = Instant::now();
        let mut d = dispatched(Class::Read, &entries, t0);
        assert_eq!(d.on_timer(t0 + ms(10), 1), Fire::Hedge);
        let hedge = d
            .member_for_hedge(&entries, AllUnhealthyPolicy::TryAll, Instant::now())
            .expect("a peer");
        assert_ne!(hedge.member().index(), 0);
        assert_eq!(d.sent(Fire::Hedge, hedge, t0 + ms(10), 1, Some(ms(10))), 1);
        assert_eq!(d.wake(), Some(t0 + ms(30)), "the next hedge two delays on");
        let now = t0 + ms(12);
        let (_, after) = d.failed(
            1,
            TIMED_OUT,
            moment(&entries, 1, now),
            &retry(5),
            0.0,
            no_draw,
        );
        assert_eq!(after.next, Next::AwaitOthers);
        assert!(!after.round_over);
        assert!(!d.waits_for_changes());
    }

    /// A write the member may have processed is not sent again: the caller learns it as
    /// *outcome unknown*; one refused before it ran is not.
    #[tokio::test]
    async fn a_write_that_may_have_run_gives_up_as_outcome_unknown() {
        let (_checker, entries) = three();
        let t0 = Instant::now();
        let mut d = dispatched(Class::Write, &entries, t0);
        assert_eq!(d.wake(), None, "never hedged");
        let (_, after) = d.failed(
            0,
            TIMED_OUT,
            moment(&entries, 0, t0),
            &retry(5),
            0.0,
            no_draw,
        );
        assert_eq!(after.next, Next::GiveUp);
        assert!(d.outcome_unknown(true));
        assert!(!d.outcome_unknown(false));
        let read = dispatched(Class::Read, &entries, t0);
        assert!(!read.outcome_unknown(true));
    }

    /// Once every member failed in a round, the round ends: the back-off is set (and the
    /// driver wakes on health changes), after which every member may be tried again.
    #[tokio::test]
    async fn every_member_failed_ends_the_round_and_backs_off() {
        let (_checker, entries) = three();
        let t0 = Instant::now();
        let mut d = dispatched(Class::Write, &entries, t0);
        let policy = AllUnhealthyPolicy::TryAll;
        let mut now = t0;
        for slot in 0..2 {
            now += ms(1);
            let (_, after) = d.failed(
                slot,
                NO_LEADER,
                moment(&entries, 0, now),
                &retry(5),
                0.0,
                no_draw,
            );
            assert_eq!((after.next, after.round_over), (Next::RetryAt(now), false));
            assert_eq!(d.on_timer(now, 0), Fire::Attempt);
            let next = d
                .member_for_attempt(&entries, policy, None, Instant::now())
                .expect("a member");
            assert_eq!(d.sent(Fire::Attempt, next, now, 0, None), slot + 1);
        }
        now += ms(1);
        let (_, after) = d.failed(
            2,
            NO_LEADER,
            moment(&entries, 0, now),
            &retry(5),
            0.0,
            no_draw,
        );
        assert_eq!(
            (after.next, after.round_over),
            (Next::BackOff(now + ms(100)), true)
        );
        assert!(d.waits_for_changes());
        d.changed(now + ms(7));
        assert_eq!(
            d.on_timer(now + ms(7), 0),
            Fire::Attempt,
            "a change ends the back-off"
        );
        assert!(
            d.member_for_attempt(&entries, policy, None, Instant::now())
                .is_ok(),
            "a new round"
        );
        assert_eq!(d.attempts(), 3);
    }

    /// The member a request must go to (the leader) or should (a write's target) is taken
    /// unless already tried in this round.
    #[tokio::test]
    async fn a_preferred_member_is_taken_unless_tried_in_this_round() {
        let (_checker, entries) = three();
        let policy = AllUnhealthyPolicy::TryAll;
        let t0 = Instant::now();
        let mut d = Dispatch::new(
            Class::Write,
            vec![1],
            t0,
            None,
            &retry(5),
            &HedgeConfig::default(),
        );
        let got = d.member_for_attempt(&entries, policy, Some(entries[2].clone()), Instant::now());
        assert_eq!(got.expect("one").member().index(), 2);
        d.sent(Fire::Attempt, entries[2].clone(), t0, 0, None);
        d.failed(
            0,
            NO_LEADER,
            moment(&entries, 0, t0),
            &retry(5),
            0.0,
            no_draw,
        );
        let got = d.member_for_attempt(&entries, policy, Some(entries[2].clone()), Instant::now());
        assert_eq!(
            got.expect("one").member().index(),
            0,
            "neither tried nor avoided"
        );
    }

    /// The first copy answering after hedges went out: they lost; a hedge answering first
    /// won, outrunning the copies sent before it, which are left to run until their hang
    /// check (from the oldest) has run.
    #[tokio::test]
    async fn answers_tell_whether_hedges_paid_off() {
        let (_checker, entries) = three();
        let t0 = Instant::now();
        let hang = Some(ms(1000));

        let mut d = dispatched(Class::Read, &entries, t0);
        let a = d.answered(0);
        assert_eq!((a.won, a.hedge), (false, None), "no hedge sent");
        assert_eq!(d.drain_until(&a.sent, hang, 0), None, "nothing in flight");

        let mut d = dispatched(Class::Read, &entries, t0);
        d.on_timer(t0 + ms(10), 1);
        d.sent(
            Fire::Hedge,
            entries[1].clone(),
            t0 + ms(10),
            1,
            Some(ms(10)),
        );
        let a = d.answered(0);
        assert_eq!((a.won, a.hedge), (false, Some(HedgeVerdict::Lost)));

        let mut d = dispatched(Class::Read, &entries, t0);
        d.on_timer(t0 + ms(10), 1);
        d.sent(
            Fire::Hedge,
            entries[1].clone(),
            t0 + ms(10),
            1,
            Some(ms(10)),
        );
        let a = d.answered(1);
        assert_eq!((a.won, a.hedge), (true, Some(HedgeVerdict::Won)));
        let outrun: Vec<usize> = d
            .outrun_by(&a.sent)
            .map(|s| s.entry.member().index())
            .collect();
        assert_eq!(outrun, [0]);
        assert_eq!(
            d.drain_until(&a.sent, hang, 1),
            Some(t0 + ms(1000) + HANG_SLACK)
        );
        assert_eq!(d.drain_until(&a.sent, None, 1), None, "hangs not watched");
    }

    /// Every copy is bounded by what is left of the caller's deadline (or of `retry.budget`,
    /// not sent on), or by a read's own shorter bound (sent on as the copy's deadline).
    #[tokio::test]
    async fn each_copy_is_bounded_by_what_is_left() {
        let t0 = Instant::now();
        let bounds = Bounds {
            has_deadline: false,
            read_timeout: Some(ms(300)),
            hang_after: Some(ms(50)),
            has_leader: true,
        };
        let d = Dispatch::new(
            Class::Read,
            Vec::new(),
            t0,
            None,
            &retry(5),
            &HedgeConfig::default(),
        );
        let l = d.limits(&bounds, t0);
        assert_eq!(
            (l.deadline, l.callers_deadline),
            (Some(ms(300)), true),
            "the read's own"
        );
        assert_eq!((l.hang_after, l.has_leader), (Some(ms(50)), true));
        let l = d.limits(&bounds, t0 + ms(800));
        assert_eq!(
            (l.deadline, l.callers_deadline),
            (Some(ms(200)), false),
            "the budget's rest"
        );
        let d = Dispatch::new(
            Class::Read,
            Vec::new(),
            t0,
            Some(ms(250)),
            &retry(5),
            &HedgeConfig::default(),
        );
        let l = d.limits(
            &Bounds {
                has_deadline: true,
                ..bounds
            },
            t0 + ms(50),
        );
        assert_eq!(
            (l.deadline, l.callers_deadline),
            (Some(ms(200)), true),
            "the caller's rest"
        );
        let l = d.limits(
            &Bounds {
                has_deadline: true,
                ..bounds
            },
            t0 + ms(400),
        );
        assert_eq!(l.deadline, Some(Duration::ZERO), "past it");
    }

    /// A read's own bound applies to reads only; hangs are watched unless `hang.threshold` is 0.
    #[test]
    fn bounds_come_from_the_config() {
        let mut config = Config::default();
        config.retry.read_attempt_timeout = ms(300);
        let read = Bounds::new(&config, Class::Read, true);
        assert_eq!(read.read_timeout, Some(ms(300)));
        assert!(read.has_deadline && read.has_leader);
        assert_eq!(read.hang_after, Some(config.hang.after));
        let write = Bounds::new(&config, Class::Write, false);
        assert_eq!((write.read_timeout, write.has_deadline), (None, false));
        config.hang.threshold = 0;
        config.retry.read_attempt_timeout = Duration::ZERO;
        let read = Bounds::new(&config, Class::Read, false);
        assert_eq!((read.read_timeout, read.hang_after), (None, None));
    }
}
