//! Parsing SIP messages from bytes, writing them back, and reading the headers the proxy needs.
//!
//! [`parse`] is our own framer that produces [`rsip`] types, because rsip 0.4's tokenizer and
//! writer have quirks that matter at an internet-facing edge:
//! - compact header names (`v:`, `i:`, `f:`, `t:`, `m:`, `l:`...) are not recognised (a compact Via
//!   would land in `Header::Other("v", ..)`); we map them to the full headers;
//! - folded (multi-line) header values are rejected; we unfold them;
//! - URIs with IPv6 hosts, or a user part containing `.`, are rejected or mis-parsed (see
//!   [`super::uri`]); we parse the Request-URI ourselves;
//! - response reason phrases are replaced by rsip's CamelCase names (`183 SessionProgress`); we keep
//!   every status as `StatusCode::Other(code, reason-as-received)` so reasons pass through
//!   unchanged, and local responses get the RFC phrase via [`status`]. Compare codes with
//!   `status_code.code()`, never with `StatusCode::OK` etc.;
//! - `Display` / `Into<Bytes>` write the body through `String::from_utf8_lossy`, corrupting
//!   non-UTF-8 bodies; use [`request_bytes`] / [`response_bytes`] / [`message_bytes`];
//! - header names are re-written in rsip's canonical case (`call-id` → `Call-ID`), unknown headers
//!   (`x-wa-meta-*`, `X-FB-External-Domain`) keep their name and value exactly. Header order and
//!   values (Record-Route included) are preserved.

use std::borrow::Cow;
use std::fmt;

use rsip::headers::{self as h, UntypedHeader};
use rsip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode, Version};

use super::uri::{split_host_port, SipUri, UriError};

/// Largest message [`parse`] accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most header fields [`parse`] accepts (after unfolding; a comma list counts as one).
pub const MAX_HEADERS: usize = 100;

/// Why [`parse`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("invalid start line")]
    StartLine,
    #[error("unsupported SIP version")]
    Version,
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("unsupported Request-URI scheme")]
    UnsupportedScheme,
    #[error("invalid Request-URI")]
    Uri,
    #[error("invalid status code")]
    Status,
    #[error("invalid header field")]
    Header,
    #[error("message head is not valid UTF-8")]
    NonUtf8,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("body shorter than Content-Length")]
    Truncated,
}

/// Parses one SIP message from a datagram or a framed stream message.
///
/// Limits: at most [`MAX_MESSAGE_BYTES`] bytes and [`MAX_HEADERS`] header fields. Leading empty
/// lines are skipped (RFC 3261 §7.5). CRLF or bare LF line ends are accepted. Content-Length must be
/// a number, agree with any duplicate, and not exceed the bytes present; bytes after it are
/// discarded (RFC 3261 §18.3). Without Content-Length the body is the rest of the input.
pub fn parse(bytes: &[u8]) -> Result<SipMessage, ParseError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge);
    }
    let raw = split_raw(bytes)?;
    let mut headers = Vec::with_capacity(raw.headers.len());
    let mut content_length: Option<usize> = None;
    for (name, value) in raw.headers {
        let header = make_header(name, value);
        if let Header::ContentLength(cl) = &header {
            let text = cl.value().trim();
            if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::ContentLength);
            }
            let n: usize = text.parse().map_err(|_| ParseError::ContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::ContentLength);
            }
            content_length = Some(n);
        }
        headers.push(header);
    }
    let body = match content_length {
        Some(n) => raw.body.get(..n).ok_or(ParseError::Truncated)?,
        None => raw.body,
    };
    let headers = Headers::from(headers);
    match parse_start_line(raw.start)? {
        StartLine::Request(method, uri) => {
            Ok(SipMessage::Request(Request { method, uri, version: Version::V2, headers, body: body.to_vec() }))
        }
        StartLine::Response(status_code) => {
            Ok(SipMessage::Response(Response { status_code, version: Version::V2, headers, body: body.to_vec() }))
        }
    }
}

