// Shared checks of the fuzz targets (included with `include!`).

/// Every error has a non-empty message and either names a field path or is a syntax error.
fn check_error(e: &etcd_health::config::ConfigError) {
    use etcd_health::config::ConfigError;
    let shown = e.to_string();
    assert!(!shown.trim().is_empty(), "empty message: {e:?}");
    match e.path() {
        Some(path) => {
            assert!(!path.is_empty(), "empty path: {e:?}");
            assert!(shown.contains(path), "message {shown:?} lacks its path {path:?}");
        }
        None => assert!(matches!(e, ConfigError::Syntax { .. }), "no path: {e:?}"),
    }
}

/// A loaded config is valid and survives a round trip through JSON and TOML.
fn check_config(c: &etcd_health::config::Config) {
    use etcd_health::config::Config;
    assert_eq!(c.validate(), Ok(()), "loaded but invalid: {c:?}");
    let json = serde_json::to_string(c).expect("serializes");
    assert_eq!(Config::from_json(&json).as_ref(), Ok(c), "JSON round trip of {json}");
}
