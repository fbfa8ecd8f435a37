//! Which subscription URLs may be called (SSRF): http or https only, no credentials in the URL, and no address
//! that is not public (loopback, private, link-local such as cloud metadata at 169.254.169.254, carrier-grade
//! NAT, unique-local, multicast, unspecified) unless `events_allow_private_urls` is set. Checked when a
//! subscription is saved ([`check`], names resolved then) and again at every delivery ([`GuardedResolver`]: the
//! addresses the HTTP client connects to are the ones checked, so a name that later resolves to a private address
//! is refused too).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Longest subscription URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Networks that are not the public Internet.
const NOT_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// True for an address on the public Internet (an IPv4-mapped IPv6 address is judged as its IPv4 address).
pub fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    !NOT_PUBLIC.iter().filter_map(|n| n.parse::<IpNet>().ok()).any(|n| n.contains(&ip))
}

/// The URL's syntax: http(s), a host, no user or password, at most [`MAX_URL_LEN`]. Pure.
pub fn parse(s: &str) -> Result<url::Url, String> {
    if s.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let u = url::Url::parse(s.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("must be an http or https URL, not {}:", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    Ok(u)
}

/// The host's address when the URL names an address rather than a name.
fn literal(u: &url::Url) -> Option<IpAddr> {
    match u.host()? {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    }
}

/// Refuses an address that is not public unless private ones are allowed.
fn allowed(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "resolves to {ip}, which is not a public address (loopback, private or link-local addresses are refused \
             unless events_allow_private_urls is set)"
        ))
    }
}

/// A subscription URL as it is saved: [`parse`], then every address its host resolves to must be allowed.
pub async fn check(s: &str, allow_private: bool) -> Result<url::Url, String> {
    let u = parse(s)?;
    if let Some(ip) = literal(&u) {
        allowed(ip, allow_private)?;
        return Ok(u);
    }
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("host {host} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("host {host} does not resolve"));
    }
    for a in addrs {
        allowed(a.ip(), allow_private)?;
    }
    Ok(u)
}

/// Before a delivery: the URL's literal address, if any, must be allowed (names are checked by
/// [`GuardedResolver`] as the client connects).
pub fn check_literal(u: &url::Url, allow_private: bool) -> Result<(), String> {
    literal(u).map_or(Ok(()), |ip| allowed(ip, allow_private))
}

/// The delivery client's resolver: resolves with the system and refuses a name any of whose addresses is not
/// allowed, so the connection goes only to checked addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                allowed(a.ip(), allow_private)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { format!("{host} {e}").into() })?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver as the client builder takes it.
pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "157.240.1.1", "2a03:2880::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(parse("https://hooks.example.com/wa").is_ok());
        assert!(parse("http://hooks.example.com:8080/wa?x=1").is_ok());
        assert!(parse("ftp://hooks.example.com/").unwrap_err().contains("http or https"));
        assert!(parse("file:///etc/passwd").unwrap_err().contains("http or https"));
        assert!(parse("https://user:pw@hooks.example.com/").unwrap_err().contains("user name"));
        assert!(parse("not a url").unwrap_err().starts_with("is not a URL"));
        assert!(parse(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let e = check("http://127.0.0.1:9/x", false).await.unwrap_err();
        assert!(e.contains("127.0.0.1") && e.contains("events_allow_private_urls"), "{e}");
        assert!(check("http://[::1]:9/x", false).await.is_err());
        assert!(check("http://localhost:9/x", false).await.is_err(), "a name resolving to loopback");
        assert!(check("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(check("http://169.254.169.254/latest/meta-data", false).await.is_err());
    }
}
