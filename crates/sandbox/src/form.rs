//! Bitrix24's form bodies, as the portal (a PHP application) writes and reads them.
//!
//! `shared/reference/bitrix24.md` §1.2, §1.7 and §5: events, install callbacks and SMS-provider calls are posted
//! by the Bitrix queue server as `application/x-www-form-urlencoded` with bracketed keys (`auth[member_id]=…`,
//! `data[MESSAGES][0][im][chat_id]=…`, `document_id[0]=crm`); §1.4: REST accepts such forms (or JSON) too.
//!
//! This codec is the sandbox's own, written from PHP's rules rather than shared with the product, so a bug in the
//! product's codec cannot hide behind the same bug on this side:
//!
//! - [`encode`] is `http_build_query($payload)`: each leaf becomes `name[k1][k2]…=value`, keys and values encoded
//!   as PHP's `urlencode` does (letters, digits and `-_.` as they are, space as `+`, every other byte `%XX` in
//!   upper case, the brackets included); `true`/`false` become `1`/`0`; `null` leaves and empty arrays are left
//!   out; lists number their items from 0.
//! - [`decode`] is PHP's reading of a request body into `$_POST`: pairs split on `&` (a pair without `=` has an
//!   empty value), `+` and `%XX` decoded; in the name before the first `[`, spaces and dots become `_`; each
//!   `[k]` nests one level, `[]` appends (next index = largest integer key + 1); text after a `]` that does not
//!   open another `[` is ignored; a first `[` that never closes is a literal `_` (`a[b` is the name `a_b`), a
//!   later one ends the name there. A later pair for the same name wins. The result is JSON: every value is a
//!   string, and a map whose keys are exactly `0..n` is a list (as `json_encode` of a PHP list).
//!
//! Where this differs from PHP: nesting deeper than [`MAX_DEPTH`] is refused with an error (PHP drops the
//! variable silently at its default `max_input_nesting_level` of 64), and bytes that are not UTF-8 are replaced.

use serde_json::{Map, Value};

/// PHP's default `max_input_nesting_level`.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the JSON body is not valid: {0}")]
    Json(String),
    #[error("the JSON body is not an object")]
    NotAnObject,
    #[error("a form key nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Reads a request body as Bitrix does: JSON when the content type says so or the body starts with `{`
/// (it must be an object), otherwise a bracketed form ([`decode`]).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Value, FormError> {
    let says_json = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !(says_json || looks_json) {
        return decode(body);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(FormError::NotAnObject),
        Err(e) => Err(FormError::Json(e.to_string())),
    }
}

// --- writing: http_build_query -------------------------------------------------------------------------------

/// The body `http_build_query($payload)` produces for a JSON object (anything else gives an empty body).
pub fn encode(payload: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(fields) = payload {
        for (name, value) in fields {
            build(&mut out, &urlencode(name), value);
        }
    }
    out
}

/// Appends the pairs of `value` under the already encoded `name`.
fn build(out: &mut String, name: &str, value: &Value) {
    let text = match value {
        Value::Null => return,
        Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                build(out, &format!("{name}%5B{i}%5D"), item);
            }
            return;
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                build(out, &format!("{name}%5B{}%5D", urlencode(key)), item);
            }
            return;
        }
    };
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    out.push_str(&urlencode(&text));
}

/// PHP's `urlencode`.
fn urlencode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

// --- reading: PHP's $_POST ----------------------------------------------------------------------------------

/// The JSON tree PHP builds from a form body (see the module notes).
pub fn decode(body: &[u8]) -> Result<Value, FormError> {
    let mut root = Map::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let name = urldecode(raw_name);
        let Some(path) = key_path(&name) else { continue };
        if path.len() > MAX_DEPTH {
            return Err(FormError::TooDeep);
        }
        store(&mut root, &path, urldecode(raw_value));
    }
    Ok(lists(Value::Object(root)))
}

