//! Emulator of Meta's webhook delivery: signs bodies with the app secret exactly as sent, posts them to a
//! callback URL, retries non-200 answers with backoff (first retry immediate), sends duplicates on request,
//! and performs the verification GET that Meta makes when a callback URL is saved.

use std::time::Duration;

use crate::payloads::to_wire;
use crate::signature;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second retry; doubles after that (the first retry is immediate, as Meta's).
    pub base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, base: Duration::from_millis(50) }
    }
}

#[derive(Debug, Clone)]
pub struct MetaWebhookSender {
    client: reqwest::Client,
    app_secret: String,
    callback_url: String,
    pub retry: RetryPolicy,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// HTTP status of each attempt (0 when the connection failed).
    pub statuses: Vec<u16>,
    pub delivered: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("callback answered {0}")]
    Status(u16),
    #[error("callback answered 200 but not with the challenge (got {0:?})")]
    WrongChallenge(String),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}

impl MetaWebhookSender {
    pub fn new(callback_url: impl Into<String>, app_secret: impl Into<String>) -> Self {
        MetaWebhookSender {
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
            app_secret: app_secret.into(),
            callback_url: callback_url.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// The bytes Meta would put on the wire for `payload` (non-ASCII `\u`-escaped) and their signature header.
    pub fn sign(&self, payload: &serde_json::Value) -> (Vec<u8>, String) {
        let body = to_wire(payload);
        let sig = signature::sign(self.app_secret.as_bytes(), &body);
        (body, sig)
    }

    /// Posts raw bytes with a given signature header (or none), once, returning the HTTP status.
    pub async fn post_raw(&self, body: Vec<u8>, signature_header: Option<&str>) -> Result<u16, reqwest::Error> {
        let mut req = self.client.post(&self.callback_url).header("content-type", "application/json").body(body);
        if let Some(s) = signature_header {
            req = req.header("x-hub-signature-256", s);
        }
        Ok(req.send().await?.status().as_u16())
    }

    /// Delivers `payload` like Meta: signed, retried with backoff until a 200 or the attempts run out.
    pub async fn deliver(&self, payload: &serde_json::Value) -> Delivery {
        let (body, sig) = self.sign(payload);
        let mut statuses = Vec::new();
        for attempt in 0..self.retry.max_attempts {
            if attempt >= 2 {
                tokio::time::sleep(self.retry.base * 2u32.pow(attempt - 2)).await;
            }
            let status = self.post_raw(body.clone(), Some(&sig)).await.unwrap_or(0);
            statuses.push(status);
            if status == 200 {
                return Delivery { statuses, delivered: true };
            }
        }
        Delivery { statuses, delivered: false }
    }

    /// Delivers the same payload `times` times (Meta's duplicate deliveries).
    pub async fn deliver_duplicates(&self, payload: &serde_json::Value, times: usize) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(times);
        for _ in 0..times {
            out.push(self.deliver(payload).await);
        }
        out
    }

    /// The GET Meta sends when the callback URL is saved: succeeds only on 200 with the challenge echoed.
    pub async fn verify_callback(&self, verify_token: &str) -> Result<(), HandshakeError> {
        let challenge = format!("{}", rand::random::<u32>());
        let resp = self
            .client
            .get(&self.callback_url)
            .query(&[("hub.mode", "subscribe"), ("hub.challenge", &challenge), ("hub.verify_token", verify_token)])
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(HandshakeError::Status(status));
        }
        let text = resp.text().await?;
        if text != challenge {
            return Err(HandshakeError::WrongChallenge(text));
        }
        Ok(())
    }
}
