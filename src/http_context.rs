//! The per-request context: hands each proxy-wasm callback to the core's
//! [`Stream`] and carries out the step it returns (header edits, the decision header,
//! buffering, body replacement, local replies). Any host failure goes back to the stream,
//! which blocks (fail closed) or, in dry-run, lets the request through unchanged.

use std::rc::Rc;

use consent_core::body::CivilDate;
use consent_core::decide::{not_configured_reply, HeaderEdits, LocalReply};
use consent_core::stream::{
    BodyStart, BodyStep, ChunkStep, RequestStep, ResponseStep, Stop, Stream, TrailerStep,
};
use consent_core::{CompiledConfig, Direction};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};

use crate::host;
use crate::request_facts::HostFacts;
use crate::shared_snapshot::{with_lookup, SharedReplica};
use crate::{metrics, observe};

/// State of one HTTP stream.
pub struct ConsentHttp {
    config: Option<Rc<CompiledConfig>>,
    /// This VM's copy of the live snapshot's buckets (a shared source).
    replica: Option<SharedReplica>,
    stream: Option<Stream>,
}

impl ConsentHttp {
    /// A context for one request; `config` is `None` only if configuration failed.
    pub fn new(config: Option<Rc<CompiledConfig>>, replica: Option<SharedReplica>) -> Self {
        let stream = config.as_deref().map(Stream::new);
        ConsentHttp {
            config,
            replica,
            stream,
        }
    }

    /// Sends a local reply; the stream goes no further.
    fn send(config: Option<&CompiledConfig>, reply: &LocalReply) -> Action {
        if let Some((_, value)) = &reply.decision_header {
            observe::expose_decision(config, value);
        }
        if let Err(status) = host::send_reply(reply.status, reply.headers(), reply.body.as_bytes())
        {
            log::error!("consent filter: cannot send the reply: {status:?}");
        }
        Action::Pause
    }

    /// Carries out a stop: a reply, or (dry-run) going on unchanged.
    fn stop(&mut self, stop: Stop) -> Action {
        self.flush_stats();
        match stop {
            Stop::Reply(reply) => Self::send(self.config.as_deref(), &reply),
            Stop::Continue => Action::Continue,
        }
    }

    /// The host could not do its part: the stream fails closed (dry-run: goes on).
    fn fail_closed(&mut self, config: &CompiledConfig, what: &str) -> Action {
        let Some(stream) = self.stream.as_mut() else {
            return Self::send(Some(config), &not_configured_reply());
        };
        let stop = stream.fail_closed(config);
        log::error!(
            "consent filter: {what}; {}",
            if stop == Stop::Continue {
                "dry-run: passing the request unchanged"
            } else {
                "blocking the request"
            }
        );
        self.stop(stop)
    }

    fn flush_stats(&mut self) {
        if let (Some(config), Some(stream)) = (self.config.as_deref(), self.stream.as_mut()) {
            metrics::record(config, stream.mode(), stream.take_stats());
        }
    }

    /// Carries out what a body start asks for; `Ok(true)` when the headers must wait.
    fn begin_body(&mut self, direction: Direction, start: &BodyStart) -> Result<bool, Status> {
        match start {
            BodyStart::None | BodyStart::Refuse(_) => Ok(false),
            BodyStart::Read { remove, hold } => {
                for name in remove.iter() {
                    host::remove_header(direction, name)?;
                }
                Ok(*hold)
            }
            BodyStart::Stream { remove } => {
                for name in remove.iter() {
                    host::remove_header(direction, name)?;
                }
                Ok(false)
            }
        }
    }

    /// Body data of one direction arrived (`size` bytes buffered so far, or, for a
    /// walked gRPC body, in this chunk).
    fn on_body(&mut self, direction: Direction, size: usize, end_of_stream: bool) -> Action {
        let (Some(config), Some(stream)) = (self.config.clone(), self.stream.as_mut()) else {
            return Action::Continue;
        };
        if stream.streaming(direction) {
            return self.on_chunk(&config, direction, size, end_of_stream);
        }
        let step = stream.on_body_data(&config, direction, size, end_of_stream);
        self.body_step(&config, direction, step, size)
    }

