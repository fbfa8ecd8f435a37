//! `wabridge-demo`: wabridge on a scratch SQLite database with the Meta and Bitrix24 emulators
//! (`wabridge-sandbox`) on local ports. It registers an app, a WABA, a phone and a portal, plays a short story
//! through the real service over real sockets, printing each step, then stays up for exploring until Ctrl-C.
//! When SIPp is installed the story ends with a WhatsApp call through the SIP edge to SIPp as the PBX
//! ([`call`]).
//!
//! cargo run -p wabridge-demo                      # or: cargo run -p wabridge-demo -- --listen 127.0.0.1:8090
//!
//! Everything wabridge talks to here is an emulator speaking the providers' documented wire formats: the
//! story's messages never leave the machine.

mod call;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use wabridge::config::Config;
use wabridge::Service;
use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "EAAG-demo-system-user-token";
const APP: &str = "1234567890";
const WABA: &str = "102290129340398";
const PNID: &str = "106540352242922";
const DISPLAY: &str = "5511930001234";
const CUSTOMER: &str = "5511987654321";
const SMS_CODE: &str = "wabridge_5511930001234";

/// wabridge with the Meta and Bitrix24 emulators, playing a scripted story; stays up until Ctrl-C.
#[derive(Parser)]
#[command(name = "wabridge-demo")]
struct Args {
    /// Address wabridge listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Play the story, then stop at once instead of waiting for Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

pub(crate) fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("\n[{n}] {text}");
}

pub(crate) fn show(text: impl AsRef<str>) {
    println!("    {}", text.as_ref());
}

