//! Meta's side of a WhatsApp call toward a business's SIP server: a TLS client that verifies the server's
//! certificate, sends the INVITE Meta sends (Record-Route of Meta's proxies, `x-wa-meta-wacid`, an SDES-SRTP
//! Opus offer), answers a digest challenge like Meta, and ends the call with ACK and BYE along the route set.
//! The message shapes follow `shared/reference/meta-calling-sip.md` §2.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use super::text::{header, headers, next_message, status};

/// The WhatsApp user who calls, as Meta writes it in From (digits, no `+`).
pub const WHATSAPP_USER: &str = "5511987654321";

/// How long [`MetaCaller::recv`] waits for a message.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call could not go on.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("the certificate file {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS with {host}: {0}", host = .1)]
    Tls(std::io::Error, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server sent an unframeable stream: {0}")]
    Framing(String),
    #[error("no SIP {0} came within {1:?}")]
    Timeout(u16, Duration),
    #[error("expected SIP {expected}, got: {got}")]
    Unexpected { expected: u16, got: String },
    #[error("the 200 OK lacks {0}")]
    Incomplete(&'static str),
}

/// Meta's side of calls to one business number, over one TLS connection.
pub struct MetaCaller {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
    /// The messages Meta sends on this connection.
    pub leg: CallLeg,
}

/// The messages Meta sends for calls to one business number from one connection (no socket: a load generator
/// with its own connection handling writes them too).
#[derive(Debug, Clone)]
pub struct CallLeg {
    /// The connection's local address (Meta's Via).
    pub local: SocketAddr,
    /// The SIP host configured on the number at Meta: the Request-URI's host and the TLS server name.
    pub host: String,
    /// The business number called, `+E164`.
    pub callee: String,
}

/// A TLS client configuration trusting only the certificates in the PEM file `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, CallerError> {
    let bad = |reason: String| CallerError::Certificate { path: ca.display().to_string(), reason };
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &pem[..]).collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl MetaCaller {
    /// Connects from `from` (port chosen by the system) to the SIP server at `server`, with TLS verifying the
    /// certificate for `host` against the trust roots in `tls` (see [`client_config`]). No ALPN, no client
    /// certificate: Meta offers neither.
    pub async fn connect(
        server: SocketAddr,
        from: IpAddr,
        host: &str,
        tls: Arc<rustls::ClientConfig>,
        callee: &str,
    ) -> Result<MetaCaller, CallerError> {
        let sock = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        sock.bind(SocketAddr::new(from, 0))?;
        let tcp = sock.connect(server).await?;
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| CallerError::Tls(std::io::Error::other(e.to_string()), host.into()))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| CallerError::Tls(e, host.into()))?;
        Ok(MetaCaller { stream, buf: Vec::new(), leg: CallLeg { local, host: host.into(), callee: callee.into() } })
    }

    pub async fn send(&mut self, msg: &str) -> Result<(), CallerError> {
        self.stream.write_all(msg.as_bytes()).await?;
        Ok(())
    }

    /// The next message, or `None` when the connection closed, could not be framed, or nothing came within 5 s.
    pub async fn recv(&mut self) -> Option<String> {
        self.next(RECV_TIMEOUT).await.ok().flatten()
    }

    async fn next(&mut self, wait: Duration) -> Result<Option<String>, CallerError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(msg) = next_message(&mut self.buf).map_err(CallerError::Framing)? {
                return Ok(Some(msg));
            }
            let mut chunk = [0u8; 8192];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(None),
            }
        }
    }

    /// Reads until a response with status `code` and returns it. Provisional responses before it are passed to
    /// `seen`; any other final status, or nothing within 5 s, is an error.
    pub async fn response_seeing(&mut self, code: u16, mut seen: impl FnMut(&str)) -> Result<String, CallerError> {
        loop {
            let msg = self.next(RECV_TIMEOUT).await?.ok_or(CallerError::Timeout(code, RECV_TIMEOUT))?;
            let got = status(&msg).unwrap_or(0);
            if got == code {
                return Ok(msg);
            }
            if (100..200).contains(&got) {
                seen(&msg);
                continue;
            }
            return Err(CallerError::Unexpected { expected: code, got: msg });
        }
    }

    /// Reads until a response with status `code` (see [`MetaCaller::response_seeing`]).
    pub async fn response(&mut self, code: u16) -> Result<String, CallerError> {
        self.response_seeing(code, |_| {}).await
    }

    /// [`MetaCaller::response`] for tests: panics, with the reason, when it is not there.
    pub async fn expect(&mut self, code: u16) -> String {
        match self.response(code).await {
            Ok(msg) => msg,
            Err(e) => panic!("{e}"),
        }
    }
}

