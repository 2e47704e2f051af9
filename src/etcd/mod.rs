//! Facts of etcd's protocol that more than one part of the stack needs.
//!
//! Why a module of its own: which answers mean "the cluster is electing", what each method is
//! (read or write, unary or stream, leader-only: [`Method`]) and which metadata marks an
//! answer of ours are etcd's facts, not a balancer's or a probe's; one table each keeps them
//! from drifting apart.

mod method;
mod range;
mod txn;

use tonic::Code;

#[cfg(feature = "metrics")]
pub(crate) use method::{method_index, METHODS, OTHER_METHOD};
pub(crate) use method::{Class, Hedging, Method, MethodKind};
pub(crate) use range::small_range;
pub(crate) use txn::read_only_txn;

/// Metadata that asks etcd to require a leader (etcd's Go client `WithRequireLeader`,
/// `hasleader: true`). A unary request or a new stream is refused with [`NO_LEADER`] at once on
/// a member that knows no leader, before any handler runs. A stream already open is ended with
/// `Unavailable` [`NO_LEADER`] once its member has found no leader at 3 checks in a row, one
/// per election timeout (etcd 3.4 `monitorLeader`, `maxNoLeaderCnt`, in
/// `etcdserver/api/v3rpc/interceptor.go`): so a watch or keep-alive on a member cut off from
/// the quorum ends a few election timeouts after the cut (about 2 s with a 500 ms election
/// timeout, in `tests/watch.rs`) instead of going quiet for ever.
pub(crate) const HAS_LEADER: &str = "hasleader";

/// The metadata key etcd reads a caller's auth token from (simple or JWT), on every request
/// and at the opening of every stream.
pub(crate) const TOKEN: &str = "token";

/// etcd's answer on a member that knows no leader (with `hasleader`, before any handler ran).
pub(crate) const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's answer to a linearizable read whose ReadIndex was cut short by a leader change.
pub(crate) const LEADER_CHANGED: &str = "etcdserver: leader changed";
/// etcd's answer to a request only the leader may serve (`MoveLeader`), sent to a follower.
pub(crate) const NOT_LEADER: &str = "etcdserver: not leader";

/// etcd's answer to a proposal that did not commit in time; with ", possibly due to previous
/// leader failure" or "... connection lost" when it blames the leader.
pub(crate) const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";

/// Whether a message (a status, or a watch's cancel reason) says the member has no leader or
/// just lost it: a stream on it should move to another member. Matched without the
/// `etcdserver: ` prefix, which cancel reasons do not always carry.
pub(crate) fn says_leader_lost(message: &str) -> bool {
    message.contains("no leader") || message.contains("leader changed")
}

/// Whether an answer says the member has (or just lost) no leader, or could not get a
/// proposal through one in time: a fact about the cluster at that moment (an election, or this
/// member cut off from the quorum), to be told apart by asking the other members, not a
/// failure of this member by itself.
pub(crate) fn is_leaderless(code: Code, message: &str) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::FailedPrecondition
    ) && (message.contains(NO_LEADER)
        || message.contains(LEADER_CHANGED)
        || message.contains(REQUEST_TIMED_OUT))
}

/// Whether an answer says the request went to a member that is not the leader, when only the
/// leader may serve it. etcd refuses such a request before doing anything.
pub(crate) fn is_not_leader(code: Code, message: &str) -> bool {
    code == Code::FailedPrecondition && message.contains(NOT_LEADER)
}

/// etcd's refusal of a membership change while not every member has been connected for a
/// while (`--strict-reconfig-check`): a fact about the cluster, refused before anything ran.
pub(crate) const UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";
/// etcd's admission check in front of every proposal: refused before anything ran.
pub(crate) const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// Whether etcd refused a request as a whole-cluster condition, before its handler could
/// apply anything: it says nothing against the member that answered, and a write so refused
/// was certainly not applied.
pub(crate) fn is_cluster_refusal(message: &str) -> bool {
    message == UNHEALTHY_CLUSTER || message == TOO_MANY_REQUESTS
}

/// etcd's answer to a token it does not know (a simple token forgotten by a restart or expired
/// on this member, or a JWT that does not verify).
pub(crate) const INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";
/// etcd's answer to a token issued before the latest auth store change (a user, role or
/// permission added, changed or removed). A JWT carries the auth store's revision it was
/// issued at, so after any change every request with it gets this until the client
/// authenticates again; simple tokens get it only when a change races with the request.
pub(crate) const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";
/// etcd's answer to a request without a user while auth is on (no token, or one that names
/// nobody).
pub(crate) const USER_EMPTY: &str = "etcdserver: user name is empty";

