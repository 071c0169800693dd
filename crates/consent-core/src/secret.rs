//! Keys in the plugin configuration: written inline, or named by an environment variable of
//! the Wasm VM (`{"env": "NAME"}`, which Envoy fills from `vm_config.environment_variables`:
//! Istio's `vmConfig.env`, Envoy Gateway's `env.hostKeys`), so that a key need not sit in a
//! manifest. The core reads no environment itself: hosts hand [`compile_config_with_env`]
//! a lookup (the filter passes `std::env::var`).
//!
//! Errors name the field and the variable, never a value; a key's `Debug` prints no value.
//!
//! [`compile_config_with_env`]: crate::config::compile_config_with_env

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ConfigError;

/// An environment lookup: the value of a variable, `None` when it is not set.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The lookup of a host without an environment: every variable is unset.
pub fn no_env(_: &str) -> Option<String> {
    None
}

/// A key as the configuration writes it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KeyDoc {
    /// The key itself, in the configuration (works; the filter logs a warning naming the
    /// field).
    Inline(String),
    /// The name of an environment variable of the Wasm VM holding the key.
    Env {
        /// The variable's name (letters, digits and `_`).
        env: String,
    },
}

impl std::fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        match self {
            KeyDoc::Inline(_) => f.write_str("Inline(<key>)"),
            KeyDoc::Env { env } => write!(f, "Env({env})"),
        }
    }
}

impl From<&str> for KeyDoc {
    fn from(key: &str) -> Self {
        KeyDoc::Inline(key.to_string())
    }
}

impl KeyDoc {
    /// Whether the key is written in the configuration itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, KeyDoc::Inline(_))
    }

    /// The key's text: inline, or the variable's value through `env`. `field` is the
    /// configuration path, for errors.
    pub fn resolve(&self, field: &str, env: EnvLookup<'_>) -> Result<String, ConfigError> {
        match self {
            KeyDoc::Inline(key) => Ok(key.clone()),
            KeyDoc::Env { env: name } => {
                if !valid_env_name(name) {
                    return Err(ConfigError::invalid(
                        field,
                        "`env` must name an environment variable (letters, digits and `_`)",
                    ));
                }
                env(name).ok_or_else(|| {
                    ConfigError::invalid(
                        field,
                        format!(
                            "environment variable `{name}` is not set in the Wasm VM \
                             (vm_config.environment_variables)"
                        ),
                    )
                })
            }
        }
    }

    /// [`KeyDoc::resolve`], refusing keys shorter than `min_bytes`.
    pub fn resolve_min(
        &self,
        field: &str,
        min_bytes: usize,
        env: EnvLookup<'_>,
    ) -> Result<Vec<u8>, ConfigError> {
        let key = self.resolve(field, env)?;
        if key.len() >= min_bytes {
            return Ok(key.into_bytes());
        }
        Err(ConfigError::invalid(
            field,
            match self {
                KeyDoc::Inline(_) => format!("must be at least {min_bytes} bytes"),
                KeyDoc::Env { env } => format!(
                    "environment variable `{env}` holds a key shorter than {min_bytes} bytes"
                ),
            },
        ))
    }
}

/// A variable name the error messages may repeat: 1-128 letters, digits and `_`.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl<'de> Deserialize<'de> for KeyDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyDoc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key (a string) or {\"env\": \"VARIABLE\"}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyDoc, E> {
        Ok(KeyDoc::Inline(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyDoc, A::Error> {
        let mut env = None;
        while let Some(name) = map.next_key::<String>()? {
            if name != "env" {
                return Err(de::Error::custom(
                    "unknown field: a key is a string or {\"env\": \"VARIABLE\"}",
                ));
            }
            if env.is_some() {
                return Err(de::Error::custom("`env` given twice"));
            }
            env = Some(map.next_value::<String>()?);
        }
        env.map(|env| KeyDoc::Env { env })
            .ok_or_else(|| de::Error::custom("expected {\"env\": \"VARIABLE\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn env(name: &str) -> Option<String> {
        match name {
            "LONG" => Some("0123456789abcdef-long".to_string()),
            "SHORT" => Some("tiny".to_string()),
            _ => None,
        }
    }

    fn parse(json: &str) -> Result<KeyDoc, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_key_is_a_string_or_an_env_reference() {
        assert_eq!(parse("\"abc\""), Ok(KeyDoc::Inline("abc".into())));
        assert_eq!(
            parse(r#"{"env": "LONG"}"#),
            Ok(KeyDoc::Env { env: "LONG".into() })
        );
        for bad in [r#"{"ENV": "LONG"}"#, r#"{}"#, "12", r#"{"env": 3}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolving_names_the_field_and_the_variable_never_the_value() {
        let long = KeyDoc::Env { env: "LONG".into() };
        assert_eq!(
            long.resolve_min("x.key", 16, &env),
            Ok(b"0123456789abcdef-long".to_vec())
        );
        let short = KeyDoc::Env {
            env: "SHORT".into(),
        };
        let e = short
            .resolve_min("x.key", 16, &env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.key: ") && e.contains("`SHORT`"), "{e}");
        assert!(!e.contains("tiny"), "{e}");
        let unset = KeyDoc::Env {
            env: "UNSET".into(),
        };
        let e = unset.resolve("x.key", &env).unwrap_err().to_string();
        assert!(e.contains("`UNSET` is not set"), "{e}");
        let e = KeyDoc::Env { env: "A B".into() }
            .resolve("x.key", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must name an environment variable"), "{e}");
        let e = KeyDoc::from("tiny")
            .resolve_min("x.key", 16, &env)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("tiny"), "{e}");
        assert_eq!(format!("{:?}", KeyDoc::from("secret")), "Inline(<key>)");
    }
}
