//! A wabridge service wired to both sandboxes (Meta's Graph API and a Bitrix24 portal), with the standard
//! app, WABA and phone registered, the portal installed and the phone bound to it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wabridge::config::Config;
use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

use super::{Db, TestApp, TestDb};

pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "EAAG-system-user-token-0001";
pub const APP: &str = "1234567890";
pub const WABA: &str = "102290129340398";
pub const PNID: &str = "106540352242922";
pub const DISPLAY: &str = "5511930001234";
pub const CUSTOMER: &str = "5511987654321";

pub struct Bridged {
    pub app: TestApp,
    pub graph: GraphSandbox,
    pub bitrix: BitrixSandbox,
    pub phone_id: i64,
    pub portal_id: i64,
    pub line: u64,
}

/// The templates every test WABA has.
pub fn templates() -> Vec<Value> {
    let body = |t: &str| json!({"type": "BODY", "text": t});
    vec![
        json!({"name": "order_ready", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Hi {{1}}, your order {{2}} is ready.")]}),
        json!({"name": "order_ready", "language": "pt_BR", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Olá {{1}}, seu pedido {{2}} está pronto.")]}),
        json!({"name": "hello", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Hello! How can we help?")]}),
        json!({"name": "invoice", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [{"type": "HEADER", "format": "DOCUMENT"}, body("Hi {{1}}, your invoice is attached.")]}),
        json!({"name": "tracking", "language": "en", "status": "APPROVED", "category": "UTILITY",
               "components": [body("Hi {{1}}, track your parcel:"),
                              {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://t.example.com/p/{{1}}"}]}]}),
        json!({"name": "pending_one", "language": "en_US", "status": "PENDING", "category": "MARKETING",
               "components": [body("Soon")]}),
        json!({"name": "welcome", "language": "en", "status": "APPROVED", "category": "UTILITY",
               "parameter_format": "named", "components": [body("Welcome {{first_name}}, your code is {{code}}.")]}),
        // Language variants that disagree: the pt_BR text takes two parameters, the en_US one takes one.
        json!({"name": "promo", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
               "components": [body("Hi {{1}}, 10% off today.")]}),
        json!({"name": "promo", "language": "pt_BR", "status": "APPROVED", "category": "MARKETING",
               "components": [body("Oi {{1}}, {{2}}% de desconto hoje.")]}),
    ]
}

impl Bridged {
    pub async fn start(kind: Db) -> Bridged {
        Self::start_with(kind, |_| {}).await
    }

    pub async fn start_with(kind: Db, tweak: impl FnOnce(&mut Config)) -> Bridged {
        let graph = GraphSandbox::start().await.expect("graph sandbox");
        let bitrix = BitrixSandbox::start(BitrixOptions::default()).await.expect("bitrix sandbox");
        let db = TestDb::new(kind).await;
        let opts = bitrix.options();
        let app = TestApp::start_with(db, |c| {
            c.graph_base_url = graph.base_url();
            c.bitrix_oauth_url = bitrix.oauth_url();
            c.bitrix_client_id = opts.client_id.clone();
            c.bitrix_client_secret = Some(opts.client_secret.clone());
            c.send_timeout_ms = 1_000;
            c.send_reconcile_seconds = 3;
            tweak(c);
        })
        .await;
        graph.allow_token(TOKEN, APP);
        graph.add_number(PNID, DISPLAY, WABA);
        graph.set_webhook(&app.url(&format!("/api/waba?app_id={APP}")), SECRET);
        for t in templates() {
            graph.add_template(WABA, t);
        }
        let (_, _, phone) = app.seed(SECRET).await;
        let phone_id = phone["id"].as_i64().expect("phone id");
        let status = bitrix.install(&app.url("/api/bitrix/install")).await.expect("install posted");
        assert_eq!(status, 201, "install");
        let (_, portals) = app.admin("GET", "/portals", None).await;
        let portal_id = portals[0]["id"].as_i64().expect("portal id");
        let (s, body) = app.admin("PATCH", &format!("/phones/{phone_id}"), Some(json!({"portal": portal_id}))).await;
        assert_eq!(s, 200, "{body}");
        let mut me = Bridged { app, graph, bitrix, phone_id, portal_id, line: 0 };
        me.until("the line is bound", |b| async move { b.phone().await["connector"]["status"] == "ok" }).await;
        let phone = me.phone().await;
        me.line = phone["connector"]["line_id"].as_str().and_then(|l| l.parse().ok()).expect("line id");
        me
    }

    pub async fn phone(&self) -> Value {
        self.app.admin("GET", &format!("/phones/{}", self.phone_id), None).await.1
    }

    /// Runs due jobs until `cond` holds, for at most 15 s (peers answer asynchronously: status webhooks,
    /// paced sends). Panics with `what` when the deadline passes.
    pub async fn until<'a, F, Fut>(&'a self, what: &str, cond: F)
    where
        F: Fn(&'a Bridged) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.app.svc.engine().drain().await.expect("drain");
            if cond(self).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; chat notes: {:?}",
                self.system_messages()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs due jobs until nothing is due and no webhook is in flight for a short quiet period.
    pub async fn settle(&self) {
        let mut quiet = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        while quiet < 5 && Instant::now() < deadline {
            let d = self.app.svc.engine().drain().await.expect("drain");
            if d.done + d.retried + d.dead == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Meta posts a signed webhook with `messages` from the customer.
    pub async fn customer_says(&self, messages: Vec<Value>) {
        self.says(CUSTOMER, "Maria Souza", messages).await;
    }

    /// Meta posts a signed webhook with `messages` from customer `wa_id`.
    pub async fn says(&self, wa_id: &str, name: &str, messages: Vec<Value>) {
        let value = p::messages_value(DISPLAY, PNID, vec![p::contact(wa_id, name)], messages);
        let sender = MetaWebhookSender::new(self.app.url(&format!("/api/waba?app_id={APP}")), SECRET);
        let d = sender.deliver(&p::envelope(WABA, "messages", value)).await;
        assert!(d.delivered, "webhook accepted: {:?}", d.statuses);
        self.graph.customer_messaged(PNID, wa_id);
    }

    pub async fn customer_text(&self, text: &str) -> String {
        let wamid = p::new_wamid();
        self.customer_says(vec![p::text_message(CUSTOMER, &wamid, now_s(), text)]).await;
        wamid
    }

    /// An operator types in the customer's chat.
    pub async fn operator(&self, text: &str) -> u64 {
        let r = self.bitrix.operator_reply(self.line, CUSTOMER, text, vec![]).await.expect("operator reply posted");
        assert_eq!(r.status, 200, "operator reply accepted");
        r.message_id
    }

    /// Creates an API key for `/api/v1`.
    pub async fn api_key(&self) -> String {
        let (s, body) = self.app.admin("POST", "/api-keys", Some(json!({"name": "shop"}))).await;
        assert_eq!(s, 201, "{body}");
        body["key"].as_str().expect("key").to_string()
    }

    /// `POST /api/v1/notifications`; returns status and body.
    pub async fn notify(&self, key: &str, body: Value) -> (u16, Value) {
        let resp = self.app.http.post(self.app.url("/api/v1/notifications")).bearer_auth(key).json(&body).send().await;
        let resp = resp.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    /// A send as the admin API shows it.
    pub async fn send(&self, id: i64) -> Value {
        self.app.admin("GET", &format!("/sends/{id}"), None).await.1
    }

    /// Waits until the WABA's templates are synced (`n` of them).
    pub async fn templates_synced(&self) {
        let n = templates().len();
        self.until("templates synced", |b| async move {
            let (_, t) = b.app.admin("GET", "/wabas/1/templates", None).await;
            t.as_array().is_some_and(|a| a.len() == n)
        })
        .await;
    }

    /// The system messages posted into open-line chats (`im.message.add`).
    pub fn system_messages(&self) -> Vec<String> {
        self.bitrix
            .calls_of("im.message.add")
            .iter()
            .map(|c| c.params["MESSAGE"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub async fn stop(self) {
        self.app.stop().await;
        self.graph.stop().await;
        self.bitrix.stop().await;
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
