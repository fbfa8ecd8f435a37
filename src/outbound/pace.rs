//! Pacing sends to Meta's limits (`shared/reference/meta-messaging.md` §9), as pure state machines over a
//! clock in milliseconds so they can be tested without time passing.
//!
//! - Per phone number, [`PhonePacer`]: sends are spaced `WINDOW_MS / mps` ms apart (a GCRA reservation: every
//!   send gets the next free slot; slots missed by up to [`CATCH_UP_MS`] are still used), and a hard cap of
//!   `mps` sends in any [`WINDOW_MS`] (a sliding window, a little over a second to absorb network jitter)
//!   guards against sends that ran late going together. Meta's throughput is "messages per second", so no
//!   second, calendar or sliding, carries more than `mps` sends.
//! - Per customer, [`PairPacer`]: one message per `interval` with bursts up to `burst` (GCRA), as Meta's pair
//!   rate allows. A message that does not conform waits (it is queued, not failed).
//!
//! Both live in the send dispatcher of the process that holds the number's claim (`dispatch.rs`): with several
//! processes on one database, a number is still paced in one place.

use std::collections::HashMap;

/// What a pacer says about a send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send now.
    Go,
    /// Not before this time (ms).
    WaitUntil(i64),
}

#[derive(Debug, Default)]
struct PhoneState {
    /// Theoretical arrival time of the next free slot (ms, fractional to keep 1000/mps exact).
    tat: f64,
    /// Times of the sends of the last [`WINDOW_MS`] (at most `mps` of them).
    recent: std::collections::VecDeque<i64>,
    /// The slot the number's next send was told to wait for: asking again before it gets the same slot.
    reserved: Option<i64>,
}

/// Per phone-number throughput pacing. Key: phone id.
#[derive(Debug, Default)]
pub struct PhonePacer {
    phones: HashMap<i64, PhoneState>,
}

/// How early a reserved slot may be used, and how long a send may wait in place instead of being deferred.
pub const SLACK_MS: i64 = 2;
/// The window of the hard cap: at most `mps` sends are started in any `WINDOW_MS`, and slots are
/// `WINDOW_MS / mps` apart. A little over a second, so that requests that take different times to reach Meta
/// (a few ms to tens of ms apart on a busy machine) still arrive at most `mps` in any second at Meta's end. The
/// price is 2% of the rate (98% of `mps`).
pub const WINDOW_MS: i64 = 1020;
/// How old an unused slot may be and still be used (see [`PhonePacer::ask`]).
pub const CATCH_UP_MS: i64 = 50;

impl PhonePacer {
    /// May `phone`, at `mps` messages per second, start a send at time `now`? A `WaitUntil` reserves that slot
    /// for the number's next send.
    pub fn ask(&mut self, phone: i64, mps: u32, now: i64) -> Verdict {
        let mps = mps.max(1);
        let st = self.phones.entry(phone).or_default();
        let slot = match st.reserved {
            Some(slot) => slot,
            None => {
                let spacing = WINDOW_MS as f64 / mps as f64;
                // A send that comes late (a timer fires after its slot) may use slots up to CATCH_UP_MS old, so
                // timer granularity does not lower the rate; the sliding cap below still bounds every second.
                let slot = st.tat.max((now - CATCH_UP_MS) as f64);
                st.tat = slot + spacing;
                slot.floor() as i64
            }
        };
        if slot > now + SLACK_MS {
            st.reserved = Some(slot);
            return Verdict::WaitUntil(slot);
        }
        // The hard cap: never more than `mps` sends in any WINDOW_MS (so in no calendar second either), even when
        // sends that ran late go together.
        while st.recent.front().is_some_and(|t| *t <= now - WINDOW_MS) {
            st.recent.pop_front();
        }
        if st.recent.len() >= mps as usize {
            let next = st.recent.front().map_or(now + 1, |t| t + WINDOW_MS);
            st.reserved = Some(next);
            return Verdict::WaitUntil(next);
        }
        st.recent.push_back(now);
        st.reserved = None;
        Verdict::Go
    }

    /// Meta said the number is over its throughput (130429): no new slot before `now + by_ms`, and a slot
    /// reserved earlier is dropped. Several refusals at once push to the same point, not one `by_ms` each.
    pub fn back_off(&mut self, phone: i64, now: i64, by_ms: i64) {
        let st = self.phones.entry(phone).or_default();
        st.tat = st.tat.max((now + by_ms) as f64);
        st.reserved = None;
    }
}

