//! Thin wrappers over proxy-wasm host calls that return `Result` instead of panicking,
//! so that a failed call is a fail-closed decision rather than a trapped VM.

use consent_core::Direction;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

/// Header list as the host gives it: lowercase names, raw value bytes.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The plugin configuration bytes (empty when Envoy has none).
pub fn plugin_configuration() -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .map(Option::unwrap_or_default)
}

/// All headers of one direction, every occurrence of a repeated header included.
pub fn headers(direction: Direction) -> Result<Headers, Status> {
    hostcalls::get_map_bytes(header_map(direction))
}

/// Sets a request header, replacing any value the client sent.
pub fn set_request_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
}

/// Answers the request locally.
pub fn send_reply(status: u16, headers: Vec<(&str, &str)>, body: &[u8]) -> Result<(), Status> {
    hostcalls::send_http_response(u32::from(status), headers, Some(body))
}

fn buffer(direction: Direction) -> BufferType {
    match direction {
        Direction::Request => BufferType::HttpRequestBody,
        Direction::Response => BufferType::HttpResponseBody,
    }
}

fn header_map(direction: Direction) -> MapType {
    match direction {
        Direction::Request => MapType::HttpRequestHeaders,
        Direction::Response => MapType::HttpResponseHeaders,
    }
}

/// The buffered body, `size` bytes.
pub fn body(direction: Direction, size: usize) -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(buffer(direction), 0, size).map(Option::unwrap_or_default)
}

/// Replaces the whole buffered body (`size` bytes) by `value`.
pub fn replace_body(direction: Direction, size: usize, value: &[u8]) -> Result<(), Status> {
    hostcalls::set_buffer(buffer(direction), 0, size, value)
}

/// Adds one more value of a header in either direction (after the others).
pub fn add_header(direction: Direction, name: &str, value: &[u8]) -> Result<(), Status> {
    hostcalls::add_map_value_bytes(header_map(direction), name, value)
}

/// Sets a trailer of either direction, replacing any value (gRPC status trailers).
pub fn set_trailer(direction: Direction, name: &str, value: &str) -> Result<(), Status> {
    let map = match direction {
        Direction::Request => MapType::HttpRequestTrailers,
        Direction::Response => MapType::HttpResponseTrailers,
    };
    hostcalls::set_map_value(map, name, Some(value))
}

/// Removes every occurrence of a header in either direction.
pub fn remove_header(direction: Direction, name: &str) -> Result<(), Status> {
    hostcalls::remove_map_value(header_map(direction), name)
}

/// Seconds since the Unix epoch, from the host clock.
pub fn unix_seconds() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A value in Envoy shared data (same `vm_id`) with its CAS token.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key)
}

/// Sets a value in Envoy shared data.
pub fn set_shared_data(key: &str, value: &[u8]) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), None)
}

/// A string property of the stream or connection (e.g. `["xds", "route_name"]`).
/// Absent or empty is `None`; a value that is not UTF-8 becomes U+FFFD, which no
/// identity or route pattern matches (it still counts as present).
pub fn string_property(path: &[&str]) -> Result<Option<String>, Status> {
    let value = hostcalls::get_property(path.to_vec())?;
    Ok(value
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8(v).unwrap_or_else(|_| String::from("\u{fffd}"))))
}

/// Sets a stream property; Envoy keeps it in filter state as `wasm.<name>`, where access
/// logs can read it.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), Status> {
    hostcalls::set_property(vec![name], Some(value))
}

/// Sets a value in Envoy shared data only if it has not changed since the read that gave
/// `cas` (the write fails with `CasMismatch` otherwise). `None` writes unconditionally.
pub fn set_shared_data_cas(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// The root id this plugin instance was configured with.
pub fn root_id() -> Option<String> {
    hostcalls::get_property(vec!["plugin_root_id"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Milliseconds since the Unix epoch, from the host clock.
pub fn unix_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Starts an HTTP call to an Envoy cluster; the answer comes to the calling context.
pub fn http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: std::time::Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

/// Starts an HTTP call with a body to an Envoy cluster; the answer comes to the calling
/// context.
pub fn http_call_with_body(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: &[u8],
    timeout: std::time::Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
}

/// Registers (or takes over) the shared queue `name` of this VM's `vm_id`: its records
/// are kept, and this root context now drains it.
pub fn register_queue(name: &str) -> Result<u32, Status> {
    hostcalls::register_shared_queue(name)
}

/// The shared queue `name` of `vm_id`, if some VM registered it.
pub fn resolve_queue(vm_id: &str, name: &str) -> Result<Option<u32>, Status> {
    hostcalls::resolve_shared_queue(vm_id, name)
}

/// Adds one message to a shared queue.
pub fn enqueue(queue: u32, value: &[u8]) -> Result<(), Status> {
    hostcalls::enqueue_shared_queue(queue, Some(value))
}

/// Takes the oldest message of a shared queue this VM registered (`None`: empty).
pub fn dequeue(queue: u32) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::dequeue_shared_queue(queue)
}

/// The `vm_id` of this plugin's VM (shared data and queues are keyed by it).
pub fn vm_id() -> Option<String> {
    hostcalls::get_property(vec!["plugin_vm_id"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Headers of the answer to an HTTP call.
pub fn http_call_headers() -> Result<Headers, Status> {
    hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
}

/// Body of the answer to an HTTP call.
pub fn http_call_body(size: usize) -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).map(Option::unwrap_or_default)
}

/// Sets the period of `on_tick`.
pub fn set_tick(period: std::time::Duration) -> Result<(), Status> {
    hostcalls::set_tick_period(period)
}

/// A gauge or counter in Envoy's stats (shown as `wasmcustom.<name>`, or `<name>` in
/// Prometheus output).
#[derive(Debug, Clone, Copy)]
pub struct Metric(u32);

impl Metric {
    /// Defines a gauge; `None` if the host refuses.
    pub fn gauge(name: &str) -> Option<Metric> {
        hostcalls::define_metric(proxy_wasm::types::MetricType::Gauge, name)
            .ok()
            .map(Metric)
    }

    /// Defines a counter; `None` if the host refuses.
    pub fn counter(name: &str) -> Option<Metric> {
        hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name)
            .ok()
            .map(Metric)
    }

    /// Sets a gauge.
    pub fn set(self, value: u64) {
        let _ = hostcalls::record_metric(self.0, value);
    }

    /// Adds one to a counter.
    pub fn inc(self) {
        self.add(1);
    }

    /// Adds `by` to a counter.
    pub fn add(self, by: u64) {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let _ = hostcalls::increment_metric(self.0, by);
    }
}
