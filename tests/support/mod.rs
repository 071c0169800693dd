//! End-to-end harness: real Envoy (from the project venv) with the built filter (the `.wasm`,
//! or with `CONSENT_FILTER_BUILD=native` the dynamic module `libconsent_native.so`), the
//! demo backend in-process as the real upstream, and curl as the client.
//!
//! One job per file: [`envoy`] (paths, the built filter, the Envoy process), [`config`]
//! (edits of the shipped Envoy config, through envoy-yaml), [`client`] (curl requests and
//! responses), [`fixture`] (the demo backend, consent source and Envoy started together),
//! [`grpc`] (a real gRPC server and client), [`pki`] (a throwaway CA for mTLS),
//! [`load`] (requests in a loop) and [`prometheus`] (a real Prometheus scraping Envoy).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod client;
pub mod config;
pub mod envoy;
pub mod fixture;
pub mod grpc;
pub mod load;
pub mod pki;
pub mod prometheus;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use self::{
    client::{curl, h, send, Req, Response},
    config::{
        localise, map_plugin_config, split_lds, with_plugin_config, with_port,
        with_transport_socket, without_filter, worker_lease,
    },
    envoy::{
        build, envoy_bin, envoy_command, free_port, native_module_dir, repo_has, repo_root,
        shipped_config, tag, wasm_path, Build, Envoy,
    },
    fixture::{
        demo_consents, demo_signer, demo_signing_key, for_reference_source, policy_v2_changing,
        shipped_demo, start_backend, start_demo, start_demo_mtls, start_demo_on_source,
        start_demo_parts, start_demo_signed, start_demo_with, start_source, start_source_with,
        wait_until, without_member, Fixture, DEMO_LEDGER_KEY, REFERENCE_SOURCE_SIGNS,
    },
    grpc::{grpc_call, GrpcCall, GrpcServer, SHIPPED_GRPC_PORT},
    load::Load,
    pki::{ClientTls, TestPki},
    prometheus::{consent_metric_names, Prometheus, Sample, NATIVE_PREFIX},
};
#[allow(unused_imports)]
pub use consent_tools::demo_backend::SnapshotState;
