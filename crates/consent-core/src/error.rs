//! Configuration errors: one message that names the field and never a personal-data value.

use std::fmt;

/// Why a plugin configuration, policy or snapshot was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The document is not valid JSON or does not match the schema.
    Parse {
        /// Path of the offending field, e.g. `consents.records[2].stop_use`.
        path: String,
        /// What is wrong, with any input value removed.
        message: String,
    },
    /// The document parses but breaks a rule of the schema.
    Invalid {
        /// Path of the offending field.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An error for a field that parsed but is not acceptable.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The path of the field the error is about.
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Parse { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// Builds a parse error from a serde error, prefixing the path with `prefix` and
    /// dropping any value the input held.
    pub fn from_serde(prefix: &str, err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let inner_path = err.path().to_string();
        let inner = err.into_inner();
        let path = join_path(prefix, &inner_path);
        let message = without_values(&inner.to_string());
        ConfigError::Parse { path, message }
    }
}

fn join_path(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner == "." || inner.is_empty()) {
        (true, true) => "(document)".to_string(),
        (true, false) => inner.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// Removes the offending value from a serde message ("invalid type: string \"x\", expected ...")
/// so that a config error never repeats personal data from the input.
fn without_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let after = start + marker.len();
            let rest = message.get(after..).unwrap_or("");
            let kind = rest.split_whitespace().next().unwrap_or("value");
            let kind = kind.trim_end_matches(',');
            let tail = rest
                .find(", expected")
                .and_then(|i| rest.get(i..))
                .unwrap_or("");
            let head = message.get(..after).unwrap_or("");
            return format!("{head}{kind}{tail}");
        }
    }
    message.to_string()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Parse { path, message } => write!(f, "{path}: {message}"),
            ConfigError::Invalid { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn serde_messages_lose_the_offending_value() {
        assert_eq!(
            without_values("invalid type: string \"u-1001 secret\", expected a boolean at line 1"),
            "invalid type: string, expected a boolean at line 1"
        );
        assert_eq!(
            without_values("invalid type: integer `4242`, expected a string"),
            "invalid type: integer, expected a string"
        );
    }

    #[test]
    fn messages_without_values_are_kept() {
        let msg = "unknown field `polcy`, expected one of `policy`";
        assert_eq!(without_values(msg), msg);
    }

    #[test]
    fn display_names_the_field_first() {
        let err = ConfigError::invalid("policy.purposes[2].basis", "unknown basis");
        assert_eq!(err.to_string(), "policy.purposes[2].basis: unknown basis");
    }
}
