//! Source-address allow lists (Meta's signalling prefixes).

use std::net::IpAddr;

use ipnet::IpNet;

/// Meta's AS32934 IPv4 prefixes as listed in Meta's SIP FAQ (the same list as the Cloud API
/// webhook sources, 23 prefixes).
pub const META_PREFIXES: [&str; 23] = [
    "31.13.24.0/21",
    "31.13.64.0/18",
    "45.64.40.0/22",
    "57.141.0.0/21",
    "57.141.8.0/22",
    "57.141.12.0/23",
    "57.144.0.0/14",
    "66.220.144.0/20",
    "69.63.176.0/20",
    "69.171.224.0/19",
    "74.119.76.0/22",
    "102.132.96.0/20",
    "103.4.96.0/22",
    "129.134.0.0/16",
    "147.75.208.0/20",
    "157.240.0.0/16",
    "163.70.128.0/17",
    "163.77.128.0/17",
    "173.252.64.0/18",
    "179.60.192.0/22",
    "185.60.216.0/22",
    "185.89.216.0/22",
    "204.15.20.0/22",
];

/// Error from [`Acl::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// An entry is neither a CIDR prefix nor a bare IP address.
    #[error("invalid ACL entry {0:?}: expected a CIDR prefix such as 192.0.2.0/24 or an IP address")]
    Invalid(String),
}

/// A list of IP prefixes. An empty list contains nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl(Vec<IpNet>);

impl Acl {
    /// Wraps already-parsed prefixes.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Acl(nets)
    }

    /// Meta's published prefixes ([`META_PREFIXES`]).
    pub fn meta_default() -> Self {
        Acl(META_PREFIXES.iter().filter_map(|p| p.parse().ok()).collect())
    }

    /// Parses CIDR prefixes; a bare address means a single host (/32 or /128). Surrounding
    /// whitespace is ignored; host bits are cleared (`10.0.0.1/8` means `10.0.0.0/8`).
    pub fn parse(entries: &[&str]) -> Result<Acl, AclError> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = entry.trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(canonical_ip(ip)),
                    Err(_) => return Err(AclError::Invalid((*entry).to_string())),
                },
            };
            nets.push(net);
        }
        Ok(Acl(nets))
    }

    /// The prefixes.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` lies in one of the prefixes. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as
    /// seen on dual-stack sockets) are matched as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses become IPv4; everything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_default_has_the_23_prefixes() {
        let acl = Acl::meta_default();
        assert_eq!(acl.nets().len(), 23);
        assert!(acl.contains("57.144.67.157".parse().unwrap()), "wa.meta.vc as seen in the wild");
        assert!(acl.contains("31.13.24.1".parse().unwrap()));
        assert!(acl.contains("204.15.23.255".parse().unwrap()));
        assert!(!acl.contains("204.15.24.0".parse().unwrap()));
        assert!(!acl.contains("8.8.8.8".parse().unwrap()));
        assert!(!acl.contains("2a03:2880::1".parse().unwrap()), "the list is IPv4 only");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_matched_as_ipv4() {
        let acl = Acl::meta_default();
        assert!(acl.contains("::ffff:157.240.19.1".parse().unwrap()));
        assert!(!acl.contains("::ffff:8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn parse_accepts_prefixes_and_bare_addresses() {
        let acl =
            Acl::parse(&["10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32", "::ffff:198.51.100.1", "10.1.2.3/16"]).unwrap();
        assert!(acl.contains("10.9.9.9".parse().unwrap()));
        assert!(acl.contains("192.0.2.7".parse().unwrap()));
        assert!(!acl.contains("192.0.2.8".parse().unwrap()));
        assert!(acl.contains("2001:db8:1::5".parse().unwrap()));
        assert!(acl.contains("198.51.100.1".parse().unwrap()), "mapped bare address stored as IPv4");
        assert_eq!(acl.nets()[4].to_string(), "10.1.0.0/16");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(Acl::parse(&["10.0.0.0/33"]), Err(AclError::Invalid("10.0.0.0/33".into())));
        assert!(Acl::parse(&["example.com"]).is_err());
        assert!(Acl::parse(&[""]).is_err());
        assert!(!Acl::default().contains("127.0.0.1".parse().unwrap()));
    }
}
