#![no_main]
//! Numbers from the wire that end up added to instants or incremented: a caller's
//! `grpc-timeout` turned into the balancer's deadline, lease TTLs from a member turned into
//! renewal and expiry times, watch ids and revisions from a member (`id + 1`, `revision + 1`).
//! None may panic, whatever the value (before these were saturated or refused, a
//! `grpc-timeout` of more than 8 digits, a TTL near `i64::MAX` or a watch id of `i64::MAX`
//! did).

use std::time::Duration;

use etcd_health::fuzzing;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The next `N` bytes, zero-padded.
fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A grpc-timeout value of up to 24 bytes: digits and a unit, mostly.
    let [len] = take::<1>(&mut rest);
    let len = usize::from(len % 25).min(rest.len());
    let (value, after) = rest.split_at(len);
    rest = after;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert("grpc-timeout", v);
    }
    let hedge_after = Duration::from_nanos(u64::from_le_bytes(take::<8>(&mut rest)));
    let now = tokio::time::Instant::now();
    if let Some(end) = fuzzing::deadline_instant(&headers, hedge_after) {
        assert!(end >= now);
    }

    // Lease answers: (TTL, gap) pairs, and a caller's granted TTL.
    let granted = u64::from_le_bytes(take::<8>(&mut rest));
    let granted = (granted % 3 != 0).then(|| Duration::from_secs(granted));
    let mut answers = Vec::new();
    let mut steps = Vec::new();
    while rest.len() >= 17 {
        let op = take::<1>(&mut rest)[0];
        let a = i64::from_le_bytes(take::<8>(&mut rest));
        let b = i64::from_le_bytes(take::<8>(&mut rest));
        answers.push((a, b as u64));
        steps.push((op, a, b));
    }
    fuzzing::lease_answers(granted, &answers);
    fuzzing::watch_book(&steps);
});