    /// One chunk of a walked gRPC body: forwarded rewritten, as it passes.
    fn on_chunk(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let chunk = match host::body(direction, size) {
            Ok(chunk) => chunk,
            Err(_) => return self.fail_closed(config, "cannot read the grpc body"),
        };
        let Some(stream) = self.stream.as_mut() else {
            return Action::Continue;
        };
        let step = stream.on_chunk(config, direction, &chunk, end_of_stream, today);
        self.flush_stats();
        match step {
            ChunkStep::Continue => Action::Continue,
            ChunkStep::Replace(bytes) => {
                if bytes == chunk {
                    return Action::Continue;
                }
                match host::replace_body(direction, chunk.len(), &bytes) {
                    Ok(()) => Action::Continue,
                    Err(_) => self.fail_closed(config, "cannot replace grpc messages"),
                }
            }
            ChunkStep::Reply(reply) => Self::send(Some(config), &reply),
        }
    }

    /// Trailers of one direction: they end a buffered body, or a walked gRPC body (whose
    /// response trailers may carry a refusal's status).
    fn on_trailers(&mut self, direction: Direction) -> Action {
        let (Some(config), Some(stream)) = (self.config.clone(), self.stream.as_mut()) else {
            return Action::Continue;
        };
        if stream.streaming(direction) {
            let step = stream.on_grpc_trailers(&config, direction);
            self.flush_stats();
            return match step {
                TrailerStep::Continue => Action::Continue,
                TrailerStep::Reply(reply) => Self::send(Some(&config), &reply),
                TrailerStep::Set(trailers) => {
                    for (name, value) in &trailers {
                        if host::set_trailer(direction, name, value).is_err() {
                            return self.fail_closed(&config, "cannot set the grpc status");
                        }
                    }
                    Action::Continue
                }
            };
        }
        let step = stream.on_trailers(direction);
        self.body_step(&config, direction, step, usize::MAX)
    }

    /// After a request body check: the decision header says `body=unread` when the body
    /// passed without being read (headers held until now).
    fn update_decision_header(&mut self, config: &CompiledConfig, direction: Direction) -> bool {
        if direction != Direction::Request {
            return true;
        }
        let Some((name, value)) = self.stream.as_mut().and_then(|s| s.header_update(config)) else {
            return true;
        };
        observe::expose_decision(Some(config), &value);
        host::set_request_header(&name, &value).is_ok()
    }

    /// Carries out a body step; `size` is what is buffered.
    fn body_step(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        step: BodyStep,
        size: usize,
    ) -> Action {
        match step {
            BodyStep::Continue => {
                self.flush_stats();
                if !self.update_decision_header(config, direction) {
                    return self.fail_closed(config, "cannot set the decision header");
                }
                Action::Continue
            }
            // Pause in a body callback is StopIterationAndBuffer: nothing goes on yet.
            BodyStep::Buffer => Action::Pause,
            BodyStep::Reply(reply) => {
                self.flush_stats();
                Self::send(Some(config), &reply)
            }
            BodyStep::ReadWhole => {
                let body = match host::body(direction, size) {
                    Ok(body) => body,
                    Err(_) => return self.fail_closed(config, "cannot read the body"),
                };
                let Some(stream) = self.stream.as_mut() else {
                    return Action::Continue;
                };
                let next = with_lookup(config, self.replica.as_deref(), |lookup| {
                    stream.on_whole_body(config, direction, &body, today, lookup)
                });
                match next {
                    BodyStep::Replace(new_body) => {
                        self.flush_stats();
                        if !self.update_decision_header(config, direction) {
                            return self.fail_closed(config, "cannot set the decision header");
                        }
                        match host::replace_body(direction, body.len(), &new_body) {
                            Ok(()) => Action::Continue,
                            Err(_) => self.fail_closed(config, "cannot replace the body"),
                        }
                    }
                    other => self.body_step(config, direction, other, body.len()),
                }
            }
            BodyStep::Replace(_) => {
                // Only `on_whole_body` replaces, and it is handled above.
                self.fail_closed(config, "unexpected body replacement")
            }
        }
    }
}

