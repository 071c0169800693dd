//! Selectors compiled against the schema, once at configure time: per message type, for
//! each field number, the categories the field belongs to, its kind, and the categories
//! that can occur anywhere below it. The walker's work per field is then one table lookup
//! and one intersection with the request's forbidden set.

use crate::error::ConfigError;
use crate::policy::categories::CategorySet;

use super::schema::{FieldKind, MessageIdx, Schema};
use super::selector::{CategorySelector, ProtoSelector};

/// Field numbers below this are looked up by index; larger ones by binary search.
const DENSE_LIMIT: u32 = 128;

/// What the walker knows about one field of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Categories of the field itself, and every category that can occur below it.
    pub any: CategorySet,
    /// Categories of the field itself.
    pub cats: CategorySet,
    /// Its type.
    pub kind: FieldKind,
    /// Declared repeated (its occurrences are indexed in field paths).
    pub repeated: bool,
}

/// One message type's slots.
#[derive(Debug, Clone, Default)]
pub struct MessageTable {
    /// By field number, for numbers below the dense limit (`None`: not in the schema).
    dense: Box<[Option<Slot>]>,
    /// Larger field numbers, sorted.
    sparse: Box<[(u32, Slot)]>,
    /// Every category that can occur in this message or below it.
    pub reach: CategorySet,
}

impl MessageTable {
    /// The slot of a field number, if the schema declares it.
    #[inline]
    pub fn get(&self, number: u32) -> Option<&Slot> {
        match self.dense.get(number as usize) {
            Some(slot) => slot.as_ref(),
            None if self.sparse.is_empty() => None,
            None => self
                .sparse
                .binary_search_by_key(&number, |(n, _)| *n)
                .ok()
                .and_then(|i| self.sparse.get(i))
                .map(|(_, s)| s),
        }
    }
}

/// Every message type's table, indexed by [`MessageIdx`].
#[derive(Debug, Clone, Default)]
pub struct ProtoTables {
    messages: Vec<MessageTable>,
    /// Every category some protobuf selector matched in the schema.
    pub categories: CategorySet,
}

impl ProtoTables {
    /// The table of a message type.
    #[inline]
    pub fn message(&self, idx: MessageIdx) -> Option<&MessageTable> {
        self.messages.get(idx.position())
    }

    /// Every category that can occur in a message of this type.
    pub fn reach(&self, idx: MessageIdx) -> CategorySet {
        self.message(idx).map(|t| t.reach).unwrap_or_default()
    }

    /// Compiles the policy's protobuf selectors against `schema`. A fully qualified
    /// selector naming a message or field the schema lacks is an error at its place in the
    /// policy, but only when the schema is not empty: without descriptors nothing is read
    /// (every method is unknown), and such selectors wait for a descriptor set.
    pub fn compile(schema: &Schema, selectors: &[CategorySelector]) -> Result<Self, ConfigError> {
        let messages = schema.messages();
        let mut own: Vec<Vec<CategorySet>> = messages
            .iter()
            .map(|m| vec![CategorySet::EMPTY; m.fields.len()])
            .collect();
        let mut categories = CategorySet::EMPTY;
        for s in selectors {
            match &s.selector {
                ProtoSelector::AnyDepth(name) => {
                    for (m, sets) in messages.iter().zip(own.iter_mut()) {
                        for (f, set) in m.fields.iter().zip(sets.iter_mut()) {
                            if f.name.eq_ignore_ascii_case(name)
                                || f.json_name.eq_ignore_ascii_case(name)
                            {
                                set.insert(s.category);
                                categories.insert(s.category);
                            }
                        }
                    }
                }
                ProtoSelector::Field { message, field } => {
                    if schema.is_empty() {
                        continue;
                    }
                    let idx = schema.message_idx(message).ok_or_else(|| {
                        ConfigError::invalid(
                            &s.at,
                            format!("no message `{message}` in grpc.descriptor_set"),
                        )
                    })?;
                    let m = schema.message(idx);
                    let position = m.and_then(|m| m.fields.iter().position(|f| f.name == *field));
                    let set = position
                        .and_then(|p| own.get_mut(idx.position())?.get_mut(p))
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                &s.at,
                                format!("message `{message}` has no field `{field}`"),
                            )
                        })?;
                    set.insert(s.category);
                    categories.insert(s.category);
                }
            }
        }
        // What can occur below each message: its fields' categories and, through nested
        // message fields, theirs, to a fixed point (message types may be recursive).
        let mut reach: Vec<CategorySet> = own
            .iter()
            .map(|sets| sets.iter().fold(CategorySet::EMPTY, |a, s| a.union(*s)))
            .collect();
        loop {
            let mut grew = false;
            for (i, m) in messages.iter().enumerate() {
                let mut r = reach.get(i).copied().unwrap_or_default();
                for f in &m.fields {
                    if let FieldKind::Message(child) = f.kind {
                        r = r.union(reach.get(child.position()).copied().unwrap_or_default());
                    }
                }
                if let Some(slot) = reach.get_mut(i) {
                    if *slot != r {
                        *slot = r;
                        grew = true;
                    }
                }
            }
            if !grew {
                break;
            }
        }
        let tables = messages
            .iter()
            .zip(&own)
            .zip(&reach)
            .map(|((m, sets), r)| {
                let slots = m.fields.iter().zip(sets).map(|(f, cats)| {
                    let below = match f.kind {
                        FieldKind::Message(child) => {
                            reach.get(child.position()).copied().unwrap_or_default()
                        }
                        _ => CategorySet::EMPTY,
                    };
                    let slot = Slot {
                        any: cats.union(below),
                        cats: *cats,
                        kind: f.kind,
                        repeated: f.repeated,
                    };
                    (f.number, slot)
                });
                let (dense_fields, sparse): (Vec<_>, Vec<_>) =
                    slots.partition(|(n, _)| *n < DENSE_LIMIT);
                let len = dense_fields.iter().map(|(n, _)| *n as usize + 1).max();
                let mut dense = vec![None; len.unwrap_or(0)];
                for (n, slot) in dense_fields {
                    if let Some(d) = dense.get_mut(n as usize) {
                        *d = Some(slot);
                    }
                }
                MessageTable {
                    dense: dense.into_boxed_slice(),
                    sparse: sparse.into_boxed_slice(),
                    reach: *r,
                }
            })
            .collect();
        Ok(ProtoTables {
            messages: tables,
            categories,
        })
    }
}
