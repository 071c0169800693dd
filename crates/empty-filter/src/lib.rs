//! Two floor filters for the benchmarks.
//!
//! - root id `empty`: continues every callback; what proxy-wasm costs in Envoy before any
//!   work is done.
//! - root id `host_calls`: makes, per request, the host calls its plugin configuration lists
//!   (`name` or `name*N`, comma-separated; by default those of the consent filter's
//!   header-only path: read the request headers, two peer-certificate properties, the clock,
//!   one counter, add a request header, read the response headers; buffer a response body
//!   and read it, writing it back when it is JSON) and decides nothing. What it costs over `empty` is the
//!   host's price of those calls. (The consent filter no longer reads shared data per
//!   request, each worker keeps its own copy of the buckets, and writes filter state only
//!   with `observe.access_log_decision`: `shared` and `set_property` remain as calls to
//!   list, not in the default.)

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

    /// Shared-data key the `host_calls` filter reads (about the size of a consent bucket).
    const KEY: &str = "floor/bucket";

    /// The consent filter's header-only path, as host calls.
    const DEFAULT_CALLS: &str =
        "headers,uri_san,dns_san,time,metric,add_header,response_headers,body";

    /// One host call the `host_calls` filter makes.
    #[derive(Clone, Copy)]
    enum Call {
        Headers,
        Header,
        UriSan,
        DnsSan,
        RouteName,
        ConnectionId,
        Time,
        Shared,
        Metric,
        SetHeader,
        AddHeader,
        SetProperty,
        ResponseHeaders,
        /// Buffer a whole response body and read it; write a JSON one back unchanged (the
        /// consent filter reads every body a decision needs, whatever its label).
        Body,
    }

    impl Call {
        fn parse(name: &str) -> Option<Call> {
            Some(match name {
                "headers" => Call::Headers,
                "header" => Call::Header,
                "uri_san" => Call::UriSan,
                "dns_san" => Call::DnsSan,
                "route_name" => Call::RouteName,
                "connection_id" => Call::ConnectionId,
                "time" => Call::Time,
                "shared" => Call::Shared,
                "metric" => Call::Metric,
                "set_header" => Call::SetHeader,
                "add_header" => Call::AddHeader,
                "set_property" => Call::SetProperty,
                "response_headers" => Call::ResponseHeaders,
                "body" => Call::Body,
                _ => return None,
            })
        }

        fn run(self, metric: u32) {
            let _ = match self {
                Call::Headers => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map(|_| ()),
                Call::Header => {
                    hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-user-id").map(|_| ())
                }
                Call::UriSan => property(&["connection", "uri_san_peer_certificate"]),
                Call::DnsSan => property(&["connection", "dns_san_peer_certificate"]),
                Call::RouteName => property(&["xds", "route_name"]),
                Call::ConnectionId => property(&["connection", "id"]),
                Call::Time => hostcalls::get_current_time().map(|_| ()),
                Call::Shared => hostcalls::get_shared_data(KEY).map(|_| ()),
                Call::Metric => hostcalls::increment_metric(metric, 1),
                Call::SetHeader => hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    "x-consent-decision",
                    Some("outcome=redact; reason=consent_granted"),
                ),
                Call::AddHeader => hostcalls::add_map_value(
                    MapType::HttpRequestHeaders,
                    "x-consent-decision",
                    "outcome=redact; reason=consent_granted",
                ),
                Call::SetProperty => hostcalls::set_property(
                    vec!["consent_decision"],
                    Some(b"outcome=redact; reason=consent_granted".as_slice()),
                ),
                // Made in the response callbacks (see `Plan`).
                Call::ResponseHeaders | Call::Body => Ok(()),
            };
        }
    }

    fn property(path: &[&str]) -> Result<(), proxy_wasm::types::Status> {
        hostcalls::get_property(path.to_vec()).map(|_| ())
    }

    /// What the `host_calls` filter does per request, worked out once from its configuration.
    struct Plan {
        metric: u32,
        /// Calls made on the request headers.
        request: Vec<Call>,
        /// How many times the response headers are read.
        response_reads: usize,
        /// Whether JSON response bodies are buffered, read and written back.
        body: bool,
    }

    impl Plan {
        fn new(metric: u32, calls: Vec<Call>) -> Plan {
            let response_reads = calls
                .iter()
                .filter(|c| matches!(c, Call::ResponseHeaders))
                .count();
            let body = calls.iter().any(|c| matches!(c, Call::Body));
            let request = calls
                .into_iter()
                .filter(|c| !matches!(c, Call::ResponseHeaders | Call::Body))
                .collect();
            Plan {
                metric,
                request,
                response_reads,
                body,
            }
        }
    }

    /// Parses `name` or `name*N` items, comma-separated.
    fn parse_calls(text: &str) -> Vec<Call> {
        let mut calls = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, times) = match item.split_once('*') {
                Some((name, n)) => (name, n.parse().unwrap_or(1)),
                None => (item, 1),
            };
            if let Some(call) = Call::parse(name) {
                calls.extend(std::iter::repeat_n(call, times));
            } else {
                log::warn!("host_calls: unknown call {name}");
            }
        }
        calls
    }

    #[derive(Default)]
    struct Root {
        /// `Some` when this is the `host_calls` filter.
        plan: Option<std::rc::Rc<Plan>>,
    }

    impl Context for Root {}
    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let root = hostcalls::get_property(vec!["plugin_root_id"])
                .ok()
                .flatten();
            if root.as_deref() == Some(b"host_calls".as_slice()) {
                let _ = hostcalls::set_shared_data(KEY, Some(&[7u8; 96]), None);
                let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_CALLS.to_string());
                let metric = hostcalls::define_metric(MetricType::Counter, "floor.decisions")
                    .unwrap_or_default();
                self.plan = Some(std::rc::Rc::new(Plan::new(metric, parse_calls(&text))));
            }
            true
        }
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            match &self.plan {
                Some(plan) => Some(Box::new(HostCalls {
                    plan: plan.clone(),
                    buffering: false,
                    json: false,
                })),
                None => Some(Box::new(Empty)),
            }
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Empty;
    impl Context for Empty {}
    impl HttpContext for Empty {}

    struct HostCalls {
        plan: std::rc::Rc<Plan>,
        /// A response body is being buffered (`body`).
        buffering: bool,
        /// That body is labelled JSON (it is written back).
        json: bool,
    }
    impl Context for HostCalls {}
    impl HttpContext for HostCalls {
        fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
            for call in &self.plan.request {
                call.run(self.plan.metric);
            }
            Action::Continue
        }
        fn on_http_response_headers(&mut self, _n: usize, end: bool) -> Action {
            let body = self.plan.body;
            let mut json = false;
            for _ in 0..self.plan.response_reads.max(usize::from(body)) {
                let headers =
                    hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
                json = headers
                    .iter()
                    .any(|(n, v)| n == "content-type" && v.windows(4).any(|w| w == b"json"));
            }
            if body && !end {
                let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
                self.buffering = true;
                self.json = json;
                return Action::Pause;
            }
            Action::Continue
        }
        fn on_http_response_body(&mut self, size: usize, end: bool) -> Action {
            if !self.buffering {
                return Action::Continue;
            }
            if !end {
                return Action::Pause;
            }
            if let Ok(Some(body)) = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
                if self.json {
                    let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &body);
                }
            }
            Action::Continue
        }
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}
