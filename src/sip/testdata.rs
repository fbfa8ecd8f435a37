//! Realistic messages for the unit tests (shapes from Meta's published samples and Asterisk).

pub const WACID: &str = "wacid.HBgLMTU1NTc2NTQzMjEVAgARGCA5RkI3MDI0RTk3QjQ1RkE2RjcA";
pub const CALL_ID: &str = "outgoing:wacid.HBgLMTU1NTc2NTQzMjEVAgARGCA5RkI3MDI0RTk3QjQ1RkE2RjcA";
pub const META_VIA_HOST: &str = "[2a03:2880:f0fc:c:face:b00c:0:9]:5061";
pub const META_BRANCH: &str = "z9hG4bK-524287-1---5f8c3a2b1d0e";
pub const META_FROM: &str = "From: \"15557654321\" <sip:+15557654321@wa.meta.vc>;tag=4f5e6d7c8b9a";
pub const META_TO: &str = "To: <sip:+15551234567@sip.example.com>";
pub const RURI: &str = "sip:+15551234567;tgrp=wacall@sip.example.com;transport=tls";
pub const META_RR_1: &str = "<sip:wa.meta.vc;transport=tls;lr>";
pub const META_RR_2: &str = "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>";
pub const PBX_TAG: &str = "as5f1e2d3c";

pub const SDP: &str = "v=0\r\n\
o=- 1718123456 1718123456 IN IP4 157.240.19.1\r\n\
s=-\r\n\
c=IN IP4 157.240.19.1\r\n\
t=0 0\r\n\
m=audio 3480 RTP/SAVP 111 126\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 maxplaybackrate=16000;sprop-maxcapturerate=16000;maxaveragebitrate=20000;useinbandfec=1\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=sendrecv\r\n";

pub const SDP_ANSWER: &str = "v=0\r\n\
o=- 1 1 IN IP4 10.0.0.20\r\n\
s=Asterisk\r\n\
c=IN IP4 203.0.113.20\r\n\
t=0 0\r\n\
m=audio 12000 RTP/SAVP 111 126\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ZGVmYXVsdGtleWRlZmF1bHRrZXlkZWZhdWx0a2V5\r\n\
a=sendrecv\r\n";

