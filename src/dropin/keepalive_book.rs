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

use std::collections::VecDeque;

use super::book::{Book, Heard, Judged, Resumed};
use super::stats::StreamKind;
use crate::leader::behind_the_leader;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

/// The keep-alives sent and not answered yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct KeepAliveBook {
    unanswered: VecDeque<LeaseKeepAliveRequest>,
}

impl Book for KeepAliveBook {
    type Req = LeaseKeepAliveRequest;
    type Resp = LeaseKeepAliveResponse;
    const KIND: StreamKind = StreamKind::KeepAlive;
    const POKES: bool = false;
    const JUDGES_TERMS: bool = true;
    const PATH: &'static str = "/etcdserverpb.Lease/LeaseKeepAlive";

    fn on_caller(&mut self, req: LeaseKeepAliveRequest) -> Vec<LeaseKeepAliveRequest> {
        self.unanswered.push_back(req);
        vec![req]
    }

    fn behind(&self, resp: &LeaseKeepAliveResponse, leader_term: Option<u64>) -> Option<String> {
        let term = resp.header.as_ref().map_or(0, |h| h.raft_term);
        behind_the_leader(term, leader_term).then(|| {
            format!(
                "answered at raft term {term}, behind the leader's term {}: a renewal there \
                 renews nothing",
                leader_term.unwrap_or_default()
            )
        })
    }

    fn on_member(
        &mut self,
        resp: LeaseKeepAliveResponse,
    ) -> Judged<LeaseKeepAliveRequest, LeaseKeepAliveResponse> {
        // Answers come in order; the first request for this lease is the one answered.
        if let Some(pos) = self.unanswered.iter().position(|r| r.id == resp.id) {
            self.unanswered.remove(pos);
        }
        Judged {
            heard: Heard::Forward(resp),
            send: Vec::new(),
        }
    }

    fn resume(&mut self) -> Resumed<LeaseKeepAliveRequest> {
        // One renewal per lease, in the order the leases were first asked for.
        let mut seen = std::collections::HashSet::with_capacity(self.unanswered.len());
        self.unanswered.retain(|r| seen.insert(r.id));
        let requests: Vec<_> = self.unanswered.iter().cloned().collect();
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
