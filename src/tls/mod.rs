//! TLS and mTLS to members: one set of certificates for every connection we make, which may be
//! replaced while connections use it.
//!
//! Why one type: three kinds of connection reach a member and all must present the same client
//! certificate and trust the same CA: the request channels ([`TonicConnector`](crate::balance::TonicConnector)),
//! the probe channels of the `status` and `grpc` probes, and the `http`/`https` probes, which
//! speak HTTP/1.1 over rustls directly. [`Tls`] is loaded when the health checker is built, so
//! a missing file, a PEM without a certificate or a key that does not belong to its
//! certificate is a [`ConfigError`] naming the field and the path at start-up, not a stream of
//! probe failures later.
//!
//! Why it is a holder, not a value: certificates are renewed (cert-manager every 60-90 days)
//! and a client should not need a restart for it. Every clone of a [`Tls`] shares one slot;
//! [`Tls::reload`] (or the watcher of `tls.reload_interval`) reads the files again, checks the
//! new material whole (`material.rs`) and swaps it in, or keeps the old one and says why. Every
//! connection made afterwards asks the slot (`connect.rs`): members' channels that reconnect,
//! channels made later, probes. Connections already open keep their handshake until they
//! close.
//!
//! Certificates are verified by default. `checks.active.https_verify_certificate = false`
//! relaxes the probes only (the seed's meaning); requests are always verified.

mod channel;
mod connect;
mod material;
mod reload;
mod verify;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ConfigError, TlsConfig};

pub(crate) use channel::RotatingChannel;
pub(crate) use connect::{lazy_channel, lazy_channel_through, HandshakeFailed};
use material::{Material, Names};
use reload::{Files, Step, Watch};

/// TLS material: trusted roots, an optional client certificate, an optional name to verify.
/// Cheap to clone; clones share the material, and a [`reload`](Self::reload) or
/// [`replace_pem`](Self::replace_pem) through any of them is seen by all.
///
/// `Debug` never shows the private key.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Shared>,
}

/// The slot behind every clone of a [`Tls`].
struct Shared {
    current: RwLock<Arc<Material>>,
    /// Bumped at each swap.
    generation: AtomicU64,
    domain_name: Option<String>,
    /// The files it was loaded from, and what the watch saw of them.
    files: Option<(Files, Mutex<Reloads>)>,
    /// A watcher task runs.
    watching: AtomicBool,
}

/// Reload bookkeeping, behind one lock so that reloads never run at once.
struct Reloads {
    watch: Watch,
    /// Why the latest reload was refused; cleared by a successful one.
    refused: Option<String>,
}

/// What a [`Tls`] holds now (see [`Tls::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsStatus {
    /// 0 for the material loaded first, then one more at each swap.
    pub generation: u64,
    /// When the material in use was loaded.
    pub loaded_at: SystemTime,
    /// SHA-256 of the client certificate in use (the first of its chain), lower-case hex (as
    /// `openssl x509 -noout -fingerprint -sha256`, without the colons); `None` without one.
    pub client_certificate_sha256: Option<String>,
    /// Why the latest reload was refused (naming the field, the path and the problem), while
    /// the previous material stays in use; `None` once a reload succeeds.
    pub refused: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.current();
        f.debug_struct("Tls")
            .field(
                "roots",
                &if m.ca_pem.is_some() {
                    "configured CA"
                } else {
                    "system roots"
                },
            )
            .field(
                "client_certificate",
                &if m.identity.is_some() {
                    "set (key redacted)"
                } else {
                    "none"
                },
            )
            .field("domain_name", &self.inner.domain_name)
            .field("generation", &self.generation())
            .finish()
    }
}

// === impl Tls ===

impl Tls {
    /// Reads the files `config` names. Errors name the field (`tls.ca_file`, ...) and path.
    ///
    /// The files can be read again later: [`reload`](Self::reload), or [`watch`](Self::watch)
    /// them (a [`HealthChecker`](crate::HealthChecker) does both for `config.tls`).
    pub fn from_config(config: &TlsConfig) -> Result<Self, ConfigError> {
        // The checks `Config::validate` makes, for a `TlsConfig` built in code.
        config.validate("tls")?;
        let files = Files::from_config(config);
        // Stamps first: a write racing this read is a change the next poll sees.
        let stamps = files.stamps();
        let material = files.load()?;
        let files = (!files.is_empty()).then(|| {
            (
                files,
                Mutex::new(Reloads {
                    watch: Watch::new(stamps),
                    refused: None,
                }),
            )
        });
        Ok(Self::new(material, config.domain_name.clone(), files))
    }

