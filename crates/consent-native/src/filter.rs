//! One HTTP stream: each hook hands Envoy's data to the core's [`Stream`] and carries out
//! the step it returns (header edits, the decision header, buffering, body replacement,
//! local replies), as the wasm filter's glue does. A host call that fails goes back to the
//! stream, which blocks (fail closed) or, in dry-run, lets the request through unchanged.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use consent_core::body::CivilDate;
use consent_core::decide::{block_reply, Decision, HeaderEdits, LocalReply, INTERNAL_ERROR_STATUS};
use consent_core::live::{MetaCache, SharedLookup, SnapshotSource};
use consent_core::policy::{CallerFacts, CallerFrom, RouteFacts};
use consent_core::stream::{
    BodyStart, BodyStep, ChunkStep, LedgerEmit, RequestStep, ResponseStep, Stop, Stream,
    TrailerStep,
};
use consent_core::{CompiledConfig, ConsentLookup, Direction, Reason};

use crate::abi::attribute;
use crate::abi::{body_status, headers_status, trailers_status};
use crate::config::FilterConfig;
use crate::envoy::{self, BodyPart, Level};
use crate::{metrics, stat_batch, store};

/// Filter-state key of the decision, the same as the wasm filter's property, so that an
/// access-log format (`%FILTER_STATE(wasm.consent_decision:PLAIN)%`) works with either
/// build.
pub const DECISION_STATE: &str = "wasm.consent_decision";

/// Response-code details of the filter's local replies.
const REPLY_DETAILS: &str = "consent_filter";

thread_local! {
    /// The snapshot metadata this worker read last, per namespace.
    static META: MetaCache = MetaCache::default();
    /// Requests seen by this worker without a request id, for sampling them.
    static UNNAMED: Cell<u64> = const { Cell::new(0) };
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

fn today() -> CivilDate {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    CivilDate::from_unix_seconds(secs)
}

/// Runs `decide` with the lookup `config` names: its inline consents, or the process's
/// snapshot store at the current time. A snapshot that cannot be read is logged, without
/// a subject.
fn with_lookup<R>(config: &CompiledConfig, decide: impl FnOnce(&dyn ConsentLookup) -> R) -> R {
    if config.snapshot.source == SnapshotSource::Inline {
        return decide(&config.inline_consents());
    }
    META.with(|cache| {
        let lookup = SharedLookup::new(config, &*store::STORE, cache, unix_ms());
        let result = decide(&lookup);
        if let Some(problem) = lookup.problem() {
            envoy::log(Level::Error, &format!("consent filter: {problem}"));
        }
        result
    })
}

/// What a hook returns to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Hold the headers (until the body is checked).
    Hold,
    /// Keep buffering the body.
    Buffer,
    /// A local reply was sent: nothing more goes on.
    Replied,
}

impl Verdict {
    /// The status code of a header hook.
    pub fn headers(self) -> u32 {
        match self {
            Verdict::Continue => headers_status::CONTINUE,
            Verdict::Hold | Verdict::Buffer | Verdict::Replied => headers_status::STOP_ITERATION,
        }
    }

    /// The status code of a body hook.
    pub fn body(self) -> u32 {
        match self {
            Verdict::Continue => body_status::CONTINUE,
            Verdict::Hold | Verdict::Buffer => body_status::STOP_ITERATION_AND_BUFFER,
            Verdict::Replied => body_status::STOP_ITERATION_NO_BUFFER,
        }
    }

    /// The status code of a trailer hook.
    pub fn trailers(self) -> u32 {
        match self {
            Verdict::Continue => trailers_status::CONTINUE,
            Verdict::Hold | Verdict::Buffer | Verdict::Replied => trailers_status::STOP_ITERATION,
        }
    }
}

/// The state of one stream.
pub struct Filter {
    shared: Arc<FilterConfig>,
    config: Rc<CompiledConfig>,
    stream: Stream,
    /// A hook panicked: the stream was failed closed and the core is not called again.
    poisoned: bool,
}