/// Today's date from the host clock (asked by the stream only when a transform needs it).
fn today() -> CivilDate {
    CivilDate::from_unix_seconds(host::unix_seconds())
}

/// Applies header edits to one direction: removals, the cookies kept (every `Cookie` or
/// `Set-Cookie` header goes, then the kept values are added back in order) and the new
/// `:path`.
fn apply_edits(direction: Direction, edits: &HeaderEdits) -> Result<(), Status> {
    for name in &edits.remove {
        host::remove_header(direction, name)?;
    }
    if let Some(cookies) = &edits.cookies {
        host::remove_header(direction, cookies.header)?;
        for value in &cookies.keep {
            host::add_header(direction, cookies.header, value)?;
        }
    }
    if let Some(path) = &edits.new_path {
        host::set_request_header(":path", path)?;
    }
    Ok(())
}

impl Context for ConsentHttp {}

impl HttpContext for ConsentHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(config), Some(stream)) = (self.config.clone(), self.stream.as_mut()) else {
            log::error!("consent filter: no configuration; blocking the request");
            return Self::send(None, &not_configured_reply());
        };
        let headers = match host::headers(Direction::Request) {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read request headers"),
        };
        let Ok(facts) = HostFacts::read(&config) else {
            return self.fail_closed(&config, "cannot read the caller or route");
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let step = with_lookup(&config, self.replica.as_deref(), |lookup| {
            stream.on_request_headers_with_ledger(
                &config,
                pairs,
                &facts.caller(),
                &facts.route(),
                lookup,
                end_of_stream,
                || crate::ledger::available(&config),
            )
        });
        let decision_header_sent = stream.decision_header_sent();
        self.flush_stats();
        let (edits, (name, value), body) = match step {
            RequestStep::Reply(reply) => return Self::send(Some(&config), &reply),
            RequestStep::Forward {
                edits,
                decision_header,
                body,
            } => (edits, decision_header, body),
        };
        if apply_edits(Direction::Request, &edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden request data");
        }
        let set = if decision_header_sent {
            host::set_request_header(&name, &value)
        } else {
            host::add_header(Direction::Request, &name, value.as_bytes())
        };
        if set.is_err() {
            return self.fail_closed(&config, "cannot set the decision header");
        }
        observe::expose_decision(Some(&config), &value);
        if let BodyStart::Refuse(reply) = &body {
            return Self::send(Some(&config), reply);
        }
        match self.begin_body(Direction::Request, &body) {
            Ok(true) => Action::Pause,
            Ok(false) => Action::Continue,
            Err(_) => self.fail_closed(&config, "cannot prepare the body for rewriting"),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(config), Some(stream)) = (self.config.clone(), self.stream.as_mut()) else {
            return Action::Continue;
        };
        if !stream.reads_response(&config) {
            return Action::Continue;
        }
        let headers = match host::headers(Direction::Response) {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read response headers"),
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let step = stream.on_response_headers(&config, pairs, end_of_stream);
        self.flush_stats();
        let (edits, body) = match step {
            ResponseStep::Pass => return Action::Continue,
            ResponseStep::Reply(reply) => return Self::send(Some(&config), &reply),
            ResponseStep::Forward { edits, body } => (edits, body),
        };
        if apply_edits(Direction::Response, &edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden response headers");
        }
        match self.begin_body(Direction::Response, &body) {
            Ok(true) => Action::Pause,
            Ok(false) => Action::Continue,
            Err(_) => self.fail_closed(&config, "cannot prepare the body for rewriting"),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Response)
    }

    fn on_log(&mut self) {
        if let (Some(config), Some(stream)) = (self.config.as_deref(), self.stream.as_mut()) {
            observe::log_decision(config, self.replica.as_deref(), stream);
            crate::ledger::emit(config, stream);
        }
    }
}
