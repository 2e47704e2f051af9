//! Process-wide registry of named health states (the seed's `shm_name`).
//!
//! Entries are weak: a named state lives as long as some stack uses it, and a later stack
//! with the same name starts afresh.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, Weak};

use super::{HealthChecker, Inner};

static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();

/// The live state called `name`, or a new one from `make`.
pub(super) fn join(
    name: &str,
    config: &crate::config::Config,
    make: impl FnOnce() -> HealthChecker,
) -> HealthChecker {
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(inner) = map.get(name).and_then(Weak::upgrade) {
        if &inner.config != config {
            tracing::warn!(shm_name = name, "joining a shared health state built with another config; its config stays in force");
        }
        return HealthChecker { inner };
    }
    let checker = make();
    map.insert(name.to_owned(), std::sync::Arc::downgrade(&checker.inner));
    checker
}