    /// TLS material given as PEM text rather than files (secrets from a vault, certificates
    /// made in tests): `ca` (none: the system's roots) and an optional client certificate
    /// chain with its key. [`replace_pem`](Self::replace_pem) swaps in new PEM later.
    pub fn from_pem(
        ca: Option<&[u8]>,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(pem_material(ca, identity)?, None, None))
    }

    /// The system's roots, no client certificate: what an `https://` endpoint gets when no
    /// TLS is configured.
    pub fn system_roots() -> Result<Self, ConfigError> {
        Self::from_pem(None, None)
    }

    fn new(
        material: Material,
        domain_name: Option<String>,
        files: Option<(Files, Mutex<Reloads>)>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                current: RwLock::new(Arc::new(material)),
                generation: AtomicU64::new(0),
                domain_name,
                files,
                watching: AtomicBool::new(false),
            }),
        }
    }

    /// The system's roots, loaded once per process; `None` if they could not be.
    pub(crate) fn system_default() -> Option<Self> {
        static SYSTEM: std::sync::OnceLock<Option<Tls>> = std::sync::OnceLock::new();
        SYSTEM
            .get_or_init(|| match Self::system_roots() {
                Ok(tls) => Some(tls),
                Err(error) => {
                    tracing::warn!(%error, "system TLS roots could not be loaded");
                    None
                }
            })
            .clone()
    }

    /// Verifies members' certificates against `name` instead of each endpoint's host.
    ///
    /// Returns a new holder with the current material (and the same files to reload): later
    /// swaps of `self`'s other clones are not seen by it, nor the reverse.
    pub fn with_domain_name(self, name: impl Into<String>) -> Self {
        let files = self.inner.files.as_ref().map(|(files, reloads)| {
            let reloads = lock(reloads);
            (
                files.clone(),
                Mutex::new(Reloads {
                    watch: reloads.watch.clone(),
                    refused: reloads.refused.clone(),
                }),
            )
        });
        let shared = Shared {
            current: RwLock::new(self.current()),
            generation: AtomicU64::new(self.generation()),
            domain_name: Some(name.into()),
            files,
            watching: AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(shared),
        }
    }

    /// Reads the files again now and swaps the new material in if it is whole and differs
    /// from the material in use: `Ok(true)` when swapped, `Ok(false)` when the files hold the
    /// material in use already.
    ///
    /// A file that cannot be read, a half-written PEM or a key that does not go with its
    /// certificate is an `Err` naming the field, the path and the problem (also logged as a
    /// warning and shown by [`status`](Self::status)); the previous material stays in use.
    /// Material given as PEM ([`from_pem`](Self::from_pem)) has no files: an `Err` says so.
    ///
    /// The files are read on the calling thread (three small files; the watcher reads them
    /// on tokio's blocking pool).
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let Some((files, reloads)) = &self.inner.files else {
            return Err(ConfigError::invalid(
                "tls",
                "(no files)",
                "the material was not loaded from files: nothing to reload (PEM material is \
                 replaced with Tls::replace_pem)",
            ));
        };
        let mut reloads = lock(reloads);
        self.reload_locked(files, &mut reloads, "reload asked for")
    }

    fn reload_locked(
        &self,
        files: &Files,
        reloads: &mut Reloads,
        why: &'static str,
    ) -> Result<bool, ConfigError> {
        let stamps = files.stamps();
        let loaded = files.load();
        reloads.watch.read(stamps);
        match loaded {
            Ok(material) => {
                reloads.refused = None;
                let swapped = self.swap(material, why);
                crate::metrics::tls_reloaded(if swapped { "swapped" } else { "unchanged" });
                Ok(swapped)
            }
            Err(error) => {
                crate::metrics::tls_reloaded("error");
                tracing::warn!(
                    field = error.path().unwrap_or("tls"),
                    %error,
                    why,
                    "TLS files not loaded: the previous material stays in use"
                );
                reloads.refused = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Replaces the material with `ca` and `identity` (as [`from_pem`](Self::from_pem) takes
    /// them), checked whole first: on `Err` the material in use stays.
    pub fn replace_pem(
        &self,
        ca: Option<&[u8]>,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<bool, ConfigError> {
        let material = pem_material(ca, identity)?;
        Ok(self.swap(material, "replaced by the caller"))
    }

    /// Puts `material` in use unless it is what is in use; says whether it did.
    fn swap(&self, material: Material, why: &'static str) -> bool {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if current.same_source(&material) {
            tracing::debug!(why, "TLS material unchanged");
            return false;
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(
            generation,
            client_certificate_sha256 = material.client_sha256.as_deref().unwrap_or("none"),
            previous_sha256 = current.client_sha256.as_deref().unwrap_or("none"),
            why,
            "new TLS material in use for new connections"
        );
        *current = Arc::new(material);
        true
    }

    /// Checks the files every `every` on the current tokio runtime (`Duration::ZERO`: never)
    /// and loads them when they changed and then held still for one more check, as
    /// `tls.reload_interval` describes. Once per holder (later calls do nothing); the task
    /// ends when the last clone is dropped. Without files (PEM material) it does nothing.
    ///
    /// [`Error::NoRuntime`](crate::Error::NoRuntime) outside a tokio runtime.
    pub fn watch(&self, every: Duration) -> Result<(), crate::error::Error> {
        if every.is_zero() || self.inner.files.is_none() {
            return Ok(());
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| crate::error::Error::NoRuntime)?;
        if !self.inner.watching.swap(true, Ordering::AcqRel) {
            runtime.spawn(watch_files(Arc::downgrade(&self.inner), every));
        }
        Ok(())
    }

    /// One poll of the watcher: reloads when the files changed and then held still.
    fn poll_files(&self) {
        let Some((files, reloads)) = &self.inner.files else {
            return;
        };
        let mut reloads = lock(reloads);
        let stamps = files.stamps();
        match reloads.watch.observe(stamps) {
            Step::Unchanged => {}
            Step::Settling => {
                tracing::debug!("TLS files changed; loading them once they hold still")
            }
            Step::Reload => {
                let _ = self.reload_locked(files, &mut reloads, "the files changed");
            }
        }
    }

    /// What is in use now, and whether the latest reload was refused.
    pub fn status(&self) -> TlsStatus {
        let current = self.current();
        TlsStatus {
            generation: self.generation(),
            loaded_at: current.loaded_at,
            client_certificate_sha256: current.client_sha256.clone(),
            refused: self
                .inner
                .files
                .as_ref()
                .and_then(|(_, reloads)| lock(reloads).refused.clone()),
        }
    }

    /// SHA-256 of the first certificate in `pem`, as [`TlsStatus::client_certificate_sha256`]
    /// shows it; `None` if `pem` holds no readable certificate.
    pub fn certificate_sha256(pem: &[u8]) -> Option<String> {
        material::pem_sha256(pem)
    }

    /// The number of swaps so far.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The material in use.
    fn current(&self) -> Arc<Material> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current material as tonic's `ClientTlsConfig`, which is also etcd-client's
    /// `TlsOptions`: pass it to `etcd_client::ConnectOptions::with_tls` so the drop-in's
    /// requests present the same client certificate as the probes.
    ///
    /// A snapshot: it does not follow later reloads. (The drop-in replaces etcd-client's TLS
    /// with `config.tls`, which does.)
    pub fn client_tls_config(&self) -> ClientTlsConfig {
        let material = self.current();
        let mut config = self.unrooted_config(&material);
        config = match &material.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        config
    }

    /// Client identity and name, no roots: the part a custom verifier may be combined with.
    fn unrooted_config(&self, material: &Material) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some((cert, key)) = &material.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.inner.domain_name {
            config = config.domain_name(name.clone());
        }
        config
    }

    /// `endpoint` speaking TLS with the current material (replacing any TLS it had), captured
    /// by the channels made from it; `verify = false` accepts any certificate (probes only,
    /// when the config asks). `handshake`, if given, bounds the TLS handshake. Channels that
    /// should follow reloads are made with [`lazy_channel`] instead.
    pub(crate) fn apply(
        &self,
        endpoint: Endpoint,
        verify: bool,
        handshake: Option<Duration>,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let material = self.current();
        let bound = |config: ClientTlsConfig| match handshake {
            Some(timeout) => config.timeout(timeout),
            None => config,
        };
        if verify {
            endpoint.tls_config(bound(self.client_tls_config()))
        } else {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            endpoint.tls_config_with_verifier(
                bound(self.unrooted_config(&material)),
                Arc::new(verify::Unverified::new(provider)),
            )
        }
    }

    /// The rustls config of an HTTP/1.1 probe, from the current material.
    pub(crate) fn probe_config(&self, verify: bool) -> Arc<ClientConfig> {
        self.current().probe_config(verify)
    }

    /// The name a probe verifies for a member at `host`: the configured domain name, else
    /// the host itself (an IP address or a DNS name).
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.inner.domain_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned()).map_err(|e| format!("server name {name:?}: {e}"))
    }
}

/// The watcher task: polls until the holder is gone.
async fn watch_files(weak: Weak<Shared>, every: Duration) {
    tracing::debug!(?every, "watching the TLS files");
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { break };
        let tls = Tls { inner };
        // `stat` and small reads: off the async threads all the same.
        if tokio::task::spawn_blocking(move || tls.poll_files())
            .await
            .is_err()
        {
            break;
        }
    }
    tracing::debug!("TLS file watcher stopped: the material is no longer used");
}

fn pem_material(
    ca: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Result<Material, ConfigError> {
    let names = Names {
        ca: ("tls.ca", "(PEM)".to_owned()),
        cert: ("tls.cert", "(PEM)".to_owned()),
        key: ("tls.key", "(PEM, redacted)".to_owned()),
    };
    Material::build(
        ca.map(<[u8]>::to_vec),
        identity.map(|(c, k)| (c.to_vec(), zeroize::Zeroizing::new(k.to_vec()))),
        &names,
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(all(test, feature = "tls"))]
mod tests;
