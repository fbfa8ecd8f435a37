//! The edge's decisions: what to do with each request and response (RFC 3261 §16 proxy rules).
//!
//! The edge is a record-routing proxy between Meta (TLS) and the business's Asterisk. The caller
//! owns sockets, TLS, DNS and the transaction layer; it hands every parsed message to
//! [`decide_request`] / [`decide_response`] and carries out the returned decisions:
//!
//! - [`Decision::Respond`]: send the response back to the request's source (the top Via already
//!   carries `received`/`rport` for it).
//! - [`Decision::Forward`]: send the request to `next_hop` (resolve the host when it is a name). Our
//!   Via (with `branch`) is already on top; create the client transaction under `branch`. A
//!   forwarded CANCEL reuses the branch of the INVITE it cancels: pair it with that INVITE's client
//!   transaction, and skip it if no such transaction is pending.
//! - [`Decision::Drop`]: do nothing (log `reason`).
//!
//! No state is kept here: forwarded branches and locally generated To tags are HMACs of the
//! incoming message under [`EdgeConfig::branch_secret`], so a CANCEL maps to the same branch as its
//! INVITE and responses can be checked to belong to requests we forwarded.
//!
//! Never an open relay: Meta-side requests must come from the Meta ACL and PBX-side requests from
//! the PBX ACL; initial INVITEs from Meta only reach a configured phone's Asterisk; initial INVITEs
//! from the PBX only reach Meta's domains and only from a configured business number. In-dialog
//! requests are relayed only along a dialog the edge set up: our Record-Route entries carry the
//! dialog's PBX peer (the phone's Asterisk target) authenticated by an HMAC over the Call-ID
//! ([`DIALOG_PARAM`]), so an in-dialog request toward the PBX goes to that peer whatever its
//! Request-URI or Route say, one toward Meta only to Meta, and one without a valid token gets 403.
//! Strict routing (a next Route without `lr`) is not supported: such a Route is treated as loose.

use std::net::{IpAddr, SocketAddr};

use rsip::headers::{self as h, UntypedHeader};
use rsip::{Header, Headers, Method, Request, Response, Version};
use subtle::ConstantTimeEq;

use super::acl::{canonical_ip, Acl};
use super::digest::{Challenger, DigestError};
use super::hmac_sha256;
use super::message::{
    call_id, cseq, from_tag, header_elements, header_value, header_values, name_addr, split_list, status, to_tag,
    top_via, ViaValue,
};
use super::uri::{business_number, e164_from_user, host_for_uri, host_key, split_host_port, SipUri};

/// Branches we create start with this (RFC 3261 magic cookie + `wab`), followed by 32 hex digits.
pub const BRANCH_PREFIX: &str = "z9hG4bKwab";
/// To tags we create start with this.
pub const LOCAL_TAG_PREFIX: &str = "wab";
/// URI parameter of our Record-Route entries: `hex(PBX peer) "-" hex(HMAC(secret, Call-ID, peer))`.
/// In-dialog requests must carry it back (RFC 3261 §12.1: the route set is copied verbatim).
pub const DIALOG_PARAM: &str = "wabd";
/// Methods the edge relays (Allow of its own responses).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, PRACK, UPDATE";

/// Which side a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Meta,
    Pbx,
}

impl Side {
    /// The opposite side.
    pub fn other(self) -> Side {
        match self {
            Side::Meta => Side::Pbx,
            Side::Pbx => Side::Meta,
        }
    }
}

/// Transport of a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Parses `udp` / `tcp` / `tls` (case-insensitive).
    pub fn from_token(token: &str) -> Option<Transport> {
        match token.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    /// Upper-case token as used in Via (`UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Lower-case token as used in URI `transport=` parameters (`udp`).
    pub fn param_token(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// 5061 for TLS, 5060 otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub side: Side,
}

/// The edge's own addresses and policy.
#[derive(Clone)]
pub struct EdgeConfig {
    /// Our `host:port` as Meta sees it (the hostname on the number's SIP settings, covered by our
    /// certificate), e.g. `sip.example.com:5061`. Used in Record-Route and Via toward Meta.
    pub meta_host_addr_for_record_route: String,
    /// Our `host:port` as the PBX sees it, e.g. `10.0.0.5:5060`.
    pub pbx_facing: String,
    /// Transport toward the PBX when a URI does not say.
    pub pbx_transport: Transport,
    /// Max-Forwards assumed when a request has none (RFC 3261 §16.6 step 3: 70).
    pub max_forwards_default: u8,
    /// Key for forwarded branches and local To tags. Every instance behind the same name must share it.
    pub branch_secret: [u8; 32],
    /// Other `host` or `host:port` names that mean us (public IP, other DNS names). Without a port,
    /// any port matches.
    pub local_aliases: Vec<String>,
    /// Meta's domains (suffix match): in-dialog requests from the PBX and initial INVITEs from the
    /// PBX may only go there (or to an address in the Meta ACL). Default `meta.vc`, `fbinfra.net`.
    pub meta_domains: Vec<String>,
    /// When set, PBX-side requests must come from these prefixes (the edge always sets it:
    /// `sip_pbx_networks`, by default the addresses of the configured Asterisk targets).
    pub pbx_acl: Option<Acl>,
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("meta_host_addr_for_record_route", &self.meta_host_addr_for_record_route)
            .field("pbx_facing", &self.pbx_facing)
            .field("pbx_transport", &self.pbx_transport)
            .field("max_forwards_default", &self.max_forwards_default)
            .field("local_aliases", &self.local_aliases)
            .field("meta_domains", &self.meta_domains)
            .field("pbx_acl", &self.pbx_acl)
            .finish_non_exhaustive()
    }
}

impl EdgeConfig {
    /// A configuration with the defaults: Max-Forwards 70, no aliases, Meta domains `meta.vc` and
    /// `fbinfra.net`, no PBX ACL.
    pub fn new(meta_facing: &str, pbx_facing: &str, pbx_transport: Transport, branch_secret: [u8; 32]) -> Self {
        EdgeConfig {
            meta_host_addr_for_record_route: meta_facing.to_string(),
            pbx_facing: pbx_facing.to_string(),
            pbx_transport,
            max_forwards_default: 70,
            branch_secret,
            local_aliases: Vec::new(),
            meta_domains: vec!["meta.vc".to_string(), "fbinfra.net".to_string()],
            pbx_acl: None,
        }
    }

    /// The host of [`EdgeConfig::meta_host_addr_for_record_route`] (the digest realm).
    pub fn sip_hostname(&self) -> String {
        split_host_port(&self.meta_host_addr_for_record_route)
            .map(|(host, _)| host)
            .unwrap_or_else(|| self.meta_host_addr_for_record_route.clone())
    }
}

/// A business phone with calling enabled, and where its Asterisk listens.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneTarget {
    /// E.164 with `+`.
    pub number: String,
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    /// `Some` => challenge Meta's INVITEs and check against this (Meta's `sip_user_password`).
    pub digest_password: Option<String>,
}

