//! The gRPC wire's header names, each made once as a [`HeaderName`].
//!
//! Why constants rather than `&str`: `HeaderMap::get("grpc-status")` parses and hashes the
//! name on every call, and these are read on every answer (the profile of the happy path
//! showed the parsing). One place also keeps one spelling.

use http::HeaderName;

/// The status code, in trailers (or in the headers of a trailers-only answer).
pub(crate) const STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The status message, percent-encoded.
pub(crate) const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The status details, base64 (tonic panics on a bad one: see [`sanitize`](fn@super::sanitize)).
pub(crate) const DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
/// The caller's deadline (`grpc-timeout: 300m`).
pub(crate) const TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The most digits a `grpc-timeout` value may have (the gRPC spec's `TimeoutValue`).
const TIMEOUT_DIGITS: usize = 8;

/// The caller's deadline from a request's `grpc-timeout` header: `None` without one, and for
/// one that breaks the spec's form (`1*8DIGIT` and a unit of `H M S m u n`), as tonic's own
/// server treats it. More than 8 digits is refused rather than read: such a value (up to
/// `u64::MAX` hours) would overflow the instant the deadline is added to.
pub(crate) fn timeout(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;

    let raw = headers.get(TIMEOUT)?;
    let Some((digits, unit)) = raw.to_str().ok().and_then(|v| {
        let split = v.len().checked_sub(1)?;
        v.is_char_boundary(split).then(|| v.split_at(split))
    }) else {
        tracing::debug!(value = ?raw, "grpc-timeout: not digits and a unit; ignored");
        return None;
    };
    if digits.is_empty()
        || digits.len() > TIMEOUT_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        tracing::debug!(
            value = ?raw,
            "grpc-timeout: the value must be 1 to {TIMEOUT_DIGITS} digits; ignored"
        );
        return None;
    }
    // At most 8 digits: no product below overflows.
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => {
            tracing::debug!(value = ?raw, "grpc-timeout: unknown unit; ignored");
            return None;
        }
    })
}

/// Writes a deadline as a `grpc-timeout` header (milliseconds, rounded up), formatted on the
/// stack: the header's own copy is the only allocation.
pub(crate) fn set_timeout(headers: &mut http::HeaderMap, timeout: std::time::Duration) {
    use std::io::Write;
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    let mut buf = [0u8; 12];
    let mut w = &mut buf[..];
    if write!(w, "{millis}m").is_ok() {
        let len = 12 - w.len();
        if let Ok(value) = http::HeaderValue::from_bytes(&buf[..len]) {
            headers.insert(TIMEOUT, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(v: &'static str) -> Option<Duration> {
        let mut h = http::HeaderMap::new();
        h.insert(TIMEOUT, http::HeaderValue::from_static(v));
        timeout(&h)
    }

    #[test]
    fn parses_the_spec_form() {
        assert_eq!(timeout(&http::HeaderMap::new()), None);
        for (v, d) in [
            ("300m", Duration::from_millis(300)),
            ("2S", Duration::from_secs(2)),
            ("1H", Duration::from_secs(3600)),
            ("5M", Duration::from_secs(300)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
            ("00000001S", Duration::from_secs(1)),
        ] {
            assert_eq!(parse(v), Some(d), "{v}");
        }
        for bad in ["", "m", "10", "10x", "-1S", "+1S", "1.5S", "1 S", "S1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// More than 8 digits broke `Instant + Duration` (a panic) once added to the clock.
    #[test]
    fn more_than_eight_digits_is_refused() {
        for bad in [
            "100000000H",
            "999999999999999999H",
            "18446744073709551615H",
            "99999999999999999999999S",
            "000000001m",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // The largest value accepted is still a valid distance from now.
        let now = tokio::time::Instant::now();
        let _ = now + parse("99999999H").expect("8 digits");
    }

    #[test]
    fn writes_grpc_timeout_in_milliseconds() {
        let mut h = http::HeaderMap::new();
        for (d, v) in [
            (Duration::from_millis(1500), "1500m"),
            (Duration::ZERO, "1m"),
            (Duration::from_secs(10_000_000), "99999999m"),
        ] {
            set_timeout(&mut h, d);
            assert_eq!(h.get("grpc-timeout").expect("set"), v);
        }
    }
}
