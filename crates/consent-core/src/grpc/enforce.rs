//! What a decision means for one gRPC call: which message type each direction carries,
//! whether its messages must be read, and the rules the walker applies to them.

use crate::body::is_identity;
use crate::body::transform::CivilDate;
use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::reason::Reason;
use crate::direction::Direction;
use crate::policy::categories::CategorySet;

use super::schema::{MessageIdx, MethodInfo};
use super::settings::UnknownMethod;
use super::stream::{Framing, GrpcStream};
use super::walk::ProtoRules;

/// What a gRPC body's `content-type` says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcContent {
    /// Protobuf messages in this framing.
    Proto(Framing),
    /// A gRPC body the filter cannot read: another codec (`application/grpc+json`) or
    /// grpc-web's base64 text form (`application/grpc-web-text`).
    Unsupported,
}

/// Reads a `content-type`: `application/grpc` and `application/grpc+proto` are gRPC,
/// `application/grpc-web` and `application/grpc-web+proto` grpc-web, any other
/// `application/grpc…` unsupported, anything else not gRPC (`None`).
pub fn grpc_content(content_type: &[u8]) -> Option<GrpcContent> {
    let essence = crate::body::media_essence(content_type);
    match essence.as_ref() {
        "application/grpc" | "application/grpc+proto" => Some(GrpcContent::Proto(Framing::Grpc)),
        "application/grpc-web" | "application/grpc-web+proto" => {
            Some(GrpcContent::Proto(Framing::GrpcWeb))
        }
        other if other.starts_with("application/grpc") => Some(GrpcContent::Unsupported),
        _ => None,
    }
}

/// Whether a `grpc-encoding` lets the filter read the messages: absent or `identity`.
/// (A message is compressed only when its flag says so, but a stream that announces a
/// compression is refused up front.)
pub fn grpc_encoding_readable(grpc_encoding: Option<&[u8]>) -> bool {
    is_identity(grpc_encoding)
}

/// What to do with one direction of a gRPC call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcPlan {
    /// Nothing to check: forward the messages unread (the request is blocked anyway, the
    /// decision forbids nothing, no forbidden category can occur in the message type, or
    /// an unknown method with `grpc.unknown_method: pass`).
    Skip,
    /// Refuse the call before reading it.
    Refuse(Reason),
    /// Walk every message, of this type, through a [`GrpcStream`].
    Walk(MessageIdx),
}

impl CompiledConfig {
    /// The method at an HTTP/2 `:path` (`/package.Service/Method`), if the descriptors
    /// describe it.
    pub fn grpc_method(&self, path: &str) -> Option<&MethodInfo> {
        self.grpc.schema.method(path)
    }

    /// Decides what to do with one direction of a gRPC call at `path` (`None`: no
    /// `:path`). An unknown method is refused (`grpc_method_unknown`) whenever the decision
    /// forbids any category, unless `grpc.unknown_method` is `pass`.
    pub fn grpc_plan(
        &self,
        decision: &Decision,
        path: Option<&str>,
        direction: Direction,
    ) -> GrpcPlan {
        let forbidden = forbidden(decision);
        if decision.outcome == Outcome::Block || forbidden.is_empty() {
            return GrpcPlan::Skip;
        }
        let Some(method) = path.and_then(|p| self.grpc_method(p)) else {
            return match self.grpc.unknown_method {
                UnknownMethod::Block => GrpcPlan::Refuse(Reason::GrpcMethodUnknown),
                UnknownMethod::Pass => GrpcPlan::Skip,
            };
        };
        let message = match direction {
            Direction::Request => method.input,
            Direction::Response => method.output,
        };
        if self.grpc.tables.reach(message).intersects(forbidden) {
            GrpcPlan::Walk(message)
        } else {
            GrpcPlan::Skip
        }
    }

    /// The walker's rules for a decision: its forbidden categories with the purpose's
    /// actions, the policy's coarsen rules and the pseudonym key.
    pub fn proto_rules(
        &self,
        decision: &Decision,
        today: CivilDate,
        record_paths: bool,
    ) -> ProtoRules<'_> {
        let actions = decision
            .purpose
            .and_then(|p| self.policy.purpose(p))
            .map_or(&[][..], |p| p.actions.as_slice());
        ProtoRules {
            schema: &self.grpc.schema,
            tables: &self.grpc.tables,
            forbidden: forbidden(decision),
            actions,
            coarsen: &self.policy.coarsen,
            key: self.key.as_deref(),
            today,
            record_paths,
        }
    }

    /// A stream for one direction of a call planned [`GrpcPlan::Walk`]; each message may be
    /// at most `body.max_bytes` long.
    pub fn grpc_stream(&self, message: MessageIdx, framing: Framing) -> GrpcStream {
        GrpcStream::new(message, framing, self.body.max_bytes)
    }
}

fn forbidden(decision: &Decision) -> CategorySet {
    if decision.outcome == Outcome::Redact {
        decision.redacted
    } else {
        CategorySet::EMPTY
    }
}
