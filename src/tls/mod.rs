//! TLS and mTLS to members: one loaded set of certificates for every connection we make.
//!
//! Why one type: three kinds of connection reach a member and all must present the same client
//! certificate and trust the same CA: the request channels ([`TonicConnector`](crate::balance::TonicConnector)),
//! the probe channels of the `status` and `grpc` probes, and the `http`/`https` probes, which
//! speak HTTP/1.1 over rustls directly. [`Tls`] is loaded once, when the health checker is
//! built, so a missing file, a PEM without a certificate or a key that does not belong to its
//! certificate is a [`ConfigError`] naming the field and the path at start-up, not a stream of
//! probe failures later.
//!
//! Certificates are verified by default. `checks.active.https_verify_certificate = false`
//! relaxes the probes only (the seed's meaning); requests are always verified.

mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, RootCertStore,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ConfigError, TlsConfig};

/// Loaded TLS material: trusted roots, an optional client certificate, an optional name to
/// verify. Cheap to clone.
///
/// `Debug` never shows the private key.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Material>,
}

struct Material {
    /// PEM of the trusted CAs; `None` means the system's roots.
    ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain_name: Option<String>,
    /// rustls configs of the HTTP/1.1 probes, verifying and not.
    probe_verified: Arc<ClientConfig>,
    probe_unverified: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.inner;
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
            .field("domain_name", &m.domain_name)
            .finish()
    }
}

// === impl Tls ===

