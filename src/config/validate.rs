//! Checking a [`Config`] beyond what its types say.
//!
//! Types alone let through configs that would misbehave at run time: a threshold of 255
//! (lua-resty-healthcheck keeps counters in a byte and reserves 255), a zero probe timeout, a
//! status code of 42, a header line without a colon, a gRPC code name with a typo that would
//! never match. The loaders call [`Config::validate`]; call it yourself on a config built in
//! code. The first problem found is returned, with its field path and value.

use std::time::Duration;

use tonic::Code;

use super::codes::{grpc_code_from_name, GRPC_CODES};
use super::probe_path::redact_http_path;
use super::{
    ActiveChecks, ActiveHealthy, ActiveUnhealthy, Config, ConfigError, DiscoveryConfig,
    EjectionConfig, FailureConfig, HangConfig, HedgeConfig, KeepAliveConfig, LeaderConfig,
    PassiveChecks, PassiveHealthy, PassiveUnhealthy, RetryConfig, SrvConfig, TlsConfig,
};

/// Largest health threshold (`successes`, `http_failures`, `tcp_failures`, `timeouts`), as in
/// lua-resty-healthcheck.
pub const MAX_THRESHOLD: u8 = 254;

/// Longest accepted duration, in seconds (365 days): longer ones are surely mistakes, and
/// refusing them keeps timer arithmetic far from overflow.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 60 * 60;

/// The shortest `tls.reload_interval` besides 0 (off): checking three files' metadata more
/// often buys nothing for certificates renewed every few weeks.
const MIN_TLS_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Most attempts of one request `retry.max_attempts` may ask for.
pub const MAX_ATTEMPTS: u8 = u8::MAX;

/// Largest `retry.extra_ratio`: with [`MAX_ATTEMPTS`] attempts a request can add no more than
/// this many extra requests per request, so anything above would mean "no budget".
pub const MAX_EXTRA_RATIO: f64 = 254.0;

impl Config {
    /// Checks every rule the types cannot express, returning the first problem found.
    ///
    /// Rules: thresholds in `0..=254`; durations at most a year;
    /// `checks.active.timeout` above 0; `checks.active.concurrency` at least 1; HTTP statuses
    /// in `100..=599`; `http_path` an absolute path; `host` empty or a valid authority;
    /// `req_headers` entries of the form `Name: value`; `sensitive_headers` header names;
    /// `failures.codes` known gRPC code
    /// names; `failures.messages` non-empty; `ejection.jitter` in `[0, 1]` and
    /// `ejection.base <= ejection.max`; `retry.max_attempts` at least 1 and
    /// `retry.backoff <= retry.max_backoff`; `retry.extra_ratio` in `0..=254` (NaN
    /// refused); `hedge.max_range_limit` at most `i64::MAX`; `hedge.max_attempts` at least 1 and
    /// `hedge.min_delay <= hedge.max_delay`; `hang.threshold` in `0..=254`;
    /// `leader.election_interval` and `leader.timeout` above 0; `discovery.timeout` above 0;
    /// `discovery.srv` only with the `dns-srv` feature, its `domain` a DNS name, its
    /// `service_name` letters, digits and `-`, its `name_server` an `ip:port`;
    /// `keep_alive.interval` 0 or at least 5 s, `keep_alive.timeout` above 0;
    /// `shm_name`, if set, non-empty; `tls.cert_file`
    /// and `tls.key_file` both or neither, no empty path, `tls.domain_name` a DNS name or IP.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.shm_name {
            if name.is_empty() {
                return Err(ConfigError::invalid(
                    "shm_name",
                    "\"\"",
                    "must not be empty (leave it out to keep health state private)",
                ));
            }
        }
        self.checks.active.validate("checks.active")?;
        self.checks.passive.validate("checks.passive")?;
        self.failures.validate("failures")?;
        self.ejection.validate("ejection")?;
        self.retry.validate("retry")?;
        self.hedge.validate("hedge")?;
        self.hang.validate("hang")?;
        self.leader.validate("leader")?;
        self.discovery.validate("discovery")?;
        self.keep_alive.validate("keep_alive")?;
        self.tls.validate("tls")
    }
}

