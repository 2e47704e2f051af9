#![no_main]
//! The balancer's `grpc-timeout` parser and the passive classification of gRPC statuses, on
//! arbitrary header values (also as `grpc-status-details-bin`), and the deadline instant the
//! balancer computes from the parsed value: never a panic, in our code or in
//! tonic's status parser after our sanitizing; a parsed deadline agrees with the gRPC spec's
//! digits-and-unit form; the verdict of a status agrees with the configured lists.

use std::time::Duration;

use etcd_health::config::Config;
use etcd_health::fuzzing;
use etcd_health::observe::Outcome;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = match data.split_first() {
        Some((s, r)) => (*s, r),
        None => return,
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(rest) {
        headers.insert("grpc-timeout", value.clone());
        if let Some(d) = fuzzing::grpc_timeout(&headers) {
            let text = value.to_str().expect("parsed, so ASCII");
            let (digits, unit) = text.split_at(text.len() - 1);
            // The gRPC spec's `TimeoutValue`: 1 to 8 digits, nothing else (a longer one
            // overflowed the deadline's instant).
            assert!((1..=8).contains(&digits.len()), "accepted {text:?}");
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "accepted {text:?}");
            let n: u64 = digits.parse().expect("parsed, so a number");
            let expected = match unit {
                "H" => Duration::from_secs(n.saturating_mul(3600)),
                "M" => Duration::from_secs(n.saturating_mul(60)),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                other => panic!("accepted unit {other:?}"),
            };
            assert_eq!(d, expected);
        }
        // What the balancer does with it next: a deadline instant, never a panic.
        let _ = fuzzing::deadline_instant(&headers, Duration::from_millis(u64::from(selector)));
        // The same bytes as a gRPC status: code from the selector, message from the value.
        let mut status = HeaderMap::new();
        status.insert("grpc-status", HeaderValue::from(i32::from(selector) % 20 - 2));
        status.insert("grpc-message", value.clone());
        if selector & 0x80 != 0 {
            // Details tonic may fail to decode (its parser panics on those): sanitized first.
            status.insert("grpc-status-details-bin", value);
        }
        let config = Config::default();
        for path in ["/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/v3lockpb.Lock/Lock"] {
            let verdict = fuzzing::classify(&config, path, &status);
            assert!(verdict.is_some(), "grpc-status present: {status:?}");
            // Unavailable (14) is listed in `failures.codes`, whatever the message says (the
            // passive checks read the code themselves, lossily decoding the message).
            if selector % 20 == 16 {
                assert_eq!(verdict, Some(Some(Outcome::Failure)));
            }
        }
    }
    let http_status = u16::from_be_bytes([selector, rest.first().copied().unwrap_or(0)]);
    let verdict = fuzzing::classify_http(&Config::default(), http_status);
    match http_status {
        500 => assert_eq!(verdict, Some(Outcome::Failure)),
        200 | 201 => assert_eq!(verdict, Some(Outcome::Success)),
        _ => assert_eq!(verdict, None),
    }
});