impl Filter {
    /// A filter for one stream under `shared` (this worker's copy of its compilation).
    pub fn new(shared: Arc<FilterConfig>) -> Option<Filter> {
        let config = shared.compiled()?;
        let stream = Stream::new(&config);
        Some(Filter {
            shared,
            config,
            stream,
            poisoned: false,
        })
    }

    /// Whether an earlier hook panicked (later hooks let everything pass untouched).
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    fn flush_stats(&mut self, envoy: envoy::Stream) {
        let stats = self.stream.take_stats();
        if stats.is_empty() {
            return;
        }
        let mode = self.stream.mode();
        let batched = self.shared.stat_batch.as_ref().is_some_and(|batch| {
            batch.add(unix_ms(), metrics::increments(mode, &stats)) == stat_batch::Added::Batched
        });
        if !batched {
            let increments = metrics::increments(mode, &stats);
            metrics::record_now(envoy, &self.shared.metrics, &self.config, increments);
        }
    }

    /// Sends a local reply; the stream goes no further.
    fn send(envoy: envoy::Stream, config: &CompiledConfig, reply: &LocalReply) -> Verdict {
        if let Some((_, value)) = &reply.decision_header {
            expose_decision(envoy, config, value);
        }
        envoy.send_response(
            reply.status,
            &reply.headers(),
            reply.body.as_bytes(),
            REPLY_DETAILS,
        );
        Verdict::Replied
    }

    /// Carries out a stop: a reply, or (dry-run) going on unchanged.
    fn stop(&mut self, envoy: envoy::Stream, stop: Stop) -> Verdict {
        self.flush_stats(envoy);
        match stop {
            Stop::Reply(reply) => Self::send(envoy, &self.config, &reply),
            Stop::Continue => Verdict::Continue,
        }
    }

    /// Envoy could not do what a step asked: the stream fails closed (dry-run: goes on).
    fn fail_closed(&mut self, envoy: envoy::Stream, what: &str) -> Verdict {
        let config = Rc::clone(&self.config);
        let stop = self.stream.fail_closed(&config);
        let outcome = if stop == Stop::Continue {
            "dry-run: passing the request unchanged"
        } else {
            "blocking the request"
        };
        envoy::log(Level::Error, &format!("consent filter: {what}; {outcome}"));
        self.stop(envoy, stop)
    }

    /// A hook panicked: the request is blocked with `internal_error` (even in dry-run, as
    /// a trapped wasm filter fails closed) and the stream is not decided any further.
    pub fn panicked(&mut self, envoy: envoy::Stream) -> Verdict {
        self.poisoned = true;
        envoy::log(
            Level::Error,
            "consent filter: a hook panicked; blocking the request",
        );
        let config = Rc::clone(&self.config);
        let reply = match self.stream.fail_closed(&config) {
            Stop::Reply(reply) => reply,
            Stop::Continue => block_reply(
                &config,
                &Decision::block(Reason::InternalError, None),
                INTERNAL_ERROR_STATUS,
            ),
        };
        Self::send(envoy, &config, &reply)
    }

    /// Carries out what a body start asks for; `Some(true)` when the headers must wait,
    /// `None` when a header could not be removed.
    fn begin_body(envoy: envoy::Stream, direction: Direction, start: &BodyStart) -> Option<bool> {
        match start {
            BodyStart::None | BodyStart::Refuse(_) => Some(false),
            BodyStart::Read { remove, hold } => {
                for name in remove.iter() {
                    if !envoy.remove_header(direction, name) {
                        return None;
                    }
                }
                Some(*hold)
            }
            BodyStart::Stream { remove } => {
                for name in remove.iter() {
                    if !envoy.remove_header(direction, name) {
                        return None;
                    }
                }
                Some(false)
            }
        }
    }