/// When [`parse`] refuses a request but enough of it is readable to answer (a request line and
/// Via, From, To, Call-ID and CSeq header fields), builds the error response: 513 for an oversized
/// message, 416 for a non-SIP Request-URI scheme, 501 for an unknown method, 505 for another SIP
/// version, 400 otherwise. `None` for messages that parse, responses, ACKs (never answered) and
/// messages too broken to answer.
pub fn bad_request_for(bytes: &[u8]) -> Option<Response> {
    let error = parse(bytes).err()?;
    let (code, reason) = match error {
        ParseError::TooLarge => (513, "Message Too Large"),
        ParseError::UnsupportedScheme => (416, "Unsupported URI Scheme"),
        ParseError::UnknownMethod(_) => (501, "Not Implemented"),
        ParseError::Version => (505, "Version Not Supported"),
        _ => (400, "Bad Request"),
    };
    let head = bytes.get(..bytes.len().min(MAX_MESSAGE_BYTES)).unwrap_or_default();
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty());
    let start = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = start.split(' ');
    let method = parts.next()?;
    let _uri = parts.next()?;
    let version = parts.next()?;
    if method.is_empty() || method == "ACK" || method.starts_with("SIP/") || !version.starts_with("SIP/") {
        return None;
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines.take(MAX_HEADERS * 2) {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim_matches([' ', '\t']);
        if value.is_empty() || value.chars().any(|c| c.is_control() && c != '\t') {
            continue;
        }
        match canonical_name(name.trim_end_matches([' ', '\t'])).as_ref() {
            "via" => vias.push(value.to_string()),
            "from" => from = from.or(Some(value.to_string())),
            "to" => to = to.or(Some(value.to_string())),
            "call-id" => call_id = call_id.or(Some(value.to_string())),
            "cseq" => cseq = cseq.or(Some(value.to_string())),
            _ => {}
        }
    }
    if vias.is_empty() {
        return None;
    }
    let (from, mut to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if header_param(name_addr(&to)?.1, "tag").is_none() {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(call_id.as_bytes());
        to.push_str(&format!(";tag=wab{}", hex::encode(digest.get(..8).unwrap_or_default())));
    }
    let mut headers: Vec<Header> = vias.into_iter().map(|v| Header::Via(h::Via::new(v))).collect();
    headers.push(Header::From(h::From::new(from)));
    headers.push(Header::To(h::To::new(to)));
    headers.push(Header::CallId(h::CallId::new(call_id)));
    headers.push(Header::CSeq(h::CSeq::new(cseq)));
    headers.push(Header::ContentLength(h::ContentLength::new("0")));
    Some(Response {
        status_code: status_with_reason(code, reason),
        version: Version::V2,
        headers: headers.into(),
        body: vec![],
    })
}

struct RawMessage<'a> {
    start: &'a str,
    headers: Vec<(&'a str, String)>,
    body: &'a [u8],
}

fn split_raw(bytes: &[u8]) -> Result<RawMessage<'_>, ParseError> {
    let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let mut rest = bytes.get(skip..).unwrap_or_default();
    if rest.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut lines: Vec<&[u8]> = Vec::new();
    let body;
    loop {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let (line, after) = rest.split_at(i);
                rest = after.get(1..).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    body = rest;
                    break;
                }
                lines.push(line);
            }
            None => {
                let line = rest.strip_suffix(b"\r").unwrap_or(rest);
                if !line.is_empty() {
                    lines.push(line);
                }
                body = &[][..];
                break;
            }
        }
        if lines.len() > MAX_HEADERS * 4 {
            return Err(ParseError::TooManyHeaders);
        }
    }
    let mut lines = lines.into_iter();
    let start = lines.next().ok_or(ParseError::Empty)?;
    let start = std::str::from_utf8(start).map_err(|_| ParseError::NonUtf8)?;
    let mut headers: Vec<(&str, String)> = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NonUtf8)?;
        if line.chars().any(|c| (c.is_control() && c != '\t') || c == '\u{7f}') {
            return Err(ParseError::Header);
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation line (RFC 3261 §7.3.1): joins the previous value with one space.
            let (_, value) = headers.last_mut().ok_or(ParseError::Header)?;
            let more = line.trim_matches([' ', '\t']);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::Header)?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(ParseError::Header);
        }
        headers.push((name, value.trim_matches([' ', '\t']).to_string()));
        if headers.len() > MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
    }
    Ok(RawMessage { start, headers, body })
}

