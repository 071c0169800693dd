//! The gRPC steps of a stream: messages are walked as they pass, chunk by chunk, never
//! buffered whole. A refused request gets a gRPC-native local reply; a response refused
//! after its headers went on has the rest of its messages dropped and its trailers set to
//! the refusal's `grpc-status` and reason code, so the client still sees a normal status.

use crate::body::CivilDate;
use crate::config::CompiledConfig;
use crate::decide::reason::Reason;
use crate::decide::reply::LocalReply;
use crate::direction::Direction;
use crate::grpc::{grpc_encoding_readable, GrpcContent, GrpcPlan, GrpcRefusal};
use crate::observe::decision_log::LoggedField;
use crate::stream::body::BodyStart;
use crate::stream::{Stat, Stop, Stream};

/// Headers that go when messages may be rewritten: their length may change.
const STREAM_REMOVES: &[&str] = &["content-length"];

/// What to do with one chunk of a walked gRPC body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkStep {
    /// Forward the chunk as it was (nothing walked, or dry-run).
    Continue,
    /// Replace the chunk by these bytes (complete messages, rewritten; possibly none yet).
    Replace(Vec<u8>),
    /// Answer locally (a refused request); nothing more goes on.
    Reply(LocalReply),
}

/// What to do with the trailers of a walked gRPC body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailerStep {
    /// Let them pass as they are.
    Continue,
    /// Set these trailers (name, value), replacing what the backend sent: a refused
    /// response's `grpc-status` and reason code.
    Set(Vec<(&'static str, String)>),
    /// Answer locally (a request refused at its end).
    Reply(LocalReply),
}

impl Stream {
    /// Starts walking one direction of a gRPC call (or refuses it, or lets it flow).
    pub(crate) fn start_grpc(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        content: GrpcContent,
        grpc_encoding: Option<&[u8]>,
    ) -> BodyStart {
        let Some(decision) = self.decision else {
            return BodyStart::None;
        };
        let plan = config.grpc_plan(&decision, self.path.as_deref(), direction);
        let message = match plan {
            GrpcPlan::Skip => return BodyStart::None,
            GrpcPlan::Refuse(reason) => return self.refuse_start(config, reason, direction),
            GrpcPlan::Walk(message) => message,
        };
        let framing = match content {
            GrpcContent::Proto(framing) => framing,
            GrpcContent::Unsupported => {
                return self.refuse_start(config, Reason::BodyUnreadable, direction)
            }
        };
        if !grpc_encoding_readable(grpc_encoding) {
            return self.refuse_start(config, Reason::BodyEncodingUnsupported, direction);
        }
        if let Some(slot) = self.grpc.get_mut(direction.index()) {
            *slot = Some(config.grpc_stream(message, framing));
        }
        BodyStart::Stream {
            remove: if self.dry_run() { &[] } else { STREAM_REMOVES },
        }
    }

    fn refuse_start(
        &mut self,
        config: &CompiledConfig,
        reason: Reason,
        direction: Direction,
    ) -> BodyStart {
        match self.refuse(config, reason, direction) {
            Stop::Reply(reply) => BodyStart::Refuse(reply),
            Stop::Continue => BodyStart::None,
        }
    }

    /// Whether `direction`'s messages are being walked chunk by chunk.
    pub fn streaming(&self, direction: Direction) -> bool {
        self.grpc
            .get(direction.index())
            .is_some_and(Option::is_some)
            || (direction == Direction::Response && self.grpc_refused.is_some())
    }

    /// One chunk of a walked gRPC body arrived (`end_of_stream`: the last).
    pub fn on_chunk(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        chunk: &[u8],
        end_of_stream: bool,
        today: impl FnOnce() -> CivilDate,
    ) -> ChunkStep {
        if direction == Direction::Response && self.grpc_refused.is_some() {
            return self.dropped(config, end_of_stream);
        }
        let Some(decision) = self.decision else {
            return ChunkStep::Continue;
        };
        self.stats.push(Stat::BodyBytes(direction, chunk.len()));
        if let Some(bytes) = self.facts.body_bytes.get_mut(direction.index()) {
            *bytes = bytes.saturating_add(chunk.len());
        }
        let record_paths = config.decision_log.field_paths;
        let rules = config.proto_rules(&decision, self.today(config, today), record_paths);
        let Some(Some(stream)) = self.grpc.get_mut(direction.index()) else {
            return ChunkStep::Continue;
        };
        let mut result = stream.push(&rules, chunk);
        if end_of_stream {
            result = result.and_then(|out| stream.finish().map(|()| out));
        }
        match result {
            Ok(out) => {
                if end_of_stream {
                    self.finish_grpc(config, direction);
                }
                if self.dry_run() {
                    ChunkStep::Continue
                } else {
                    ChunkStep::Replace(out)
                }
            }
            Err(refusal) => self.refuse_grpc(config, direction, refusal, end_of_stream),
        }
    }

    /// A walked body's trailers arrived: they end it. For a response, says which trailers
    /// to set (a refusal's status); a request's trailers pass as they are.
    pub fn on_grpc_trailers(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
    ) -> TrailerStep {
        if let Some(Some(stream)) = self.grpc.get_mut(direction.index()) {
            match stream.finish() {
                Ok(()) => self.finish_grpc(config, direction),
                Err(refusal) => {
                    if let ChunkStep::Reply(reply) =
                        self.refuse_grpc(config, direction, refusal, false)
                    {
                        return TrailerStep::Reply(reply);
                    }
                }
            }
        }
        match (direction, self.grpc_refused) {
            (Direction::Response, Some(reason)) if !self.dry_run() => TrailerStep::Set(vec![
                ("grpc-status", reason.grpc_status(direction).to_string()),
                ("grpc-message", reason.as_str().to_string()),
            ]),
            _ => TrailerStep::Continue,
        }
    }

    /// Records a finished walk (stats, decision log) and stops walking.
    fn finish_grpc(&mut self, config: &CompiledConfig, direction: Direction) {
        let Some(stream) = self.grpc.get_mut(direction.index()).and_then(Option::take) else {
            return;
        };
        let report = stream.report();
        self.facts
            .removed
            .add_body_fields(direction, report.removed + report.transformed);
        self.stats.extend(
            report
                .categories
                .iter()
                .map(|category| Stat::Redaction(direction, category)),
        );
        self.facts.fields.extend(
            report
                .fields
                .iter()
                .map(|hit| LoggedField::from_hit(&config.policy, direction, hit)),
        );
        self.facts.fields_truncated |= report.fields_truncated;
    }

    /// A walked body was refused: a request gets its gRPC-native reply; a response, whose
    /// headers went on already, drops its remaining messages and ends with the status.
    fn refuse_grpc(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        refusal: GrpcRefusal,
        end_of_stream: bool,
    ) -> ChunkStep {
        self.finish_grpc(config, direction);
        let reason = refusal.reason();
        if direction == Direction::Response && !self.dry_run() {
            self.stats.push(Stat::Refusal(direction, reason));
            self.facts.refusal = Some((direction, reason));
            self.grpc_refused = Some(reason);
            return self.dropped(config, end_of_stream);
        }
        match self.refuse(config, reason, direction) {
            Stop::Reply(reply) => ChunkStep::Reply(reply),
            Stop::Continue => ChunkStep::Continue,
        }
    }

    /// A chunk of a refused response: dropped; at the end of a response that has no
    /// trailers to carry the status, only a local reply is left (Envoy resets a stream
    /// whose headers went on, which the client sees as an error all the same).
    fn dropped(&self, config: &CompiledConfig, end_of_stream: bool) -> ChunkStep {
        match self.grpc_refused {
            Some(reason) if end_of_stream => {
                let decision = crate::decide::decision::Decision::block(reason, None);
                ChunkStep::Reply(self.reply(config, &decision, 200, Direction::Response))
            }
            _ => ChunkStep::Replace(Vec::new()),
        }
    }
}
