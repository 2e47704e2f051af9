//! Where the watch stands: what was delivered, where to resume.

/// The revisions a watch has delivered, and the rule that keeps resumes gap- and
/// duplicate-free.
#[derive(Clone, Debug)]
pub(super) struct Cursor {
    /// The revision to (re)start from; 0 means "from now" and only holds until the first
    /// watch is created.
    pub(super) next: i64,
    /// The highest revision delivered (or known to hold nothing more for this watch).
    pub(super) last: i64,
}

impl Cursor {
    pub(super) fn new(start_revision: i64) -> Self {
        Self {
            next: start_revision.max(0),
            last: start_revision.saturating_sub(1).max(0),
        }
    }

    /// A watch created "from now" at store revision `header_revision` sees every later one.
    pub(super) fn created(&mut self, header_revision: i64) {
        if self.next == 0 {
            self.next = header_revision.saturating_add(1);
            self.last = header_revision;
        }
    }

    /// Whether an event of revision `rev` is new. Events of one revision arrive in one
    /// response, so the caller checks a whole response against the cursor before
    /// [`delivered`](Self::delivered).
    pub(super) fn is_new(&self, rev: i64) -> bool {
        rev > self.last
    }

    /// Every event up to `rev` has been delivered (or there were none for this watch).
    pub(super) fn delivered(&mut self, rev: i64) {
        if rev > self.last {
            self.last = rev;
            // Saturating: revisions come from the member.
            self.next = rev.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn resumes_after_the_last_delivered_revision() {
        let mut c = Cursor::new(10);
        assert_eq!((c.next, c.last), (10, 9));
        assert!(c.is_new(10));
        c.delivered(12);
        assert_eq!(c.next, 13);
        assert!(!c.is_new(12));
        c.delivered(11);
        assert_eq!(c.next, 13, "never goes back");
        c.created(100);
        assert_eq!(
            c.next, 13,
            "a start revision is kept over the create header"
        );
    }

    #[test]
    fn from_now_pins_the_create_revision() {
        let mut c = Cursor::new(0);
        c.created(41);
        assert_eq!((c.next, c.last), (42, 41));
        assert!(!c.is_new(41));
        assert!(c.is_new(42));
    }

    /// Revisions come from the member (and the start revision from the caller): none near
    /// the ends of `i64` may overflow `+ 1` / `- 1`.
    #[test]
    fn revisions_near_the_ends_of_i64_saturate() {
        let c = Cursor::new(i64::MIN);
        assert_eq!((c.next, c.last), (0, 0));
        let mut c = Cursor::new(0);
        c.created(i64::MAX);
        assert_eq!((c.next, c.last), (i64::MAX, i64::MAX));
        let mut c = Cursor::new(1);
        c.delivered(i64::MAX);
        assert_eq!(c.next, i64::MAX);
        let e = crate::watch::WatchError::Compacted {
            requested: 1,
            compacted: i64::MIN,
        };
        assert!(e.to_string().contains(&i64::MIN.to_string()));
    }
}
