//! Inbound WhatsApp message → text for the CRM chat (Bitrix BBCode, reference bitrix24.md §2.5).
//!
//! Decisions:
//! - Customer text is shown as written, never interpreted: a `[` that starts something tag-like (`[b]`, `[/url]`,
//!   `[USER=1]`, `[SEND=..]` — the last would put a clickable command in the operator's chat) gets a zero-width
//!   space after it, and Bitrix's `#BR#` line-break code is broken the same way. Everything else is unchanged.
//! - A reply is preceded by the quoted text in Bitrix's documented quote form, one `>>` line per quoted line
//!   (`api-reference/chats/messages/index.md`, "Quoting"), when the caller knows the quoted text.
//! - Forwarded messages start with "Forwarded:"; messages from a Click-to-WhatsApp ad end with the ad's headline
//!   and link.
//! - Media: the file itself goes to the CRM as an attachment (see [`media_of`]); the text is the caption, or the
//!   document's file name when there is no caption, or empty.

use crate::meta::webhook::{CallPermissionReply, Content, InboundMessage, Interactive, Media};

use super::media_kind::MediaKind;

/// The text to post in the CRM chat for `m`. `quoted` is the text of the message it replies to (or reacts to),
/// when known.
pub fn crm_text(m: &InboundMessage, quoted: Option<&str>) -> String {
    let body = body_text(&m.content, quoted);
    let mut parts: Vec<String> = Vec::new();
    if let Some(ctx) = &m.context {
        if ctx.forwarded || ctx.frequently_forwarded {
            parts.push(if ctx.frequently_forwarded { "Forwarded many times:" } else { "Forwarded:" }.to_owned());
        }
        let is_reaction = matches!(m.content, Content::Reaction { .. });
        if let Some(q) = quoted.filter(|q| !q.trim().is_empty() && ctx.id.is_some() && !is_reaction) {
            parts.push(quote(q));
        }
    }
    parts.push(body);
    if let Some(r) = &m.referral {
        let what = [r.headline.as_deref(), r.source_url.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .map(escape)
            .collect::<Vec<_>>();
        if !what.is_empty() {
            parts.push(format!("(from the ad: {})", what.join(" ")));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join("\n")
}

/// The media object and kind of image, video, audio, document and sticker messages.
pub fn media_of(c: &Content) -> Option<(&Media, MediaKind)> {
    match c {
        Content::Image(m) => Some((m, MediaKind::Image)),
        Content::Video(m) => Some((m, MediaKind::Video)),
        Content::Audio(m) => Some((m, MediaKind::Audio)),
        Content::Document(m) => Some((m, MediaKind::Document)),
        Content::Sticker(m) => Some((m, MediaKind::Sticker)),
        _ => None,
    }
}

fn body_text(content: &Content, quoted: Option<&str>) -> String {
    match content {
        Content::Text { body } => escape(body),
        Content::Image(m) | Content::Video(m) | Content::Audio(m) | Content::Sticker(m) => {
            m.caption.as_deref().map(escape).unwrap_or_default()
        }
        Content::Document(m) => m.caption.as_deref().or(m.filename.as_deref()).map(escape).unwrap_or_default(),
        Content::Location { latitude, longitude, name, address, url } => {
            let label: Vec<String> =
                [name, address].into_iter().flatten().filter(|s| !s.trim().is_empty()).map(|s| escape(s)).collect();
            let mut out = format!("📍 {}", if label.is_empty() { "Location".to_owned() } else { label.join(", ") });
            out.push_str(&format!("\nhttps://maps.google.com/?q={latitude},{longitude}"));
            if let Some(u) = url.as_deref().filter(|u| !u.trim().is_empty()) {
                out.push('\n');
                out.push_str(&escape(u));
            }
            out
        }
        Content::Contacts(cards) => cards.iter().map(contact_card).collect::<Vec<_>>().join("\n\n"),
        Content::Interactive(i) => match i {
            Interactive::ButtonReply { title, .. } => format!("Button: {}", escape(title)),
            Interactive::ListReply { title, description, .. } => match description.as_deref().filter(|d| !d.is_empty())
            {
                Some(d) => format!("List choice: {} — {}", escape(title), escape(d)),
                None => format!("List choice: {}", escape(title)),
            },
            Interactive::NfmReply { name, body, response_json } => {
                flow_reply(name.as_deref(), body.as_deref(), response_json)
            }
            Interactive::CallPermissionReply(r) => call_permission(r),
            Interactive::Other(v) => {
                let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("unknown");
                format!("[unsupported interactive reply {}]", escape(kind))
            }
        },
        Content::Button { text, .. } => format!("Button: {}", escape(text)),
        Content::Reaction { emoji, .. } => {
            let target = quoted.filter(|q| !q.trim().is_empty()).map(|q| format!(": «{}»", escape(q.trim())));
            match (emoji.as_deref(), target) {
                (Some(e), Some(t)) => format!("reacted {} to{t}", escape(e)),
                (Some(e), None) => format!("reacted {} to a message", escape(e)),
                (None, Some(t)) => format!("removed the reaction from{t}"),
                (None, None) => "removed a reaction".to_owned(),
            }
        }
        Content::Order { catalog_id, text, items } => order(catalog_id, text.as_deref(), items),
        Content::System { body, kind, new_wa_id } => match (body.as_deref().filter(|b| !b.is_empty()), kind.as_deref())
        {
            (Some(b), _) => format!("System: {}", escape(b)),
            (None, Some("user_changed_number")) => match new_wa_id {
                Some(id) => format!("System: the customer changed their WhatsApp number to {}", escape(id)),
                None => "System: the customer changed their WhatsApp number".to_owned(),
            },
            (None, Some(k)) => format!("System: {}", escape(k)),
            (None, None) => "System message".to_owned(),
        },
        // Shown like this only when the edited or deleted message is not in the CRM to change (crm/changes.rs).
        Content::Edit { message, .. } => match edited_text(message) {
            t if t.is_empty() => "[the customer edited a message]".to_owned(),
            t => format!("[edited] {t}"),
        },
        Content::Revoke { .. } => "[the customer deleted a message]".to_owned(),
        Content::Unsupported { type_name } => format!("[unsupported message type {}]", escape(type_name)),
    }
}

/// The new text of an edited message (`edit.message`): its text, or its media's new caption.
pub fn edited_text(new: &Content) -> String {
    match new {
        Content::Unsupported { .. } | Content::Edit { .. } | Content::Revoke { .. } => String::new(),
        other => body_text(other, None),
    }
}

/// `[call permission: accepted, valid until 2025-07-22 12:23 UTC]`, `[call permission: rejected]`, …
pub fn call_permission(r: &CallPermissionReply) -> String {
    let until = r
        .expiration_timestamp
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let what = match (r.accepted, r.is_permanent, until) {
        (true, Some(true), _) => "accepted, permanently".to_owned(),
        (true, _, Some(u)) => format!("accepted, valid until {u}"),
        (true, _, None) => "accepted".to_owned(),
        (false, _, _) if r.response_source.as_deref() == Some("automatic") => {
            "rejected (revoked automatically after unanswered calls)".to_owned()
        }
        (false, _, _) => "rejected".to_owned(),
    };
    format!("[call permission: {what}]")
}

fn contact_card(card: &crate::meta::webhook::SharedContact) -> String {
    let str_at = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(escape)
    };
    let mut lines =
        vec![format!("Contact: {}", card.formatted_name.as_deref().map(escape).unwrap_or_else(|| "(no name)".into()))];
    for p in &card.phones {
        if let Some(phone) = p.phone.as_deref().or(p.wa_id.as_deref()) {
            let kind = p.kind.as_deref().map(|k| format!(" ({})", escape(k))).unwrap_or_default();
            lines.push(format!("Phone: {}{kind}", escape(phone)));
        }
    }
    for e in card.raw.get("emails").and_then(|v| v.as_array()).into_iter().flatten() {
        if let Some(email) = str_at(e, "email") {
            lines.push(format!("Email: {email}"));
        }
    }
    if let Some(org) = card.raw.get("org") {
        if let Some(company) = str_at(org, "company") {
            let title = str_at(org, "title").map(|t| format!(", {t}")).unwrap_or_default();
            lines.push(format!("Company: {company}{title}"));
        }
    }
    lines.join("\n")
}

fn flow_reply(name: Option<&str>, body: Option<&str>, response_json: &str) -> String {
    let mut lines = vec![match body.or(name).filter(|s| !s.trim().is_empty()) {
        Some(b) => format!("Form reply: {}", escape(b)),
        None => "Form reply".to_owned(),
    }];
    match serde_json::from_str::<serde_json::Value>(response_json) {
        Ok(serde_json::Value::Object(fields)) => {
            for (k, v) in fields.iter().filter(|(k, _)| k.as_str() != "flow_token") {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                lines.push(format!("{}: {}", escape(k), escape(&v)));
            }
        }
        _ if !response_json.trim().is_empty() => lines.push(escape(response_json)),
        _ => {}
    }
    lines.join("\n")
}

fn order(catalog_id: &str, text: Option<&str>, items: &[crate::meta::webhook::OrderItem]) -> String {
    let mut lines = vec![format!("🛒 Order from catalog {}:", escape(catalog_id))];
    let mut totals: Vec<(String, f64)> = Vec::new();
    for it in items {
        let line_total = it.item_price * it.quantity as f64;
        lines.push(format!(
            "• {} × {} at {} {} = {} {}",
            escape(&it.product_retailer_id),
            it.quantity,
            amount(it.item_price),
            escape(&it.currency),
            amount(line_total),
            escape(&it.currency)
        ));
        match totals.iter_mut().find(|(c, _)| *c == it.currency) {
            Some(t) => t.1 += line_total,
            None => totals.push((it.currency.clone(), line_total)),
        }
    }
    if !totals.is_empty() {
        let t: Vec<String> = totals.iter().map(|(c, v)| format!("{} {}", amount(*v), escape(c))).collect();
        lines.push(format!("Total: {}", t.join(" + ")));
    }
    if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
        lines.push(escape(t));
    }
    lines.join("\n")
}

/// Whole amounts without decimals, others with two.
fn amount(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Bitrix's `>>` quote, one per line.
fn quote(text: &str) -> String {
    escape(text.trim()).lines().map(|l| format!(">>{l}")).collect::<Vec<_>>().join("\n")
}

/// Neutralises BBCode in customer text (see the module doc).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        let tag_like = match c {
            '[' => chars.peek().is_some_and(|&(_, n)| n == '/' || n.is_ascii_alphabetic()),
            '#' => text[i + 1..].get(..3).is_some_and(|s| s.eq_ignore_ascii_case("br#")),
            _ => false,
        };
        if tag_like {
            out.push('\u{200B}');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::webhook::{Context, OrderItem, Referral, SharedContact, SharedPhone};
    use serde_json::json;

    const ZW: char = '\u{200B}';

    fn msg(content: Content) -> InboundMessage {
        InboundMessage {
            id: "wamid.1".into(),
            from: Some("5511987654321".into()),
            from_user_id: None,
            timestamp: 1_767_800_000,
            context: None,
            referral: None,
            errors: vec![],
            content,
            raw: json!({}),
        }
    }

    fn media(caption: Option<&str>, filename: Option<&str>) -> Media {
        Media {
            id: "m1".into(),
            mime_type: Some("image/jpeg".into()),
            sha256: None,
            caption: caption.map(Into::into),
            filename: filename.map(Into::into),
            voice: None,
            animated: None,
            url: None,
        }
    }

    fn reply_ctx() -> Option<Context> {
        Some(Context {
            from: Some("15550783881".into()),
            id: Some("wamid.q".into()),
            forwarded: false,
            frequently_forwarded: false,
        })
    }

    #[test]
    fn text_and_escaping() {
        assert_eq!(crm_text(&msg(Content::Text { body: "Olá, quero agendar".into() }), None), "Olá, quero agendar");
        assert_eq!(
            crm_text(&msg(Content::Text { body: "[b]hi[/b] [SEND=x]go[/SEND] [1] a[ b #BR# #x".into() }), None),
            format!("[{ZW}b]hi[{ZW}/b] [{ZW}SEND=x]go[{ZW}/SEND] [1] a[ b #{ZW}BR# #x")
        );
        assert_eq!(escape("ü[ü"), "ü[ü");
    }

    #[test]
    fn reply_quotes_and_forwards() {
        let mut m = msg(Content::Text { body: "Yes, that one".into() });
        m.context = reply_ctx();
        assert_eq!(crm_text(&m, Some("Which size?\nS or M")), ">>Which size?\n>>S or M\nYes, that one");
        assert_eq!(crm_text(&m, None), "Yes, that one");
        assert_eq!(crm_text(&m, Some("  ")), "Yes, that one");
        m.context = Some(Context { from: None, id: None, forwarded: true, frequently_forwarded: false });
        assert_eq!(crm_text(&m, Some("ignored without a quoted id")), "Forwarded:\nYes, that one");
        m.context = Some(Context { from: None, id: None, forwarded: false, frequently_forwarded: true });
        assert_eq!(crm_text(&m, None), "Forwarded many times:\nYes, that one");
    }

    #[test]
    fn referral_line() {
        let mut m = msg(Content::Text { body: "Hi".into() });
        m.referral = Some(Referral {
            source_url: Some("https://fb.me/ad".into()),
            source_id: None,
            source_type: Some("ad".into()),
            body: None,
            headline: Some("Summer sale".into()),
            media_type: None,
            image_url: None,
            video_url: None,
            thumbnail_url: None,
            ctwa_clid: None,
        });
        assert_eq!(crm_text(&m, None), "Hi\n(from the ad: Summer sale https://fb.me/ad)");
    }

    #[test]
    fn media_texts_and_kinds() {
        let c = Content::Image(media(Some("Taj Mahal"), None));
        assert_eq!(crm_text(&msg(c.clone()), None), "Taj Mahal");
        assert_eq!(media_of(&c).map(|(m, k)| (m.id.as_str(), k)), Some(("m1", MediaKind::Image)));
        assert_eq!(crm_text(&msg(Content::Audio(media(None, None))), None), "");
        assert_eq!(crm_text(&msg(Content::Document(media(None, Some("[x].pdf")))), None), format!("[{ZW}x].pdf"));
        assert_eq!(crm_text(&msg(Content::Document(media(Some("see"), Some("a.pdf")))), None), "see");
        for (c, k) in [
            (Content::Video(media(None, None)), MediaKind::Video),
            (Content::Audio(media(None, None)), MediaKind::Audio),
            (Content::Document(media(None, None)), MediaKind::Document),
            (Content::Sticker(media(None, None)), MediaKind::Sticker),
        ] {
            assert_eq!(media_of(&c).map(|(_, k)| k), Some(k));
        }
        assert!(media_of(&Content::Text { body: "x".into() }).is_none());
    }

    #[test]
    fn location() {
        let c = Content::Location {
            latitude: -23.5505,
            longitude: -46.6333,
            name: Some("Loja Centro".into()),
            address: Some("Rua A, 1".into()),
            url: None,
        };
        assert_eq!(crm_text(&msg(c), None), "📍 Loja Centro, Rua A, 1\nhttps://maps.google.com/?q=-23.5505,-46.6333");
        let c = Content::Location {
            latitude: 1.0,
            longitude: 2.5,
            name: None,
            address: None,
            url: Some("https://x.example".into()),
        };
        assert_eq!(crm_text(&msg(c), None), "📍 Location\nhttps://maps.google.com/?q=1,2.5\nhttps://x.example");
    }

    #[test]
    fn contacts() {
        let card = SharedContact {
            formatted_name: Some("Maria Souza".into()),
            phones: vec![
                SharedPhone {
                    phone: Some("+55 11 98765-4321".into()),
                    wa_id: Some("5511987654321".into()),
                    kind: Some("CELL".into()),
                },
                SharedPhone { phone: None, wa_id: Some("5511".into()), kind: None },
                SharedPhone { phone: None, wa_id: None, kind: Some("HOME".into()) },
            ],
            raw: json!({"emails":[{"email":"maria@example.com","type":"WORK"},{"type":"HOME"}],
                        "org":{"company":"ACME","title":"Buyer"}}),
        };
        let bare = SharedContact { formatted_name: None, phones: vec![], raw: json!({}) };
        assert_eq!(
            crm_text(&msg(Content::Contacts(vec![card, bare])), None),
            "Contact: Maria Souza\nPhone: +55 11 98765-4321 (CELL)\nPhone: 5511\nEmail: maria@example.com\nCompany: ACME, Buyer\n\nContact: (no name)"
        );
    }

    #[test]
    fn interactive_and_buttons() {
        let t = |i: Interactive| crm_text(&msg(Content::Interactive(i)), None);
        assert_eq!(t(Interactive::ButtonReply { id: "cancel".into(), title: "Cancel".into() }), "Button: Cancel");
        assert_eq!(
            t(Interactive::ListReply { id: "r".into(), title: "Express".into(), description: Some("Next day".into()) }),
            "List choice: Express — Next day"
        );
        assert_eq!(
            t(Interactive::ListReply { id: "r".into(), title: "Express".into(), description: None }),
            "List choice: Express"
        );
        assert_eq!(
            t(Interactive::NfmReply {
                name: Some("flow".into()),
                body: Some("Sent".into()),
                response_json: r#"{"flow_token":"t","size":"M","qty":2}"#.into()
            }),
            "Form reply: Sent\nqty: 2\nsize: M"
        );
        assert_eq!(
            t(Interactive::NfmReply { name: None, body: None, response_json: "not json".into() }),
            "Form reply\nnot json"
        );
        assert_eq!(
            t(Interactive::Other(json!({"type":"product_reply"}))),
            "[unsupported interactive reply product_reply]"
        );
        assert_eq!(
            crm_text(&msg(Content::Button { payload: Some("STOP".into()), text: "Stop promotions".into() }), None),
            "Button: Stop promotions"
        );
    }

    #[test]
    fn edits_revokes_and_call_permissions() {
        let edit = |c: Content| {
            crm_text(&msg(Content::Edit { original_message_id: "wamid.o".into(), message: Box::new(c) }), None)
        };
        assert_eq!(edit(Content::Text { body: "new [b]text".into() }), format!("[edited] new [{ZW}b]text"));
        assert_eq!(edit(Content::Image(media(Some("new caption"), None))), "[edited] new caption");
        assert_eq!(edit(Content::Unsupported { type_name: "unknown".into() }), "[the customer edited a message]");
        assert_eq!(edited_text(&Content::Text { body: "plain".into() }), "plain");
        assert_eq!(
            crm_text(&msg(Content::Revoke { original_message_id: "wamid.o".into() }), None),
            "[the customer deleted a message]"
        );
        let reply = |accepted: bool, permanent: Option<bool>, exp: Option<i64>, source: Option<&str>| {
            crm_text(
                &msg(Content::Interactive(Interactive::CallPermissionReply(CallPermissionReply {
                    accepted,
                    response: if accepted { "accept" } else { "reject" }.into(),
                    is_permanent: permanent,
                    expiration_timestamp: exp,
                    response_source: source.map(Into::into),
                }))),
                None,
            )
        };
        assert_eq!(
            reply(true, None, Some(1_753_186_982), Some("user_action")),
            "[call permission: accepted, valid until 2025-07-22 12:23 UTC]"
        );
        assert_eq!(reply(true, Some(true), None, None), "[call permission: accepted, permanently]");
        assert_eq!(reply(true, None, None, None), "[call permission: accepted]");
        assert_eq!(reply(false, None, None, Some("user_action")), "[call permission: rejected]");
        assert_eq!(
            reply(false, None, None, Some("automatic")),
            "[call permission: rejected (revoked automatically after unanswered calls)]"
        );
    }

    #[test]
    fn reactions() {
        let r = |emoji: Option<&str>| {
            let mut m = msg(Content::Reaction { message_id: "wamid.q".into(), emoji: emoji.map(Into::into) });
            m.context = reply_ctx();
            m
        };
        assert_eq!(crm_text(&r(Some("👍")), Some("Your order is ready")), "reacted 👍 to: «Your order is ready»");
        assert_eq!(crm_text(&r(Some("👍")), None), "reacted 👍 to a message");
        assert_eq!(crm_text(&r(None), Some("Your order is ready")), "removed the reaction from: «Your order is ready»");
        assert_eq!(crm_text(&r(None), None), "removed a reaction");
    }

    #[test]
    fn orders() {
        let item = |id: &str, q: i64, p: f64, c: &str| OrderItem {
            product_retailer_id: id.into(),
            quantity: q,
            item_price: p,
            currency: c.into(),
        };
        let c = Content::Order {
            catalog_id: "cat1".into(),
            text: Some("please gift wrap".into()),
            items: vec![item("SKU-1", 2, 10.5, "EUR"), item("SKU-2", 1, 3.0, "EUR")],
        };
        assert_eq!(
            crm_text(&msg(c), None),
            "🛒 Order from catalog cat1:\n• SKU-1 × 2 at 10.50 EUR = 21 EUR\n• SKU-2 × 1 at 3 EUR = 3 EUR\nTotal: 24 EUR\nplease gift wrap"
        );
        let c = Content::Order {
            catalog_id: "c".into(),
            text: Some(String::new()),
            items: vec![item("A", 1, 1.25, "USD"), item("B", 1, 2.0, "BRL")],
        };
        assert!(crm_text(&msg(c), None).ends_with("Total: 1.25 USD + 2 BRL"));
    }

    #[test]
    fn system_and_unsupported() {
        let s = |body: Option<&str>, kind: Option<&str>, id: Option<&str>| {
            crm_text(
                &msg(Content::System {
                    body: body.map(Into::into),
                    kind: kind.map(Into::into),
                    new_wa_id: id.map(Into::into),
                }),
                None,
            )
        };
        assert_eq!(
            s(Some("User A changed from 1 to 2"), Some("user_changed_number"), Some("2")),
            "System: User A changed from 1 to 2"
        );
        assert_eq!(
            s(None, Some("user_changed_number"), Some("12195555358")),
            "System: the customer changed their WhatsApp number to 12195555358"
        );
        assert_eq!(s(None, Some("user_changed_number"), None), "System: the customer changed their WhatsApp number");
        assert_eq!(s(None, Some("customer_identity_changed"), None), "System: customer_identity_changed");
        assert_eq!(s(None, None, None), "System message");
        assert_eq!(
            crm_text(&msg(Content::Unsupported { type_name: "unknown".into() }), None),
            "[unsupported message type unknown]"
        );
        assert_eq!(
            crm_text(&msg(Content::Unsupported { type_name: "poll".into() }), None),
            "[unsupported message type poll]"
        );
    }
}
