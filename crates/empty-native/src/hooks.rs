//! The hooks Envoy looks up in an HTTP filter module, by symbol name: the same set, with the
//! same signatures, as `crates/consent-native/src/hooks.rs` (C enums as `u32`, pointers as
//! `*const c_void` / `*mut c_void`). Each one returns `Continue` or does nothing; none calls
//! back into Envoy.

use std::ffi::{c_char, c_void};

use crate::floor;

/// A pointer to an Envoy object (filter config, filter), owned by Envoy; never used here.
pub type EnvoyPtr = *mut c_void;

/// A pointer handed to Envoy as this module's configuration or filter; Envoy only passes it
/// back.
pub type ModulePtr = *const c_void;

/// Bytes owned by Envoy, valid for one hook (the configuration's name and bytes); never read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    /// First byte (null when there is none).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

/// A header owned by Envoy (callout answers, which this module never receives).
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

/// The ABI version this module was written against: the string consent-native returns.
pub static ABI_VERSION: &[u8] = b"1.40.0\0";

/// `Continue` in each of the three status enums the stream hooks return
/// (`FilterHeadersStatus`, `FilterDataStatus`, `FilterTrailersStatus`): 0 in all three.
pub const CONTINUE: u32 = 0;

/// What `on_http_filter_config_new` returns: the address of a static byte (non-null, since
/// null rejects the configuration). Nothing is allocated, so nothing is freed.
static CONFIG: u8 = 0;

/// What `on_http_filter_new` returns for every stream: the address of a static byte
/// (non-null, since null fails the stream). No allocation per request.
static FILTER: u8 = 0;

/// The configuration of the native floor (`filter_name: host_calls`, see `floor.rs`).
static FLOOR_CONFIG: u8 = 0;

fn empty_filter() -> ModulePtr {
    std::ptr::from_ref(&FILTER).cast()
}

/// The floor's state of a stream, if this stream is one of the floor's.
fn floor_stream<'a>(module: ModulePtr) -> Option<&'a mut floor::FloorStream> {
    // SAFETY: Envoy passes back what `envoy_dynamic_module_on_http_filter_new` returned,
    // to one hook at a time.
    unsafe { floor::stream(module, empty_filter()) }
}

/// The module's program-init hook: returns the ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// A filter configuration is loaded (main thread): accepted whatever it says.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: EnvoyPtr,
    name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> ModulePtr {
    let floor = !name.ptr.is_null()
        && name.length == floor::FILTER_NAME.len()
        // SAFETY: Envoy's buffer holds `length` bytes for the duration of this call.
        && unsafe { std::slice::from_raw_parts(name.ptr.cast::<u8>(), name.length) }
            == floor::FILTER_NAME;
    if floor {
        return std::ptr::from_ref(&FLOOR_CONFIG).cast();
    }
    std::ptr::from_ref(&CONFIG).cast()
}

/// A filter configuration is destroyed (main thread): nothing was allocated.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: ModulePtr) {}

/// An event of a configuration's scheduler (none is created).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: EnvoyPtr,
    _config: ModulePtr,
    _event: u64,
) {
}

/// The answer to a configuration's HTTP callout (none is made).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: EnvoyPtr,
    _config: ModulePtr,
    _callout: u64,
    _result: u32,
    _headers: *const EnvoyHeader,
    _headers_len: usize,
    _chunks: *const EnvoyBuffer,
    _chunks_len: usize,
) {
}

/// A stream starts: its filter, the same static byte for every stream (the floor's
/// streams get a small state of their own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    _filter_envoy: EnvoyPtr,
) -> ModulePtr {
    if config == std::ptr::from_ref(&FLOOR_CONFIG).cast() {
        return floor::new_stream();
    }
    empty_filter()
}

/// The request headers arrived: `Continue` (the floor makes its calls first).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    if floor_stream(module).is_some() {
        // SAFETY: `envoy_ptr` is this hook's stream.
        return unsafe { floor::on_request_headers(envoy_ptr) };
    }
    CONTINUE
}

/// Request body data arrived: `Continue`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

/// Request trailers arrived: `Continue`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
) -> u32 {
    CONTINUE
}

/// The response headers arrived: `Continue` (the floor may hold them for the body).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    if let Some(stream) = floor_stream(module) {
        // SAFETY: `envoy_ptr` is this hook's stream.
        return unsafe { floor::on_response_headers(envoy_ptr, stream, end_of_stream) };
    }
    CONTINUE
}

/// Response body data arrived: `Continue` (the floor buffers it and reads it).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    if let Some(stream) = floor_stream(module) {
        // SAFETY: `envoy_ptr` is this hook's stream.
        return unsafe { floor::on_response_body(envoy_ptr, stream, end_of_stream) };
    }
    CONTINUE
}

/// Response trailers arrived: `Continue`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
) -> u32 {
    CONTINUE
}

/// The stream is complete (before access logs): nothing to log.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
) {
}

/// The stream's filter is destroyed: nothing was allocated (but a floor stream's state).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: ModulePtr) {
    // SAFETY: Envoy destroys each filter once, after its last hook.
    unsafe { floor::drop_stream(module, empty_filter()) }
}

/// The answer to a stream's HTTP callout (none is made).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _callout: u64,
    _result: u32,
    _headers: *const EnvoyHeader,
    _headers_len: usize,
    _chunks: *const EnvoyBuffer,
    _chunks_len: usize,
) {
}

/// Headers of a stream's streamed callout (none is started).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _headers: *const EnvoyHeader,
    _headers_len: usize,
    _end_stream: bool,
) {
}

/// Data of a stream's streamed callout (none is started).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_len: usize,
    _end_stream: bool,
) {
}

/// Trailers of a stream's streamed callout (none is started).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _trailers: *const EnvoyHeader,
    _trailers_len: usize,
) {
}

/// End of a stream's streamed callout (none is started).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
) {
}

/// Reset of a stream's streamed callout (none is started).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _reason: u32,
) {
}

/// An event of a stream's scheduler (none is created).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
    _event: u64,
) {
}

/// The downstream write buffer is above its high watermark (terminal filters only).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
) {
}

/// The downstream write buffer is below its low watermark (terminal filters only).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy_ptr: EnvoyPtr,
    _module: ModulePtr,
) {
}
