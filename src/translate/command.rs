//! The template command grammar, shared by the operator chat and the CRM's SMS provider.
//!
//! ```text
//! template-NAME+LANG
//! template-NAME+LANG+value1|value2|...
//!     followed, in any order, by   file_link:URL      (document, image or video header)
//!                            and   button_param:VALUE (suffix of a dynamic URL button)
//! ```
//!
//! - `template-NAME+LANG+values` is one line; only options may follow on later lines.
//! - The options are separated from what precedes them by whitespace (a space or a new line) or by `+`. A keyword is
//!   only recognised there, so `file_link:` inside a value such as `see:file_link:x` is plain text.
//! - Values may contain spaces and `+` (`template-order_ready+pt_BR+Anna Maria|+55 11 1234`); `|` separates them and
//!   each is trimmed. An empty value (`a||b`) is an error; nothing after the second `+` means no values.
//! - `NAME` is `[a-z0-9_]+`, at most 512 characters. `LANG` is 2–3 letters with an optional `_XX` region (`en`,
//!   `en_US`, `pt_BR`, `fil`); `-` is accepted for `_` and case is normalised (`pt-br` → `pt_BR`).
//! - The `template-` prefix is case-insensitive (phone keyboards capitalise the first letter).
//!
//! Chat ([`parse_chat`]): the operator text is BBCode-stripped and trimmed; a first line ending in `:` (Bitrix's
//! operator signature, `[b]Klaus Weber:[/b] [br]`) is skipped. The rest is a command only when it *starts* with
//! `template-`; text that mentions `template-` later is plain text.
//!
//! SMS ([`parse_sms`]): `template-...` as above, or the short form without the prefix (`NAME+LANG`,
//! `NAME+LANG+v1|v2`, options allowed). The short form is recognised only when the text before the first option
//! is one line reading `NAME+LANG` or `NAME+LANG+...` with a valid name and language; anything else is plain text.

use super::bbcode;

/// Longest template name Meta allows.
pub const MAX_NAME_LEN: usize = 512;

const PREFIX: &str = "template-";
const FILE_LINK: &str = "file_link:";
const BUTTON_PARAM: &str = "button_param:";

/// A parsed template command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateCommand {
    pub name: String,
    /// Normalised: `pt_BR`, `en`, `fil`.
    pub language: String,
    /// Values in order, trimmed, never empty.
    pub params: Vec<String>,
    /// Absolute http(s) URL for a media header.
    pub file_link: Option<String>,
    /// Suffix for a dynamic URL button.
    pub button_param: Option<String>,
}

/// What an SMS-provider message body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsBody {
    Template(TemplateCommand),
    /// Plain text, as received.
    Text(String),
}

/// Why a template command could not be read. The texts are shown to operators as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(
        "The template command has no template name. Write template-NAME+LANG, for example template-order_ready+en_US."
    )]
    MissingName,
    #[error("The template command for \"{name}\" has no language. Write template-{name}+LANG, for example template-{name}+en_US.")]
    MissingLanguage { name: String },
    #[error("\"{name}\" is not a valid template name: use only lowercase letters, digits and _ (at most 512 characters), as in template-order_ready+en_US.")]
    InvalidName { name: String },
    #[error("\"{language}\" is not a valid language code: use a code such as en, en_US, pt_BR or fil, as in template-{name}+pt_BR.")]
    InvalidLanguage { name: String, language: String },
    #[error("Parameter {position} of the template command is empty. Separate the values with a single |, as in template-{name}+{language}+Anna|12500.")]
    EmptyParameter { name: String, language: String, position: usize },
    #[error("file_link has no value. Write file_link: followed by the public address of the file, as in file_link:https://example.com/invoice.pdf.")]
    MissingFileLink,
    #[error("\"{link}\" is not a public http or https address, so it cannot be used as file_link. Write it as in file_link:https://example.com/invoice.pdf.")]
    InvalidFileLink { link: String },
    #[error("button_param has no value. Write button_param: followed by the text to put at the end of the button's link, as in button_param:order-4711.")]
    MissingButtonParam,
    #[error("{option} is given more than once. Give it at most once per template command.")]
    Repeated { option: &'static str },
    #[error("The template command must fit on one line, followed only by file_link:URL and button_param:VALUE; remove \"{text}\" or start a new message for it.")]
    UnexpectedText { text: String },
}

