//! Noticing that the PEM files changed, and reading them again.
//!
//! Why metadata and not content: three `stat` calls every few seconds cost nothing, while
//! reading and parsing the files would. A file counts as changed when its modification time,
//! size, inode or device differs, so an in-place write, a `mv` over it and Kubernetes'
//! symlink swap of a secret volume (every path resolves to new inodes) are all seen.
//!
//! Why a change is loaded only once it has held for one more poll: certificate and key are
//! two files, written one after the other; a poll between the two writes would read a new
//! certificate with the old key. Waiting until the metadata stays put avoids warning about a
//! state that lasted a millisecond. A file still wrong after that (half written by a writer
//! that died, a key of another certificate) is refused with a warning naming the file, and
//! the previous material stays in use; any later write is a new change and is tried again.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::material::{Material, Names};
use crate::config::{ConfigError, TlsConfig};

/// What a file's metadata says about its content, as far as a change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// The stamp of the file at `path` (following symlinks); `None` when it cannot be
    /// `stat`ed (missing, no permission), which is a state of its own.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (inode, device) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (inode, device) = (0, 0);
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
            device,
        })
    }

    /// A stamp from its parts (tests).
    #[cfg(test)]
    pub(crate) fn new(modified: Option<SystemTime>, len: u64, inode: u64) -> Self {
        Self {
            modified,
            len,
            inode,
            device: 0,
        }
    }
}

/// The stamps of the configured files, in the order CA, certificate, key (absent files of the
/// config are left out).
pub(crate) type Stamps = Vec<Option<Stamp>>;

/// What a poll should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing changed since the files were last read.
    Unchanged,
    /// Something changed since the last poll: wait one more poll for the writes to end.
    Settling,
    /// Something changed and then held still for a poll: read the files.
    Reload,
}

/// Change detection over successive polls: a pure state machine over [`Stamps`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    /// The stamps taken just before the files were last read (loaded or refused).
    read: Stamps,
    /// The stamps of the previous poll, when they differed from `read`.
    settling: Option<Stamps>,
}

impl Watch {
    /// A watch whose files were just read with these stamps.
    pub(crate) fn new(read: Stamps) -> Self {
        Self {
            read,
            settling: None,
        }
    }

    /// Takes a poll's stamps and says what to do.
    pub(crate) fn observe(&mut self, now: Stamps) -> Step {
        if now == self.read {
            self.settling = None;
            return Step::Unchanged;
        }
        if self.settling.as_ref() == Some(&now) {
            Step::Reload
        } else {
            self.settling = Some(now);
            Step::Settling
        }
    }

    /// The files were read (whatever came of it) after these stamps were taken: only a later
    /// change is tried again.
    pub(crate) fn read(&mut self, stamps: Stamps) {
        self.read = stamps;
        self.settling = None;
    }
}

/// The files a [`Tls`](super::Tls) was loaded from.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    pub(crate) ca: Option<PathBuf>,
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

impl Files {
    pub(crate) fn from_config(config: &TlsConfig) -> Self {
        Self {
            ca: config.ca_file.clone(),
            identity: match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                // Half an identity is refused by `TlsConfig::validate`.
                _ => None,
            },
        }
    }

    /// Whether there is anything to watch.
    pub(crate) fn is_empty(&self) -> bool {
        self.ca.is_none() && self.identity.is_none()
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.ca.as_deref().into_iter().chain(
            self.identity
                .iter()
                .flat_map(|(c, k)| [c.as_path(), k.as_path()]),
        )
    }

    /// The files' stamps now.
    pub(crate) fn stamps(&self) -> Stamps {
        self.paths().map(Stamp::of).collect()
    }

    /// Reads and checks the files. Errors name the field (`tls.ca_file`, ...) and the path.
    pub(crate) fn load(&self) -> Result<Material, ConfigError> {
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    format!("tls.{field}"),
                    shown(Some(path)),
                    format!("cannot be read: {e}"),
                )
            })
        };
        let ca = self.ca.as_deref().map(|p| read("ca_file", p)).transpose()?;
        let identity = match &self.identity {
            // The key's buffer is wiped when dropped, from the moment it is read.
            Some((cert, key)) => Some((
                read("cert_file", cert)?,
                zeroize::Zeroizing::new(read("key_file", key)?),
            )),
            None => None,
        };
        let names = Names {
            ca: ("tls.ca_file", shown(self.ca.as_deref())),
            cert: (
                "tls.cert_file",
                shown(self.identity.as_ref().map(|(c, _)| c.as_path())),
            ),
            key: (
                "tls.key_file",
                shown(self.identity.as_ref().map(|(_, k)| k.as_path())),
            ),
        };
        Material::build(ca, identity, &names)
    }
}

