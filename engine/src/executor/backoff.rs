//! Retry delays: exponential backoff with "equal jitter" (half the delay
//! fixed, half random) so retries of many runs spread out but never come
//! back at once.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::functions::Retries;

/// The delay before retrying after `failed_attempt` (1-based) failed;
/// `unit` is a random number in `[0, 1)`.
pub fn backoff(policy: &Retries, failed_attempt: u32, unit: f64) -> Duration {
    let base = policy.backoff.std().as_millis() as f64;
    let exponent = failed_attempt.saturating_sub(1).min(40) as i32;
    let capped = (base * 2f64.powi(exponent)).min(policy.max_backoff.std().as_millis() as f64);
    let unit = unit.clamp(0.0, 1.0);
    Duration::from_millis((capped / 2.0 + capped / 2.0 * unit) as u64)
}

/// A random number in `[0, 1)`, good enough for jitter: std's `RandomState`
/// is seeded randomly per process and changes keys on every call.
pub fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::Duration as D;

    fn policy() -> Retries {
        Retries {
            attempts: 5,
            backoff: D::from_millis(100),
            max_backoff: D::from_millis(1000),
        }
    }

    #[test]
    fn doubles_and_caps() {
        let p = policy();
        // With unit = 1 the delay is the full exponential value.
        let full: Vec<u128> = (1..=6).map(|n| backoff(&p, n, 1.0).as_millis()).collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
        // With unit = 0 it is half of it: never zero, never immediate.
        let half: Vec<u128> = (1..=3).map(|n| backoff(&p, n, 0.0).as_millis()).collect();
        assert_eq!(half, [50, 100, 200]);
        assert_eq!(
            backoff(&p, 1000, 1.0).as_millis(),
            1000,
            "huge attempt numbers stay capped"
        );
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        let distinct: std::collections::HashSet<u64> =
            samples.iter().map(|u| u.to_bits()).collect();
        assert!(distinct.len() > 32, "jitter should vary: {distinct:?}");
        let p = policy();
        for u in samples {
            let d = backoff(&p, 2, u).as_millis();
            assert!((100..=200).contains(&d), "{d}");
        }
    }
}
