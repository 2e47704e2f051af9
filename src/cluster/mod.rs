//! What the stack knows of the etcd cluster, as one pure state machine: the members and their
//! health machines, who leads, and the cluster's identity.
//!
//! Why pure, in quinn-proto's manner: the rules that tie these together (a hang never takes a
//! majority out of rotation, a re-admitted member's load restarts, every status change is
//! published once, a member cut off from the quorum is ejected and its requests abandoned) are
//! where subtle bugs hide. `ClusterState` takes every input as an `Event` with the time
//! passed in, performs no I/O, takes no lock and reads no clock, and answers with the
//! `Effect`s the handle (`checker/`) carries out: publishing events, mirroring statuses for
//! the request path, restarting a member's load, ending requests in flight. It is tested with
//! plain unit tests and property tests over random event sequences.

mod state;
#[cfg(test)]
mod tests;

pub(crate) use state::{ClusterState, Effect, Effects, Event, Rules, Touched};