impl ActiveChecks {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.concurrency < 1 {
            return Err(ConfigError::out_of_range(
                format!("{at}.concurrency"),
                self.concurrency,
                "1 or more",
            ));
        }
        duration(&format!("{at}.timeout"), self.timeout)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::out_of_range(
                format!("{at}.timeout"),
                0,
                "greater than 0 seconds",
            ));
        }
        let path = format!("{at}.http_path");
        if !self.http_path.starts_with('/') {
            return Err(ConfigError::invalid(
                path,
                format!("{:?}", redact_http_path(&self.http_path)),
                "must start with `/`",
            ));
        }
        if let Err(e) = self.http_path.parse::<http::uri::PathAndQuery>() {
            return Err(ConfigError::invalid(
                path,
                format!("{:?}", redact_http_path(&self.http_path)),
                format!("not a valid URI path: {e}"),
            ));
        }
        if !self.host.is_empty() {
            if let Err(e) = self.host.parse::<http::uri::Authority>() {
                return Err(ConfigError::invalid(
                    format!("{at}.host"),
                    format!("{:?}", self.host),
                    format!("not a valid host[:port] (leave it empty for the member's): {e}"),
                ));
            }
        }
        self.parsed_req_headers_at(at)?;
        self.validate_sensitive_headers(at)?;
        self.healthy.validate(&format!("{at}.healthy"))?;
        self.unhealthy.validate(&format!("{at}.unhealthy"))
    }
}

impl ActiveHealthy {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        statuses(&format!("{at}.http_statuses"), &self.http_statuses)?;
        duration(&format!("{at}.interval"), self.interval)?;
        threshold(&format!("{at}.successes"), self.successes)
    }
}

impl ActiveUnhealthy {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        statuses(&format!("{at}.http_statuses"), &self.http_statuses)?;
        duration(&format!("{at}.interval"), self.interval)?;
        threshold(&format!("{at}.http_failures"), self.http_failures)?;
        threshold(&format!("{at}.tcp_failures"), self.tcp_failures)?;
        threshold(&format!("{at}.timeouts"), self.timeouts)
    }
}

impl PassiveChecks {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        self.healthy.validate(&format!("{at}.healthy"))?;
        self.unhealthy.validate(&format!("{at}.unhealthy"))
    }
}

impl PassiveHealthy {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        statuses(&format!("{at}.http_statuses"), &self.http_statuses)?;
        threshold(&format!("{at}.successes"), self.successes)
    }
}

impl PassiveUnhealthy {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        statuses(&format!("{at}.http_statuses"), &self.http_statuses)?;
        threshold(&format!("{at}.http_failures"), self.http_failures)?;
        threshold(&format!("{at}.tcp_failures"), self.tcp_failures)?;
        threshold(&format!("{at}.timeouts"), self.timeouts)
    }
}

impl FailureConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        for (i, name) in self.codes.iter().enumerate() {
            if grpc_code_from_name(name).is_none() {
                let known: Vec<&str> = GRPC_CODES.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError::invalid(
                    format!("{at}.codes[{i}]"),
                    format!("{name:?}"),
                    format!("not a gRPC code name; expected one of {}", known.join(", ")),
                ));
            }
        }
        for (i, message) in self.messages.iter().enumerate() {
            if message.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.messages[{i}]"),
                    "\"\"",
                    "must not be empty (it would match every error)",
                ));
            }
        }
        Ok(())
    }

    /// The codes of [`FailureConfig::codes`], in order, without duplicates; unknown names
    /// (which [`Config::validate`] refuses) are skipped.
    pub fn parsed_codes(&self) -> Vec<Code> {
        let mut out = Vec::with_capacity(self.codes.len());
        for code in self.codes.iter().filter_map(|n| grpc_code_from_name(n)) {
            if !out.contains(&code) {
                out.push(code);
            }
        }
        out
    }
}

impl EjectionConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        duration(&format!("{at}.base"), self.base)?;
        duration(&format!("{at}.max"), self.max)?;
        if self.base > self.max {
            return Err(ConfigError::invalid(
                format!("{at}.base"),
                self.base.as_secs_f64(),
                format!(
                    "greater than {at}.max = {}; expected base <= max",
                    self.max.as_secs_f64()
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::out_of_range(
                format!("{at}.jitter"),
                self.jitter,
                "0..=1",
            ));
        }
        Ok(())
    }
}

