//! Members a stream recently failed on.

use std::time::Duration;

use tokio::time::Instant;

use crate::balance::AvoidMembers;
use crate::member::Member;

/// Members to avoid when re-opening a stream, each for a limited time: long enough for the
/// health checker to catch up, short enough that a recovered member serves again.
#[derive(Debug)]
pub(crate) struct AvoidList {
    for_: Duration,
    members: Vec<(Member, Instant)>,
}

// === impl AvoidList ===

impl AvoidList {
    pub(crate) fn new(for_: Duration) -> Self {
        Self {
            for_,
            members: Vec::new(),
        }
    }

    /// Remembers that a stream failed on `member` at `now`.
    pub(crate) fn add(&mut self, member: Member, now: Instant) {
        let until = now + self.for_;
        self.members.retain(|(m, _)| m.index() != member.index());
        self.members.push((member, until));
    }

    /// The request extension for the members still to avoid at `now`.
    pub(crate) fn hint(&mut self, now: Instant) -> AvoidMembers {
        self.members.retain(|(_, until)| *until > now);
        AvoidMembers(self.members.iter().map(|(m, _)| m.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: usize) -> Member {
        Member::new(i, format!("http://m{i}:2379").parse().expect("uri"))
    }

    fn indexes(hint: AvoidMembers) -> Vec<usize> {
        hint.0.iter().map(Member::index).collect()
    }

    #[test]
    fn a_member_is_avoided_for_a_while_from_its_last_failure() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut avoid = AvoidList::new(10 * s);
        avoid.add(member(1), t0);
        avoid.add(member(2), t0 + 5 * s);
        assert_eq!(indexes(avoid.hint(t0 + 9 * s)), [1, 2]);
        assert_eq!(indexes(avoid.hint(t0 + 10 * s)), [2], "1's time is over");
        avoid.add(member(2), t0 + 12 * s);
        assert_eq!(
            indexes(avoid.hint(t0 + 16 * s)),
            [2],
            "a new failure extends, never duplicates"
        );
        assert!(avoid.hint(t0 + 22 * s).0.is_empty());
    }
}
