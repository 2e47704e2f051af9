//! Durations written as (fractional) seconds, as in the seed's table (`interval = 0.5`).
//!
//! The seed writes every duration as a plain number of seconds, so we do too, rather than
//! serde's `{secs, nanos}` form. Bad numbers are rejected here, at load time, with the value in
//! the message; the loader adds the field path in front.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    from_secs(secs).map_err(de::Error::custom)
}

/// Converts a number of seconds, explaining a refusal with the offending value.
pub(crate) fn from_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() || secs.is_infinite() {
        return Err(format!(
            "invalid value: {secs} is not finite, expected a non-negative, finite number of seconds"
        ));
    }
    if secs < 0.0 {
        return Err(format!(
            "invalid value: {secs} is negative, expected a non-negative, finite number of seconds"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        format!(
            "invalid value: {secs} is too large, expected a non-negative, finite number of seconds"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_integers() {
        assert_eq!(from_secs(0.5), Ok(Duration::from_millis(500)));
        assert_eq!(from_secs(0.0), Ok(Duration::ZERO));
        assert_eq!(from_secs(5.0), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn refusals_name_the_value() {
        assert!(from_secs(-1.5).unwrap_err().contains("-1.5 is negative"));
        assert!(from_secs(f64::NAN)
            .unwrap_err()
            .contains("NaN is not finite"));
        assert!(from_secs(f64::INFINITY)
            .unwrap_err()
            .contains("inf is not finite"));
        assert!(from_secs(1e300).unwrap_err().contains("too large"));
    }
}