fn threshold(path: &str, value: u8) -> Result<(), ConfigError> {
    if value > MAX_THRESHOLD {
        return Err(ConfigError::out_of_range(
            path,
            value,
            format!("0..={MAX_THRESHOLD}"),
        ));
    }
    Ok(())
}

fn statuses(path: &str, statuses: &[u16]) -> Result<(), ConfigError> {
    for (i, status) in statuses.iter().enumerate() {
        if !(100..=599).contains(status) {
            return Err(ConfigError::out_of_range(
                format!("{path}[{i}]"),
                status,
                "100..=599",
            ));
        }
    }
    Ok(())
}

impl KeepAliveConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        duration(&format!("{at}.interval"), self.interval)?;
        duration(&format!("{at}.timeout"), self.timeout)?;
        if self.interval.is_zero() {
            return Ok(());
        }
        if self.interval < Self::MIN_INTERVAL {
            return Err(ConfigError::out_of_range(
                format!("{at}.interval"),
                self.interval.as_secs_f64(),
                "0 (off) or at least 5: etcd answers more frequent pings with GOAWAY too_many_pings",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::out_of_range(
                format!("{at}.timeout"),
                0,
                "above 0 while keep_alive.interval is set",
            ));
        }
        Ok(())
    }
}

impl RetryConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::out_of_range(
                format!("{at}.max_attempts"),
                self.max_attempts,
                format!("1..={MAX_ATTEMPTS}"),
            ));
        }
        duration(&format!("{at}.backoff"), self.backoff)?;
        duration(&format!("{at}.max_backoff"), self.max_backoff)?;
        duration(&format!("{at}.budget"), self.budget)?;
        duration(
            &format!("{at}.read_attempt_timeout"),
            self.read_attempt_timeout,
        )?;
        if !(0.0..=MAX_EXTRA_RATIO).contains(&self.extra_ratio) {
            return Err(ConfigError::out_of_range(
                format!("{at}.extra_ratio"),
                self.extra_ratio,
                format!("0..={MAX_EXTRA_RATIO} (a fraction of requests: 0.1 = 10 %)"),
            ));
        }
        if self.backoff > self.max_backoff {
            return Err(ConfigError::invalid(
                format!("{at}.backoff"),
                self.backoff.as_secs_f64(),
                format!(
                    "greater than {at}.max_backoff = {}; expected backoff <= max_backoff",
                    self.max_backoff.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }
}

impl HedgeConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.max_attempts < 1 {
            return Err(ConfigError::out_of_range(
                format!("{at}.max_attempts"),
                self.max_attempts,
                "1 or more (1 turns hedging off)",
            ));
        }
        if self.max_range_limit > i64::MAX as u64 {
            return Err(ConfigError::out_of_range(
                format!("{at}.max_range_limit"),
                self.max_range_limit,
                format!("0..={} (etcd's `limit` is an int64)", i64::MAX),
            ));
        }
        duration(&format!("{at}.min_delay"), self.min_delay)?;
        duration(&format!("{at}.max_delay"), self.max_delay)?;
        if self.min_delay > self.max_delay {
            return Err(ConfigError::invalid(
                format!("{at}.min_delay"),
                self.min_delay.as_secs_f64(),
                format!(
                    "greater than {at}.max_delay = {}; expected min_delay <= max_delay",
                    self.max_delay.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }
}

impl HangConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        threshold(&format!("{at}.threshold"), self.threshold)?;
        duration(&format!("{at}.after"), self.after)
    }
}

impl LeaderConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        duration(&format!("{at}.interval"), self.interval)?;
        for (field, value) in [
            ("election_interval", self.election_interval),
            ("timeout", self.timeout),
        ] {
            duration(&format!("{at}.{field}"), value)?;
            if value.is_zero() {
                return Err(ConfigError::out_of_range(
                    format!("{at}.{field}"),
                    0,
                    "greater than 0 seconds",
                ));
            }
        }
        Ok(())
    }
}

