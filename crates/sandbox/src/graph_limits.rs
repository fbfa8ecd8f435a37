//! The Graph sandbox's sending limits (`shared/reference/meta-messaging.md` §9), as plain data over an injected
//! clock (every method takes `now`), so they are unit tested without sleeping:
//!
//! - **throughput** per business number: a token bucket refilled at `mps` tokens per second holding at most `mps`
//!   tokens (one second's worth; default 80). Past it: 130429. A client that keeps every sliding one-second window
//!   at or below `mps` is never refused by such a bucket (over any span of `t` seconds it sends at most
//!   `mps·⌈t⌉ ≤ mps + mps·t`); a client that only keeps *calendar* seconds under the limit can be (a full second's
//!   worth at x.99 s and another at (x+1).00 s);
//! - **pair rate** per (business number, recipient): a bucket of `burst` tokens (default 45) refilled one token every
//!   `per` (default 6 s), Meta's "1 message every 6 seconds, bursts of 45 that borrow from future quota". Past it:
//!   131056;
//! - a count of accepted sends per unix second and number, for benchmarks ("never above the limit in any second").
//!
//! A refused send consumes nothing: both buckets are checked before either is drawn from.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Meta's default throughput, messages per second per number.
pub const DEFAULT_MPS: f64 = 80.0;
/// Meta's pair rate: one message per this period to the same user...
pub const DEFAULT_PAIR_PER: Duration = Duration::from_secs(6);
/// ...with bursts of this many.
pub const DEFAULT_PAIR_BURST: u32 = 45;

/// A token bucket: `capacity` tokens at most, `rate` tokens per second, full when created.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

/// Tolerance for the float arithmetic of refills (a send exactly on schedule must pass).
const EPSILON: f64 = 1e-9;

impl Bucket {
    pub fn new(capacity: f64, rate: f64) -> Bucket {
        Bucket { capacity, rate, tokens: capacity, last: None }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        }
        // A clock that goes backwards (it cannot with `Instant`, but tests build instants by hand) refills nothing.
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// True when a token is available at `now` (nothing is taken).
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens + EPSILON >= 1.0
    }

    /// Takes a token if one is available at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.ready(now) {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// How long until a token is available (zero when one is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens + EPSILON >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// Which limit refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The number's messages-per-second (130429).
    Throughput,
    /// The (number, recipient) pair rate (131056).
    Pair,
}

impl LimitHit {
    /// Meta's error code for this limit.
    pub fn code(self) -> i64 {
        match self {
            LimitHit::Throughput => 130429,
            LimitHit::Pair => 131056,
        }
    }
}

/// Throughput and pair buckets of every number, and the per-second counts of accepted sends.
#[derive(Debug)]
pub struct Limits {
    mps: HashMap<String, f64>,
    throughput: HashMap<String, Bucket>,
    pair_per: Duration,
    pair_burst: u32,
    pairs: HashMap<(String, String), Bucket>,
    per_second: HashMap<String, BTreeMap<u64, u32>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            mps: HashMap::new(),
            throughput: HashMap::new(),
            pair_per: DEFAULT_PAIR_PER,
            pair_burst: DEFAULT_PAIR_BURST,
            pairs: HashMap::new(),
            per_second: HashMap::new(),
        }
    }
}

impl Limits {
    /// Sets a number's throughput (a fresh, full bucket). `mps` ≤ 0 refuses every send.
    pub fn set_throughput(&mut self, pnid: &str, mps: f64) {
        self.mps.insert(pnid.into(), mps);
        self.throughput.remove(pnid);
    }

    /// The number's throughput (default [`DEFAULT_MPS`]).
    pub fn throughput(&self, pnid: &str) -> f64 {
        self.mps.get(pnid).copied().unwrap_or(DEFAULT_MPS)
    }

    /// Sets the pair rate of every pair (one message per `per`, bursts of `burst`); every pair starts afresh.
    pub fn set_pair_rate(&mut self, per: Duration, burst: u32) {
        self.pair_per = per;
        self.pair_burst = burst;
        self.pairs.clear();
    }

    /// Admits one send of `pnid` to `recipient` at `now`, or says which limit refuses it (then nothing is taken).
    pub fn admit(&mut self, pnid: &str, recipient: &str, now: Instant) -> Result<(), LimitHit> {
        let mps = self.throughput(pnid);
        let pair_rate = if self.pair_per.is_zero() { f64::INFINITY } else { 1.0 / self.pair_per.as_secs_f64() };
        let burst = f64::from(self.pair_burst);
        let tp = self.throughput.entry(pnid.into()).or_insert_with(|| Bucket::new(mps.max(0.0), mps.max(0.0)));
        if !tp.ready(now) {
            return Err(LimitHit::Throughput);
        }
        let pair = self.pairs.entry((pnid.into(), recipient.into())).or_insert_with(|| Bucket::new(burst, pair_rate));
        if !pair.take(now) {
            return Err(LimitHit::Pair);
        }
        tp.take(now);
        Ok(())
    }

