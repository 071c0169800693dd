//! The protobuf schema gRPC bodies are read with: a serialized
//! `google.protobuf.FileDescriptorSet` decoded once, at configure time, with prost's own
//! descriptor types, into a compact immutable form: messages by full name, their fields
//! by number (name, wire-relevant type, repeated or packed, nested message type, map
//! entries), and services' methods by their HTTP/2 path `/package.Service/Method`.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::error::ConfigError;
use crate::policy::name_map::NameMap;

/// Largest field number protobuf allows (2^29 - 1).
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// Index of a message type in a [`Schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageIdx(pub u32);

impl MessageIdx {
    /// The position of the message in [`Schema::messages`].
    pub fn position(self) -> usize {
        self.0 as usize
    }
}

/// The type of a field, as far as the wire format and the transforms care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `double` (fixed 64 bits).
    Double,
    /// `float` (fixed 32 bits).
    Float,
    /// Any varint-encoded integer, `bool` or enum.
    Varint,
    /// `fixed64`, `sfixed64`.
    Fixed64,
    /// `fixed32`, `sfixed32`.
    Fixed32,
    /// `string` (UTF-8).
    String,
    /// `bytes`.
    Bytes,
    /// A nested message (also a map entry).
    Message(MessageIdx),
    /// A proto2 group: the walker refuses group wire types.
    Group,
}

impl FieldKind {
    /// Whether a repeated field of this kind may be packed (scalar numeric).
    pub fn packable(self) -> bool {
        matches!(
            self,
            FieldKind::Double
                | FieldKind::Float
                | FieldKind::Varint
                | FieldKind::Fixed64
                | FieldKind::Fixed32
        )
    }
}

/// One field of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// Field number (1 to 2^29 - 1).
    pub number: u32,
    /// Name as declared, e.g. `email`.
    pub name: String,
    /// JSON name (`deviceId` for `device_id`).
    pub json_name: String,
    /// Wire-relevant type.
    pub kind: FieldKind,
    /// Declared `repeated` (map fields too).
    pub repeated: bool,
    /// Repeated scalars written packed by default (proto3, or `[packed = true]`); the walker
    /// accepts both encodings either way.
    pub packed: bool,
}

/// One message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Full name without a leading dot, e.g. `saitama.v1.Profile`.
    pub full_name: String,
    /// Fields sorted by number.
    pub fields: Vec<FieldInfo>,
    /// A map's synthetic entry type (`key` = 1, `value` = 2).
    pub map_entry: bool,
}

impl MessageInfo {
    /// The field with this number.
    pub fn field(&self, number: u32) -> Option<&FieldInfo> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }

    /// The field with this declared name.
    pub fn field_named(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// One RPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Request message type.
    pub input: MessageIdx,
    /// Response message type.
    pub output: MessageIdx,
    /// The client sends a stream of messages.
    pub client_streaming: bool,
    /// The server sends a stream of messages.
    pub server_streaming: bool,
}

/// A decoded descriptor set, ready for compiling selectors and walking messages.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    messages: Vec<MessageInfo>,
    by_name: NameMap<MessageIdx>,
    methods: NameMap<MethodInfo>,
}

impl Schema {
    /// Decodes a serialized `FileDescriptorSet`; errors are at `path`.
    pub fn decode(bytes: &[u8], path: &str) -> Result<Self, ConfigError> {
        let set = FileDescriptorSet::decode(bytes).map_err(|_| {
            ConfigError::invalid(path, "not a serialized google.protobuf.FileDescriptorSet")
        })?;
        Self::from_set(&set, path)
    }

    /// Builds the schema of a decoded set; every type name must resolve inside it.
    pub fn from_set(set: &FileDescriptorSet, path: &str) -> Result<Self, ConfigError> {
        let mut raw: Vec<(String, &DescriptorProto, bool)> = Vec::new();
        for file in &set.file {
            let package = file.package();
            for m in &file.message_type {
                collect(package, m, proto3_like(file), &mut raw);
            }
        }
        let mut by_name = NameMap::default();
        for (i, (name, _, _)) in raw.iter().enumerate() {
            let idx = u32::try_from(i)
                .map(MessageIdx)
                .map_err(|_| ConfigError::invalid(path, "too many message types"))?;
            if by_name.insert(name.clone(), idx).is_some() {
                return Err(ConfigError::invalid(
                    path,
                    format!("message `{name}` is defined twice"),
                ));
            }
        }
        let resolve = |type_name: &str, at: &dyn Fn() -> String| {
            type_name
                .strip_prefix('.')
                .and_then(|n| by_name.get(n).copied())
                .ok_or_else(|| {
                    ConfigError::invalid(path, format!("{}: unknown type `{type_name}`", at()))
                })
        };
        let mut messages = Vec::with_capacity(raw.len());
        for (name, m, proto3) in &raw {
            let mut fields = Vec::with_capacity(m.field.len());
            for f in &m.field {
                let at = || format!("message `{name}` field `{}`", f.name());
                fields.push(field_info(f, *proto3, &|t| resolve(t, &at), &at, path)?);
            }
            fields.sort_by_key(|f: &FieldInfo| f.number);
            if let Some(w) = fields
                .windows(2)
                .find(|w| w.first().map(|f| f.number) == w.get(1).map(|f| f.number))
            {
                let number = w.first().map_or(0, |f| f.number);
                return Err(ConfigError::invalid(
                    path,
                    format!("message `{name}`: field number {number} is used twice"),
                ));
            }
            messages.push(MessageInfo {
                full_name: name.clone(),
                fields,
                map_entry: m
                    .options
                    .as_ref()
                    .and_then(|o| o.map_entry)
                    .unwrap_or(false),
            });
        }
        let mut methods = NameMap::default();
        for file in &set.file {
            for service in &file.service {
                let service_name = qualified(file.package(), service.name());
                for method in &service.method {
                    let at = || format!("method `{service_name}/{}`", method.name());
                    let info = MethodInfo {
                        input: resolve(method.input_type(), &at)?,
                        output: resolve(method.output_type(), &at)?,
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    };
                    let key = format!("/{service_name}/{}", method.name());
                    if methods.insert(key, info).is_some() {
                        return Err(ConfigError::invalid(
                            path,
                            format!("{} is defined twice", at()),
                        ));
                    }
                }
            }
        }
        Ok(Schema {
            messages,
            by_name,
            methods,
        })
    }

