//! Global Privacy Control: a request carrying `Sec-GPC: 1` objects, for that request, to
//! third-party provision and to the purposes the configuration lists (third-party
//! marketing in the shipped configuration).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::policy::compiled::{CompiledPolicy, PurposeIdx};

/// The request header that carries the signal.
pub const GPC_HEADER: &str = "sec-gpc";

fn yes() -> bool {
    true
}

/// GPC handling as written in the plugin configuration (`gpc`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpcDoc {
    /// Whether the signal is honoured at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether the signal objects to provision to third parties (§7).
    #[serde(default = "yes")]
    pub third_party_provision: bool,
    /// Purposes the signal objects to, whoever the caller is.
    #[serde(default)]
    pub purposes: Vec<String>,
}

impl Default for GpcDoc {
    fn default() -> Self {
        GpcDoc {
            enabled: true,
            third_party_provision: true,
            purposes: Vec::new(),
        }
    }
}

/// Checked GPC handling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpcSettings {
    /// Whether the signal is honoured.
    pub enabled: bool,
    /// Whether it objects to third-party provision.
    pub third_party_provision: bool,
    /// Purposes it objects to (sorted).
    pub purposes: Vec<PurposeIdx>,
}

impl GpcSettings {
    /// Checks `doc` against the policy; `path` names the field in errors.
    pub fn compile(doc: &GpcDoc, policy: &CompiledPolicy, path: &str) -> Result<Self, ConfigError> {
        let purposes = policy.purpose_list(&doc.purposes, &format!("{path}.purposes"))?;
        Ok(GpcSettings {
            enabled: doc.enabled,
            third_party_provision: doc.third_party_provision,
            purposes,
        })
    }

    /// Whether the signal objects to `purpose`.
    pub fn objects_to(&self, purpose: PurposeIdx) -> bool {
        self.purposes
            .binary_search_by_key(&purpose.0, |p| p.0)
            .is_ok()
    }
}

/// Whether one `Sec-GPC` header value turns the signal on. The specification defines
/// only `1`; anything else (including `0`) is no signal. A comma-joined repeat counts if
/// any of its values is `1`: an objection is never dropped for being sent twice.
pub fn is_signal(value: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|v| v.trim_ascii() == b"1")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn only_the_value_one_is_a_signal() {
        assert!(is_signal(b"1"));
        assert!(is_signal(b" 1 "));
        assert!(is_signal(b"0, 1"));
        for v in [&b"0"[..], b"", b"true", b"11", b"1.0"] {
            assert!(!is_signal(v), "{v:?}");
        }
    }

    #[test]
    fn purposes_are_checked_against_the_policy() {
        let p = CompiledPolicy::default_policy().unwrap();
        let doc = GpcDoc {
            purposes: vec!["marketing.third_party_offers".into()],
            ..GpcDoc::default()
        };
        let s = GpcSettings::compile(&doc, &p, "gpc").unwrap();
        assert!(s.objects_to(p.purpose_idx("marketing.third_party_offers").unwrap()));
        assert!(!s.objects_to(p.purpose_idx("surveys").unwrap()));
        let doc = GpcDoc {
            purposes: vec!["nope".into()],
            ..GpcDoc::default()
        };
        assert_eq!(
            GpcSettings::compile(&doc, &p, "gpc").unwrap_err().path(),
            "gpc.purposes[0]"
        );
    }
}
