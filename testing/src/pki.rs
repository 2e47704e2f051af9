//! Certificates for TLS clusters, made fresh with `rcgen` for every cluster.
//!
//! Why generated: a checked-in key would expire or leak into other projects' trust, and each
//! test wants its own CA so that "a certificate from another CA is refused" can be shown with
//! a second, equally valid one. The members get one server certificate (for `127.0.0.1` and
//! `localhost`), clients one certificate with common name `root`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::error::ClusterError;
use etcd_health::config::TlsConfig;

/// A CA with a server and a client certificate, written as PEM files into a directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl TestPki {
    /// Makes a new CA named `name` and its certificates, written to `dir` as
    /// `{name}-ca.pem`, `{name}-server.pem`, `{name}-server-key.pem`, `{name}-client.pem` and
    /// `{name}-client-key.pem`.
    pub fn generate(dir: &Path, name: &str) -> Result<Self, ClusterError> {
        let err = |what: &str, e: rcgen::Error| ClusterError::Certificates {
            reason: format!("{what}: {e}"),
        };
        let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
        ca_params.distinguished_name = named(&format!("etcd-health test CA {name}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| err("CA", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |cn: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().map_err(|e| err("key", e))?;
            let mut params = CertificateParams::new(sans).map_err(|e| err(cn, e))?;
            params.distinguished_name = named(cn);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer).map_err(|e| err(cn, e))?;
            Ok::<_, ClusterError>((cert.pem(), key.serialize_pem()))
        };
        // Members dial each other's gateway with the same certificate: both usages.
        let (server_cert, server_key) = leaf(
            "etcd member",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client_cert, client_key) =
            leaf("root", vec![], vec![ExtendedKeyUsagePurpose::ClientAuth])?;

        let write = |file: String, pem: &str| {
            let path = dir.join(file);
            std::fs::write(&path, pem)
                .map_err(|e| ClusterError::io(format!("write {}", path.display()), e))?;
            Ok::<_, ClusterError>(path)
        };
        Ok(Self {
            ca: write(format!("{name}-ca.pem"), &ca_cert.pem())?,
            server_cert: write(format!("{name}-server.pem"), &server_cert)?,
            server_key: write(format!("{name}-server-key.pem"), &server_key)?,
            client_cert: write(format!("{name}-client.pem"), &client_cert)?,
            client_key: write(format!("{name}-client-key.pem"), &client_key)?,
        })
    }

    /// The CA certificate (PEM file).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// The members' certificate (PEM file).
    pub fn server_cert_file(&self) -> &Path {
        &self.server_cert
    }

    /// The members' private key (PEM file).
    pub fn server_key_file(&self) -> &Path {
        &self.server_key
    }

    /// The client certificate, common name `root` (PEM file).
    pub fn client_cert_file(&self) -> &Path {
        &self.client_cert
    }

    /// The client certificate's private key (PEM file).
    pub fn client_key_file(&self) -> &Path {
        &self.client_key
    }

    /// A [`TlsConfig`] trusting this CA and presenting the client certificate.
    pub fn client_config(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca.clone()),
            cert_file: Some(self.client_cert.clone()),
            key_file: Some(self.client_key.clone()),
            domain_name: None,
        }
    }
}

fn named(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}