enum StartLine {
    Request(Method, rsip::Uri),
    Response(StatusCode),
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or(ParseError::StartLine)?;
        if version != "2.0" {
            return Err(ParseError::Version);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Status);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::Status)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::Status);
        }
        return Ok(StartLine::Response(StatusCode::Other(code, reason.to_string())));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(ParseError::StartLine);
    }
    match version.strip_prefix("SIP/") {
        Some("2.0") => {}
        Some(_) => return Err(ParseError::Version),
        None => return Err(ParseError::StartLine),
    }
    let method = match method.parse::<Method>() {
        // rsip matches methods case-insensitively; SIP methods are case-sensitive.
        Ok(m) if m.to_string() == method => m,
        _ => return Err(ParseError::UnknownMethod(method.to_string())),
    };
    let uri = match SipUri::parse(uri) {
        Ok(u) if u.headers.is_none() => u,
        Ok(_) => return Err(ParseError::Uri),
        Err(UriError::UnsupportedScheme) => return Err(ParseError::UnsupportedScheme),
        Err(UriError::Invalid) => return Err(ParseError::Uri),
    };
    Ok(StartLine::Request(method, uri.to_rsip()))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Lower-case full header name, with compact forms (RFC 3261 §7.3.3 and later RFCs) expanded.
pub fn canonical_name(name: &str) -> Cow<'static, str> {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "a" => "accept-contact",
        "b" => "referred-by",
        "c" => "content-type",
        "d" => "request-disposition",
        "e" => "content-encoding",
        "f" => "from",
        "i" => "call-id",
        "j" => "reject-contact",
        "k" => "supported",
        "l" => "content-length",
        "m" => "contact",
        "n" => "identity-info",
        "o" => "event",
        "r" => "refer-to",
        "s" => "subject",
        "t" => "to",
        "u" => "allow-events",
        "v" => "via",
        "x" => "session-expires",
        "y" => "identity",
        _ => return Cow::Owned(lower),
    };
    Cow::Borrowed(full)
}

macro_rules! header_table {
    ($($variant:ident => $lname:literal),* $(,)?) => {
        /// Builds the rsip header for a name as received (compact forms expanded). Unknown headers
        /// become `Header::Other` with the name exactly as received.
        pub fn make_header(name: &str, value: String) -> Header {
            let canonical = canonical_name(name);
            match canonical.as_ref() {
                $($lname => Header::$variant(h::$variant::new(value)),)*
                other => {
                    // A compact form of a header rsip has no variant for: write the full name.
                    let written = if name.len() == 1 && other.len() > 1 { pretty_name(other) } else { name.to_string() };
                    Header::Other(written, value)
                }
            }
        }

        /// `(lower-case name, value)` of a header.
        pub fn header_parts(header: &Header) -> (Cow<'_, str>, &str) {
            match header {
                $(Header::$variant(x) => (Cow::Borrowed($lname), x.value()),)*
                Header::Other(name, value) => (canonical_name(name), value.as_str()),
            }
        }
    };
}

header_table! {
    Accept => "accept",
    AcceptEncoding => "accept-encoding",
    AcceptLanguage => "accept-language",
    AlertInfo => "alert-info",
    Allow => "allow",
    AuthenticationInfo => "authentication-info",
    Authorization => "authorization",
    CSeq => "cseq",
    CallId => "call-id",
    CallInfo => "call-info",
    Contact => "contact",
    ContentDisposition => "content-disposition",
    ContentEncoding => "content-encoding",
    ContentLanguage => "content-language",
    ContentLength => "content-length",
    ContentType => "content-type",
    Date => "date",
    ErrorInfo => "error-info",
    Event => "event",
    Expires => "expires",
    From => "from",
    InReplyTo => "in-reply-to",
    MaxForwards => "max-forwards",
    MimeVersion => "mime-version",
    MinExpires => "min-expires",
    Organization => "organization",
    Priority => "priority",
    ProxyAuthenticate => "proxy-authenticate",
    ProxyAuthorization => "proxy-authorization",
    ProxyRequire => "proxy-require",
    RecordRoute => "record-route",
    ReplyTo => "reply-to",
    Require => "require",
    RetryAfter => "retry-after",
    Route => "route",
    Server => "server",
    Subject => "subject",
    SubscriptionState => "subscription-state",
    Supported => "supported",
    Timestamp => "timestamp",
    To => "to",
    Unsupported => "unsupported",
    UserAgent => "user-agent",
    Via => "via",
    Warning => "warning",
    WwwAuthenticate => "www-authenticate",
}

