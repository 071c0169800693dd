//! The root context: compiles the plugin configuration once per VM in `on_configure`.

use std::rc::Rc;

use consent_core::{compile_config, CompiledConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host;
use crate::http_context::ConsentHttp;

/// Holds the compiled configuration shared by every request of this VM.
#[derive(Default)]
pub struct ConsentRoot {
    config: Option<Rc<CompiledConfig>>,
}

impl Context for ConsentRoot {}

impl RootContext for ConsentRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(status) => {
                log::error!("consent filter: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        match compile_config(&bytes) {
            Ok(config) => {
                log::info!(
                    "consent filter configured: policy {} version {}, {} purposes, {} categories, {} consent records",
                    config.policy.id,
                    config.policy.version,
                    config.policy.purposes.len(),
                    config.policy.categories.len(),
                    config.consents.len()
                );
                if config.key.is_none() {
                    if let Some(path) = config.policy.first_pseudonymising_purpose() {
                        log::warn!(
                            "consent filter: no pseudonymisation_key, so {path} and other pseudonymise transforms remove the value instead"
                        );
                    }
                }
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log::error!("consent filter configuration rejected: {err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ConsentHttp::new(self.config.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
