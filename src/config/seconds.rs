//! Durations written as (fractional) seconds, as in the seed's table.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        de::Error::invalid_value(
            de::Unexpected::Float(secs),
            &"a non-negative, finite number of seconds",
        )
    })
}
