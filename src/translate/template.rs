//! Checks a template send (a command, or API parameters) against a synced template definition and builds the
//! Graph `template` object (reference meta-messaging.md §5.5, §7).
//!
//! - Placeholders: positional `{{1}}`, `{{2}}`, ... (a part needs as many values as its highest number) or named
//!   `{{first_name}}` (distinct names, in order of first appearance). A template is named when its
//!   `parameter_format` is `named` or any placeholder is not a number.
//! - Positional values ([`Params::Positional`]) fill the header-text placeholders first, then the body
//!   placeholders. For a named template they are matched to the names in that order too (header names, then body
//!   names not already in the header), so the chat command works for named templates.
//! - Named values ([`Params::Named`]) are only for named templates; each name must be given exactly once.
//!   A name used in both header and body gets the same value in both.
//! - Media headers (image, video, document) take the link given as `header_media`; a document also gets a
//!   `filename` from the link's last path segment. Location headers cannot be filled and are refused.
//! - Dynamic URL buttons (a `URL` button whose `url` contains `{{1}}`) take `button_param`; when a template has
//!   several, all get the same value. A one-time-password button (`OTP`) takes `button_param`, or else the
//!   first body value (the code), as Meta requires for authentication templates.
//! - Components without parameters are left out.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::command::{is_web_url, TemplateCommand};
use super::locale;

/// A template as synced from `GET /{waba-id}/message_templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateDef {
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: Option<String>,
    /// `components[]` as Meta lists them.
    pub components: Value,
    /// `positional` or `named`, when Meta gives it.
    pub parameter_format: Option<String>,
}

/// Values for a template's placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Params {
    Positional(Vec<String>),
    Named(Vec<(String, String)>),
}

/// The header of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderFormat {
    None,
    Text,
    Image,
    Video,
    Document,
    Location,
    /// A format this code does not know, as Meta wrote it.
    Other(String),
}

impl HeaderFormat {
    fn media(&self) -> Option<&'static str> {
        match self {
            HeaderFormat::Image => Some("image"),
            HeaderFormat::Video => Some("video"),
            HeaderFormat::Document => Some("document"),
            _ => None,
        }
    }
}

impl std::fmt::Display for HeaderFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderFormat::None => "no",
            HeaderFormat::Text => "a text",
            HeaderFormat::Image => "an image",
            HeaderFormat::Video => "a video",
            HeaderFormat::Document => "a document",
            HeaderFormat::Location => "a location",
            HeaderFormat::Other(s) => return write!(f, "a {s}"),
        })
    }
}

/// What a template needs to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    pub header: HeaderFormat,
    /// Header-text placeholders: `"1".."n"` for positional templates, names for named ones.
    pub header_params: Vec<String>,
    /// Body placeholders, the same way.
    pub body_params: Vec<String>,
    /// Button indices of URL buttons with a dynamic `{{1}}` suffix.
    pub url_buttons: Vec<usize>,
    /// Button indices of one-time-password buttons.
    pub otp_buttons: Vec<usize>,
    /// Button indices of quick-reply buttons (a payload may be given for each).
    pub quick_reply_buttons: Vec<usize>,
    /// Button indices of copy-code (coupon) buttons, which need the code.
    pub copy_code_buttons: Vec<usize>,
    pub named: bool,
}

impl Shape {
    /// Placeholders in the order positional values fill them, with where they are (`header {{1}}`).
    fn slots(&self) -> Vec<(&'static str, &str)> {
        let header = self.header_params.iter().map(|p| ("header", p.as_str()));
        if self.named {
            let body = self.body_params.iter().filter(|p| !self.header_params.contains(p));
            header.chain(body.map(|p| ("body", p.as_str()))).collect()
        } else {
            header.chain(self.body_params.iter().map(|p| ("body", p.as_str()))).collect()
        }
    }
}

