//! Test fixtures shared by the workspace's tests and benches (dev-dependency only, never published).
//!
//! | item | what it is |
//! |---|---|
//! | [`NatsServer`] | a real `nats-server` child process on a free loopback port, stopped by pid when dropped |
//! | [`Pki`] | a test certificate authority (rcgen) issuing server and client certificates, for TLS tests |

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use rcgen::ExtendedKeyUsagePurpose;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// How long a starting `nats-server` may take to report its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `nats-server` child process on a loopback port, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The client port.
    pub port: u16,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p -1` (a free port) and waits until it listens. Panics with an
    /// install hint when the binary is missing: tests must not silently skip.
    pub fn start() -> NatsServer {
        Self::start_on(None)
    }

    /// Starts a server on `port` when given (to restart one on the same address), else on a free port; panics
    /// like [`start`](Self::start).
    pub fn start_on(port: Option<u16>) -> NatsServer {
        Self::try_start_on(port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`start_on`](Self::start_on), but says what went wrong instead of panicking (for benches that
    /// skip a comparison when `nats-server` is not installed).
    pub fn try_start_on(port: Option<u16>) -> Result<NatsServer, String> {
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "nats-server must be installed (scripts/test installs it: apt-get install -y nats-server): {e}"
                )
            })?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("nats-server: no stderr to read its port from".into());
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    let port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(port)) => Ok(NatsServer {
                child,
                url: format!("nats://127.0.0.1:{port}"),
                port,
            }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "nats-server did not report its port within {START_TIMEOUT:?}: {other:?}"
                ))
            }
        }
    }

    /// The process id, for tests that signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now (and waits for it to exit).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A certificate authority made at test time, and the certificates it signs (PEM).
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new self-signed CA. Panics if rcgen cannot make one (a test fixture).
    pub fn new() -> Pki {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).expect("self-signed CA").pem();
        Pki {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` with `usage`, and its key (PEM), signed by this CA.
    pub fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_listens_and_stops() {
        let mut nats = NatsServer::start();
        let addr = format!("127.0.0.1:{}", nats.port);
        assert!(std::net::TcpStream::connect(&addr).is_ok(), "{addr}");
        assert!(nats.url.ends_with(&nats.port.to_string()));
        nats.stop();
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "still listening after stop"
        );
    }
}
