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

/// Maps up to this many entries are searched entry by entry (see [`find`]).
const SCAN_UP_TO: usize = 8;

/// The first value of `name` in `headers`, as `HeaderMap::get` would give it.
///
/// Why not `get`: it hashes the name on every call, and the few names read on every request and
/// answer (`grpc-status`, `grpc-timeout`, `grpc-status-details-bin`) are custom ones, hashed byte
/// by byte. A request's head and an answer's trailers hold a handful of entries, mostly standard
/// names, which compare unequal to a custom one at once: walking them costs a fraction of the
/// hash (the profile of the happy path had hashing at 6 % of what the stack adds). A larger map
/// is looked up as usual.
pub(crate) fn find<'a>(
    headers: &'a http::HeaderMap,
    name: &HeaderName,
) -> Option<&'a http::HeaderValue> {
    if headers.len() > SCAN_UP_TO {
        return headers.get(name);
    }
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// The most digits a `grpc-timeout` value may have (the gRPC spec's `TimeoutValue`).
const TIMEOUT_DIGITS: usize = 8;

/// The caller's deadline from a request's `grpc-timeout` header: `None` without one, and for
/// one that breaks the spec's form (`1*8DIGIT` and a unit of `H M S m u n`), as tonic's own
/// server treats it. More than 8 digits is refused rather than read: such a value (up to
/// `u64::MAX` hours) would overflow the instant the deadline is added to.
pub(crate) fn timeout(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;

    let raw = find(headers, &TIMEOUT)?;
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

    /// [`find`] gives what `HeaderMap::get` gives: the first value, in small and large maps,
    /// among standard and custom names.
    #[test]
    fn find_agrees_with_get() {
        let h = |s: &'static str| http::HeaderValue::from_static(s);
        for extra in [0usize, 3, 12] {
            let mut map = http::HeaderMap::new();
            map.insert(http::header::CONTENT_TYPE, h("application/grpc"));
            map.insert("te", h("trailers"));
            for i in 0..extra {
                map.insert(
                    HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("name"),
                    h("v"),
                );
            }
            map.append(STATUS, h("14"));
            map.append(STATUS, h("0"));
            for name in [STATUS, MESSAGE, TIMEOUT, http::header::CONTENT_TYPE] {
                assert_eq!(
                    find(&map, &name),
                    map.get(&name),
                    "{name} among {extra} more"
                );
            }
            assert_eq!(find(&map, &STATUS), Some(&h("14")), "the first value");
        }
    }

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
