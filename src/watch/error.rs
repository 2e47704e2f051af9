//! Why a resuming watch ended.

/// The end of a [`ResumingWatch`](super::ResumingWatch): the last item it yields.
///
/// Member failures never end a watch (it is re-created); these are the cases where going on
/// would hide something from the caller.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The revision the watch had to start or resume from is compacted: the events between
    /// `requested` and `compacted` are gone. Re-read the current state, then watch again from
    /// its revision.
    #[error(
        "watch: revision {requested} is compacted (etcd keeps revisions from {compacted} on); \
         events from {requested} to {} are lost",
        compacted.saturating_sub(1)
    )]
    Compacted {
        /// The revision the watch asked for (last delivered + 1, or the start revision).
        requested: i64,
        /// The compaction revision etcd reported: the oldest revision still available.
        compacted: i64,
    },
    /// etcd canceled the watch for a reason that is not a member failure (e.g. permission).
    #[error("watch canceled by etcd: {reason}")]
    Canceled {
        /// etcd's `cancel_reason`.
        reason: String,
    },
    /// The watch failed with a status that would be the same on every member (e.g. invalid
    /// argument, permission denied).
    #[error("watch failed: {0}")]
    Status(tonic::Status),
}
