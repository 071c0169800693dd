//! The event hooks this module exports (`envoy_dynamic_module_on_*`), the only entry points
//! Envoy calls. Each one catches panics (`catch_unwind`) so that none crosses into Envoy: a
//! configuration hook that panics rejects the configuration, a stream hook that panics
//! blocks the request with `internal_error` and the stream is not decided any further.
//! `tests/abi.rs` checks that every hook here is one Envoy 1.40 looks up.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use consent_core::Direction;

use crate::abi::{EnvoyBuffer, EnvoyHeader, EnvoyPtr, ModulePtr};
use crate::config::FilterConfig;
use crate::envoy::{self, CallAnswer, Level};
use crate::fetcher;
use crate::filter::{Filter, Verdict};
use crate::stat_batch;

/// The ABI version this module was written against (Envoy logs a warning, and still loads
/// it, when it differs from its own).
static ABI_VERSION: &[u8] = b"1.40.0\0";

/// The reply when even failing closed panicked.
const LAST_RESORT: &[u8] =
    b"{\"error\":\"the consent filter failed\",\"reason\":\"internal_error\",\"purpose\":null}";

/// Runs `f`, or `fallback` if it panicked.
pub fn guard<R>(fallback: impl FnOnce() -> R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| fallback())
}

/// Borrows Envoy's buffer for the current hook.
///
/// # Safety
/// The buffer must be valid for the current hook (Envoy guarantees it for hook arguments).
unsafe fn bytes_of<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }
}

/// The configuration behind a module pointer, without taking Envoy's reference.
///
/// # Safety
/// `ptr` must come from `on_http_filter_config_new` and not have been destroyed.
unsafe fn config_of(ptr: ModulePtr) -> Option<Arc<FilterConfig>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr.cast::<FilterConfig>();
    // SAFETY: `ptr` came from `Arc::into_raw` and is alive (Envoy destroys it last); the
    // extra count is owned by the returned `Arc`.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// The module's program-init hook: returns the ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// A filter configuration is loaded (main thread): compiled once; a bad one is rejected
/// with the core's one-line error, as the wasm filter rejects it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: EnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    guard(
        || {
            envoy::log(
                Level::Error,
                "consent filter configuration rejected: internal error",
            );
            std::ptr::null()
        },
        || {
            // SAFETY: Envoy's argument, valid for this hook; copied by `FilterConfig::new`.
            let bytes = unsafe { bytes_of(config) };
            match FilterConfig::new(envoy::Config(config_envoy), bytes) {
                Ok(config) => {
                    if let Some(summary) = config.summary() {
                        envoy::log(Level::Info, &summary);
                    }
                    if let Some(warning) = config.key_warning() {
                        envoy::log(Level::Warn, &warning);
                    }
                    let config = Arc::new(config);
                    fetcher::register(&config);
                    Arc::into_raw(config).cast()
                }
                Err(err) => {
                    envoy::log(
                        Level::Error,
                        &format!("consent filter configuration rejected: {err}"),
                    );
                    std::ptr::null()
                }
            }
        },
    )
}

/// A filter configuration is destroyed (main thread).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePtr) {
    guard(
        || (),
        || {
            if config.is_null() {
                return;
            }
            // SAFETY: `config` came from `Arc::into_raw` in `config_new`; Envoy destroys it
            // once, so this takes back that reference.
            let config = unsafe { Arc::from_raw(config.cast::<FilterConfig>()) };
            config.flush_stats(true);
            fetcher::release(&config);
        },
    );
}

/// An event posted by a configuration's scheduler (a fetcher tick, a stats flush), on the
/// main thread.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: EnvoyPtr,
    config: ModulePtr,
    event: u64,
) {
    guard(
        || envoy::log(Level::Error, "consent filter: a scheduled event panicked"),
        || {
            // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
            let Some(config) = (unsafe { config_of(config) }) else {
                return;
            };
            match event {
                fetcher::TICK_EVENT => fetcher::on_tick(config.id),
                stat_batch::FLUSH_EVENT => config.flush_stats(false),
                _ => {}
            }
        },
    );
}