fn pretty_name(lower: &str) -> String {
    lower
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Writes a request; the body bytes are copied unchanged.
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n{}\r\n", req.method, req.uri, req.version, req.headers).into_bytes();
    out.extend_from_slice(&req.body);
    out
}

/// Writes a response; the body bytes are copied unchanged.
pub fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut out = format!("{} {}\r\n{}\r\n", resp.version, resp.status_code, resp.headers).into_bytes();
    out.extend_from_slice(&resp.body);
    out
}

/// Writes a message; the body bytes are copied unchanged.
pub fn message_bytes(msg: &SipMessage) -> Vec<u8> {
    match msg {
        SipMessage::Request(r) => request_bytes(r),
        SipMessage::Response(r) => response_bytes(r),
    }
}

/// The RFC reason phrase of a status code ("" when unknown).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => "",
    }
}

/// A status code that displays with its RFC reason phrase (`407 Proxy Authentication Required`,
/// where rsip's own variants would display `407 ProxyAuthenticationRequired`).
pub fn status(code: u16) -> StatusCode {
    StatusCode::Other(code, reason_phrase(code).to_string())
}

/// A status code with a chosen reason phrase.
pub fn status_with_reason(code: u16, reason: &str) -> StatusCode {
    StatusCode::Other(code, reason.to_string())
}

/// Values of every header field with this (full, lower-case) name, in order.
pub fn header_values<'a>(headers: &'a Headers, lower_name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter_map(|hd| {
            let (name, value) = header_parts(hd);
            (name == lower_name).then_some(value)
        })
        .collect()
}

/// The first value of a header (full, lower-case name).
pub fn header_value<'a>(headers: &'a Headers, lower_name: &str) -> Option<&'a str> {
    headers.iter().find_map(|hd| {
        let (name, value) = header_parts(hd);
        (name == lower_name).then_some(value)
    })
}

/// Every element of every field with this name, comma lists split (for Via, Route, Record-Route...).
pub fn header_elements<'a>(headers: &'a Headers, lower_name: &str) -> Vec<&'a str> {
    header_values(headers, lower_name).into_iter().flat_map(split_list).collect()
}

/// Splits a header value at top-level commas (outside quotes and `<>`), trimming each element and
/// dropping empty ones.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut escaped, mut in_angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                if let Some(piece) = value.get(start..i) {
                    out.push(piece);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if let Some(piece) = value.get(start..) {
        out.push(piece);
    }
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Splits a name-addr / addr-spec element into `(uri, header-params)`, e.g.
/// `"Bob" <sip:b@h;lr>;tag=1` → (`sip:b@h;lr`, `;tag=1`). Without `<>`, parameters after the URI
/// belong to the header (RFC 3261 §20).
pub fn name_addr(element: &str) -> Option<(&str, &str)> {
    let element = element.trim();
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in element.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => {
                let rest = element.get(i + 1..)?;
                let (uri, params) = rest.split_once('>')?;
                return Some((uri.trim(), params.trim()));
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    match element.split_once(';') {
        Some((uri, params)) => Some((uri.trim(), params)),
        None => Some((element, "")),
    }
}

/// A header parameter's value from a `;a=b;c` string (`Some("")` for a flag). Case-insensitive name.
pub fn header_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').map(str::trim).find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The `tag` of the To header field, if any.
pub fn to_tag(headers: &Headers) -> Option<&str> {
    let (_, params) = name_addr(header_value(headers, "to")?)?;
    header_param(params, "tag").filter(|t| !t.is_empty())
}

/// The `tag` of the From header field, if any.
pub fn from_tag(headers: &Headers) -> Option<&str> {
    let (_, params) = name_addr(header_value(headers, "from")?)?;
    header_param(params, "tag").filter(|t| !t.is_empty())
}

/// The Call-ID, trimmed.
pub fn call_id(headers: &Headers) -> Option<&str> {
    header_value(headers, "call-id").map(str::trim).filter(|c| !c.is_empty())
}

/// The CSeq as `(number, method)`.
pub fn cseq(headers: &Headers) -> Option<(u32, &str)> {
    let value = header_value(headers, "cseq")?;
    let mut parts = value.split_whitespace();
    let number = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    parts.next().is_none().then_some((number, method))
}

/// Correlation key for a call: the `x-wa-meta-wacid` header when present, else the Call-ID (or ""
/// when neither is present).
pub fn call_id_key(req: &Request) -> String {
    header_value(&req.headers, "x-wa-meta-wacid")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| call_id(&req.headers))
        .unwrap_or_default()
        .to_string()
}

