//! The minimal bindings to Envoy's dynamic-module ABI (Envoy 1.40.0) that this module uses:
//! the C types, the callbacks Envoy exports (declared here, resolved when Envoy loads the
//! `.so`) and the numbering of the C enums. Written by hand from the ABI header
//! (`source/extensions/dynamic_modules/abi.h`); `tests/abi.rs` checks every callback declared
//! here against the symbols the Envoy binary exports, and every hook this crate exports
//! against the names Envoy looks up. The hooks themselves live in `hooks.rs`.
//!
//! C enums are passed as `u32` (their C type is `int`-sized); only the values used are
//! named.

use std::ffi::{c_char, c_void};

/// A pointer to an Envoy object (filter config, filter, scheduler), owned by Envoy.
pub type EnvoyPtr = *mut c_void;

/// A pointer to an object of this module handed to Envoy (config, filter).
pub type ModulePtr = *const c_void;

/// Bytes owned by this module, lent to Envoy for one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    /// First byte (may be null when `length` is 0).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl ModuleBuffer {
    /// Lends `bytes` (they must outlive the call).
    pub fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// No bytes at all: a null pointer (`set_header` with it removes the header).
    pub fn null() -> Self {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

/// Bytes owned by Envoy, valid until the end of the current hook (or the next setter).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    /// First byte (null when there is none).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl EnvoyBuffer {
    /// An empty buffer for Envoy to fill.
    pub fn empty() -> Self {
        EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

/// A header owned by this module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHeader {
    /// Name.
    pub key_ptr: *const c_char,
    /// Name length.
    pub key_length: usize,
    /// Value.
    pub value_ptr: *const c_char,
    /// Value length.
    pub value_length: usize,
}

impl ModuleHeader {
    /// Lends a name and a value.
    pub fn of(name: &str, value: &[u8]) -> Self {
        ModuleHeader {
            key_ptr: name.as_ptr().cast(),
            key_length: name.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

/// A header owned by Envoy's header map.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHeader {
    /// Name.
    pub key_ptr: *const c_char,
    /// Name length.
    pub key_length: usize,
    /// Value.
    pub value_ptr: *const c_char,
    /// Value length.
    pub value_length: usize,
}

impl EnvoyHeader {
    /// An empty slot for Envoy to fill.
    pub fn empty() -> Self {
        EnvoyHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        }
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    /// Request headers.
    pub const REQUEST_HEADER: u32 = 0;
    /// Request trailers.
    pub const REQUEST_TRAILER: u32 = 1;
    /// Response headers.
    pub const RESPONSE_HEADER: u32 = 2;
    /// Response trailers.
    pub const RESPONSE_TRAILER: u32 = 3;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    /// The request body data of the current hook.
    pub const RECEIVED_REQUEST: u32 = 0;
    /// The request body buffered so far.
    pub const BUFFERED_REQUEST: u32 = 1;
    /// The response body data of the current hook.
    pub const RECEIVED_RESPONSE: u32 = 2;
    /// The response body buffered so far.
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    /// Debug.
    pub const DEBUG: u32 = 1;
    /// Info.
    pub const INFO: u32 = 2;
    /// Warn.
    pub const WARN: u32 = 3;
    /// Error.
    pub const ERROR: u32 = 4;
}

/// `envoy_dynamic_module_type_attribute_id` (the ones read).
pub mod attribute {
    /// `connection.dns_san_peer_certificate`.
    pub const CONNECTION_DNS_SAN_PEER_CERTIFICATE: u32 = 35;
    /// `connection.uri_san_peer_certificate`.
    pub const CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;
    /// `xds.cluster_name`.
    pub const XDS_CLUSTER_NAME: u32 = 57;
    /// `xds.route_name`.
    pub const XDS_ROUTE_NAME: u32 = 61;
}

/// Status of the header hooks (`FilterHeadersStatus`).
pub mod headers_status {
    /// Go on.
    pub const CONTINUE: u32 = 0;
    /// Hold the headers (the body is still buffered); a body hook that returns `CONTINUE`
    /// resumes them.
    pub const STOP_ITERATION: u32 = 1;
    /// Hold the headers and buffer everything after them.
    pub const STOP_ALL_ITERATION_AND_BUFFER: u32 = 3;
}

/// Status of the body hooks (`FilterDataStatus`).
pub mod body_status {
    /// Go on with this data.
    pub const CONTINUE: u32 = 0;
    /// Keep buffering.
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
    /// Hold this data without buffering it (after a local reply).
    pub const STOP_ITERATION_NO_BUFFER: u32 = 3;
}

/// Status of the trailer hooks (`FilterTrailersStatus`).
pub mod trailers_status {
    /// Go on.
    pub const CONTINUE: u32 = 0;
    /// Stop (after a local reply).
    pub const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_metrics_result`.
pub mod metrics_result {
    /// Done.
    pub const SUCCESS: u32 = 0;
}

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub mod callout_init {
    /// The call is on its way.
    pub const SUCCESS: u32 = 0;
}

/// `envoy_dynamic_module_type_http_callout_result`.
pub mod callout_result {
    /// An answer arrived.
    pub const SUCCESS: u32 = 0;
}

extern "C" {
    /// Writes a log line under Envoy's `dynamic_modules` logger.
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    /// Whether Envoy was started with `--mode validate`.
    pub fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    /// Number of headers in one map.
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: EnvoyPtr,
        kind: u32,
    ) -> usize;
    /// Every header of one map, into `out` (room for `get_headers_size` entries).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyHeader,
    ) -> bool;
    /// Replaces every value of a header; a null value removes it.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Adds one more value of a header.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Answers the request locally.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: EnvoyPtr,
        status: u32,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// Number of chunks of one body.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: EnvoyPtr,
        kind: u32,
    ) -> usize;
    /// The chunks of one body, into `out` (room for `get_body_chunks_size` entries).
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    /// Size in bytes of one body.
    pub fn envoy_dynamic_module_callback_http_get_body_size(filter: EnvoyPtr, kind: u32) -> usize;
    /// Appends bytes to one body.
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: EnvoyPtr,
        kind: u32,
        data: ModuleBuffer,
    ) -> bool;
    /// Drains bytes from the front of one body.
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: EnvoyPtr,
        kind: u32,
        bytes: usize,
    ) -> bool;
    /// Whether the request data of this hook is the body an earlier filter buffered.
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: EnvoyPtr,
    ) -> bool;
    /// Whether the response data of this hook is the body an earlier filter buffered.
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: EnvoyPtr,
    ) -> bool;

    /// Sets a bytes value in the stream's filter state.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: EnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// A string attribute of the stream (route name, peer certificate SANs, ...).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyPtr,
        id: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;

    /// Defines a counter with labels; its id goes to `id`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: EnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    /// Defines a gauge with labels; its id goes to `id`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: EnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    /// Adds to a counter from a stream.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    /// Adds to a counter from the configuration (main thread).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    /// Sets a gauge from the configuration (main thread).
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    /// A scheduler that posts events to the configuration on the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: EnvoyPtr,
    ) -> EnvoyPtr;
    /// Posts `event` (any thread); Envoy calls `on_http_filter_config_scheduled`.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: EnvoyPtr,
        event: u64,
    );
    /// Deletes a scheduler.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: EnvoyPtr);
    /// Starts an HTTP call to a cluster from the configuration (main thread); the answer
    /// comes to `on_http_filter_config_http_callout_done` with the id written to `id`.
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: EnvoyPtr,
        id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
}

/// The callbacks declared above, by symbol name (for the ABI test).
pub const CALLBACKS: &[&str] = &[
    "envoy_dynamic_module_callback_log",
    "envoy_dynamic_module_callback_is_validation_mode",
    "envoy_dynamic_module_callback_http_get_headers_size",
    "envoy_dynamic_module_callback_http_get_headers",
    "envoy_dynamic_module_callback_http_set_header",
    "envoy_dynamic_module_callback_http_add_header",
    "envoy_dynamic_module_callback_http_send_response",
    "envoy_dynamic_module_callback_http_get_body_chunks_size",
    "envoy_dynamic_module_callback_http_get_body_chunks",
    "envoy_dynamic_module_callback_http_get_body_size",
    "envoy_dynamic_module_callback_http_append_body",
    "envoy_dynamic_module_callback_http_drain_body",
    "envoy_dynamic_module_callback_http_received_buffered_request_body",
    "envoy_dynamic_module_callback_http_received_buffered_response_body",
    "envoy_dynamic_module_callback_http_set_filter_state_bytes",
    "envoy_dynamic_module_callback_http_filter_get_attribute_string",
    "envoy_dynamic_module_callback_http_filter_config_define_counter",
    "envoy_dynamic_module_callback_http_filter_config_define_gauge",
    "envoy_dynamic_module_callback_http_filter_increment_counter",
    "envoy_dynamic_module_callback_http_filter_config_increment_counter",
    "envoy_dynamic_module_callback_http_filter_config_set_gauge",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
    "envoy_dynamic_module_callback_http_filter_config_http_callout",
];
