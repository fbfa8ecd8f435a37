//! Retry timing: exponential backoff with jitter, honouring a peer's `Retry-After`.

use std::time::Duration;

use rand::Rng;

pub const BASE: Duration = Duration::from_secs(2);
pub const CAP: Duration = Duration::from_secs(3600);

/// Delay before attempt `attempts + 1`, given `attempts` already made (>= 1).
/// Exponential (2 s, 4 s, 8 s, ... capped at 1 h) with "equal jitter": between half and all of it.
/// A `Retry-After` from the peer is a floor: we never come back sooner than asked.
pub fn delay(attempts: i64, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    let exp = attempts.clamp(1, 32) as u32 - 1;
    let full = BASE.saturating_mul(2u32.saturating_pow(exp)).min(CAP);
    let half = full / 2;
    let jittered = half + Duration::from_millis(rng.gen_range(0..=half.as_millis() as u64));
    match retry_after {
        Some(ra) => ra.max(jittered.min(ra + Duration::from_secs(1))),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn grows_with_jitter_and_caps() {
        let mut rng = StdRng::seed_from_u64(1);
        for attempts in 1..40 {
            let d = delay(attempts, None, &mut rng);
            let full = BASE.saturating_mul(2u32.saturating_pow(attempts.min(32) as u32 - 1)).min(CAP);
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?} vs {full:?}");
        }
        assert!(delay(100, None, &mut rng) <= CAP);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = StdRng::seed_from_u64(2);
        let d = delay(1, Some(Duration::from_secs(30)), &mut rng);
        assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(31));
        let d = delay(12, Some(Duration::from_secs(1)), &mut rng);
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
    }
}
