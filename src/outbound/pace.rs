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
    /// Times of the sends of the last 1,000 ms (at most `mps` of them).
    recent: std::collections::VecDeque<i64>,
}

/// Per phone-number throughput pacing. Key: phone id.
#[derive(Debug, Default)]
pub struct PhonePacer {
    phones: HashMap<i64, PhoneState>,
    /// Reserved slots of deferred sends (outbound id → slot ms), so a deferred send keeps its place.
    reserved: HashMap<i64, i64>,
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
    /// Asks for a send of outbound `id` on `phone` at `mps` messages per second at time `now`.
    pub fn ask(&mut self, phone: i64, id: i64, mps: u32, now: i64) -> Verdict {
        let mps = mps.max(1);
        let slot = match self.reserved.get(&id).copied() {
            Some(slot) => slot,
            None => {
                let st = self.phones.entry(phone).or_default();
                let spacing = WINDOW_MS as f64 / mps as f64;
                // A send that comes late (a timer fires after its slot) may use slots up to CATCH_UP_MS old, so
                // timer granularity does not lower the rate; the sliding cap below still bounds every second.
                let slot = st.tat.max((now - CATCH_UP_MS) as f64);
                st.tat = slot + spacing;
                let slot = slot.floor() as i64;
                if slot > now + SLACK_MS {
                    self.reserved.insert(id, slot);
                }
                slot
            }
        };
        if slot > now + SLACK_MS {
            return Verdict::WaitUntil(slot);
        }
        // The hard cap: never more than `mps` sends in any 1,000 ms (so in no calendar second either), even when
        // sends that ran late go together.
        let st = self.phones.entry(phone).or_default();
        while st.recent.front().is_some_and(|t| *t <= now - WINDOW_MS) {
            st.recent.pop_front();
        }
        if st.recent.len() >= mps as usize {
            let next = st.recent.front().map_or(now + 1, |t| t + WINDOW_MS);
            self.reserved.insert(id, next);
            return Verdict::WaitUntil(next);
        }
        st.recent.push_back(now);
        self.reserved.remove(&id);
        Verdict::Go
    }

    /// Meta said the number is over its throughput (130429): no new slot before `now + by_ms`. Several refusals
    /// at once push to the same point, not one `by_ms` each.
    pub fn back_off(&mut self, phone: i64, now: i64, by_ms: i64) {
        let st = self.phones.entry(phone).or_default();
        st.tat = st.tat.max((now + by_ms) as f64);
    }

    /// Forgets the reservation of a send that will not use it (failed, cancelled).
    pub fn forget(&mut self, id: i64) {
        self.reserved.remove(&id);
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
    fn run(p: &mut PhonePacer, mps: u32, n: i64, start: i64) -> Vec<i64> {
        let mut pending: Vec<(i64, i64)> = (0..n).map(|id| (id, start)).collect();
        let mut sent = Vec::new();
        while let Some((id, at)) = pending.first().copied() {
            pending.remove(0);
            match p.ask(1, id, mps, at) {
                Verdict::Go => sent.push(at),
                Verdict::WaitUntil(t) => {
                    assert!(t > at);
                    let pos = pending.iter().position(|(_, a)| *a > t).unwrap_or(pending.len());
                    pending.insert(pos, (id, t));
                }
            }
        }
        sent
    }

    #[test]
    fn no_second_carries_more_than_the_rate_and_the_rate_is_reached() {
        for mps in [1u32, 80, 1000] {
            let mut p = PhonePacer::default();
            let sent = run(&mut p, mps, mps as i64 * 5, 10_500);
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
    fn a_deferred_send_keeps_its_slot() {
        let mut p = PhonePacer::default();
        assert_eq!(p.ask(1, 1, 10, 0), Verdict::Go);
        let Verdict::WaitUntil(slot) = p.ask(1, 2, 10, 0) else { panic!() };
        assert_eq!(slot, 102, "10/s: slots WINDOW_MS / 10 apart");
        // Another send asks in between: it gets the slot after.
        assert_eq!(p.ask(1, 3, 10, 50), Verdict::WaitUntil(204));
        assert_eq!(p.ask(1, 2, 10, 102), Verdict::Go);
        assert_eq!(p.ask(1, 3, 10, 204), Verdict::Go);
    }

    #[test]
    fn phones_do_not_share_slots() {
        let mut p = PhonePacer::default();
        assert_eq!(p.ask(1, 1, 1, 0), Verdict::Go);
        assert_eq!(p.ask(2, 2, 1, 0), Verdict::Go);
        assert!(matches!(p.ask(1, 3, 1, 0), Verdict::WaitUntil(1020)));
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
    fn refusals_do_not_add_up_and_late_sends_are_capped_in_any_second() {
        let mut p = PhonePacer::default();
        for _ in 0..10 {
            p.back_off(1, 0, 1000);
        }
        assert_eq!(p.ask(1, 1, 10, 0), Verdict::WaitUntil(1000));
        assert_eq!(p.ask(1, 2, 10, 0), Verdict::WaitUntil(1102));
        // Both come back late, together: they keep their slots, and the sliding window still caps them.
        let mut q = PhonePacer::default();
        for id in 0..10 {
            q.ask(1, id, 5, 0);
        }
        let go = (0..10).filter(|id| q.ask(1, *id, 5, 5000) == Verdict::Go).count();
        assert_eq!(go, 5, "at most mps in any 1,000 ms");
    }

    #[test]
    fn a_late_timer_does_not_lose_slots_and_never_bursts_past_the_cap() {
        // 1,000/s asked every 3 ms (a timer that fires late): every slot is still used.
        let mut p = PhonePacer::default();
        let mut sent = Vec::new();
        let mut id = 0;
        for now in (0..10_000).step_by(3) {
            while p.ask(1, -1, 1000, now) == Verdict::Go {
                sent.push(now);
                id += 1;
            }
        }
        assert!(id > 9_700, "{id} sends in 10 s at 1,000/s");
        let sliding = sent.windows(1001).map(|w| w[1000] - w[0]).min().unwrap_or(i64::MAX);
        assert!(sliding >= WINDOW_MS, "1,001 sends within {sliding} ms");
        // After 5 s idle, only CATCH_UP_MS of slots go at once.
        let burst = (0..).take_while(|_| p.ask(1, -1, 1000, 15_000) == Verdict::Go).count();
        assert!(burst <= (CATCH_UP_MS + SLACK_MS) as usize + 1, "{burst} at once after idling");
    }

    #[test]
    fn meta_refusals_push_back() {
        let mut p = PairPacer::default();
        p.hold(1, "x", 10_000, 6000, 1);
        assert_eq!(p.ask(1, "x", 6000, 1, 0), Verdict::WaitUntil(10_000));
        let mut ph = PhonePacer::default();
        ph.back_off(1, 0, 500);
        assert_eq!(ph.ask(1, 9, 10, 0), Verdict::WaitUntil(500));
    }
}