/// The answer to a configuration's HTTP callout (the fetcher's call to the source).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: EnvoyPtr,
    config: ModulePtr,
    callout: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) {
    guard(
        || envoy::log(Level::Error, "consent fetcher: an answer panicked"),
        || {
            // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
            let Some(config) = (unsafe { config_of(config) }) else {
                return;
            };
            // SAFETY: Envoy's arrays for this hook, with their lengths; copied at once.
            let answer = unsafe { CallAnswer::copy(headers, headers_len, chunks, chunks_len) };
            fetcher::on_answer(config.id, callout, result, answer);
        },
    );
}

/// A stream starts: its filter, or null (Envoy then closes the stream: fail closed).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    _filter_envoy: EnvoyPtr,
) -> ModulePtr {
    guard(std::ptr::null, || {
        // SAFETY: Envoy passes the pointer `config_new` returned, still alive.
        let Some(config) = (unsafe { config_of(config) }) else {
            return std::ptr::null();
        };
        match Filter::new(config) {
            Some(filter) => Box::into_raw(Box::new(filter)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

/// Runs a stream hook on the filter behind `module`, catching panics.
fn on_filter(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    hook: impl FnOnce(&mut Filter, envoy::Stream) -> Verdict,
) -> Verdict {
    let stream = envoy::Stream(envoy_ptr);
    if module.is_null() {
        return Verdict::Continue;
    }
    // SAFETY: `module` came from `Box::into_raw` in `on_http_filter_new` and Envoy calls a
    // stream's hooks one at a time, on its worker, until `on_http_filter_destroy`.
    let filter = unsafe { &mut *module.cast::<Filter>().cast_mut() };
    if filter.poisoned() {
        return Verdict::Continue;
    }
    match catch_unwind(AssertUnwindSafe(|| hook(&mut *filter, stream))) {
        Ok(verdict) => verdict,
        Err(_) => catch_unwind(AssertUnwindSafe(|| filter.panicked(stream))).unwrap_or_else(|_| {
            let _ = catch_unwind(|| {
                stream.send_response(
                    500,
                    &[("content-type", "application/json")],
                    LAST_RESORT,
                    "consent_filter",
                )
            });
            Verdict::Replied
        }),
    }
}

/// The request headers arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_request_headers(s, end_of_stream)
    })
    .headers()
}

/// Request body data arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_body(s, Direction::Request, end_of_stream)
    })
    .body()
}

/// Request trailers arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_trailers(s, Direction::Request)
    })
    .trailers()
}

/// The response headers arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_response_headers(s, end_of_stream)
    })
    .headers()
}

/// Response body data arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_body(s, Direction::Response, end_of_stream)
    })
    .body()
}

/// Response trailers arrived.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
) -> u32 {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_trailers(s, Direction::Response)
    })
    .trailers()
}

/// The stream is complete (before access logs): the decision-log line.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy_ptr: EnvoyPtr,
    module: ModulePtr,
) {
    on_filter(envoy_ptr, module, |f, s| {
        f.on_complete(s);
        Verdict::Continue
    });
}

/// The stream's filter is destroyed.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: ModulePtr) {
    guard(
        || (),
        || {
            if !module.is_null() {
                // SAFETY: `module` came from `Box::into_raw` in `on_http_filter_new`; Envoy
                // destroys each filter once, after its last hook.
                drop(unsafe { Box::from_raw(module.cast::<Filter>().cast_mut()) });
            }
        },
    );
}

// Hooks Envoy requires every HTTP filter module to export, for features this module does
// not use (stream callouts, per-stream schedulers). They are never called, since the module
// starts none of them; each does nothing.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_and_answered_by_the_fallback() {
        assert_eq!(guard(|| "closed", || "open"), "open");
        let result = guard(|| "closed", || -> &str { panic!("a bug") });
        assert_eq!(result, "closed");
    }

    #[test]
    fn a_hook_on_no_filter_lets_the_stream_pass_untouched() {
        let verdict = on_filter(std::ptr::null_mut(), std::ptr::null(), |_, _| {
            unreachable!("no filter to call")
        });
        assert_eq!(verdict, Verdict::Continue);
    }

    #[test]
    fn the_abi_version_is_a_c_string() {
        let ptr = envoy_dynamic_module_on_program_init();
        // SAFETY: the pointer is a static NUL-terminated byte string.
        let text = unsafe { std::ffi::CStr::from_ptr(ptr) };
        assert_eq!(text.to_str().unwrap(), "1.40.0");
    }
}
