//! The lease keep-alive's [`Book`]: the caller's unanswered keep-alives.
//!
//! A keep-alive (`{ID}`) is idempotent: sent again to another member it renews the lease
//! again, which is what the caller asked for. Each request gets exactly one answer, the
//! member's own (answers are never made up: a lease that is gone is answered TTL 0 by etcd).

use std::collections::VecDeque;

use super::book::{Book, Heard, Judged, Resumed};
use super::stats::StreamKind;
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
    const PATH: &'static str = "/etcdserverpb.Lease/LeaseKeepAlive";

    fn on_caller(&mut self, req: LeaseKeepAliveRequest) -> Vec<LeaseKeepAliveRequest> {
        self.unanswered.push_back(req);
        vec![req]
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
}
