//! Envoy YAML as the consent filter's tools need it, on the `saphyr` YAML 1.2 parser:
//!
//! - [`plugin_configurations`] finds every plugin configuration (a
//!   `google.protobuf.StringValue` whose `value` holds the JSON) with its line numbers,
//!   anchor and aliases, for `consentctl validate envoy`; [`TextLines`] moves a JSON error
//!   position to the YAML file's lines.
//! - [`EnvoyYaml`] is a parsed document the end-to-end tests edit (ports, the `.wasm` path,
//!   the consent filter's plugin configuration, wasm or native, HTTP filters, listeners) and write back for
//!   Envoy to read. Aliases are expanded on the way: each place gets its own copy.
//!
//! No error message holds a value from the document.

mod document;
mod error;
mod http_filters;
mod listeners;
mod native;
mod plugin_configs;
mod ports;
mod text_lines;
mod wasm;

pub use document::EnvoyYaml;
pub use error::{EditError, YamlError};
pub use native::DYNAMIC_MODULE_FILTER_TYPE;
pub use plugin_configs::{plugin_configurations, Found, FoundKind, STRING_VALUE_TYPE};
pub use text_lines::TextLines;
