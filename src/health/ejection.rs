//! How long an ejected member stays out of rotation.

use std::time::Duration;

use crate::config::EjectionConfig;

/// Ejection time policy: `base * 2^(n-1)` for the n-th consecutive ejection, capped at `max`,
/// spread by `jitter`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ejection {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Ejection {
    /// The policy of a config.
    pub fn new(config: &EjectionConfig) -> Self {
        Self {
            base: config.base,
            max: config.max.max(config.base),
            jitter: config.jitter.clamp(0.0, 1.0),
        }
    }

    /// Time out of rotation for the `nth` ejection (1-based), given a uniform sample
    /// `unit` in `[0, 1)` that places it within the jitter band.
    ///
    /// The result never exceeds `max` and never goes below zero; with `jitter` j the
    /// un-jittered time `t` becomes a value in `[t * (1 - j), t]`, so jitter only shortens
    /// and the cap holds.
    pub fn duration(&self, nth: u32, unit: f64) -> Duration {
        let exp = nth.saturating_sub(1).min(31);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        crate::timing::shorten(raw, self.jitter, unit)
    }

    /// How long a member must stay healthy before its ejection count is forgiven.
    pub fn forgiveness(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: u64, max: u64, jitter: f64) -> Ejection {
        Ejection::new(&EjectionConfig {
            base: Duration::from_secs(base),
            max: Duration::from_secs(max),
            jitter,
        })
    }

    #[test]
    fn grows_and_caps() {
        let p = policy(1, 10, 0.0);
        let secs: Vec<u64> = (1..=6).map(|n| p.duration(n, 0.5).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(p.duration(u32::MAX, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn jitter_only_shortens() {
        let p = policy(4, 100, 0.25);
        assert_eq!(p.duration(1, 0.0), Duration::from_secs(4));
        assert_eq!(p.duration(1, 1.0), Duration::from_secs(3));
        assert_eq!(p.duration(1, f64::NAN), Duration::from_secs(4));
    }

    proptest::proptest! {
        #[test]
        fn never_above_max(base in 0u64..100, max in 0u64..1000, jitter in 0.0f64..=1.0,
                           nth in 0u32..100, unit in proptest::num::f64::ANY) {
            let p = policy(base, max, jitter);
            let d = p.duration(nth, unit);
            proptest::prop_assert!(d <= Duration::from_secs(max.max(base)));
        }
    }
}
