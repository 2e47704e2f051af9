//! Errors of loading and checking a [`Config`](super::Config) and of parsing endpoints.
//!
//! A config error is read by a person fixing a file, often far from the code, so every
//! variant names *where* (the field path, as written in the file: `checks.active.timeout`,
//! `checks.active.req_headers[0]`, `endpoints[2]`) and *what* (the offending value). The
//! loaders never panic: any input gives `Ok` or one of these.

/// Why a configuration (or an endpoint list) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not well-formed JSON or TOML; `format` says which was expected.
    #[error("{format} syntax error: {message}")]
    Syntax {
        /// `"JSON"` or `"TOML"`.
        format: &'static str,
        /// The parser's own message, with its line and column.
        message: String,
    },
    /// A field has the wrong type, an unknown name or an unknown variant (for example
    /// `checks.active.healthy.successes: invalid value: integer 300, expected u8`).
    #[error("{path}: {message}")]
    Deserialize {
        /// Path of the field, `(top level)` for the document itself.
        path: String,
        /// What serde said about it, including the offending value when serde knows it.
        message: String,
    },
    /// A number is outside its allowed range
    /// (`checks.active.unhealthy.tcp_failures = 255 is out of range (0..=254)`).
    #[error("{path} = {value} is out of range ({range})")]
    OutOfRange {
        /// Path of the field.
        path: String,
        /// The offending value as written.
        value: String,
        /// The allowed range, as `0..=254` or a few words.
        range: String,
    },
    /// A value has the right type but is not acceptable (a header without a colon, an
    /// unknown gRPC code name, a duplicate endpoint, ...).
    #[error("{path} = {value} is invalid: {reason}")]
    Invalid {
        /// Path of the field.
        path: String,
        /// The offending value, quoted when it is a string.
        value: String,
        /// Why it is refused and, where there are few, what is accepted instead.
        reason: String,
    },
    /// [`parse_endpoints`](super::parse_endpoints) was given no endpoint at all.
    #[error("endpoints: the list is empty")]
    NoEndpoints,
}

impl ConfigError {
    /// Path of the offending field (`endpoints` for [`ConfigError::NoEndpoints`]), `None`
    /// for syntax errors, which are located by line and column instead.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Syntax { .. } => None,
            Self::Deserialize { path, .. }
            | Self::OutOfRange { path, .. }
            | Self::Invalid { path, .. } => Some(path),
            Self::NoEndpoints => Some("endpoints"),
        }
    }

    pub(crate) fn out_of_range(
        path: impl Into<String>,
        value: impl ToString,
        range: impl Into<String>,
    ) -> Self {
        Self::OutOfRange {
            path: path.into(),
            value: value.to_string(),
            range: range.into(),
        }
    }

    pub(crate) fn invalid(
        path: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
