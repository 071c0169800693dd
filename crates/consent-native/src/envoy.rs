//! Safe wrappers over the callbacks in [`crate::abi`]: one `unsafe` block per call, each
//! with the ABI's guarantee that makes it sound. Nothing here decides; the glue in
//! `filter.rs` and `fetcher.rs` calls these and reports a `false` back to the core as a
//! host failure.

use std::ffi::c_char;

use consent_core::Direction;

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, EnvoyPtr, ModuleBuffer, ModuleHeader};

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// Writes one line to Envoy's log (`[dynamic_modules]` logger). Never a user ID, a value or
/// key material: callers log reasons, counts and names from the configuration only.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => abi::log_level::DEBUG,
        Level::Info => abi::log_level::INFO,
        Level::Warn => abi::log_level::WARN,
        Level::Error => abi::log_level::ERROR,
    };
    #[cfg(not(test))]
    // SAFETY: the buffer points at `message`, which outlives the call; Envoy copies it.
    unsafe {
        abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes()));
    }
    #[cfg(test)]
    let _ = (level, message);
}

/// Whether Envoy runs with `--mode validate` (nothing is fetched then). Main thread only.
pub fn validation_mode() -> bool {
    // SAFETY: takes no arguments; called from a configuration hook, on the main thread as
    // the ABI requires.
    unsafe { abi::envoy_dynamic_module_callback_is_validation_mode() }
}

/// Borrows `len` bytes at `ptr` (Envoy's memory) for the current hook.
///
/// # Safety
/// `ptr` must point at `len` readable bytes that stay valid and unchanged while the slice
/// is used (Envoy guarantees this until the end of the hook or the next setter call).
unsafe fn borrowed<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// Headers (or body chunks) read into arrays on the stack before a hook needs the heap.
const STACK_HEADERS: usize = 32;

/// A header name as text. Envoy's names are lowercase ASCII (checked word by word, without
/// a UTF-8 decoder call per name); one that is not UTF-8 cannot be a name the filter looks
/// for, so it is passed as U+FFFD, which matches nothing.
fn header_name(name: &[u8]) -> &str {
    if name.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return unsafe { std::str::from_utf8_unchecked(name) };
    }
    std::str::from_utf8(name).unwrap_or("\u{fffd}")
}

/// One HTTP stream as Envoy sees it (the `filter_envoy_ptr` of the hooks).
#[derive(Debug, Clone, Copy)]
pub struct Stream(pub EnvoyPtr);

fn header_kind(direction: Direction) -> u32 {
    match direction {
        Direction::Request => abi::header_type::REQUEST_HEADER,
        Direction::Response => abi::header_type::RESPONSE_HEADER,
    }
}

fn trailer_kind(direction: Direction) -> u32 {
    match direction {
        Direction::Request => abi::header_type::REQUEST_TRAILER,
        Direction::Response => abi::header_type::RESPONSE_TRAILER,
    }
}

fn received(direction: Direction) -> u32 {
    match direction {
        Direction::Request => abi::body_type::RECEIVED_REQUEST,
        Direction::Response => abi::body_type::RECEIVED_RESPONSE,
    }
}

fn buffered(direction: Direction) -> u32 {
    match direction {
        Direction::Request => abi::body_type::BUFFERED_REQUEST,
        Direction::Response => abi::body_type::BUFFERED_RESPONSE,
    }
}

/// Which body bytes a hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPart {
    /// The data of the current body hook only (a walked gRPC chunk).
    Received,
    /// Everything so far: what was buffered plus the data of the current hook.
    Whole,
    /// What was buffered (a trailers hook, where no data arrives).
    Buffered,
}

