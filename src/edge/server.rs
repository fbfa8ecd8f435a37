//! The running SIP edge: a TLS listener for Meta, UDP (and optionally TCP) toward the PBX, outbound TLS to
//! Meta and TCP/TLS to the PBX, RFC 3261 transactions, and call records.
//!
//! Every decision (who may call, where a request goes, how it is rewritten) is made by the pure functions in
//! `crate::sip`, and every transaction's state (retransmissions, timeouts, timer C, the hop-by-hop ACK, the
//! answers to retransmitted requests) by the pure machines of `crate::sip::transaction`. This module only
//! moves bytes, keeps each forwarded request's pair of machines with where its responses go ([`Txn`]),
//! turns the machines' timers into sleeping tasks, and records calls.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rsip::{Method, Request, SipMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::framing::{next_frame, Frame};
use super::tls::{client_config, server_config, ReloadableCert, TlsError};
use crate::config::Config;
use crate::metrics::{Metrics, OutcomeLabels, ReasonLabels};
use crate::sip::acl::Acl;
use crate::sip::digest::Challenger;
use crate::sip::message::{
    self, call_duration_secs, call_id_key, cseq, header_elements, header_value, header_values, request_bytes,
    response_bytes,
};
use crate::sip::proxy::{self, Decision, EdgeConfig, NextHop, PhoneTarget, ResponseDecision, Side, Source, Transport};
use crate::sip::transaction::{
    ClientAction, ClientEvent, ClientInvite, ClientNonInvite, ClientTxn, ServerAction, ServerEvent, ServerInvite,
    ServerNonInvite, ServerTxn, Time, TimerKind, Timers, TransactionKey,
};
use crate::store::calls::NewCall;
use crate::store::{now_ms, Store};

/// Where responses for a transaction go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Conn(u64),
    Udp(SocketAddr),
}

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
}

/// One request the edge forwarded: the server transaction toward where it came from and the client
/// transaction toward the next hop (RFC 3261 §16: a stateful proxy pairs them). The edge's own CANCEL
/// has a client side only.
struct Txn {
    /// Where responses go back to; `None` for a request the edge originated.
    upstream: Option<Route>,
    server: Option<ServerTxn<Vec<u8>>>,
    /// `None` until the request is on its way (the next hop is being connected).
    client: Option<ClientTxn>,
    /// The request as forwarded (our Via on top); for the edge's own CANCEL, the INVITE it cancels (whose
    /// headers the CANCEL copies).
    forwarded: Request,
    /// The request as sent (and resent on timers A / E).
    bytes: Vec<u8>,
    next_hop: NextHop,
    route: Option<Route>,
}

/// Which machine of a transaction a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    Client,
    Server,
}

/// A response from downstream, as the client machine's caller sees it.
struct Received<'a> {
    code: u16,
    /// The response to relay upstream; `None` when the proxy absorbs it (100, the answer to a CANCEL).
    bytes: Option<Vec<u8>>,
    /// Its To header field (for the ACK of a non-2xx).
    to: Option<&'a str>,
}

/// What the edge does once the transaction table's lock is released.
enum Effect {
    Send(Route, Vec<u8>),
    /// Send toward a next hop (connecting when needed).
    SendToward(NextHop, Vec<u8>),
    CallFinal(String, u16),
    Cancel {
        key: TransactionKey,
        invite: Box<Request>,
        hop: NextHop,
    },
    Arm(TransactionKey, Machine, TimerKind, Time),
    Log(&'static str),
}

impl Txn {
    fn is_over(&self) -> bool {
        self.client.as_ref().is_none_or(ClientTxn::is_terminated)
            && self.server.as_ref().is_none_or(ServerTxn::is_terminated)
    }

    /// Turns the client machine's actions into effects; a response passed up (or our own 408 / 503)
    /// goes to the server machine.
    fn apply_client(
        &mut self,
        key: &TransactionKey,
        actions: Vec<ClientAction>,
        response: Option<Received<'_>>,
        cfg: &EdgeConfig,
        now: Time,
        effects: &mut Vec<Effect>,
    ) {
        for action in actions {
            match action {
                ClientAction::SendRequest => {
                    if let Some(route) = self.route {
                        effects.push(Effect::Send(route, self.bytes.clone()));
                    }
                }
                ClientAction::SendAck => {
                    // The ACK for a non-2xx final answer is hop-by-hop: we send it downstream (each
                    // retransmission of the answer too).
                    if let Some(to) = response.as_ref().and_then(|r| r.to) {
                        effects
                            .push(Effect::SendToward(self.next_hop.clone(), hop_request(&self.forwarded, "ACK", to)));
                    }
                }
                ClientAction::PassUp => {
                    if let Some(Received { code, bytes: Some(bytes), .. }) = &response {
                        self.respond_upstream(key, *code, bytes.clone(), now, effects);
                    }
                }
                ClientAction::Fail(code) => {
                    if self.server.is_some() {
                        if let Some(resp) = proxy::response_to_forwarded(&self.forwarded, code, cfg) {
                            self.respond_upstream(key, code, response_bytes(&resp), now, effects);
                        }
                    }
                }
                ClientAction::Cancel => {
                    let branch = match key {
                        TransactionKey::Branch { branch, .. } => branch.as_str(),
                        TransactionKey::Rfc2543 { .. } => continue,
                    };
                    effects.push(Effect::Cancel {
                        key: TransactionKey::client(branch, "CANCEL"),
                        invite: Box::new(self.forwarded.clone()),
                        hop: self.next_hop.clone(),
                    });
                }
                ClientAction::Arm(kind, at) => effects.push(Effect::Arm(key.clone(), Machine::Client, kind, at)),
                ClientAction::Terminated => {}
            }
        }
    }

    /// Hands a response to the server machine; records the call's outcome when it is the first final.
    fn respond_upstream(
        &mut self,
        key: &TransactionKey,
        code: u16,
        bytes: Vec<u8>,
        now: Time,
        effects: &mut Vec<Effect>,
    ) {
        let Some(server) = self.server.as_mut() else { return };
        let awaited = server.awaits_final();
        let actions = server.handle(ServerEvent::Respond(code, bytes), now);
        let first_final = awaited && !server.awaits_final();
        // Recorded before the response goes up: once Meta has the 200 its BYE may come at once, on another task,
        // and the call's end must find the answer already queued (else the record lacks its final status and
        // `wabridge_calls_active` stays up).
        if first_final && self.forwarded.method == Method::Invite {
            effects.push(Effect::CallFinal(call_id_key(&self.forwarded), code));
        }
        self.apply_server(key, actions, effects);
    }

