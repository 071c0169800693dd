//! Loads a plugin configuration for the commands that need one: a JSON file (or stdin),
//! or an Envoy YAML file holding exactly one plugin configuration (aliases of it allowed).
//! Compiled with `consent_core::compile_config_with_env`, exactly as the filter's
//! `on_configure` (keys written `{"env": "NAME"}` are read from this process's environment).

use consent_core::{compile_config_with_env, CompiledConfig};
use envoy_yaml::{plugin_configurations, FoundKind, TextLines};

use crate::input::Input;
use crate::input::{is_yaml, read_text};
use crate::report::Failure;

/// A compiled configuration and its JSON text.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration JSON as the filter receives it.
    pub json: String,
    /// The compiled configuration.
    pub config: CompiledConfig,
    /// Where it came from, for messages (`FILE` or `FILE line N`).
    pub origin: String,
}

/// Reads and compiles the configuration `input` names.
pub fn load(input: &Input) -> Result<LoadedConfig, Failure> {
    let text = read_text(input)?;
    let (json, origin, text_lines) = if is_yaml(input) {
        let found = plugin_configurations(&text)
            .map_err(|e| Failure::new(format!("{}: {e}", input.name())))?;
        let texts: Vec<(usize, TextLines, String)> = found
            .into_iter()
            .filter_map(|f| match f.kind {
                FoundKind::Text { lines, text, .. } => Some((f.line, lines, text)),
                _ => None,
            })
            .collect();
        match texts.as_slice() {
            [] => {
                return Err(Failure::new(format!(
                    "no plugin configuration (StringValue `value: |`) found in {}",
                    input.name()
                )))
            }
            [(line, lines, json)] => (
                json.clone(),
                format!("{} line {line}", input.name()),
                Some(*lines),
            ),
            many => {
                let lines: Vec<String> = many.iter().map(|(l, _, _)| l.to_string()).collect();
                return Err(Failure::new(format!(
                    "{} holds {} plugin configurations (lines {}); put the one to use in a JSON file",
                    input.name(),
                    many.len(),
                    lines.join(", ")
                )));
            }
        }
    } else {
        (text, input.name(), None)
    };
    let config = compile_config_with_env(json.as_bytes(), &env).map_err(|e| {
        let message = e.to_string();
        let message = match text_lines {
            Some(lines) => lines.error_position(&message),
            None => message,
        };
        Failure::new(format!(
            "invalid plugin configuration ({origin}): {message}"
        ))
    })?;
    Ok(LoadedConfig {
        json,
        config,
        origin,
    })
}

/// The configuration `input` names, or every default (the shipped policy) without one.
pub fn load_or_default(input: Option<&Input>) -> Result<LoadedConfig, Failure> {
    match input {
        Some(input) => load(input),
        None => {
            let config = compile_config_with_env(b"", &env)
                .map_err(|e| Failure::new(format!("the shipped policy does not compile: {e}")))?;
            Ok(LoadedConfig {
                json: String::new(),
                config,
                origin: "the default configuration (shipped policy)".to_string(),
            })
        }
    }
}

/// The environment keys written `{"env": "NAME"}` are read from (as the filter reads its
/// VM's).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