impl Stream {
    /// Runs `read` on every header of one direction's headers (lowercase names, each
    /// occurrence); `None` when Envoy has none to give. The slices are Envoy's and are
    /// valid only inside `read`, which must not change the headers.
    pub fn with_headers<R>(
        self,
        direction: Direction,
        read: impl FnOnce(&[(&str, &[u8])]) -> R,
    ) -> Option<R> {
        let kind = header_kind(direction);
        // SAFETY: `self.0` is the stream pointer of the current hook.
        let count =
            unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, kind) };
        // A request's or a response's headers fit on the stack; a larger map goes to the heap.
        let mut raw_stack = [EnvoyHeader::empty(); STACK_HEADERS];
        let mut raw_heap = Vec::new();
        let raw: &mut [EnvoyHeader] = match raw_stack.get_mut(..count) {
            Some(raw) => raw,
            None => {
                raw_heap.resize(count, EnvoyHeader::empty());
                &mut raw_heap
            }
        };
        if count > 0 {
            // SAFETY: `raw` has room for the `count` headers Envoy reported.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_get_headers(self.0, kind, raw.as_mut_ptr())
            };
            if !ok {
                return None;
            }
        }
        let mut pairs_stack: [(&str, &[u8]); STACK_HEADERS] = [("", &[]); STACK_HEADERS];
        let mut pairs_heap = Vec::new();
        let pairs: &mut [(&str, &[u8])] = match pairs_stack.get_mut(..count) {
            Some(pairs) => pairs,
            None => {
                pairs_heap.resize(count, ("", &[][..]));
                &mut pairs_heap
            }
        };
        for (pair, header) in pairs.iter_mut().zip(raw.iter()) {
            // SAFETY: Envoy filled these from its header map; they stay valid until the end
            // of this hook and no setter is called while `read` runs.
            let (name, value) = unsafe {
                (
                    borrowed(header.key_ptr, header.key_length),
                    borrowed(header.value_ptr, header.value_length),
                )
            };
            *pair = (header_name(name), value);
        }
        Some(read(pairs))
    }

    fn set(self, kind: u32, name: &str, value: Option<&[u8]>) -> bool {
        let value = value.map_or_else(ModuleBuffer::null, ModuleBuffer::of);
        // SAFETY: both buffers outlive the call; Envoy copies them into its header map.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.0,
                kind,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// Sets a header of one direction, replacing every value.
    pub fn set_header(self, direction: Direction, name: &str, value: &[u8]) -> bool {
        self.set(header_kind(direction), name, Some(value))
    }

    /// Removes every value of a header of one direction (true when it was not there).
    pub fn remove_header(self, direction: Direction, name: &str) -> bool {
        self.set(header_kind(direction), name, None)
    }

    /// Adds one more value of a header of one direction, after the others.
    pub fn add_header(self, direction: Direction, name: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.0,
                header_kind(direction),
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Sets a trailer of one direction, replacing every value.
    pub fn set_trailer(self, direction: Direction, name: &str, value: &[u8]) -> bool {
        self.set(trailer_kind(direction), name, Some(value))
    }

    /// Answers locally with `status`, `headers` and `body`; `details` names why in Envoy's
    /// response-code details.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut raw: Vec<ModuleHeader> = headers
            .iter()
            .map(|(n, v)| ModuleHeader::of(n, v.as_bytes()))
            .collect();
        // SAFETY: the headers, body and details outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            );
        }
    }

    fn chunks(self, kind: u32, out: &mut Vec<u8>) -> bool {
        // SAFETY: `self.0` is the stream pointer of the current hook.
        let count =
            unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind) };
        if count == 0 {
            return true;
        }
        let mut raw_stack = [EnvoyBuffer::empty(); STACK_HEADERS];
        let mut raw_heap = Vec::new();
        let raw: &mut [EnvoyBuffer] = match raw_stack.get_mut(..count) {
            Some(raw) => raw,
            None => {
                raw_heap.resize(count, EnvoyBuffer::empty());
                &mut raw_heap
            }
        };
        // SAFETY: `raw` has room for the `count` chunks Envoy reported.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(self.0, kind, raw.as_mut_ptr())
        };
        if !ok {
            return false;
        }
        for chunk in raw.iter() {
            // SAFETY: Envoy's body slices, valid until the end of this hook; copied at once.
            out.extend_from_slice(unsafe { borrowed(chunk.ptr, chunk.length) });
        }
        true
    }

    fn size(self, kind: u32) -> usize {
        // SAFETY: `self.0` is the stream pointer of the current hook.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.0, kind) }
    }

    /// Whether this hook's data is the body an earlier filter buffered (then the buffered
    /// body and the received data are the same bytes).
    fn received_is_buffered(self, direction: Direction) -> bool {
        // SAFETY: `self.0` is the stream pointer of the current hook.
        unsafe {
            match direction {
                Direction::Request => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0)
                }
                Direction::Response => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_response_body(self.0)
                }
            }
        }
    }

    /// Bytes of `part` of one direction's body, without reading them.
    pub fn body_size(self, direction: Direction, part: BodyPart) -> usize {
        match part {
            BodyPart::Received => self.size(received(direction)),
            BodyPart::Buffered => self.size(buffered(direction)),
            BodyPart::Whole if self.received_is_buffered(direction) => {
                self.size(received(direction))
            }
            BodyPart::Whole => self
                .size(buffered(direction))
                .saturating_add(self.size(received(direction))),
        }
    }

    /// A copy of `part` of one direction's body; `None` when Envoy refused.
    pub fn body(self, direction: Direction, part: BodyPart) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.body_size(direction, part));
        let ok = match part {
            BodyPart::Received => self.chunks(received(direction), &mut out),
            BodyPart::Buffered => self.chunks(buffered(direction), &mut out),
            BodyPart::Whole if self.received_is_buffered(direction) => {
                self.chunks(received(direction), &mut out)
            }
            BodyPart::Whole => {
                self.chunks(buffered(direction), &mut out)
                    && self.chunks(received(direction), &mut out)
            }
        };
        ok.then_some(out)
    }

    fn drain(self, kind: u32) -> bool {
        let size = self.size(kind);
        // SAFETY: `self.0` is the stream pointer of the current hook.
        size == 0
            || unsafe { abi::envoy_dynamic_module_callback_http_drain_body(self.0, kind, size) }
    }

    fn append(self, kind: u32, bytes: &[u8]) -> bool {
        // SAFETY: the bytes outlive the call; Envoy copies them into its buffer.
        bytes.is_empty()
            || unsafe {
                abi::envoy_dynamic_module_callback_http_append_body(
                    self.0,
                    kind,
                    ModuleBuffer::of(bytes),
                )
            }
    }

    /// Replaces `part` of one direction's body by `bytes`.
    pub fn replace_body(self, direction: Direction, part: BodyPart, bytes: &[u8]) -> bool {
        match part {
            BodyPart::Received => {
                self.drain(received(direction)) && self.append(received(direction), bytes)
            }
            BodyPart::Buffered => {
                self.drain(buffered(direction)) && self.append(buffered(direction), bytes)
            }
            BodyPart::Whole if self.received_is_buffered(direction) => {
                self.drain(received(direction)) && self.append(received(direction), bytes)
            }
            BodyPart::Whole => {
                self.drain(buffered(direction))
                    && self.drain(received(direction))
                    && self.append(received(direction), bytes)
            }
        }
    }

    /// Sets a bytes value in the stream's filter state (access logs read it).
    pub fn set_filter_state(self, key: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// A string attribute (`abi::attribute`); absent or empty is `None`, and a value that
    /// is not UTF-8 becomes U+FFFD, which no identity or route pattern matches.
    pub fn attribute(self, id: u32) -> Option<String> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `out` is a valid place for Envoy to write the buffer to.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0, id, &mut out,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: Envoy's buffer, valid until the end of this hook; copied at once.
        let bytes = unsafe { borrowed(out.ptr, out.length) };
        if bytes.is_empty() {
            return None;
        }
        Some(String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| String::from("\u{fffd}")))
    }

    /// Adds `value` to the counter `id` with these label values (at most
    /// [`MAX_LABELS`]).
    pub fn count(self, id: usize, labels: &[&str], value: u64) -> bool {
        let (mut raw, len) = label_buffers(labels);
        // SAFETY: the label buffers outlive the call; their number matches the definition.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                raw.as_mut_ptr(),
                len,
                value,
            )
        };
        result == abi::metrics_result::SUCCESS
    }
}