    /// The request headers arrived.
    pub fn on_request_headers(&mut self, envoy: envoy::Stream, end_of_stream: bool) -> Verdict {
        let config = Rc::clone(&self.config);
        let facts = HostFacts::read(envoy, &config);
        let stream = &mut self.stream;
        let step = envoy.with_headers(Direction::Request, |headers| {
            let pairs = headers.iter().copied();
            with_lookup(&config, |lookup| {
                stream.on_request_headers_with_ledger(
                    &config,
                    pairs,
                    &facts.caller(),
                    &facts.route(),
                    lookup,
                    end_of_stream,
                    crate::ledger::available,
                )
            })
        });
        let Some(step) = step else {
            return self.fail_closed(envoy, "cannot read request headers");
        };
        self.flush_stats(envoy);
        let (edits, (name, value), body) = match step {
            RequestStep::Reply(reply) => return Self::send(envoy, &config, &reply),
            RequestStep::Forward {
                edits,
                decision_header,
                body,
            } => (edits, decision_header, body),
        };
        if !apply_edits(envoy, Direction::Request, &edits) {
            return self.fail_closed(envoy, "cannot remove forbidden request data");
        }
        let set = if self.stream.decision_header_sent() {
            envoy.set_header(Direction::Request, &name, value.as_bytes())
        } else {
            envoy.add_header(Direction::Request, &name, value.as_bytes())
        };
        if !set {
            return self.fail_closed(envoy, "cannot set the decision header");
        }
        expose_decision(envoy, &config, &value);
        if let BodyStart::Refuse(reply) = &body {
            return Self::send(envoy, &config, reply);
        }
        match Self::begin_body(envoy, Direction::Request, &body) {
            Some(true) => Verdict::Hold,
            Some(false) => Verdict::Continue,
            None => self.fail_closed(envoy, "cannot prepare the body for rewriting"),
        }
    }

    /// The response headers arrived.
    pub fn on_response_headers(&mut self, envoy: envoy::Stream, end_of_stream: bool) -> Verdict {
        let config = Rc::clone(&self.config);
        if !self.stream.reads_response(&config) {
            return Verdict::Continue;
        }
        let stream = &mut self.stream;
        let step = envoy.with_headers(Direction::Response, |headers| {
            stream.on_response_headers(&config, headers.iter().copied(), end_of_stream)
        });
        let Some(step) = step else {
            return self.fail_closed(envoy, "cannot read response headers");
        };
        self.flush_stats(envoy);
        let (edits, body) = match step {
            ResponseStep::Pass => return Verdict::Continue,
            ResponseStep::Reply(reply) => return Self::send(envoy, &config, &reply),
            ResponseStep::Forward { edits, body } => (edits, body),
        };
        if !apply_edits(envoy, Direction::Response, &edits) {
            return self.fail_closed(envoy, "cannot remove forbidden response headers");
        }
        match Self::begin_body(envoy, Direction::Response, &body) {
            Some(true) => Verdict::Hold,
            Some(false) => Verdict::Continue,
            None => self.fail_closed(envoy, "cannot prepare the body for rewriting"),
        }
    }

    /// Body data of one direction arrived.
    pub fn on_body(
        &mut self,
        envoy: envoy::Stream,
        direction: Direction,
        end_of_stream: bool,
    ) -> Verdict {
        let config = Rc::clone(&self.config);
        if self.stream.streaming(direction) {
            return self.on_chunk(envoy, &config, direction, end_of_stream);
        }
        if !self.stream.reading(direction) {
            return Verdict::Continue;
        }
        let size = envoy.body_size(direction, BodyPart::Whole);
        let step = self
            .stream
            .on_body_data(&config, direction, size, end_of_stream);
        self.body_step(envoy, &config, direction, step, BodyPart::Whole)
    }

    /// One chunk of a walked gRPC body: forwarded rewritten, as it passes.
    fn on_chunk(
        &mut self,
        envoy: envoy::Stream,
        config: &CompiledConfig,
        direction: Direction,
        end_of_stream: bool,
    ) -> Verdict {
        let Some(chunk) = envoy.body(direction, BodyPart::Received) else {
            return self.fail_closed(envoy, "cannot read the grpc body");
        };
        let step = self
            .stream
            .on_chunk(config, direction, &chunk, end_of_stream, today);
        self.flush_stats(envoy);
        match step {
            ChunkStep::Continue => Verdict::Continue,
            ChunkStep::Replace(bytes) => {
                if bytes == chunk {
                    return Verdict::Continue;
                }
                if envoy.replace_body(direction, BodyPart::Received, &bytes) {
                    Verdict::Continue
                } else {
                    self.fail_closed(envoy, "cannot replace grpc messages")
                }
            }
            ChunkStep::Reply(reply) => Self::send(envoy, config, &reply),
        }
    }

