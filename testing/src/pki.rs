//! Certificates for TLS clusters, made fresh with `rcgen` for every cluster.
//!
//! Why generated: a checked-in key would expire or leak into other projects' trust, and each
//! test wants its own CA so that "a certificate from another CA is refused" can be shown with
//! a second, equally valid one. The members get one server certificate (for `127.0.0.1` and
//! `localhost`), clients one certificate with common name `root`; more client certificates
//! can be issued later ([`TestPki::issue_client`]), and members can be told to accept client
//! certificates of other CAs too ([`TestPki::trust_client_cas`]), which is how certificate
//! rotation is tested.

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
    dir: PathBuf,
    name: String,
    /// The CA's parameters and key, to issue more certificates.
    ca_params: CertificateParams,
    ca_key_pem: String,
    ca: PathBuf,
    /// The CAs members accept client certificates from (`--trusted-ca-file`).
    trusted: PathBuf,
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
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params.clone(), ca_key);
        let leaf = |cn: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            leaf(&issuer, cn, sans, usages)
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
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca_params,
            ca_key_pem,
            ca: write(format!("{name}-ca.pem"), &ca_cert.pem())?,
            trusted: write(format!("{name}-trusted-ca.pem"), &ca_cert.pem())?,
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

    /// The CAs members accept client certificates from (their `--trusted-ca-file`, PEM):
    /// this CA, and those given to [`trust_client_cas`](Self::trust_client_cas).
    pub fn trusted_ca_file(&self) -> &Path {
        &self.trusted
    }

    /// From the next start of each member on, members accept client certificates issued by
    /// this CA and by the CAs in `others` (PEM files), and no other. (etcd reads its trusted
    /// CAs when it starts: [`Cluster::restart`](super::Cluster::restart) a member to apply.)
    /// This CA stays trusted: the fixture's own checks present its client certificate.
    pub fn trust_client_cas(&self, others: &[&Path]) -> Result<(), ClusterError> {
        let mut bundle = std::fs::read_to_string(&self.ca)
            .map_err(|e| ClusterError::io(format!("read {}", self.ca.display()), e))?;
        for other in others {
            let pem = std::fs::read_to_string(other)
                .map_err(|e| ClusterError::io(format!("read {}", other.display()), e))?;
            bundle.push_str(&pem);
        }
        write_atomically(&self.trusted, &bundle)
    }

    /// Issues another client certificate (common name `cn`) from this CA, written to
    /// `{name}-{cn}-client.pem` and `{name}-{cn}-client-key.pem`; returns (certificate, key).
    pub fn issue_client(&self, cn: &str) -> Result<(PathBuf, PathBuf), ClusterError> {
        let key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| ClusterError::Certificates {
            reason: format!("CA key: {e}"),
        })?;
        let issuer = Issuer::new(self.ca_params.clone(), key);
        let (cert, key) = leaf(
            &issuer,
            cn,
            vec![],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let cert_path = self.dir.join(format!("{}-{cn}-client.pem", self.name));
        let key_path = self.dir.join(format!("{}-{cn}-client-key.pem", self.name));
        write_atomically(&cert_path, &cert)?;
        write_atomically(&key_path, &key)?;
        Ok((cert_path, key_path))
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
            ..TlsConfig::default()
        }
    }
}

/// A leaf certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: Vec<String>,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(String, String), ClusterError> {
    let err = |what: &str, e: rcgen::Error| ClusterError::Certificates {
        reason: format!("{what}: {e}"),
    };
    let key = KeyPair::generate().map_err(|e| err("key", e))?;
    let mut params = CertificateParams::new(sans).map_err(|e| err(cn, e))?;
    params.distinguished_name = named(cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).map_err(|e| err(cn, e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `text` to a temporary file next to `path` and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), ClusterError> {
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| ClusterError::io(format!("write {}", path.display()), e))
}

fn named(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}
