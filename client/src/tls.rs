//! TLS and mutual TLS through rustls (on ring; no OpenSSL, no aws-lc-rs).
//!
//! PEM inputs are parsed when the client is built, so a wrong file or a key that is not a key fails at
//! [`ClientBuilder::connect`](crate::ClientBuilder::connect) with [`ErrorKind::Tls`](crate::ErrorKind::Tls)
//! and a message naming the input, not later as an opaque handshake failure.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, ErrorKind, Result};

/// PEM given in memory or as a file to read when the client is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pem {
    Memory(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::Memory(bytes) => Ok(bytes.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorKind::Tls,
                    format!("cannot read the {what} file {}: {e}", path.display()),
                )
                .with_source(e)
            }),
        }
    }
}

/// TLS settings of a client.
///
/// Without a CA the system's root certificates are trusted. With [`ca_pem`](TlsOptions::ca_pem) or
/// [`ca_file`](TlsOptions::ca_file) only the given CAs are (add the system roots back with
/// [`native_roots`](TlsOptions::native_roots)).
///
/// ```no_run
/// # async fn run() -> liftbridge::Result<()> {
/// use liftbridge::{Client, TlsOptions};
///
/// let tls = TlsOptions::new()
///     .ca_file("/etc/liftbridge/ca.pem")
///     .client_identity_files("/etc/liftbridge/client.pem", "/etc/liftbridge/client.key")
///     .server_name("liftbridge.internal");
/// let client = Client::builder(["10.0.0.5:9292"]).tls(tls).connect().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    cas: Vec<Pem>,
    native_roots: Option<bool>,
    identity: Option<(Pem, Pem)>,
    server_name: Option<String>,
}

impl TlsOptions {
    /// TLS trusting the system roots, without a client certificate.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Trusts the CA certificate(s) in this PEM.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cas.push(Pem::Memory(pem.into()));
        self
    }

    /// Trusts the CA certificate(s) in this PEM file (read when the client is built).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(Pem::File(path.into()));
        self
    }

    /// Whether to trust the system's root certificates too. Default: only when no CA is given.
    pub fn native_roots(mut self, enabled: bool) -> Self {
        self.native_roots = Some(enabled);
        self
    }

    /// Presents this certificate chain and private key (PEM) to the server: mutual TLS.
    pub fn client_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((Pem::Memory(cert_pem.into()), Pem::Memory(key_pem.into())));
        self
    }

    /// Like [`client_identity_pem`](TlsOptions::client_identity_pem), from files.
    pub fn client_identity_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.identity = Some((Pem::File(cert_path.into()), Pem::File(key_path.into())));
        self
    }

    /// The name the server certificate must be valid for, instead of the host of the address dialled (use it
    /// when connecting by IP address, or through a proxy).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Checks and converts the settings into tonic's.
    pub(crate) fn to_tonic(&self) -> Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        for (i, ca) in self.cas.iter().enumerate() {
            let pem = ca.load("CA certificate")?;
            let count = certificates(&pem, &format!("CA certificate #{}", i + 1))?;
            if count == 0 {
                return Err(tls_error(format!(
                    "CA certificate #{} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                    i + 1
                )));
            }
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        if self.native_roots.unwrap_or(self.cas.is_empty()) {
            config = config.with_native_roots();
        }
        if let Some((cert, key)) = &self.identity {
            let cert = cert.load("client certificate")?;
            let key = key.load("client key")?;
            if certificates(&cert, "client certificate")? == 0 {
                return Err(tls_error(
                    "the client certificate PEM contains no certificate (expected -----BEGIN CERTIFICATE-----)",
                ));
            }
            PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                tls_error(format!(
                    "the client key is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
                ))
            })?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            rustls::pki_types::ServerName::try_from(name.as_str()).map_err(|e| {
                tls_error(format!(
                    "server name {name:?} is not a valid DNS name or IP address: {e}"
                ))
            })?;
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

fn tls_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Tls, message)
}

/// Counts the certificates in `pem`, failing on malformed PEM.
fn certificates(pem: &[u8], what: &str) -> Result<usize> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| tls_error(format!("{what} is not valid PEM: {e}")))?;
        count += 1;
    }
    Ok(count)
}

/// True when a TLS problem (certificate, handshake) is somewhere in `err`'s source chain.
pub(crate) fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the wrapped error itself (it returns the wrapped error's source), and
        // tokio-rustls wraps rustls errors in `io::Error`s.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_up_front() {
        let err = TlsOptions::new()
            .ca_pem("not a pem")
            .to_tonic()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls);
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err = TlsOptions::new()
            .ca_file("/nonexistent/ca.pem")
            .to_tonic()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls);
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = TlsOptions::new()
            .server_name("not a name!")
            .to_tonic()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls);
    }
}
