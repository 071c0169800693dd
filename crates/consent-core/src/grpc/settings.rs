//! The `grpc` block of the plugin configuration, compiled once: the descriptor set
//! decoded into a [`Schema`], the policy's protobuf selectors compiled against it, and
//! what to do with methods the schema does not know.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::policy::compiled::CompiledPolicy;

use super::schema::Schema;
use super::tables::ProtoTables;

/// What to do with a gRPC call whose method the descriptors do not describe, when the
/// decision forbids some category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMethod {
    /// Refuse it (`grpc_method_unknown`): its messages cannot be read.
    #[default]
    Block,
    /// Forward its messages unread.
    Pass,
}

/// The `grpc` block as an operator writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcDoc {
    /// A serialized `google.protobuf.FileDescriptorSet`, base64 (standard alphabet; ASCII
    /// whitespace is ignored), e.g. from `consentctl grpc descriptors --base64`. Without
    /// it every method is unknown.
    pub descriptor_set: Option<String>,
    /// Calls of methods the descriptors do not describe: `block` (default) or `pass`.
    pub unknown_method: UnknownMethod,
}

/// The checked `grpc` block.
#[derive(Debug, Clone, Default)]
pub struct GrpcSettings {
    /// Message types and methods (empty without a descriptor set).
    pub schema: Schema,
    /// The policy's protobuf selectors compiled against the schema.
    pub tables: ProtoTables,
    /// What to do with unknown methods.
    pub unknown_method: UnknownMethod,
}

impl GrpcSettings {
    /// Decodes the descriptor set and compiles the policy's protobuf selectors against it;
    /// errors name `grpc.descriptor_set` or the selector (`policy.categories[i].protobuf[j]`).
    pub fn compile(doc: &GrpcDoc, policy: &CompiledPolicy) -> Result<Self, ConfigError> {
        let schema = match &doc.descriptor_set {
            None => Schema::default(),
            Some(text) => {
                let at = "grpc.descriptor_set";
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&compact)
                    .map_err(|_| ConfigError::invalid(at, "not valid base64"))?;
                let schema = Schema::decode(&bytes, at)?;
                if schema.is_empty() {
                    return Err(ConfigError::invalid(
                        at,
                        "the descriptor set holds no message type",
                    ));
                }
                schema
            }
        };
        let tables = ProtoTables::compile(&schema, &policy.protobuf)?;
        Ok(GrpcSettings {
            schema,
            tables,
            unknown_method: doc.unknown_method,
        })
    }
}
