//! What one observation says about a member.

use std::fmt;

/// The verdict of one probe or one request on the member that served it.
///
/// The four kinds match lua-resty-healthcheck's counters. `Failure` is its `http_failures`:
/// in gRPC terms, an answer that says the member itself is not fit to serve (`Unavailable`,
/// "no leader", ...), as opposed to an application error, which is a [`Outcome::Success`] for
/// the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The member answered properly.
    Success,
    /// The member answered, but with a member-level failure (bad HTTP status, failed status
    /// check, `Unavailable`, "no leader").
    Failure,
    /// The member could not be reached: connect refused or reset.
    TcpFailure,
    /// The member did not answer in time.
    Timeout,
    /// The member sat on a request while its peers answered: a peer answered the same read
    /// first (a hedge won), or the request outlived `hang.after` while peers answered others.
    /// A gRPC-native signal beside the seed's four, with its own threshold (`hang.threshold`),
    /// so that the seed's `timeouts` keeps its meaning.
    Hang,
}

impl Outcome {
    /// Whether this outcome counts against the member.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Success)
    }

    /// The name of the counter this outcome increments, as in the seed's table.
    pub fn counter_name(self) -> &'static str {
        match self {
            Outcome::Success => "successes",
            Outcome::Failure => "http_failures",
            Outcome::TcpFailure => "tcp_failures",
            Outcome::Timeout => "timeouts",
            Outcome::Hang => "hangs",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::TcpFailure => "tcp failure",
            Outcome::Timeout => "timeout",
            Outcome::Hang => "hang",
        };
        f.write_str(s)
    }
}

/// Where an [`Outcome`] came from; active and passive checks have separate thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A probe sent by the health checker.
    Active,
    /// An application request through the stack.
    Passive,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Active => "active",
            Source::Passive => "passive",
        })
    }
}