    fn apply_server(&mut self, key: &TransactionKey, actions: Vec<ServerAction<Vec<u8>>>, effects: &mut Vec<Effect>) {
        for action in actions {
            match action {
                ServerAction::SendResponse(bytes) => {
                    if let Some(up) = self.upstream {
                        effects.push(Effect::Send(up, bytes));
                    }
                }
                ServerAction::Arm(kind, at) => effects.push(Effect::Arm(key.clone(), Machine::Server, kind, at)),
                ServerAction::PassUp | ServerAction::Terminated => {}
            }
        }
    }
}

#[derive(Clone)]
struct PhoneEntry {
    id: i64,
    target: PhoneTarget,
}

/// Call-record writes, applied in order by one task (a call's end must never overtake its start).
enum CallEvent {
    Started(NewCall),
    Final { key: String, code: u16, at: i64 },
    Ended { key: String, call_id: String, by: &'static str, duration: Option<i64>, at: i64 },
}

struct Inner {
    records: mpsc::UnboundedSender<CallEvent>,
    /// The proxy's configuration; replaced when the PBX networks change (phones, SIGHUP).
    proxy: RwLock<Arc<EdgeConfig>>,
    /// `sip_pbx_networks` when configured; otherwise derived from the Asterisk targets.
    pbx_networks: Option<Acl>,
    /// Asterisk target host names resolved so far (cleared on reload).
    resolved: Mutex<HashMap<String, Vec<IpAddr>>>,
    /// Target addresses outside a configured `sip_pbx_networks` last warned about.
    uncovered_targets: Mutex<Vec<ipnet::IpNet>>,
    /// Rate limit of the WARN about refused connections.
    refused_log: LogLimiter,
    acl: Acl,
    digest: Challenger,
    store: Store,
    metrics: Arc<Metrics>,
    config: Config,
    phones: RwLock<Arc<HashMap<String, PhoneEntry>>>,
    conns: Mutex<HashMap<u64, Conn>>,
    by_remote: Mutex<HashMap<(Transport, SocketAddr), u64>>,
    next_conn: AtomicU64,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    udp: Option<Arc<UdpSocket>>,
    txns: Mutex<HashMap<TransactionKey, Txn>>,
    active_calls: Mutex<HashSet<String>>,
    tls_client: TlsConnector,
    meta_address: Option<SocketAddr>,
    /// T1, T2, T4, B/F (`sip_timer_b_ms`) and C (`sip_timer_c_seconds`).
    timers: Timers,
    /// The origin of the transaction machines' clock.
    epoch: tokio::time::Instant,
    idle: Duration,
    handshake: Duration,
    stop: watch::Receiver<bool>,
}

/// A running edge.
pub struct Edge {
    inner: Arc<Inner>,
    /// Bound TLS address (Meta side).
    pub tls_addr: SocketAddr,
    /// Bound UDP address (PBX side), when enabled.
    pub udp_addr: Option<SocketAddr>,
    /// Bound TCP address (PBX side), when enabled.
    pub tcp_addr: Option<SocketAddr>,
    cert: Arc<ReloadableCert>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("SIP edge: {0}")]
    Setup(String),
}

/// The branch and digest secrets, derived from the master key so every instance sharing it agrees.
fn derived_secret(store: &Store, label: &'static str) -> [u8; 32] {
    store.sealer.derive(label)
}

impl Edge {
    pub async fn start(config: &Config, store: Store, metrics: Arc<Metrics>) -> Result<Edge, EdgeError> {
        let cert = ReloadableCert::load(&config.sip_cert_file, &config.sip_key_file)?;
        let acceptor = TlsAcceptor::from(server_config(cert.clone())?);
        let tls_client = TlsConnector::from(client_config(config.sip_meta_ca_file.as_deref())?);
        let nets: Vec<&str> = config.sip_trusted_networks.iter().map(String::as_str).collect();
        let acl = Acl::parse(&nets).map_err(|e| EdgeError::Setup(format!("sip_trusted_networks: {e}")))?;
        let tls_listener = TcpListener::bind(&config.sip_listen)
            .await
            .map_err(|e| EdgeError::Setup(format!("cannot listen on {}: {e}", config.sip_listen)))?;
        let tls_addr = tls_listener.local_addr().map_err(|e| EdgeError::Setup(e.to_string()))?;
        let udp = match config.sip_pbx_udp_listen.trim() {
            "" => None,
            addr => {
                Some(Arc::new(bind_udp(addr).map_err(|e| EdgeError::Setup(format!("cannot bind UDP {addr}: {e}")))?))
            }
        };
        let udp_addr = udp.as_ref().and_then(|u| u.local_addr().ok());
        let tcp_listener = match config.sip_pbx_tcp_listen.trim() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr).await.map_err(|e| EdgeError::Setup(format!("cannot listen on {addr}: {e}")))?,
            ),
        };
        let tcp_addr = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
        let pbx_facing = config
            .sip_pbx_facing
            .clone()
            .or_else(|| udp_addr.or(tcp_addr).map(|a| a.to_string()))
            .ok_or_else(|| EdgeError::Setup("enable sip_pbx_udp_listen or sip_pbx_tcp_listen".into()))?;
        let pbx_transport = if udp.is_some() { Transport::Udp } else { Transport::Tcp };
        let secret = derived_secret(&store, "sip.branch");
        let mut proxy_cfg = EdgeConfig::new(&config.sip_public_host, &pbx_facing, pbx_transport, secret);
        proxy_cfg.local_aliases.push(tls_addr.to_string());
        if let Some(a) = tcp_addr {
            proxy_cfg.local_aliases.push(a.to_string());
        }
        let pbx_networks = match config.sip_pbx_networks.is_empty() {
            true => None,
            false => {
                let nets: Vec<&str> = config.sip_pbx_networks.iter().map(String::as_str).collect();
                Some(Acl::parse(&nets).map_err(|e| EdgeError::Setup(format!("sip_pbx_networks: {e}")))?)
            }
        };
        // Nobody on the PBX side until the targets are read (refresh_phones below).
        proxy_cfg.pbx_acl = Some(pbx_networks.clone().unwrap_or_default());
        let digest = Challenger::new(derived_secret(&store, "sip.digest"), proxy_cfg.sip_hostname());
        let meta_address = match &config.sip_meta_address {
            Some(a) => Some(a.parse().map_err(|_| EdgeError::Setup(format!("sip_meta_address {a:?} is not ip:port")))?),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let (records, mut records_rx) = mpsc::unbounded_channel::<CallEvent>();
        let record_store = store.clone();
        let record_task = tokio::spawn(async move {
            while let Some(ev) = records_rx.recv().await {
                let r = match &ev {
                    CallEvent::Started(c) => crate::events::calls::started(&record_store, c).await,
                    CallEvent::Final { key, code, at } => {
                        crate::events::calls::final_status(&record_store, key, *code, *at).await
                    }
                    CallEvent::Ended { key, call_id, by, duration, at } => {
                        crate::events::calls::ended(&record_store, key, call_id, by, *duration, *at).await
                    }
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "SIP edge: cannot write a call record");
                }
            }
        });
        let inner = Arc::new(Inner {
            records,
            proxy: RwLock::new(Arc::new(proxy_cfg)),
            pbx_networks,
            resolved: Mutex::new(HashMap::new()),
            uncovered_targets: Mutex::new(Vec::new()),
            refused_log: LogLimiter::new(REFUSED_LOG_EVERY),
            acl,
            digest,
            store,
            metrics,
            config: config.clone(),
            phones: RwLock::new(Arc::new(HashMap::new())),
            conns: Mutex::new(HashMap::new()),
            by_remote: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            per_source: Mutex::new(HashMap::new()),
            udp: udp.clone(),
            txns: Mutex::new(HashMap::new()),
            active_calls: Mutex::new(HashSet::new()),
            tls_client,
            meta_address,
            timers: Timers {
                timeout: Duration::from_millis(config.sip_timer_b_ms.max(1)),
                c: Duration::from_secs(config.sip_timer_c_seconds.max(1)),
                ..Timers::with_t1(Duration::from_millis(config.sip_timer_t1_ms.max(1)))
            },
            epoch: tokio::time::Instant::now(),
            idle: Duration::from_secs(config.sip_idle_timeout_seconds.max(1)),
            handshake: Duration::from_millis(config.sip_tls_handshake_timeout_ms.max(1)),
            stop: stop_rx,
        });
        inner.refresh_phones().await;
        let mut tasks = vec![record_task];
        // Phones (who may be called, where they ring) are re-read every two seconds.
        {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move {
                let mut stop = inner.stop.clone();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => inner.refresh_phones().await,
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move { inner.accept_tls(tls_listener, acceptor).await }));
        }
        if let Some(l) = tcp_listener {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move { inner.accept_tcp(l).await }));
        }
        if let Some(u) = udp {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move { inner.recv_udp(u).await }));
        }
        tracing::info!(%tls_addr, ?udp_addr, ?tcp_addr, "SIP edge listening");
        Ok(Edge { inner, tls_addr, udp_addr, tcp_addr, cert, stop, tasks })
    }

    /// Re-reads the certificate files (SIGHUP). Established connections keep their sessions.
    pub fn reload_certificate(&self) -> Result<(), TlsError> {
        self.cert.reload()
    }

    /// Re-reads the phones with calling enabled now (the edge also does it every two seconds).
    pub async fn refresh_phones(&self) {
        self.inner.refresh_phones().await;
    }

    /// SIGHUP: resolves the Asterisk targets' host names again (for the default `sip_pbx_networks`).
    pub async fn reload_pbx_networks(&self) {
        if let Ok(mut r) = self.inner.resolved.lock() {
            r.clear();
        }
        self.inner.refresh_phones().await;
    }

    /// The networks the PBX side is accepted from now.
    pub fn pbx_networks(&self) -> Acl {
        self.inner.proxy().pbx_acl.clone().unwrap_or_default()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
        }
        self.inner.conns.lock().map(|mut c| c.clear()).unwrap_or(());
    }
}

