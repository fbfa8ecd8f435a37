//! A valid [`Message`] as the body of Meta's `POST /{phone-number-id}/messages` (reference meta-messaging.md
//! §5.1–5.5), without `messaging_product`, `recipient_type` and `to`, which the sender adds with
//! `biz_opaque_callback_data` (`outbound::sender::graph_body`). Pure: a template is resolved against the synced
//! definitions passed in, in the recipient's language by the notifications' fallback chain.

use serde_json::{json, Map, Value};

use super::{Action, Content, Header, HeaderKind, Interactive, Message, Source, Template};
use crate::registry::FieldError;
use crate::translate::template::{self, Extras, HeaderMedia, TemplateDef, TemplateError};

/// The request of a send, and the template language chosen (templates only).
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub request: Value,
    pub language: Option<String>,
}

/// The Graph request for `m`; `defs` are the WABA's synced templates (only templates need them). A template that
/// cannot be sent as asked is a field error naming the request field to change.
pub fn request(m: &Message, defs: &[TemplateDef]) -> Result<Built, FieldError> {
    let kind = m.kind().as_str();
    let (object, language) = match &m.content {
        Content::Text { body, preview_url } => (json!({"body": body, "preview_url": preview_url}), None),
        Content::Media { kind, source, caption, filename, voice } => {
            let mut o = media(source);
            if let Some(c) = caption {
                o.insert("caption".into(), json!(c));
            }
            if let Some(f) = filename {
                o.insert("filename".into(), json!(f));
            }
            if *voice && *kind == super::Kind::Audio {
                o.insert("voice".into(), json!(true));
            }
            (Value::Object(o), None)
        }
        Content::Location { latitude, longitude, name, address } => {
            let mut o = Map::new();
            o.insert("latitude".into(), json!(latitude));
            o.insert("longitude".into(), json!(longitude));
            if let Some(n) = name {
                o.insert("name".into(), json!(n));
            }
            if let Some(a) = address {
                o.insert("address".into(), json!(a));
            }
            (Value::Object(o), None)
        }
        Content::Contacts(cards) => (cards.clone(), None),
        Content::Reaction { message_id, emoji } => (json!({"message_id": message_id, "emoji": emoji}), None),
        Content::Interactive(i) => (interactive(i), None),
        Content::Template(t) => {
            let (object, language) = template(defs, t)?;
            (object, Some(language))
        }
    };
    let mut request = Map::new();
    request.insert("type".into(), json!(kind));
    request.insert(kind.into(), object);
    if let Some(id) = &m.reply_to {
        request.insert("context".into(), json!({"message_id": id}));
    }
    Ok(Built { request: Value::Object(request), language })
}

fn media(source: &Source) -> Map<String, Value> {
    let mut o = Map::new();
    match source {
        Source::Id(id) => o.insert("id".into(), json!(id)),
        Source::Link(link) => o.insert("link".into(), json!(link)),
    };
    o
}

fn interactive(i: &Interactive) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!(i.kind.as_str()));
    if let Some(h) = &i.header {
        let header = match h {
            Header::Text(t) => json!({"type": "text", "text": t}),
            Header::Media { kind, source, filename } => {
                let name = match kind {
                    HeaderKind::Image => "image",
                    HeaderKind::Video => "video",
                    HeaderKind::Document => "document",
                    HeaderKind::Text => "text",
                };
                let mut m = media(source);
                if let Some(f) = filename {
                    m.insert("filename".into(), json!(f));
                }
                json!({"type": name, name: m})
            }
        };
        o.insert("header".into(), header);
    }
    if let Some(b) = &i.body {
        o.insert("body".into(), json!({"text": b}));
    }
    if let Some(f) = &i.footer {
        o.insert("footer".into(), json!({"text": f}));
    }
    let action = match &i.action {
        Action::Buttons(buttons) => json!({"buttons": buttons
            .iter()
            .map(|(id, title)| json!({"type": "reply", "reply": {"id": id, "title": title}}))
            .collect::<Vec<_>>()}),
        Action::List { button, sections } => {
            let sections: Vec<Value> = sections
                .iter()
                .map(|(title, rows)| {
                    let rows: Vec<Value> = rows
                        .iter()
                        .map(|(id, title, description)| {
                            let mut r = json!({"id": id, "title": title});
                            if let Some(d) = description {
                                r["description"] = json!(d);
                            }
                            r
                        })
                        .collect();
                    let mut s = Map::new();
                    if let Some(t) = title {
                        s.insert("title".into(), json!(t));
                    }
                    s.insert("rows".into(), Value::Array(rows));
                    Value::Object(s)
                })
                .collect();
            json!({"button": button, "sections": sections})
        }
        Action::CtaUrl { display_text, url } => {
            json!({"name": "cta_url", "parameters": {"display_text": display_text, "url": url}})
        }
        Action::SendLocation => json!({"name": "send_location"}),
        Action::CallPermissionRequest => json!({"name": "call_permission_request"}),
        Action::VoiceCall { display_text, ttl_minutes, payload } => {
            let mut p = Map::new();
            if let Some(d) = display_text {
                p.insert("display_text".into(), json!(d));
            }
            if let Some(t) = ttl_minutes {
                p.insert("ttl_minutes".into(), json!(t));
            }
            if let Some(pl) = payload {
                p.insert("payload".into(), json!(pl));
            }
            if p.is_empty() {
                json!({"name": "voice_call"})
            } else {
                json!({"name": "voice_call", "parameters": p})
            }
        }
    };
    o.insert("action".into(), action);
    Value::Object(o)
}

