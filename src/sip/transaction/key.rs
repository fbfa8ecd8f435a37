//! Which transaction a message belongs to (RFC 3261 §17.1.3 for client transactions, §17.2.3 for
//! server transactions).
//!
//! | message                     | key                                                               |
//! |-----------------------------|-------------------------------------------------------------------|
//! | response (client side)      | top Via branch + CSeq method                                       |
//! | request, branch `z9hG4bK…`  | top Via branch + sent-by + method (ACK counts as INVITE)           |
//! | request, other branch/none  | RFC 2543: Request-URI, From tag, Call-ID, CSeq number, top Via, method |
//! | CANCEL                      | its own key; [`TransactionKey::cancelled`] is the INVITE's key     |
//!
//! The edge keys its proxy transactions by the branch it forwarded with ([`TransactionKey::client`]):
//! that branch is an HMAC of the incoming branch, sent-by and Call-ID (`proxy::forward_branch`), so a
//! request's retransmissions, its CANCEL and the ACK for a non-2xx answer all land on the same key
//! as the request, RFC 2543 requests (no branch) included.

use rsip::{Request, Response};

use crate::sip::message::{call_id, cseq, from_tag, top_via};

/// RFC 3261 magic cookie: a branch starting with it is unique per transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A transaction's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionKey {
    /// RFC 3261: the branch identifies the transaction. `sent_by` (lower-cased) is part of server
    /// keys only; client keys leave it empty (the branch is ours and unique).
    Branch { branch: String, sent_by: String, method: String },
    /// RFC 2543 peers (no magic cookie): the request's own fields.
    Rfc2543 { request_uri: String, from_tag: String, call_id: String, cseq: u32, top_via: String, method: String },
}

/// The method a key is filed under: ACK belongs to its INVITE's server transaction (§17.2.3).
fn key_method(method: &str, server: bool) -> String {
    match method {
        "ACK" if server => "INVITE".to_string(),
        m => m.to_ascii_uppercase(),
    }
}

impl TransactionKey {
    /// A client transaction the caller created under `branch` for `method` (§17.1.3).
    pub fn client(branch: &str, method: &str) -> Self {
        TransactionKey::Branch { branch: branch.to_string(), sent_by: String::new(), method: key_method(method, false) }
    }

    /// The client transaction a response belongs to: top Via branch and CSeq method (§17.1.3).
    pub fn of_response(resp: &Response) -> Option<Self> {
        let via = top_via(&resp.headers)?;
        let (_, method) = cseq(&resp.headers)?;
        Some(TransactionKey::Branch {
            branch: via.branch().to_string(),
            sent_by: String::new(),
            method: key_method(method, false),
        })
    }

    /// The server transaction a request belongs to (§17.2.3).
    pub fn server(req: &Request) -> Option<Self> {
        let via = top_via(&req.headers)?;
        let method = key_method(&req.method.to_string(), true);
        if via.branch().starts_with(MAGIC_COOKIE) {
            return Some(TransactionKey::Branch {
                branch: via.branch().to_string(),
                sent_by: via.sent_by.to_ascii_lowercase(),
                method,
            });
        }
        let (number, _) = cseq(&req.headers)?;
        Some(TransactionKey::Rfc2543 {
            request_uri: req.uri.to_string(),
            from_tag: from_tag(&req.headers).unwrap_or_default().to_string(),
            call_id: call_id(&req.headers)?.to_string(),
            cseq: number,
            top_via: format!("{} {}", via.transport.to_ascii_uppercase(), via.sent_by.to_ascii_lowercase()),
            method,
        })
    }

    /// The method this key is filed under (ACK appears as INVITE on server keys).
    pub fn method(&self) -> &str {
        match self {
            TransactionKey::Branch { method, .. } | TransactionKey::Rfc2543 { method, .. } => method,
        }
    }

    /// For a CANCEL's key: the key of the INVITE it cancels (§9.2: everything equal but the method).
    pub fn cancelled(&self) -> Option<Self> {
        if self.method() != "CANCEL" {
            return None;
        }
        let mut invite = self.clone();
        match &mut invite {
            TransactionKey::Branch { method, .. } | TransactionKey::Rfc2543 { method, .. } => *method = "INVITE".into(),
        }
        Some(invite)
    }
}