/// The most label values a stat of this module has.
pub const MAX_LABELS: usize = 4;

/// Label values lent to Envoy for one call, without allocating: the buffers and how many
/// are used (no stat has more than [`MAX_LABELS`]; any past it would be dropped).
fn label_buffers(labels: &[&str]) -> ([ModuleBuffer; MAX_LABELS], usize) {
    let mut raw = [ModuleBuffer::null(); MAX_LABELS];
    for (slot, label) in raw.iter_mut().zip(labels) {
        *slot = ModuleBuffer::of(label.as_bytes());
    }
    (raw, labels.len().min(MAX_LABELS))
}

/// One filter configuration as Envoy sees it (the `filter_config_envoy_ptr`). Its calls are
/// made on the main thread only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config(pub EnvoyPtr);

/// Metric kinds a configuration defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
}

// SAFETY: the pointer is only passed to Envoy in calls made on the main thread (the
// configuration hooks and the fetcher); workers only carry it inside the configuration.
unsafe impl Send for Config {}
// SAFETY: as above.
unsafe impl Sync for Config {}

impl Config {
    /// Defines a metric with these label names; its id, or `None` if Envoy refused.
    pub fn define(self, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
        let mut raw: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::of(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        let name = ModuleBuffer::of(name.as_bytes());
        // SAFETY: the name and label buffers outlive the call and `id` is a valid place
        // for the result; called from a configuration hook (main thread).
        let result = unsafe {
            match kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        self.0,
                        name,
                        raw.as_mut_ptr(),
                        raw.len(),
                        &mut id,
                    )
                }
                MetricKind::Gauge => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                        self.0,
                        name,
                        raw.as_mut_ptr(),
                        raw.len(),
                        &mut id,
                    )
                }
            }
        };
        (result == abi::metrics_result::SUCCESS).then_some(id)
    }

    /// Sets an unlabelled gauge (main thread).
    pub fn set_gauge(self, id: usize, value: u64) {
        // SAFETY: no label buffers; called on the main thread, where the config lives.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }

    /// Adds one to an unlabelled counter (main thread).
    pub fn count(self, id: usize) {
        // SAFETY: no label buffers; called on the main thread, where the config lives.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                1,
            );
        }
    }

    /// Adds `value` to the counter `id` with these label values (main thread; at most
    /// [`MAX_LABELS`]).
    pub fn count_labelled(self, id: usize, labels: &[&str], value: u64) -> bool {
        let (mut raw, len) = label_buffers(labels);
        // SAFETY: the label buffers outlive the call; their number matches the definition;
        // called on the main thread, where the config lives.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                raw.as_mut_ptr(),
                len,
                value,
            )
        };
        result == abi::metrics_result::SUCCESS
    }

    /// A scheduler that posts events to this configuration on the main thread.
    pub fn scheduler(self) -> Option<Scheduler> {
        // SAFETY: called on the main thread with the configuration's own pointer.
        let ptr =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(Scheduler(ptr))
    }

    /// Starts a GET of `headers` to `cluster` (main thread); the call's id, or Envoy's
    /// refusal code.
    pub fn http_call(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.http_call_with_body(cluster, headers, &[], timeout_ms)
    }

    /// Starts a call of `headers` with `body` (none when empty) to `cluster` (main
    /// thread); the call's id, or Envoy's refusal code.
    pub fn http_call_with_body(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut raw: Vec<ModuleHeader> = headers
            .iter()
            .map(|(n, v)| ModuleHeader::of(n, v.as_bytes()))
            .collect();
        let mut id = 0u64;
        // SAFETY: the cluster name, headers and body outlive the call (Envoy copies them) and
        // `id` is a valid place for the result; main thread.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                if body.is_empty() {
                    ModuleBuffer::null()
                } else {
                    ModuleBuffer::of(body)
                },
                timeout_ms,
            )
        };
        if result == abi::callout_init::SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }
}