/// Socket buffers asked for on the PBX-side UDP socket. The kernel's default (about 208 KiB) drops datagrams
/// under call bursts, and a lost 180 or BYE answer is never re-sent by a stateful proxy's peer; the kernel
/// caps the request at `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER_BYTES: usize = 8 * 1024 * 1024;

fn bind_udp(addr: &str) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "sip_pbx_udp_listen must be ip:port"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(UDP_BUFFER_BYTES)),
        ("send", socket.set_send_buffer_size(UDP_BUFFER_BYTES)),
    ] {
        if let Err(e) = result {
            tracing::warn!(error = %e, "SIP edge: cannot enlarge the UDP {what} buffer");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tracing::info!(
        receive_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "SIP edge: PBX-side UDP socket buffers (raise net.core.rmem_max/wmem_max for more)"
    );
    UdpSocket::from_std(socket.into())
}

fn parse_target(t: &str) -> Option<(Transport, String, u16)> {
    let (tr, host, port) = crate::registry::parse_sip_target(t).ok()?;
    Some((Transport::from_token(&tr)?, host, port))
}

impl Inner {
    async fn refresh_phones(&self) {
        let phones = match self.store.list_phones().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "SIP edge: cannot read phones; keeping the previous list");
                return;
            }
        };
        let default = self.config.sip_default_target.as_deref().and_then(parse_target);
        let mut map = HashMap::new();
        for p in phones.into_iter().filter(|p| p.calling_active()) {
            let Some((transport, host, port)) = p.asterisk_target.as_deref().and_then(parse_target).or(default.clone())
            else {
                continue;
            };
            let digest_password = if p.digest_challenge() { p.sip_password.clone() } else { None };
            let target = PhoneTarget { number: p.number.clone(), transport, host, port, digest_password };
            map.insert(p.number.clone(), PhoneEntry { id: p.id, target });
        }
        let hosts: Vec<(String, u16)> = map
            .values()
            .map(|e| (e.target.host.clone(), e.target.port))
            .chain(default.map(|(_, host, port)| (host, port)))
            .collect();
        self.resolve_targets(&hosts).await;
        let resolved = self.resolved.lock().map(|r| r.clone()).unwrap_or_default();
        let targets = pbx_acl_of(hosts.iter().map(|(h, _)| h.as_str()), &resolved);
        let acl = match &self.pbx_networks {
            Some(acl) => {
                // A configured list that leaves out an Asterisk would refuse its requests and drop its answers.
                let outside: Vec<ipnet::IpNet> =
                    targets.nets().iter().filter(|n| !acl.contains(n.addr())).copied().collect();
                if let Ok(mut warned) = self.uncovered_targets.lock() {
                    if !outside.is_empty() && *warned != outside {
                        tracing::warn!(targets = ?outside, "SIP edge: Asterisk targets outside sip_pbx_networks; their requests and responses are refused");
                    }
                    *warned = outside;
                }
                acl.clone()
            }
            None => targets,
        };
        if self.proxy().pbx_acl.as_ref() != Some(&acl) {
            tracing::info!(networks = ?acl.nets(), "SIP edge: PBX side accepted from these networks");
            let mut cfg = (*self.proxy()).clone();
            cfg.pbx_acl = Some(acl);
            if let Ok(mut w) = self.proxy.write() {
                *w = Arc::new(cfg);
            }
        }
        if let Ok(mut w) = self.phones.write() {
            *w = Arc::new(map);
        }
    }

    /// Resolves target host names not resolved yet (IP literals need nothing); a name that does not
    /// resolve is logged once and retried on reload.
    async fn resolve_targets(&self, hosts: &[(String, u16)]) {
        for (host, port) in hosts {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<IpAddr>().is_ok() || self.resolved.lock().map(|r| r.contains_key(host)).unwrap_or(true) {
                continue;
            }
            let ips: Vec<IpAddr> = match tokio::net::lookup_host((bare, *port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "SIP edge: cannot resolve an Asterisk target; not accepted on the PBX side until SIGHUP");
                    Vec::new()
                }
            };
            if let Ok(mut r) = self.resolved.lock() {
                r.insert(host.clone(), ips);
            }
        }
    }

    fn proxy(&self) -> Arc<EdgeConfig> {
        self.proxy.read().map(|p| p.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn phones(&self) -> Arc<HashMap<String, PhoneEntry>> {
        self.phones.read().map(|p| p.clone()).unwrap_or_default()
    }

    // ------------------------------------------------------------------ listeners

    /// Accepts the next connection, pausing after resource errors (see [`accept_error_pause`]) and
    /// logging the first error of a run of them only.
    async fn accept_next(&self, listener: &TcpListener, failures: &mut u64) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => {
                    if *failures > 0 {
                        tracing::info!(failures = *failures, "SIP edge: accepting connections again");
                        *failures = 0;
                    }
                    return accepted;
                }
                Err(e) => {
                    let pause = accept_error_pause(&e);
                    if pause.is_some() {
                        if *failures == 0 {
                            tracing::warn!(error = %e, "SIP edge: cannot accept connections; retrying every second");
                        }
                        *failures += 1;
                    }
                    if let Some(pause) = pause {
                        let mut stop = self.stop.clone();
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => {}
                        }
                    }
                }
            }
        }
    }

    /// Closes a connection at once (RST, no TIME_WAIT kept here), counted and logged at most once per
    /// [`REFUSED_LOG_EVERY`].
    fn refuse_connection(&self, tcp: TcpStream, remote: SocketAddr, reason: &'static str) {
        // Counted before the close, so whoever sees the close also sees the count.
        self.metrics.sip_connections_refused.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        drop(tcp);
        if let Some(suppressed) = self.refused_log.allow(tokio::time::Instant::now().into_std()) {
            tracing::warn!(%remote, reason, suppressed, "SIP edge: connection refused (further ones are counted in wabridge_sip_connections_refused_total)");
        }
    }

    async fn accept_tls(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        let mut failures = 0;
        loop {
            let (tcp, remote) = self.accept_next(&listener, &mut failures).await;
            // Trust is decided by the source address, before any handshake or read.
            if !self.acl.contains(remote.ip()) {
                self.refuse_connection(tcp, remote, "untrusted");
                continue;
            }
            let Some(guard) = self.admit(remote.ip()) else {
                self.refuse_connection(tcp, remote, "per_source_limit");
                continue;
            };
            let (me, acceptor) = (self.clone(), acceptor.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(me.handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => me.clone().run_stream(tls, remote, Transport::Tls, Side::Meta).await,
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "SIP edge: TLS handshake failed"),
                    Err(_) => tracing::info!(%remote, "SIP edge: TLS handshake timed out"),
                }
                drop(guard);
            });
        }
    }

    async fn accept_tcp(self: Arc<Self>, listener: TcpListener) {
        let mut failures = 0;
        loop {
            let (tcp, remote) = self.accept_next(&listener, &mut failures).await;
            if !self.proxy().pbx_acl.as_ref().is_some_and(|acl| acl.contains(remote.ip())) {
                self.refuse_connection(tcp, remote, "not_pbx");
                continue;
            }
            let Some(guard) = self.admit(remote.ip()) else {
                self.refuse_connection(tcp, remote, "per_source_limit");
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                me.run_stream(tcp, remote, Transport::Tcp, Side::Pbx).await;
                drop(guard);
            });
        }
    }

    async fn recv_udp(self: Arc<Self>, sock: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65_536];
        let mut failures = 0u64;
        loop {
            let (n, remote) = match sock.recv_from(&mut buf).await {
                Ok(received) => {
                    failures = 0;
                    received
                }
                Err(e) => {
                    if let Some(pause) = accept_error_pause(&e) {
                        if failures == 0 {
                            tracing::warn!(error = %e, "SIP edge: cannot receive on the UDP socket; retrying every second");
                        }
                        failures += 1;
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
            };
            let bytes = buf[..n].to_vec();
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            self.handle(&bytes, Route::Udp(remote), remote, Transport::Udp, Side::Pbx).await;
        }
    }

    /// Per-source connection limit; the guard gives the slot back when dropped.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceGuard> {
        let mut m = self.per_source.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= self.config.sip_max_connections_per_source {
            return None;
        }
        *n += 1;
        Some(SourceGuard { inner: self.clone(), ip })
    }

    /// Reads framed messages from a stream until it closes, idles out, or sends something unframeable.
    /// Registers a connection (so responses and requests can be routed to it at once) and returns its id and
    /// the receiving end of its write queue.
    fn register(&self, transport: Transport, remote: SocketAddr) -> (u64, mpsc::Receiver<Vec<u8>>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        if let Ok(mut c) = self.conns.lock() {
            c.insert(id, Conn { tx });
        }
        if let Ok(mut r) = self.by_remote.lock() {
            r.insert((transport, remote), id);
        }
        (id, rx)
    }

    /// Registers the stream and serves it. Boxed with an explicit `Send` so the recursion (a message on one
    /// stream may open another) type-checks.
    fn run_stream<S>(self: Arc<Self>, stream: S, remote: SocketAddr, transport: Transport, side: Side) -> StreamFuture
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (id, rx) = self.register(transport, remote);
        Box::pin(self.stream_loop(stream, remote, transport, side, id, rx))
    }

    async fn stream_loop<S>(
        self: Arc<Self>,
        stream: S,
        remote: SocketAddr,
        transport: Transport,
        side: Side,
        id: u64,
        mut rx: mpsc::Receiver<Vec<u8>>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let writer_task = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        // Small and lazily grown so that an idle connection costs little: `buf` holds no memory until bytes
        // arrive and gives a large allocation back once drained; `chunk` is one read's worth.
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 2 * 1024];
        let mut stop = self.stop.clone();
        'read: loop {
            let n = tokio::select! {
                r = tokio::time::timeout(self.idle, reader.read(&mut chunk)) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break 'read,
                    Ok(Ok(n)) => n,
                },
                _ = stop.changed() => break 'read,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match next_frame(&buf) {
                    Ok(Frame::Incomplete) => break,
                    Ok(Frame::KeepAlive { skip, pong }) => {
                        buf.drain(..skip);
                        if pong {
                            self.send(Route::Conn(id), b"\r\n".to_vec()).await;
                        }
                    }
                    Ok(Frame::Message { len }) => {
                        let msg: Vec<u8> = buf.drain(..len).collect();
                        self.handle(&msg, Route::Conn(id), remote, transport, side).await;
                    }
                    Err(e) => {
                        tracing::info!(%remote, error = %e, "SIP edge: unframeable input; closing the connection");
                        if let Some(resp) = message::bad_request_for(&buf) {
                            self.send(Route::Conn(id), response_bytes(&resp)).await;
                        }
                        break 'read;
                    }
                }
            }
            if buf.is_empty() && buf.capacity() > 8192 {
                buf = Vec::new();
            }
        }
        if let Ok(mut c) = self.conns.lock() {
            c.remove(&id);
        }
        if let Ok(mut r) = self.by_remote.lock() {
            if r.get(&(transport, remote)) == Some(&id) {
                r.remove(&(transport, remote));
            }
        }
        let _ = writer_task.await;
    }

    // ------------------------------------------------------------------ sending

    async fn send(&self, route: Route, bytes: Vec<u8>) -> bool {
        match route {
            Route::Udp(addr) => match &self.udp {
                Some(u) => u.send_to(&bytes, addr).await.is_ok(),
                None => false,
            },
            Route::Conn(id) => {
                let tx = self.conns.lock().ok().and_then(|c| c.get(&id).map(|c| c.tx.clone()));
                match tx {
                    Some(tx) => tx.send(bytes).await.is_ok(),
                    None => false,
                }
            }
        }
    }

    async fn resolve(&self, hop: &NextHop) -> Option<SocketAddr> {
        if hop.transport == Transport::Tls && addr_is_meta(self, hop) {
            if let Some(a) = self.meta_address {
                return Some(a);
            }
        }
        if let Ok(ip) = hop.host.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, hop.port));
        }
        tokio::net::lookup_host((hop.host.as_str(), hop.port)).await.ok()?.next()
    }

    /// The route toward a next hop: UDP datagrams, or an existing/new TCP or TLS connection.
    async fn route_to(self: &Arc<Self>, hop: &NextHop) -> Result<Route, String> {
        let addr = self.resolve(hop).await.ok_or_else(|| format!("cannot resolve {}", hop.host))?;
        match hop.transport {
            Transport::Udp => Ok(Route::Udp(addr)),
            transport => {
                if let Some(id) = self.by_remote.lock().ok().and_then(|r| r.get(&(transport, addr)).copied()) {
                    return Ok(Route::Conn(id));
                }
                let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                    .await
                    .map_err(|_| format!("connecting to {addr} timed out"))?
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let side = if transport == Transport::Tls && addr_is_meta(self, hop) { Side::Meta } else { Side::Pbx };
                let stream: StreamFuture = if transport == Transport::Tls {
                    let name = ServerName::try_from(hop.host.clone()).map_err(|e| format!("bad TLS name: {e}"))?;
                    let tls = tokio::time::timeout(self.handshake, self.tls_client.connect(name, tcp))
                        .await
                        .map_err(|_| format!("TLS handshake with {addr} timed out"))?
                        .map_err(|e| format!("TLS with {addr}: {e}"))?;
                    self.clone().run_stream(tls, addr, Transport::Tls, side)
                } else {
                    self.clone().run_stream(tcp, addr, Transport::Tcp, side)
                };
                // run_stream registered the connection before returning: it is routable now.
                let id = self.by_remote.lock().ok().and_then(|r| r.get(&(transport, addr)).copied());
                tokio::spawn(stream);
                id.map(Route::Conn).ok_or_else(|| format!("connection to {addr} could not be registered"))
            }
        }
    }

    // ------------------------------------------------------------------ messages

    async fn handle(self: &Arc<Self>, bytes: &[u8], from: Route, remote: SocketAddr, transport: Transport, side: Side) {
        match message::parse(bytes) {
            Err(e) => {
                tracing::debug!(%remote, error = %e, "SIP edge: unparsable message");
                if let Some(resp) = message::bad_request_for(bytes) {
                    self.send(from, response_bytes(&resp)).await;
                }
            }
            Ok(SipMessage::Request(req)) => self.on_request(req, from, remote, transport, side).await,
            Ok(SipMessage::Response(_))
                if side == Side::Pbx && !self.proxy().pbx_acl.as_ref().is_some_and(|a| a.contains(remote.ip())) =>
            {
                tracing::debug!(%remote, "SIP edge: response from outside sip_pbx_networks dropped");
            }
            Ok(SipMessage::Response(resp)) => self.on_response(resp).await,
        }
    }

    async fn on_request(
        self: &Arc<Self>,
        req: Request,
        from: Route,
        remote: SocketAddr,
        transport: Transport,
        side: Side,
    ) {
        let method = req.method;
        if method == Method::Ack && self.absorb_ack(&req, from).await {
            return; // the ACK for a non-2xx answer ends at its server transaction
        }
        let initial_invite = method == Method::Invite && message::to_tag(&req.headers).is_none();
        let call_key = call_id_key(&req);
        let duration = call_duration_secs(&req);
        let caller = header_value(&req.headers, "from").and_then(user_of);
        let callee = crate::sip::uri::business_number(&req.uri).or_else(|| Some(req.uri.to_string()));
        let phones = self.phones();
        let lookup = |n: &str| phones.get(n).map(|e| e.target.clone());
        let source = Source { addr: remote, transport, side };
        let now = (now_ms() / 1000) as u64;
        let proxy_cfg = self.proxy();
        let decisions = proxy::decide_request(req, &source, &proxy_cfg, &lookup, &self.acl, &self.digest, now);
        for d in decisions {
            match d {
                Decision::Respond(resp) => {
                    let code = resp.status_code.code();
                    if initial_invite && code >= 300 && code != 401 && code != 407 {
                        self.count("refused");
                    }
                    self.send(from, response_bytes(&resp)).await;
                }
                Decision::Drop { reason } => tracing::debug!(%remote, reason, "SIP edge: dropped"),
                Decision::Forward { request, next_hop, branch } => {
                    if initial_invite {
                        let (direction, number) = match side {
                            Side::Meta => ("inbound", callee.clone()),
                            Side::Pbx => ("outbound", caller.clone()),
                        };
                        let phone_id = number.as_deref().and_then(|n| phones.get(n)).map(|e| e.id);
                        let call = NewCall {
                            call_key: call_key.clone(),
                            sip_call_id: message::call_id(&request.headers).unwrap_or_default().to_string(),
                            phone_id,
                            direction: direction.into(),
                            caller: caller.clone(),
                            callee: callee.clone(),
                            invited_at: now_ms(),
                        };
                        let _ = self.records.send(CallEvent::Started(call));
                    }
                    if method == Method::Bye {
                        let call_id = message::call_id(&request.headers).unwrap_or_default().to_string();
                        self.call_ended(&call_key, &call_id, side, duration);
                    }
                    self.forward(request, next_hop, branch, from).await;
                }
            }
        }
    }

    async fn forward(self: &Arc<Self>, request: Request, hop: NextHop, branch: String, from: Route) {
        let method = request.method;
        let bytes = request_bytes(&request);
        if method == Method::Ack {
            if let Ok(route) = self.route_to(&hop).await {
                self.send(route, bytes).await;
            }
            return;
        }
        let key = TransactionKey::client(&branch, &method.to_string());
        let now = self.now();
        // A retransmission from upstream: the server transaction answers it; nothing is forwarded again.
        let retransmission = self.txns.lock().ok().and_then(|mut t| {
            let txn = t.get_mut(&key)?;
            let answers = match txn.server.as_mut() {
                Some(server) => server.handle(ServerEvent::Retransmission, now),
                None => Vec::new(),
            };
            Some(answers)
        });
        if let Some(answers) = retransmission {
            for action in answers {
                if let ServerAction::SendResponse(resp) = action {
                    self.send(from, resp).await;
                }
            }
            return;
        }
        let reliable_upstream = !matches!(from, Route::Udp(_));
        let server = match method {
            // The CANCEL was answered by the proxy decision already; its own branch ends at the edge.
            Method::Cancel => None,
            Method::Invite => Some(ServerTxn::Invite(ServerInvite::new(self.timers, reliable_upstream))),
            _ => Some(ServerTxn::NonInvite(ServerNonInvite::new(self.timers, reliable_upstream))),
        };
        let txn = Txn {
            upstream: Some(from),
            server,
            client: None,
            forwarded: request,
            bytes,
            next_hop: hop.clone(),
            route: None,
        };
        if let Ok(mut t) = self.txns.lock() {
            t.insert(key.clone(), txn);
        }
        match self.route_to(&hop).await {
            Ok(route) => self.launch(&key, route).await,
            Err(e) => {
                tracing::info!(error = %e, "SIP edge: next hop unreachable; answering 503");
                self.step(&key, |txn, cfg, now, effects| {
                    txn.apply_client(&key, vec![ClientAction::Fail(503)], None, cfg, now, effects)
                })
                .await;
            }
        }
    }

    /// Starts the client transaction of `key` (already in the table) over `route`: sends the request and
    /// arms its timers. A send that fails is a transport error (503 upstream).
    async fn launch(self: &Arc<Self>, key: &TransactionKey, route: Route) {
        let now = self.now();
        let reliable = !matches!(route, Route::Udp(_));
        let started = self.txns.lock().ok().and_then(|mut t| {
            let txn = t.get_mut(key)?;
            // An INVITE client transaction (with timer C) for a forwarded INVITE; the edge's own CANCEL (no
            // server side, `forwarded` is its INVITE) and everything else are non-INVITE ones.
            let (client, actions) = if txn.forwarded.method == Method::Invite && txn.server.is_some() {
                let (m, a) = ClientInvite::start(self.timers, reliable, true, now);
                (ClientTxn::Invite(m), a)
            } else {
                let (m, a) = ClientNonInvite::start(self.timers, reliable, now);
                (ClientTxn::NonInvite(m), a)
            };
            txn.client = Some(client);
            txn.route = Some(route);
            let mut effects = Vec::new();
            // The first send is made below, where its failure can be told to the machine.
            let actions = actions.into_iter().filter(|a| *a != ClientAction::SendRequest).collect();
            txn.apply_client(key, actions, None, &self.proxy(), now, &mut effects);
            Some((txn.bytes.clone(), effects))
        });
        let Some((bytes, effects)) = started else { return };
        if !self.send(route, bytes).await {
            self.step(key, |txn, cfg, now, effects| {
                let actions =
                    txn.client.as_mut().map(|c| c.handle(ClientEvent::TransportError, now)).unwrap_or_default();
                txn.apply_client(key, actions, None, cfg, now, effects)
            })
            .await;
            return;
        }
        self.run(effects).await;
    }

    /// Runs `f` on the transaction `key` (if it still exists) under the table's lock, forgets the
    /// transaction when both its machines are over, then carries out the effects. False when there
    /// was no such transaction.
    async fn step(
        self: &Arc<Self>,
        key: &TransactionKey,
        f: impl FnOnce(&mut Txn, &EdgeConfig, Time, &mut Vec<Effect>),
    ) -> bool {
        let now = self.now();
        let cfg = self.proxy();
        let mut effects = Vec::new();
        let found = match self.txns.lock() {
            Ok(mut t) => match t.get_mut(key) {
                Some(txn) => {
                    f(txn, &cfg, now, &mut effects);
                    if txn.is_over() {
                        t.remove(key);
                    }
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        self.run(effects).await;
        found
    }

    /// Carries out what the machines asked for.
    async fn run(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(route, bytes) => {
                    self.send(route, bytes).await;
                }
                Effect::SendToward(hop, bytes) => {
                    if let Ok(route) = self.route_to(&hop).await {
                        self.send(route, bytes).await;
                    }
                }
                Effect::CallFinal(call_key, code) => self.call_final(&call_key, code),
                Effect::Cancel { key, invite, hop } => self.clone().start_cancel(key, *invite, hop).await,
                Effect::Arm(key, machine, kind, at) => self.arm(key, machine, kind, at),
                Effect::Log(message) => tracing::info!("SIP edge: {message}"),
            }
        }
    }

    /// Delivers `kind` to the transaction's machine at `at` (unless the edge stops first).
    fn arm(self: &Arc<Self>, key: TransactionKey, machine: Machine, kind: TimerKind, at: Time) {
        let me = self.clone();
        let deadline = self.epoch + at.since_origin();
        tokio::spawn(async move {
            let mut stop = me.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => return,
            }
            me.step(&key, |txn, cfg, now, effects| match machine {
                Machine::Client => {
                    let actions =
                        txn.client.as_mut().map(|c| c.handle(ClientEvent::Timer(kind), now)).unwrap_or_default();
                    if kind == TimerKind::C && actions.contains(&ClientAction::Fail(408)) {
                        effects.push(Effect::Log("timer C fired; INVITE cancelled and answered 408"));
                    }
                    txn.apply_client(&key, actions, None, cfg, now, effects);
                }
                Machine::Server => {
                    let actions =
                        txn.server.as_mut().map(|s| s.handle(ServerEvent::Timer(kind), now)).unwrap_or_default();
                    txn.apply_server(&key, actions, effects);
                }
            })
            .await;
        });
    }

    /// Timer C after a provisional answer: our own CANCEL on the INVITE's branch, a client transaction
    /// of its own (retransmitted on timer E over UDP until answered or timer F).
    /// Boxed with an explicit `Send`: it starts a transaction, which may start another.
    fn start_cancel(self: Arc<Self>, key: TransactionKey, invite: Request, hop: NextHop) -> StreamFuture {
        Box::pin(async move {
            if self.txns.lock().map(|t| t.contains_key(&key)).unwrap_or(true) {
                return; // a CANCEL of this branch is under way already
            }
            let Ok(route) = self.route_to(&hop).await else { return };
            let bytes = hop_request(&invite, "CANCEL", header_value(&invite.headers, "to").unwrap_or_default());
            let txn = Txn {
                upstream: None,
                server: None,
                client: None,
                forwarded: invite,
                bytes,
                next_hop: hop,
                route: None,
            };
            if let Ok(mut t) = self.txns.lock() {
                t.insert(key.clone(), txn);
            }
            self.launch(&key, route).await;
        })
    }

    /// An ACK on the branch of an INVITE the edge forwarded, from where the INVITE came: the server
    /// transaction takes the ACK for a non-2xx answer (true: absorbed); any other goes on.
    async fn absorb_ack(self: &Arc<Self>, ack: &Request, from: Route) -> bool {
        let key = TransactionKey::client(&proxy::forwarded_branch(&self.proxy(), ack), "INVITE");
        let mut absorbed = false;
        self.step(&key, |txn, _, now, effects| {
            if txn.upstream != Some(from) {
                return;
            }
            let Some(server) = txn.server.as_mut() else { return };
            let actions = server.handle(ServerEvent::Ack, now);
            absorbed = !actions.contains(&ServerAction::PassUp);
            txn.apply_server(&key, actions, effects);
        })
        .await;
        absorbed
    }

    async fn on_response(self: &Arc<Self>, resp: rsip::Response) {
        let code = resp.status_code.code();
        let method = cseq(&resp.headers).map(|(_, m)| m.to_string()).unwrap_or_default();
        let to = header_value(&resp.headers, "to").map(str::to_string);
        let (branch, relay) = match proxy::decide_response(resp, &self.proxy()) {
            ResponseDecision::Drop { reason } => {
                tracing::debug!(reason, "SIP edge: response dropped");
                return;
            }
            ResponseDecision::Absorb { branch, .. } => (branch, None),
            ResponseDecision::Forward { response, next_hop, branch } => {
                (branch, Some((response_bytes(&response), next_hop)))
            }
        };
        let key = TransactionKey::client(&branch, &method);
        let bytes = relay.as_ref().map(|(b, _)| b.clone());
        let found = self
            .step(&key, |txn, cfg, now, effects| {
                let Some(client) = txn.client.as_mut() else { return };
                let actions = client.handle(ClientEvent::Response(code), now);
                let response = Received { code, bytes, to: to.as_deref() };
                txn.apply_client(&key, actions, Some(response), cfg, now, effects);
            })
            .await;
        if found {
            return;
        }
        // No transaction (a retransmitted 2xx after it ended): route by the Via. Anything else came after
        // the final answer and is not relayed.
        if let Some((bytes, next_hop)) = relay {
            if (200..300).contains(&code) {
                if let Some(up) = self.route_for_response(&next_hop).await {
                    self.send(up, bytes).await;
                }
            }
        }
    }

    async fn route_for_response(&self, hop: &NextHop) -> Option<Route> {
        let addr = self.resolve(hop).await?;
        match hop.transport {
            Transport::Udp => Some(Route::Udp(addr)),
            t => self.by_remote.lock().ok()?.get(&(t, addr)).map(|id| Route::Conn(*id)),
        }
    }

    fn now(&self) -> Time {
        Time::after(self.epoch.elapsed())
    }

    // ------------------------------------------------------------------ call records and metrics

    fn count(&self, outcome: &str) {
        self.metrics.calls.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    fn call_final(self: &Arc<Self>, call_key: &str, code: u16) {
        // `call_key` is Meta's call id when known; BYEs from the PBX are matched by Call-ID (see call_ended).
        let outcome = match code {
            200..=299 => "answered",
            486 | 600 => "busy",
            603 => "declined",
            487 => "cancelled",
            404 | 484 | 604 => "not_found",
            408 | 480 => "no_answer",
            _ => "failed",
        };
        if (200..300).contains(&code) {
            if let Ok(mut a) = self.active_calls.lock() {
                if a.insert(call_key.to_string()) {
                    self.metrics.calls_active.inc();
                }
            }
        }
        self.count(outcome);
        let _ = self.records.send(CallEvent::Final { key: call_key.to_string(), code, at: now_ms() });
    }

    fn call_ended(self: &Arc<Self>, call_key: &str, call_id: &str, side: Side, duration: Option<u64>) {
        if let Ok(mut a) = self.active_calls.lock() {
            if a.remove(call_key) || a.remove(call_id) {
                self.metrics.calls_active.dec();
            }
        }
        let by = match side {
            Side::Meta => "whatsapp_user",
            Side::Pbx => "business",
        };
        let _ = self.records.send(CallEvent::Ended {
            key: call_key.to_string(),
            call_id: call_id.to_string(),
            by,
            duration: duration.map(|d| d as i64),
            at: now_ms(),
        });
    }
}

