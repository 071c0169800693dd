//! The native floor (`filter_name: host_calls`, contender `floor-native`): per request, the
//! Envoy calls the native consent module makes on its header-only path, and no decision.
//! What it costs over the empty module is Envoy's price of those calls; what the consent
//! module costs over it is the module's own work. The native counterpart of the wasm
//! `host_calls` floor in `crates/empty-filter`.
//!
//! The calls, as `crates/consent-native` makes them with the benchmarks' configuration:
//! - request headers: read the whole map, read the peer certificate's URI and DNS SANs,
//!   read the clock, add the decision header;
//! - response headers: read the whole map; unless the response ends there, remove
//!   `content-length` and hold the headers while the body is buffered;
//! - response body: buffer it to its end, then read every byte; a JSON one (by its label)
//!   is drained and written back unchanged.
//!
//! Not made: counter increments (under load the consent module sums them per configuration
//! and flushes them from the main thread every few milliseconds, so a request's share is
//! far below one call). Each stream gets a small allocation for its state, as the consent
//! module's streams do.
//!
//! The callbacks are declared here with the signatures of `crates/consent-native/src/abi.rs`
//! (the crate's tests check that they match it); Envoy resolves them when it loads the `.so`.

use std::ffi::{c_char, c_void};
use std::time::SystemTime;

use crate::hooks::{EnvoyBuffer, EnvoyHeader, EnvoyPtr};

/// The `filter_name` that selects this floor.
pub const FILTER_NAME: &[u8] = b"host_calls";

/// A decision header value of the length the consent module adds on the benchmarks' path.
pub const DECISION_HEADER: (&str, &str) = (
    "x-consent-decision",
    "outcome=redact; reason=consent_partial; purpose=marketing.newsletters; party=-; \
     party_kind=first_party; rule=default; policy=saitama-minna-app; policy_version=1; \
     redacted=location",
);

/// Headers read into a stack array before a map needs the heap.
const STACK_HEADERS: usize = 32;

mod kind {
    pub const REQUEST_HEADER: u32 = 0;
    pub const RESPONSE_HEADER: u32 = 2;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
    pub const DNS_SAN: u32 = 35;
    pub const URI_SAN: u32 = 37;
}

/// Status codes of the hooks (`FilterHeadersStatus`, `FilterDataStatus`).
pub mod status {
    /// Go on.
    pub const CONTINUE: u32 = 0;
    /// Hold the headers.
    pub const STOP_ITERATION: u32 = 1;
    /// Keep buffering the body.
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
}

/// Bytes of this module lent to Envoy for one call (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    /// First byte (may be null when `length` is 0).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    fn null() -> Self {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

#[cfg(not(test))]
extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: EnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: EnvoyPtr,
        kind: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(filter: EnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: EnvoyPtr,
        kind: u32,
        data: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: EnvoyPtr,
        kind: u32,
        bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_response_body(filter: EnvoyPtr)
        -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyPtr,
        id: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
}

#[cfg(test)]
use self::test_envoy::*;

/// One stream of the floor.
#[derive(Debug, Default)]
pub struct FloorStream {
    /// The response body is being buffered.
    buffering: bool,
    /// That body is labelled JSON (it is written back).
    json: bool,
}

