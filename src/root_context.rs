//! The root context: compiles the plugin configuration once per VM in `on_configure`.
//! Configured with root id `consent_fetcher` (as a bootstrap singleton), it runs the
//! snapshot fetcher instead of serving as a filter.

use std::rc::Rc;

use consent_core::config::SnapshotSource;
use consent_core::{compile_config, CompiledConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::fetcher::Fetcher;
use crate::host;
use crate::http_context::ConsentHttp;

/// Root id that makes this plugin the snapshot fetcher.
pub const FETCHER_ROOT_ID: &str = "consent_fetcher";

/// Holds the compiled configuration shared by every request of this VM.
#[derive(Default)]
pub struct ConsentRoot {
    config: Option<Rc<CompiledConfig>>,
    fetcher: Option<Fetcher>,
}

impl Context for ConsentRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(fetcher) = self.fetcher.as_mut() {
            fetcher.on_response(token_id, body_size);
        }
    }
}

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
                let config = Rc::new(config);
                self.config = Some(Rc::clone(&config));
                if host::root_id().as_deref() == Some(FETCHER_ROOT_ID) {
                    if config.snapshot.source == SnapshotSource::Inline {
                        log::info!("consent fetcher: snapshot.source is inline, nothing to fetch");
                        return true;
                    }
                    let fetcher = Fetcher::new(config);
                    let started = fetcher.start();
                    self.fetcher = Some(fetcher);
                    return started;
                }
                true
            }
            Err(err) => {
                log::error!("consent filter configuration rejected: {err}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(fetcher) = self.fetcher.as_mut() {
            fetcher.on_tick();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ConsentHttp::new(self.config.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