/// Whether an answer says the request's token is no longer good, so that authenticating again
/// and re-sending it is the cure, as etcd's Go client does (`shouldRefreshToken`: invalid
/// token, auth store revision old, user name empty).
///
/// The code is not trusted alone: etcd answers `Unauthenticated` or `InvalidArgument`, but its
/// Lock and Election services, built on the in-process client, lose the code and answer
/// `Unknown` with the same message.
///
/// Re-sending such a request, a write included, is safe: etcd refused it before it changed
/// anything. In etcd 3.4 a read is checked in `EtcdServer::doSerialize`
/// (`etcdserver/v3_server.go`) before it reads; a write (Put, DeleteRange, Txn, LeaseRevoke)
/// goes through raft with the auth revision of its token in the entry's header, and every
/// member's `authApplierV3` (`etcdserver/apply_auth.go`) checks it (`authStore.isOpPermitted`
/// in `auth/store.go`: "revision in header is old") before the applier touches the key-value
/// store, so the entry is applied as a no-op everywhere (etcd logs "failed to apply
/// request ... revision in header is old" on every member; `tests/auth.rs` checks that no
/// write so refused and re-sent is applied twice). Admin requests (user and role changes)
/// check the user's root role only, not the revision.
pub(crate) fn is_stale_token(code: Code, message: &str) -> bool {
    match code {
        Code::Unauthenticated => true,
        Code::InvalidArgument | Code::Unknown => {
            message == INVALID_AUTH_TOKEN || message == AUTH_OLD_REVISION || message == USER_EMPTY
        }
        _ => false,
    }
}

/// etcd's answer to `Authenticate` with a wrong user name or password (`ErrAuthFailed`).
pub(crate) const AUTH_FAILED: &str =
    "etcdserver: authentication failed, invalid user ID or password";

/// Whether an answer to `Authenticate` refuses the credentials themselves (a wrong password,
/// a user that does not exist, auth not enabled): every member will say the same until an
/// operator changes the auth store, so authenticating again at once is pointless load (each
/// `Authenticate` is a bcrypt comparison on the member). Anything else (a member or the
/// cluster unavailable, a timeout) may pass.
pub(crate) fn refuses_credentials(code: Code, message: &str) -> bool {
    match code {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound => true,
        // Lost codes (see `is_stale_token`): the message says it.
        Code::Unknown => message.contains(AUTH_FAILED),
        _ => false,
    }
}

/// Whether a watch's `cancel_reason` says its token was no longer good. etcd 3.4 checks a new
/// watch's token when it creates it (`isWatchPermitted` in `etcdserver/api/v3rpc/watch.go`)
/// and refuses a stale one not with a gRPC status but with a watch response both created
/// and canceled, whose reason is the refusal's text ("rpc error: code = InvalidArgument desc
/// = etcdserver: revision of auth store is old"). A watch already running keeps its stream.
pub(crate) fn is_stale_token_cancel(reason: &str) -> bool {
    reason.contains(INVALID_AUTH_TOKEN)
        || reason.contains(AUTH_OLD_REVISION)
        || reason.contains(USER_EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderless_answers() {
        assert!(is_leaderless(Code::Unavailable, "etcdserver: no leader"));
        assert!(is_leaderless(
            Code::Unavailable,
            "etcdserver: leader changed"
        ));
        assert!(is_leaderless(Code::Unknown, "etcdserver: leader changed"));
        assert!(is_leaderless(
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure"
        ));
        assert!(!is_leaderless(Code::DeadlineExceeded, "deadline"));
        assert!(!is_leaderless(Code::NotFound, "etcdserver: no leader"));
        assert!(is_not_leader(
            Code::FailedPrecondition,
            "etcdserver: not leader"
        ));
        assert!(is_cluster_refusal("etcdserver: unhealthy cluster"));
        assert!(is_cluster_refusal("etcdserver: too many requests"));
        assert!(!is_cluster_refusal("etcdserver: request timed out"));
    }

    #[test]
    fn stale_token_answers() {
        assert!(is_stale_token(
            Code::Unauthenticated,
            "etcdserver: invalid auth token"
        ));
        assert!(is_stale_token(
            Code::InvalidArgument,
            "etcdserver: revision of auth store is old"
        ));
        assert!(is_stale_token(
            Code::Unknown,
            "etcdserver: revision of auth store is old"
        ));
        assert!(is_stale_token(
            Code::InvalidArgument,
            "etcdserver: user name is empty"
        ));
        assert!(!is_stale_token(
            Code::InvalidArgument,
            "etcdserver: key is not provided"
        ));
        assert!(!is_stale_token(
            Code::PermissionDenied,
            "etcdserver: permission denied"
        ));
        assert!(is_stale_token_cancel(
            "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"
        ));
        assert!(!is_stale_token_cancel("etcdserver: permission denied"));
        assert!(!is_stale_token(
            Code::FailedPrecondition,
            "etcdserver: authentication failed, invalid user ID or password"
        ));
    }

    #[test]
    fn refusals_of_credentials() {
        assert!(refuses_credentials(Code::InvalidArgument, AUTH_FAILED));
        assert!(refuses_credentials(Code::Unknown, AUTH_FAILED));
        assert!(refuses_credentials(
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled"
        ));
        assert!(!refuses_credentials(Code::Unavailable, NO_LEADER));
        assert!(!refuses_credentials(Code::DeadlineExceeded, "deadline"));
        assert!(!refuses_credentials(Code::Unknown, REQUEST_TIMED_OUT));
    }
}
