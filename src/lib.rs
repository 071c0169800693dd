//! consent-filter: the proxy-wasm glue of the consent-enforcement filter.
//!
//! Everything that decides lives in the host-free `consent-core` crate; the modules here
//! only translate Envoy's host calls into core types and apply the core's plans. The glue
//! is compiled for wasm targets only, so the native build of this crate is empty and its
//! integration tests (`tests/`) drive the built `.wasm` inside real Envoy.

#[cfg(target_arch = "wasm32")]
mod drainer;
#[cfg(target_arch = "wasm32")]
mod fetcher;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http_context;
#[cfg(target_arch = "wasm32")]
mod ledger;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod observe;
#[cfg(target_arch = "wasm32")]
mod request_facts;
#[cfg(target_arch = "wasm32")]
mod root_context;
#[cfg(target_arch = "wasm32")]
mod shared_snapshot;

/// The VM entry point: registers the root context.
#[cfg(target_arch = "wasm32")]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::root_context::ConsentRoot::default())
        });
    }}
}