/// `x-wa-meta-call-duration` (seconds) from Meta's BYE on an established call.
pub fn call_duration_secs(req: &Request) -> Option<u64> {
    let value = header_value(&req.headers, "x-wa-meta-call-duration")?.trim();
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Every `x-wa-meta-*` header as `(name as received, value)`, in order.
pub fn wa_meta_headers(headers: &Headers) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter_map(|hd| match hd {
            Header::Other(name, value) if name.to_ascii_lowercase().starts_with("x-wa-meta-") => {
                Some((name.as_str(), value.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// One Via element (`SIP/2.0/UDP host:port;params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaValue {
    /// Transport token in upper case (`UDP`, `TCP`, `TLS`, `WS`...).
    pub transport: String,
    /// sent-by exactly as written (`host[:port]`).
    pub sent_by: String,
    /// Host of sent-by as written (IPv6 keeps brackets).
    pub host: String,
    /// Port of sent-by, if written.
    pub port: Option<u16>,
    /// Parameters in order.
    pub params: Vec<(String, Option<String>)>,
}

impl ViaValue {
    /// Parses one Via element; tolerant of linear whitespace around `/`.
    pub fn parse(text: &str) -> Option<ViaValue> {
        let (proto, rest) = text.trim().split_once('/')?;
        if !proto.trim().eq_ignore_ascii_case("SIP") {
            return None;
        }
        let (version, rest) = rest.split_once('/')?;
        if version.trim() != "2.0" {
            return None;
        }
        let rest = rest.trim_start();
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let (transport, rest) = rest.split_at(end);
        if transport.is_empty() || !transport.chars().all(is_token_char) {
            return None;
        }
        let mut pieces = rest.split(';');
        let sent_by = pieces.next()?.trim();
        let (host, port) = split_host_port(sent_by)?;
        let mut params = Vec::new();
        for piece in pieces {
            let piece = piece.trim();
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (piece, None),
            };
            if name.is_empty() || !name.chars().all(is_token_char) {
                return None;
            }
            params.push((name.to_string(), value));
        }
        Some(ViaValue { transport: transport.to_ascii_uppercase(), sent_by: sent_by.to_string(), host, port, params })
    }

    /// A parameter's value (`Some(None)` for a flag). Case-insensitive name.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The branch parameter ("" when absent).
    pub fn branch(&self) -> &str {
        self.param("branch").flatten().unwrap_or_default()
    }

    /// Sets a parameter, keeping its position when it already exists.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for ViaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by)?;
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// The topmost Via element.
pub fn top_via(headers: &Headers) -> Option<ViaValue> {
    ViaValue::parse(header_elements(headers, "via").first()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::testdata;

    #[test]
    fn parses_meta_invite_and_keeps_everything() {
        let bytes = testdata::meta_invite();
        let SipMessage::Request(req) = parse(&bytes).unwrap() else { panic!("request expected") };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(req.uri.to_string(), "sip:+15551234567;tgrp=wacall@sip.example.com;transport=tls");
        assert_eq!(req.body, testdata::SDP.as_bytes());
        assert_eq!(
            header_values(&req.headers, "record-route"),
            vec!["<sip:wa.meta.vc;transport=tls;lr>", "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>"]
        );
        assert_eq!(call_id_key(&req), testdata::WACID);
        assert_eq!(to_tag(&req.headers), None);
        assert_eq!(from_tag(&req.headers), Some("4f5e6d7c8b9a"));
        assert_eq!(cseq(&req.headers), Some((1, "INVITE")));
        let via = top_via(&req.headers).unwrap();
        assert_eq!(via.host, "[2a03:2880:f0fc:c:face:b00c:0:9]");
        assert_eq!(via.port, Some(5061));
        assert_eq!(via.transport, "TLS");
        assert!(via.branch().starts_with("z9hG4bK"));
        // Serialising gives the same bytes back (header names are already canonical in the sample).
        assert_eq!(request_bytes(&req), bytes);
        assert_eq!(wa_meta_headers(&req.headers), vec![("x-wa-meta-wacid", testdata::WACID)]);
    }

    #[test]
    fn round_trip_keeps_unknown_headers_and_binary_body() {
        let mut bytes = b"INVITE sip:+15551234567@sip.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nX-Custom:  keep  me \r\nx-wa-meta-cta-payload: {\"a\":1}\r\nContent-Length: 4\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0x00, 0xfe, b'\n']);
        let msg = parse(&bytes).unwrap();
        let out = message_bytes(&msg);
        assert!(out.ends_with(&[0xff, 0x00, 0xfe, b'\n']));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\r\nX-Custom: keep  me\r\n"), "{text}");
        assert!(text.contains("\r\nx-wa-meta-cta-payload: {\"a\":1}\r\n"));
        assert_eq!(parse(&out).unwrap(), msg);
        // rsip's own writer is lossy for this body: that is why message_bytes exists.
        assert_ne!(msg.to_string().into_bytes(), out);
    }

    #[test]
    fn response_reason_phrase_is_preserved() {
        let bytes = b"SIP/2.0 403 No Approved Call Permission Found\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        let SipMessage::Response(resp) = parse(bytes).unwrap() else { panic!() };
        assert_eq!(resp.status_code.code(), 403);
        assert_eq!(response_bytes(&resp), bytes.to_vec());
        assert_eq!(status(407).to_string(), "407 Proxy Authentication Required");
    }

    #[test]
    fn compact_and_folded_headers() {
        let bytes = b"BYE sip:+15557654321@wa.meta.vc;transport=tls SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.20:5060;branch=z9hG4bKx;rport\r\ni: abc@10.0.0.20\r\nf: <sip:+15551234567@sip.example.com>;tag=1\r\nt: <sip:+15557654321@wa.meta.vc>\r\n ;tag=2\r\nCSeq: 2 BYE\r\nl: 0\r\nr: <sip:x@y>\r\n\r\n";
        let SipMessage::Request(req) = parse(bytes).unwrap() else { panic!() };
        assert!(matches!(req.headers.iter().next(), Some(Header::Via(_))));
        assert_eq!(call_id(&req.headers), Some("abc@10.0.0.20"));
        assert_eq!(to_tag(&req.headers), Some("2"));
        assert_eq!(header_value(&req.headers, "refer-to"), Some("<sip:x@y>"));
        let text = String::from_utf8(request_bytes(&req)).unwrap();
        assert!(
            text.contains("\r\nCall-ID: abc@10.0.0.20\r\n") && text.contains("\r\nRefer-To: <sip:x@y>\r\n"),
            "{text}"
        );
    }

    #[test]
    fn content_length_rules() {
        let head = "OPTIONS sip:sip.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n";
        let extra = format!("{head}Content-Length: 2\r\n\r\nabcd");
        assert_eq!(parse(extra.as_bytes()).unwrap().body(), b"ab", "UDP: extra bytes discarded");
        let short = format!("{head}Content-Length: 10\r\n\r\nabcd");
        assert_eq!(parse(short.as_bytes()), Err(ParseError::Truncated));
        let conflicting = format!("{head}Content-Length: 2\r\nl: 3\r\n\r\nabcd");
        assert_eq!(parse(conflicting.as_bytes()), Err(ParseError::ContentLength));
        let bad = format!("{head}Content-Length: -1\r\n\r\n");
        assert_eq!(parse(bad.as_bytes()), Err(ParseError::ContentLength));
        let none = format!("{head}\r\nxyz");
        assert_eq!(parse(none.as_bytes()).unwrap().body(), b"xyz");
    }

    #[test]
    fn limits_and_garbage() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(parse(&vec![b'a'; MAX_MESSAGE_BYTES + 1]), Err(ParseError::TooLarge));
        let mut many = String::from("OPTIONS sip:h SIP/2.0\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        assert_eq!(parse(many.as_bytes()), Err(ParseError::TooManyHeaders));
        assert_eq!(parse(b"FOO sip:h SIP/2.0\r\n\r\n"), Err(ParseError::UnknownMethod("FOO".into())));
        assert_eq!(parse(b"invite sip:h SIP/2.0\r\n\r\n"), Err(ParseError::UnknownMethod("invite".into())));
        assert_eq!(parse(b"INVITE tel:+15551234567 SIP/2.0\r\n\r\n"), Err(ParseError::UnsupportedScheme));
        assert_eq!(parse(b"INVITE sip:h SIP/3.0\r\n\r\n"), Err(ParseError::Version));
        assert_eq!(parse(b"INVITE sip:h SIP/2.0\r\nBad Header\r\n\r\n"), Err(ParseError::Header));
        assert_eq!(parse(b"INVITE sip:h SIP/2.0\r\nX: a\rb\r\n\r\n"), Err(ParseError::Header));
        assert_eq!(parse(b"INVITE sip:h SIP/2.0\r\nX: \xff\r\n\r\n"), Err(ParseError::NonUtf8));
        assert_eq!(parse(b"SIP/2.0 99 Low\r\n\r\n"), Err(ParseError::Status));
        assert_eq!(parse(b"INVITE  sip:h SIP/2.0\r\n\r\n"), Err(ParseError::StartLine));
        assert_eq!(parse(b"INVITE sip:h?Subject=x SIP/2.0\r\n\r\n"), Err(ParseError::Uri));
    }

    #[test]
    fn bad_request_for_answers_when_possible() {
        let bytes = b"INVITE sip:+15551234567@sip.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 57.144.67.157:5061;branch=z9hG4bKq\r\nFrom: <sip:+15557654321@wa.meta.vc>;tag=a\r\nTo: <sip:+15551234567@sip.example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\nv=0\r\n";
        let resp = bad_request_for(bytes).unwrap();
        assert_eq!(resp.status_code.code(), 400);
        assert!(to_tag(&resp.headers).is_some_and(|t| t.starts_with("wab")));
        assert_eq!(header_value(&resp.headers, "via"), Some("SIP/2.0/TLS 57.144.67.157:5061;branch=z9hG4bKq"));
        let tel = b"INVITE tel:+15551234567 SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: x\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(bad_request_for(tel).unwrap().status_code.code(), 416);
        assert_eq!(bad_request_for(&testdata::meta_invite()), None, "parses fine");
        assert_eq!(bad_request_for(b"ACK sip:h SIP/2.0\r\nContent-Length: 5\r\n\r\n"), None);
        assert_eq!(bad_request_for(b"\x00\x01garbage"), None);
        assert_eq!(bad_request_for(b"SIP/2.0 200 OK\r\nContent-Length: 9\r\n\r\n"), None);
    }

    #[test]
    fn list_and_name_addr_helpers() {
        assert_eq!(
            split_list("<sip:a;lr>, \"x, y\" <sip:b>;p=1 ,<sip:c,d>"),
            vec!["<sip:a;lr>", "\"x, y\" <sip:b>;p=1", "<sip:c,d>"]
        );
        assert_eq!(name_addr("\"A <b>\" <sip:x@y;lr>;tag=9"), Some(("sip:x@y;lr", ";tag=9")));
        assert_eq!(name_addr("sip:x@y;tag=9"), Some(("sip:x@y", "tag=9")));
        assert_eq!(header_param(";tag=9;lr", "TAG"), Some("9"));
        assert_eq!(header_param(";tag=9;lr", "lr"), Some(""));
        let via = ViaValue::parse("SIP / 2.0 / udp 10.0.0.1:5060 ; branch=z9hG4bK1 ;rport").unwrap();
        assert_eq!(via.to_string(), "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport");
        assert_eq!(via.param("rport"), Some(None));
        assert!(ViaValue::parse("SIP/2.0/UDP").is_none());
        assert!(ViaValue::parse("SIP/2.0/UDP [::1:5060").is_none());
    }

    #[test]
    fn call_duration_header() {
        let bytes = testdata::meta_bye_with_route(&["<sip:sip.example.com:5061;transport=tls;lr>"]);
        let SipMessage::Request(req) = parse(&bytes).unwrap() else { panic!() };
        assert_eq!(call_duration_secs(&req), Some(42));
        assert_eq!(call_id_key(&req), testdata::WACID);
    }
}