    /// Every message type, indexed by [`MessageIdx`].
    pub fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    /// The message at `idx`.
    pub fn message(&self, idx: MessageIdx) -> Option<&MessageInfo> {
        self.messages.get(idx.position())
    }

    /// Finds a message by full name (no leading dot).
    pub fn message_idx(&self, full_name: &str) -> Option<MessageIdx> {
        self.by_name.get(full_name).copied()
    }

    /// Finds a method by its HTTP/2 path, `/package.Service/Method`.
    pub fn method(&self, path: &str) -> Option<&MethodInfo> {
        self.methods.get(path)
    }

    /// Number of methods.
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// Whether the schema holds no message type (no descriptors configured).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// proto3 (and editions, whose default is packed) write repeated scalars packed.
fn proto3_like(file: &FileDescriptorProto) -> bool {
    matches!(file.syntax(), "proto3" | "editions")
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_string()
    } else {
        format!("{package}.{name}")
    }
}

/// Lists a message and its nested types with their full names.
fn collect<'d>(
    scope: &str,
    m: &'d DescriptorProto,
    proto3: bool,
    out: &mut Vec<(String, &'d DescriptorProto, bool)>,
) {
    let name = qualified(scope, m.name());
    for nested in &m.nested_type {
        collect(&name, nested, proto3, out);
    }
    out.push((name, m, proto3));
}

fn field_info(
    f: &FieldDescriptorProto,
    proto3: bool,
    resolve: &dyn Fn(&str) -> Result<MessageIdx, ConfigError>,
    at: &dyn Fn() -> String,
    path: &str,
) -> Result<FieldInfo, ConfigError> {
    let number = u32::try_from(f.number())
        .ok()
        .filter(|n| (1..=MAX_FIELD_NUMBER).contains(n))
        .ok_or_else(|| ConfigError::invalid(path, format!("{}: invalid field number", at())))?;
    let kind = match Type::try_from(f.r#type.unwrap_or(0)) {
        Ok(Type::Double) => FieldKind::Double,
        Ok(Type::Float) => FieldKind::Float,
        Ok(
            Type::Int64
            | Type::Uint64
            | Type::Int32
            | Type::Bool
            | Type::Uint32
            | Type::Enum
            | Type::Sint32
            | Type::Sint64,
        ) => FieldKind::Varint,
        Ok(Type::Fixed64 | Type::Sfixed64) => FieldKind::Fixed64,
        Ok(Type::Fixed32 | Type::Sfixed32) => FieldKind::Fixed32,
        Ok(Type::String) => FieldKind::String,
        Ok(Type::Bytes) => FieldKind::Bytes,
        Ok(Type::Message) => FieldKind::Message(resolve(f.type_name())?),
        Ok(Type::Group) => FieldKind::Group,
        Err(_) => {
            // A descriptor may leave the type out when type_name names a message or enum.
            match f.type_name.as_deref() {
                Some(t) => match resolve(t) {
                    Ok(idx) => FieldKind::Message(idx),
                    // Not a message: an enum, which is a varint.
                    Err(_) => FieldKind::Varint,
                },
                None => {
                    return Err(ConfigError::invalid(
                        path,
                        format!("{}: field without a type", at()),
                    ))
                }
            }
        }
    };
    let repeated = f.label() == Label::Repeated;
    let packed =
        repeated && kind.packable() && f.options.as_ref().and_then(|o| o.packed).unwrap_or(proto3);
    let json_name = match &f.json_name {
        Some(j) => j.clone(),
        None => json_name(f.name()),
    };
    Ok(FieldInfo {
        number,
        name: f.name().to_string(),
        json_name,
        kind,
        repeated,
        packed,
    })
}

/// protoc's default JSON name: underscores dropped, the letter after one uppercased.
fn json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