impl CallLeg {
    /// The Request-URI of Meta's INVITE: `sip:+<number>;tgrp=wacall@<host>;transport=tls`.
    pub fn request_uri(&self) -> String {
        format!("sip:{};tgrp=wacall@{};transport=tls", self.callee, self.host)
    }

    /// Meta's INVITE for WhatsApp call `wacid.<call>` (Call-ID `outgoing:wacid.<call>`), with `Proxy-Authorization:
    /// <auth>` when given.
    pub fn invite(&self, call: &str, cseq: u32, auth: Option<&str>) -> String {
        let sdp = "v=0\r\no=- 1 1 IN IP4 157.240.1.1\r\ns=-\r\nc=IN IP4 157.240.1.1\r\nt=0 0\r\n\
                   m=audio 40012 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
        format!(
            "INVITE {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK-{call}-{cseq};rport\r\n\
             Record-Route: <sip:wa.meta.vc;transport=tls;lr>\r\n\
             Record-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>\r\n\
             Max-Forwards: 69\r\n\
             From: \"{WHATSAPP_USER}\" <sip:+{WHATSAPP_USER}@wa.meta.vc>;tag=meta-{call}\r\n\
             To: <sip:{callee}@{host}>\r\n\
             Call-ID: outgoing:wacid.{call}\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:+{WHATSAPP_USER}@wa.meta.vc;transport=tls;ob>;isfocus\r\n\
             x-wa-meta-wacid: wacid.{call}\r\n\
             X-FB-External-Domain: wa.meta.vc\r\n\
             User-Agent: Facebook SipGateway\r\n\
             Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS\r\n\
             {auth}Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            ruri = self.request_uri(),
            local = self.local,
            callee = self.callee,
            host = self.host,
        )
    }

    /// Meta's INVITE answering the digest challenge in `challenge` (a 407): the first `Proxy-Authenticate` this
    /// side can answer, username = the business number's digits, password = the number's SIP password at Meta.
    pub fn invite_with_credentials(&self, challenge: &str, call: &str, cseq: u32, password: &str) -> Option<String> {
        let username = self.callee.trim_start_matches('+');
        let uri = self.request_uri();
        let auth = headers(challenge, "proxy-authenticate", "").into_iter().find_map(|c| {
            super::digest::respond(c, "INVITE", &uri, username, password, &format!("meta{call}{cseq}"))
        })?;
        Some(self.invite(call, cseq, Some(&auth)))
    }

    /// The ACK for a non-2xx final response to our INVITE `cseq` (RFC 3261 §17.1.1.3): part of the INVITE's
    /// transaction (its branch and Request-URI), with the response's To tag.
    pub fn ack_final(&self, response: &str, call: &str, cseq: u32) -> String {
        let to = header(response, "to").unwrap_or_default();
        format!(
            "ACK {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK-{call}-{cseq};rport\r\n\
             Max-Forwards: 69\r\n\
             From: \"{WHATSAPP_USER}\" <sip:+{WHATSAPP_USER}@wa.meta.vc>;tag=meta-{call}\r\n\
             To: {to}\r\nCall-ID: outgoing:wacid.{call}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            ruri = self.request_uri(),
            local = self.local,
        )
    }

    /// An in-dialog request after `ok` (the 200 to our INVITE): Request-URI = its Contact, Route = the server's
    /// Record-Route entries (those before Meta's own), reversed as a UAC's route set is.
    pub fn in_dialog(&self, method: &str, ok: &str, call: &str, cseq: u32, extra: &str) -> Result<String, CallerError> {
        let contact = headers(ok, "contact", "m")
            .first()
            .and_then(|c| c.split('<').nth(1)?.split('>').next())
            .ok_or(CallerError::Incomplete("a Contact"))?;
        let to = *headers(ok, "to", "t").first().ok_or(CallerError::Incomplete("a To"))?;
        let mut routes: Vec<&str> = headers(ok, "record-route", "")
            .into_iter()
            .flat_map(|v| v.split(',').map(str::trim))
            .take_while(|r| !r.contains("wa.meta.vc") && !r.contains("fbinfra"))
            .collect();
        routes.reverse();
        let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        Ok(format!(
            "{method} {contact} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK-{call}-{method}-{cseq};rport\r\n\
             {route_lines}Max-Forwards: 69\r\n\
             From: \"{WHATSAPP_USER}\" <sip:+{WHATSAPP_USER}@wa.meta.vc>;tag=meta-{call}\r\n\
             To: {to}\r\nCall-ID: outgoing:wacid.{call}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
            local = self.local,
        ))
    }
}