impl DiscoveryConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        duration(&format!("{at}.interval"), self.interval)?;
        duration(&format!("{at}.dns_interval"), self.dns_interval)?;
        duration(&format!("{at}.timeout"), self.timeout)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::out_of_range(
                format!("{at}.timeout"),
                0,
                "greater than 0 seconds",
            ));
        }
        match &self.srv {
            Some(srv) => srv.validate(&format!("{at}.srv")),
            None => Ok(()),
        }
    }
}

impl SrvConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if cfg!(not(feature = "dns-srv")) {
            return Err(ConfigError::invalid(
                at,
                format!("{{ domain = {:?} }}", self.domain),
                "SRV discovery needs the `dns-srv` cargo feature of etcd-health",
            ));
        }
        let domain = self.domain.strip_suffix('.').unwrap_or(&self.domain);
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
            return Err(ConfigError::invalid(
                format!("{at}.domain"),
                format!("{:?}", self.domain),
                "expected a DNS domain such as `etcd.example.com` (the records asked are \
                 `_etcd-client-ssl._tcp.<domain>` and `_etcd-client._tcp.<domain>`)",
            ));
        }
        // The longest service label, `_etcd-client-ssl-<name>`, must stay one DNS label.
        let longest = "_etcd-client-ssl-".len() + self.service_name.len();
        if !self.service_name.is_empty()
            && (longest > 63
                || !self
                    .service_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(ConfigError::invalid(
                format!("{at}.service_name"),
                format!("{:?}", self.service_name),
                "expected letters, digits and `-`, at most 46 of them (it ends the DNS label \
                 `_etcd-client-ssl-<service_name>`); empty for the plain names",
            ));
        }
        duration(&format!("{at}.interval"), self.interval)?;
        if let Some(server) = &self.name_server {
            if server.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::invalid(
                    format!("{at}.name_server"),
                    format!("{server:?}"),
                    "expected an `ip:port` such as `127.0.0.1:8600` or `[::1]:53` (leave it \
                     out for the system's resolvers)",
                ));
            }
        }
        Ok(())
    }
}

impl TlsConfig {
    /// The shape only; the files are read when the health checker is built.
    pub(crate) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError::invalid(
                    format!("{at}.{field}"),
                    "\"\"",
                    "must not be empty (leave it out instead)",
                ));
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), None) => {
                return Err(ConfigError::invalid(
                    format!("{at}.cert_file"),
                    format!("{:?}", cert.display().to_string()),
                    format!("a client certificate needs its private key: set {at}.key_file too"),
                ))
            }
            (None, Some(key)) => {
                return Err(ConfigError::invalid(
                    format!("{at}.key_file"),
                    format!("{:?}", key.display().to_string()),
                    format!("a private key needs its certificate: set {at}.cert_file too"),
                ))
            }
            _ => {}
        }
        let every = self.reload_interval;
        if !every.is_zero() && every < MIN_TLS_RELOAD_INTERVAL {
            return Err(ConfigError::out_of_range(
                format!("{at}.reload_interval"),
                every.as_secs_f64(),
                format!(
                    "0 (off) or {}..={MAX_DURATION_SECS} seconds",
                    MIN_TLS_RELOAD_INTERVAL.as_secs_f64()
                ),
            ));
        }
        duration(&format!("{at}.reload_interval"), every)?;
        if let Some(name) = &self.domain_name {
            let ok = !name.is_empty()
                && (name.parse::<std::net::IpAddr>().is_ok()
                    || name.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                    }));
            if !ok {
                return Err(ConfigError::invalid(
                    format!("{at}.domain_name"),
                    format!("{name:?}"),
                    "expected a DNS name or an IP address",
                ));
            }
        }
        Ok(())
    }
}

fn duration(path: &str, d: Duration) -> Result<(), ConfigError> {
    if d > Duration::from_secs(MAX_DURATION_SECS) {
        return Err(ConfigError::out_of_range(
            path,
            d.as_secs_f64(),
            format!("0..={MAX_DURATION_SECS} seconds"),
        ));
    }
    Ok(())
}
