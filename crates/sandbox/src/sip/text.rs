//! SIP messages as text, this crate's own codec (RFC 3261 §7, §18.3): framing on a stream transport and header
//! lookup. Written here, not borrowed from the product, so the product's parser is checked from outside.

/// Largest header section accepted (the edge's own limit is 64 KiB per message).
const MAX_HEADERS: usize = 64 * 1024;

/// Takes the next complete message off the front of `buf` (a stream transport's bytes: TLS or TCP), skipping
/// CRLF keep-alives. `Ok(None)`: more bytes are needed. An `Err` says why the stream cannot be framed.
pub fn next_message(buf: &mut Vec<u8>) -> Result<Option<String>, String> {
    let lead = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    buf.drain(..lead);
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEADERS { Err("no end of headers in 64 KiB".into()) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body_len = match headers(&head, "content-length", "l").first() {
        Some(v) => v.parse::<usize>().map_err(|_| format!("bad Content-Length {v:?}"))?,
        None => 0,
    };
    let total = end + 4 + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    let msg = String::from_utf8_lossy(&buf[..total]).into_owned();
    buf.drain(..total);
    Ok(Some(msg))
}

/// The values of header `name` (or its compact form `short`, "" for none), in order, case-insensitively, from
/// the header section of `msg`. A header repeated on several lines gives one value per line.
pub fn headers<'a>(msg: &'a str, name: &str, short: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| {
            let n = n.trim();
            n.eq_ignore_ascii_case(name) || (!short.is_empty() && n.eq_ignore_ascii_case(short))
        })
        .map(|(_, v)| v.trim())
        .collect()
}

/// The first value of header `name` (long form only).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name, "").into_iter().next()
}

/// A response's status code; `None` for a request.
pub fn status(msg: &str) -> Option<u16> {
    let rest = msg.strip_prefix("SIP/2.0 ")?;
    rest.split(' ').next()?.parse().ok()
}

/// The first line: `INVITE sip:... SIP/2.0` or `SIP/2.0 200 OK`.
pub fn first_line(msg: &str) -> &str {
    msg.split("\r\n").next().unwrap_or("")
}

/// A response to `req` copying Via, From, To, Call-ID and CSeq, with no body.
pub fn reply(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n\r\n").next().unwrap_or("").split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| lower.starts_with(h)) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_with_bodies_and_skips_keepalives() {
        let mut buf =
            b"\r\n\r\nSIP/2.0 100 Trying\r\nVia: a\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nl: 5\r\n\r\nv=0\r\n"
                .to_vec();
        let first = next_message(&mut buf).unwrap().unwrap();
        assert_eq!(status(&first), Some(100));
        let second = next_message(&mut buf).unwrap().unwrap();
        assert!(second.ends_with("\r\n\r\nv=0\r\n"), "{second:?}");
        assert!(buf.is_empty());
        let mut partial = b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nv=0".to_vec();
        assert_eq!(next_message(&mut partial), Ok(None));
        let mut bad = b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n".to_vec();
        assert!(next_message(&mut bad).is_err());
    }

    #[test]
    fn headers_by_long_and_compact_name() {
        let msg = "SIP/2.0 200 OK\r\nRecord-Route: <sip:a;lr>\r\nrecord-route: <sip:b;lr>\r\nm: <sip:c>\r\n\r\n";
        assert_eq!(headers(msg, "Record-Route", ""), ["<sip:a;lr>", "<sip:b;lr>"]);
        assert_eq!(headers(msg, "contact", "m"), ["<sip:c>"]);
        assert_eq!(header(msg, "contact"), None);
        assert_eq!(first_line(msg), "SIP/2.0 200 OK");
        assert_eq!(status("INVITE sip:x SIP/2.0\r\n\r\n"), None);
    }

    #[test]
    fn reply_copies_the_transaction_headers() {
        let req =
            "BYE sip:x SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKx\r\nFrom: <sip:a>;tag=1\r\nTo: <sip:b>;tag=2\r\n\
                   Call-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let r = reply(req, 200, "OK");
        assert!(r.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKx\r\n"), "{r}");
        assert!(r.contains("CSeq: 2 BYE\r\n") && !r.contains("Max-Forwards"), "{r}");
    }
}
