//! SIP URIs: a tolerant parser of our own plus the business-number extraction.
//!
//! rsip 0.4's URI tokenizer cannot be trusted with the URIs this edge sees:
//! - IPv6 hosts (`sip:[2001:db8::1]:5060`) fail to parse;
//! - a user part containing `.` (e.g. `+1555;trunk-context=example.com@host`) is mis-split, and
//!   re-serialising the result silently drops the host;
//! - `Host::IpAddr(v6)` is displayed without brackets.
//!
//! [`SipUri`] parses the text itself and [`SipUri::to_rsip`] builds an [`rsip::Uri`] that displays
//! back to the same text.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::proxy::Transport;

/// Error from [`SipUri::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The scheme is not `sip` or `sips` (e.g. `tel:`).
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    /// The text is not a valid SIP URI.
    #[error("invalid SIP URI")]
    Invalid,
}

/// A `sip:` / `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` scheme.
    pub sips: bool,
    /// The user part as written (still %-escaped), including any `;user-params`.
    pub user: Option<String>,
    /// The (deprecated) password of the userinfo.
    pub password: Option<String>,
    /// The host as written; IPv6 references keep their brackets.
    pub host: String,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters in order, as written: `(name, value)`.
    pub params: Vec<(String, Option<String>)>,
    /// The `?headers` part, without the `?`.
    pub headers: Option<String>,
}

