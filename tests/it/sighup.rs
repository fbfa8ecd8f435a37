//! `wabridge serve` reloads the SIP certificate on SIGHUP: new connections get the new certificate, an
//! established connection keeps working. Runs the real binary and sends it the signal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use wabridge::edge::tls;

const BIN: &str = env!("CARGO_BIN_EXE_wabridge");

fn connector(cert: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certs(cert).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn handshake(
    addr: SocketAddr,
    trust: &std::path::Path,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    connector(trust).connect(ServerName::try_from("sip.test").unwrap(), tcp).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_sip_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (cert, key) = tls::write_dev_pair("sip.test", &certs).unwrap();
    let old_copy = dir.path().join("old-cert.pem");
    std::fs::copy(&cert, &old_copy).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("WABRIDGE_DATABASE_URL", format!("sqlite://{}", dir.path().join("w.db").display()))
        .env("WABRIDGE_DATA_DIR", dir.path())
        .env("WABRIDGE_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_SIP_ENABLED", "true")
        .env("WABRIDGE_SIP_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_SIP_PBX_UDP_LISTEN", "127.0.0.1:0")
        // The test connects from 127.0.0.1: untrusted sources are closed at accept.
        .env("WABRIDGE_SIP_TRUSTED_NETWORKS", "[127.0.0.1/32]")
        .env("WABRIDGE_SIP_CERT_FILE", &cert)
        .env("WABRIDGE_SIP_KEY_FILE", &key)
        .env("WABRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let sip: SocketAddr = loop {
        let line = lines.next().expect("wabridge printed its SIP address").unwrap();
        if let Some(rest) = line.strip_prefix("SIP edge listening on ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});

    let mut established = handshake(sip, &cert).await.expect("TLS with the first certificate");
    tls::write_dev_pair("sip.test", &certs).unwrap();
    assert!(handshake(sip, &cert).await.is_none(), "not reloaded before the signal");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(sip, &cert).await.is_none() {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the process with a deadline
    }
    assert!(handshake(sip, &old_copy).await.is_none(), "new connections no longer get the old certificate");
    // The connection made before the reload still carries SIP.
    established
        .write_all(
            b"OPTIONS sip:sip.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKhup\r\nFrom: <sip:p@x>;tag=1\r\n\
              To: <sip:sip.test>\r\nCall-ID: hup\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), established.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 "), "an answer on the old connection");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}
