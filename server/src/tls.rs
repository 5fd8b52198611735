//! TLS for the gRPC API (`tls.*`): the server's certificate and key, and optionally client certificates signed
//! by a given CA (mutual TLS). Everything is read and checked at start, so a bad file stops the server with a
//! message naming it instead of failing the first handshake.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.cert` without `tls.key`, or the other way round.
    #[error("TLS needs both tls.cert and tls.key (only {given} is set)")]
    Incomplete {
        /// The key that is set.
        given: &'static str,
    },
    /// `tls.client.auth.enabled` without a CA to check client certificates against.
    #[error(
        "tls.client.auth.enabled needs tls.client.auth.ca (the CA that signs client certificates)"
    )]
    NoClientCa,
    /// Client-certificate options given while the server has no certificate of its own.
    #[error(
        "tls.client.auth.* needs tls.cert and tls.key: client certificates are only asked for over TLS"
    )]
    ClientAuthWithoutTls,
    /// A file could not be read or holds no PEM block.
    #[error("{key} {path}: {reason}")]
    File {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate-based authorization (Liftbridge's experimental ACLs) is not implemented.
    #[error(
        "tls.client.authz.enabled: authorization by client certificate is not implemented in this server; \
         use tls.client.auth.enabled (mutual TLS) for authentication"
    )]
    AuthzNotImplemented,
}

/// The tonic TLS settings for `config`, or `None` when TLS is not configured (plain text).
pub fn server_tls(config: &TlsConfig) -> Result<Option<ServerTlsConfig>, TlsError> {
    if config.client_authz_enabled {
        return Err(TlsError::AuthzNotImplemented);
    }
    let (cert, key) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(TlsError::Incomplete { given: "tls.cert" }),
        (None, Some(_)) => return Err(TlsError::Incomplete { given: "tls.key" }),
        (None, None) => {
            if config.client_auth_enabled || config.client_auth_ca.is_some() {
                return Err(TlsError::ClientAuthWithoutTls);
            }
            return Ok(None);
        }
    };
    let identity = Identity::from_pem(read_pem("tls.cert", cert)?, read_pem("tls.key", key)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if config.client_auth_enabled {
        let ca = config.client_auth_ca.as_ref().ok_or(TlsError::NoClientCa)?;
        tls = tls.client_ca_root(Certificate::from_pem(read_pem("tls.client.auth.ca", ca)?));
    } else if let Some(ca) = &config.client_auth_ca {
        // A CA without `enabled`: client certificates are checked when presented, not required.
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem("tls.client.auth.ca", ca)?))
            .client_auth_optional(true);
    }
    Ok(Some(tls))
}

/// Reads a PEM file, refusing one without a PEM block (a DER file or a wrong path's contents).
fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(file_error("no PEM block in the file".into()));
    }
    Ok(bytes)
}
