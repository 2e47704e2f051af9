//! Making a [`HealthChecker`]: the health state, and the tasks that run beside it.
//!
//! Why here, above `checker/`: the probe scheduler and discovery read and write the health
//! state, so they import `checker`; the constructors that start them live above all three, and
//! the state never names its drivers (no import circle between them).

use http::Uri;

use crate::config::Config;
use crate::HealthChecker;

// === impl HealthChecker ===

impl HealthChecker {
    /// Health state for `endpoints` (`http://host:port`, `https://host:port` or `host:port`)
    /// under `config`, its probe scheduler and its discovery.
    ///
    /// The config is validated and the endpoints parsed first: a bad value is an
    /// [`Error::Config`](crate::Error::Config) naming the field and the value. With
    /// `config.shm_name` set, a live state of that name in this process is joined instead
    /// (its config wins; endpoints it lacks are added). Must be called inside a tokio runtime.
    pub fn new<S: AsRef<str>>(endpoints: &[S], config: Config) -> Result<Self, crate::Error> {
        let endpoints = crate::config::parse_endpoints(endpoints)?;
        Self::with_uris(endpoints.iter().map(|e| e.uri()), config)
    }

    /// As [`new`](Self::new), with endpoints already parsed; an empty list is allowed here
    /// (members may be added later with [`add_member`](Self::add_member)).
    pub fn with_uris<I>(endpoints: I, config: Config) -> Result<Self, crate::Error>
    where
        I: IntoIterator<Item = Uri>,
    {
        Self::build(
            endpoints.into_iter().collect(),
            config,
            |runtime, checker| {
                crate::probe::spawn(runtime, checker.downgrade());
                crate::discovery::spawn(runtime, checker.downgrade());
            },
        )
    }
}