/// `+` is a space, `%XX` a byte (a `%` not followed by two hex digits stays as it is).
fn urldecode(raw: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => match (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    bytes.push(hi << 4 | lo);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One step of a key path: a named (or numbered) key, or `[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Append,
}

/// The path PHP stores `name` under, or `None` when PHP ignores the pair (an empty variable name).
fn key_path(name: &str) -> Option<Vec<Step>> {
    let name = name.trim_start_matches(' ');
    let (base, mut rest) = match name.find('[') {
        Some(open) if name[open..].contains(']') => (&name[..open], &name[open..]),
        // No bracket, or a first `[` that never closes: a plain name, that `[` becoming `_` like spaces and dots
        // before it (only the part before it is rewritten).
        Some(open) => return plain(&format!("{}_{}", variable_name(&name[..open]), &name[open + 1..])),
        None => return plain(&variable_name(name)),
    };
    let base = variable_name(base);
    if base.is_empty() {
        return None;
    }
    let mut path = vec![Step::Key(base)];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else { break };
        let key = &inner[..close];
        path.push(if key.is_empty() { Step::Append } else { Step::Key(key.to_string()) });
        rest = &inner[close + 1..];
    }
    Some(path)
}

fn plain(name: &str) -> Option<Vec<Step>> {
    (!name.is_empty()).then(|| vec![Step::Key(name.to_string())])
}

/// A top-level variable name as PHP registers it: spaces and dots become underscores.
fn variable_name(name: &str) -> String {
    name.replace([' ', '.'], "_")
}

fn store(map: &mut Map<String, Value>, path: &[Step], value: String) {
    let Some((step, deeper)) = path.split_first() else { return };
    let key = match step {
        Step::Key(k) => k.clone(),
        Step::Append => next_index(map).to_string(),
    };
    if deeper.is_empty() {
        map.insert(key, Value::String(value));
        return;
    }
    let child = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        // A scalar given earlier under this name is replaced by the array (as in PHP).
        *child = Value::Object(Map::new());
    }
    if let Value::Object(child) = child {
        store(child, deeper, value);
    }
}

/// The key `[]` appends under: one past the largest integer key, or 0.
fn next_index(map: &Map<String, Value>) -> u64 {
    map.keys().filter_map(|k| integer_key(k)).max().map_or(0, |m| m + 1)
}

/// A key PHP treats as an integer: decimal digits without a leading zero (or `0` itself).
fn integer_key(k: &str) -> Option<u64> {
    let canonical = !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) && (k == "0" || !k.starts_with('0'));
    canonical.then(|| k.parse().ok()).flatten()
}

/// Maps whose keys are exactly `0..n` become lists, everywhere in the tree.
fn lists(v: Value) -> Value {
    let Value::Object(mut map) = v else { return v };
    let n = map.len();
    if n > 0 && (0..n).all(|i| map.contains_key(&i.to_string())) {
        return Value::Array((0..n).map(|i| lists(map.remove(&i.to_string()).unwrap_or(Value::Null))).collect());
    }
    Value::Object(map.into_iter().map(|(k, v)| (k, lists(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_http_build_query() {
        // PHP: http_build_query(['event' => 'ONAPPINSTALL', 'data' => ['VERSION' => '1.0.0'], 'ts' => 1696527000,
        //   'auth' => ['member_id' => 'a2', 'domain' => 'x.bitrix24.com']])
        let body = encode(&json!({
            "auth": {"domain": "x.bitrix24.com", "member_id": "a2"},
            "data": {"VERSION": "1.0.0"},
            "event": "ONAPPINSTALL",
            "ts": 1696527000,
        }));
        assert_eq!(
            body,
            "auth%5Bdomain%5D=x.bitrix24.com&auth%5Bmember_id%5D=a2&data%5BVERSION%5D=1.0.0&event=ONAPPINSTALL\
             &ts=1696527000"
        );
    }

    #[test]
    fn encodes_lists_scalars_and_text_as_php_does() {
        let body = encode(&json!({
            "document_id": ["crm", "CCrmDocumentLead", "LEAD_98"],
            "m": {"files": [{"name": "a b.pdf"}], "none": null, "empty": [], "yes": true, "no": false},
            "t": "Olá [b]x[/b] *~+&=/",
        }));
        assert_eq!(
            body,
            "document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentLead&document_id%5B2%5D=LEAD_98\
             &m%5Bfiles%5D%5B0%5D%5Bname%5D=a+b.pdf&m%5Bno%5D=0&m%5Byes%5D=1\
             &t=Ol%C3%A1+%5Bb%5Dx%5B%2Fb%5D+%2A%7E%2B%26%3D%2F"
        );
        assert_eq!(encode(&json!("not an object")), "");
        assert_eq!(encode(&json!({})), "");
    }

    #[test]
    fn decodes_an_sms_handler_call() {
        // §5: what Bitrix posts to a messageservice HANDLER (bizproc variant).
        let body = b"type=SMS&code=wa&message_id=65575980fa531ac284c2ee68f81ebebd&message_to=%2B1999\
&message_body=Hello+there&document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentLead&document_id%5B2%5D=LEAD_98\
&properties%5Bphone_number%5D=%2B1999&auth%5Bapplication_token%5D=51856fef&auth%5Bmember_id%5D=a223";
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "SMS", "code": "wa", "message_id": "65575980fa531ac284c2ee68f81ebebd",
                "message_to": "+1999", "message_body": "Hello there",
                "document_id": ["crm", "CCrmDocumentLead", "LEAD_98"],
                "properties": {"phone_number": "+1999"},
                "auth": {"application_token": "51856fef", "member_id": "a223"},
            })
        );
    }

    #[test]
    fn decodes_brackets_appends_and_php_name_rules() {
        let v = decode(
            b"a[]=x&a[]=y&a[5]=z&a[]=w&b%5Bc%5D%5B%5D=1&b[c][]=2&x.y+z=3&s=1&s[k]=2&t[k]=1&t=2\
&u[k]junk=4&v[k][open=5&w[x=6&=7&[q]=8&flag&&e=%ZZ%4",
        )
        .unwrap();
        assert_eq!(v["a"], json!({"0": "x", "1": "y", "5": "z", "6": "w"}));
        assert_eq!(v["b"], json!({"c": ["1", "2"]}));
        assert_eq!(v["x_y_z"], "3");
        assert_eq!(v["s"], json!({"k": "2"}), "a scalar is replaced by the array given later");
        assert_eq!(v["t"], "2", "a later pair for the same name wins");
        assert_eq!(v["u"], json!({"k": "4"}), "text after ] is ignored");
        assert_eq!(v["v"], json!({"k": "5"}), "a later [ that never closes ends the name");
        assert_eq!(v["w_x"], "6", "a first [ that never closes is _");
        assert_eq!(v["flag"], "");
        assert_eq!(v["e"], "%ZZ%4");
        assert_eq!(v.as_object().unwrap().len(), 10, "empty names are ignored: {v}");
    }

    #[test]
    fn reads_back_what_it_writes() {
        let payload = json!({
            "event": "ONIMCONNECTORMESSAGEADD", "event_handler_id": "555", "ts": "1773759161",
            "data": {"CONNECTOR": "wabridge", "LINE": "107", "MESSAGES": [{
                "im": {"chat_id": "1807", "message_id": "86497"},
                "message": {"user_id": "27", "text": "[b]Klaus Weber:[/b] [br]Guten Tag! ✓ 100% & more=",
                            "files": [{"name": "a.pdf", "link": "http://x/y?z=1&w=2"}]},
                "chat": {"id": "channel-123"},
            }]},
            "auth": {"application_token": "abc", "member_id": "m"},
        });
        assert_eq!(decode(encode(&payload).as_bytes()).unwrap(), payload);
    }

    #[test]
    fn json_bodies_and_limits() {
        assert_eq!(parse(None, br#" {"event":"X"}"#).unwrap(), json!({"event": "X"}));
        assert_eq!(parse(Some("application/json; charset=utf-8"), b"[1]"), Err(FormError::NotAnObject));
        assert!(matches!(parse(Some("application/json"), b"{"), Err(FormError::Json(_))));
        assert_eq!(parse(Some("application/x-www-form-urlencoded"), b"a=1").unwrap(), json!({"a": "1"}));
        assert_eq!(decode(b"").unwrap(), json!({}));
        let deep = format!("a{}=1", "[k]".repeat(MAX_DEPTH));
        assert_eq!(decode(deep.as_bytes()), Err(FormError::TooDeep));
        let ok = format!("a{}=1", "[k]".repeat(MAX_DEPTH - 1));
        assert!(decode(ok.as_bytes()).is_ok());
    }
}
