//! Where reports go and what they say about the machine.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Default report directory, relative to the crate root.
pub const DEFAULT_OUT: &str = "target/bench-reports";

/// Writes `value` as pretty JSON to `dir/name`, creating `dir`; returns the path.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    Ok(path)
}

/// What the numbers were measured on: noisy figures must say so.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `/proc/loadavg` at the start of the run (1, 5, 15 min), if readable.
    pub loadavg_start: Option<String>,
    /// The same at the end.
    pub loadavg_end: Option<String>,
    /// Whether this is a release build.
    pub release: bool,
}

impl Machine {
    /// The machine as it is now.
    pub fn now() -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_start: loadavg(),
            loadavg_end: None,
            release: !cfg!(debug_assertions),
        }
    }

    /// Records the load at the end of the run.
    pub fn finish(&mut self) {
        self.loadavg_end = loadavg();
    }
}

/// `/proc/loadavg`'s three averages (1, 5, 15 min), if readable.
pub fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// CPU time a thread has used so far, in ns: the first field of `schedstat` in its `/proc`
/// directory (`/proc/thread-self`, `/proc/self/task/<tid>`, `/proc/<pid>/task/<tid>`); 0 where
/// it cannot be read.
pub fn thread_cpu_ns(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