    /// Trailers of one direction: they end a buffered body, or a walked gRPC body (whose
    /// response trailers may carry a refusal's status).
    pub fn on_trailers(&mut self, envoy: envoy::Stream, direction: Direction) -> Verdict {
        let config = Rc::clone(&self.config);
        if self.stream.streaming(direction) {
            let step = self.stream.on_grpc_trailers(&config, direction);
            self.flush_stats(envoy);
            return match step {
                TrailerStep::Continue => Verdict::Continue,
                TrailerStep::Reply(reply) => Self::send(envoy, &config, &reply),
                TrailerStep::Set(trailers) => {
                    for (name, value) in &trailers {
                        if !envoy.set_trailer(direction, name, value.as_bytes()) {
                            return self.fail_closed(envoy, "cannot set the grpc status");
                        }
                    }
                    Verdict::Continue
                }
            };
        }
        let step = self.stream.on_trailers(direction);
        self.body_step(envoy, &config, direction, step, BodyPart::Buffered)
    }

    /// After a request body check: the decision header says `body=unread` when the body
    /// passed without being read (headers held until now).
    fn update_decision_header(
        &mut self,
        envoy: envoy::Stream,
        config: &CompiledConfig,
        direction: Direction,
    ) -> bool {
        if direction != Direction::Request {
            return true;
        }
        let Some((name, value)) = self.stream.header_update(config) else {
            return true;
        };
        expose_decision(envoy, config, &value);
        envoy.set_header(Direction::Request, &name, value.as_bytes())
    }

    /// Carries out a body step; `part` is where the body is (buffered plus this hook's
    /// data, or, in a trailers hook, buffered).
    fn body_step(
        &mut self,
        envoy: envoy::Stream,
        config: &CompiledConfig,
        direction: Direction,
        step: BodyStep,
        part: BodyPart,
    ) -> Verdict {
        match step {
            BodyStep::Continue => {
                self.flush_stats(envoy);
                if !self.update_decision_header(envoy, config, direction) {
                    return self.fail_closed(envoy, "cannot set the decision header");
                }
                Verdict::Continue
            }
            BodyStep::Buffer => Verdict::Buffer,
            BodyStep::Reply(reply) => {
                self.flush_stats(envoy);
                Self::send(envoy, config, &reply)
            }
            BodyStep::ReadWhole => {
                let Some(body) = envoy.body(direction, part) else {
                    return self.fail_closed(envoy, "cannot read the body");
                };
                let stream = &mut self.stream;
                let next = with_lookup(config, |lookup| {
                    stream.on_whole_body(config, direction, &body, today, lookup)
                });
                match next {
                    BodyStep::Replace(new_body) => {
                        self.flush_stats(envoy);
                        if !self.update_decision_header(envoy, config, direction) {
                            return self.fail_closed(envoy, "cannot set the decision header");
                        }
                        if envoy.replace_body(direction, part, &new_body) {
                            Verdict::Continue
                        } else {
                            self.fail_closed(envoy, "cannot replace the body")
                        }
                    }
                    other => self.body_step(envoy, config, direction, other, part),
                }
            }
            // Only `on_whole_body` replaces, and it is handled above.
            BodyStep::Replace(_) => self.fail_closed(envoy, "unexpected body replacement"),
        }
    }

    /// The stream is complete: its provision record, and its decision-log line if it is
    /// in the sample.
    pub fn on_complete(&mut self, envoy: envoy::Stream) {
        let config = Rc::clone(&self.config);
        if config.ledger.enabled {
            self.record_provision(envoy, &config);
        }
        if !config.decision_log.enabled {
            return;
        }
        let fallback = UNNAMED.with(|n| {
            let next = n.get().wrapping_add(1);
            n.set(next);
            next
        });
        let version = match config.snapshot.source {
            SnapshotSource::Shared => META.with(|cache| cache.last_version(&config)),
            SnapshotSource::Inline => Some(config.consents.version),
        };
        let line = self.stream.log_line(
            &config,
            fallback,
            unix_ms(),
            || envoy.attribute(attribute::XDS_ROUTE_NAME),
            version,
        );
        if let Some(json) = line {
            envoy::log(Level::Info, &format!("consent_decision {json}"));
        }
    }
}

