//! One loaded, checked set of TLS material and the rustls configs made from it.
//!
//! Why everything is built up front: a [`Material`] is only ever made whole (every PEM parsed,
//! the key checked against its certificate, every rustls config built), so swapping it in is
//! all or nothing: a half-written or mismatched file is refused here, before any connection
//! could see it.

use std::sync::Arc;
use std::time::SystemTime;

use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore,
};

use zeroize::Zeroizing;

use super::verify;
use crate::config::ConfigError;

/// ALPN of gRPC connections: etcd serves gRPC over HTTP/2 only.
pub(super) const ALPN_H2: &[u8] = b"h2";

/// The PEM of a client certificate chain and of its private key, the key wiped from memory
/// when dropped.
pub(super) type IdentityPem = (Vec<u8>, Zeroizing<Vec<u8>>);

/// Loaded TLS material: the PEM it came from and the rustls configs built from it.
///
/// The private key: our PEM copy (`identity`) and the DER parsed from it are wiped when
/// dropped (`zeroize`), and rustls wipes the DER copies it is given once it has made its
/// signing key. The signing key itself (ring's, inside the rustls configs) and tonic's copies
/// of the PEM (`Identity`, in the configs [`Tls::client_tls_config`](super::Tls) makes) are
/// freed without being wiped: neither crate offers it.
pub(super) struct Material {
    /// PEM of the trusted CAs; `None` means the system's roots.
    pub(super) ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    pub(super) identity: Option<IdentityPem>,
    /// rustls configs of the HTTP/1.1 probes, verifying and not.
    probe_verified: Arc<ClientConfig>,
    probe_unverified: Arc<ClientConfig>,
    /// rustls configs of gRPC connections (requests; `status`/`grpc` probes), verifying and not.
    grpc_verified: Arc<ClientConfig>,
    grpc_unverified: Arc<ClientConfig>,
    /// SHA-256 of the client certificate (the first of its chain), lower-case hex.
    pub(super) client_sha256: Option<String>,
    /// When it was loaded.
    pub(super) loaded_at: SystemTime,
}

/// Field names and shown values of the three inputs, for errors.
pub(super) struct Names {
    pub(super) ca: (&'static str, String),
    pub(super) cert: (&'static str, String),
    pub(super) key: (&'static str, String),
}

// === impl Material ===

impl Material {
    /// Parses and checks `ca_pem` (none: the system's roots) and `identity` (certificate
    /// chain, key), and builds every rustls config. Errors name the field and the path.
    pub(super) fn build(
        ca_pem: Option<Vec<u8>>,
        identity: Option<IdentityPem>,
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
        let config = |verified: bool, alpn: &[u8]| -> Result<Arc<ClientConfig>, ConfigError> {
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
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        let client_sha256 = client_auth
            .as_ref()
            .and_then(|(certs, _)| certs.first())
            .map(|leaf| sha256_hex(leaf));
        Ok(Self {
            probe_verified: config(true, b"http/1.1")?,
            probe_unverified: config(false, b"http/1.1")?,
            grpc_verified: config(true, ALPN_H2)?,
            grpc_unverified: config(false, ALPN_H2)?,
            ca_pem,
            identity,
            client_sha256,
            loaded_at: SystemTime::now(),
        })
    }

    /// Whether `self` was made from the same PEM as `other`.
    pub(super) fn same_source(&self, other: &Material) -> bool {
        self.ca_pem == other.ca_pem && self.identity == other.identity
    }

    /// The rustls config of an HTTP/1.1 probe.
    pub(super) fn probe_config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify {
            self.probe_verified.clone()
        } else {
            self.probe_unverified.clone()
        }
    }

    /// The rustls config of a gRPC connection.
    pub(super) fn grpc_config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify {
            self.grpc_verified.clone()
        } else {
            self.grpc_unverified.clone()
        }
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of the first certificate of a PEM chain, lower-case hex (what
/// [`TlsStatus::client_certificate_sha256`](super::TlsStatus::client_certificate_sha256)
/// shows); `None` without a readable certificate.
pub(super) fn pem_sha256(pem: &[u8]) -> Option<String> {
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(sha256_hex(&first))
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

/// The certificate chain and the key's DER (wiped when dropped; each config gets its own
/// copy, which rustls wipes).
type ClientAuth = (
    Vec<CertificateDer<'static>>,
    Zeroizing<PrivateKeyDer<'static>>,
);

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
    Ok((certs, Zeroizing::new(key)))
}
