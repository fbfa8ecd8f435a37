//! Operator text from the CRM chat (Bitrix BBCode, reference bitrix24.md §2.8) to WhatsApp text.
//!
//! Rules, after Bitrix's own WhatsApp (edna) connector, with WhatsApp markup kept where WhatsApp has it:
//!
//! | BBCode | [`to_whatsapp`] | [`to_plain`] |
//! |---|---|---|
//! | `[br]`, `#BR#` | line break | line break |
//! | `[b]x[/b]` / `[i]x[/i]` / `[s]x[/s]` | `*x*` / `_x_` / `~x~` | `x` |
//! | `[u]x[/u]` (WhatsApp has no underline) | `x` | `x` |
//! | `[url]x[/url]` | `x` | `x` |
//! | `[url=x]y[/url]` | `y: x` (just `x` when `y` is empty or `x`) | same |
//! | `[USER=n]y[/USER]`, `[CHAT=..]`, `[SEND=..]`, `[PUT=..]`, `[CALL=..]`, `[PCH=..]`, `[COLOR=..]`, `[SIZE=..]`, `[FONT=..]`, `[CODE]`, `[QUOTE]` | `y` | `y` |
//! | `[ATTACH=n]`, `[ICON=..]`, `[DISK=n]` | removed | removed |
//!
//! Tag names are case-insensitive. An unknown tag (`[foo]`, `[1]`) stays as literal text; a known tag without its
//! partner is dropped. HTML entities (`&quot;`, `&amp;`, `&#39;`, `&#x2F;`, ...) are decoded. Markers are placed
//! around the trimmed inner text (`[b] x [/b]` → ` *x* `) because WhatsApp ignores `* x *`. Trailing spaces at line
//! ends and at both ends of the message are removed.

/// Paired tags whose content is kept.
const PAIRED: &[&str] = &[
    "b", "i", "s", "u", "url", "user", "chat", "send", "put", "call", "pch", "color", "size", "font", "code", "quote",
];
/// Single tags that are removed.
const REMOVED: &[&str] = &["attach", "icon", "disk"];

/// Operator BBCode → WhatsApp text with `*bold*`, `_italic_` and `~strike~`.
pub fn to_whatsapp(bbcode: &str) -> String {
    finish(&render(&parse(bbcode), true))
}

/// Operator BBCode → plain text (all formatting dropped, links kept as in [`to_whatsapp`]).
pub fn to_plain(bbcode: &str) -> String {
    finish(&render(&parse(bbcode), false))
}

/// Splits off Bitrix's operator signature line, `[b]Klaus Weber:[/b] [br]`, from the start of an operator message.
/// Returns the name (`"Klaus Weber"`) and the rest of the message (still BBCode). The signature must be the bold
/// first thing in the message, end with `:` and be followed by a line break (`[br]`, `#BR#` or a newline);
/// otherwise the message is returned unchanged with `None`.
pub fn split_signature(bbcode: &str) -> (Option<&str>, &str) {
    let s = bbcode.trim_start();
    let Some(after_open) = strip_prefix_ci(s, "[b]") else { return (None, bbcode) };
    let Some(close) = after_open.to_ascii_lowercase().find("[/b]") else { return (None, bbcode) };
    let inner = after_open[..close].trim();
    let Some(name) = inner.strip_suffix(':').map(str::trim_end) else { return (None, bbcode) };
    if name.is_empty() || name.contains(['[', '\n']) {
        return (None, bbcode);
    }
    let after = after_open[close + 4..].trim_start_matches([' ', '\t']);
    let rest = strip_prefix_ci(after, "[br]")
        .or_else(|| strip_prefix_ci(after, "#br#"))
        .or_else(|| after.strip_prefix("\r\n"))
        .or_else(|| after.strip_prefix('\n'));
    match rest {
        Some(rest) => (Some(name), rest),
        None => (None, bbcode),
    }
}

/// `s` without the ASCII prefix `p` compared case-insensitively.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| &s[p.len()..])
}

// ---------------------------------------------------------------------------------------------------------------------
// Parsing into a small tree
// ---------------------------------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Node {
    Text(String),
    Br,
    Elem(Frame),
}

#[derive(Debug)]
struct Frame {
    name: String,
    arg: Option<String>,
    children: Vec<Node>,
}

enum Tag {
    Open(String, Option<String>),
    Close(String),
    Br,
    Removed,
}