impl std::fmt::Debug for PhoneTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneTarget")
            .field("number", &self.number)
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("digest_password", &self.digest_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where to send something. `host` is an IP address (IPv6 without brackets) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer locally (send back to the source).
    Respond(Response),
    /// Relay `request` to `next_hop`; `branch` is the branch of our Via on top of it.
    Forward { request: Request, next_hop: NextHop, branch: String },
    /// Do nothing.
    Drop { reason: &'static str },
}

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Our Via was popped: send `response` to `next_hop` (over the request's connection for
    /// TCP/TLS when it is still open). `branch` identifies our client transaction.
    Forward { response: Response, next_hop: NextHop, branch: String },
    /// For our client transaction `branch` only, not to be relayed (100 Trying, or the response to
    /// a CANCEL the edge sent).
    Absorb { branch: String, reason: &'static str },
    /// Not a response to anything we sent.
    Drop { reason: &'static str },
}

/// The branch of our Via on a request we forward: `BRANCH_PREFIX ‖ hex(HMAC(secret, incoming top
/// Via branch, sent-by, Call-ID))[..32]`. A CANCEL carries its INVITE's top Via and Call-ID, so it
/// maps to the INVITE's forwarded branch without any state.
pub fn forward_branch(secret: &[u8; 32], incoming_branch: &str, sent_by: &str, call_id: &str) -> String {
    let sent_by = sent_by.to_ascii_lowercase();
    let mac = hmac_sha256(secret, &[b"branch", incoming_branch.as_bytes(), sent_by.as_bytes(), call_id.as_bytes()]);
    format!("{BRANCH_PREFIX}{}", hex::encode(mac.get(..16).unwrap_or_default()))
}

/// The branch the edge forwards `req` with ([`forward_branch`] of its top Via and Call-ID): the key of
/// the edge's transaction for it. A retransmission, the request's CANCEL and the ACK for a non-2xx
/// answer to it give the same branch.
pub fn forwarded_branch(cfg: &EdgeConfig, req: &Request) -> String {
    let incoming = top_via(&req.headers);
    forward_branch(
        &cfg.branch_secret,
        incoming.as_ref().map(ViaValue::branch).unwrap_or_default(),
        incoming.as_ref().map(|v| v.sent_by.as_str()).unwrap_or_default(),
        call_id(&req.headers).unwrap_or_default(),
    )
}

/// The To tag the edge puts on responses it generates for this request.
pub fn local_to_tag(cfg: &EdgeConfig, req: &Request) -> String {
    let via = top_via(&req.headers);
    let mac = hmac_sha256(
        &cfg.branch_secret,
        &[
            b"totag",
            call_id(&req.headers).unwrap_or_default().as_bytes(),
            from_tag(&req.headers).unwrap_or_default().as_bytes(),
            via.as_ref().map(ViaValue::branch).unwrap_or_default().as_bytes(),
        ],
    );
    format!("{LOCAL_TAG_PREFIX}{}", hex::encode(mac.get(..8).unwrap_or_default()))
}

enum Reject {
    Status(u16, Vec<Header>),
    Drop(&'static str),
}

fn reject(code: u16) -> Reject {
    Reject::Status(code, Vec::new())
}

/// Decides what to do with a request from `source`.
///
/// `lookup` maps a business number (`+E.164`) to its phone when calling is enabled; `trusted` is
/// Meta's source ACL; `digest` challenges INVITEs for phones with a digest password.
pub fn decide_request(
    mut req: Request,
    source: &Source,
    cfg: &EdgeConfig,
    lookup: &dyn Fn(&str) -> Option<PhoneTarget>,
    trusted: &Acl,
    digest: &Challenger,
    now_unix: u64,
) -> Vec<Decision> {
    let is_ack = req.method == Method::Ack;
    let result = if annotate_top_via(&mut req.headers, source) {
        decide_inner(&req, source, cfg, lookup, trusted, digest, now_unix)
    } else {
        Err(Reject::Drop("missing or unparsable top Via"))
    };
    let decisions = match result {
        Ok(decisions) => decisions,
        Err(Reject::Drop(reason)) => vec![Decision::Drop { reason }],
        Err(Reject::Status(code, extra)) => match local_response(&req, code, extra, cfg) {
            Some(resp) => vec![Decision::Respond(resp)],
            None => vec![Decision::Drop { reason: "cannot answer: Via, From, To, Call-ID or CSeq missing" }],
        },
    };
    if is_ack {
        // ACK is never answered (RFC 3261 §17): whatever would have been said is dropped.
        decisions
            .into_iter()
            .map(|d| match d {
                Decision::Respond(_) => Decision::Drop { reason: "ACK refused (ACK is never answered)" },
                other => other,
            })
            .collect()
    } else {
        decisions
    }
}

fn decide_inner(
    req: &Request,
    source: &Source,
    cfg: &EdgeConfig,
    lookup: &dyn Fn(&str) -> Option<PhoneTarget>,
    trusted: &Acl,
    digest: &Challenger,
    now_unix: u64,
) -> Result<Vec<Decision>, Reject> {
    let ip = canonical_ip(source.addr.ip());
    match source.side {
        Side::Meta if !trusted.contains(ip) => return Err(reject(403)),
        Side::Pbx if cfg.pbx_acl.as_ref().is_some_and(|acl| !acl.contains(ip)) => return Err(reject(403)),
        _ => {}
    }
    // Mandatory header fields (RFC 3261 §8.1.1, §16.3).
    call_id(&req.headers).ok_or(reject(400))?;
    let (_, cseq_method) = cseq(&req.headers).ok_or(reject(400))?;
    if cseq_method != req.method.to_string() {
        return Err(reject(400));
    }
    for name in ["from", "to"] {
        let value = header_value(&req.headers, name).ok_or(reject(400))?;
        let (uri, _) = name_addr(value).ok_or(reject(400))?;
        if uri.is_empty() {
            return Err(reject(400));
        }
    }
    if req.method == Method::Register {
        return Err(reject(403));
    }
    let ruri = SipUri::from_rsip(&req.uri).ok_or(reject(416))?;
    let tag = to_tag(&req.headers);

    // OPTIONS to the edge itself: health probe.
    if req.method == Method::Options
        && tag.is_none()
        && (source.side == Side::Pbx || ruri.user.is_none() || is_local_host(cfg, &ruri.host))
    {
        let extra = vec![Header::Allow(h::Allow::new(ALLOW)), Header::Accept(h::Accept::new("application/sdp"))];
        return Err(Reject::Status(200, extra));
    }

    // Max-Forwards (RFC 3261 §16.3 step 3, §16.6 step 3).
    let max_forwards = match header_value(&req.headers, "max-forwards") {
        None => u32::from(cfg.max_forwards_default),
        Some(v) => {
            let v = v.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(reject(400));
            }
            v.parse::<u32>().map_err(|_| reject(400))?
        }
    };
    if max_forwards == 0 {
        return Err(reject(483));
    }
    let max_forwards = max_forwards.min(256).saturating_sub(1);

    // Proxy-Require (RFC 3261 §16.3 step 5): we support no extension that needs proxy support.
    let required = header_elements(&req.headers, "proxy-require");
    if !required.is_empty() {
        let unsupported = Header::Unsupported(h::Unsupported::new(required.join(", ")));
        return Err(Reject::Status(420, vec![unsupported]));
    }

    let ctx = Ctx { req, source, cfg, trusted, max_forwards };

    if req.method == Method::Cancel {
        return cancel(&ctx, tag.is_some(), lookup);
    }
    if req.method == Method::Ack {
        if tag.is_none() {
            return Err(Reject::Drop("ACK without To tag (for a non-2xx: the transaction layer absorbs it)"));
        }
        if tag == Some(local_to_tag(cfg, req).as_str()) {
            return Err(Reject::Drop("ACK for a response the edge generated"));
        }
    }
    if tag.is_some() {
        let (out, hop, toward) = route_in_dialog(&ctx)?;
        return Ok(forward_with_trying(&ctx, out, hop, toward, None));
    }
    match (source.side, req.method) {
        (Side::Meta, Method::Invite) => {
            let (out, hop) = route_initial_from_meta(&ctx, &ruri, lookup, Some((digest, now_unix)))?;
            let peer = hop.clone();
            Ok(forward_with_trying(&ctx, out, hop, Side::Pbx, Some(&peer)))
        }
        (Side::Pbx, Method::Invite) => {
            let (out, hop, peer) = route_initial_from_pbx(&ctx, &ruri, lookup)?;
            Ok(forward_with_trying(&ctx, out, hop, Side::Meta, Some(&peer)))
        }
        (Side::Meta, _) if !(ruri.user.is_none() || is_local_host(cfg, &ruri.host)) => Err(reject(403)),
        (_, Method::Bye | Method::Info | Method::Notify | Method::PRack | Method::Update) => Err(reject(481)),
        _ => Err(Reject::Status(405, vec![Header::Allow(h::Allow::new(ALLOW))])),
    }
}

struct Ctx<'a> {
    req: &'a Request,
    source: &'a Source,
    cfg: &'a EdgeConfig,
    trusted: &'a Acl,
    max_forwards: u32,
}

fn cancel(
    ctx: &Ctx<'_>,
    in_dialog: bool,
    lookup: &dyn Fn(&str) -> Option<PhoneTarget>,
) -> Result<Vec<Decision>, Reject> {
    let ruri = SipUri::from_rsip(&ctx.req.uri).ok_or(reject(416))?;
    let routed = if in_dialog {
        route_in_dialog(ctx)
    } else {
        match ctx.source.side {
            Side::Meta => route_initial_from_meta(ctx, &ruri, lookup, None).map(|(r, hop)| (r, hop, Side::Pbx)),
            Side::Pbx => route_initial_from_pbx(ctx, &ruri, lookup).map(|(r, hop, _)| (r, hop, Side::Meta)),
        }
    };
    let (mut out, hop, toward) = routed.map_err(|_| reject(481))?;
    // Our CANCEL carries only our Via (RFC 3261 §9.1, §16.10): its 200 ends at the edge.
    out.headers.retain(|hd| !matches!(hd, Header::Via(_)));
    let ok = local_response(ctx.req, 200, Vec::new(), ctx.cfg)
        .ok_or(Reject::Drop("cannot answer: Via, From, To, Call-ID or CSeq missing"))?;
    let forward = forward(ctx, out, hop, toward, None);
    Ok(vec![Decision::Respond(ok), forward])
}

fn forward_with_trying(
    ctx: &Ctx<'_>,
    out: Request,
    hop: NextHop,
    toward: Side,
    record_route: Option<&NextHop>,
) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(2);
    if ctx.req.method == Method::Invite {
        if let Some(trying) = local_response(ctx.req, 100, Vec::new(), ctx.cfg) {
            decisions.push(Decision::Respond(trying));
        }
    }
    decisions.push(forward(ctx, out, hop, toward, record_route));
    decisions
}

/// Adds our Via, Max-Forwards, Record-Route (when `record_route` names the dialog's PBX peer) and
/// Content-Length to `out`.
fn forward(
    ctx: &Ctx<'_>,
    mut out: Request,
    next_hop: NextHop,
    toward: Side,
    record_route: Option<&NextHop>,
) -> Decision {
    let cfg = ctx.cfg;
    let branch = forwarded_branch(cfg, ctx.req);
    let sent_by = match toward {
        Side::Meta => &cfg.meta_host_addr_for_record_route,
        Side::Pbx => &cfg.pbx_facing,
    };
    let via = format!("SIP/2.0/{} {sent_by};branch={branch};rport", next_hop.transport.via_token());
    let mut headers: Vec<Header> = std::mem::take(&mut out.headers).into();
    headers.insert(0, Header::Via(h::Via::new(via)));

    let mf = Header::MaxForwards(h::MaxForwards::new(ctx.max_forwards.to_string()));
    match headers.iter().position(|hd| matches!(hd, Header::MaxForwards(_))) {
        Some(i) => {
            if let Some(slot) = headers.get_mut(i) {
                *slot = mf;
            }
            let mut seen = false;
            headers.retain(|hd| match hd {
                Header::MaxForwards(_) if seen => false,
                Header::MaxForwards(_) => {
                    seen = true;
                    true
                }
                _ => true,
            });
        }
        None => headers.insert(after_vias(&headers), mf),
    }

    if let Some(peer) = record_route {
        let pbx_transport = match toward {
            Side::Pbx => next_hop.transport,
            Side::Meta => ctx.source.transport,
        };
        let token = dialog_token(&cfg.branch_secret, call_id(&ctx.req.headers).unwrap_or_default(), peer);
        let at = headers.iter().position(|hd| matches!(hd, Header::RecordRoute(_))).unwrap_or(after_vias(&headers));
        let values = record_route_values(cfg, toward, pbx_transport, Some(&token));
        for (offset, value) in values.into_iter().enumerate() {
            headers.insert(at + offset, Header::RecordRoute(h::RecordRoute::new(value)));
        }
    }
    if !headers.iter().any(|hd| matches!(hd, Header::ContentLength(_))) {
        headers.push(Header::ContentLength(h::ContentLength::new(out.body.len().to_string())));
    }
    out.headers = headers.into();
    Decision::Forward { request: out, next_hop, branch }
}

fn after_vias(headers: &[Header]) -> usize {
    headers.iter().rposition(|hd| matches!(hd, Header::Via(_))).map_or(0, |i| i + 1)
}

/// Our Record-Route values, topmost first. One entry when Meta and the PBX are reached through the
/// same interface and transport; otherwise two (RFC 5658): the entry facing the next hop on top,
/// then the entry facing where the request came from. `dialog` (from [`dialog_token`]) is added to
/// each entry as [`DIALOG_PARAM`].
pub fn record_route_values(
    cfg: &EdgeConfig,
    toward: Side,
    pbx_transport: Transport,
    dialog: Option<&str>,
) -> Vec<String> {
    let token = dialog.map(|t| format!(";{DIALOG_PARAM}={t}")).unwrap_or_default();
    let meta = format!("<sip:{};transport=tls;lr{token}>", cfg.meta_host_addr_for_record_route);
    let pbx = format!("<sip:{};transport={};lr{token}>", cfg.pbx_facing, pbx_transport.param_token());
    let same = pbx_transport == Transport::Tls
        && addr_key(&cfg.meta_host_addr_for_record_route, Transport::Tls) == addr_key(&cfg.pbx_facing, Transport::Tls);
    match (same, toward) {
        (true, _) => vec![meta],
        (false, Side::Pbx) => vec![pbx, meta],
        (false, Side::Meta) => vec![meta, pbx],
    }
}

fn peer_text(peer: &NextHop) -> String {
    format!("{}|{}|{}", peer.transport.param_token(), peer.host, peer.port)
}

/// The [`DIALOG_PARAM`] value naming `peer` (the PBX side of the dialog) for the dialog `call_id`.
pub fn dialog_token(secret: &[u8; 32], call_id: &str, peer: &NextHop) -> String {
    let text = peer_text(peer);
    let mac = hmac_sha256(secret, &[b"dialog", call_id.as_bytes(), text.as_bytes()]);
    format!("{}-{}", hex::encode(text.as_bytes()), hex::encode(mac.get(..16).unwrap_or_default()))
}

/// The PBX peer named by a [`DIALOG_PARAM`] value, when its HMAC is right for `call_id`.
pub fn dialog_peer(secret: &[u8; 32], call_id: &str, token: &str) -> Option<NextHop> {
    let (text_hex, mac_hex) = token.split_once('-')?;
    if text_hex.len() > 600 {
        return None;
    }
    let text = String::from_utf8(hex::decode(text_hex).ok()?).ok()?;
    let mac = hmac_sha256(secret, &[b"dialog", call_id.as_bytes(), text.as_bytes()]);
    let expected = hex::encode(mac.get(..16).unwrap_or_default());
    if !bool::from(expected.as_bytes().ct_eq(mac_hex.to_ascii_lowercase().as_bytes())) {
        return None;
    }
    let mut parts = text.splitn(3, '|');
    let transport = Transport::from_token(parts.next()?)?;
    let host = parts.next()?.to_string();
    let port = parts.next()?.parse().ok()?;
    Some(NextHop { transport, host, port })
}

fn addr_key(host_port: &str, transport: Transport) -> Option<(String, u16)> {
    let (host, port) = split_host_port(host_port)?;
    Some((host_key(&host), port.unwrap_or(transport.default_port())))
}

/// Our addresses: `(host key, port or None for any)`.
fn our_addrs(cfg: &EdgeConfig) -> Vec<(String, Option<u16>)> {
    let mut out = Vec::with_capacity(2 + cfg.local_aliases.len());
    if let Some((host, port)) = addr_key(&cfg.meta_host_addr_for_record_route, Transport::Tls) {
        out.push((host, Some(port)));
    }
    if let Some((host, port)) = addr_key(&cfg.pbx_facing, cfg.pbx_transport) {
        out.push((host, Some(port)));
    }
    for alias in &cfg.local_aliases {
        if let Some((host, port)) = split_host_port(alias) {
            out.push((host_key(&host), port));
        }
    }
    out
}

fn is_local_host(cfg: &EdgeConfig, host: &str) -> bool {
    let key = host_key(host);
    our_addrs(cfg).iter().any(|(h, _)| *h == key)
}

fn is_local_addr(cfg: &EdgeConfig, host: &str, port: u16) -> bool {
    let key = host_key(host);
    our_addrs(cfg).iter().any(|(h, p)| *h == key && p.is_none_or(|p| p == port))
}

fn is_meta_host(cfg: &EdgeConfig, trusted: &Acl, host: &str) -> bool {
    let key = host_key(host);
    if let Ok(ip) = key.parse::<IpAddr>() {
        return trusted.contains(ip);
    }
    cfg.meta_domains.iter().any(|d| {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        key == d || key.strip_suffix(&d).is_some_and(|rest| rest.ends_with('.'))
    })
}

fn is_our_route(cfg: &EdgeConfig, element: &str) -> bool {
    let Some((uri, _)) = name_addr(element) else { return false };
    let Ok(uri) = SipUri::parse(uri) else { return false };
    let transport = if uri.sips { Some(Transport::Tls) } else { uri.transport_param() };
    let port = uri.port.unwrap_or(transport.unwrap_or(Transport::Udp).default_port());
    is_local_addr(cfg, &uri.host, port)
}

/// The dialog's PBX peer named by one of our Route entries (see [`DIALOG_PARAM`]), if valid.
fn peer_in_routes(cfg: &EdgeConfig, call_id: &str, ours: &[String]) -> Option<NextHop> {
    ours.iter().find_map(|element| {
        let (uri, _) = name_addr(element)?;
        let uri = SipUri::parse(uri).ok()?;
        dialog_peer(&cfg.branch_secret, call_id, uri.param(DIALOG_PARAM).flatten()?)
    })
}

/// Removes our entries (one, or two adjacent for double record-routing) from the top of the Route
/// set; returns how many were removed and the remaining entries.
fn strip_our_routes(headers: &mut Headers, cfg: &EdgeConfig) -> (usize, Vec<String>) {
    let (removed, remaining, _) = strip_our_routes_with_peer(headers, cfg, "");
    (removed, remaining)
}

/// [`strip_our_routes`], also returning the dialog peer our removed entries name for `call_id`.
fn strip_our_routes_with_peer(
    headers: &mut Headers,
    cfg: &EdgeConfig,
    call_id: &str,
) -> (usize, Vec<String>, Option<NextHop>) {
    let entries: Vec<String> = header_elements(headers, "route").into_iter().map(str::to_string).collect();
    let removed = entries.iter().take(2).take_while(|e| is_our_route(cfg, e)).count();
    let peer = peer_in_routes(cfg, call_id, entries.get(..removed).unwrap_or_default());
    let remaining: Vec<String> = entries.into_iter().skip(removed).collect();
    if removed > 0 {
        let mut list: Vec<Header> = std::mem::take(headers).into();
        let at = list.iter().position(|hd| matches!(hd, Header::Route(_))).unwrap_or(list.len());
        list.retain(|hd| !matches!(hd, Header::Route(_)));
        let at = at.min(list.len());
        for (offset, entry) in remaining.iter().enumerate() {
            list.insert(at + offset, Header::Route(h::Route::new(entry.clone())));
        }
        *headers = list.into();
    }
    (removed, remaining, peer)
}

fn bare_host(host: &str) -> String {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_string()
}

fn next_hop_for(uri: &SipUri, toward: Side, cfg: &EdgeConfig) -> NextHop {
    let transport = match toward {
        // Meta is TLS only.
        Side::Meta => Transport::Tls,
        Side::Pbx if uri.sips => Transport::Tls,
        Side::Pbx => uri.transport_param().unwrap_or(cfg.pbx_transport),
    };
    NextHop { transport, host: bare_host(&uri.host), port: uri.port.unwrap_or(transport.default_port()) }
}

/// In-dialog request (To tag present): loose routing (RFC 3261 §16.4, §16.12), only along a dialog
/// the edge set up. Our Route entries must carry a valid [`DIALOG_PARAM`] for the Call-ID (else 403,
/// RFC 3261 §16.3's policy refusal: the request is not part of a dialog we record-routed). Toward
/// the PBX the next hop is the peer the token names, never taken from the Request-URI or the
/// remaining Route set; toward Meta it is taken from them and must be Meta.
fn route_in_dialog(ctx: &Ctx<'_>) -> Result<(Request, NextHop, Side), Reject> {
    let toward = ctx.source.side.other();
    let mut out = ctx.req.clone();
    let call_id = call_id(&ctx.req.headers).unwrap_or_default();
    let (removed, remaining, peer) = strip_our_routes_with_peer(&mut out.headers, ctx.cfg, call_id);
    let refuse = |reason| if ctx.req.method == Method::Ack { Reject::Drop(reason) } else { reject(403) };
    if removed == 0 {
        return Err(refuse("in-dialog ACK without our Route"));
    }
    let peer = peer.ok_or_else(|| refuse("in-dialog ACK without a valid dialog token in our Route"))?;
    let hop = match toward {
        Side::Pbx => peer,
        Side::Meta => {
            let target = match remaining.first() {
                Some(entry) => {
                    let (uri, _) = name_addr(entry).ok_or(reject(400))?;
                    SipUri::parse(uri).map_err(|_| reject(400))?
                }
                None => SipUri::from_rsip(&ctx.req.uri).ok_or(reject(416))?,
            };
            let hop = next_hop_for(&target, toward, ctx.cfg);
            if !is_meta_host(ctx.cfg, ctx.trusted, &hop.host) {
                return Err(refuse("in-dialog ACK toward something other than Meta"));
            }
            hop
        }
    };
    if is_local_addr(ctx.cfg, &hop.host, hop.port) {
        return Err(if ctx.req.method == Method::Ack {
            Reject::Drop("in-dialog ACK looping to us")
        } else {
            reject(482)
        });
    }
    Ok((out, hop, toward))
}

/// Initial INVITE (or its CANCEL) from Meta: only to a configured phone's Asterisk.
fn route_initial_from_meta(
    ctx: &Ctx<'_>,
    ruri: &SipUri,
    lookup: &dyn Fn(&str) -> Option<PhoneTarget>,
    auth: Option<(&Challenger, u64)>,
) -> Result<(Request, NextHop), Reject> {
    let mut out = ctx.req.clone();
    let (_, remaining) = strip_our_routes(&mut out.headers, ctx.cfg);
    if !remaining.is_empty() || !is_local_host(ctx.cfg, &ruri.host) {
        return Err(reject(403));
    }
    let number = business_number(&ctx.req.uri).ok_or(reject(404))?;
    let phone = lookup(&number).ok_or(reject(404))?;
    if let (Some((digest, now_unix)), Some(password)) = (auth, phone.digest_password.as_deref()) {
        authenticate(ctx.req, &number, password, digest, now_unix)?;
        // The credentials were for us: Asterisk does not need them.
        out.headers.retain(|hd| match hd {
            Header::ProxyAuthorization(v) => Challenger::realm_of(v.value()).as_deref() != Some(digest.realm()),
            _ => true,
        });
    }
    if split_host_port(&host_for_uri(&phone.host)).is_none() {
        // A misconfigured target would give an unparsable Request-URI.
        return Err(reject(500));
    }
    let mut uri = ruri.clone();
    uri.sips = false;
    uri.host = host_for_uri(&phone.host);
    uri.port = Some(phone.port);
    uri.set_param("transport", Some(phone.transport.param_token()));
    out.uri = uri.to_rsip();
    let hop = phone_hop(&phone);
    if is_local_addr(ctx.cfg, &hop.host, hop.port) {
        return Err(reject(482));
    }
    Ok((out, hop))
}

/// Where a phone's Asterisk listens.
fn phone_hop(phone: &PhoneTarget) -> NextHop {
    NextHop { transport: phone.transport, host: bare_host(&phone.host), port: phone.port }
}

fn authenticate(req: &Request, number: &str, password: &str, digest: &Challenger, now_unix: u64) -> Result<(), Reject> {
    let username = number.trim_start_matches('+');
    let method = req.method.to_string();
    let mut outcome = DigestError::Missing;
    for value in header_values(&req.headers, "proxy-authorization") {
        if Challenger::realm_of(value).as_deref() != Some(digest.realm()) {
            continue;
        }
        match digest.verify(&method, value, username, password, now_unix) {
            Ok(()) => return Ok(()),
            Err(e) => outcome = e,
        }
    }
    Err(match outcome {
        DigestError::Missing | DigestError::RealmMismatch | DigestError::BadNonce => {
            Reject::Status(407, digest.challenge(now_unix))
        }
        DigestError::Stale => Reject::Status(407, digest.challenge_stale(now_unix)),
        DigestError::Malformed(_) => reject(400),
        DigestError::UnsupportedAlgorithm
        | DigestError::UnsupportedQop
        | DigestError::WrongUser
        | DigestError::WrongResponse => reject(403),
    })
}

/// Initial INVITE (or its CANCEL) from the PBX: only to Meta, only from a configured number. Also
/// returns the dialog's PBX peer: the calling number's Asterisk target.
fn route_initial_from_pbx(
    ctx: &Ctx<'_>,
    ruri: &SipUri,
    lookup: &dyn Fn(&str) -> Option<PhoneTarget>,
) -> Result<(Request, NextHop, NextHop), Reject> {
    let mut out = ctx.req.clone();
    let (_, remaining) = strip_our_routes(&mut out.headers, ctx.cfg);
    if !remaining.is_empty() || ruri.host.parse::<IpAddr>().is_ok() || !is_meta_host(ctx.cfg, ctx.trusted, &ruri.host) {
        return Err(reject(403));
    }
    let from = header_value(&ctx.req.headers, "from").and_then(name_addr).ok_or(reject(400))?;
    let from_uri = SipUri::parse(from.0).map_err(|_| reject(403))?;
    let number = from_uri.user.as_deref().and_then(e164_from_user).ok_or(reject(403))?;
    let phone = lookup(&number).ok_or(reject(403))?;
    let hop = next_hop_for(ruri, Side::Meta, ctx.cfg);
    Ok((out, hop, phone_hop(&phone)))
}

/// Adds `received` / `rport` to the top Via (RFC 3261 §18.2.1, RFC 3581). False when there is no
/// parsable top Via.
fn annotate_top_via(headers: &mut Headers, source: &Source) -> bool {
    let mut list: Vec<Header> = std::mem::take(headers).into();
    let ok = annotate_in(&mut list, source);
    *headers = list.into();
    ok
}

fn annotate_in(list: &mut [Header], source: &Source) -> bool {
    let Some(Header::Via(via_header)) = list.iter_mut().find(|hd| matches!(hd, Header::Via(_))) else {
        return false;
    };
    let elements = split_list(via_header.value());
    let Some(mut via) = elements.first().and_then(|e| ViaValue::parse(e)) else { return false };
    let ip = canonical_ip(source.addr.ip());
    let has_rport = via.param("rport").is_some();
    let mut changed = false;
    if host_key(&via.host) != ip.to_string() || has_rport {
        via.set_param("received", Some(ip.to_string()));
        changed = true;
    }
    if via.param("rport") == Some(None) {
        via.set_param("rport", Some(source.addr.port().to_string()));
        changed = true;
    }
    if changed {
        let mut value = via.to_string();
        for rest in elements.iter().skip(1) {
            value.push_str(", ");
            value.push_str(rest);
        }
        via_header.replace(value);
    }
    true
}

/// Builds a response the edge itself sends: all Via fields, From, To (with our tag, [`local_to_tag`],
/// unless 100 or already tagged), Call-ID, CSeq, `extra`, Content-Length 0. The one builder of the
/// edge's own responses: decisions here and the transaction layer's 408 / 503 (through
/// [`response_to_forwarded`]) alike.
pub fn local_response(req: &Request, code: u16, extra: Vec<Header>, cfg: &EdgeConfig) -> Option<Response> {
    let mut headers: Vec<Header> = req.headers.iter().filter(|hd| matches!(hd, Header::Via(_))).cloned().collect();
    if headers.is_empty() {
        return None;
    }
    let from = header_value(&req.headers, "from")?;
    let mut to = header_value(&req.headers, "to")?.to_string();
    if code > 100 && to_tag(&req.headers).is_none() {
        to.push_str(";tag=");
        to.push_str(&local_to_tag(cfg, req));
    }
    headers.push(Header::From(h::From::new(from)));
    headers.push(Header::To(h::To::new(to)));
    headers.push(Header::CallId(h::CallId::new(call_id(&req.headers)?)));
    headers.push(Header::CSeq(h::CSeq::new(header_value(&req.headers, "cseq")?)));
    headers.extend(extra);
    headers.push(Header::ContentLength(h::ContentLength::new("0")));
    Some(Response { status_code: status(code), version: Version::V2, headers: headers.into(), body: Vec::new() })
}

/// The edge's own answer (408, 503) to a request it forwarded as `forwarded`: our Via comes off, and the
/// answer is the one [`local_response`] gives the request as it arrived (same To tag). None when
/// nothing is left to answer (a CANCEL carries only our Via).
pub fn response_to_forwarded(forwarded: &Request, code: u16, cfg: &EdgeConfig) -> Option<Response> {
    let mut incoming = forwarded.clone();
    pop_top_via(&mut incoming.headers);
    local_response(&incoming, code, Vec::new(), cfg)
}

/// Decides what to do with a response: our Via must be on top (our sent-by and a branch that
/// authenticates against the next Via); it is popped and the response goes to the next Via
/// (`received` / `rport` honoured). 100 Trying is absorbed (RFC 3261 §16.7 step 5), a 503 becomes
/// a 500 (§16.7 step 6).
pub fn decide_response(mut resp: Response, cfg: &EdgeConfig) -> ResponseDecision {
    let Some(top) = top_via(&resp.headers) else { return ResponseDecision::Drop { reason: "no parsable Via" } };
    let branch = top.branch().to_string();
    if !branch.starts_with(BRANCH_PREFIX) {
        return ResponseDecision::Drop { reason: "top Via branch is not ours" };
    }
    let transport = Transport::from_token(&top.transport).unwrap_or(Transport::Udp);
    if !is_local_addr(cfg, &top.host, top.port.unwrap_or(transport.default_port())) {
        return ResponseDecision::Drop { reason: "top Via sent-by is not ours" };
    }
    pop_top_via(&mut resp.headers);
    if header_elements(&resp.headers, "via").is_empty() {
        return ResponseDecision::Absorb { branch, reason: "response to a request the edge originated (CANCEL)" };
    }
    let Some(next) = top_via(&resp.headers) else {
        return ResponseDecision::Drop { reason: "next Via unparsable" };
    };
    let expected =
        forward_branch(&cfg.branch_secret, next.branch(), &next.sent_by, call_id(&resp.headers).unwrap_or_default());
    if !bool::from(expected.as_bytes().ct_eq(branch.as_bytes())) {
        return ResponseDecision::Drop { reason: "top Via branch does not match the next Via" };
    }
    match resp.status_code.code() {
        100 => return ResponseDecision::Absorb { branch, reason: "100 Trying is hop-by-hop" },
        503 => resp.status_code = status(500),
        _ => {}
    }
    let Some(transport) = Transport::from_token(&next.transport) else {
        return ResponseDecision::Drop { reason: "next Via transport unsupported" };
    };
    let host = next
        .param("received")
        .flatten()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| bare_host(&next.host));
    let port = next
        .param("rport")
        .flatten()
        .and_then(|p| p.parse::<u16>().ok())
        .or(next.port)
        .unwrap_or(transport.default_port());
    ResponseDecision::Forward { response: resp, next_hop: NextHop { transport, host, port }, branch }
}