/// Reads an operator chat message (BBCode). `None`: not a command, send it as text.
pub fn parse_chat(text: &str) -> Option<Result<TemplateCommand, CommandError>> {
    let plain = bbcode::to_plain(text);
    let body = match plain.split_once('\n') {
        Some((first, rest)) if first.trim_end().ends_with(':') && !is_prefixed(first) => rest.trim(),
        _ => plain.trim(),
    };
    let rest = bbcode::strip_prefix_ci(body, PREFIX)?;
    Some(parse_command(rest))
}

/// Reads the body of a message the CRM hands to the SMS provider.
pub fn parse_sms(body: &str) -> Result<SmsBody, CommandError> {
    let trimmed = body.trim();
    if let Some(rest) = bbcode::strip_prefix_ci(trimmed, PREFIX) {
        return parse_command(rest).map(SmsBody::Template);
    }
    let (head, _) = split_options(trimmed);
    let head = head.trim();
    let looks_like_command = !head.contains('\n')
        && head.split_once('+').is_some_and(|(name, after)| {
            let language = after.split_once('+').map_or(after, |(l, _)| l);
            valid_name(name) && valid_language(language).is_some()
        });
    if looks_like_command {
        parse_command(trimmed).map(SmsBody::Template)
    } else {
        Ok(SmsBody::Text(body.to_owned()))
    }
}

fn is_prefixed(s: &str) -> bool {
    bbcode::strip_prefix_ci(s.trim_start(), PREFIX).is_some()
}

/// `s` is what follows `template-`.
fn parse_command(s: &str) -> Result<TemplateCommand, CommandError> {
    let (head, options) = split_options(s);
    let (head, extra) = head.split_once('\n').unwrap_or((head, ""));
    if !extra.trim().is_empty() {
        return Err(CommandError::UnexpectedText { text: shorten(extra.trim()) });
    }
    let head = head.trim();
    let head = head.strip_suffix('+').unwrap_or(head).trim_end();

    let (name, after) = match head.split_once('+') {
        Some((name, after)) => (name.trim(), Some(after)),
        None => (head, None),
    };
    if name.is_empty() {
        return Err(CommandError::MissingName);
    }
    if !valid_name(name) {
        return Err(CommandError::InvalidName { name: shorten(name) });
    }
    let name = name.to_owned();
    let (language, values) = match after {
        Some(after) => match after.split_once('+') {
            Some((l, v)) => (l.trim(), Some(v)),
            None => (after.trim(), None),
        },
        None => ("", None),
    };
    if language.is_empty() {
        return Err(CommandError::MissingLanguage { name });
    }
    let Some(language) = valid_language(language) else {
        return Err(CommandError::InvalidLanguage { name, language: shorten(language) });
    };

    let mut params = Vec::new();
    if let Some(values) = values.filter(|v| !v.trim().is_empty()) {
        for (i, v) in values.split('|').enumerate() {
            let v = v.trim();
            if v.is_empty() {
                return Err(CommandError::EmptyParameter { name, language, position: i + 1 });
            }
            params.push(v.to_owned());
        }
    }

    let mut file_link = None;
    let mut button_param = None;
    for (keyword, value) in options {
        if keyword == FILE_LINK {
            if file_link.is_some() {
                return Err(CommandError::Repeated { option: "file_link" });
            }
            if value.is_empty() {
                return Err(CommandError::MissingFileLink);
            }
            if !is_web_url(value) {
                return Err(CommandError::InvalidFileLink { link: shorten(value) });
            }
            file_link = Some(value.to_owned());
        } else {
            if button_param.is_some() {
                return Err(CommandError::Repeated { option: "button_param" });
            }
            if value.is_empty() {
                return Err(CommandError::MissingButtonParam);
            }
            button_param = Some(value.to_owned());
        }
    }
    Ok(TemplateCommand { name, language, params, file_link, button_param })
}