/// Reads every header of one map and calls `each` with each name and value.
///
/// # Safety
/// `envoy` is the stream pointer of the current hook.
unsafe fn read_headers(envoy: EnvoyPtr, kind: u32, mut each: impl FnMut(&[u8], &[u8])) {
    // SAFETY: `envoy` is the current hook's stream.
    let count = unsafe { envoy_dynamic_module_callback_http_get_headers_size(envoy, kind) };
    let empty = EnvoyHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
    let mut stack = [empty; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [EnvoyHeader] = match stack.get_mut(..count) {
        Some(slots) => slots,
        None => {
            heap.resize(count, empty);
            &mut heap
        }
    };
    // SAFETY: `slots` has room for the `count` headers Envoy reported.
    if count == 0
        || !unsafe {
            envoy_dynamic_module_callback_http_get_headers(envoy, kind, slots.as_mut_ptr())
        }
    {
        return;
    }
    for header in slots.iter() {
        // SAFETY: Envoy's header map, valid until the end of this hook.
        let (name, value) = unsafe {
            (
                borrowed(header.key_ptr, header.key_length),
                borrowed(header.value_ptr, header.value_length),
            )
        };
        each(name, value);
    }
}

/// # Safety
/// `ptr` is null or points at `len` bytes that outlive the returned slice.
unsafe fn borrowed<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// # Safety
/// `envoy` is the stream pointer of the current hook.
unsafe fn attribute_len(envoy: EnvoyPtr, id: u32) -> usize {
    let mut out = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
    // SAFETY: `out` is a valid place for Envoy to write to.
    if unsafe {
        envoy_dynamic_module_callback_http_filter_get_attribute_string(envoy, id, &mut out)
    } {
        out.length
    } else {
        0
    }
}

/// The request headers: read them, the two SANs and the clock; add the decision header.
///
/// # Safety
/// `envoy` is the stream pointer of the current hook.
pub unsafe fn on_request_headers(envoy: EnvoyPtr) -> u32 {
    let mut seen = 0usize;
    // SAFETY: forwarded from the caller.
    unsafe {
        read_headers(envoy, kind::REQUEST_HEADER, |name, value| {
            seen = seen.wrapping_add(name.len() ^ value.len());
        });
        seen = seen.wrapping_add(attribute_len(envoy, kind::URI_SAN));
        seen = seen.wrapping_add(attribute_len(envoy, kind::DNS_SAN));
    }
    std::hint::black_box((seen, SystemTime::now()));
    let (name, value) = DECISION_HEADER;
    // SAFETY: both buffers outlive the call; Envoy copies them.
    unsafe {
        envoy_dynamic_module_callback_http_add_header(
            envoy,
            kind::REQUEST_HEADER,
            ModuleBuffer::of(name.as_bytes()),
            ModuleBuffer::of(value.as_bytes()),
        );
    }
    status::CONTINUE
}

/// The response headers: read them; unless the response ends here, drop `content-length`
/// and hold them while the body is buffered.
///
/// # Safety
/// `envoy` is the stream pointer of the current hook.
pub unsafe fn on_response_headers(envoy: EnvoyPtr, stream: &mut FloorStream, end: bool) -> u32 {
    let mut json = false;
    // SAFETY: forwarded from the caller.
    unsafe {
        read_headers(envoy, kind::RESPONSE_HEADER, |name, value| {
            if name == b"content-type" {
                json = value.windows(4).any(|w| w == b"json");
            }
        });
    }
    if end {
        return status::CONTINUE;
    }
    // SAFETY: the name outlives the call; a null value removes the header.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            envoy,
            kind::RESPONSE_HEADER,
            ModuleBuffer::of(b"content-length"),
            ModuleBuffer::null(),
        );
    }
    stream.buffering = true;
    stream.json = json;
    status::STOP_ITERATION
}

/// Copies the chunks of one body onto `out`.
///
/// # Safety
/// `envoy` is the stream pointer of the current hook.
unsafe fn read_chunks(envoy: EnvoyPtr, kind: u32, out: &mut Vec<u8>) {
    // SAFETY: `envoy` is the current hook's stream.
    let count = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(envoy, kind) };
    if count == 0 {
        return;
    }
    let empty = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
    let mut chunks = vec![empty; count];
    // SAFETY: `chunks` has room for the `count` chunks Envoy reported.
    if !unsafe {
        envoy_dynamic_module_callback_http_get_body_chunks(envoy, kind, chunks.as_mut_ptr())
    } {
        return;
    }
    for chunk in &chunks {
        // SAFETY: Envoy's body slices, valid until the end of this hook; copied at once.
        out.extend_from_slice(unsafe { borrowed(chunk.ptr, chunk.length) });
    }
}

/// The response body: buffered to its end, then copied out (as the consent module reads
/// it); a JSON one is drained and written back unchanged.
///
/// # Safety
/// `envoy` is the stream pointer of the current hook.
pub unsafe fn on_response_body(envoy: EnvoyPtr, stream: &mut FloorStream, end: bool) -> u32 {
    if !stream.buffering {
        return status::CONTINUE;
    }
    if !end {
        return status::STOP_ITERATION_AND_BUFFER;
    }
    stream.buffering = false;
    // SAFETY: forwarded from the caller.
    unsafe {
        let same = envoy_dynamic_module_callback_http_received_buffered_response_body(envoy);
        let mut size =
            envoy_dynamic_module_callback_http_get_body_size(envoy, kind::RECEIVED_RESPONSE);
        if !same {
            size = size.saturating_add(envoy_dynamic_module_callback_http_get_body_size(
                envoy,
                kind::BUFFERED_RESPONSE,
            ));
        }
        let mut body = Vec::with_capacity(size);
        if !same {
            read_chunks(envoy, kind::BUFFERED_RESPONSE, &mut body);
        }
        read_chunks(envoy, kind::RECEIVED_RESPONSE, &mut body);
        if stream.json {
            let kinds: &[u32] = if same {
                &[kind::RECEIVED_RESPONSE]
            } else {
                &[kind::BUFFERED_RESPONSE, kind::RECEIVED_RESPONSE]
            };
            for &kind in kinds {
                let size = envoy_dynamic_module_callback_http_get_body_size(envoy, kind);
                if size > 0 {
                    envoy_dynamic_module_callback_http_drain_body(envoy, kind, size);
                }
            }
            envoy_dynamic_module_callback_http_append_body(
                envoy,
                kind::RECEIVED_RESPONSE,
                ModuleBuffer::of(&body),
            );
        }
        std::hint::black_box(&body);
    }
    status::CONTINUE
}