/// The Graph `template` object for a template send, and the language chosen: the approved languages of the
/// template, the request's locale through the fallback chain (`translate::locale::pick_language`), then the
/// definition's placeholders, header and buttons (`translate::template::build_with`).
pub fn template(defs: &[TemplateDef], t: &Template) -> Result<(Value, String), FieldError> {
    let (def, language) = template::choose(defs, &t.name, &t.locale).map_err(|e| FieldError {
        field: if e.is_about_locale() { "template.locale" } else { "template.name" }.into(),
        message: e.to_string(),
    })?;
    let extras = Extras {
        header: t.header.as_ref().map(|(s, _)| match s {
            Source::Id(id) => HeaderMedia::Id(id),
            Source::Link(link) => HeaderMedia::Link(link),
        }),
        filename: t.header.as_ref().and_then(|(_, f)| f.as_deref()),
        button_param: t.url_text.as_deref(),
        quick_replies: t.quick_replies.iter().map(|(i, p)| (*i, p.as_str())).collect(),
        coupon_code: t.coupon_code.as_deref(),
    };
    let object = template::build_with(def, &t.params, &extras).map_err(template_error)?;
    Ok((object, language))
}

/// A template that cannot be built from the request, naming the request field to change.
fn template_error(e: TemplateError) -> FieldError {
    use TemplateError as E;
    let field = match &e {
        E::MissingMediaLink { .. } | E::UnexpectedMediaLink { .. } => "template.header",
        E::InvalidMediaLink { .. } => "template.header.link",
        E::InvalidMediaId { .. } => "template.header.id",
        E::MissingButtonParam { .. } | E::UnexpectedButtonParam { .. } | E::MissingCode { .. } => "template.buttons",
        E::NotAQuickReply { .. } => "template.buttons",
        E::MissingCouponCode { .. } | E::UnexpectedCouponCode { .. } => "template.buttons",
        E::UnsupportedHeader { .. } | E::UnknownTemplate { .. } | E::LanguageMissing { .. } | E::NotApproved { .. } => {
            "template.name"
        }
        _ => "template.parameters",
    };
    let message = match &e {
        E::MissingMediaLink { name, language, kind, kind_word } => format!(
            "template {name:?} ({language}) has {kind} header: give header.link (a public https link) or header.id (an uploaded {kind_word})"
        ),
        E::UnexpectedMediaLink { name, language, kind } => {
            format!("template {name:?} ({language}) has {kind} header, so header cannot be used with it; remove it")
        }
        E::MissingButtonParam { name, language, button } => format!(
            "template {name:?} ({language}) has a link button (button {button}) whose address ends in a variable: \
             give {{\"type\": \"url\", \"text\": ...}} in buttons"
        ),
        E::UnexpectedButtonParam { name, language } => {
            format!("template {name:?} ({language}) has no link button with a variable part; remove the url button value")
        }
        E::MissingCode { name, language } => format!(
            "template {name:?} ({language}) has a one-time-password button but no code was given: give it as the first value of parameters or as a url button value"
        ),
        E::MissingCouponCode { name, language, button } => format!(
            "template {name:?} ({language}) has a copy-code button (button {button}): give {{\"type\": \"copy_code\", \"code\": ...}} in buttons"
        ),
        _ => e.to_string(),
    };
    FieldError { field: field.into(), message }
}
