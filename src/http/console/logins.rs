//! The login rate limit, per client: each client address has its own budget of [`LOGINS_PER_MINUTE`] attempts a
//! minute, so a stranger guessing tokens uses up only their own budget and cannot lock the admin out.
//!
//! - The client is the TCP peer, or, when the peer is one of `trusted_proxies`, the address the proxy says it
//!   forwarded for ([`client_addr`]: the right-most `X-Forwarded-For` entry that is not itself a trusted proxy).
//!   Behind a reverse proxy that is not listed, every client shares the proxy's address (and its budget).
//! - IPv6 clients are counted per /64 ([`limit_key`]): one host is routinely given a whole /64.
//! - Memory is bounded: at most `max_clients` addresses are tracked. Clients idle for a full refill (a minute)
//!   are dropped every minute and whenever the table is full (`retain_recent`); while it is still full, clients
//!   are counted together in one shared budget, so a flood from very many addresses can slow logins down for its
//!   duration but never grows the table.
//!
//! [`LOGINS_PER_MINUTE`]: super::LOGINS_PER_MINUTE

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::sip::acl::{canonical_ip, Acl};

/// Client addresses tracked at most.
pub const MAX_CLIENTS: usize = 10_000;
/// How often idle clients are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

type Keyed<C> = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Login attempts per client address.
pub struct LoginLimiter<C: Clock = DefaultClock> {
    keyed: Keyed<C>,
    /// The budget clients share while the table is full.
    overflow: Direct<C>,
    max_clients: usize,
    clock: C,
    last_prune: Mutex<C::Instant>,
}

impl LoginLimiter<DefaultClock> {
    pub fn new(per_minute: u32, max_clients: usize) -> Self {
        LoginLimiter::with_clock(per_minute, max_clients, DefaultClock::default())
    }
}

impl<C: Clock + Clone> LoginLimiter<C> {
    pub fn with_clock(per_minute: u32, max_clients: usize, clock: C) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(n);
        LoginLimiter {
            keyed: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            overflow: RateLimiter::direct_with_clock(quota, clock.clone()),
            max_clients: max_clients.max(1),
            last_prune: Mutex::new(clock.now()),
            clock,
        }
    }

    /// Takes one attempt from `client`'s budget: false when it has none left.
    pub fn check(&self, client: IpAddr) -> bool {
        self.prune_if_due();
        if self.keyed.len() >= self.max_clients {
            self.prune();
        }
        if self.keyed.len() >= self.max_clients {
            return self.overflow.check().is_ok();
        }
        self.keyed.check_key(&limit_key(client)).is_ok()
    }

    /// Client addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.keyed.len()
    }

    fn prune_if_due(&self) {
        let now = self.clock.now();
        let due = {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            let due = Duration::from(now.duration_since(*last)) >= PRUNE_EVERY;
            if due {
                *last = now;
            }
            due
        };
        if due {
            self.prune();
        }
    }

    /// Drops the clients whose budget is full again (idle for a minute or more).
    fn prune(&self) {
        self.keyed.retain_recent();
        self.keyed.shrink_to_fit();
    }
}

/// The key a client is counted under: its IPv4 address, or the /64 of its IPv6 address.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the right-most address of
/// `X-Forwarded-For` (`forwarded`: every such header, in order) that is not itself a trusted proxy. Entries left
/// of it were written by the client and are not believed. A trusted peer that forwarded nothing usable is the
/// client itself.
pub fn client_addr(peer: IpAddr, forwarded: &[&str], trusted: &Acl) -> IpAddr {
    let peer = canonical_ip(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.iter().flat_map(|h| h.split(',')).map(str::trim).collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { return peer };
        if !trusted.contains(ip) {
            return canonical_ip(ip);
        }
    }
    peer
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_client_has_its_own_budget() {
        let l = LoginLimiter::with_clock(3, 100, FakeRelativeClock::default());
        let (stranger, admin) = (ip("203.0.113.9"), ip("198.51.100.4"));
        for _ in 0..3 {
            assert!(l.check(stranger));
        }
        assert!(!l.check(stranger), "the stranger's budget is used up");
        assert!(l.check(admin), "another client is not blocked");
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn the_budget_refills_over_the_minute() {
        let clock = FakeRelativeClock::default();
        let l = LoginLimiter::with_clock(3, 100, clock.clone());
        let a = ip("203.0.113.9");
        for _ in 0..3 {
            assert!(l.check(a));
        }
        assert!(!l.check(a));
        clock.advance(Duration::from_secs(20));
        assert!(l.check(a), "one attempt back after a third of a minute");
        assert!(!l.check(a));
    }

    #[test]
    fn an_ipv6_client_is_counted_per_64() {
        let l = LoginLimiter::with_clock(2, 100, FakeRelativeClock::default());
        assert!(l.check(ip("2001:db8:1:2::1")));
        assert!(l.check(ip("2001:db8:1:2::ffff")));
        assert!(!l.check(ip("2001:db8:1:2:abcd::9")), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1")), "another /64");
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"), "IPv4-mapped counts as IPv4");
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_are_dropped() {
        let clock = FakeRelativeClock::default();
        let l = LoginLimiter::with_clock(2, 4, clock.clone());
        for i in 0..4 {
            assert!(l.check(ip(&format!("192.0.2.{i}"))));
        }
        assert_eq!(l.tracked(), 4);
        // Full with live clients: newcomers share one budget, and the table does not grow.
        assert!(l.check(ip("192.0.2.100")));
        assert!(l.check(ip("192.0.2.101")));
        assert!(!l.check(ip("192.0.2.102")), "the shared budget is used up");
        assert_eq!(l.tracked(), 4);
        // A minute later the idle clients are dropped and newcomers get their own budget again.
        clock.advance(Duration::from_secs(61));
        assert!(l.check(ip("192.0.2.103")));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let none = Acl::default();
        let proxies = Acl::parse(&["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let peer = ip("10.1.1.1");
        // No trusted proxies: the header is ignored, whatever it says.
        assert_eq!(client_addr(peer, &["203.0.113.7"], &none), peer);
        // An untrusted peer cannot claim another address.
        assert_eq!(client_addr(ip("198.51.100.2"), &["203.0.113.7"], &proxies), ip("198.51.100.2"));
        // A trusted proxy: the right-most address it did not add itself.
        assert_eq!(client_addr(peer, &["203.0.113.7"], &proxies), ip("203.0.113.7"));
        assert_eq!(client_addr(peer, &["6.6.6.6, 203.0.113.7, 10.2.2.2"], &proxies), ip("203.0.113.7"));
        assert_eq!(client_addr(peer, &["6.6.6.6", "203.0.113.7:5000"], &proxies), ip("203.0.113.7"));
        assert_eq!(client_addr(peer, &["[2001:db8::5]:443"], &proxies), ip("2001:db8::5"));
        // Nothing usable: the proxy itself.
        assert_eq!(client_addr(peer, &[], &proxies), peer);
        assert_eq!(client_addr(peer, &["unknown"], &proxies), peer);
        assert_eq!(client_addr(peer, &["192.0.2.1"], &proxies), peer, "only proxies in the chain");
        assert_eq!(client_addr(ip("::ffff:10.1.1.1"), &["203.0.113.7"], &proxies), ip("203.0.113.7"));
    }
}
