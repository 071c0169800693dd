//! consent-native: the consent-enforcement filter as a native Envoy dynamic module
//! (`libconsent_native.so`, loaded by Envoy's `DynamicModuleFilter`).
//!
//! It is a second host of the same core as the proxy-wasm filter: every decision, plan,
//! reply, body rewrite, stats event and decision-log line comes from `consent-core`
//! (`consent_core::stream::Stream` per request, `FetchMachine` for the snapshot); the
//! modules here only translate Envoy's calls and carry out the core's steps.
//!
//! | module | owns |
//! |---|---|
//! | `abi` | the hand-written bindings to Envoy 1.40's dynamic-module ABI |
//! | `envoy` | safe wrappers over those callbacks (the only `unsafe` besides the hooks) |
//! | `hooks` | the exported `envoy_dynamic_module_on_*` hooks, each behind `catch_unwind` |
//! | `config` | one filter configuration: compiled once, stats, per-worker copies |
//! | `filter` | one stream: drives `Stream` as the wasm glue does |
//! | `metrics` | stats events as labelled Envoy counters |
//! | `stat_batch` | those counters' increments, summed and counted on the main thread |
//! | `store` | the process-wide snapshot store (buckets and metadata) |
//! | `fetcher` | one `FetchMachine` per snapshot namespace, on the main thread |
//! | `ledger` | the process's provision-ledger outbox, filled by workers, sent by the fetcher |

// Unsafe code is denied everywhere but in the FFI modules, each block with its SAFETY note.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod abi;
pub mod config;
#[allow(unsafe_code)]
pub mod envoy;
pub mod fetcher;
pub mod filter;
pub mod ledger;
// Private: Envoy reaches the hooks by their symbol names only.
#[allow(unsafe_code)]
mod hooks;
pub mod metrics;
pub mod stat_batch;
pub mod store;
#[cfg(test)]
#[allow(unsafe_code)]
mod test_stubs;
