//! Members a stream recently failed on.

use std::time::{Duration, Instant};

use crate::balance::AvoidMembers;
use crate::checker::Member;

/// Members to avoid when re-opening a stream, each for a limited time: long enough for the
/// health checker to catch up, short enough that a recovered member serves again.
#[derive(Debug)]
pub(crate) struct AvoidList {
    for_: Duration,
    members: Vec<(Member, Instant)>,
}

impl AvoidList {
    pub(crate) fn new(for_: Duration) -> Self {
        Self {
            for_,
            members: Vec::new(),
        }
    }

    /// Remembers that a stream failed on `member`.
    pub(crate) fn add(&mut self, member: Member) {
        let until = Instant::now() + self.for_;
        self.members.retain(|(m, _)| m.index() != member.index());
        self.members.push((member, until));
    }

    /// The request extension for the members still to avoid.
    pub(crate) fn hint(&mut self) -> AvoidMembers {
        let now = Instant::now();
        self.members.retain(|(_, until)| *until > now);
        AvoidMembers(self.members.iter().map(|(m, _)| m.clone()).collect())
    }
}
