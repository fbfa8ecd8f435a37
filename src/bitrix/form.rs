//! Bitrix24 posts events, install callbacks and SMS-provider calls as `application/x-www-form-urlencoded`
//! with nested bracket keys (`auth[member_id]=…`, `data[MESSAGES][0][im][chat_id]=…`). These functions turn
//! such a body into a JSON tree (objects whose keys are exactly `0..n` become arrays) and back.
//! A JSON body is accepted as well (the docs show payloads as JSON; some proxies re-encode them).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("the body is neither a form nor a JSON object: {0}")]
    Malformed(String),
    #[error("the form nests deeper than {0} levels")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 16;

/// Parses a Bitrix24 request body. `content_type` picks JSON when it says so (or the body starts with `{`).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Value, FormError> {
    let json = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json {
        let v: Value = serde_json::from_slice(body).map_err(|e| FormError::Malformed(e.to_string()))?;
        return if v.is_object() { Ok(v) } else { Err(FormError::Malformed("JSON body is not an object".into())) };
    }
    let mut root = Value::Object(Map::new());
    for (key, value) in url::form_urlencoded::parse(body) {
        let path = split_key(&key);
        if path.len() > MAX_DEPTH {
            return Err(FormError::TooDeep(MAX_DEPTH));
        }
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    Ok(arrays(root))
}

/// `a[b][0][c]` → `["a", "b", "0", "c"]`; `a[]` appends (empty segment).
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else { return vec![key.to_string()] };
    let mut parts = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                parts.push(stripped[..close].to_string());
                rest = &stripped[close + 1..];
            }
            None => {
                // Unbalanced: keep the remainder as a literal segment.
                parts.push(stripped.to_string());
                rest = "";
            }
        }
    }
    parts
}

fn insert(node: &mut Value, path: &[String], value: Value) {
    let Some((head, tail)) = path.split_first() else { return };
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    let Value::Object(map) = node else { return };
    let key = if head.is_empty() { map.len().to_string() } else { head.clone() };
    if tail.is_empty() {
        map.insert(key, value);
    } else {
        let child = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        insert(child, tail, value);
    }
}

/// Objects whose keys are exactly "0".."n-1" become arrays, recursively.
fn arrays(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let n = map.len();
            let is_list = n > 0 && (0..n).all(|i| map.contains_key(&i.to_string()));
            if is_list {
                let mut map = map;
                Value::Array((0..n).map(|i| arrays(map.remove(&i.to_string()).unwrap_or(Value::Null))).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, arrays(v))).collect())
            }
        }
        other => other,
    }
}

/// Encodes a JSON object the way Bitrix24 posts forms (the inverse of [`parse`] for string leaves).
/// Numbers and booleans become their text; `null` becomes an empty value.
pub fn encode(v: &Value) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = v {
        for (k, child) in map {
            encode_into(&mut out, k.clone(), child);
        }
    }
    out.finish()
}

fn encode_into(out: &mut url::form_urlencoded::Serializer<'_, String>, prefix: String, v: &Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                encode_into(out, format!("{prefix}[{k}]"), child);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                encode_into(out, format!("{prefix}[{i}]"), child);
            }
        }
        Value::String(s) => {
            out.append_pair(&prefix, s);
        }
        Value::Null => {
            out.append_pair(&prefix, "");
        }
        other => {
            out.append_pair(&prefix, &other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_brackets_become_a_tree_with_arrays() {
        let body = b"event=ONIMCONNECTORMESSAGEADD&data%5BCONNECTOR%5D=wabridge&data%5BLINE%5D=7\
&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1807&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Btext%5D=Ol%C3%A1+%2B1\
&auth%5Bapplication_token%5D=abc&document_id%5B%5D=crm&document_id%5B%5D=LEAD_1";
        let v = parse(Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(v["event"], "ONIMCONNECTORMESSAGEADD");
        assert_eq!(v["data"]["MESSAGES"][0]["im"]["chat_id"], "1807");
        assert_eq!(v["data"]["MESSAGES"][0]["message"]["text"], "Olá +1");
        assert_eq!(v["auth"]["application_token"], "abc");
        assert_eq!(v["document_id"], json!(["crm", "LEAD_1"]));
    }

    #[test]
    fn json_bodies_are_accepted_and_non_objects_refused() {
        assert_eq!(parse(None, br#" {"event":"X"}"#).unwrap()["event"], "X");
        assert_eq!(
            parse(Some("application/json"), b"[1]"),
            Err(FormError::Malformed("JSON body is not an object".into()))
        );
        assert!(parse(Some("application/json"), b"{").is_err());
    }

    #[test]
    fn encode_round_trips_string_trees() {
        let v = json!({"event": "ONAPPINSTALL", "auth": {"member_id": "m1", "domain": "p.bitrix24.com"},
                       "data": {"MESSAGES": [{"im": {"chat_id": "1"}}, {"im": {"chat_id": "2"}}]}});
        assert_eq!(parse(None, encode(&v).as_bytes()).unwrap(), v);
        assert_eq!(
            parse(None, encode(&json!({"n": 5, "b": true})).as_bytes()).unwrap(),
            json!({"n": "5", "b": "true"})
        );
    }

    #[test]
    fn a_map_with_gaps_stays_an_object_and_depth_is_bounded() {
        let v = parse(None, b"a[0]=x&a[2]=y").unwrap();
        assert_eq!(v["a"], json!({"0": "x", "2": "y"}));
        let deep = format!("k{}=1", "[a]".repeat(20));
        assert_eq!(parse(None, deep.as_bytes()), Err(FormError::TooDeep(MAX_DEPTH)));
    }
}