impl SipUri {
    /// Parses a SIP or SIPS URI (scheme case-insensitive).
    pub fn parse(text: &str) -> Result<SipUri, UriError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once(':').ok_or(UriError::Invalid)?;
        let sips = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(UriError::UnsupportedScheme);
        } else {
            return Err(UriError::Invalid);
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (rest, None),
        };
        if let Some(h) = &headers {
            if !h.chars().all(is_uri_char) {
                return Err(UriError::Invalid);
            }
        }
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                if u.is_empty() || !u.chars().all(|c| is_uri_char(c) && c != '@') {
                    return Err(UriError::Invalid);
                }
                // The password, if any, follows the first ':' after the user (and its params).
                match u.split_once(':') {
                    Some((user, pass)) if !user.is_empty() => (Some(user.to_string()), Some(pass.to_string())),
                    Some(_) => return Err(UriError::Invalid),
                    None => (Some(u.to_string()), None),
                }
            }
        };
        let mut pieces = hostpart.split(';');
        let hostport = pieces.next().unwrap_or_default();
        let (host, port) = split_host_port(hostport).ok_or(UriError::Invalid)?;
        let mut params = Vec::new();
        for piece in pieces {
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (piece, None),
            };
            if name.is_empty() || !name.chars().all(is_param_char) {
                return Err(UriError::Invalid);
            }
            if let Some(v) = value {
                if !v.chars().all(|c| is_param_char(c) || c == '[' || c == ']' || c == ':') {
                    return Err(UriError::Invalid);
                }
            }
            params.push((name.to_string(), value.map(str::to_string)));
        }
        Ok(SipUri { sips, user, password, host, port, params, headers })
    }

    /// Reads an [`rsip::Uri`] back into a [`SipUri`]. `None` for non-SIP schemes or unusable hosts.
    pub fn from_rsip(uri: &rsip::Uri) -> Option<SipUri> {
        let sips = match &uri.scheme {
            Some(rsip::Scheme::Sip) | None => false,
            Some(rsip::Scheme::Sips) => true,
            Some(_) => return None,
        };
        let host = match &uri.host_with_port.host {
            rsip::Host::Domain(d) => d.to_string(),
            rsip::Host::IpAddr(IpAddr::V6(v6)) => format!("[{v6}]"),
            rsip::Host::IpAddr(v4) => v4.to_string(),
        };
        if host.is_empty() {
            return None;
        }
        let params = uri
            .params
            .iter()
            .map(|p| {
                let text = p.to_string();
                let text = text.strip_prefix(';').unwrap_or(&text);
                match text.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (text.to_string(), None),
                }
            })
            .collect();
        Some(SipUri {
            sips,
            user: uri.auth.as_ref().map(|a| a.user.clone()),
            password: uri.auth.as_ref().and_then(|a| a.password.clone()),
            host,
            port: uri.host_with_port.port.map(|p| *p.value()),
            params,
            headers: None,
        })
    }

    /// Builds an [`rsip::Uri`] that displays exactly as [`SipUri`]'s own `Display` (minus the
    /// `?headers` part, which rsip 0.4 cannot hold). Parameters whose rsip typed form would display
    /// differently (e.g. `transport=tls` would become `transport=TLS`) are kept as `Param::Other`.
    pub fn to_rsip(&self) -> rsip::Uri {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => rsip::Host::IpAddr(IpAddr::V4(v4)),
            // IPv6 stays a "domain" holding the bracketed text: rsip would drop the brackets.
            _ => rsip::Host::Domain(rsip::Domain::new(self.host.clone())),
        };
        let params = self
            .params
            .iter()
            .map(|(name, value)| {
                let written = match value {
                    Some(v) => format!(";{name}={v}"),
                    None => format!(";{name}"),
                };
                match rsip::Param::try_from((name.as_str(), value.as_deref())) {
                    Ok(typed) if typed.to_string() == written => typed,
                    _ => rsip::Param::Other(
                        rsip::param::OtherParam::new(name.clone()),
                        value.clone().map(rsip::param::OtherParamValue::new),
                    ),
                }
            })
            .collect();
        rsip::Uri {
            scheme: Some(if self.sips { rsip::Scheme::Sips } else { rsip::Scheme::Sip }),
            auth: self.user.as_ref().map(|u| rsip::Auth { user: u.clone(), password: self.password.clone() }),
            host_with_port: rsip::HostWithPort { host, port: self.port.map(rsip::Port::new) },
            params,
            headers: Vec::new(),
        }
    }

    /// The value of a parameter (`Some(None)` for a flag such as `lr`). Names are case-insensitive.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// Whether the `lr` flag is present.
    pub fn is_loose_route(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The `transport` parameter when it names UDP, TCP or TLS.
    pub fn transport_param(&self) -> Option<Transport> {
        self.param("transport").flatten().and_then(Transport::from_token)
    }

    /// The host in lower case, without IPv6 brackets.
    pub fn host_key(&self) -> String {
        host_key(&self.host)
    }

    /// Replaces (or adds) a parameter, keeping its position when it already exists.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        match self.params.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(slot) => slot.1 = value.map(str::to_string),
            None => self.params.push((name.to_string(), value.map(str::to_string))),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.sips { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pass) = &self.password {
                write!(f, ":{pass}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// The business number addressed by a Request-URI: its user part is `+<E.164>` (visual
/// separators `-.()` allowed, `%2B` accepted for `+`), possibly followed by RFC 4904 style user
/// parameters such as `;tgrp=wacall;trunk-context=example.com`. Returns the normalised `+digits`
/// (7 to 15 digits), or `None` when the user part is not such a number.
pub fn business_number(uri: &rsip::Uri) -> Option<String> {
    let user = uri.auth.as_ref()?.user.as_str();
    e164_from_user(user)
}

/// [`business_number`] over a user part given as text.
pub fn e164_from_user(user: &str) -> Option<String> {
    let number = user.split(';').next()?;
    let number = percent_decode(number)?;
    let digits_part = number.strip_prefix('+')?;
    let mut digits = String::with_capacity(16);
    for c in digits_part.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    Some(format!("+{digits}"))
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `host[:port]` / `[v6][:port]`, validating the host. Hosts keep their written form.
pub fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        inner.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_') {
            return None;
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Host comparison key: lower case, IPv6 brackets removed, IPv6 text canonicalised.
pub fn host_key(host: &str) -> String {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => super::acl::canonical_ip(ip).to_string(),
        Err(_) => bare.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// Writes a host for use in a URI or Via: IPv6 addresses get brackets.
pub fn host_for_uri(host: &str) -> String {
    if !host.starts_with('[') && host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn is_param_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&+$/:".contains(c)
}

fn is_uri_char(c: char) -> bool {
    c.is_ascii_graphic() && !"<>\"\\{}|^`".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsip_uri(text: &str) -> rsip::Uri {
        SipUri::parse(text).unwrap().to_rsip()
    }

    #[test]
    fn business_number_plain_and_with_user_params() {
        assert_eq!(business_number(&rsip_uri("sip:+15551234567@sip.example.com")).as_deref(), Some("+15551234567"));
        assert_eq!(
            business_number(&rsip_uri("sip:+15551234567;tgrp=wacall@sip.example.com;transport=tls")).as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            business_number(&rsip_uri("sip:+1-555-123-4567;tgrp=wacall;trunk-context=example.com@sip.example.com"))
                .as_deref(),
            Some("+15551234567")
        );
        assert_eq!(business_number(&rsip_uri("sip:%2B4915123456789@h")).as_deref(), Some("+4915123456789"));
    }

    #[test]
    fn business_number_rejects_non_numbers() {
        for text in [
            "sip:alice@sip.example.com",
            "sip:15551234567@sip.example.com",
            "sip:+1555@sip.example.com",
            "sip:+1234567890123456@h",
            "sip:+1555123456a@h",
            "sip:sip.example.com",
            "sip:+@h",
            "sip:+05551234567@h",
        ] {
            assert_eq!(business_number(&rsip_uri(text)), None, "{text}");
        }
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in [
            "sip:+15551234567;tgrp=wacall@sip.example.com;transport=tls",
            "sip:+15551234567;tgrp=wacall;trunk-context=example.com@sip.example.com;transport=tls",
            "sip:+15557654321@wa.meta.vc;transport=tls;ob;X-FB-Sip-Smc-Tier=collaboration.sip_gateway.sip.prod",
            "sip:[2001:db8::1]:5060;transport=udp;lr",
            "sips:alice:secret@example.com:5061",
            "sip:10.0.0.5:5070;maddr=10.0.0.6",
            "sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr",
        ] {
            let uri = SipUri::parse(text).unwrap();
            assert_eq!(uri.to_string(), text);
            assert_eq!(uri.to_rsip().to_string(), text, "rsip display of {text}");
            assert_eq!(SipUri::from_rsip(&uri.to_rsip()).unwrap(), uri);
        }
    }

    #[test]
    fn parse_fields() {
        let uri = SipUri::parse("sip:+15551234567;tgrp=wacall@SIP.Example.com:5061;transport=TLS;lr").unwrap();
        assert_eq!(uri.user.as_deref(), Some("+15551234567;tgrp=wacall"));
        assert_eq!(uri.host_key(), "sip.example.com");
        assert_eq!(uri.port, Some(5061));
        assert_eq!(uri.transport_param(), Some(Transport::Tls));
        assert!(uri.is_loose_route());
        let v6 = SipUri::parse("sip:[2001:DB8::1]").unwrap();
        assert_eq!(v6.host_key(), "2001:db8::1");
        assert_eq!(v6.to_rsip().to_string(), "sip:[2001:DB8::1]");
    }

    #[test]
    fn parse_rejects_bad_uris() {
        assert_eq!(SipUri::parse("tel:+15551234567"), Err(UriError::UnsupportedScheme));
        for text in ["", "sip:", "sip:@host", "sip:a b@host", "sip:host:99999", "sip:[zz::1]", "sip:host;=x", "sip:<x>"]
        {
            assert_eq!(SipUri::parse(text), Err(UriError::Invalid), "{text:?}");
        }
    }

    #[test]
    fn host_helpers() {
        assert_eq!(split_host_port("sip.example.com:5061"), Some(("sip.example.com".into(), Some(5061))));
        assert_eq!(split_host_port("[::1]:5060"), Some(("[::1]".into(), Some(5060))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]".into(), None)));
        assert_eq!(split_host_port("host:"), None);
        assert_eq!(split_host_port("a:b:c"), None);
        assert_eq!(host_key("[::ffff:10.0.0.1]"), "10.0.0.1");
        assert_eq!(host_for_uri("2001:db8::2"), "[2001:db8::2]");
        assert_eq!(host_for_uri("10.0.0.2"), "10.0.0.2");
    }
}
