#![no_main]
//! `parse_endpoints` on arbitrary lists (the input split on newlines): never a panic; an
//! error names `endpoints` or `endpoints[i]`; an accepted endpoint has a host, a non-zero
//! port, and its display form and URI parse back to the same parts.

use etcd_health::config::{parse_endpoints, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let list: Vec<&str> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n').collect()
    };
    match parse_endpoints(&list) {
        Ok(eps) => {
            assert_eq!(eps.len(), list.len());
            for ep in &eps {
                assert!(!ep.host.is_empty() && ep.port != 0, "{ep:?}");
                let uri = ep.uri();
                assert_eq!(uri.port_u16(), Some(ep.port), "{ep:?} -> {uri}");
                assert!(uri.host().is_some(), "{ep:?} -> {uri}");
                let again = parse_endpoints(&[ep.to_string()]).expect("display form parses");
                assert_eq!(
                    (again[0].scheme, again[0].host.as_str(), again[0].port),
                    (ep.scheme, ep.host.as_str(), ep.port)
                );
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            let path = e.path().expect("endpoint errors have a path");
            assert!(path.starts_with("endpoints"), "{e:?}");
            assert!(shown.starts_with(path), "{shown}");
            if list.is_empty() {
                assert_eq!(e, ConfigError::NoEndpoints);
            }
        }
    }
});