impl Tls {
    /// Reads the files `config` names. Errors name the field (`tls.ca_file`, ...) and path.
    pub fn from_config(config: &TlsConfig) -> Result<Self, ConfigError> {
        // The checks `Config::validate` makes, for a `TlsConfig` built in code.
        config.validate("tls")?;
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    format!("tls.{field}"),
                    format!("{:?}", path.display().to_string()),
                    format!("cannot be read: {e}"),
                )
            })
        };
        let ca = config
            .ca_file
            .as_deref()
            .map(|p| read("ca_file", p))
            .transpose()?;
        let identity = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
            // Half an identity was refused by `validate` above.
            _ => None,
        };
        let path = |p: &Option<std::path::PathBuf>| {
            format!(
                "{:?}",
                p.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        };
        let names = Names {
            ca: ("tls.ca_file", path(&config.ca_file)),
            cert: ("tls.cert_file", path(&config.cert_file)),
            key: ("tls.key_file", path(&config.key_file)),
        };
        Self::build(ca, identity, config.domain_name.clone(), &names)
    }

    /// TLS material given as PEM text rather than files (secrets from a vault, certificates
    /// made in tests): `ca` (none: the system's roots) and an optional client certificate
    /// chain with its key.
    pub fn from_pem(
        ca: Option<&[u8]>,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<Self, ConfigError> {
        let names = Names {
            ca: ("tls.ca", "(PEM)".to_owned()),
            cert: ("tls.cert", "(PEM)".to_owned()),
            key: ("tls.key", "(PEM, redacted)".to_owned()),
        };
        Self::build(
            ca.map(<[u8]>::to_vec),
            identity.map(|(c, k)| (c.to_vec(), k.to_vec())),
            None,
            &names,
        )
    }

    /// The system's roots, no client certificate: what an `https://` endpoint gets when no
    /// TLS is configured.
    pub fn system_roots() -> Result<Self, ConfigError> {
        Self::from_pem(None, None)
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
    pub fn with_domain_name(self, name: impl Into<String>) -> Self {
        let m = &self.inner;
        Self {
            inner: Arc::new(Material {
                ca_pem: m.ca_pem.clone(),
                identity: m.identity.clone(),
                domain_name: Some(name.into()),
                probe_verified: m.probe_verified.clone(),
                probe_unverified: m.probe_unverified.clone(),
            }),
        }
    }

    fn build(
        ca_pem: Option<Vec<u8>>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
        domain_name: Option<String>,
        names: &Names,
    ) -> Result<Self, ConfigError> {
        let roots = match &ca_pem {
            Some(pem) => ca_roots(pem, &names.ca)?,
            None => system_roots(),
        };
        let client_auth = identity
            .as_ref()
            .map(|(cert, key)| parse_identity(cert, key, names))
            .transpose()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let probe_config = |verified: bool| -> Result<Arc<ClientConfig>, ConfigError> {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::invalid("tls", "(rustls)", e.to_string()))?;
            let builder = if verified {
                builder.with_root_certificates(roots.clone())
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::Unverified::new(
                        provider.clone(),
                    )))
            };
            let mut config = match &client_auth {
                Some((certs, key)) => builder
                    .with_client_auth_cert(certs.clone(), key.clone_key())
                    .map_err(|e| {
                        ConfigError::invalid(
                            names.key.0,
                            &names.key.1,
                            format!("does not go with {} = {}: {e}", names.cert.0, names.cert.1),
                        )
                    })?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            inner: Arc::new(Material {
                probe_verified: probe_config(true)?,
                probe_unverified: probe_config(false)?,
                ca_pem,
                identity,
                domain_name,
            }),
        })
    }

    /// The same material as tonic's `ClientTlsConfig`, which is also etcd-client's
    /// `TlsOptions`: pass it to `etcd_client::ConnectOptions::with_tls` so the drop-in's
    /// requests present the same client certificate as the probes.
    pub fn client_tls_config(&self) -> ClientTlsConfig {
        let mut config = self.unrooted_config();
        config = match &self.inner.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        config
    }

    /// Client identity and name, no roots: the part a custom verifier may be combined with.
    fn unrooted_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some((cert, key)) = &self.inner.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.inner.domain_name {
            config = config.domain_name(name.clone());
        }
        config
    }

    /// `endpoint` speaking TLS with this material (replacing any TLS it had); `verify =
    /// false` accepts any certificate (probes only, when the config asks). `handshake`, if
    /// given, bounds the TLS handshake.
    pub(crate) fn apply(
        &self,
        endpoint: Endpoint,
        verify: bool,
        handshake: Option<Duration>,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let bound = |config: ClientTlsConfig| match handshake {
            Some(timeout) => config.timeout(timeout),
            None => config,
        };
        if verify {
            endpoint.tls_config(bound(self.client_tls_config()))
        } else {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            endpoint.tls_config_with_verifier(
                bound(self.unrooted_config()),
                Arc::new(verify::Unverified::new(provider)),
            )
        }
    }

    /// The rustls config of an HTTP/1.1 probe.
    pub(crate) fn probe_config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify {
            self.inner.probe_verified.clone()
        } else {
            self.inner.probe_unverified.clone()
        }
    }

    /// The name a probe verifies for a member at `host`: the configured domain name, else
    /// the host itself (an IP address or a DNS name).
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.inner.domain_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned()).map_err(|e| format!("server name {name:?}: {e}"))
    }
}

/// Field names and shown values of the three inputs, for errors.
struct Names {
    ca: (&'static str, String),
    cert: (&'static str, String),
    key: (&'static str, String),
}

fn ca_roots(pem: &[u8], (field, value): &(&str, String)) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|e| ConfigError::invalid(*field, value, format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            ConfigError::invalid(*field, value, format!("not a usable CA certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigError::invalid(
            *field,
            value,
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    roots
}

type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn parse_identity(cert: &[u8], key: &[u8], names: &Names) -> Result<ClientAuth, ConfigError> {
    let (cert_field, cert_value) = &names.cert;
    let (key_field, key_value) = &names.key;
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid(*cert_field, cert_value, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            *cert_field,
            cert_value,
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    // The key's bytes never reach an error message: only the field, the path and the kind of
    // problem.
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned()
            }
            _ => "is not a readable PEM private key".to_owned(),
        };
        ConfigError::invalid(*key_field, key_value, why)
    })?;
    Ok((certs, key))
}
