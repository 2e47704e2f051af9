#![no_main]
//! `Config::from_json` (and `from_value`) on arbitrary bytes: never a panic; every error has a
//! message and a path (or is a syntax error); anything accepted is valid and round-trips.

use etcd_health::config::Config;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_json(&text) {
        Ok(c) => check_config(&c),
        Err(e) => check_error(&e),
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        match Config::from_value(value) {
            Ok(c) => check_config(&c),
            Err(e) => check_error(&e),
        }
    }
});