/// Why a template cannot be sent as asked. The texts are shown to operators and API callers as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("There is no template named \"{name}\" on this WhatsApp account. {known}")]
    UnknownTemplate { name: String, known: String },
    #[error("Template \"{name}\" has no {language} version; it exists in {available}.")]
    LanguageMissing { name: String, language: String, available: String },
    #[error("Template \"{name}\" ({language}) cannot be sent because its status is {status}; only APPROVED templates can be sent.")]
    NotApproved { name: String, language: String, status: String },
    #[error("Template \"{name}\" ({language}) needs {needs}, but {} given.", were_given(*.given))]
    ParamCount { name: String, language: String, needs: String, given: usize },
    #[error("Template \"{name}\" ({language}) uses numbered parameters ({{{{1}}}}, {{{{2}}}}, ...), so give its values as a list in order, not by name.")]
    NamedForPositional { name: String, language: String },
    #[error("Template \"{name}\" ({language}) is missing values for {missing}.")]
    MissingNamed { name: String, language: String, missing: String },
    #[error("Template \"{name}\" ({language}) has no parameter {unknown}; its parameters are {expected}.")]
    UnknownNamed { name: String, language: String, unknown: String, expected: String },
    #[error("Template \"{name}\" ({language}): parameter {param} is given more than once.")]
    RepeatedNamed { name: String, language: String, param: String },
    #[error("Template \"{name}\" ({language}): the value for {param} is empty, and WhatsApp does not accept empty parameters.")]
    EmptyValue { name: String, language: String, param: String },
    #[error("Template \"{name}\" ({language}) has {kind} header: add file_link:URL with a public https link to the {kind_word}.")]
    MissingMediaLink { name: String, language: String, kind: HeaderFormat, kind_word: &'static str },
    #[error(
        "Template \"{name}\" ({language}) has {kind} header, so a file link cannot be used with it; remove file_link."
    )]
    UnexpectedMediaLink { name: String, language: String, kind: HeaderFormat },
    #[error("\"{link}\" is not a public http or https address, so it cannot be the header file of template \"{name}\" ({language}).")]
    InvalidMediaLink { name: String, language: String, link: String },
    #[error("Template \"{name}\" ({language}) has {kind} header, which wabridge cannot fill; send this template from WhatsApp Manager or give it another header.")]
    UnsupportedHeader { name: String, language: String, kind: HeaderFormat },
    #[error("Template \"{name}\" ({language}) has a link button (button {button}) whose address ends in a variable: add button_param:VALUE with the text for the end of the link.")]
    MissingButtonParam { name: String, language: String, button: usize },
    #[error("Template \"{name}\" ({language}) has no link button with a variable part, so button_param cannot be used with it; remove button_param.")]
    UnexpectedButtonParam { name: String, language: String },
    #[error("Template \"{name}\" ({language}) has a one-time-password button but no code was given: give the code as the first value or as button_param.")]
    MissingCode { name: String, language: String },
    #[error("\"{id}\" is not a media id (uploaded media ids are digits), so it cannot be the header file of template \"{name}\" ({language}).")]
    InvalidMediaId { name: String, language: String, id: String },
    #[error("Template \"{name}\" ({language}) has no quick-reply button at index {index}; its quick-reply buttons are at {available}.")]
    NotAQuickReply { name: String, language: String, index: usize, available: String },
    #[error("Template \"{name}\" ({language}) has a copy-code button (button {button}): give the coupon code for it.")]
    MissingCouponCode { name: String, language: String, button: usize },
    #[error("Template \"{name}\" ({language}) has no copy-code button, so a coupon code cannot be used with it.")]
    UnexpectedCouponCode { name: String, language: String },
}

/// A template header's media: a public link, or the id of media uploaded to the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMedia<'a> {
    Link(&'a str),
    Id(&'a str),
}

/// What a template send may give besides its placeholder values (the tenant API's `template` object; the chat
/// command gives only a header link and `button_param`).
#[derive(Debug, Clone, Default)]
pub struct Extras<'a> {
    /// The media of an image, video or document header.
    pub header: Option<HeaderMedia<'a>>,
    /// A document header's file name (default: the link's last path segment).
    pub filename: Option<&'a str>,
    /// The suffix of the dynamic URL buttons (and the code of a one-time-password button).
    pub button_param: Option<&'a str>,
    /// Payloads for quick-reply buttons, by button index (optional; Meta echoes them when tapped).
    pub quick_replies: Vec<(usize, &'a str)>,
    /// The coupon code of a copy-code button.
    pub coupon_code: Option<&'a str>,
}

fn were_given(n: usize) -> String {
    if n == 1 {
        "1 was".into()
    } else {
        format!("{n} were")
    }
}

/// The definition to send for `name` in `language` (codes compared after [`locale::normalize`]).
pub fn select<'a>(defs: &'a [TemplateDef], name: &str, language: &str) -> Result<&'a TemplateDef, TemplateError> {
    let named: Vec<&TemplateDef> = defs.iter().filter(|d| d.name == name).collect();
    if named.is_empty() {
        return Err(TemplateError::UnknownTemplate { name: name.to_owned(), known: known_names(defs) });
    }
    let mut versions: Vec<&TemplateDef> =
        named.iter().copied().filter(|d| locale::same(&d.language, language)).collect();
    if versions.is_empty() {
        let mut langs: Vec<&str> = named.iter().map(|d| d.language.as_str()).collect();
        langs.sort_unstable();
        langs.dedup();
        return Err(TemplateError::LanguageMissing {
            name: name.to_owned(),
            language: locale::normalize(language),
            available: join_or(&langs, "and"),
        });
    }
    versions.sort_by_key(|d| !is_approved(d));
    let def = versions[0];
    if !is_approved(def) {
        return Err(TemplateError::NotApproved {
            name: def.name.clone(),
            language: def.language.clone(),
            status: if def.status.trim().is_empty() { "unknown".into() } else { def.status.clone() },
        });
    }
    Ok(def)
}

/// Why no language of a template could be picked for a locale ([`choose`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChooseError {
    #[error("template {0:?} has no approved language")]
    NoneApproved(String),
    #[error("no template {0:?} is synced for this number's WABA")]
    Unknown(String),
    #[error("no approved language of {name:?} fits {locale:?}")]
    NoLanguage { name: String, locale: String },
    /// From [`select`].
    #[error("{0}")]
    Select(TemplateError),
}

