//! How peers reach each other: plain TCP, or TLS (rustls, with the ring provider) when
//! a certificate authority is configured. Whatever carries the bytes, the frames above
//! are the same.
//!
//! TLS is the `tls` feature (on by default). Without it there is no TLS stack in the
//! build: [`ClientTls`] and [`ServerTls`] have no values, and loading one says why.

use std::io;
#[cfg(feature = "tls")]
use std::net::IpAddr;
use std::path::{Path, PathBuf};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
#[cfg(feature = "tls")]
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A connected byte stream of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxedStream = Box<dyn Stream>;

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[cfg(feature = "tls")]
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot use {0}: this build has no TLS (the `tls` feature of sesco-proto)")]
    NotBuilt(PathBuf),
}

#[cfg(feature = "tls")]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(feature = "tls")]
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// What a client trusts: the certificate authority that signed Sesco's certificate.
#[cfg(feature = "tls")]
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}

#[cfg(feature = "tls")]
impl ClientTls {
    /// Trusts the certificates in the PEM file `ca`.
    pub fn from_ca_file(ca: &Path) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca)? {
            roots.add(cert)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}

/// Sesco's certificate and key.
#[cfg(feature = "tls")]
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

#[cfg(feature = "tls")]
impl ServerTls {
    /// Loads a PEM certificate chain and its PEM private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = certificates(cert)?;
        let key_bytes = std::fs::read(key).map_err(|source| TlsError::Read {
            path: key.to_path_buf(),
            source,
        })?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Performs the server side of the TLS handshake.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<BoxedStream> {
        Ok(Box::new(self.acceptor.accept(stream).await?))
    }
}

/// Built without TLS: no client TLS configuration exists.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum ClientTls {}

#[cfg(not(feature = "tls"))]
impl ClientTls {
    /// Always fails: this build has no TLS.
    pub fn from_ca_file(ca: &Path) -> Result<Self, TlsError> {
        Err(TlsError::NotBuilt(ca.to_path_buf()))
    }
}

/// Built without TLS: no server TLS configuration exists.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum ServerTls {}

#[cfg(not(feature = "tls"))]
impl ServerTls {
    /// Always fails: this build has no TLS.
    pub fn from_files(cert: &Path, _key: &Path) -> Result<Self, TlsError> {
        Err(TlsError::NotBuilt(cert.to_path_buf()))
    }

    pub async fn accept(&self, _stream: TcpStream) -> io::Result<BoxedStream> {
        match *self {}
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connects to `addr` (`host:port`), with TLS when `tls` is given: the host part is the
/// name (DNS name or IP address) Sesco's certificate must carry.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    limit: Duration,
) -> io::Result<BoxedStream> {
    let tcp = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {addr}")))??;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    #[cfg(not(feature = "tls"))]
    match *tls {}
    #[cfg(feature = "tls")]
    handshake(addr, tls, tcp, limit).await
}

#[cfg(feature = "tls")]
async fn handshake(
    addr: &str,
    tls: &ClientTls,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<BoxedStream> {
    let host = host_of(addr);
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?,
    };
    let stream = tokio::time::timeout(limit, tls.connector.connect(name, tcp))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake with {addr}"),
            )
        })??;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_part_names_the_server() {
        assert_eq!(host_of("sesco.example:7207"), "sesco.example");
        assert_eq!(host_of("10.0.0.1:7207"), "10.0.0.1");
        assert_eq!(host_of("[::1]:7207"), "::1");
    }
}
