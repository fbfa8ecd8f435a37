//! Request pacing for one portal: a leaky bucket shaped like Bitrix24's own (`reference/bitrix24.md` §1.6).
//! Every request adds 1 to the bucket's level, the level drains at `rate_per_sec`, and a request that would
//! lift it above `burst` waits until enough has drained. So a quiet portal gets `burst` requests at once and
//! then `rate_per_sec` sustained: exactly what Bitrix24 tolerates before answering `QUERY_LIMIT_EXCEEDED`.
//!
//! Time is `tokio::time::Instant`, passed in, so tests drive it (or pause tokio's clock).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bucket level at `at`. `at` lies in the future when slots up to then are already handed out.
    level: f64,
    at: Instant,
}

/// A duration of `secs` seconds, clamped to something an `Instant` can always absorb.
fn secs(secs: f64) -> Duration {
    if secs.is_finite() {
        Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
    } else {
        Duration::from_secs(86_400)
    }
}

impl Limiter {
    /// A limiter whose bucket is empty at `now`. `rate_per_sec` and `burst` are raised to sane minimums.
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> Limiter {
        let rate = if rate_per_sec.is_finite() { rate_per_sec.max(0.01) } else { 2.0 };
        Limiter { rate, burst: f64::from(burst.max(1)), state: Mutex::new(State { level: 0.0, at: now }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves the next slot when it comes within `max_wait` of `now`: `Ok(wait)`, and the caller sends after
    /// `wait`. `Err(wait)` when the slot is further away; nothing is reserved then.
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut s = self.state();
        let start = now.max(s.at);
        let level = (s.level - start.duration_since(s.at).as_secs_f64() * self.rate).max(0.0);
        if level + 1.0 <= self.burst {
            let wait = start - now;
            if wait > max_wait {
                return Err(wait);
            }
            s.level = level + 1.0;
            s.at = start;
            return Ok(wait);
        }
        // Full: the slot comes when the level has drained to `burst - 1`.
        let slot = start + secs((level + 1.0 - self.burst) / self.rate);
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        s.level = self.burst;
        s.at = slot;
        Ok(wait)
    }

    /// How long from `now` until a request could go, without reserving anything.
    pub fn wait(&self, now: Instant) -> Duration {
        let s = self.state();
        let start = now.max(s.at);
        let level = (s.level - start.duration_since(s.at).as_secs_f64() * self.rate).max(0.0);
        if level + 1.0 <= self.burst {
            start - now
        } else {
            start + secs((level + 1.0 - self.burst) / self.rate) - now
        }
    }

    /// Waits for a slot, unless it is more than `max_wait` away (`Err` with how far it is).
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        let wait = self.reserve(Instant::now(), max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// The portal said "too many requests": hand out nothing for `pause`, then restart with a full bucket
    /// (so at the sustained rate, no burst).
    pub fn back_off(&self, now: Instant, pause: Duration) {
        let mut s = self.state();
        let until = now + pause;
        if until > s.at {
            s.at = until;
        }
        s.level = self.burst;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const LONG: Duration = Duration::from_secs(3600);

    fn waits(l: &Limiter, now: Instant, n: usize) -> Vec<Duration> {
        (0..n).map(|_| l.reserve(now, LONG).expect("within max wait")).collect()
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= MS
    }

    #[test]
    fn a_quiet_portal_gets_its_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let l = Limiter::new(2.0, 5, t0);
        let w = waits(&l, t0, 8);
        assert!(w[..5].iter().all(|d| d.is_zero()), "{w:?}");
        assert!(close(w[5], Duration::from_millis(500)), "{w:?}");
        assert!(close(w[6], Duration::from_millis(1000)), "{w:?}");
        assert!(close(w[7], Duration::from_millis(1500)), "{w:?}");
    }

    #[test]
    fn the_bucket_drains_over_time() {
        let t0 = Instant::now();
        let l = Limiter::new(2.0, 4, t0);
        waits(&l, t0, 4);
        // 1 s later two units have drained: two immediate slots, the third waits half a second.
        let t1 = t0 + Duration::from_secs(1);
        let w = waits(&l, t1, 3);
        assert_eq!(&w[..2], &[Duration::ZERO, Duration::ZERO]);
        assert!(close(w[2], Duration::from_millis(500)), "{w:?}");
        // Long idle: the whole burst is back.
        let t2 = t1 + Duration::from_secs(60);
        assert!(waits(&l, t2, 4).iter().all(|d| d.is_zero()));
    }

    #[test]
    fn a_slot_beyond_max_wait_is_refused_without_reserving() {
        let t0 = Instant::now();
        let l = Limiter::new(1.0, 1, t0);
        assert_eq!(l.reserve(t0, Duration::ZERO), Ok(Duration::ZERO));
        let far = l.reserve(t0, Duration::from_millis(100)).expect_err("too far");
        assert!(close(far, Duration::from_secs(1)));
        // Refusing reserved nothing: the next slot is still 1 s away, not 2.
        assert!(close(l.reserve(t0, LONG).expect("ok"), Duration::from_secs(1)));
    }

    #[test]
    fn back_off_pauses_then_paces_without_burst() {
        let t0 = Instant::now();
        let l = Limiter::new(2.0, 50, t0);
        l.back_off(t0, Duration::from_secs(2));
        let w = waits(&l, t0, 2);
        assert!(close(w[0], Duration::from_millis(2500)), "{w:?}");
        assert!(close(w[1], Duration::from_millis(3000)), "{w:?}");
    }

    #[test]
    fn wait_tells_without_reserving() {
        let now = Instant::now();
        let l = Limiter::new(2.0, 2, now);
        assert_eq!(l.wait(now), Duration::ZERO);
        assert_eq!(l.wait(now), Duration::ZERO, "asking reserves nothing");
        l.reserve(now, LONG).unwrap();
        l.reserve(now, LONG).unwrap();
        assert!(close(l.wait(now), 500 * MS), "{:?}", l.wait(now));
        assert!(close(l.wait(now + 200 * MS), 300 * MS));
        assert_eq!(l.wait(now + 600 * MS), Duration::ZERO);
    }

    #[test]
    fn silly_settings_are_clamped() {
        let t0 = Instant::now();
        let l = Limiter::new(f64::NAN, 0, t0);
        assert_eq!(l.reserve(t0, LONG), Ok(Duration::ZERO));
        assert!(close(l.reserve(t0, LONG).expect("ok"), Duration::from_millis(500)));
    }

    #[tokio::test]
    async fn acquire_sleeps_until_the_slot() {
        let l = Limiter::new(50.0, 2, Instant::now());
        let t0 = Instant::now();
        for _ in 0..4 {
            l.acquire(LONG).await.expect("slot");
        }
        // Two free, then two at 20 ms spacing.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(38) && took < Duration::from_millis(500), "{took:?}");
        // The bucket is full again right after the fourth; with no wait allowed, the fifth is refused (asked at the
        // fourth's slot, so a slow machine's scheduling does not drain the bucket first).
        assert!(l.reserve(t0 + Duration::from_millis(40), Duration::ZERO).is_err());
    }
}