/// Per (phone, customer) pair-rate pacing.
#[derive(Debug, Default)]
pub struct PairPacer {
    /// Phone → customer → theoretical arrival time of the customer's next message.
    tat: HashMap<i64, HashMap<String, i64>>,
    entries: usize,
}

impl PairPacer {
    fn tat(&self, phone: i64, recipient: &str) -> Option<i64> {
        self.tat.get(&phone).and_then(|m| m.get(recipient)).copied()
    }

    /// What [`PairPacer::ask`] would answer now, without consuming anything.
    pub fn peek(&self, phone: i64, recipient: &str, interval_ms: i64, burst: u32, now: i64) -> Verdict {
        let tat = self.tat(phone, recipient).unwrap_or(now).max(now);
        let tolerance = interval_ms * (burst.max(1) as i64 - 1);
        if tat - now > tolerance {
            Verdict::WaitUntil(tat - tolerance)
        } else {
            Verdict::Go
        }
    }

    /// One send per `interval_ms`, bursts up to `burst`. Consumes a slot only when it answers [`Verdict::Go`].
    pub fn ask(&mut self, phone: i64, recipient: &str, interval_ms: i64, burst: u32, now: i64) -> Verdict {
        let verdict = self.peek(phone, recipient, interval_ms, burst, now);
        if verdict != Verdict::Go {
            return verdict;
        }
        let tat = self.tat(phone, recipient).unwrap_or(now).max(now);
        self.set(phone, recipient, tat + interval_ms);
        if self.entries > 100_000 {
            // Customers whose slot has passed behave as new ones: forget them.
            for m in self.tat.values_mut() {
                m.retain(|_, t| *t > now);
            }
            self.entries = self.tat.values().map(HashMap::len).sum();
        }
        Verdict::Go
    }

    fn set(&mut self, phone: i64, recipient: &str, tat: i64) {
        let m = self.tat.entry(phone).or_default();
        match m.get_mut(recipient) {
            Some(t) => *t = tat,
            None => {
                m.insert(recipient.to_string(), tat);
                self.entries += 1;
            }
        }
    }

