//! gRPC body enforcement: the protobuf schema from a descriptor set, protobuf field
//! selectors compiled against it, the wire walker that removes or transforms forbidden
//! fields, and the sans-IO gRPC framing a host feeds body chunks through.
//!
//! A host (the proxy-wasm glue) does, per direction of a call:
//! 1. [`grpc_content`] on `content-type` and [`grpc_encoding_readable`] on `grpc-encoding`;
//! 2. [`CompiledConfig::grpc_plan`](crate::CompiledConfig::grpc_plan) with the decision and
//!    `:path`: skip, refuse, or walk messages of one type;
//! 3. for a walk, [`CompiledConfig::grpc_stream`](crate::CompiledConfig::grpc_stream) and,
//!    per body chunk, [`GrpcStream::push`] with the rules of
//!    [`CompiledConfig::proto_rules`](crate::CompiledConfig::proto_rules), forwarding what
//!    it returns; [`GrpcStream::finish`] at the end of the stream. A refusal's
//!    [`GrpcRefusal::reason`] is the reason code to report.

#[cfg(any(test, feature = "reference"))]
pub mod demo;
pub(crate) mod enforce;
pub(crate) mod schema;
pub(crate) mod selector;
pub(crate) mod settings;
pub(crate) mod stream;
pub(crate) mod tables;
pub(crate) mod walk;

#[cfg(test)]
mod tests;

pub use enforce::{grpc_content, grpc_encoding_readable, GrpcContent, GrpcPlan};
pub use schema::{
    FieldInfo, FieldKind, MessageIdx, MessageInfo, MethodInfo, Schema, MAX_FIELD_NUMBER,
};
pub use selector::{parse_proto_selector, CategorySelector, ProtoSelector};
pub use settings::{GrpcDoc, GrpcSettings, UnknownMethod};
pub use stream::{Framing, GrpcRefusal, GrpcStream, PREFIX_BYTES};
pub use tables::{MessageTable, ProtoTables, Slot};
pub use walk::{rewrite_into, rewrite_message, ProtoError, ProtoRules, Walked, MAX_DEPTH};
