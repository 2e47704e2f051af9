//! Making a [`HealthChecker`]: the health state, and the tasks that run beside it.
//!
//! Why here, above `checker/`: the composition root. The probe scheduler and discovery read
//! and write the health state through ports of their own (`probe::Cluster`,
//! `discovery::Cluster`, which the state implements), and the state never starts its drivers
//! itself: the constructors that start them live above all three. The application's hooks
//! go where they are used: the probe to the scheduler, the member source to discovery, the
//! classifier and the event sink into the state.

use std::sync::Arc;

use http::Uri;

use crate::checker::HealthChecker;
use crate::checker::Hooks;
use crate::config::Config;
use crate::discovery::MemberSource;
use crate::event::EventSink;
use crate::health::Classify;
use crate::probe::Probe;

// === impl HealthChecker ===

impl HealthChecker {
    /// Health state for `endpoints` (`http://host:port`, `https://host:port` or `host:port`)
    /// under `config`, its probe scheduler and its discovery.
    ///
    /// The config is validated and the endpoints parsed first: a bad value is an
    /// [`Error::Config`](crate::Error::Config) naming the field and the value. With
    /// `config.shm_name` set, a live state of that name in this process is joined instead
    /// (its config wins; endpoints it lacks are added). Must be called inside a tokio runtime.
    pub fn new<S: AsRef<str>>(
        endpoints: &[S],
        config: Config,
    ) -> Result<Self, crate::error::Error> {
        Self::builder(config).build(endpoints)
    }

    /// As [`new`](Self::new), with endpoints already parsed; an empty list is allowed here
    /// (members may be added later with [`add_member`](Self::add_member)).
    pub fn with_uris<I>(endpoints: I, config: Config) -> Result<Self, crate::error::Error>
    where
        I: IntoIterator<Item = Uri>,
    {
        Self::builder(config).build_with_uris(endpoints)
    }

    /// A builder for a health state under `config` with the application's own parts: a
    /// probe, a classifier, an event sink, a member source.
    pub fn builder(config: Config) -> HealthCheckerBuilder {
        HealthCheckerBuilder {
            config,
            probe: None,
            classifier: None,
            sink: None,
            source: None,
        }
    }
}

// === impl HealthCheckerBuilder ===

/// Builds a [`HealthChecker`] with the application's own parts (see
/// [`HealthChecker::builder`]). Each is optional; left out, the built-in one works as the
/// config says.
///
/// The hooks are the state's, for its whole life. With `config.shm_name` naming a state that
/// is live in this process, that state is joined and keeps its own hooks (a warning says so).
#[derive(Debug)]
pub struct HealthCheckerBuilder {
    config: Config,
    probe: Option<Arc<dyn Probe>>,
    classifier: Option<Arc<dyn Classify>>,
    sink: Option<Arc<dyn EventSink>>,
    source: Option<Arc<dyn MemberSource>>,
}

impl HealthCheckerBuilder {
    /// Probes members with `probe` instead of the built-in one `checks.active.type` names
    /// (whose other settings, intervals, thresholds, timeout and concurrency, still apply).
    /// The leader and admission checks run as before: see [`Probe`].
    pub fn probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Judges the answers to application requests with `classifier` instead of the config's
    /// `failures` lists ([`DefaultClassifier`](crate::health::DefaultClassifier)).
    pub fn classifier(mut self, classifier: Arc<dyn Classify>) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Calls `sink` with every event, synchronously, besides sending it to
    /// [`subscribe`](HealthChecker::subscribe)rs. It must not block: see [`EventSink`].
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Adds and drops members as `source` lists them, beside `MemberList` and DNS discovery.
    pub fn member_source(mut self, source: Arc<dyn MemberSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The health state for `endpoints`, as [`HealthChecker::new`] makes it.
    pub fn build<S: AsRef<str>>(
        self,
        endpoints: &[S],
    ) -> Result<HealthChecker, crate::error::Error> {
        let endpoints = crate::config::parse_endpoints(endpoints)?;
        self.build_with_uris(endpoints.iter().map(|e| e.uri()))
    }

    /// The health state for `endpoints` already parsed, as [`HealthChecker::with_uris`]
    /// makes it (an empty list is allowed).
    pub fn build_with_uris<I>(self, endpoints: I) -> Result<HealthChecker, crate::error::Error>
    where
        I: IntoIterator<Item = Uri>,
    {
        let Self {
            config,
            probe,
            classifier,
            sink,
            source,
        } = self;
        let hooks = Hooks::new(classifier, sink);
        let given = !hooks.is_empty() || probe.is_some() || source.is_some();
        let shm_name = config.shm_name.clone();
        let mut started = false;
        let checker = HealthChecker::build(
            endpoints.into_iter().collect(),
            config,
            hooks,
            |runtime, checker| {
                started = true;
                crate::probe::spawn(runtime, checker.for_probes(), probe);
                crate::discovery::spawn(runtime, checker.for_discovery(), source);
            },
        )?;
        if given && !started {
            tracing::warn!(
                ?shm_name,
                "joined a live shared health state: its own probe, classifier, event sink and \
                 member source stay in force, the ones given to the builder are not used"
            );
        }
        Ok(checker)
    }
}
