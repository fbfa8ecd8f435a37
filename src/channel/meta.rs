//! Meta's WhatsApp Cloud API as a [`Channel`]: the Graph client (`meta::graph`) for requests, the webhook parser
//! (`meta::webhook`) for inbound bodies and the error table (`meta::errors::classify`) for refusals.
//!
//! | Graph client result | [`Sent`] |
//! |---|---|
//! | `messages[0].id` in the answer | `Accepted { id: wamid }` |
//! | `{"success": true}` to a read mark | `Marked` |
//! | request sent, no answer (timeout, connection lost) | `Unanswered` (a read mark: `Unreachable`, resending it is harmless) |
//! | no connection, or an answer that is not Graph's | `Unreachable` |
//! | Meta's error envelope | `Refused` with `classify(status, code, Retry-After, attempts)` |

use std::time::Duration;

use serde_json::Value;

use super::{Channel, ChannelError, Media, Number, Refusal, Sent};
use crate::config::Config;
use crate::meta::errors::{classify, SendClass};
use crate::meta::graph::{self, GraphError};
use crate::meta::webhook::{self, Payload};

/// A verified Meta webhook body as our inbound model.
pub fn parse(body: &[u8]) -> Result<Payload, ChannelError> {
    webhook::parse(body).map_err(|e| ChannelError::Unreadable { channel: "Meta", reason: e.to_string() })
}

/// Meta's Cloud API, at the configured Graph base URL and version.
#[derive(Clone)]
pub struct MetaCloud {
    graph: graph::Client,
}

impl MetaCloud {
    pub fn new(graph: graph::Client) -> MetaCloud {
        MetaCloud { graph }
    }

    pub fn from_config(config: &Config) -> MetaCloud {
        MetaCloud::new(graph::Client::from_config(config))
    }

    /// The Graph client, for what is Meta's alone (templates, calling settings, token checks).
    pub fn graph(&self) -> &graph::Client {
        &self.graph
    }

    fn refused(&self, g: GraphError, attempts: i64) -> Sent {
        let retry_after = g.retry_after_secs.map(Duration::from_secs);
        let class = self.classify(g.http_status, Some(g.code), retry_after, attempts);
        Sent::Refused(Refusal { code: Some(g.code), class, detail: g.to_string(), details: g.details.clone() })
    }

    fn outcome(&self, result: Result<Sent, graph::Error>, attempts: i64) -> Sent {
        match result {
            Ok(sent) => sent,
            Err(graph::Error::Unknown { reason, .. }) => Sent::Unanswered { reason },
            Err(graph::Error::Graph(g)) => self.refused(g, attempts),
            Err(e @ graph::Error::Connection { .. }) | Err(e @ graph::Error::Protocol { .. }) => {
                Sent::Unreachable { reason: e.to_string() }
            }
        }
    }
}

impl Channel for MetaCloud {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn parse_inbound(&self, body: &[u8]) -> Result<Payload, ChannelError> {
        parse(body)
    }

    async fn send(&self, from: Number<'_>, body: &Value, timeout: Duration, attempts: i64) -> Sent {
        let result = self.graph.send_message(from.id, from.token, body, timeout).await;
        self.outcome(result.map(|a| Sent::Accepted { id: a.wamid }), attempts)
    }

    async fn mark_read(&self, from: Number<'_>, body: &Value, timeout: Duration, attempts: i64) -> Sent {
        match self.graph.mark_read(from.id, from.token, body, timeout).await {
            Ok(()) => Sent::Marked,
            // No status webhook will ever say whether Meta had it; sending it again is harmless.
            Err(graph::Error::Unknown { reason, .. }) => {
                Sent::Unreachable { reason: format!("no answer from Meta: {reason}") }
            }
            Err(e) => self.outcome(Err(e), attempts),
        }
    }

    async fn fetch_media(&self, from: Number<'_>, media_id: &str) -> Result<Media, ChannelError> {
        let info = self.graph.media_info(media_id, from.id, from.token).await?;
        let body = self.graph.download(&info.url, from.token).await?;
        Ok(Media { mime_type: info.mime_type, body })
    }

    fn classify(&self, http_status: u16, code: Option<i64>, retry_after: Option<Duration>, attempts: i64) -> SendClass {
        classify(http_status, code, retry_after, attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MetaCloud {
        MetaCloud::new(graph::Client::new("http://127.0.0.1:9", "v21.0"))
    }

    fn graph_error(http_status: u16, code: i64) -> GraphError {
        GraphError {
            http_status,
            code,
            message: format!("(#{code}) test"),
            kind: None,
            details: Some("details".into()),
            subcode: None,
            fbtrace_id: None,
            retry_after_secs: None,
        }
    }

    #[test]
    fn graph_results_become_our_outcomes() {
        let m = meta();
        let unknown = graph::Error::Unknown { url: "u".into(), reason: "timed out".into() };
        assert_eq!(m.outcome(Err(unknown), 1), Sent::Unanswered { reason: "timed out".into() });
        let conn = graph::Error::Connection { url: "u".into(), reason: "refused".into() };
        assert!(matches!(m.outcome(Err(conn), 1), Sent::Unreachable { .. }));
        let proto = graph::Error::Protocol { http_status: 502, message: "html".into() };
        assert!(matches!(m.outcome(Err(proto), 1), Sent::Unreachable { .. }));
        match m.outcome(Err(graph::Error::Graph(graph_error(400, 131047))), 1) {
            Sent::Refused(r) => {
                assert_eq!(r.code, Some(131047));
                assert!(matches!(r.class, SendClass::Permanent { code: 131047, .. }), "{r:?}");
                assert_eq!(r.details.as_deref(), Some("details"));
            }
            other => panic!("{other:?}"),
        }
        match m.outcome(Err(graph::Error::Graph(graph_error(401, 190))), 1) {
            Sent::Refused(r) => assert!(matches!(r.class, SendClass::TokenInvalid { code: 190, .. }), "{r:?}"),
            other => panic!("{other:?}"),
        }
        match m.outcome(Err(graph::Error::Graph(graph_error(400, 130429))), 1) {
            Sent::Refused(r) => assert!(r.class.is_retry(), "{r:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inbound_bodies_parse_or_say_why_not() {
        let m = meta();
        let ok = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        assert!(m.parse_inbound(ok).is_ok());
        let err = m.parse_inbound(b"not json").unwrap_err();
        assert!(err.to_string().starts_with("not a valid Meta payload"), "{err}");
    }
}
