//! Knowing the leader, and telling an election from a member cut off from the quorum.
//!
//! Why: "no leader" from one member means two very different things. During an election every
//! member says it (for about one election timeout): nobody should be ejected, and requests
//! should wait for the new leader within their deadline. A member cut off from the quorum says
//! it alone while its peers follow a leader: it must leave rotation at once. Only asking every
//! member tells them apart. [`LeaderView`] is the pure judgement over the members'
//! `Maintenance/Status` answers (a function of the answers and `now`, tested without a
//! cluster); [`ask`](fn@ask) is the one `Status` call; [`LeaderChecks`] and [`RoundPlan`] say
//! when rounds start and when one may stop waiting; the probe scheduler runs the rounds.

mod ask;
mod pace;
mod term;
mod view;

pub(crate) use ask::ask;
pub(crate) use pace::{EarlyEnd, LeaderChecks, RoundPlan};
pub(crate) use term::behind_the_leader;
pub use view::LeaderSnapshot;
pub(crate) use view::{LeaderView, Reply, Report};