/// Start line + header lines + Content-Length + body.
pub fn build(start: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = String::from(start);
    out.push_str("\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// Meta's user-initiated INVITE (first attempt).
pub fn meta_invite() -> Vec<u8> {
    meta_invite_custom(META_BRANCH, 1, &[])
}

/// Meta's INVITE with a chosen branch / CSeq and extra header lines (e.g. Proxy-Authorization).
pub fn meta_invite_custom(branch: &str, cseq: u32, extra: &[&str]) -> Vec<u8> {
    let via = format!("Via: SIP/2.0/TLS {META_VIA_HOST};branch={branch};rport");
    let cseq = format!("CSeq: {cseq} INVITE");
    let call_id = format!("Call-ID: {CALL_ID}");
    let wacid = format!("x-wa-meta-wacid: {WACID}");
    let rr1 = format!("Record-Route: {META_RR_1}");
    let rr2 = format!("Record-Route: {META_RR_2}");
    let mut headers: Vec<&str> = vec![
        &via,
        "Max-Forwards: 69",
        &rr1,
        &rr2,
        "Contact: <sip:+15557654321@wa.meta.vc;transport=tls;ob>;isfocus",
        META_TO,
        META_FROM,
        &call_id,
        &cseq,
        "Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS",
        "Supported: outbound",
        "User-Agent: Facebook SipGateway",
        "X-FB-External-Domain: wa.meta.vc",
        &wacid,
    ];
    headers.extend_from_slice(extra);
    headers.push("Content-Type: application/sdp");
    build(&format!("INVITE {RURI} SIP/2.0"), &headers, SDP)
}

/// Meta's CANCEL for [`meta_invite`].
pub fn meta_cancel() -> Vec<u8> {
    let via = format!("Via: SIP/2.0/TLS {META_VIA_HOST};branch={META_BRANCH};rport");
    let call_id = format!("Call-ID: {CALL_ID}");
    build(
        &format!("CANCEL {RURI} SIP/2.0"),
        &[&via, "Max-Forwards: 70", META_TO, META_FROM, &call_id, "CSeq: 1 CANCEL", "User-Agent: Facebook SipGateway"],
        "",
    )
}

fn meta_in_dialog(method: &str, branch: &str, cseq: u32, routes: &[&str], extra: &[&str]) -> Vec<u8> {
    let via = format!("Via: SIP/2.0/TLS {META_VIA_HOST};branch={branch};rport");
    let to = format!("{META_TO};tag={PBX_TAG}");
    let call_id = format!("Call-ID: {CALL_ID}");
    let cseq = format!("CSeq: {cseq} {method}");
    let routes: Vec<String> = routes.iter().map(|r| format!("Route: {r}")).collect();
    let mut headers: Vec<&str> = vec![&via, "Max-Forwards: 69"];
    headers.extend(routes.iter().map(String::as_str));
    headers.extend_from_slice(&[&to, META_FROM, &call_id, &cseq, "User-Agent: Facebook SipGateway"]);
    headers.extend_from_slice(extra);
    build(&format!("{method} sip:+15551234567@10.0.0.20:5060 SIP/2.0"), &headers, "")
}

/// Meta's BYE on an established inbound call, with the given Route entries.
pub fn meta_bye_with_route(routes: &[&str]) -> Vec<u8> {
    let wacid = format!("x-wa-meta-wacid: {WACID}");
    meta_in_dialog("BYE", "z9hG4bK-524287-1---bye0001", 2, routes, &[&wacid, "x-wa-meta-call-duration: 42"])
}

/// Meta's ACK for the 2xx, with the given Route entries.
pub fn meta_ack_with_route(routes: &[&str]) -> Vec<u8> {
    meta_in_dialog("ACK", "z9hG4bK-524287-1---ack0001", 1, routes, &[])
}

/// Asterisk's BYE toward Meta on the inbound call, with the given Route entries.
pub fn pbx_bye_with_route(routes: &[&str]) -> Vec<u8> {
    let call_id = format!("Call-ID: {CALL_ID}");
    let from = format!("From: <sip:+15551234567@sip.example.com>;tag={PBX_TAG}");
    let routes: Vec<String> = routes.iter().map(|r| format!("Route: {r}")).collect();
    let mut headers: Vec<&str> = vec!["Via: SIP/2.0/UDP 10.0.0.20:5060;rport;branch=z9hG4bKPj1a2b3c4d"];
    headers.extend_from_slice(&[
        &from,
        "To: \"15557654321\" <sip:+15557654321@wa.meta.vc>;tag=4f5e6d7c8b9a",
        &call_id,
        "CSeq: 102 BYE",
    ]);
    headers.extend(routes.iter().map(String::as_str));
    headers.extend_from_slice(&["Max-Forwards: 70", "User-Agent: Asterisk PBX 22.2.0"]);
    build("BYE sip:+15557654321@wa.meta.vc;transport=tls;ob SIP/2.0", &headers, "")
}

/// Asterisk's business-initiated INVITE toward Meta through the edge (outbound proxy).
pub fn pbx_invite(ruri: &str, from_number: &str) -> Vec<u8> {
    let from = format!("From: <sip:{from_number}@sip.example.com>;tag=out1");
    let to = format!("To: <{ruri}>");
    build(
        &format!("INVITE {ruri} SIP/2.0"),
        &[
            "Via: SIP/2.0/UDP 10.0.0.20:5060;rport;branch=z9hG4bKPjout0001",
            "Route: <sip:10.0.0.5:5060;lr>",
            &from,
            &to,
            "Contact: <sip:+15551234567@10.0.0.20:5060>",
            "Call-ID: out-call-1@10.0.0.20",
            "CSeq: 1 INVITE",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
        ],
        SDP_ANSWER,
    )
}

/// Asterisk's 200 OK to a forwarded INVITE: Vias and Record-Routes copied from it.
pub fn pbx_200_for(forwarded: &rsip::Request) -> Vec<u8> {
    use crate::sip::message::header_values;
    let mut lines: Vec<String> = header_values(&forwarded.headers, "via").iter().map(|v| format!("Via: {v}")).collect();
    lines.extend(header_values(&forwarded.headers, "record-route").iter().map(|v| format!("Record-Route: {v}")));
    lines.push(META_FROM.to_string());
    lines.push(format!("{META_TO};tag={PBX_TAG}"));
    lines.push(format!("Call-ID: {CALL_ID}"));
    lines.push(format!("CSeq: {}", header_values(&forwarded.headers, "cseq").first().copied().unwrap_or("1 INVITE")));
    lines.push("Contact: <sip:+15551234567@10.0.0.20:5060>".to_string());
    lines.push("Server: Asterisk PBX 22.2.0".to_string());
    lines.push("Content-Type: application/sdp".to_string());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    build("SIP/2.0 200 OK", &refs, SDP_ANSWER)
}

/// A response with the given status line and Via lines (no body).
pub fn response_with_vias(status_line: &str, vias: &[&str], cseq: &str) -> Vec<u8> {
    let mut lines: Vec<String> = vias.iter().map(|v| format!("Via: {v}")).collect();
    lines.push(META_FROM.to_string());
    lines.push(format!("{META_TO};tag={PBX_TAG}"));
    lines.push(format!("Call-ID: {CALL_ID}"));
    lines.push(format!("CSeq: {cseq}"));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    build(status_line, &refs, "")
}

/// OPTIONS to `ruri`.
pub fn options(ruri: &str) -> Vec<u8> {
    build(
        &format!("OPTIONS {ruri} SIP/2.0"),
        &[
            "Via: SIP/2.0/TLS 57.144.67.157:5061;branch=z9hG4bKopt0001",
            "Max-Forwards: 70",
            "From: <sip:ping@wa.meta.vc>;tag=p1",
            &format!("To: <{ruri}>"),
            "Call-ID: options-1@wa.meta.vc",
            "CSeq: 1 OPTIONS",
        ],
        "",
    )
}

/// REGISTER to the edge.
pub fn register() -> Vec<u8> {
    build(
        "REGISTER sip:sip.example.com SIP/2.0",
        &[
            "Via: SIP/2.0/TLS 57.144.67.157:5061;branch=z9hG4bKreg0001",
            "Max-Forwards: 70",
            "From: <sip:15551234567@sip.example.com>;tag=r1",
            "To: <sip:15551234567@sip.example.com>",
            "Call-ID: reg-1",
            "CSeq: 1 REGISTER",
            "Contact: <sip:15551234567@57.144.67.157:5061;transport=tls>",
            "Expires: 3600",
        ],
        "",
    )
}

/// Replaces the first line starting with `prefix` (case-sensitive) by `replacement` (or drops
/// it when `replacement` is empty); keeps Content-Length right.
pub fn replace_header(bytes: &[u8], prefix: &str, replacement: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut done = false;
    let lines: Vec<&str> = head
        .split("\r\n")
        .filter_map(|l| {
            if !done && l.starts_with(prefix) {
                done = true;
                (!replacement.is_empty()).then_some(replacement)
            } else {
                Some(l)
            }
        })
        .collect();
    assert!(done, "no header starting with {prefix}");
    format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes()
}
