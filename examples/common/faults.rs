//! The faults the demo and the failover benchmark inject.

use etcd_health_testing::{Cluster, ClusterError};
use serde::Serialize;

/// One step of a fault schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// SIGSTOP: the member accepts connections and never answers.
    Pause,
    /// SIGCONT after a pause.
    Resume,
    /// SIGKILL: the member refuses connections.
    Kill,
    /// Start a killed member again and wait until it answers.
    Restart,
    /// Cut the member from its peers; clients still reach it.
    Isolate,
    /// Undo an isolation.
    Heal,
    /// Drop the member's client traffic (its client proxy accepts connections and forwards
    /// nothing) while raft traffic flows; needs `Cluster::builder().client_proxy(true)`.
    Blackhole,
    /// Undo a black hole.
    Unblackhole,
    /// A firewall drops the member's client packets while raft traffic flows: as a black
    /// hole, but once undone, connections open during it resume only at TCP's next
    /// retransmission; needs `Cluster::builder().client_proxy(true)`.
    Drop,
    /// Let the packets through again.
    Undrop,
    /// The member's client path loses 30 % of what it carries (each loss delivered at TCP's
    /// retransmission time, stalling what follows it) while raft traffic flows; needs
    /// `Cluster::builder().client_proxy(true)`.
    Lossy,
    /// End the loss.
    Lossless,
}

/// The share of a lossy client path's chunks lost ([`Fault::Lossy`]).
pub const LOSS: f64 = 0.3;

impl Fault {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Pause => "pause",
            Fault::Resume => "resume",
            Fault::Kill => "kill",
            Fault::Restart => "restart",
            Fault::Isolate => "isolate",
            Fault::Heal => "heal",
            Fault::Blackhole => "blackhole",
            Fault::Unblackhole => "unblackhole",
            Fault::Drop => "drop",
            Fault::Undrop => "undrop",
            Fault::Lossy => "lossy",
            Fault::Lossless => "lossless",
        }
    }

    /// Whether this step breaks something (rather than repairing it).
    pub fn breaks(self) -> bool {
        matches!(
            self,
            Fault::Pause
                | Fault::Kill
                | Fault::Isolate
                | Fault::Blackhole
                | Fault::Drop
                | Fault::Lossy
        )
    }

    /// The step that undoes this fault, if it breaks something.
    pub fn repair(self) -> Option<Fault> {
        match self {
            Fault::Pause => Some(Fault::Resume),
            Fault::Kill => Some(Fault::Restart),
            Fault::Isolate => Some(Fault::Heal),
            Fault::Blackhole => Some(Fault::Unblackhole),
            Fault::Drop => Some(Fault::Undrop),
            Fault::Lossy => Some(Fault::Lossless),
            _ => None,
        }
    }

    /// Injects the fault into member `member`.
    pub async fn apply(self, cluster: &Cluster, member: usize) -> Result<(), ClusterError> {
        match self {
            Fault::Pause => cluster.pause(member),
            Fault::Resume => cluster.resume(member),
            Fault::Kill => cluster.kill(member),
            Fault::Restart => cluster.restart(member).await?,
            Fault::Isolate => cluster.isolate(member),
            Fault::Heal => cluster.heal(member),
            Fault::Blackhole => cluster.blackhole_client(member, true),
            Fault::Unblackhole => cluster.blackhole_client(member, false),
            Fault::Drop => cluster.drop_client(member, true),
            Fault::Undrop => cluster.drop_client(member, false),
            Fault::Lossy => cluster.lossy_client(member, LOSS),
            Fault::Lossless => cluster.lossy_client(member, 0.0),
        }
        Ok(())
    }
}