/// Polls `cond` until it holds, for at most 20 s (the service's workers run the jobs in the background).
pub(crate) async fn until<F, Fut>(what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        if Instant::now() > deadline {
            bail!("gave up waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub(crate) struct Admin {
    http: reqwest::Client,
    pub(crate) base: String,
    token: String,
}

impl Admin {
    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}/admin/api/v1{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }
}

fn templates() -> Vec<Value> {
    let body = |t: &str| json!({"type": "BODY", "text": t});
    vec![
        json!({"name": "order_ready", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Hi {{1}}, your order {{2}} is ready.")]}),
        json!({"name": "order_ready", "language": "pt_BR", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Oi {{1}}, seu pedido {{2}} está pronto.")]}),
        json!({"name": "delivery_update", "language": "pt", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Olá {{1}}, sua entrega sai hoje.")]}),
        json!({"name": "delivery_update", "language": "en", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Hello {{1}}, your delivery leaves today.")]}),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut n = 0;
    let dir = tempfile::Builder::new().prefix("wabridge-demo-").tempdir()?;
    step(&mut n, "Starting the emulators of Meta's Graph API and of a Bitrix24 portal on local ports");
    let graph = GraphSandbox::start().await?;
    let bitrix = BitrixSandbox::start(BitrixOptions::default()).await?;
    show(format!("Meta (Graph API):  {}", graph.base_url()));
    show(format!("Bitrix24 portal:   {}", bitrix.client_endpoint()));

    step(&mut n, "Starting wabridge on a scratch SQLite database");
    let opts = bitrix.options();
    // The call step needs SIPp (the PBX); without it the rest of the story plays and the step says how to get it.
    let sipp = wabridge_sandbox::sip::sipp::installed();
    let edge = match sipp {
        Ok(()) => Some(call::prepare_edge(dir.path())?),
        Err(_) => None,
    };
    let mut config = Config {
        database_url: format!("sqlite://{}", dir.path().join("demo.db").display()),
        data_dir: dir.path().to_path_buf(),
        listen: args.listen.clone(),
        log: "warn".into(),
        graph_base_url: graph.base_url(),
        bitrix_oauth_url: bitrix.oauth_url(),
        bitrix_client_id: opts.client_id.clone(),
        bitrix_client_secret: Some(opts.client_secret.clone()),
        ..Config::default()
    };
    if let Some(edge) = &edge {
        call::configure(&mut config, edge);
    }
    let svc = Service::start(config).await.context("starting wabridge")?;
    let base = svc.url();
    let token = svc.new_admin_token.clone().context("a fresh database has a new admin token")?;
    show(format!("wabridge:          {base}   (database {})", dir.path().join("demo.db").display()));
    show(format!("admin API token:   {token}"));
    let admin = Admin { http: reqwest::Client::new(), base: base.clone(), token };

    // The story; Ctrl-C stops it wherever it is (SIPp, when running, is killed with it) and everything is stopped.
    let story = async {
        step(&mut n, "Registering a Meta app, its WABA and a phone number; installing the portal; binding the phone");
        graph.allow_token(TOKEN, APP);
        graph.set_app_secret(APP, SECRET);
        graph.add_number(PNID, DISPLAY, WABA);
        let webhook = format!("{base}/api/waba?app_id={APP}");
        graph.set_webhook(&webhook, SECRET);
        for t in templates() {
            graph.add_template(WABA, t);
        }
        let post = reqwest::Method::POST;
        let app = admin
            .call(
                post.clone(),
                "/apps",
                Some(json!({"meta_app_id": APP, "domain": "localhost", "app_secret": SECRET, "access_token": TOKEN})),
            )
            .await?;
        let waba = admin.call(post.clone(), "/wabas", Some(json!({"waba_id": WABA, "app": app["id"]}))).await?;
        let phone = admin
            .call(
                post.clone(),
                "/phones",
                Some(json!({"number": format!("+{DISPLAY}"), "phone_number_id": PNID, "waba": waba["id"]})),
            )
            .await?;
        let phone_path = format!("/phones/{}", phone["id"]);
        show(format!(
            "app {} (Meta {APP}), WABA {} (Meta {WABA}), phone {} (+{DISPLAY})",
            app["id"], waba["id"], phone["id"]
        ));
        show(format!("Meta posts webhooks to {webhook}"));
        let status =
            bitrix.install(&format!("{base}/api/bitrix/install")).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let portals = admin.call(reqwest::Method::GET, "/portals", None).await?;
        let portal = portals[0]["id"].clone();
        show(format!("portal {portal} installed (HTTP {status}), member_id {}", bitrix.member_id()));
        admin.call(reqwest::Method::PATCH, &phone_path, Some(json!({"portal": portal, "sms_service": true}))).await?;
        until("the open line is bound", || async {
            let p = admin.call(reqwest::Method::GET, &phone_path, None).await.unwrap_or(Value::Null);
            p["connector"]["status"] == "ok" && p["sms"]["status"] == "registered"
        })
        .await?;
        let bound = admin.call(reqwest::Method::GET, &phone_path, None).await?;
        let line: u64 = bound["connector"]["line_id"].as_str().and_then(|l| l.parse().ok()).context("line id")?;
        show(format!("phone bound to open line {line}; offered as the portal's SMS provider ({SMS_CODE})"));
        until("the templates are synced", || async {
            let t = admin.call(reqwest::Method::GET, &format!("/wabas/{}/templates", waba["id"]), None).await;
            t.is_ok_and(|t| t.as_array().is_some_and(|a| a.len() == templates().len()))
        })
        .await?;
        show(format!("{} templates synced from Meta", templates().len()));

        step(&mut n, "A customer writes on WhatsApp (Meta posts a signed webhook)");
        let text = "Olá! Meu pedido 77 já está pronto?";
        let value = p::messages_value(
            DISPLAY,
            PNID,
            vec![p::contact(CUSTOMER, "Maria Souza")],
            vec![p::text_message(CUSTOMER, &p::new_wamid(), unix_now(), text)],
        );
        let delivery = MetaWebhookSender::new(&webhook, SECRET).deliver(&p::envelope(WABA, "messages", value)).await;
        if !delivery.delivered {
            bail!("the webhook was not accepted: {:?}", delivery.statuses);
        }
        graph.customer_messaged(PNID, CUSTOMER);
        show(format!("Maria Souza (+{CUSTOMER}): {text:?}  -> wabridge answered {:?}", delivery.statuses));
        until("the message is on the CRM line", || async {
            bitrix.chat_messages().iter().any(|m| m.text.as_deref().is_some_and(|t| t.contains("pedido 77")))
        })
        .await?;
        show(format!("it appeared in the portal's open line {line} (imconnector.send.messages)"));

        step(&mut n, "The operator answers in the portal");
        let reply = "Oi Maria! Está pronto, pode retirar hoje.";
        bitrix.operator_reply(line, CUSTOMER, reply, vec![]).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        until("the answer reaches Meta", || async { !graph.sent_messages(PNID).is_empty() }).await?;
        show(format!("sent to WhatsApp through the Graph API: {reply:?}"));
        until("delivered and read marks reach the portal", || async {
            !bitrix.delivery_marks().is_empty() && !bitrix.reading_marks().is_empty()
        })
        .await?;
        show("Meta reported delivered and read; the marks appeared in the portal's chat");

        step(&mut n, "A CRM robot sends an \"SMS\" through the SMS provider: a WhatsApp template");
        let before = graph.sent_messages(PNID).len();
        let (status, message_id) = bitrix
            .robot_sms(SMS_CODE, "+55 11 98765-4321", "order_ready+pt_BR+Maria|77")
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        show(format!("robot's message 'order_ready+pt_BR+Maria|77' posted to wabridge (HTTP {status})"));
        until("the template reaches Meta", || async { graph.sent_messages(PNID).len() > before }).await?;
        let sent = graph.sent_messages(PNID).pop().context("sent")?;
        show(format!(
            "template {} ({}) sent to Meta",
            sent.body["template"]["name"], sent.body["template"]["language"]["code"]
        ));
        until("the portal hears it was delivered", || async {
            bitrix.sms_statuses().iter().any(|(m, s)| *m == message_id && s == "delivered")
        })
        .await?;
        show("the portal's SMS status moved to delivered");

        step(&mut n, "A shop's system sends a notification in pt_BR; the template exists in pt only");
        let key = admin.call(post.clone(), "/api-keys", Some(json!({"name": "demo shop"}))).await?;
        let key = key["key"].as_str().context("api key")?.to_string();
        let before = graph.sent_messages(PNID).len();
        let answer: Value = admin
            .http
            .post(format!("{base}/api/v1/notifications"))
            .bearer_auth(&key)
            .json(&json!({"from": format!("+{DISPLAY}"), "to": format!("+{CUSTOMER}"), "template": "delivery_update",
                      "locale": "pt_BR", "parameters": ["Maria"]}))
            .send()
            .await?
            .json()
            .await?;
        show(format!("POST /api/v1/notifications -> {answer}"));
        until("the notification reaches Meta", || async { graph.sent_messages(PNID).len() > before }).await?;
        let sent = graph.sent_messages(PNID).pop().context("sent")?;
        show(format!("sent in {} (pt_BR -> pt)", sent.body["template"]["language"]["code"]));

        match &edge {
            Some(edge) => {
                step(&mut n, "A WhatsApp user calls the business: Meta -> wabridge's SIP edge (TLS) -> the PBX (SIPp)");
                let number = call::Number { path: &phone_path, pnid: PNID, app: APP, e164: &format!("+{DISPLAY}") };
                call::play(&admin, &svc, &graph, &number, edge, dir.path()).await?;
            }
            None => step(
                &mut n,
                "A WhatsApp call through the SIP edge: skipped, SIPp is not installed (it plays the PBX: \
             `apt-get install sip-tester`, then run the demo again)",
            ),
        }
        anyhow::Ok(())
    };
    // One Ctrl-C listener for the story and the wait after it: a Ctrl-C in between is not lost.
    let ctrl_c = wabridge::service::shutdown_signal();
    tokio::pin!(ctrl_c);
    let outcome = tokio::select! {
        r = story => Some(r),
        _ = &mut ctrl_c => None,
    };
    match outcome {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            svc.stop().await?;
            return Err(e);
        }
        None => {
            println!("\nStopped (Ctrl-C); the scratch database is removed.");
            svc.stop().await?;
            return Ok(());
        }
    }

    println!("\nThe story is over; wabridge keeps running with everything above in its database.");
    println!("  Console:    {base}/admin/");
    println!("  Admin API:  {base}/admin/api/v1/openapi.json  (Authorization: Bearer <the token above>)");
    println!("  Health:     {base}/healthz   Metrics: {base}/metrics");
    if args.no_wait {
        svc.stop().await?;
        return Ok(());
    }
    println!("Press Ctrl-C to stop (the scratch database is removed).");
    ctrl_c.await;
    println!("\nStopped (Ctrl-C); the scratch database is removed.");
    svc.stop().await?;
    graph.stop().await;
    bitrix.stop().await;
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
