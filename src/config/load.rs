//! Loading a [`Config`] from JSON, TOML or an already-parsed JSON value.
//!
//! Every loader goes through `serde_path_to_error`, so a type error names the field path
//! (`checks.active.healthy.successes: invalid value: integer 300, expected u8`), and then
//! through [`Config::validate`], so a loaded config is always one the stack can run with.
//! The seed's `cluster_healthcheck` table is accepted bare (`{"shm_name": .., "checks": ..}`)
//! or wrapped in a one-key `{"cluster_healthcheck": {..}}` document; in the wrapped form
//! error paths start with `cluster_healthcheck.`.

use serde::de::DeserializeOwned;

use super::{Config, ConfigError};

/// The key the seed nests the table under in `resty.etcd.new({...})`.
const WRAPPER_KEY: &str = "cluster_healthcheck";

/// How error paths name the document itself.
const TOP_LEVEL: &str = "(top level)";

impl Config {
    /// Loads and validates a config written as JSON.
    ///
    /// Fields left out keep their [`Config::default`] values; unknown fields are refused.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })?;
        Self::from_value(value)
    }

    /// Loads and validates a config written as TOML (`[checks.active]`, `timeout = 1`, ...).
    ///
    /// Fields left out keep their [`Config::default`] values; unknown fields are refused.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let place = e.span().map_or_else(String::new, |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            ConfigError::Syntax {
                format: "TOML",
                message: format!("{}{place}", e.message().trim_end()),
            }
        })?;
        let wrapped = table.len() == 1 && table.contains_key(WRAPPER_KEY);
        let config = if wrapped {
            deserialize::<Wrapped, _>(table, |e| e.message().trim_end().to_owned())?.inner
        } else {
            deserialize::<Config, _>(table, |e| e.message().trim_end().to_owned())?
        };
        config.validated(wrapped)
    }

    /// Loads and validates a config from a JSON value, such as a part of a larger document.
    ///
    /// Fields left out keep their [`Config::default`] values; unknown fields are refused.
    pub fn from_value(value: serde_json::Value) -> Result<Self, ConfigError> {
        let kind = match &value {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Null => Some("null"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Array(_) => Some("an array"),
        };
        if let Some(kind) = kind {
            // Without this, serde would read an array positionally as the struct's fields.
            return Err(ConfigError::Deserialize {
                path: TOP_LEVEL.to_owned(),
                message: format!("expected a table of settings, found {kind}"),
            });
        }
        let wrapped = value
            .as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key(WRAPPER_KEY));
        let config = if wrapped {
            deserialize::<Wrapped, _>(value, |e| e.to_string())?.inner
        } else {
            deserialize::<Config, _>(value, |e| e.to_string())?
        };
        config.validated(wrapped)
    }

    fn validated(self, wrapped: bool) -> Result<Self, ConfigError> {
        match self.validate() {
            Ok(()) => Ok(self),
            Err(e) if wrapped => Err(e.prefixed(WRAPPER_KEY)),
            Err(e) => Err(e),
        }
    }
}

/// The seed's `{cluster_healthcheck = {...}}` form.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    #[serde(rename = "cluster_healthcheck")]
    inner: Config,
}

fn deserialize<'de, T, D>(de: D, message: impl Fn(&D::Error) -> String) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = dotted_path(e.path());
        ConfigError::Deserialize {
            path: if path.is_empty() {
                TOP_LEVEL.to_owned()
            } else {
                path
            },
            message: message(e.inner()),
        }
    })
}

/// A field path as written in a file: `checks.active.req_headers[0]`. A key that is not a
/// plain name (empty, or with dots, spaces, quotes, control characters) is shown quoted,
/// `checks[""]` or `checks["a.b"]`, so the path is never empty and never ambiguous.
fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let plain = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !plain {
                    out.push_str(&format!("[{key:?}]"));
                } else {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

impl ConfigError {
    /// Puts `prefix.` in front of the path of a validation error.
    fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::OutOfRange { path, value, range } => Self::OutOfRange {
                path: format!("{prefix}.{path}"),
                value,
                range,
            },
            Self::Invalid {
                path,
                value,
                reason,
            } => Self::Invalid {
                path: format!("{prefix}.{path}"),
                value,
                reason,
            },
            Self::Deserialize { path, message } => Self::Deserialize {
                path: format!("{prefix}.{path}"),
                message,
            },
            other => other,
        }
    }
}
