//! The caller's handle on a helper's driver task, and the state the driver publishes.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A spawned driver and the state it publishes through a `watch` channel: read at any time
/// ([`state`](Self::state)), awaited ([`subscribe`](Self::subscribe)), and the task stopped
/// with the handle.
///
/// Why a `watch` channel for both helpers: a caller may poll the state or wait for a change
/// of it (the lease's `lost()` does), and the driver never blocks on a slow reader.
#[derive(Debug)]
pub(crate) struct Driven<S> {
    state: watch::Receiver<S>,
    task: Option<JoinHandle<()>>,
}

// === impl Driven ===

impl<S: Clone + Send + Sync + 'static> Driven<S> {
    /// Spawns `driver` with the sender of a state that starts as `initial`. Must be called
    /// inside a tokio runtime.
    pub(crate) fn spawn<F>(initial: S, driver: impl FnOnce(watch::Sender<S>) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, state) = watch::channel(initial);
        Self {
            state,
            task: Some(tokio::spawn(driver(tx))),
        }
    }

    /// The state now.
    pub(crate) fn state(&self) -> S {
        self.state.borrow().clone()
    }

    /// Reads a part of the state now, without copying the rest.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.state.borrow())
    }

    /// A receiver of the state, to wait for changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<S> {
        self.state.clone()
    }

    /// Stops the driver (its streams are dropped with it, which resets them).
    pub(crate) fn halt(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl<S> Drop for Driven<S> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