/// Splits `s` into the part before the first option and the options (keyword, trimmed value), in order.
fn split_options(s: &str) -> (&str, Vec<(&'static str, &str)>) {
    let lower = s.to_ascii_lowercase();
    let mut found: Vec<(usize, &'static str)> = Vec::new();
    for keyword in [FILE_LINK, BUTTON_PARAM] {
        for (i, _) in lower.match_indices(keyword) {
            let at_boundary = s[..i].chars().next_back().is_none_or(|c| c.is_whitespace() || c == '+');
            if at_boundary {
                found.push((i, keyword));
            }
        }
    }
    found.sort_unstable();
    let head_end = found.first().map_or(s.len(), |&(i, _)| i);
    let options = found
        .iter()
        .enumerate()
        .map(|(n, &(i, keyword))| {
            let end = found.get(n + 1).map_or(s.len(), |&(next, _)| next);
            let value = s[i + keyword.len()..end].trim();
            let value = value.strip_suffix('+').unwrap_or(value).trim_end();
            (keyword, value)
        })
        .collect();
    (&s[..head_end], options)
}

/// `[a-z0-9_]+`, at most [`MAX_NAME_LEN`].
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The normalised language code (`pt-br` → `pt_BR`), or `None` if `code` is not 2–3 letters with an optional
/// 2-letter region.
pub fn valid_language(code: &str) -> Option<String> {
    let (lang, region) = match code.split_once(['_', '-']) {
        Some((l, r)) => (l, Some(r)),
        None => (code, None),
    };
    let letters =
        |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !letters(lang, 2, 3) || !region.is_none_or(|r| letters(r, 2, 2)) {
        return None;
    }
    let mut out = lang.to_ascii_lowercase();
    if let Some(r) = region {
        out.push('_');
        out.push_str(&r.to_ascii_uppercase());
    }
    Some(out)
}

/// An absolute `http` or `https` URL with a host.
pub(crate) fn is_web_url(s: &str) -> bool {
    !s.contains(char::is_whitespace)
        && url::Url::parse(s)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
}

/// Keeps error texts readable when the input is huge.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(
        name: &str,
        language: &str,
        params: &[&str],
        file_link: Option<&str>,
        button_param: Option<&str>,
    ) -> TemplateCommand {
        TemplateCommand {
            name: name.into(),
            language: language.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            file_link: file_link.map(Into::into),
            button_param: button_param.map(Into::into),
        }
    }

    fn chat_ok(text: &str) -> TemplateCommand {
        match parse_chat(text) {
            Some(Ok(c)) => c,
            other => panic!("{text:?} -> {other:?}"),
        }
    }

    fn chat_err(text: &str) -> CommandError {
        match parse_chat(text) {
            Some(Err(e)) => e,
            other => panic!("{text:?} -> {other:?}"),
        }
    }

    #[test]
    fn chat_basic_forms() {
        assert_eq!(chat_ok("template-hello_world+en_US"), cmd("hello_world", "en_US", &[], None, None));
        assert_eq!(
            chat_ok("template-order_ready+pt_BR+Anna Maria|12 500"),
            cmd("order_ready", "pt_BR", &["Anna Maria", "12 500"], None, None)
        );
        assert_eq!(chat_ok("  Template-x+fil+ a | b "), cmd("x", "fil", &["a", "b"], None, None));
        assert_eq!(chat_ok("template-x+pt-br"), cmd("x", "pt_BR", &[], None, None));
        assert_eq!(chat_ok("template-x+EN+"), cmd("x", "en", &[], None, None));
        assert_eq!(
            chat_ok("template-x+en+call +55 11 1234|a+b"),
            cmd("x", "en", &["call +55 11 1234", "a+b"], None, None)
        );
    }

    #[test]
    fn chat_options_any_order_and_separators() {
        let want = cmd("invoice", "de", &["Klaus"], Some("https://files.example.com/r/inv%201.pdf"), Some("inv-42"));
        for text in [
            "template-invoice+de+Klaus file_link:https://files.example.com/r/inv%201.pdf button_param:inv-42",
            "template-invoice+de+Klaus\nbutton_param:inv-42\nfile_link:https://files.example.com/r/inv%201.pdf",
            "template-invoice+de+Klaus+file_link:https://files.example.com/r/inv%201.pdf+button_param:inv-42",
            "template-invoice+de+Klaus[br]FILE_LINK:https://files.example.com/r/inv%201.pdf[br]button_param: inv-42 ",
            "template-invoice+de+Klaus file_link:[url]https://files.example.com/r/inv%201.pdf[/url] button_param:inv-42",
        ] {
            assert_eq!(chat_ok(text), want, "{text}");
        }
        assert_eq!(
            chat_ok("template-doc+en+file_link:http://x.example/a.pdf"),
            cmd("doc", "en", &[], Some("http://x.example/a.pdf"), None)
        );
        assert_eq!(chat_ok("template-doc+en button_param:a b"), cmd("doc", "en", &[], None, Some("a b")));
        // A keyword glued to other text is part of the value.
        assert_eq!(chat_ok("template-x+en+see:file_link:x"), cmd("x", "en", &["see:file_link:x"], None, None));
    }

    #[test]
    fn chat_signature_and_bbcode() {
        assert_eq!(chat_ok("[b]Klaus Weber:[/b] [br]template-hello+de"), cmd("hello", "de", &[], None, None));
        assert_eq!(
            chat_ok("[b]Klaus Weber:[/b]\n[b]template-hello+de+A&amp;B[/b]"),
            cmd("hello", "de", &["A&B"], None, None)
        );
        assert_eq!(
            chat_err("template-a+en+x\ntemplate-b+en"),
            CommandError::UnexpectedText { text: "template-b+en".into() }
        );
        assert_eq!(
            chat_ok("template-a+en+x\n\n file_link:https://a.example/f.pdf"),
            cmd("a", "en", &["x"], Some("https://a.example/f.pdf"), None)
        );
    }

    #[test]
    fn chat_plain_text() {
        for text in [
            "Hello, how can I help?",
            "Please use template-order_ready+pt_BR next time",
            "[b]Klaus Weber:[/b] [br]I will send template-x+en",
            "[b]Klaus Weber:[/b] [br]Note:[br]template-x+en",
            "templates-x+en",
            "",
        ] {
            assert_eq!(parse_chat(text), None, "{text}");
        }
    }

    #[test]
    fn chat_errors() {
        assert_eq!(chat_err("template-"), CommandError::MissingName);
        assert_eq!(chat_err("template-+en"), CommandError::MissingName);
        assert_eq!(chat_err("template-order_ready"), CommandError::MissingLanguage { name: "order_ready".into() });
        assert_eq!(chat_err("template-order_ready+ "), CommandError::MissingLanguage { name: "order_ready".into() });
        assert_eq!(chat_err("template-Order+en"), CommandError::InvalidName { name: "Order".into() });
        assert_eq!(chat_err("template-order ready+en"), CommandError::InvalidName { name: "order ready".into() });
        assert_eq!(
            chat_err(&format!("template-{}+en", "a".repeat(513))),
            CommandError::InvalidName { name: format!("{}…", "a".repeat(80)) }
        );
        assert!(parse_chat(&format!("template-{}+en", "a".repeat(512))).is_some_and(|r| r.is_ok()));
        for bad in ["english", "e", "en_USA", "en_1", "pt BR"] {
            assert_eq!(
                chat_err(&format!("template-x+{bad}")),
                CommandError::InvalidLanguage { name: "x".into(), language: bad.into() },
                "{bad}"
            );
        }
        assert_eq!(
            chat_err("template-x+en+a||b"),
            CommandError::EmptyParameter { name: "x".into(), language: "en".into(), position: 2 }
        );
        assert_eq!(
            chat_err("template-x+en+a| "),
            CommandError::EmptyParameter { name: "x".into(), language: "en".into(), position: 2 }
        );
        assert_eq!(chat_err("template-x+en file_link:"), CommandError::MissingFileLink);
        assert_eq!(chat_err("template-x+en file_link: button_param:a"), CommandError::MissingFileLink);
        for link in ["ftp://x.example/a.pdf", "/a.pdf", "x.example/a.pdf", "https://", "file:///etc/passwd"] {
            assert_eq!(
                chat_err(&format!("template-x+en file_link:{link}")),
                CommandError::InvalidFileLink { link: link.into() },
                "{link}"
            );
        }
        assert_eq!(
            chat_err("template-x+en file_link:https://a.example/x y"),
            CommandError::InvalidFileLink { link: "https://a.example/x y".into() }
        );
        assert_eq!(chat_err("template-x+en button_param:"), CommandError::MissingButtonParam);
        assert_eq!(
            chat_err("template-x+en file_link:https://a.example/1 file_link:https://a.example/2"),
            CommandError::Repeated { option: "file_link" }
        );
        assert_eq!(
            chat_err("template-x+en button_param:a button_param:b"),
            CommandError::Repeated { option: "button_param" }
        );
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            CommandError::MissingLanguage { name: "order_ready".into() }.to_string(),
            "The template command for \"order_ready\" has no language. Write template-order_ready+LANG, for example template-order_ready+en_US."
        );
        assert_eq!(
            CommandError::EmptyParameter { name: "x".into(), language: "pt_BR".into(), position: 2 }.to_string(),
            "Parameter 2 of the template command is empty. Separate the values with a single |, as in template-x+pt_BR+Anna|12500."
        );
        assert_eq!(
            CommandError::InvalidLanguage { name: "x".into(), language: "english".into() }.to_string(),
            "\"english\" is not a valid language code: use a code such as en, en_US, pt_BR or fil, as in template-x+pt_BR."
        );
        assert_eq!(
            CommandError::Repeated { option: "file_link" }.to_string(),
            "file_link is given more than once. Give it at most once per template command."
        );
    }

    #[test]
    fn sms_forms() {
        assert_eq!(parse_sms("order_ready+pt_BR"), Ok(SmsBody::Template(cmd("order_ready", "pt_BR", &[], None, None))));
        assert_eq!(
            parse_sms(" order_ready+pt_BR+Anna Maria|12 500 "),
            Ok(SmsBody::Template(cmd("order_ready", "pt_BR", &["Anna Maria", "12 500"], None, None)))
        );
        assert_eq!(
            parse_sms("invoice+de+K file_link:https://a.example/i.pdf"),
            Ok(SmsBody::Template(cmd("invoice", "de", &["K"], Some("https://a.example/i.pdf"), None)))
        );
        assert_eq!(parse_sms("template-x+en+a|b"), Ok(SmsBody::Template(cmd("x", "en", &["a", "b"], None, None))));
        assert_eq!(
            parse_sms("x+en+a||b"),
            Err(CommandError::EmptyParameter { name: "x".into(), language: "en".into(), position: 2 })
        );
        assert_eq!(parse_sms("template-x"), Err(CommandError::MissingLanguage { name: "x".into() }));
        assert_eq!(parse_sms("x+en\nthanks"), Ok(SmsBody::Text("x+en\nthanks".into())));
        assert_eq!(parse_sms("template-x+en\nthanks"), Err(CommandError::UnexpectedText { text: "thanks".into() }));
        assert_eq!(
            CommandError::UnexpectedText { text: "thanks".into() }.to_string(),
            "The template command must fit on one line, followed only by file_link:URL and button_param:VALUE; remove \"thanks\" or start a new message for it."
        );
        for text in [
            "Your order 4711 is ready",
            "Call +49 30 1234",
            "Order+Ready",
            "a+b",
            "order ready+en",
            "x+english",
            "x+en Anna",
            "",
            "[b]template-x+en[/b]",
        ] {
            assert_eq!(parse_sms(text), Ok(SmsBody::Text(text.into())), "{text}");
        }
    }

    #[test]
    fn language_validation() {
        assert_eq!(valid_language("en").as_deref(), Some("en"));
        assert_eq!(valid_language("EN_us").as_deref(), Some("en_US"));
        assert_eq!(valid_language("zh-hk").as_deref(), Some("zh_HK"));
        assert_eq!(valid_language("fil").as_deref(), Some("fil"));
        for bad in ["", "e", "engl", "en_", "en_U", "en__US", "1n"] {
            assert_eq!(valid_language(bad), None, "{bad}");
        }
        assert!(valid_name("a_1") && !valid_name("") && !valid_name("a-b"));
    }
}