fn pop_top_via(headers: &mut Headers) {
    let mut list: Vec<Header> = std::mem::take(headers).into();
    if let Some(i) = list.iter().position(|hd| matches!(hd, Header::Via(_))) {
        let rest = match list.get(i) {
            Some(Header::Via(v)) => split_list(v.value()).into_iter().skip(1).collect::<Vec<_>>().join(", "),
            _ => String::new(),
        };
        if rest.is_empty() {
            list.remove(i);
        } else if let Some(slot) = list.get_mut(i) {
            *slot = Header::Via(h::Via::new(rest));
        }
    }
    *headers = list.into();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::respond;
    use crate::sip::message::{header_value, header_values, message_bytes, parse, request_bytes, response_bytes};
    use crate::sip::testdata as td;
    use proptest::prelude::*;
    use rsip::SipMessage;

    const NOW: u64 = 1_760_000_000;
    const NUMBER: &str = "+15551234567";
    const PLAIN_META_RR: &str = "<sip:sip.example.com:5061;transport=tls;lr>";

    /// Our Record-Route entries of the test dialog (Call-ID `td::CALL_ID`, PBX peer 10.0.0.20:5060/UDP).
    static DIALOG_RRS: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
        let token = dialog_token(&cfg().branch_secret, td::CALL_ID, &pbx_peer());
        (
            format!("<sip:sip.example.com:5061;transport=tls;lr;{DIALOG_PARAM}={token}>"),
            format!("<sip:10.0.0.5:5060;transport=udp;lr;{DIALOG_PARAM}={token}>"),
        )
    });

    fn our_meta_rr() -> &'static str {
        &DIALOG_RRS.0
    }

    fn our_pbx_rr() -> &'static str {
        &DIALOG_RRS.1
    }

    fn pbx_peer() -> NextHop {
        NextHop { transport: Transport::Udp, host: "10.0.0.20".into(), port: 5060 }
    }

    fn cfg() -> EdgeConfig {
        EdgeConfig::new("sip.example.com:5061", "10.0.0.5:5060", Transport::Udp, [9u8; 32])
    }

    fn challenger() -> Challenger {
        Challenger::new([5u8; 32], "sip.example.com".to_string())
    }

    fn phone(password: Option<&str>) -> PhoneTarget {
        PhoneTarget {
            number: NUMBER.to_string(),
            transport: Transport::Udp,
            host: "10.0.0.20".to_string(),
            port: 5060,
            digest_password: password.map(str::to_string),
        }
    }

    fn meta_src() -> Source {
        Source { addr: "57.144.67.157:40312".parse().unwrap(), transport: Transport::Tls, side: Side::Meta }
    }

    fn pbx_src() -> Source {
        Source { addr: "10.0.0.20:5060".parse().unwrap(), transport: Transport::Udp, side: Side::Pbx }
    }

    fn request(bytes: &[u8]) -> Request {
        match parse(bytes).unwrap() {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => panic!("request expected"),
        }
    }

    fn response(bytes: &[u8]) -> Response {
        match parse(bytes).unwrap() {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => panic!("response expected"),
        }
    }

    fn decide_with(bytes: &[u8], src: &Source, cfg: &EdgeConfig, password: Option<&str>, now: u64) -> Vec<Decision> {
        let lookup = move |n: &str| (n == NUMBER).then(|| phone(password));
        decide_request(request(bytes), src, cfg, &lookup, &Acl::meta_default(), &challenger(), now)
    }

    fn decide(bytes: &[u8], src: &Source) -> Vec<Decision> {
        decide_with(bytes, src, &cfg(), None, NOW)
    }

    fn only_response(decisions: Vec<Decision>) -> Response {
        match decisions.as_slice() {
            [Decision::Respond(r)] => r.clone(),
            other => panic!("expected a single response, got {other:#?}"),
        }
    }

    fn code_of(decisions: Vec<Decision>) -> u16 {
        only_response(decisions).status_code.code()
    }

    fn forwarded(decisions: &[Decision]) -> (Request, NextHop, String) {
        decisions
            .iter()
            .find_map(|d| match d {
                Decision::Forward { request, next_hop, branch } => {
                    Some((request.clone(), next_hop.clone(), branch.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Forward in {decisions:#?}"))
    }

    fn assert_drop(decisions: Vec<Decision>) {
        assert!(matches!(decisions.as_slice(), [Decision::Drop { .. }]), "{decisions:#?}");
    }

    fn proxy_auth_challenges(resp: &Response) -> Vec<String> {
        header_values(&resp.headers, "proxy-authenticate").into_iter().map(str::to_string).collect()
    }

    // ---- source, REGISTER, OPTIONS, Max-Forwards ----

    #[test]
    fn untrusted_meta_source_is_forbidden() {
        let src = Source { addr: "198.51.100.7:5061".parse().unwrap(), ..meta_src() };
        let resp = only_response(decide(&td::meta_invite(), &src));
        assert_eq!(resp.status_code.code(), 403);
        assert!(response_bytes(&resp).starts_with(b"SIP/2.0 403 Forbidden\r\n"));
        assert!(to_tag(&resp.headers).is_some_and(|t| t.starts_with(LOCAL_TAG_PREFIX)));
        // Never forwarded, whatever the message; an ACK is not even answered.
        assert_drop(decide(&td::meta_ack_with_route(&[our_meta_rr(), our_pbx_rr()]), &src));
        assert_eq!(code_of(decide(&td::meta_bye_with_route(&[our_meta_rr(), our_pbx_rr()]), &src)), 403);
        let mapped = Source { addr: "[::ffff:57.144.67.157]:40312".parse().unwrap(), ..meta_src() };
        assert!(
            matches!(decide(&td::meta_invite(), &mapped).first(), Some(Decision::Respond(r)) if r.status_code.code() == 100)
        );
    }

    #[test]
    fn register_is_forbidden() {
        assert_eq!(code_of(decide(&td::register(), &meta_src())), 403);
        assert_eq!(code_of(decide(&td::register(), &pbx_src())), 403);
    }

    #[test]
    fn options_to_the_edge_is_answered() {
        for ruri in [
            "sip:sip.example.com",
            "sip:sip.example.com:5061;transport=tls",
            "sip:203.0.113.9:5061",
            "sip:+15551234567@sip.example.com",
        ] {
            let resp = only_response(decide(&td::options(ruri), &meta_src()));
            assert_eq!(resp.status_code.code(), 200, "{ruri}");
            assert_eq!(header_value(&resp.headers, "allow"), Some(ALLOW));
            assert_eq!(header_value(&resp.headers, "cseq"), Some("1 OPTIONS"));
            assert!(to_tag(&resp.headers).is_some());
        }
        // Asterisk qualifying its outbound proxy.
        assert_eq!(code_of(decide(&td::options("sip:+15557654321@wa.meta.vc;transport=tls"), &pbx_src())), 200);
        // Max-Forwards 0 still gets the probe answered (RFC 3261 §16.3 step 3 allows it).
        let probe = td::replace_header(&td::options("sip:sip.example.com"), "Max-Forwards", "Max-Forwards: 0");
        assert_eq!(code_of(decide(&probe, &meta_src())), 200);
        // Not ours to relay.
        assert_eq!(code_of(decide(&td::options("sip:bob@elsewhere.example.org"), &meta_src())), 403);
    }

    #[test]
    fn max_forwards_zero_is_too_many_hops() {
        let bytes = td::replace_header(&td::meta_invite(), "Max-Forwards", "Max-Forwards: 0");
        assert_eq!(code_of(decide(&bytes, &meta_src())), 483);
        let bytes = td::replace_header(&td::meta_invite(), "Max-Forwards", "Max-Forwards: x");
        assert_eq!(code_of(decide(&bytes, &meta_src())), 400);
    }

    #[test]
    fn max_forwards_is_decremented_or_defaulted() {
        let (req, _, _) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        assert_eq!(header_values(&req.headers, "max-forwards"), vec!["68"]);
        let bytes = td::replace_header(&td::meta_invite(), "Max-Forwards", "");
        let (req, _, _) = forwarded(&decide(&bytes, &meta_src()));
        assert_eq!(header_values(&req.headers, "max-forwards"), vec!["69"], "absent: 70 then decremented");
    }

    // ---- initial INVITE from Meta ----

    #[test]
    fn unknown_or_malformed_number_is_not_found() {
        let bytes = String::from_utf8(td::meta_invite()).unwrap().replacen("+15551234567;tgrp", "+15550000000;tgrp", 1);
        assert_eq!(code_of(decide(bytes.as_bytes(), &meta_src())), 404);
        let bytes = String::from_utf8(td::meta_invite()).unwrap().replacen("+15551234567;tgrp", "alice;tgrp", 1);
        assert_eq!(code_of(decide(bytes.as_bytes(), &meta_src())), 404);
        // A Request-URI for another domain is not ours to relay.
        let bytes = String::from_utf8(td::meta_invite()).unwrap().replacen(
            "@sip.example.com;transport",
            "@victim.example.net;transport",
            1,
        );
        assert_eq!(code_of(decide(bytes.as_bytes(), &meta_src())), 403);
    }

    #[test]
    fn initial_invite_is_record_routed_to_the_phone() {
        let original = td::meta_invite();
        let decisions = decide(&original, &meta_src());
        assert_eq!(decisions.len(), 2);
        let Decision::Respond(trying) = &decisions[0] else { panic!("100 Trying first") };
        assert_eq!(trying.status_code.code(), 100);
        assert_eq!(to_tag(&trying.headers), None, "no To tag on 100");
        let (req, hop, branch) = forwarded(&decisions);
        assert_eq!(hop, NextHop { transport: Transport::Udp, host: "10.0.0.20".into(), port: 5060 });
        assert_eq!(req.uri.to_string(), "sip:+15551234567;tgrp=wacall@10.0.0.20:5060;transport=udp");
        let vias = header_values(&req.headers, "via");
        assert_eq!(vias[0], format!("SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport"));
        assert_eq!(
            vias[1],
            format!("SIP/2.0/TLS {};branch={};rport=40312;received=57.144.67.157", td::META_VIA_HOST, td::META_BRANCH)
        );
        assert!(branch.starts_with(BRANCH_PREFIX) && branch.len() == BRANCH_PREFIX.len() + 32);
        assert_eq!(branch, forward_branch(&cfg().branch_secret, td::META_BRANCH, td::META_VIA_HOST, td::CALL_ID));
        // Double record-routing: PBX-facing on top, then Meta-facing, then Meta's own unchanged.
        assert_eq!(
            header_values(&req.headers, "record-route"),
            vec![our_pbx_rr(), our_meta_rr(), td::META_RR_1, td::META_RR_2]
        );
        assert_eq!(header_value(&req.headers, "x-wa-meta-wacid"), Some(td::WACID));
        assert_eq!(header_value(&req.headers, "x-fb-external-domain"), Some("wa.meta.vc"));
        assert_eq!(req.body, td::SDP.as_bytes());
        let wire = String::from_utf8(request_bytes(&req)).unwrap();
        assert!(wire.contains(&format!("\r\nRecord-Route: {}\r\nRecord-Route: {}\r\n", td::META_RR_1, td::META_RR_2)));
        assert!(wire.ends_with(td::SDP) && wire.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        assert_eq!(parse(wire.as_bytes()).unwrap(), SipMessage::Request(req), "forwarded bytes parse back the same");
    }

    #[test]
    fn misconfigured_phone_target_is_a_server_error() {
        let lookup = |n: &str| (n == NUMBER).then(|| PhoneTarget { host: "bad host".into(), ..phone(None) });
        let ds = decide_request(
            request(&td::meta_invite()),
            &meta_src(),
            &cfg(),
            &lookup,
            &Acl::meta_default(),
            &challenger(),
            NOW,
        );
        assert_eq!(code_of(ds), 500);
        let v6 = |n: &str| (n == NUMBER).then(|| PhoneTarget { host: "2001:db8::20".into(), ..phone(None) });
        let ds = decide_request(
            request(&td::meta_invite()),
            &meta_src(),
            &cfg(),
            &v6,
            &Acl::meta_default(),
            &challenger(),
            NOW,
        );
        let (req, hop, _) = forwarded(&ds);
        assert_eq!(req.uri.to_string(), "sip:+15551234567;tgrp=wacall@[2001:db8::20]:5060;transport=udp");
        assert_eq!(hop.host, "2001:db8::20");
    }

    #[test]
    fn single_record_route_when_both_sides_share_the_interface() {
        let mut cfg = cfg();
        cfg.pbx_facing = "sip.example.com:5061".to_string();
        cfg.pbx_transport = Transport::Tls;
        assert_eq!(record_route_values(&cfg, Side::Pbx, Transport::Tls, None), vec![PLAIN_META_RR]);
        assert_eq!(record_route_values(&cfg, Side::Pbx, Transport::Udp, None).len(), 2);
        let lookup =
            |n: &str| (n == NUMBER).then(|| PhoneTarget { transport: Transport::Tls, port: 5061, ..phone(None) });
        let ds = decide_request(
            request(&td::meta_invite()),
            &meta_src(),
            &cfg,
            &lookup,
            &Acl::meta_default(),
            &challenger(),
            NOW,
        );
        let (req, hop, _) = forwarded(&ds);
        assert_eq!(hop.transport, Transport::Tls);
        assert_eq!(req.uri.to_string(), "sip:+15551234567;tgrp=wacall@10.0.0.20:5061;transport=tls");
        let peer = NextHop { transport: Transport::Tls, host: "10.0.0.20".into(), port: 5061 };
        let token = dialog_token(&cfg.branch_secret, td::CALL_ID, &peer);
        let ours = format!("<sip:sip.example.com:5061;transport=tls;lr;{DIALOG_PARAM}={token}>");
        assert_eq!(header_values(&req.headers, "record-route"), vec![ours.as_str(), td::META_RR_1, td::META_RR_2]);
        // And a BYE from Meta carrying just that one entry is routed.
        let (bye, hop, _) = forwarded(&decide_request(
            request(&td::meta_bye_with_route(&[&ours])),
            &meta_src(),
            &cfg,
            &lookup,
            &Acl::meta_default(),
            &challenger(),
            NOW,
        ));
        assert!(header_values(&bye.headers, "route").is_empty());
        assert_eq!(hop, peer);
    }

    // ---- digest ----

    fn challenge_for(password: &str) -> Response {
        only_response(decide_with(&td::meta_invite(), &meta_src(), &cfg(), Some(password), NOW))
    }

    fn answered_invite(challenge: &str, password: &str) -> Vec<u8> {
        let auth =
            respond(challenge, "INVITE", "sip:+15551234567@sip.example.com", "15551234567", password, "0a4f113b")
                .unwrap();
        td::meta_invite_custom("z9hG4bK-524287-1---second00", 2, &[&format!("Proxy-Authorization: {auth}")])
    }

    #[test]
    fn digest_challenge_then_sha256_credentials_are_accepted() {
        let resp = challenge_for("s3cret");
        assert_eq!(resp.status_code.code(), 407);
        assert!(response_bytes(&resp).starts_with(b"SIP/2.0 407 Proxy Authentication Required\r\n"));
        let challenges = proxy_auth_challenges(&resp);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
        assert!(challenges[0].contains("realm=\"sip.example.com\""));
        let retry = answered_invite(&challenges[0], "s3cret");
        let decisions = decide_with(&retry, &meta_src(), &cfg(), Some("s3cret"), NOW + 2);
        let (req, hop, _) = forwarded(&decisions);
        assert_eq!(hop.host, "10.0.0.20");
        assert!(header_values(&req.headers, "proxy-authorization").is_empty(), "our credentials are not passed on");
    }

    #[test]
    fn digest_md5_credentials_are_accepted() {
        let challenges = proxy_auth_challenges(&challenge_for("s3cret"));
        let retry = answered_invite(&challenges[1], "s3cret");
        forwarded(&decide_with(&retry, &meta_src(), &cfg(), Some("s3cret"), NOW + 2));
    }

    #[test]
    fn digest_wrong_password_is_forbidden() {
        let challenges = proxy_auth_challenges(&challenge_for("s3cret"));
        let retry = answered_invite(&challenges[0], "guess");
        assert_eq!(code_of(decide_with(&retry, &meta_src(), &cfg(), Some("s3cret"), NOW + 2)), 403);
    }

    #[test]
    fn digest_stale_nonce_is_challenged_again_with_stale() {
        let challenges = proxy_auth_challenges(&challenge_for("s3cret"));
        let retry = answered_invite(&challenges[0], "s3cret");
        let resp = only_response(decide_with(&retry, &meta_src(), &cfg(), Some("s3cret"), NOW + 301));
        assert_eq!(resp.status_code.code(), 407);
        assert!(proxy_auth_challenges(&resp).iter().all(|c| c.contains("stale=true")));
        // Credentials for someone else's realm count as none.
        let other = respond(
            &challenges[0].replace("sip.example.com", "wa.meta.vc"),
            "INVITE",
            "sip:x",
            "15551234567",
            "s3cret",
            "c",
        )
        .unwrap();
        let bytes = td::meta_invite_custom("z9hG4bK-3", 3, &[&format!("Proxy-Authorization: {other}")]);
        let resp = only_response(decide_with(&bytes, &meta_src(), &cfg(), Some("s3cret"), NOW));
        assert_eq!(resp.status_code.code(), 407);
        assert!(proxy_auth_challenges(&resp).iter().all(|c| !c.contains("stale")));
    }

    #[test]
    fn ack_for_our_own_407_is_dropped() {
        let resp = challenge_for("s3cret");
        let tag = to_tag(&resp.headers).unwrap().to_string();
        let ack = td::build(
            &format!("ACK {} SIP/2.0", td::RURI),
            &[
                &format!("Via: SIP/2.0/TLS {};branch={};rport", td::META_VIA_HOST, td::META_BRANCH),
                "Max-Forwards: 70",
                &format!("{};tag={tag}", td::META_TO),
                td::META_FROM,
                &format!("Call-ID: {}", td::CALL_ID),
                "CSeq: 1 ACK",
            ],
            "",
        );
        assert!(
            matches!(decide(&ack, &meta_src()).as_slice(), [Decision::Drop { reason }] if reason.contains("edge generated"))
        );
    }

    /// The transaction layer's own 408 / 503 for a forwarded request uses the same builder, and so the
    /// same To tag, as the decisions' answers to the request as it arrived; the ACK Meta sends for it is
    /// recognised as the edge's.
    #[test]
    fn answers_to_forwarded_requests_carry_the_upstream_vias_and_our_to_tag() {
        let (invite, _, branch) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        assert_eq!(forwarded_branch(&cfg(), &request(&td::meta_invite())), branch, "the key the edge files it under");
        let timeout = response_to_forwarded(&invite, 408, &cfg()).unwrap();
        assert_eq!(timeout.status_code.code(), 408);
        let vias = header_values(&timeout.headers, "via");
        assert_eq!(vias.len(), 1, "{vias:?}");
        assert!(vias[0].contains(td::META_BRANCH) && !vias[0].contains(&branch), "our Via came off: {vias:?}");
        let tag = to_tag(&timeout.headers).unwrap();
        let hops_out = String::from_utf8(td::meta_invite()).unwrap().replace("Max-Forwards: 69", "Max-Forwards: 0");
        let refused = only_response(decide(hops_out.as_bytes(), &meta_src()));
        assert_eq!(refused.status_code.code(), 483);
        assert_eq!(Some(tag), to_tag(&refused.headers), "one To tag scheme");
        assert_eq!(tag, local_to_tag(&cfg(), &request(&td::meta_invite())));
        let (cancel, ..) = forwarded(&decide(&td::meta_cancel(), &meta_src()));
        assert!(response_to_forwarded(&cancel, 408, &cfg()).is_none(), "our CANCEL carries only our Via");
    }

    // ---- CANCEL ----

    #[test]
    fn cancel_is_answered_and_forwarded_on_the_invite_branch() {
        let (invite, invite_hop, invite_branch) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        let decisions = decide(&td::meta_cancel(), &meta_src());
        assert_eq!(decisions.len(), 2);
        let Decision::Respond(ok) = &decisions[0] else { panic!("200 for the CANCEL first") };
        assert_eq!(ok.status_code.code(), 200);
        assert_eq!(header_value(&ok.headers, "cseq"), Some("1 CANCEL"));
        let (cancel, hop, branch) = forwarded(&decisions);
        assert_eq!((hop, branch.as_str()), (invite_hop, invite_branch.as_str()));
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(
            header_values(&cancel.headers, "via"),
            vec![format!("SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport")]
        );
        assert!(header_values(&cancel.headers, "record-route").is_empty());
        // The PBX's 200 for our CANCEL stops at the edge.
        let ok_from_pbx =
            td::response_with_vias("SIP/2.0 200 OK", &[header_values(&cancel.headers, "via")[0]], "1 CANCEL");
        assert!(
            matches!(decide_response(response(&ok_from_pbx), &cfg()), ResponseDecision::Absorb { branch: b, .. } if b == branch)
        );
        // A CANCEL for a number we do not serve matches nothing.
        let stray = String::from_utf8(td::meta_cancel()).unwrap().replacen("+15551234567;tgrp", "+15550000000;tgrp", 1);
        assert_eq!(code_of(decide(stray.as_bytes(), &meta_src())), 481);
    }

    // ---- responses ----

    #[test]
    fn pbx_200_goes_back_to_meta() {
        let (invite, _, branch) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        let ok = response(&td::pbx_200_for(&invite));
        let ResponseDecision::Forward { response: out, next_hop, branch: b } = decide_response(ok, &cfg()) else {
            panic!("forward expected")
        };
        assert_eq!(b, branch);
        assert_eq!(next_hop, NextHop { transport: Transport::Tls, host: "57.144.67.157".into(), port: 40312 });
        let vias = header_values(&out.headers, "via");
        assert_eq!(vias.len(), 1);
        assert!(vias[0].contains(td::META_BRANCH));
        assert_eq!(
            header_values(&out.headers, "record-route"),
            vec![our_pbx_rr(), our_meta_rr(), td::META_RR_1, td::META_RR_2]
        );
        assert_eq!(out.body, td::SDP_ANSWER.as_bytes());
        assert!(response_bytes(&out).starts_with(b"SIP/2.0 200 OK\r\n"));
    }

    #[test]
    fn provisional_and_error_responses() {
        let (invite, _, branch) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        let vias: Vec<String> = header_values(&invite.headers, "via").into_iter().map(str::to_string).collect();
        let via_refs: Vec<&str> = vias.iter().map(String::as_str).collect();
        let trying = td::response_with_vias("SIP/2.0 100 Trying", &via_refs, "1 INVITE");
        assert!(
            matches!(decide_response(response(&trying), &cfg()), ResponseDecision::Absorb { branch: b, .. } if b == branch)
        );
        let ringing = td::response_with_vias("SIP/2.0 180 Ringing", &via_refs, "1 INVITE");
        assert!(matches!(decide_response(response(&ringing), &cfg()), ResponseDecision::Forward { .. }));
        let unavailable = td::response_with_vias("SIP/2.0 503 Service Unavailable", &via_refs, "1 INVITE");
        let ResponseDecision::Forward { response: out, .. } = decide_response(response(&unavailable), &cfg()) else {
            panic!()
        };
        assert_eq!(out.status_code.code(), 500);
        // Both Vias in one comma-separated header field.
        let joined = td::response_with_vias("SIP/2.0 486 Busy Here", &[&vias.join(", ")], "1 INVITE");
        let ResponseDecision::Forward { response: out, next_hop, .. } = decide_response(response(&joined), &cfg())
        else {
            panic!()
        };
        assert_eq!(header_values(&out.headers, "via").len(), 1);
        assert_eq!(next_hop.port, 40312);
        assert!(response_bytes(&out).starts_with(b"SIP/2.0 486 Busy Here\r\n"));
    }

    #[test]
    fn responses_not_for_us_are_dropped() {
        let foreign =
            td::response_with_vias("SIP/2.0 200 OK", &["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc"], "1 INVITE");
        assert_eq!(
            decide_response(response(&foreign), &cfg()),
            ResponseDecision::Drop { reason: "top Via branch is not ours" }
        );
        let forged_branch = format!("SIP/2.0/UDP 10.0.0.5:5060;branch={BRANCH_PREFIX}{}", "0".repeat(32));
        let meta_via = format!("SIP/2.0/TLS {};branch={}", td::META_VIA_HOST, td::META_BRANCH);
        let forged = td::response_with_vias("SIP/2.0 200 OK", &[&forged_branch, &meta_via], "1 INVITE");
        assert!(matches!(decide_response(response(&forged), &cfg()), ResponseDecision::Drop { .. }));
        let branch = forward_branch(&cfg().branch_secret, td::META_BRANCH, td::META_VIA_HOST, td::CALL_ID);
        let elsewhere = format!("SIP/2.0/UDP 10.9.9.9:5060;branch={branch}");
        let wrong_host = td::response_with_vias("SIP/2.0 200 OK", &[&elsewhere, &meta_via], "1 INVITE");
        assert_eq!(
            decide_response(response(&wrong_host), &cfg()),
            ResponseDecision::Drop { reason: "top Via sent-by is not ours" }
        );
    }

    // ---- in-dialog ----

    #[test]
    fn ack_for_2xx_from_meta_is_loose_routed_to_the_pbx() {
        let decisions = decide(&td::meta_ack_with_route(&[our_meta_rr(), our_pbx_rr()]), &meta_src());
        assert_eq!(decisions.len(), 1, "no 100 for ACK");
        let (req, hop, branch) = forwarded(&decisions);
        assert_eq!(hop, NextHop { transport: Transport::Udp, host: "10.0.0.20".into(), port: 5060 });
        assert!(header_values(&req.headers, "route").is_empty());
        assert!(header_values(&req.headers, "record-route").is_empty());
        assert!(header_values(&req.headers, "via")[0].contains(&branch));
        assert_eq!(req.uri.to_string(), "sip:+15551234567@10.0.0.20:5060");
    }

    #[test]
    fn bye_from_meta_reaches_the_pbx_with_meta_headers() {
        let (req, hop, _) = forwarded(&decide(&td::meta_bye_with_route(&[our_meta_rr(), our_pbx_rr()]), &meta_src()));
        assert_eq!(hop.transport, Transport::Udp);
        assert_eq!(crate::sip::message::call_duration_secs(&req), Some(42));
        assert_eq!(crate::sip::message::call_id_key(&req), td::WACID);
        // Both of our entries in one Route field work too.
        let joined = format!("{}, {}", our_meta_rr(), our_pbx_rr());
        let (req, _, _) = forwarded(&decide(&td::meta_bye_with_route(&[&joined]), &meta_src()));
        assert!(header_values(&req.headers, "route").is_empty());
    }

    #[test]
    fn bye_from_pbx_goes_to_meta_over_tls() {
        let routes = [our_pbx_rr(), our_meta_rr(), td::META_RR_1, td::META_RR_2];
        let decisions = decide(&td::pbx_bye_with_route(&routes), &pbx_src());
        let (req, hop, branch) = forwarded(&decisions);
        assert_eq!(hop, NextHop { transport: Transport::Tls, host: "wa.meta.vc".into(), port: 5061 });
        assert_eq!(header_values(&req.headers, "route"), vec![td::META_RR_1, td::META_RR_2]);
        assert_eq!(
            header_values(&req.headers, "via")[0],
            format!("SIP/2.0/TLS sip.example.com:5061;branch={branch};rport")
        );
        assert_eq!(req.uri.to_string(), "sip:+15557654321@wa.meta.vc;transport=tls;ob");
        // Meta's 200 to it comes back to Asterisk by its Via (rport honoured).
        let vias: Vec<String> = header_values(&req.headers, "via").into_iter().map(str::to_string).collect();
        let refs: Vec<&str> = vias.iter().map(String::as_str).collect();
        let ok = td::response_with_vias("SIP/2.0 200 OK", &refs, "102 BYE");
        let ResponseDecision::Forward { next_hop, .. } = decide_response(response(&ok), &cfg()) else { panic!() };
        assert_eq!(next_hop, NextHop { transport: Transport::Udp, host: "10.0.0.20".into(), port: 5060 });
    }

    #[test]
    fn never_an_open_relay() {
        // In-dialog requests without our Route.
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[td::META_RR_1]), &pbx_src())), 403);
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[]), &pbx_src())), 403);
        assert_eq!(code_of(decide(&td::meta_bye_with_route(&[]), &meta_src())), 403);
        assert_drop(decide(&td::meta_ack_with_route(&[]), &meta_src()));
        // Our Route present but not on top.
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[td::META_RR_1, our_pbx_rr()]), &pbx_src())), 403);
        // From the PBX, the next hop must be Meta.
        let evil = "<sip:evil.example.net;lr>";
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[our_pbx_rr(), our_meta_rr(), evil]), &pbx_src())), 403);
        let to_ip = String::from_utf8(td::pbx_bye_with_route(&[our_pbx_rr()])).unwrap().replacen(
            "@wa.meta.vc;transport=tls;ob",
            "@198.51.100.9:5060",
            1,
        );
        assert_eq!(code_of(decide(to_ip.as_bytes(), &pbx_src())), 403);
        let lookalike = "<sip:wa.meta.vc.evil.example;lr>";
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[our_pbx_rr(), lookalike]), &pbx_src())), 403);
        // Initial INVITEs from the PBX: only to Meta's domain, only from a configured number.
        assert_eq!(code_of(decide(&td::pbx_invite("sip:+15557654321@evil.example.net", NUMBER), &pbx_src())), 403);
        assert_eq!(code_of(decide(&td::pbx_invite("sip:+15557654321@57.144.67.157", NUMBER), &pbx_src())), 403);
        assert_eq!(
            code_of(decide(&td::pbx_invite("sip:+15557654321@wa.meta.vc;transport=tls", "+15550000000"), &pbx_src())),
            403
        );
        // Initial requests from Meta with a preloaded foreign Route.
        let preloaded = td::meta_invite_custom(td::META_BRANCH, 1, &["Route: <sip:evil.example.net;lr>"]);
        assert_eq!(code_of(decide(&preloaded, &meta_src())), 403);
    }

    #[test]
    fn business_initiated_invite_goes_to_meta() {
        let decisions = decide(&td::pbx_invite("sip:+15557654321@wa.meta.vc;transport=tls", NUMBER), &pbx_src());
        assert!(matches!(&decisions[0], Decision::Respond(r) if r.status_code.code() == 100));
        let (req, hop, _) = forwarded(&decisions);
        assert_eq!(hop, NextHop { transport: Transport::Tls, host: "wa.meta.vc".into(), port: 5061 });
        assert!(header_values(&req.headers, "route").is_empty(), "our preloaded Route is consumed");
        // The dialog's PBX peer is the calling number's Asterisk target.
        let token = dialog_token(&cfg().branch_secret, "out-call-1@10.0.0.20", &pbx_peer());
        assert_eq!(
            header_values(&req.headers, "record-route"),
            vec![
                format!("<sip:sip.example.com:5061;transport=tls;lr;{DIALOG_PARAM}={token}>"),
                format!("<sip:10.0.0.5:5060;transport=udp;lr;{DIALOG_PARAM}={token}>"),
            ]
        );
        assert_eq!(req.uri.to_string(), "sip:+15557654321@wa.meta.vc;transport=tls");
    }

    /// Regression (issue 11): a trusted in-dialog request went wherever its Request-URI or Route
    /// said. Toward the PBX only the dialog's peer named by our authenticated Route is reachable.
    #[test]
    fn in_dialog_requests_only_reach_the_dialog_peer() {
        // Our Route without a dialog token (what an attacker can write): refused, an ACK dropped.
        let plain_pbx_rr = "<sip:10.0.0.5:5060;transport=udp;lr>";
        let anywhere = String::from_utf8(td::meta_bye_with_route(&[PLAIN_META_RR, plain_pbx_rr])).unwrap().replacen(
            "@10.0.0.20:5060",
            "@127.0.0.1:40999",
            1,
        );
        assert_eq!(code_of(decide(anywhere.as_bytes(), &meta_src())), 403);
        assert_drop(decide(&td::meta_ack_with_route(&[PLAIN_META_RR, plain_pbx_rr]), &meta_src()));
        assert_eq!(code_of(decide(&td::pbx_bye_with_route(&[plain_pbx_rr, PLAIN_META_RR]), &pbx_src())), 403);
        // A token of another dialog, or a tampered one: refused.
        let other = dialog_token(&cfg().branch_secret, "another-call", &pbx_peer());
        let other_rr = format!("<sip:sip.example.com:5061;transport=tls;lr;{DIALOG_PARAM}={other}>");
        assert_eq!(code_of(decide(&td::meta_bye_with_route(&[&other_rr]), &meta_src())), 403);
        let evil_peer = NextHop { transport: Transport::Tcp, host: "127.0.0.1".into(), port: 40999 };
        let (_, mac) = dialog_token(&cfg().branch_secret, td::CALL_ID, &pbx_peer())
            .split_once('-')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        let (evil_text, _) = dialog_token(&cfg().branch_secret, td::CALL_ID, &evil_peer)
            .split_once('-')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        let tampered = format!("<sip:sip.example.com:5061;transport=tls;lr;{DIALOG_PARAM}={evil_text}-{mac}>");
        assert_eq!(code_of(decide(&td::meta_bye_with_route(&[&tampered]), &meta_src())), 403);
        assert_eq!(dialog_peer(&cfg().branch_secret, td::CALL_ID, "zz-00"), None);
        // A valid token: the request goes to the dialog's peer, not to its Request-URI or next Route.
        let elsewhere = String::from_utf8(td::meta_bye_with_route(&[our_meta_rr(), our_pbx_rr(), td::META_RR_1]))
            .unwrap()
            .replacen("@10.0.0.20:5060", "@10.0.0.5:5060", 1);
        let (_, hop, _) = forwarded(&decide(elsewhere.as_bytes(), &meta_src()));
        assert_eq!(hop, pbx_peer());
        let (_, hop, _) = forwarded(&decide(anywhere.replace(plain_pbx_rr, our_pbx_rr()).as_bytes(), &meta_src()));
        assert_eq!(hop, pbx_peer());
        assert_eq!(dialog_peer(&cfg().branch_secret, td::CALL_ID, &other), None);
        assert_eq!(dialog_peer(&cfg().branch_secret, "another-call", &other), Some(pbx_peer()));
    }

    #[test]
    fn pbx_acl_limits_sources() {
        let mut cfg = cfg();
        cfg.pbx_acl = Some(Acl::parse(&["10.0.0.0/24"]).unwrap());
        let outsider = Source { addr: "192.0.2.50:5060".parse().unwrap(), ..pbx_src() };
        let routes = [our_pbx_rr(), our_meta_rr(), td::META_RR_1];
        assert_eq!(code_of(decide_with(&td::pbx_bye_with_route(&routes), &outsider, &cfg, None, NOW)), 403);
        forwarded(&decide_with(&td::pbx_bye_with_route(&routes), &pbx_src(), &cfg, None, NOW));
        // A stranger's business-initiated INVITE is refused too (toll fraud), and its ACK dropped.
        let invite = td::pbx_invite("sip:+15557654321@wa.meta.vc;transport=tls", NUMBER);
        assert_eq!(code_of(decide_with(&invite, &outsider, &cfg, None, NOW)), 403);
        forwarded(&decide_with(&invite, &pbx_src(), &cfg, None, NOW));
        // An empty ACL (no Asterisk configured) admits nobody.
        cfg.pbx_acl = Some(Acl::default());
        assert_eq!(code_of(decide_with(&invite, &pbx_src(), &cfg, None, NOW)), 403);
    }

    #[test]
    fn other_request_checks() {
        let required = td::meta_invite_custom(td::META_BRANCH, 1, &["Proxy-Require: foo, bar"]);
        let resp = only_response(decide(&required, &meta_src()));
        assert_eq!(resp.status_code.code(), 420);
        assert_eq!(header_value(&resp.headers, "unsupported"), Some("foo, bar"));
        assert_drop(decide(&td::replace_header(&td::meta_invite(), "Call-ID", ""), &meta_src()));
        assert_eq!(
            code_of(decide(&td::replace_header(&td::meta_invite(), "From", "From: broken <sip:x"), &meta_src())),
            400
        );
        assert_eq!(code_of(decide(&td::replace_header(&td::meta_invite(), "CSeq", "CSeq: 1 BYE"), &meta_src())), 400);
        assert_drop(decide(&td::replace_header(&td::meta_invite(), "Via", ""), &meta_src()));
        let message =
            String::from_utf8(td::options("sip:+15551234567@sip.example.com")).unwrap().replace("OPTIONS", "MESSAGE");
        assert_eq!(code_of(decide(message.as_bytes(), &meta_src())), 405);
        let bye_no_tag =
            String::from_utf8(td::options("sip:+15551234567@sip.example.com")).unwrap().replace("OPTIONS", "BYE");
        assert_eq!(code_of(decide(bye_no_tag.as_bytes(), &meta_src())), 481);
        let stray_ack = String::from_utf8(td::meta_invite()).unwrap().replace("INVITE", "ACK");
        assert_drop(decide(stray_ack.as_bytes(), &meta_src()));
    }

    // ---- robustness ----

    fn lookup_any(n: &str) -> Option<PhoneTarget> {
        (n == NUMBER).then(|| phone(Some("s3cret")))
    }

    /// Parse + decide (both sides) + re-serialise: must never panic, and whatever is sent parses.
    fn run_all(bytes: &[u8]) {
        let _ = bad_request(bytes);
        let Ok(msg) = parse(bytes) else { return };
        let reparsed = parse(&message_bytes(&msg));
        assert_eq!(reparsed.as_ref().ok(), Some(&msg), "message_bytes/parse round trip");
        match msg {
            SipMessage::Request(req) => {
                for src in [meta_src(), pbx_src()] {
                    let cfg = cfg();
                    for d in
                        decide_request(req.clone(), &src, &cfg, &lookup_any, &Acl::meta_default(), &challenger(), NOW)
                    {
                        let out = match d {
                            Decision::Respond(r) => response_bytes(&r),
                            Decision::Forward { request, .. } => request_bytes(&request),
                            Decision::Drop { .. } => continue,
                        };
                        assert!(
                            parse(&out).is_ok(),
                            "we must only send parsable messages: {}",
                            String::from_utf8_lossy(&out)
                        );
                    }
                }
            }
            SipMessage::Response(resp) => {
                if let ResponseDecision::Forward { response, .. } = decide_response(resp, &cfg()) {
                    assert!(parse(&response_bytes(&response)).is_ok());
                }
            }
        }
    }

    fn bad_request(bytes: &[u8]) -> Option<Response> {
        let resp = crate::sip::message::bad_request_for(bytes)?;
        assert!(parse(&response_bytes(&resp)).is_ok());
        Some(resp)
    }

    fn seeds() -> Vec<Vec<u8>> {
        let (invite, _, _) = forwarded(&decide(&td::meta_invite(), &meta_src()));
        vec![
            td::meta_invite(),
            td::meta_cancel(),
            td::meta_bye_with_route(&[our_meta_rr(), our_pbx_rr()]),
            td::pbx_bye_with_route(&[our_pbx_rr(), our_meta_rr(), td::META_RR_1, td::META_RR_2]),
            td::pbx_200_for(&invite),
            td::options("sip:sip.example.com"),
            td::pbx_invite("sip:+15557654321@wa.meta.vc;transport=tls", NUMBER),
        ]
    }

    proptest! {
        // 512 cases per property by default; set PROPTEST_CASES for a longer run.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            run_all(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            seed in 0usize..7,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..12),
        ) {
            let mut bytes = seeds().swap_remove(seed);
            for (at, byte, op) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 => { bytes.remove(i); }
                    _ => bytes.truncate(i),
                }
            }
            run_all(&bytes);
        }

        #[test]
        fn mutated_header_lines_never_panic(
            seed in 0usize..7,
            line in any::<prop::sample::Index>(),
            replacement in "[ -~]{0,80}",
            duplicate in any::<bool>(),
        ) {
            let text = String::from_utf8(seeds().swap_remove(seed)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let mut lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
            let i = line.index(lines.len());
            if duplicate { let copy = lines[i].clone(); lines.insert(i, copy); }
            let name = lines[i].split_once(':').map(|(n, _)| n.to_string());
            lines[i] = match name { Some(n) if i > 0 => format!("{n}: {replacement}"), _ => replacement };
            run_all(format!("{}\r\n\r\n{body}", lines.join("\r\n")).as_bytes());
        }
    }

    #[test]
    fn corpus_files_run_through_parse_and_decide() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sip");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sip") {
                run_all(&std::fs::read(&path).unwrap());
                count += 1;
            }
        }
        assert!(count >= 8, "expected the seed corpus in {}, found {count} files", dir.display());
    }
}
