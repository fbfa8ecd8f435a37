//! TLS for the SIP edge: a server certificate that can be reloaded (SIGHUP) without touching established
//! connections, no client certificate requested and no ALPN offered (Meta refuses `sip` ALPN); and a client
//! configuration toward Meta that verifies `wa.meta.vc` against public roots or a configured CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the key in {path} cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..]).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::BadKey { path: path.into(), reason: e.to_string() })?
        .ok_or_else(|| TlsError::NoKey { path: path.into() })
}

/// Reads a chain and key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let ck = CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| TlsError::BadKey { path: key.into(), reason: e.to_string() })?;
    Ok(Arc::new(ck))
}

/// The edge's certificate, swapped atomically on reload; handshakes in progress keep the old one.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load_certified_key(cert_path, key_path)?;
        Ok(Arc::new(ReloadableCert {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(ck),
        }))
    }

    /// Re-reads the files. On error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = ck;
        }
        Ok(())
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Server side: no client certificate, no ALPN.
pub fn server_config(cert: Arc<ReloadableCert>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// Client side toward Meta: public roots, or only the given CA file (tests, private deployments). No ALPN.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for c in load_certs(path)? {
                roots.add(c).map_err(|e| TlsError::Config(format!("CA in {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Writes a self-signed certificate and key for `host` (local use only: Meta refuses self-signed chains).
/// Returns the two paths. The key file is written with mode 0600.
pub fn write_dev_pair(host: &str, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_string()])
        .map_err(|e| TlsError::Config(format!("cannot generate a certificate for {host}: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read { path: dir.into(), source })?;
    let cert_path = dir.join("sip-cert.pem");
    let key_path = dir.join("sip-key.pem");
    std::fs::write(&cert_path, generated.cert.pem())
        .map_err(|source| TlsError::Read { path: cert_path.clone(), source })?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pair_loads_reloads_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_dev_pair("sip.example.test", dir.path()).unwrap();
        let rc = ReloadableCert::load(&cert, &key).unwrap();
        let first = rc.current().unwrap();
        let (cert2, key2) = write_dev_pair("sip.example.test", dir.path()).unwrap();
        assert_eq!((cert2.clone(), key2), (cert.clone(), key.clone()));
        rc.reload().unwrap();
        assert!(!Arc::ptr_eq(&first, &rc.current().unwrap()), "a new certificate after reload");
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(rc.reload(), Err(TlsError::NoCertificate { .. })));
        assert!(rc.current().is_some(), "the old certificate stays in use");
        server_config(rc).unwrap();
        assert!(client_config(None).is_ok());
        assert!(client_config(Some(&cert2)).is_err(), "garbage CA file is an error");
    }
}
