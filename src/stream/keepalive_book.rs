//! The lease keep-alive's [`Book`]: the caller's unanswered keep-alives.
//!
//! A keep-alive (`{ID}`) is idempotent: sent again to another member it renews the lease
//! again, which is what the caller asked for. Answers are the member's own, never made up (a
//! lease that is gone is answered TTL 0 by etcd).
//!
//! Keep-alives the caller sent while no member answered (an outage, a move) are sent again
//! **once per lease**: etcd-client renews every TTL/3 whatever happens, so an outage of minutes
//! would otherwise pile up hundreds of identical renewals per lease, all re-sent at once to
//! the member that takes the stream over (and again at each failed re-open). Renewing a lease
//! once renews it for all of them; that renewal is answered once. Each re-open shrinks the book
//! to one entry per lease, so it holds at most what the caller sent since the last one.
//! An answer from a member behind the leader's term (a deposed leader that does not know it
//! yet) renews nothing the real leader sees: it is not passed on, and the keep-alive is
//! asked again of another member.
//!
//! Each keep-alive of the caller gets a tag. The keep-alive engine (`keepalive_driver.rs`) may
//! send one keep-alive on several streams at once (to several members); the first answer to
//! its tag is passed on, later ones are duplicates the caller must not see (etcd-client's
//! keeper reads one answer per request). With stream resumption off, the plain driver
//! (`driver.rs`) follows the same book through the [`Book`] trait.

use std::collections::VecDeque;

use super::book::{Book, Heard, Judged, Resumed};
use super::stats::StreamKind;
use crate::leader::behind_the_leader;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

/// The keep-alives sent and not answered yet, oldest first, each with its tag and whether it
/// went to a member yet.
#[derive(Debug, Default)]
pub(super) struct KeepAliveBook {
    unanswered: VecDeque<(u64, LeaseKeepAliveRequest, bool)>,
    next_tag: u64,
}

// === impl KeepAliveBook ===

impl KeepAliveBook {
    /// Books a keep-alive of the caller; returns its tag.
    pub(super) fn ask(&mut self, req: LeaseKeepAliveRequest) -> u64 {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        self.unanswered.push_back((tag, req, false));
        tag
    }

    /// The keep-alive tagged `tag` went to a member: `true` if it had gone to one before (an
    /// extra keep-alive, for the counts).
    pub(super) fn sent(&mut self, tag: u64) -> bool {
        self.unanswered
            .iter_mut()
            .find(|(t, _, _)| *t == tag)
            .is_some_and(|(_, _, sent)| std::mem::replace(sent, true))
    }

    /// A member answered the keep-alive tagged `tag`: `true` if it is the first answer (pass
    /// it on), `false` if another member answered it already (a duplicate: swallow it).
    pub(super) fn answer(&mut self, tag: u64) -> bool {
        match self.unanswered.iter().position(|(t, _, _)| *t == tag) {
            Some(pos) => {
                self.unanswered.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Keeps one unanswered keep-alive per lease, the oldest, in the order the leases were
    /// first asked for (see the [module docs](self)): what goes to a member again renews each
    /// lease once.
    pub(super) fn coalesce(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.unanswered.len());
        self.unanswered.retain(|(_, r, _)| seen.insert(r.id));
    }

    /// The keep-alives not answered yet, oldest first, with their tags.
    pub(super) fn unanswered(&self) -> impl Iterator<Item = (LeaseKeepAliveRequest, u64)> + '_ {
        self.unanswered.iter().map(|(tag, req, _)| (*req, *tag))
    }

    /// Why an answer at this raft term renews nothing, if it does not (see [`Book::behind`]).
    pub(super) fn behind_the_leader(
        resp: &LeaseKeepAliveResponse,
        leader_term: Option<u64>,
    ) -> Option<String> {
        let term = resp.header.as_ref().map_or(0, |h| h.raft_term);
        behind_the_leader(term, leader_term).then(|| {
            format!(
                "answered at raft term {term}, behind the leader's term {}: a renewal there \
                 renews nothing",
                leader_term.unwrap_or_default()
            )
        })
    }
}

impl Book for KeepAliveBook {
    type Req = LeaseKeepAliveRequest;
    type Resp = LeaseKeepAliveResponse;
    const KIND: StreamKind = StreamKind::KeepAlive;
    const POKES: bool = false;
    const JUDGES_TERMS: bool = true;
    const PATH: &'static str = "/etcdserverpb.Lease/LeaseKeepAlive";

    fn on_caller(&mut self, req: LeaseKeepAliveRequest) -> Vec<LeaseKeepAliveRequest> {
        self.ask(req);
        vec![req]
    }

    fn behind(&self, resp: &LeaseKeepAliveResponse, leader_term: Option<u64>) -> Option<String> {
        Self::behind_the_leader(resp, leader_term)
    }

    fn on_member(
        &mut self,
        resp: LeaseKeepAliveResponse,
    ) -> Judged<LeaseKeepAliveRequest, LeaseKeepAliveResponse> {
        // Answers come in order; the first request for this lease is the one answered.
        if let Some(pos) = self.unanswered.iter().position(|(_, r, _)| r.id == resp.id) {
            self.unanswered.remove(pos);
        }
        Judged {
            heard: Heard::Forward(resp),
            send: Vec::new(),
        }
    }