impl ChooseError {
    /// True when the locale is what to change (the template exists and has approved languages).
    pub fn is_about_locale(&self) -> bool {
        matches!(self, ChooseError::NoLanguage { .. })
    }
}

/// The template `name` in the language that fits `locale` best among its approved ones (the notifications'
/// fallback chain, `locale::pick_language`), and that language.
pub fn choose<'a>(defs: &'a [TemplateDef], name: &str, locale: &str) -> Result<(&'a TemplateDef, String), ChooseError> {
    let approved: Vec<&str> =
        defs.iter().filter(|d| d.name == name && is_approved(d)).map(|d| d.language.as_str()).collect();
    if approved.is_empty() {
        return Err(if defs.iter().any(|d| d.name == name) {
            ChooseError::NoneApproved(name.to_owned())
        } else {
            ChooseError::Unknown(name.to_owned())
        });
    }
    let language = locale::pick_language(locale, &approved)
        .ok_or_else(|| ChooseError::NoLanguage { name: name.to_owned(), locale: locale.to_owned() })?;
    let def = select(defs, name, &language).map_err(ChooseError::Select)?;
    Ok((def, language))
}

fn is_approved(d: &TemplateDef) -> bool {
    d.status.eq_ignore_ascii_case("APPROVED")
}

fn known_names(defs: &[TemplateDef]) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => "No templates have been synced for it yet.".into(),
        n if n <= SHOWN => format!("Known templates: {}.", names.join(", ")),
        n => format!("Known templates include {} (and {} more).", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// "a, b and c".
fn join_or(items: &[&str], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// Reads what a template needs from its components.
pub fn analyse(def: &TemplateDef) -> Shape {
    let mut header = HeaderFormat::None;
    let mut header_raw = Vec::new();
    let mut body_raw = Vec::new();
    let mut url_buttons = Vec::new();
    let mut otp_buttons = Vec::new();
    let mut quick_reply_buttons = Vec::new();
    let mut copy_code_buttons = Vec::new();
    let components = def.components.as_array().map(Vec::as_slice).unwrap_or_default();
    for c in components {
        let text = c.get("text").and_then(Value::as_str).unwrap_or_default();
        match upper(c.get("type")).as_str() {
            "HEADER" => {
                header = match upper(c.get("format")).as_str() {
                    "" | "TEXT" => HeaderFormat::Text,
                    "IMAGE" => HeaderFormat::Image,
                    "VIDEO" => HeaderFormat::Video,
                    "DOCUMENT" => HeaderFormat::Document,
                    "LOCATION" => HeaderFormat::Location,
                    other => HeaderFormat::Other(other.to_ascii_lowercase()),
                };
                header_raw = placeholders(text);
            }
            "BODY" => body_raw = placeholders(text),
            "BUTTONS" => {
                let buttons = c.get("buttons").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                for (i, b) in buttons.iter().enumerate() {
                    match upper(b.get("type")).as_str() {
                        "URL" => {
                            let url = b.get("url").and_then(Value::as_str).unwrap_or_default();
                            if !placeholders(url).is_empty() {
                                url_buttons.push(i);
                            }
                        }
                        "OTP" => otp_buttons.push(i),
                        "QUICK_REPLY" => quick_reply_buttons.push(i),
                        "COPY_CODE" => copy_code_buttons.push(i),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let named = def.parameter_format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("named"))
        || header_raw.iter().chain(&body_raw).any(|p| p.parse::<u32>().is_err());
    let params = |raw: Vec<String>| -> Vec<String> {
        if named {
            let mut out: Vec<String> = Vec::new();
            for p in raw {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        } else {
            let max = raw.iter().filter_map(|p| p.parse::<usize>().ok()).max().unwrap_or(0);
            (1..=max).map(|n| n.to_string()).collect()
        }
    };
    Shape {
        header,
        header_params: params(header_raw),
        body_params: params(body_raw),
        url_buttons,
        otp_buttons,
        quick_reply_buttons,
        copy_code_buttons,
        named,
    }
}

fn upper(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().trim().to_ascii_uppercase()
}

/// `{{ name }}` placeholders in order of appearance (names trimmed; only `[A-Za-z0-9_]`).
fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push(inner.to_owned());
            rest = &after[end + 2..];
        } else {
            rest = &rest[start + 1..];
        }
    }
    out
}

/// Builds the Graph `template` object for `def` (see the module doc for how values are matched).
pub fn build(
    def: &TemplateDef,
    params: &Params,
    header_media: Option<&str>,
    button_param: Option<&str>,
) -> Result<Value, TemplateError> {
    build_with(def, params, &Extras { header: header_media.map(HeaderMedia::Link), button_param, ..Extras::default() })
}

/// [`build`] with everything a template send may carry: a header by link or media id (and a document's file
/// name), quick-reply payloads and a copy-code button's coupon code.
pub fn build_with(def: &TemplateDef, params: &Params, extras: &Extras<'_>) -> Result<Value, TemplateError> {
    let header_media = extras.header;
    let button_param = extras.button_param;
    let shape = analyse(def);
    let name = || def.name.clone();
    let language = || def.language.clone();

    // Values per placeholder name (positional: "1".. within header and within body).
    let (header_values, body_values) = match params {
        Params::Positional(values) => {
            let slots = shape.slots();
            if values.len() != slots.len() {
                return Err(TemplateError::ParamCount {
                    name: name(),
                    language: language(),
                    needs: describe_slots(&slots),
                    given: values.len(),
                });
            }
            for ((part, p), v) in slots.iter().zip(values) {
                if v.trim().is_empty() {
                    return Err(TemplateError::EmptyValue { name: name(), language: language(), param: slot(part, p) });
                }
            }
            if shape.named {
                let by_name: Vec<(&str, &str)> =
                    slots.iter().map(|(_, p)| *p).zip(values.iter().map(String::as_str)).collect();
                let lookup = |p: &String| by_name.iter().find(|(n, _)| *n == p.as_str()).map_or("", |(_, v)| *v);
                (
                    shape.header_params.iter().map(|p| (p.as_str(), lookup(p))).collect::<Vec<_>>(),
                    shape.body_params.iter().map(|p| (p.as_str(), lookup(p))).collect::<Vec<_>>(),
                )
            } else {
                let (h, b) = values.split_at(shape.header_params.len());
                (
                    shape.header_params.iter().map(String::as_str).zip(h.iter().map(String::as_str)).collect(),
                    shape.body_params.iter().map(String::as_str).zip(b.iter().map(String::as_str)).collect(),
                )
            }
        }
        Params::Named(pairs) => {
            if !shape.named {
                return Err(TemplateError::NamedForPositional { name: name(), language: language() });
            }
            let slots = shape.slots();
            let expected: Vec<&str> = slots.iter().map(|(_, p)| *p).collect();
            for (i, (k, v)) in pairs.iter().enumerate() {
                if !expected.contains(&k.as_str()) {
                    let listed: Vec<String> = expected.iter().map(|p| format!("{{{{{p}}}}}")).collect();
                    return Err(TemplateError::UnknownNamed {
                        name: name(),
                        language: language(),
                        unknown: format!("{{{{{k}}}}}"),
                        expected: if listed.is_empty() { "none".into() } else { listed.join(", ") },
                    });
                }
                if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
                    return Err(TemplateError::RepeatedNamed {
                        name: name(),
                        language: language(),
                        param: format!("{{{{{k}}}}}"),
                    });
                }
                if v.trim().is_empty() {
                    return Err(TemplateError::EmptyValue {
                        name: name(),
                        language: language(),
                        param: format!("{{{{{k}}}}}"),
                    });
                }
            }
            let missing: Vec<String> = expected
                .iter()
                .filter(|p| !pairs.iter().any(|(k, _)| k == *p))
                .map(|p| format!("{{{{{p}}}}}"))
                .collect();
            if !missing.is_empty() {
                let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
                return Err(TemplateError::MissingNamed {
                    name: name(),
                    language: language(),
                    missing: join_or(&missing, "and"),
                });
            }
            let lookup = |p: &String| pairs.iter().find(|(k, _)| k == p).map_or("", |(_, v)| v.as_str());
            (
                shape.header_params.iter().map(|p| (p.as_str(), lookup(p))).collect(),
                shape.body_params.iter().map(|p| (p.as_str(), lookup(p))).collect(),
            )
        }
    };

    let mut components = Vec::new();

    // Header.
    match (&shape.header, header_media) {
        (HeaderFormat::Location | HeaderFormat::Other(_), _) => {
            return Err(TemplateError::UnsupportedHeader {
                name: name(),
                language: language(),
                kind: shape.header.clone(),
            });
        }
        (kind, None) if kind.media().is_some() => {
            return Err(TemplateError::MissingMediaLink {
                name: name(),
                language: language(),
                kind: kind.clone(),
                kind_word: kind.media().unwrap_or("file"),
            });
        }
        (kind, Some(given)) => {
            let Some(media) = kind.media() else {
                return Err(TemplateError::UnexpectedMediaLink {
                    name: name(),
                    language: language(),
                    kind: kind.clone(),
                });
            };
            let mut object = match given {
                HeaderMedia::Link(link) => {
                    let link = link.trim();
                    if !is_web_url(link) {
                        return Err(TemplateError::InvalidMediaLink {
                            name: name(),
                            language: language(),
                            link: link.to_owned(),
                        });
                    }
                    json!({ "link": link })
                }
                HeaderMedia::Id(id) => {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(TemplateError::InvalidMediaId {
                            name: name(),
                            language: language(),
                            id: id.to_owned(),
                        });
                    }
                    json!({ "id": id })
                }
            };
            if media == "document" {
                let file = match (extras.filename, given) {
                    (Some(f), _) => Some(f.trim().to_owned()),
                    (None, HeaderMedia::Link(link)) => file_name(link.trim()),
                    (None, HeaderMedia::Id(_)) => None,
                };
                if let Some(file) = file.filter(|f| !f.is_empty()) {
                    object["filename"] = Value::String(file);
                }
            }
            components.push(json!({"type": "header", "parameters": [{"type": media, media: object}]}));
        }
        (_, None) => {
            if !header_values.is_empty() {
                components.push(json!({"type": "header", "parameters": text_params(&header_values, shape.named)}));
            }
        }
    }

    // Body.
    if !body_values.is_empty() {
        components.push(json!({"type": "body", "parameters": text_params(&body_values, shape.named)}));
    }

    // Buttons.
    let button_value = button_param.map(str::trim).filter(|v| !v.is_empty());
    if button_param.is_some() && button_value.is_none() {
        return Err(TemplateError::EmptyValue { name: name(), language: language(), param: "button_param".into() });
    }
    if let Some(&first) = shape.url_buttons.first() {
        if button_value.is_none() {
            return Err(TemplateError::MissingButtonParam { name: name(), language: language(), button: first + 1 });
        }
    } else if button_value.is_some() && shape.otp_buttons.is_empty() {
        return Err(TemplateError::UnexpectedButtonParam { name: name(), language: language() });
    }
    let mut buttons: Vec<(usize, &str)> = Vec::new();
    if let Some(v) = button_value {
        buttons.extend(shape.url_buttons.iter().map(|&i| (i, v)));
    }
    if !shape.otp_buttons.is_empty() {
        let code = button_value.or_else(|| body_values.first().map(|(_, v)| *v));
        let Some(code) = code else {
            return Err(TemplateError::MissingCode { name: name(), language: language() });
        };
        buttons.extend(shape.otp_buttons.iter().map(|&i| (i, code)));
    }
    let mut buttons: Vec<(usize, Value)> = buttons
        .into_iter()
        .map(|(i, v)| {
            (
                i,
                json!({"type": "button", "sub_type": "url", "index": i.to_string(),
                       "parameters": [{"type": "text", "text": v}]}),
            )
        })
        .collect();
    for &(i, payload) in &extras.quick_replies {
        if !shape.quick_reply_buttons.contains(&i) {
            let at: Vec<String> = shape.quick_reply_buttons.iter().map(usize::to_string).collect();
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            return Err(TemplateError::NotAQuickReply {
                name: name(),
                language: language(),
                index: i,
                available: if at.is_empty() { "no index (it has none)".into() } else { join_or(&at, "and") },
            });
        }
        buttons.push((
            i,
            json!({"type": "button", "sub_type": "quick_reply", "index": i.to_string(),
                   "parameters": [{"type": "payload", "payload": payload}]}),
        ));
    }
    let coupon = extras.coupon_code.map(str::trim).filter(|c| !c.is_empty());
    match (shape.copy_code_buttons.first(), coupon) {
        (Some(&first), None) => {
            return Err(TemplateError::MissingCouponCode { name: name(), language: language(), button: first + 1 })
        }
        (None, Some(_)) => return Err(TemplateError::UnexpectedCouponCode { name: name(), language: language() }),
        (_, Some(code)) => {
            for &i in &shape.copy_code_buttons {
                buttons.push((
                    i,
                    json!({"type": "button", "sub_type": "copy_code", "index": i.to_string(),
                           "parameters": [{"type": "coupon_code", "coupon_code": code}]}),
                ));
            }
        }
        (None, None) => {}
    }
    buttons.sort_by_key(|(i, _)| *i);
    components.extend(buttons.into_iter().map(|(_, b)| b));

    Ok(json!({"name": def.name, "language": {"code": def.language}, "components": components}))
}

/// Selects the definition for a command and builds its `template` object.
pub fn from_command(defs: &[TemplateDef], cmd: &TemplateCommand) -> Result<Value, TemplateError> {
    let def = select(defs, &cmd.name, &cmd.language)?;
    build(def, &Params::Positional(cmd.params.clone()), cmd.file_link.as_deref(), cmd.button_param.as_deref())
}

fn text_params(values: &[(&str, &str)], named: bool) -> Vec<Value> {
    values
        .iter()
        .map(|(p, v)| {
            if named {
                json!({"type": "text", "parameter_name": p, "text": v})
            } else {
                json!({"type": "text", "text": v})
            }
        })
        .collect()
}

fn slot(part: &str, p: &str) -> String {
    format!("{part} {{{{{p}}}}}")
}

/// "2 parameters (header {{1}}, body {{1}})" / "no parameters".
fn describe_slots(slots: &[(&str, &str)]) -> String {
    if slots.is_empty() {
        return "no parameters".into();
    }
    let mut parts: Vec<String> = Vec::new();
    for part in ["header", "body"] {
        let ps: Vec<String> = slots.iter().filter(|(s, _)| *s == part).map(|(_, p)| format!("{{{{{p}}}}}")).collect();
        if !ps.is_empty() {
            parts.push(format!("{part} {}", ps.join(", ")));
        }
    }
    let n = slots.len();
    format!("{n} parameter{} in this order ({})", if n == 1 { "" } else { "s" }, parts.join("; "))
}

/// The last path segment of a URL, percent-decoded, if there is one.
fn file_name(link: &str) -> Option<String> {
    let url = url::Url::parse(link).ok()?;
    let last = url.path_segments()?.next_back()?;
    let decoded = percent_decode(last);
    let decoded = decoded.trim();
    (!decoded.is_empty()).then(|| decoded.to_owned())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, language: &str, status: &str, components: Value) -> TemplateDef {
        TemplateDef {
            name: name.into(),
            language: language.into(),
            status: status.into(),
            category: Some("UTILITY".into()),
            components,
            parameter_format: None,
        }
    }

    fn order_ready() -> TemplateDef {
        def(
            "order_ready",
            "pt_BR",
            "APPROVED",
            json!([
                {"type":"HEADER","format":"TEXT","text":"Pedido {{1}}"},
                {"type":"BODY","text":"Olá {{1}}, seu pedido de {{2}} está pronto. {{1}}!"},
                {"type":"FOOTER","text":"Loja"},
                {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"Parar"},
                    {"type":"URL","text":"Ver","url":"https://shop.example/o/{{1}}","example":["123"]},
                    {"type":"PHONE_NUMBER","text":"Ligar","phone_number":"5511"}]}
            ]),
        )
    }

    fn named_def() -> TemplateDef {
        let mut d = def(
            "welcome",
            "en_US",
            "APPROVED",
            json!([
                {"type":"HEADER","format":"TEXT","text":"Hi {{first_name}}"},
                {"type":"BODY","text":"Dear {{first_name}}, order {{ order_id }} ships {{date}}. Thanks {{first_name}}."}
            ]),
        );
        d.parameter_format = Some("NAMED".into());
        d
    }

    fn media_def(format: &str) -> TemplateDef {
        def(
            "invoice",
            "de",
            "APPROVED",
            json!([{"type":"HEADER","format":format},{"type":"BODY","text":"Rechnung {{1}}"}]),
        )
    }

    fn pos(v: &[&str]) -> Params {
        Params::Positional(v.iter().map(|s| s.to_string()).collect())
    }

    fn named(v: &[(&str, &str)]) -> Params {
        Params::Named(v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn analyse_shapes() {
        let s = analyse(&order_ready());
        assert_eq!(s.header, HeaderFormat::Text);
        assert_eq!(s.header_params, ["1"]);
        assert_eq!(s.body_params, ["1", "2"]);
        assert_eq!(s.url_buttons, [1]);
        assert!(!s.named);
        let s = analyse(&named_def());
        assert!(s.named);
        assert_eq!(s.header_params, ["first_name"]);
        assert_eq!(s.body_params, ["first_name", "order_id", "date"]);
        let mut implicit = named_def();
        implicit.parameter_format = None;
        assert!(analyse(&implicit).named);
        assert_eq!(analyse(&media_def("DOCUMENT")).header, HeaderFormat::Document);
        assert_eq!(analyse(&media_def("location")).header, HeaderFormat::Location);
        assert_eq!(analyse(&media_def("PRODUCT")).header, HeaderFormat::Other("product".into()));
        assert_eq!(
            build(&media_def("PRODUCT"), &pos(&["1"]), None, None).unwrap_err().to_string(),
            "Template \"invoice\" (de) has a product header, which wabridge cannot fill; send this template from WhatsApp Manager or give it another header."
        );
        let bare = def("x", "en", "APPROVED", json!([{"type":"body","text":"no params {{ }} {{a-b}} {{3}}"}]));
        let s = analyse(&bare);
        assert_eq!(
            (s.header.clone(), s.body_params.clone()),
            (HeaderFormat::None, vec!["1".into(), "2".into(), "3".into()])
        );
        assert_eq!(analyse(&def("x", "en", "APPROVED", json!(null))).body_params, Vec::<String>::new());
        assert_eq!(placeholders("{{{1}}} {{2}"), ["1"]);
    }

    #[test]
    fn build_positional_with_header_text_and_url_button() {
        let v = build(&order_ready(), &pos(&["4711", "Anna Maria", "12 500"]), None, Some("4711")).unwrap();
        assert_eq!(
            v,
            json!({"name":"order_ready","language":{"code":"pt_BR"},"components":[
                {"type":"header","parameters":[{"type":"text","text":"4711"}]},
                {"type":"body","parameters":[{"type":"text","text":"Anna Maria"},{"type":"text","text":"12 500"}]},
                {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"4711"}]}
            ]})
        );
    }

    #[test]
    fn build_named() {
        let want = json!({"name":"welcome","language":{"code":"en_US"},"components":[
            {"type":"header","parameters":[{"type":"text","parameter_name":"first_name","text":"Pablo"}]},
            {"type":"body","parameters":[
                {"type":"text","parameter_name":"first_name","text":"Pablo"},
                {"type":"text","parameter_name":"order_id","text":"860198"},
                {"type":"text","parameter_name":"date","text":"today"}]}
        ]});
        let by_name = named(&[("date", "today"), ("first_name", "Pablo"), ("order_id", "860198")]);
        assert_eq!(build(&named_def(), &by_name, None, None).unwrap(), want);
        // Positional values for a named template follow header names, then new body names.
        assert_eq!(build(&named_def(), &pos(&["Pablo", "860198", "today"]), None, None).unwrap(), want);
    }

    #[test]
    fn build_media_headers() {
        let v =
            build(&media_def("DOCUMENT"), &pos(&["42"]), Some("https://files.example/r/Rechnung%2042.pdf?sig=1"), None)
                .unwrap();
        assert_eq!(
            v["components"][0],
            json!({"type":"header","parameters":[{"type":"document","document":{
                "link":"https://files.example/r/Rechnung%2042.pdf?sig=1","filename":"Rechnung 42.pdf"}}]})
        );
        let v = build(&media_def("DOCUMENT"), &pos(&["42"]), Some("https://files.example/"), None).unwrap();
        assert_eq!(v["components"][0]["parameters"][0]["document"], json!({"link":"https://files.example/"}));
        for (format, kind) in [("IMAGE", "image"), ("VIDEO", "video")] {
            let v = build(&media_def(format), &pos(&["42"]), Some("https://files.example/a"), None).unwrap();
            assert_eq!(
                v["components"][0],
                json!({"type":"header","parameters":[{"type":kind, kind:{"link":"https://files.example/a"}}]})
            );
        }
    }

    #[test]
    fn build_without_params_omits_components() {
        let hello = def("hello_world", "en_US", "APPROVED", json!([{"type":"BODY","text":"Hello World"}]));
        assert_eq!(
            build(&hello, &pos(&[]), None, None).unwrap(),
            json!({"name":"hello_world","language":{"code":"en_US"},"components":[]})
        );
    }

    #[test]
    fn otp_button_takes_the_code() {
        let auth = def(
            "login_code",
            "en",
            "APPROVED",
            json!([{"type":"BODY","add_security_recommendation":true,"text":"{{1}} is your code."},
                   {"type":"BUTTONS","buttons":[{"type":"OTP","otp_type":"COPY_CODE","text":"Copy Code"}]}]),
        );
        let v = build(&auth, &pos(&["123456"]), None, None).unwrap();
        assert_eq!(
            v["components"][1],
            json!({"type":"button","sub_type":"url","index":"0","parameters":[{"type":"text","text":"123456"}]})
        );
        let v = build(&auth, &pos(&["123456"]), None, Some("999")).unwrap();
        assert_eq!(v["components"][1]["parameters"][0]["text"], "999");
        let no_body =
            def("c", "en", "APPROVED", json!([{"type":"BUTTONS","buttons":[{"type":"OTP","otp_type":"COPY_CODE"}]}]));
        assert_eq!(
            build(&no_body, &pos(&[]), None, None),
            Err(TemplateError::MissingCode { name: "c".into(), language: "en".into() })
        );
    }

    #[test]
    fn count_errors() {
        let e = build(&order_ready(), &pos(&["a", "b"]), None, Some("x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template \"order_ready\" (pt_BR) needs 3 parameters in this order (header {{1}}; body {{1}}, {{2}}), but 2 were given."
        );
        let hello = def("hello_world", "en_US", "APPROVED", json!([{"type":"BODY","text":"Hello"}]));
        assert_eq!(
            build(&hello, &pos(&["a"]), None, None).unwrap_err().to_string(),
            "Template \"hello_world\" (en_US) needs no parameters, but 1 was given."
        );
        assert_eq!(
            build(&media_def("IMAGE"), &pos(&[]), Some("https://a.example/i.png"), None).unwrap_err().to_string(),
            "Template \"invoice\" (de) needs 1 parameter in this order (body {{1}}), but 0 were given."
        );
        assert_eq!(
            build(&media_def("IMAGE"), &pos(&[" "]), Some("https://a.example/i.png"), None).unwrap_err().to_string(),
            "Template \"invoice\" (de): the value for body {{1}} is empty, and WhatsApp does not accept empty parameters."
        );
    }

    #[test]
    fn named_errors() {
        let d = named_def();
        assert_eq!(
            build(&order_ready(), &named(&[("1", "x")]), None, None).unwrap_err().to_string(),
            "Template \"order_ready\" (pt_BR) uses numbered parameters ({{1}}, {{2}}, ...), so give its values as a list in order, not by name."
        );
        assert_eq!(
            build(&d, &named(&[("first_name", "P")]), None, None).unwrap_err().to_string(),
            "Template \"welcome\" (en_US) is missing values for {{order_id}} and {{date}}."
        );
        assert_eq!(
            build(&d, &named(&[("nickname", "P")]), None, None).unwrap_err().to_string(),
            "Template \"welcome\" (en_US) has no parameter {{nickname}}; its parameters are {{first_name}}, {{order_id}}, {{date}}."
        );
        assert_eq!(
            build(&d, &named(&[("date", "a"), ("date", "b")]), None, None).unwrap_err().to_string(),
            "Template \"welcome\" (en_US): parameter {{date}} is given more than once."
        );
        assert_eq!(
            build(&d, &named(&[("date", "")]), None, None).unwrap_err(),
            TemplateError::EmptyValue { name: "welcome".into(), language: "en_US".into(), param: "{{date}}".into() }
        );
    }

    #[test]
    fn media_errors() {
        assert_eq!(
            build(&media_def("DOCUMENT"), &pos(&["1"]), None, None).unwrap_err().to_string(),
            "Template \"invoice\" (de) has a document header: add file_link:URL with a public https link to the document."
        );
        assert_eq!(
            build(&media_def("VIDEO"), &pos(&["1"]), None, None).unwrap_err().to_string(),
            "Template \"invoice\" (de) has a video header: add file_link:URL with a public https link to the video."
        );
        assert_eq!(
            build(&order_ready(), &pos(&["a", "b", "c"]), Some("https://a.example/x.pdf"), Some("1")).unwrap_err().to_string(),
            "Template \"order_ready\" (pt_BR) has a text header, so a file link cannot be used with it; remove file_link."
        );
        let hello = def("hello", "en", "APPROVED", json!([{"type":"BODY","text":"Hi"}]));
        assert_eq!(
            build(&hello, &pos(&[]), Some("https://a.example/x.pdf"), None).unwrap_err().to_string(),
            "Template \"hello\" (en) has no header, so a file link cannot be used with it; remove file_link."
        );
        assert_eq!(
            build(&media_def("IMAGE"), &pos(&["1"]), Some("ftp://a.example/x.png"), None).unwrap_err().to_string(),
            "\"ftp://a.example/x.png\" is not a public http or https address, so it cannot be the header file of template \"invoice\" (de)."
        );
        assert_eq!(
            build(&media_def("LOCATION"), &pos(&["1"]), None, None).unwrap_err().to_string(),
            "Template \"invoice\" (de) has a location header, which wabridge cannot fill; send this template from WhatsApp Manager or give it another header."
        );
    }

    #[test]
    fn button_errors() {
        assert_eq!(
            build(&order_ready(), &pos(&["a", "b", "c"]), None, None).unwrap_err().to_string(),
            "Template \"order_ready\" (pt_BR) has a link button (button 2) whose address ends in a variable: add button_param:VALUE with the text for the end of the link."
        );
        assert_eq!(
            build(&media_def("IMAGE"), &pos(&["1"]), Some("https://a.example/i.png"), Some("x")).unwrap_err().to_string(),
            "Template \"invoice\" (de) has no link button with a variable part, so button_param cannot be used with it; remove button_param."
        );
        assert_eq!(
            build(&order_ready(), &pos(&["a", "b", "c"]), None, Some("  ")).unwrap_err(),
            TemplateError::EmptyValue {
                name: "order_ready".into(),
                language: "pt_BR".into(),
                param: "button_param".into()
            }
        );
    }

    #[test]
    fn selection() {
        let mut pending = order_ready();
        pending.language = "en_US".into();
        pending.status = "PENDING".into();
        let defs = vec![order_ready(), pending, named_def(), media_def("DOCUMENT")];
        assert_eq!(select(&defs, "order_ready", "pt-br").unwrap().language, "pt_BR");
        assert_eq!(
            select(&defs, "order_ready", "en_US").unwrap_err().to_string(),
            "Template \"order_ready\" (en_US) cannot be sent because its status is PENDING; only APPROVED templates can be sent."
        );
        assert_eq!(
            select(&defs, "order_ready", "de").unwrap_err().to_string(),
            "Template \"order_ready\" has no de version; it exists in en_US and pt_BR."
        );
        assert_eq!(
            select(&defs, "order_redy", "pt_BR").unwrap_err().to_string(),
            "There is no template named \"order_redy\" on this WhatsApp account. Known templates: invoice, order_ready, welcome."
        );
        assert_eq!(
            select(&[], "x", "en").unwrap_err().to_string(),
            "There is no template named \"x\" on this WhatsApp account. No templates have been synced for it yet."
        );
        let many: Vec<TemplateDef> = (0..13).map(|i| def(&format!("t{i:02}"), "en", "APPROVED", json!([]))).collect();
        assert_eq!(
            select(&many, "x", "en").unwrap_err().to_string(),
            "There is no template named \"x\" on this WhatsApp account. Known templates include t00, t01, t02, t03, t04, t05, t06, t07, t08, t09 (and 3 more)."
        );
        // A duplicate entry with another status does not hide the approved one.
        let mut rejected = order_ready();
        rejected.status = "REJECTED".into();
        let defs = vec![rejected, order_ready()];
        assert_eq!(select(&defs, "order_ready", "pt_BR").unwrap().status, "APPROVED");
    }

    #[test]
    fn command_end_to_end() {
        let defs = vec![order_ready(), media_def("DOCUMENT")];
        let cmd = TemplateCommand {
            name: "invoice".into(),
            language: "de".into(),
            params: vec!["R-1".into()],
            file_link: Some("https://files.example/R-1.pdf".into()),
            button_param: None,
        };
        let v = from_command(&defs, &cmd).unwrap();
        assert_eq!(v["components"][0]["parameters"][0]["document"]["filename"], "R-1.pdf");
        assert_eq!(v["components"][1], json!({"type":"body","parameters":[{"type":"text","text":"R-1"}]}));
        let missing = TemplateCommand { language: "fr".into(), ..cmd };
        assert!(matches!(from_command(&defs, &missing), Err(TemplateError::LanguageMissing { .. })));
    }

    #[test]
    fn url_file_names() {
        assert_eq!(file_name("https://a.example/x/y%C3%BC.pdf").as_deref(), Some("yü.pdf"));
        assert_eq!(file_name("https://a.example/x/"), None);
        assert_eq!(file_name("https://a.example"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