fn classify_tag(inner: &str) -> Option<Tag> {
    if let Some(name) = inner.strip_prefix('/') {
        let name = name.trim().to_ascii_lowercase();
        return PAIRED.contains(&name.as_str()).then_some(Tag::Close(name));
    }
    let end = inner.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(inner.len());
    let name = inner[..end].to_ascii_lowercase();
    if name == "br" && inner.len() == 2 {
        return Some(Tag::Br);
    }
    if REMOVED.contains(&name.as_str()) {
        return Some(Tag::Removed);
    }
    if !PAIRED.contains(&name.as_str()) {
        return None;
    }
    let arg = inner[end..].trim_start().strip_prefix('=').map(|a| {
        let a = a.trim();
        let unquoted = a.strip_prefix('"').and_then(|x| x.strip_suffix('"'));
        unquoted.unwrap_or(a).to_owned()
    });
    Some(Tag::Open(name, arg))
}

fn parse(src: &str) -> Vec<Node> {
    let mut stack = vec![Frame { name: String::new(), arg: None, children: Vec::new() }];
    let mut text = String::new();
    let mut rest = src;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let tail = &rest[open..];
        let tag = tail[1..].find([']', '[']).filter(|&i| tail.as_bytes()[i + 1] == b']').map(|i| (&tail[1..=i], i + 2));
        let Some((inner, len)) = tag else {
            text.push('[');
            rest = &tail[1..];
            continue;
        };
        rest = &tail[len..];
        let Some(tag) = classify_tag(inner) else {
            text.push_str(&tail[..len]);
            continue;
        };
        flush_text(&mut stack, &mut text);
        match tag {
            Tag::Br => push_node(&mut stack, Node::Br),
            Tag::Removed => {}
            Tag::Open(name, arg) => stack.push(Frame { name, arg, children: Vec::new() }),
            Tag::Close(name) => {
                let Some(pos) = stack.iter().rposition(|f| f.name == name) else { continue };
                if pos == 0 {
                    continue;
                }
                while stack.len() > pos + 1 {
                    unwrap_top(&mut stack);
                }
                if let Some(frame) = stack.pop() {
                    push_node(&mut stack, Node::Elem(frame));
                }
            }
        }
    }
    text.push_str(rest);
    flush_text(&mut stack, &mut text);
    while stack.len() > 1 {
        unwrap_top(&mut stack);
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

fn push_node(stack: &mut [Frame], node: Node) {
    if let Some(top) = stack.last_mut() {
        top.children.push(node);
    }
}

fn flush_text(stack: &mut [Frame], text: &mut String) {
    if !text.is_empty() {
        push_node(stack, Node::Text(std::mem::take(text)));
    }
}

/// Drops an unclosed opening tag, keeping what it contained.
fn unwrap_top(stack: &mut Vec<Frame>) {
    if let Some(frame) = stack.pop() {
        if let Some(parent) = stack.last_mut() {
            parent.children.extend(frame.children);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------------

fn render(nodes: &[Node], markup: bool) -> String {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(&decode_entities(&replace_ci(t, "#br#", "\n"))),
            Node::Br => out.push('\n'),
            Node::Elem(f) => {
                let inner = render(&f.children, markup);
                let marker = match f.name.as_str() {
                    "b" => "*",
                    "i" => "_",
                    "s" => "~",
                    _ => "",
                };
                if f.name == "url" {
                    out.push_str(&link(&inner, f.arg.as_deref()));
                } else if markup && !marker.is_empty() {
                    out.push_str(&wrap(&inner, marker));
                } else {
                    out.push_str(&inner);
                }
            }
        }
    }
    out
}

fn link(inner: &str, arg: Option<&str>) -> String {
    let Some(target) = arg.map(decode_entities).filter(|t| !t.trim().is_empty()) else { return inner.to_owned() };
    let label = inner.trim();
    if label.is_empty() || label == target.trim() {
        target.trim().to_owned()
    } else {
        format!("{label}: {}", target.trim())
    }
}

fn wrap(inner: &str, marker: &str) -> String {
    let core = inner.trim();
    if core.is_empty() {
        return inner.to_owned();
    }
    let start = inner.len() - inner.trim_start().len();
    let end = start + core.len();
    format!("{}{marker}{core}{marker}{}", &inner[..start], &inner[end..])
}

fn replace_ci(s: &str, pat: &str, with: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (i, _) in lower.match_indices(pat) {
        out.push_str(&s[last..i]);
        out.push_str(with);
        last = i + pat.len();
    }
    out.push_str(&s[last..]);
    out
}

/// Decodes the HTML entities Bitrix puts in event texts, and numeric ones. Unknown entities stay as they are.
pub(crate) fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.as_bytes()[1..].iter().take(11).position(|&b| b == b';').and_then(|semi| {
            let c = entity(&tail[1..=semi])?;
            Some((c, semi + 2))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    match name {
        "quot" => Some('"'),
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Line ends without trailing spaces, CRLF as LF, whole text trimmed.
fn finish(s: &str) -> String {
    let s = s.replace("\r\n", "\n");
    let lines: Vec<&str> = s.split('\n').map(|l| l.trim_end_matches([' ', '\t'])).collect();
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edna_rules() {
        assert_eq!(to_plain("[b]Klaus Weber:[/b] [br]Guten Tag!"), "Klaus Weber:\nGuten Tag!");
        assert_eq!(to_plain("a[BR]b#BR#c"), "a\nb\nc");
        assert_eq!(to_plain("[b]x[/b] [U]y[/U] [i]z[/i] [s]w[/s]"), "x y z w");
        assert_eq!(to_plain("[url]https://a.example/x[/url]"), "https://a.example/x");
        assert_eq!(to_plain("[url=https://a.example/x]the docs[/url]"), "the docs: https://a.example/x");
        assert_eq!(to_plain("[URL=\"https://a.example/x\"]https://a.example/x[/URL]"), "https://a.example/x");
        assert_eq!(to_plain("[url=https://a.example/x][/url]"), "https://a.example/x");
        assert_eq!(to_plain("Hi [USER=27]Klaus[/USER], see [CHAT=12]sales[/CHAT]"), "Hi Klaus, see sales");
        assert_eq!(to_plain("[SEND=yes]Yes[/SEND] [PUT=/help]Help[/PUT] [CALL=+4930]call[/CALL]"), "Yes Help call");
        assert_eq!(to_plain("[PCH=5]photo[/PCH]"), "photo");
        assert_eq!(to_plain("file [ATTACH=3] here [ICON=https://x/i.png title=t] [DISK=7]"), "file  here");
        assert_eq!(to_plain("[color=#ff0000]red[/color] [size=12]big[/size]"), "red big");
    }

    #[test]
    fn whatsapp_markup() {
        assert_eq!(to_whatsapp("[b]Klaus Weber:[/b] [br]Guten Tag!"), "*Klaus Weber:*\nGuten Tag!");
        assert_eq!(to_whatsapp("[i]it[/i] and [s]gone[/s] and [u]under[/u]"), "_it_ and ~gone~ and under");
        assert_eq!(to_whatsapp("a[b] bold [/b]b"), "a *bold* b");
        assert_eq!(to_whatsapp("[b][/b]x[b] [/b]"), "x");
        assert_eq!(to_whatsapp("[b][i]both[/i][/b]"), "*_both_*");
        assert_eq!(to_whatsapp("[url=https://a.example]site[/url]"), "site: https://a.example");
    }

    #[test]
    fn unknown_and_unbalanced_tags() {
        assert_eq!(to_plain("[foo]x[/foo] [1] a[b"), "[foo]x[/foo] [1] a[b");
        assert_eq!(to_plain("[b]never closed"), "never closed");
        assert_eq!(to_plain("stray[/b] close"), "stray close");
        assert_eq!(to_whatsapp("[b]x[i]y[/b]z[/i]"), "*xy*z");
        assert_eq!(to_plain("[[b]x[/b]]"), "[x]");
        assert_eq!(to_plain("a [ b ] c"), "a [ b ] c");
        assert_eq!(to_plain("[br/]"), "[br/]");
    }

    #[test]
    fn entities_and_whitespace() {
        assert_eq!(
            to_plain("&quot;hi&quot; &amp;amp; &lt;b&gt; it&#39;s &#x263A; &bogus; & done"),
            "\"hi\" &amp; <b> it's ☺ &bogus; & done"
        );
        assert_eq!(to_plain("[url=https://a.example/?a=1&amp;b=2]q[/url]"), "q: https://a.example/?a=1&b=2");
        assert_eq!(to_plain("  line  \r\nnext\t\n\n"), "line\nnext");
        assert_eq!(to_plain("Grüße [b]Jürgen[/b] 👍"), "Grüße Jürgen 👍");
    }

    #[test]
    fn signature() {
        assert_eq!(split_signature("[b]Klaus Weber:[/b] [br]Guten Tag!"), (Some("Klaus Weber"), "Guten Tag!"));
        assert_eq!(split_signature("[B]Ana:[/B]\nOi"), (Some("Ana"), "Oi"));
        assert_eq!(split_signature(" [b]Ana :[/b]#BR#Oi"), (Some("Ana"), "Oi"));
        assert_eq!(split_signature("[b]Ana:[/b][br][br]Oi"), (Some("Ana"), "[br]Oi"));
        for text in ["[b]Ana:[/b] Oi", "[b]Ana[/b][br]Oi", "Hello [b]Ana:[/b][br]", "[b]:[/b][br]x", "[b]Ana:", "plain"]
        {
            assert_eq!(split_signature(text), (None, text), "{text}");
        }
    }
}