    fn resume(&mut self) -> Resumed<LeaseKeepAliveRequest> {
        self.coalesce();
        let requests: Vec<_> = self.unanswered().map(|(req, _)| req).collect();
        Resumed {
            again: requests.len(),
            requests,
        }
    }

    fn needs_member(&self) -> bool {
        !self.unanswered.is_empty()
    }

    fn outstanding(&self) -> usize {
        self.unanswered.len()
    }

    fn poke(&mut self) -> Option<LeaseKeepAliveRequest> {
        None
    }

    fn prefer_leader(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;

    fn req(id: i64) -> LeaseKeepAliveRequest {
        LeaseKeepAliveRequest { id }
    }

    fn answer(id: i64) -> LeaseKeepAliveResponse {
        LeaseKeepAliveResponse {
            id,
            ttl: 5,
            ..Default::default()
        }
    }

    #[test]
    fn unanswered_keep_alives_are_sent_again_once_each_and_answers_are_passed_on() {
        let mut b = KeepAliveBook::default();
        assert!(!b.needs_member());
        assert_eq!(b.on_caller(req(1)), vec![req(1)]);
        b.on_caller(req(2));
        b.on_caller(req(1));
        assert_eq!(b.outstanding(), 3);
        let j = b.on_member(answer(1));
        assert_eq!(j.heard, Heard::Forward(answer(1)));
        // The member is lost: what it did not answer goes to the next one, in order.
        let r = b.resume();
        assert_eq!(r.requests, vec![req(2), req(1)]);
        assert_eq!(r.again, 2);
        b.on_member(answer(2));
        b.on_member(answer(1));
        assert!(!b.needs_member());
        assert!(
            b.resume().requests.is_empty(),
            "nothing answered is sent again"
        );
    }

    #[test]
    fn an_answer_behind_the_leaders_term_is_not_a_renewal_and_is_asked_again() {
        let mut b = KeepAliveBook::default();
        b.on_caller(req(4));
        let at = |raft_term| LeaseKeepAliveResponse {
            id: 4,
            ttl: 5,
            header: Some(ResponseHeader {
                raft_term,
                ..Default::default()
            }),
        };
        let why = b
            .behind(&at(54), Some(55))
            .expect("a deposed leader's answer");
        assert!(why.contains("54") && why.contains("55"), "{why}");
        assert_eq!(b.outstanding(), 1, "still unanswered");
        assert_eq!(b.resume().requests, vec![req(4)], "asked again elsewhere");
        assert_eq!(b.behind(&at(55), Some(55)), None, "the leader's own term");
        assert_eq!(b.behind(&at(54), None), None, "no leader known");
        assert_eq!(b.behind(&answer(4), Some(55)), None, "no header");
    }

    #[test]
    fn a_keep_alive_asked_of_several_members_is_answered_once_the_rest_are_duplicates() {
        let mut b = KeepAliveBook::default();
        let first = b.ask(req(7));
        let second = b.ask(req(7));
        assert_ne!(first, second, "each keep-alive has its own tag");
        assert_eq!(
            b.unanswered().collect::<Vec<_>>(),
            vec![(req(7), first), (req(7), second)],
            "a new stream is sent both, oldest first"
        );
        assert!(!b.sent(first), "first sent");
        assert!(b.sent(first), "sent again: an extra keep-alive");
        assert!(b.answer(first), "the first answer is passed on");
        assert!(
            !b.answer(first),
            "the same keep-alive answered by a second member"
        );
        assert_eq!(b.outstanding(), 1);
        assert!(b.answer(second));
        assert!(!b.answer(second));
        assert!(!b.needs_member());
        assert!(!b.answer(99), "a tag never given");
    }

    #[test]
    fn a_lease_gone_is_the_member_s_answer_passed_on_as_it_is() {
        let mut b = KeepAliveBook::default();
        b.on_caller(req(9));
        let gone = LeaseKeepAliveResponse {
            id: 9,
            ttl: 0,
            ..Default::default()
        };
        assert_eq!(b.on_member(gone).heard, Heard::Forward(gone));
        assert_eq!(b.outstanding(), 0);
    }

    /// An outage of minutes: the caller renews two leases every second and no member answers.
    /// The book keeps (and each re-open sends) one renewal per lease, not one per request.
    #[test]
    fn renewals_piled_up_in_an_outage_are_sent_again_once_per_lease() {
        let mut b = KeepAliveBook::default();
        for _ in 0..300 {
            b.on_caller(req(7));
            b.on_caller(req(3));
            if b.outstanding() > 50 {
                // A re-open attempt (that fails): the pile shrinks to one per lease.
                let r = b.resume();
                assert_eq!(r.requests, vec![req(7), req(3)]);
            }
        }
        assert!(b.outstanding() <= 52, "{}", b.outstanding());
        let r = b.resume();
        assert_eq!(r.requests, vec![req(7), req(3)]);
        assert_eq!(r.again, 2);
        b.on_member(answer(7));
        b.on_member(answer(3));
        assert!(
            !b.needs_member(),
            "one answer per lease renews it for every request"
        );
    }
}
