//! RFC 3261 transaction timers as values: a monotonic [`Time`], the [`Clock`] that reads it, which
//! timer is meant ([`TimerKind`]) and how long each runs ([`Timers`], computed from T1, T2 and T4).
//!
//! | timer | RFC 3261      | machine            | value                                       |
//! |-------|---------------|--------------------|---------------------------------------------|
//! | A     | §17.1.1.2     | client INVITE      | T1, doubling at each retransmission (no cap) |
//! | B     | §17.1.1.2     | client INVITE      | 64·T1 (`timeout`)                           |
//! | C     | §16.8         | proxy INVITE       | > 3 min (`c`), pushed back by 101-199       |
//! | D     | §17.1.1.2     | client INVITE      | ≥ 32 s unreliable, 0 reliable               |
//! | E     | §17.1.2.2     | client non-INVITE  | T1, doubling up to T2; T2 once proceeding   |
//! | F     | §17.1.2.2     | client non-INVITE  | 64·T1 (`timeout`)                           |
//! | G     | §17.2.1       | server INVITE      | T1, doubling up to T2                       |
//! | H     | §17.2.1       | server INVITE      | 64·T1                                       |
//! | I     | §17.2.1       | server INVITE      | T4 unreliable, 0 reliable                   |
//! | J     | §17.2.2       | server non-INVITE  | 64·T1 unreliable, 0 reliable                |
//! | K     | §17.1.2.2     | client non-INVITE  | T4 unreliable, 0 reliable                   |
//! | L     | RFC 6026 §7.1 | server INVITE 2xx  | 64·T1                                       |
//! | M     | RFC 6026 §7.2 | client INVITE 2xx  | 64·T1                                       |
//!
//! A timer that is zero is not armed: the machine moves on at once.

use std::time::Duration;

/// A point on a monotonic clock whose origin is arbitrary (the edge's start, or zero in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    pub const ZERO: Time = Time(Duration::ZERO);

    /// `d` after the origin.
    pub const fn after(d: Duration) -> Time {
        Time(d)
    }

    /// How far from the origin this is.
    pub fn since_origin(self) -> Duration {
        self.0
    }

    /// How long from `earlier` to `self` (zero when `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

/// Where a caller gets `now` from. The machines never read a clock: callers pass `clock.now()` in.
pub trait Clock {
    fn now(&self) -> Time;
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct FakeClock(std::cell::Cell<Time>);

impl FakeClock {
    pub fn new() -> Self {
        FakeClock::default()
    }

    pub fn advance(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }

    pub fn set(&self, t: Time) {
        self.0.set(t);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Time {
        self.0.get()
    }
}

/// Which timer (RFC 3261 §17 and §16.8; L and M from RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// The timer values, from T1 (RTT estimate), T2 (longest retransmission interval) and T4 (how long
/// a message may stay in the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Timers B and F: how long a client transaction waits for any (INVITE) or a final (non-INVITE)
    /// response. 64·T1 unless configured (`sip_timer_b_ms`).
    pub timeout: Duration,
    /// Timer C (§16.8): how long a proxied INVITE may go without a provisional response or a final one.
    pub c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers::with_t1(Duration::from_millis(500))
    }
}

impl Timers {
    /// RFC 3261's defaults around `t1`: T2 = 4 s, T4 = 5 s, B = F = 64·T1, C = 180 s.
    pub fn with_t1(t1: Duration) -> Self {
        Timers {
            t1,
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timeout: t1 * 64,
            c: Duration::from_secs(180),
        }
    }

    /// The next timer A interval: doubles without a cap (§17.1.1.2).
    pub fn next_a(&self, interval: Duration) -> Duration {
        interval * 2
    }

    /// The next timer E or G interval: doubles up to T2.
    pub fn next_e(&self, interval: Duration) -> Duration {
        (interval * 2).min(self.t2)
    }

    /// 64·T1: timers H, L, M, and J on unreliable transports.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s (64·T1 when longer) on unreliable transports, zero on reliable ones.
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.sixty_four_t1().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    pub fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones.
    pub fn j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.sixty_four_t1()
        }
    }
}

/// The timers a machine has armed, with their deadlines. A firing that is not (or no longer) armed,
/// or that comes before its deadline, is stale and ignored: callers may deliver every firing they
/// scheduled without cancelling any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Armed(Vec<(TimerKind, Time)>);

impl Armed {
    pub(crate) fn arm(&mut self, kind: TimerKind, at: Time) {
        self.disarm(kind);
        self.0.push((kind, at));
    }

    pub(crate) fn disarm(&mut self, kind: TimerKind) {
        self.0.retain(|(k, _)| *k != kind);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// True (and disarmed) when `kind` is armed with a deadline at or before `now`.
    pub(crate) fn take_due(&mut self, kind: TimerKind, now: Time) -> bool {
        let due = self.0.iter().any(|(k, at)| *k == kind && *at <= now);
        if due {
            self.disarm(kind);
        }
        due
    }

    pub(crate) fn deadline(&self, kind: TimerKind) -> Option<Time> {
        self.0.iter().find(|(k, _)| *k == kind).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_values_follow_t1_t2_t4() {
        let t = Timers::default();
        assert_eq!(t.timeout, Duration::from_secs(32), "B = F = 64·T1");
        assert_eq!(t.sixty_four_t1(), Duration::from_secs(32), "H = L = M = 64·T1");
        assert_eq!(t.d(false), Duration::from_secs(32));
        assert_eq!(t.d(true), Duration::ZERO);
        assert_eq!(t.t4_unless_reliable(false), Duration::from_secs(5), "I = K = T4 over UDP");
        assert_eq!(t.t4_unless_reliable(true), Duration::ZERO);
        assert_eq!(t.j(false), Duration::from_secs(32));
        assert_eq!(t.j(true), Duration::ZERO);
        let fast = Timers::with_t1(Duration::from_millis(50));
        assert_eq!(fast.timeout, Duration::from_millis(3200));
        assert_eq!(fast.d(false), Duration::from_secs(32), "D never below 32 s over UDP");
        assert_eq!(Timers::with_t1(Duration::from_secs(1)).d(false), Duration::from_secs(64));
    }

    #[test]
    fn stale_and_early_firings_are_ignored() {
        let mut armed = Armed::default();
        armed.arm(TimerKind::C, Time::after(Duration::from_secs(10)));
        assert!(!armed.take_due(TimerKind::C, Time::after(Duration::from_secs(9))), "early");
        armed.arm(TimerKind::C, Time::after(Duration::from_secs(20)));
        assert!(!armed.take_due(TimerKind::C, Time::after(Duration::from_secs(10))), "pushed back");
        assert!(!armed.take_due(TimerKind::B, Time::after(Duration::from_secs(30))), "never armed");
        assert!(armed.take_due(TimerKind::C, Time::after(Duration::from_secs(20))));
        assert!(!armed.take_due(TimerKind::C, Time::after(Duration::from_secs(20))), "fires once");
    }
}
