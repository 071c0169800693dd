//! Unit tests only: stand-ins for the Envoy callbacks the code under test reaches, so that
//! the test binary links without Envoy. Each one reports failure (no metric ids, no
//! headers), which the glue treats as Envoy refusing.

#![allow(missing_docs, clippy::missing_safety_doc)]

use crate::abi::{EnvoyPtr, ModuleBuffer};

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    _config: EnvoyPtr,
    _name: ModuleBuffer,
    _label_names: *mut ModuleBuffer,
    _label_names_len: usize,
    _id: *mut usize,
) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
    _config: EnvoyPtr,
    _name: ModuleBuffer,
    _label_names: *mut ModuleBuffer,
    _label_names_len: usize,
    _id: *mut usize,
) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_send_response(
    _filter: EnvoyPtr,
    _status: u32,
    _headers: *mut crate::abi::ModuleHeader,
    _headers_len: usize,
    _body: ModuleBuffer,
    _details: ModuleBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
    _filter: EnvoyPtr,
    _key: ModuleBuffer,
    _value: ModuleBuffer,
) -> bool {
    false
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
    _config: EnvoyPtr,
) -> EnvoyPtr {
    std::ptr::null_mut()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
    _scheduler: EnvoyPtr,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
    _scheduler: EnvoyPtr,
) {
}