fn addr_is_meta(inner: &Inner, hop: &NextHop) -> bool {
    inner.proxy().meta_domains.iter().any(|d| hop.host.ends_with(d.as_str()))
}

/// The default PBX networks: each target host's address (IP literals as they are, names as
/// resolved), one host prefix each.
fn pbx_acl_of<'a>(hosts: impl Iterator<Item = &'a str>, resolved: &HashMap<String, Vec<IpAddr>>) -> Acl {
    let mut nets: Vec<ipnet::IpNet> = Vec::new();
    for host in hosts {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ips = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => resolved.get(host).cloned().unwrap_or_default(),
        };
        for ip in ips {
            let net = ipnet::IpNet::from(crate::sip::acl::canonical_ip(ip));
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    nets.sort();
    Acl::new(nets)
}

/// What an accept (or UDP receive) loop does after an error: errors of one connection (the peer
/// went away before we took it) are retried at once; anything else, above all the per-process
/// resource errors (EMFILE, ENFILE, ENOBUFS, ENOMEM), would fail again at once, so the loop pauses
/// a second first, as hyper's and axum's `serve` do.
fn accept_error_pause(e: &std::io::Error) -> Option<Duration> {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock => None,
        _ => Some(Duration::from_secs(1)),
    }
}

/// How often the WARN about refused connections may be written.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// At most one log line per `every`; counts the ones it held back.
struct LogLimiter {
    every: Duration,
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogLimiter {
    fn new(every: Duration) -> Self {
        LogLimiter { every, state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed since the last line)` when a line may be written at `now`.
    fn allow(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|l| now.saturating_duration_since(l) < self.every) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

type StreamFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

struct SourceGuard {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.inner.per_source.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// `"name" <sip:+123@host>;tag=x` → `+123` (the user part), when there is one.
fn user_of(name_addr: &str) -> Option<String> {
    let (uri, _) = message::name_addr(name_addr)?;
    let rest = uri.split_once(':')?.1;
    let user = rest.split_once('@')?.0;
    Some(user.split(';').next().unwrap_or(user).to_string())
}

/// A request on an INVITE's branch that the edge sends itself (RFC 3261 §17.1.1.3, §9.1): the ACK for a
/// non-2xx final response (`to` from the response) or a CANCEL (`to` from the INVITE).
fn hop_request(invite: &Request, method: &str, to: &str) -> Vec<u8> {
    let mut out = format!("{method} {} SIP/2.0\r\n", invite.uri);
    if let Some(via) = header_elements(&invite.headers, "via").first() {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for route in header_values(&invite.headers, "route") {
        out.push_str(&format!("Route: {route}\r\n"));
    }
    if let Some(from) = header_value(&invite.headers, "from") {
        out.push_str(&format!("From: {from}\r\n"));
    }
    out.push_str(&format!("To: {to}\r\n"));
    if let Some(cid) = header_value(&invite.headers, "call-id") {
        out.push_str(&format!("Call-ID: {cid}\r\n"));
    }
    let n = cseq(&invite.headers).map(|(n, _)| n).unwrap_or(1);
    out.push_str(&format!("CSeq: {n} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (flaky `sip_edge::answered_call_meta_hangs_up` under load): the call's answer was recorded
    /// after the 200 had gone up to Meta, so Meta's BYE, handled on another task, could be recorded first: the
    /// record ended without its final status and `wabridge_calls_active` stayed at 1. The answer is recorded
    /// first now.
    #[test]
    fn the_answer_is_recorded_before_it_goes_up() {
        let Ok(SipMessage::Request(invite)) = crate::sip::message::parse(&crate::sip::testdata::meta_invite()) else {
            panic!("the test INVITE parses");
        };
        let mut txn = Txn {
            upstream: Some(Route::Conn(1)),
            server: Some(ServerTxn::Invite(ServerInvite::new(Timers::default(), true))),
            client: None,
            forwarded: invite,
            bytes: Vec::new(),
            next_hop: NextHop { transport: Transport::Udp, host: "127.0.0.1".into(), port: 5060 },
            route: None,
        };
        let key = TransactionKey::client("z9hG4bK-test", "INVITE");
        let mut effects = Vec::new();
        txn.respond_upstream(&key, 200, b"SIP/2.0 200 OK\r\n\r\n".to_vec(), Time::ZERO, &mut effects);
        let call_final = effects.iter().position(|e| matches!(e, Effect::CallFinal(_, 200)));
        let sent_up = effects.iter().position(|e| matches!(e, Effect::Send(Route::Conn(1), _)));
        assert!(call_final.is_some() && sent_up.is_some(), "both effects");
        assert!(call_final < sent_up, "the answer is recorded before the 200 goes up");
    }

    #[test]
    fn resource_errors_pause_the_accept_loop_and_connection_errors_do_not() {
        for errno in [24 /* EMFILE */, 23 /* ENFILE */, 105 /* ENOBUFS */, 12 /* ENOMEM */] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(accept_error_pause(&e), Some(Duration::from_secs(1)), "{e}");
        }
        for kind in [
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::Interrupted,
        ] {
            assert_eq!(accept_error_pause(&std::io::Error::from(kind)), None, "{kind:?}");
        }
    }

    #[test]
    fn refused_connection_warnings_are_rate_limited() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = std::time::Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(limiter.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            limiter.allow(t0 + Duration::from_secs(10)),
            Some(500),
            "the next line says how many were held back"
        );
        assert_eq!(limiter.allow(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn default_pbx_networks_are_the_target_addresses() {
        let mut resolved = HashMap::new();
        resolved
            .insert("asterisk.lan".to_string(), vec!["10.0.0.7".parse().unwrap(), "::ffff:10.0.0.8".parse().unwrap()]);
        resolved.insert("gone.lan".to_string(), Vec::new());
        let acl =
            pbx_acl_of(["10.0.0.5", "asterisk.lan", "2001:db8::5", "10.0.0.5", "gone.lan"].into_iter(), &resolved);
        let nets: Vec<String> = acl.nets().iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.5/32", "10.0.0.7/32", "10.0.0.8/32", "2001:db8::5/128"]);
        assert!(!acl.contains("10.0.0.6".parse().unwrap()));
        assert!(pbx_acl_of(std::iter::empty(), &resolved).nets().is_empty(), "no target: nobody");
    }
}