impl Filter {
    /// Puts the stream's provision record in the ledger's outbox, if it is a provision the
    /// ledger records; counts one that is not kept.
    fn record_provision(&mut self, envoy: envoy::Stream, config: &CompiledConfig) {
        let kept = match self
            .stream
            .ledger_emit(config, unix_ms, crate::ledger::unique)
        {
            LedgerEmit::Nothing => return,
            LedgerEmit::Unrecorded => false,
            LedgerEmit::Record(json) => crate::ledger::queue(json),
        };
        if !kept {
            if let Some(id) = self.shared.ledger_metrics.dropped {
                envoy.count(id, &[], 1);
            }
        }
    }
}

/// Puts the decision header value in filter state, where access logs can print it, when
/// the configuration asks for it (`observe.access_log_decision`, as the wasm filter).
fn expose_decision(envoy: envoy::Stream, config: &CompiledConfig, value: &str) {
    if !config.observe.access_log_decision {
        return;
    }
    if !envoy.set_filter_state(DECISION_STATE, value.as_bytes()) {
        envoy::log(
            Level::Debug,
            "consent filter: cannot set the decision filter state",
        );
    }
}

/// Applies header edits to one direction: removals, the cookies kept (every `Cookie` or
/// `Set-Cookie` header goes, then the kept values are added back in order) and the new
/// `:path`.
fn apply_edits(envoy: envoy::Stream, direction: Direction, edits: &HeaderEdits) -> bool {
    for name in &edits.remove {
        if !envoy.remove_header(direction, name) {
            return false;
        }
    }
    if let Some(cookies) = &edits.cookies {
        if !envoy.remove_header(direction, cookies.header) {
            return false;
        }
        for value in &cookies.keep {
            if !envoy.add_header(direction, cookies.header, value) {
                return false;
            }
        }
    }
    if let Some(path) = &edits.new_path {
        if !envoy.set_header(Direction::Request, ":path", path.as_bytes()) {
            return false;
        }
    }
    true
}

/// What the decision needs from Envoy besides the headers: the peer certificate's SANs or
/// the destination cluster, and the route name, each read only when the configuration
/// uses it.
#[derive(Debug, Default)]
struct HostFacts {
    uri_san: Option<String>,
    dns_san: Option<String>,
    cluster: Option<String>,
    route_name: Option<String>,
}

impl HostFacts {
    fn read(envoy: envoy::Stream, config: &CompiledConfig) -> HostFacts {
        let mut facts = HostFacts::default();
        match config.caller.from {
            CallerFrom::PeerCertificate => {
                facts.uri_san = envoy.attribute(attribute::CONNECTION_URI_SAN_PEER_CERTIFICATE);
                let need_dns = config.caller.has_dns_identities
                    || (facts.uri_san.is_none() && config.caller.unidentified.is_some());
                if need_dns {
                    facts.dns_san = envoy.attribute(attribute::CONNECTION_DNS_SAN_PEER_CERTIFICATE);
                }
            }
            CallerFrom::UpstreamCluster => {
                facts.cluster = envoy.attribute(attribute::XDS_CLUSTER_NAME);
            }
        }
        if config.routes.uses_route_name {
            facts.route_name = envoy.attribute(attribute::XDS_ROUTE_NAME);
        }
        facts
    }

    fn caller(&self) -> CallerFacts<'_> {
        CallerFacts {
            uri_san: self.uri_san.as_deref(),
            dns_san: self.dns_san.as_deref(),
            cluster: self.cluster.as_deref(),
            ..CallerFacts::default()
        }
    }

    fn route(&self) -> RouteFacts<'_> {
        RouteFacts {
            route_name: self.route_name.as_deref(),
            ..RouteFacts::default()
        }
    }
}