/// A stream's state from the module pointer Envoy passes back; `None` for the empty
/// module's streams (the static filter or a null pointer).
///
/// # Safety
/// `module` is null, the empty module's static filter, or a pointer from [`new_stream`]
/// not yet given to [`drop_stream`].
pub unsafe fn stream<'a>(
    module: *const c_void,
    empty: *const c_void,
) -> Option<&'a mut FloorStream> {
    if module.is_null() || module == empty {
        return None;
    }
    // SAFETY: guaranteed by the caller: a live `FloorStream` of `new_stream`, used only by
    // the hook Envoy is running on this stream.
    Some(unsafe { &mut *module.cast::<FloorStream>().cast_mut() })
}

/// A new stream's state, for Envoy to pass back.
pub fn new_stream() -> *const c_void {
    Box::into_raw(Box::<FloorStream>::default())
        .cast_const()
        .cast()
}

/// Frees a stream's state.
///
/// # Safety
/// As [`stream`]; the pointer is not used again.
pub unsafe fn drop_stream(module: *const c_void, empty: *const c_void) {
    if module.is_null() || module == empty {
        return;
    }
    // SAFETY: guaranteed by the caller: the pointer came from `Box::into_raw`.
    drop(unsafe { Box::from_raw(module.cast::<FloorStream>().cast_mut()) });
}

/// Unit tests only: an Envoy stand-in that records the calls the floor makes.
#[cfg(test)]
pub mod test_envoy {
    #![allow(clippy::missing_safety_doc)]
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// The calls made, by name, in order.
        pub static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        /// The response headers the stand-in has.
        pub static RESPONSE_TYPE: RefCell<&'static [u8]> = const { RefCell::new(b"text/plain") };
    }

    fn called(name: &str) {
        CALLS.with(|c| c.borrow_mut().push(name.to_string()));
    }

    static NAME: &[u8] = b"content-type";
    static BODY: &[u8] = b"{\"a\":1}";

    pub unsafe fn envoy_dynamic_module_callback_http_get_headers_size(
        _: EnvoyPtr,
        _: u32,
    ) -> usize {
        called("get_headers_size");
        1
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_headers(
        _: EnvoyPtr,
        _: u32,
        out: *mut EnvoyHeader,
    ) -> bool {
        called("get_headers");
        let value = RESPONSE_TYPE.with(|t| *t.borrow());
        // SAFETY: the floor passes room for the one header announced.
        unsafe {
            *out = EnvoyHeader {
                key_ptr: NAME.as_ptr().cast(),
                key_length: NAME.len(),
                value_ptr: value.as_ptr().cast(),
                value_length: value.len(),
            };
        }
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_set_header(
        _: EnvoyPtr,
        _: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool {
        called(&format!(
            "set_header {} null={}",
            key.length,
            value.ptr.is_null()
        ));
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_add_header(
        _: EnvoyPtr,
        _: u32,
        key: ModuleBuffer,
        _: ModuleBuffer,
    ) -> bool {
        called(&format!("add_header {}", key.length));
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        _: EnvoyPtr,
        kind: u32,
    ) -> usize {
        called(&format!("get_body_chunks_size {kind}"));
        usize::from(kind == super::kind::RECEIVED_RESPONSE)
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_body_chunks(
        _: EnvoyPtr,
        _: u32,
        out: *mut EnvoyBuffer,
    ) -> bool {
        called("get_body_chunks");
        // SAFETY: the floor passes room for the one chunk announced.
        unsafe {
            *out = EnvoyBuffer {
                ptr: BODY.as_ptr().cast(),
                length: BODY.len(),
            };
        }
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_body_size(
        _: EnvoyPtr,
        kind: u32,
    ) -> usize {
        if kind == super::kind::RECEIVED_RESPONSE {
            BODY.len()
        } else {
            0
        }
    }
    pub unsafe fn envoy_dynamic_module_callback_http_append_body(
        _: EnvoyPtr,
        _: u32,
        data: ModuleBuffer,
    ) -> bool {
        called(&format!("append_body {}", data.length));
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_drain_body(
        _: EnvoyPtr,
        _: u32,
        bytes: usize,
    ) -> bool {
        called(&format!("drain_body {bytes}"));
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        _: EnvoyPtr,
    ) -> bool {
        called("received_buffered_response_body");
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        _: EnvoyPtr,
        id: u32,
        _: *mut EnvoyBuffer,
    ) -> bool {
        called(&format!("get_attribute {id}"));
        false
    }
}