    /// Admits one request of `pnid` that is not a message (a read mark) at `now`: only the throughput applies.
    pub fn admit_request(&mut self, pnid: &str, now: Instant) -> Result<(), LimitHit> {
        let mps = self.throughput(pnid);
        let tp = self.throughput.entry(pnid.into()).or_insert_with(|| Bucket::new(mps.max(0.0), mps.max(0.0)));
        if !tp.take(now) {
            return Err(LimitHit::Throughput);
        }
        Ok(())
    }

    /// Counts an accepted send in unix second `unix_second`.
    pub fn count(&mut self, pnid: &str, unix_second: u64) {
        *self.per_second.entry(pnid.into()).or_default().entry(unix_second).or_default() += 1;
    }

    /// `(unix second, accepted sends)` for every second with at least one, oldest first.
    pub fn per_second(&self, pnid: &str) -> Vec<(u64, u32)> {
        self.per_second.get(pnid).map(|m| m.iter().map(|(s, n)| (*s, *n)).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_refills_at_its_rate_and_caps() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, 2.0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert_eq!(b.wait(t0), ms(500));
        assert!(!b.take(t0 + ms(499)));
        assert!(b.take(t0 + ms(500)));
        // A long pause refills only up to the capacity.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn throughput_allows_one_seconds_worth_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        l.set_throughput("1", 10.0);
        l.set_pair_rate(Duration::ZERO, 1000);
        for i in 0..10 {
            assert_eq!(l.admit("1", &format!("u{i}"), t0), Ok(()), "{i}");
        }
        assert_eq!(l.admit("1", "u", t0), Err(LimitHit::Throughput));
        assert_eq!(l.admit("1", "u", t0 + ms(100)), Ok(()));
        assert_eq!(l.admit("1", "u", t0 + ms(100)), Err(LimitHit::Throughput));
        // Another number has its own bucket with the default rate.
        for _ in 0..80 {
            assert_eq!(l.admit("2", "u", t0), Ok(()));
        }
        assert_eq!(l.admit("2", "u", t0), Err(LimitHit::Throughput));
        assert_eq!(LimitHit::Throughput.code(), 130429);
    }

    #[test]
    fn a_sender_paced_at_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        l.set_pair_rate(Duration::ZERO, 1);
        // 80 at once, then one every 12.5 ms for ten seconds.
        for i in 0..80u64 {
            assert!(l.admit("1", &i.to_string(), t0).is_ok());
        }
        for i in 1..=800u64 {
            let at = t0 + Duration::from_micros(12_500 * i);
            assert!(l.admit("1", &format!("r{i}"), at).is_ok(), "{i}");
        }
    }

    #[test]
    fn pair_rate_allows_a_burst_then_one_per_period() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        l.set_pair_rate(ms(100), 3);
        for _ in 0..3 {
            assert_eq!(l.admit("1", "a", t0), Ok(()));
        }
        assert_eq!(l.admit("1", "a", t0), Err(LimitHit::Pair));
        // Other recipients are not affected.
        assert_eq!(l.admit("1", "b", t0), Ok(()));
        assert_eq!(l.admit("1", "a", t0 + ms(99)), Err(LimitHit::Pair));
        assert_eq!(l.admit("1", "a", t0 + ms(100)), Ok(()));
        assert_eq!(LimitHit::Pair.code(), 131056);
    }

    #[test]
    fn a_refusal_takes_nothing() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        l.set_throughput("1", 2.0);
        l.set_pair_rate(Duration::from_secs(6), 1);
        assert_eq!(l.admit("1", "a", t0), Ok(()));
        // The pair refuses: the throughput token stays.
        assert_eq!(l.admit("1", "a", t0), Err(LimitHit::Pair));
        assert_eq!(l.admit("1", "b", t0), Ok(()));
        assert_eq!(l.admit("1", "c", t0), Err(LimitHit::Throughput));
        // ...and a throughput refusal leaves the pair's token.
        assert_eq!(l.admit("1", "c", t0 + ms(500)), Ok(()));
    }

    #[test]
    fn default_pair_rate_is_metas() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        for i in 0..45 {
            // Spread over 45 × 12.5 ms so throughput never interferes.
            assert_eq!(l.admit("1", "a", t0 + Duration::from_micros(12_500 * i)), Ok(()), "{i}");
        }
        let t = t0 + Duration::from_secs(1);
        assert_eq!(l.admit("1", "a", t), Err(LimitHit::Pair));
        assert_eq!(l.admit("1", "a", t0 + Duration::from_secs(6)), Ok(()));
    }

    #[test]
    fn per_second_counts() {
        let mut l = Limits::default();
        l.count("1", 100);
        l.count("1", 100);
        l.count("1", 102);
        l.count("2", 100);
        assert_eq!(l.per_second("1"), vec![(100, 2), (102, 1)]);
        assert!(l.per_second("3").is_empty());
    }
}