    /// Meta said the pair is over its rate (131056): no send to this customer before `until`.
    pub fn hold(&mut self, phone: i64, recipient: &str, until: i64, interval_ms: i64, burst: u32) {
        let tolerance = interval_ms * (burst.max(1) as i64 - 1);
        let tat = self.tat(phone, recipient).unwrap_or(until).max(until + tolerance);
        self.set(phone, recipient, tat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates senders asking as soon as allowed; returns the send times.
    /// Simulates a dispatcher with `n` sends queued at `start`: it asks for the head send, sends it on `Go`,
    /// and otherwise sleeps until the slot it was given (waking 0–2 ms late, as timers do). Returns the send times.
    fn run(p: &mut PhonePacer, mps: u32, n: usize, start: i64) -> Vec<i64> {
        let mut sent = Vec::with_capacity(n);
        let mut now = start;
        while sent.len() < n {
            match p.ask(1, mps, now) {
                Verdict::Go => sent.push(now),
                Verdict::WaitUntil(t) => {
                    assert!(t > now);
                    now = t + (t % 3);
                }
            }
        }
        sent
    }

    #[test]
    fn no_second_carries_more_than_the_rate_and_the_rate_is_reached() {
        for mps in [1u32, 80, 1000] {
            let mut p = PhonePacer::default();
            let sent = run(&mut p, mps, mps as usize * 5, 10_500);
            let mut per_second: HashMap<i64, u32> = HashMap::new();
            for t in &sent {
                *per_second.entry(t.div_euclid(1000)).or_default() += 1;
            }
            assert!(per_second.values().all(|c| *c <= mps), "{mps}: {per_second:?}");
            let sliding = sent.iter().map(|t| sent.iter().filter(|u| **u >= *t && **u < t + 1000).count()).max();
            assert!(sliding.unwrap_or(0) <= mps as usize, "{mps}: {sliding:?} in a sliding second");
            let span = (sent.last().unwrap() - sent.first().unwrap()) as f64 / 1000.0;
            let rate = (sent.len() - 1) as f64 / span.max(0.001);
            assert!(rate > mps as f64 * 0.95, "{mps}/s reached only {rate}");
        }
    }

    #[test]
    fn a_reserved_slot_is_kept() {
        let mut p = PhonePacer::default();
        assert_eq!(p.ask(1, 10, 0), Verdict::Go);
        assert_eq!(p.ask(1, 10, 0), Verdict::WaitUntil(102), "10/s: slots WINDOW_MS / 10 apart");
        // Asking again before the slot does not take another one.
        assert_eq!(p.ask(1, 10, 50), Verdict::WaitUntil(102));
        assert_eq!(p.ask(1, 10, 102), Verdict::Go);
        assert_eq!(p.ask(1, 10, 102), Verdict::WaitUntil(204));
    }

    #[test]
    fn phones_do_not_share_slots() {
        let mut p = PhonePacer::default();
        assert_eq!(p.ask(1, 1, 0), Verdict::Go);
        assert_eq!(p.ask(2, 1, 0), Verdict::Go);
        assert_eq!(p.ask(1, 1, 0), Verdict::WaitUntil(1020));
    }

    #[test]
    fn pair_rate_allows_the_burst_then_one_per_interval() {
        let mut p = PairPacer::default();
        for _ in 0..45 {
            assert_eq!(p.ask(1, "551199", 6000, 45, 0), Verdict::Go);
        }
        let Verdict::WaitUntil(t) = p.ask(1, "551199", 6000, 45, 0) else { panic!() };
        assert_eq!(t, 6000);
        assert_eq!(p.ask(1, "551199", 6000, 45, 6000), Verdict::Go);
        // Another customer is not affected.
        assert_eq!(p.ask(1, "551100", 6000, 45, 0), Verdict::Go);
    }

    #[test]
    fn refusals_do_not_add_up_and_drop_the_reserved_slot() {
        let mut p = PhonePacer::default();
        for _ in 0..10 {
            p.back_off(1, 0, 1000);
        }
        assert_eq!(p.ask(1, 10, 0), Verdict::WaitUntil(1000));
        assert_eq!(p.ask(1, 10, 1000), Verdict::Go);
        assert_eq!(p.ask(1, 10, 1000), Verdict::WaitUntil(1102));
        // A refusal while a slot is reserved: the reserved slot is not used.
        let mut q = PhonePacer::default();
        assert_eq!(q.ask(1, 10, 0), Verdict::Go);
        assert_eq!(q.ask(1, 10, 0), Verdict::WaitUntil(102));
        q.back_off(1, 50, 1000);
        assert_eq!(q.ask(1, 10, 102), Verdict::WaitUntil(1050));
    }

    #[test]
    fn a_late_timer_does_not_lose_slots_and_never_bursts_past_the_cap() {
        // 1,000/s asked every 3 ms (a timer that fires late): every slot is still used.
        let mut p = PhonePacer::default();
        let mut sent = Vec::new();
        let mut id = 0;
        for now in (0..10_000).step_by(3) {
            while p.ask(1, 1000, now) == Verdict::Go {
                sent.push(now);
                id += 1;
            }
        }
        assert!(id > 9_700, "{id} sends in 10 s at 1,000/s");
        let sliding = sent.windows(1001).map(|w| w[1000] - w[0]).min().unwrap_or(i64::MAX);
        assert!(sliding >= WINDOW_MS, "1,001 sends within {sliding} ms");
        // After 5 s idle, only CATCH_UP_MS of slots go at once.
        let burst = (0..).take_while(|_| p.ask(1, 1000, 15_000) == Verdict::Go).count();
        assert!(burst <= (CATCH_UP_MS + SLACK_MS) as usize + 1, "{burst} at once after idling");
    }

    #[test]
    fn meta_refusals_push_back() {
        let mut p = PairPacer::default();
        p.hold(1, "x", 10_000, 6000, 1);
        assert_eq!(p.ask(1, "x", 6000, 1, 0), Verdict::WaitUntil(10_000));
        let mut ph = PhonePacer::default();
        ph.back_off(1, 0, 500);
        assert_eq!(ph.ask(1, 10, 0), Verdict::WaitUntil(500));
    }
}