/// A scheduler of one configuration: posts events to it on the main thread from any
/// thread. Deleted with [`Scheduler::delete`] once nothing commits to it any more.
#[derive(Debug)]
pub struct Scheduler(EnvoyPtr);

// SAFETY: Envoy's scheduler may be committed to from any thread (that is its purpose);
// this module deletes it only after the one thread that commits has stopped.
unsafe impl Send for Scheduler {}
// SAFETY: as above: `commit` is thread-safe on Envoy's side.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    /// Posts `event` to the configuration's main-thread hook.
    pub fn commit(&self, event: u64) {
        // SAFETY: the scheduler is alive until `delete`, which runs after the last commit.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event)
        }
    }

    /// Deletes the scheduler.
    pub fn delete(self) {
        // SAFETY: nothing commits to it any more (the caller stopped the ticker first).
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// The headers and body of an HTTP call's answer, copied out of Envoy's buffers.
#[derive(Debug, Default)]
pub struct CallAnswer {
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl CallAnswer {
    /// Copies what Envoy handed to the callout hook.
    ///
    /// # Safety
    /// `headers` must point at `headers_len` headers and `chunks` at `chunks_len` buffers
    /// (either may be null with a length of 0), all valid for the current hook.
    pub unsafe fn copy(
        headers: *const EnvoyHeader,
        headers_len: usize,
        chunks: *const EnvoyBuffer,
        chunks_len: usize,
    ) -> Self {
        let mut answer = CallAnswer::default();
        if !headers.is_null() {
            // SAFETY: guaranteed by the caller.
            for h in unsafe { std::slice::from_raw_parts(headers, headers_len) } {
                // SAFETY: Envoy's header buffers, valid for the hook; copied at once.
                let (name, value) = unsafe {
                    (
                        borrowed(h.key_ptr, h.key_length),
                        borrowed(h.value_ptr, h.value_length),
                    )
                };
                answer.headers.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
        }
        if !chunks.is_null() {
            // SAFETY: guaranteed by the caller.
            for c in unsafe { std::slice::from_raw_parts(chunks, chunks_len) } {
                // SAFETY: Envoy's body buffers, valid for the hook; copied at once.
                answer
                    .body
                    .extend_from_slice(unsafe { borrowed(c.ptr, c.length) });
            }
        }
        answer
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::header_name;

    #[test]
    fn ascii_header_names_pass_as_they_are_and_others_only_when_utf8() {
        assert_eq!(header_name(b"x-user-id"), "x-user-id");
        assert_eq!(header_name(b""), "");
        assert_eq!(header_name("x-名前".as_bytes()), "x-名前");
        assert_eq!(header_name(b"x-\xff-id"), "\u{fffd}");
    }
}