/// A path as errors show it: quoted.
fn shown(path: Option<&Path>) -> String {
    format!(
        "{:?}",
        path.map(|p| p.display().to_string()).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, len: u64, inode: u64) -> Option<Stamp> {
        Some(Stamp::new(
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            len,
            inode,
        ))
    }

    #[test]
    fn nothing_changed_nothing_to_do() {
        let mut watch = Watch::new(vec![at(1, 10, 1), at(1, 20, 2)]);
        for _ in 0..3 {
            assert_eq!(
                watch.observe(vec![at(1, 10, 1), at(1, 20, 2)]),
                Step::Unchanged
            );
        }
    }

    #[test]
    fn a_change_is_read_once_it_held_for_a_poll() {
        let mut watch = Watch::new(vec![at(1, 10, 1), at(1, 20, 2)]);
        // The certificate is written, then the key: each poll in between sees a new state.
        assert_eq!(
            watch.observe(vec![at(5, 11, 1), at(1, 20, 2)]),
            Step::Settling
        );
        assert_eq!(
            watch.observe(vec![at(5, 11, 1), at(6, 21, 2)]),
            Step::Settling
        );
        assert_eq!(
            watch.observe(vec![at(5, 11, 1), at(6, 21, 2)]),
            Step::Reload
        );
        watch.read(vec![at(5, 11, 1), at(6, 21, 2)]);
        assert_eq!(
            watch.observe(vec![at(5, 11, 1), at(6, 21, 2)]),
            Step::Unchanged
        );
    }

    #[test]
    fn every_kind_of_change_counts() {
        let base = vec![at(1, 10, 1)];
        for changed in [
            vec![at(2, 10, 1)], // written in place, same size
            vec![at(1, 11, 1)], // same second, other size
            vec![at(1, 10, 9)], // renamed over / symlink swapped: another inode
            vec![None],         // removed
        ] {
            let mut watch = Watch::new(base.clone());
            assert_eq!(
                watch.observe(changed.clone()),
                Step::Settling,
                "{changed:?}"
            );
            assert_eq!(watch.observe(changed.clone()), Step::Reload, "{changed:?}");
        }
    }

    #[test]
    fn a_refused_state_is_not_tried_again_until_the_next_change() {
        let mut watch = Watch::new(vec![at(1, 10, 1)]);
        let bad = vec![at(2, 5, 1)];
        assert_eq!(watch.observe(bad.clone()), Step::Settling);
        assert_eq!(watch.observe(bad.clone()), Step::Reload);
        watch.read(bad.clone()); // refused: half written
        for _ in 0..3 {
            assert_eq!(watch.observe(bad.clone()), Step::Unchanged);
        }
        // The writer finishes: a new change.
        let good = vec![at(3, 10, 1)];
        assert_eq!(watch.observe(good.clone()), Step::Settling);
        assert_eq!(watch.observe(good), Step::Reload);
    }

    #[test]
    fn going_back_to_what_was_read_cancels_the_settling() {
        let mut watch = Watch::new(vec![at(1, 10, 1)]);
        assert_eq!(watch.observe(vec![at(2, 10, 1)]), Step::Settling);
        assert_eq!(watch.observe(vec![at(1, 10, 1)]), Step::Unchanged);
        assert_eq!(watch.observe(vec![at(2, 10, 1)]), Step::Settling);
    }

    #[test]
    fn stamps_of_real_files_change_with_writes_and_renames() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f.pem");
        assert_eq!(Stamp::of(&path), None, "missing");
        std::fs::write(&path, "one").expect("write");
        let first = Stamp::of(&path);
        assert!(first.is_some());
        std::fs::write(&path, "one more").expect("write");
        let second = Stamp::of(&path);
        assert_ne!(first, second, "size");
        let other = dir.path().join("g.pem");
        std::fs::write(&other, "one more").expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert_ne!(Stamp::of(&path), second, "inode");
    }
}