impl std::fmt::Display for TransactionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransactionKey::Branch { branch, sent_by, method } if sent_by.is_empty() => write!(f, "{branch}|{method}"),
            TransactionKey::Branch { branch, sent_by, method } => write!(f, "{branch}|{sent_by}|{method}"),
            TransactionKey::Rfc2543 { call_id, cseq, method, .. } => write!(f, "2543|{call_id}|{cseq}|{method}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;
    use rsip::SipMessage;

    fn request(method: &str, branch: Option<&str>, sent_by: &str, cseq: &str) -> Request {
        let branch = branch.map(|b| format!(";branch={b}")).unwrap_or_default();
        let text = format!(
            "{method} sip:+15551234567@sip.example.com SIP/2.0\r\nVia: SIP/2.0/TLS {sent_by}{branch}\r\n\
             From: <sip:+5511@wa.meta.vc>;tag=f1\r\nTo: <sip:+15551234567@sip.example.com>\r\nCall-ID: c1\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn same_branch_different_method_is_another_transaction() {
        let invite = TransactionKey::server(&request("INVITE", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        let bye = TransactionKey::server(&request("BYE", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        assert_ne!(invite, bye);
        assert_ne!(TransactionKey::client("z9hG4bKa", "INVITE"), TransactionKey::client("z9hG4bKa", "BYE"));
    }

    #[test]
    fn sent_by_is_part_of_server_keys_only() {
        let a = TransactionKey::server(&request("INVITE", Some("z9hG4bKa"), "Meta:5061", "1")).unwrap();
        let b = TransactionKey::server(&request("INVITE", Some("z9hG4bKa"), "other:5061", "1")).unwrap();
        let a2 = TransactionKey::server(&request("INVITE", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        assert_ne!(a, b, "two peers may pick the same branch");
        assert_eq!(a, a2, "sent-by compares case-insensitively");
    }

    #[test]
    fn cancel_and_non_2xx_ack_match_their_invite() {
        let invite = TransactionKey::server(&request("INVITE", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        let cancel = TransactionKey::server(&request("CANCEL", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        let ack = TransactionKey::server(&request("ACK", Some("z9hG4bKa"), "meta:5061", "1")).unwrap();
        assert_ne!(cancel, invite, "a CANCEL is a transaction of its own");
        assert_eq!(cancel.cancelled(), Some(invite.clone()));
        assert_eq!(ack, invite, "the ACK for a non-2xx belongs to the INVITE transaction");
        assert_eq!(invite.cancelled(), None);
    }

    #[test]
    fn responses_match_the_client_transaction() {
        let resp = match parse(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP edge:5060;branch=z9hG4bKwab1, SIP/2.0/TLS meta;branch=z9hG4bKa\r\n\
              From: <sip:a@b>;tag=f\r\nTo: <sip:c@d>;tag=t\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
        {
            SipMessage::Response(r) => r,
            _ => unreachable!(),
        };
        assert_eq!(TransactionKey::of_response(&resp), Some(TransactionKey::client("z9hG4bKwab1", "INVITE")));
    }

    #[test]
    fn rfc2543_requests_match_on_their_own_fields() {
        let invite = TransactionKey::server(&request("INVITE", None, "old:5060", "7")).unwrap();
        assert!(matches!(invite, TransactionKey::Rfc2543 { cseq: 7, .. }), "{invite:?}");
        let again = TransactionKey::server(&request("INVITE", Some("1234"), "old:5060", "7")).unwrap();
        assert_eq!(invite, again, "a branch without the magic cookie is not a transaction id");
        let ack = TransactionKey::server(&request("ACK", None, "old:5060", "7")).unwrap();
        assert_eq!(ack, invite);
        let cancel = TransactionKey::server(&request("CANCEL", None, "old:5060", "7")).unwrap();
        assert_eq!(cancel.cancelled(), Some(invite.clone()));
        let next = TransactionKey::server(&request("INVITE", None, "old:5060", "8")).unwrap();
        assert_ne!(next, invite, "another CSeq is another transaction");
    }
}
