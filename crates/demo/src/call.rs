//! The demo's call step: a WhatsApp user calls the business number. Meta's side (the sandbox's `MetaCaller`)
//! dials the SIP server configured on the number over TLS, wabridge's SIP edge relays the call to the business's
//! Asterisk (SIPp playing `tests/sipp/uas_answer.xml`), the PBX answers, the caller hangs up; the call shows in
//! wabridge's calls list and as `call.started`/`call.ended` events at a subscribed endpoint.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::sip::caller::{self, MetaCaller, WHATSAPP_USER};
use wabridge_sandbox::sip::sipp::Sipp;
use wabridge_sandbox::sip::text::{first_line, header, headers, status};

use crate::{show, until, Admin};

/// SIPp's scenario: rings, answers with an SDES-SRTP Opus answer, waits for ACK, then for the caller's BYE.
const UAS_SCENARIO: &str = include_str!("../../../tests/sipp/uas_answer.xml");

/// The SIP host name configured at Meta for the demo number (`.test` is reserved: no DNS answers for it; Meta's
/// side here looks it up in the demo's own table, [`resolve`]).
pub const SIP_HOST: &str = "sip.wabridge.test";

/// What the call step needs from the configuration, made before wabridge starts.
pub struct EdgeSetup {
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A development certificate for [`SIP_HOST`] (as `wabridge certs dev --host sip.wabridge.test` writes it) and
/// a free local port for the edge's TLS listener (asked of the system, then handed to wabridge).
pub fn prepare_edge(dir: &Path) -> anyhow::Result<EdgeSetup> {
    let (cert, key) = wabridge::edge::tls::write_dev_pair(SIP_HOST, &dir.join("certs"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(EdgeSetup { port, cert, key })
}

/// The SIP edge settings of the demo: TLS for Meta on 127.0.0.1:`port` with the development certificate, Meta
/// trusted from 127.0.0.1, UDP toward the PBX on a system-chosen local port; events may go to a local endpoint.
pub fn configure(config: &mut wabridge::Config, edge: &EdgeSetup) {
    config.sip_enabled = true;
    config.sip_listen = format!("127.0.0.1:{}", edge.port);
    config.sip_public_host = format!("{SIP_HOST}:{}", edge.port);
    config.sip_cert_file = edge.cert.clone();
    config.sip_key_file = edge.key.clone();
    config.sip_trusted_networks = vec!["127.0.0.1/32".into()];
    config.sip_pbx_udp_listen = "127.0.0.1:0".into();
    config.sip_pbx_tcp_listen = String::new();
    config.events_allow_private_urls = true;
}

/// The shop's endpoint for event webhooks: collects what wabridge posts.
struct EventSink {
    url: String,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl EventSink {
    async fn start() -> anyhow::Result<EventSink> {
        let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/wa-events",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    if let (Ok(v), Ok(mut g)) = (serde_json::from_slice::<Value>(&body), sink.lock()) {
                        g.push((id, v));
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/wa-events", listener.local_addr()?);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(EventSink { url, got, _stop: stop })
    }

    fn event(&self, kind: &str) -> Option<(String, Value)> {
        self.got.lock().ok()?.iter().find(|(_, v)| v["type"] == kind).cloned()
    }
}

/// What the PBX (SIPp, `-trace_msg`) logged of the messages it received and sent, as ladder lines: each message's
/// first line, once.
struct PbxLog {
    path: PathBuf,
    shown: usize,
}

impl PbxLog {
    /// Every complete message in the log so far, as ladder lines.
    fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut all = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let arrow = if line.contains("message received") {
                "edge -> PBX   "
            } else if line.contains("message sent") {
                "PBX -> edge   "
            } else {
                continue;
            };
            // The message follows after a blank line; a message still being written ends the list.
            match lines.by_ref().find(|l| !l.trim().is_empty()) {
                Some(first) if first.starts_with(|c: char| c.is_ascii_uppercase()) => {
                    all.push(format!("{arrow} {}", first.trim_end_matches(" SIP/2.0")));
                }
                _ => break,
            }
        }
        all
    }

    /// Shows the lines not shown yet up to the first that starts with `what` (spaces aside), waiting for SIPp to
    /// log it (10 s at most), so that the ladder is in causal order.
    async fn show_through(&mut self, what: &str) -> anyhow::Result<()> {
        let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let lines = self.lines();
            let fresh = lines.get(self.shown..).unwrap_or_default();
            if let Some(i) = fresh.iter().position(|l| squeeze(l).starts_with(what)) {
                for line in &fresh[..=i] {
                    show(line);
                }
                self.shown += i + 1;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the PBX never logged {what:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await; // polling SIPp's log with a deadline
        }
    }
}

/// The demo's number: its admin API path, Meta's ids for it and its app, and the number (`+E164`).
pub struct Number<'a> {
    pub path: &'a str,
    pub pnid: &'a str,
    pub app: &'a str,
    pub e164: &'a str,
}

/// The call step, with wabridge started with [`configure`]d `setup`; SIPp's files go into `dir`.
pub async fn play(
    admin: &Admin,
    svc: &wabridge::Service,
    graph: &GraphSandbox,
    number: &Number<'_>,
    setup: &EdgeSetup,
    dir: &Path,
) -> anyhow::Result<()> {
    let edge = svc.edge.as_ref().context("the SIP edge runs")?;
    let (phone_path, pnid) = (number.path, number.pnid);
    let post = reqwest::Method::POST;
    show(format!(
        "SIP edge: TLS on {} (certificate for {SIP_HOST}, as `wabridge certs dev --host {SIP_HOST}` makes), \
         UDP toward the PBX on {}",
        edge.tls_addr,
        edge.udp_addr.map(|a| a.to_string()).unwrap_or_default()
    ));

    // Calling on the number, at Meta (the Graph sandbox): the activation flow of docs/calling.md.
    let body = json!({"enabled": true, "sip_host": SIP_HOST, "sip_port": edge.tls_addr.port()});
    let phone = admin.call(post.clone(), &format!("{phone_path}/calling"), Some(body.clone())).await?;
    let c = &phone["calling"];
    show(format!("POST /admin/api/v1{phone_path}/calling {body}"));
    show(format!(
        "calling enabled at Meta: status {}, SIP {} -> {}:{}, SRTP {}, Meta's SIP password kept sealed ({}), digest \
         challenge {}",
        c["status"],
        c["sip_status"],
        c["sip_host"].as_str().unwrap_or(""),
        c["sip_port"],
        c["srtp_key_exchange"],
        c["sip_password"].as_str().unwrap_or(""),
        if c["digest_active"] == true { "on" } else { "off" }
    ));

    // The business's Asterisk: SIPp answering one call on a local UDP port.
    let scenario = dir.join("sipp").join("uas_answer.xml");
    std::fs::create_dir_all(scenario.parent().context("a directory")?)?;
    std::fs::write(&scenario, UAS_SCENARIO)?;
    let log = dir.join("sipp").join("messages.log");
    let log_arg = log.to_string_lossy().into_owned();
    let mut pbx = PbxLog { path: log.clone(), shown: 0 };
    let sipp = Sipp::uas_from(
        &scenario,
        "u1",
        wabridge_sandbox::sip::sipp::free_port(),
        &["-trace_msg", "-message_file", &log_arg],
    )
    .map_err(anyhow::Error::msg)?;
    let target = format!("udp:127.0.0.1:{}", sipp.port);
    admin.call(reqwest::Method::PATCH, phone_path, Some(json!({"asterisk_target": target}))).await?;
    edge.refresh_phones().await; // the edge re-reads phones every 2 s by itself; no need to wait here
    show(format!(
        "the PBX: SIPp (pid {}) answering on 127.0.0.1:{}; the phone's asterisk_target = {target}",
        sipp.pid(),
        sipp.port
    ));

    let events = EventSink::start().await?;
    admin
        .call(
            post.clone(),
            "/event-subscriptions",
            Some(json!({"url": events.url, "event_types": ["call.started", "call.ended"], "description": "demo shop"})),
        )
        .await?;
    show(format!("the shop subscribed {} to call.started and call.ended", events.url));

    // Meta dials the SIP server configured on the number.
    let settings = graph.settings(pnid).context("the number's settings at Meta")?;
    let server = &settings["calling"]["sip"]["servers"][0];
    let (host, port) = (server["hostname"].as_str().unwrap_or_default(), server["port"].as_u64().unwrap_or(5061));
    let addr = resolve(host, port, edge.tls_addr)?;
    // Meta trusts the demo's certificate here; in production it needs a publicly trusted one.
    let tls = caller::client_config(&setup.cert)?;
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut meta = MetaCaller::connect(addr, from, host, tls, number.e164).await?;
    show(format!(
        "Meta dials the number's SIP server {host}:{port} ({addr}) over TLS from {} and verifies the certificate \
         for {host}",
        meta.leg.local.ip()
    ));

    let call = "demo-1";
    let started = Instant::now();
    meta.send(&meta.leg.invite(call, 1, None)).await?;
    show(format!(
        "Meta -> edge   INVITE {} (from +{WHATSAPP_USER}, SDP offer: Opus, SDES-SRTP)",
        meta.leg.request_uri()
    ));
    let challenge = meta.response_seeing(407, |m| show(format!("edge -> Meta   {}", first_line(m)))).await?;
    let algorithms: Vec<&str> = headers(&challenge, "proxy-authenticate", "")
        .into_iter()
        .filter_map(|v| v.split("algorithm=").nth(1)?.split(',').next())
        .collect();
    show(format!("edge -> Meta   {} (digest, {})", first_line(&challenge), algorithms.join(" or ")));
    meta.send(&meta.leg.ack_final(&challenge, call, 1)).await?;
    let password = graph.sip_password(pnid, number.app).context("Meta has the number's SIP password")?;
    let invite = meta.leg.invite_with_credentials(&challenge, call, 2, &password).context("answering the challenge")?;
    meta.send(&invite).await?;
    show("Meta -> edge   INVITE again, with Proxy-Authorization (username = the number, Meta's SIP password)");
    // Each answer the edge relays was sent by the PBX first: its side of the ladder is shown up to that message.
    let ok = loop {
        let msg = meta.recv().await.context("the edge answered nothing more within 5 s")?;
        match status(&msg) {
            Some(100) => show(format!("edge -> Meta   {}", first_line(&msg))),
            Some(code @ 101..=199) => {
                pbx.show_through(&format!("PBX -> edge SIP/2.0 {code}")).await?;
                show(format!("edge -> Meta   {}", first_line(&msg)));
            }
            Some(200) => {
                pbx.show_through("PBX -> edge SIP/2.0 200").await?;
                break msg;
            }
            _ => bail!("the call failed: {}", first_line(&msg)),
        }
    };
    let media = ok.split("\r\n").find(|l| l.starts_with("m=audio")).unwrap_or("no SDP").to_string();
    show(format!("edge -> Meta   {} (the PBX's SDP answer: {media})", first_line(&ok)));
    meta.send(&meta.leg.in_dialog("ACK", &ok, call, 2, "")?).await?;
    show("Meta -> edge   ACK (routed by the edge's Record-Route entry, signed for this dialog)");
    pbx.show_through("edge -> PBX ACK").await?;

    until("the call is recorded as answered", || async {
        first_call(admin).await.is_some_and(|c| !c["answered_at"].is_null())
    })
    .await?;
    let record = first_call(admin).await.context("the call record")?;
    show(format!("calls list: {}", describe(&record)));

    let secs = started.elapsed().as_secs();
    let extra = format!("x-wa-meta-wacid: wacid.{call}\r\nx-wa-meta-call-duration: {secs}\r\n");
    meta.send(&meta.leg.in_dialog("BYE", &ok, call, 3, &extra)?).await?;
    show("Meta -> edge   BYE (the WhatsApp user hung up)");
    let bye_ok = meta.response(200).await?;
    pbx.show_through("PBX -> edge SIP/2.0 200").await?;
    let finished = tokio::task::spawn_blocking(move || sipp.finished_ok()).await?;
    show(format!("edge -> Meta   {} ({})", first_line(&bye_ok), header(&bye_ok, "cseq").unwrap_or_default()));
    if !finished {
        bail!("SIPp (the PBX) did not see the call through as scripted");
    }
    show("the PBX saw the whole call as scripted (SIPp exited 0)");

    until("the call is recorded as ended", || async {
        first_call(admin).await.is_some_and(|c| !c["hangup_by"].is_null())
    })
    .await?;
    let record = first_call(admin).await.context("the call record")?;
    show(format!("calls list: {}", describe(&record)));
    show(format!("  the same list in the console: {}/admin/calls", admin.base));

    until("the shop got call.started and call.ended", || async {
        events.event("call.started").is_some() && events.event("call.ended").is_some()
    })
    .await?;
    for kind in ["call.started", "call.ended"] {
        if let Some((id, body)) = events.event(kind) {
            show(format!("event {kind} delivered to the shop (webhook-id {id}): {}", describe(&body["data"]["call"])));
        }
    }
    Ok(())
}

/// The demo's DNS for Meta: [`SIP_HOST`] at the port configured at Meta is the edge's listener.
fn resolve(host: &str, port: u64, edge: SocketAddr) -> anyhow::Result<SocketAddr> {
    if host != SIP_HOST || port != u64::from(edge.port()) {
        bail!("Meta has {host}:{port} as the number's SIP server, not the demo's edge ({SIP_HOST}:{})", edge.port());
    }
    Ok(edge)
}

async fn first_call(admin: &Admin) -> Option<Value> {
    admin.call(reqwest::Method::GET, "/calls", None).await.ok()?.as_array()?.first().cloned()
}

fn describe(c: &Value) -> String {
    let s = |k: &str| c[k].as_str().map(String::from).unwrap_or_else(|| c[k].to_string());
    let mut out = format!("{} {} {} -> {}", s("call_key"), s("direction"), s("caller"), s("callee"));
    if !c["final_status"].is_null() {
        out.push_str(&format!(", status {}", s("final_status")));
    }
    if !c["answered_at"].is_null() {
        out.push_str(&format!(", answered {}", s("answered_at")));
    }
    if c["hangup_by"].is_null() {
        out.push_str(", in progress");
    } else {
        out.push_str(&format!(", ended {}, {} s, hung up by {}", s("ended_at"), s("duration_seconds"), s("hangup_by")));
    }
    out
}
