//! The protobuf wire walker: one pass over a serialized message that copies every byte it
//! does not have to change as it was, and removes or replaces only the fields of
//! categories a decision forbids.
//!
//! It reads the wire format with the schema's tables: per field one tag, one table lookup
//! and one intersection with the forbidden set. It descends only into message fields below
//! which a forbidden category can occur; every other field (scalars, strings, messages
//! that cannot hold a forbidden category, unknown fields, packed runs) is skipped by its
//! wire type and later copied in one block with its neighbours. Such skipped subtrees are
//! not parsed, so their inner validity is the backend's business, as it would be without
//! the filter; everything the walker does read must be well formed.
//!
//! Output goes into one buffer. A nested message whose content changed gets its length
//! prefix rewritten in place (the content moves only when the varint's size changes);
//! unchanged ones are never touched.

use std::fmt;

use crate::body::redactor::{
    push_index, resolve, BodyOutcome, BodyReport, FieldAction, HitAction, Resolved,
};
use crate::body::transform::{coarsen_number, coarsen_text, pseudonym, CivilDate, CoarsenSpec};
use crate::policy::categories::{CategoryIdx, CategorySet};

use super::schema::{FieldKind, MessageIdx, Schema, MAX_FIELD_NUMBER};
use super::tables::{MessageTable, ProtoTables, Slot};

/// Deepest message nesting the walker enters (prost's own recursion limit).
pub const MAX_DEPTH: usize = 100;

/// Why a message is not acceptable protobuf. Offsets are byte positions in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// A varint longer than ten bytes or over 64 bits.
    Varint(usize),
    /// A value or length runs past the end of its message.
    Truncated(usize),
    /// A tag with field number 0.
    FieldZero(usize),
    /// A tag whose field number is over 2^29 - 1.
    FieldNumber(usize),
    /// Wire type 6 or 7.
    WireType(usize),
    /// A group (wire type 3 or 4), which the filter does not read.
    Group(usize),
    /// Messages nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Varint(at) => write!(f, "malformed varint at byte {at}"),
            ProtoError::Truncated(at) => {
                write!(f, "value past the end of its message at byte {at}")
            }
            ProtoError::FieldZero(at) => write!(f, "field number 0 at byte {at}"),
            ProtoError::FieldNumber(at) => write!(f, "field number out of range at byte {at}"),
            ProtoError::WireType(at) => write!(f, "invalid wire type at byte {at}"),
            ProtoError::Group(at) => {
                write!(f, "group wire type at byte {at} (groups are not read)")
            }
            ProtoError::TooDeep => write!(f, "messages nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Everything the walker needs besides the message: the schema and its compiled tables,
/// the decision's forbidden categories and the purpose's actions (the same
/// [`FieldAction`]s, coarsen rules and pseudonym key as JSON bodies).
#[derive(Debug, Clone, Copy)]
pub struct ProtoRules<'a> {
    /// The schema (field names for paths).
    pub schema: &'a Schema,
    /// The selectors compiled against it.
    pub tables: &'a ProtoTables,
    /// Categories the decision forbids.
    pub forbidden: CategorySet,
    /// Action per forbidden category for the purpose at hand (default: remove).
    pub actions: &'a [(CategoryIdx, FieldAction)],
    /// Coarsening per category (indexed by category position).
    pub coarsen: &'a [Option<CoarsenSpec>],
    /// Key for pseudonyms; without one, pseudonymise falls back to remove.
    pub key: Option<&'a [u8]>,
    /// Today's date, for age bands.
    pub today: CivilDate,
    /// Record the path of every field acted on.
    pub record_paths: bool,
}

/// What one message came out as (its bytes are in the output buffer unless blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// Nothing forbidden was present: the message was copied as it was.
    Unchanged,
    /// Fields were removed or replaced.
    Rewritten,
    /// A category whose action is `block` was present; nothing was written.
    Blocked(CategoryIdx),
}

/// Rewrites one serialized message of type `message` for `rules`; the report counts what
/// was done (as for JSON bodies).
pub fn rewrite_message(
    input: &[u8],
    message: MessageIdx,
    rules: &ProtoRules<'_>,
) -> Result<(BodyOutcome, BodyReport), ProtoError> {
    let mut out = Vec::new();
    let mut report = BodyReport::default();
    let walked = rewrite_into(input, message, rules, &mut out, &mut report)?;
    let outcome = match walked {
        Walked::Unchanged => BodyOutcome::Unchanged,
        Walked::Rewritten => BodyOutcome::Rewritten(out),
        Walked::Blocked(c) => BodyOutcome::Blocked(c),
    };
    Ok((outcome, report))
}

/// Rewrites one serialized message of type `message`, appending the result (the message
/// as it was when nothing changed) to `out`. On an error or a block nothing is appended.
pub fn rewrite_into(
    input: &[u8],
    message: MessageIdx,
    rules: &ProtoRules<'_>,
    out: &mut Vec<u8>,
    report: &mut BodyReport,
) -> Result<Walked, ProtoError> {
    let start = out.len();
    let table = match rules.tables.message(message) {
        Some(t) if t.reach.intersects(rules.forbidden) => t,
        // Nothing forbidden can occur in this type: copy it unread.
        _ => {
            out.extend_from_slice(input);
            return Ok(Walked::Unchanged);
        }
    };
    let mut w = Walker {
        input,
        rules,
        out,
        copied: 0,
        changed: false,
        frames: Vec::new(),
        mapped: 0,
        report,
        root: message,
        path: Vec::new(),
    };
    match w.message(table, 0, input.len(), 0) {
        Ok(()) => {}
        Err(stop) => {
            w.out.truncate(start);
            return match stop {
                Stop::Proto(e) => Err(e),
                Stop::Block(c) => Ok(Walked::Blocked(c)),
            };
        }
    }
    let rest = input.get(w.copied..).unwrap_or_default();
    w.out.extend_from_slice(rest);
    Ok(if w.changed {
        Walked::Rewritten
    } else {
        Walked::Unchanged
    })
}

enum Stop {
    Proto(ProtoError),
    Block(CategoryIdx),
}

impl From<ProtoError> for Stop {
    fn from(e: ProtoError) -> Self {
        Stop::Proto(e)
    }
}

/// One field on the wire: where its tag and value are.
#[derive(Debug, Clone, Copy)]
struct Field {
    tag_start: usize,
    /// End of the tag (for wire type 2, where the length varint starts).
    tag_end: usize,
    number: u32,
    wire: u8,
    value_start: usize,
    value_end: usize,
}

/// Reads a varint at `pos`, which must end before `end`.
#[inline(always)]
fn varint(input: &[u8], pos: usize, end: usize) -> Result<(u64, usize), ProtoError> {
    if pos < end {
        if let Some(&b) = input.get(pos) {
            if b < 0x80 {
                return Ok((u64::from(b), pos + 1));
            }
        }
    }
    varint_slow(input, pos, end)
}

#[inline(never)]
fn varint_slow(input: &[u8], pos: usize, end: usize) -> Result<(u64, usize), ProtoError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    let mut p = pos;
    loop {
        if p >= end {
            return Err(ProtoError::Truncated(pos));
        }
        let b = *input.get(p).ok_or(ProtoError::Truncated(pos))?;
        if shift == 63 && b > 1 {
            return Err(ProtoError::Varint(pos));
        }
        value |= u64::from(b & 0x7f) << shift;
        p += 1;
        if b < 0x80 {
            return Ok((value, p));
        }
        shift += 7;
    }
}

/// Reads the field at `pos` (which is before `end`) and finds the end of its value.
#[inline(always)]
fn next_field(input: &[u8], pos: usize, end: usize) -> Result<Field, ProtoError> {
    let (tag, tag_end) = varint(input, pos, end)?;
    let number = tag >> 3;
    if number == 0 {
        return Err(ProtoError::FieldZero(pos));
    }
    if number > u64::from(MAX_FIELD_NUMBER) {
        return Err(ProtoError::FieldNumber(pos));
    }
    let wire = (tag & 7) as u8;
    let (value_start, value_end) = match wire {
        0 => {
            let (_, e) = varint(input, tag_end, end)?;
            (tag_end, e)
        }
        1 => (tag_end, fixed(tag_end, 8, end)?),
        2 => {
            let (len, s) = varint(input, tag_end, end)?;
            let e = usize::try_from(len)
                .ok()
                .and_then(|len| s.checked_add(len))
                .filter(|e| *e <= end)
                .ok_or(ProtoError::Truncated(tag_end))?;
            (s, e)
        }
        5 => (tag_end, fixed(tag_end, 4, end)?),
        3 | 4 => return Err(ProtoError::Group(pos)),
        _ => return Err(ProtoError::WireType(pos)),
    };
    Ok(Field {
        tag_start: pos,
        tag_end,
        number: number as u32,
        wire,
        value_start,
        value_end,
    })
}

#[inline(always)]
fn fixed(at: usize, len: usize, end: usize) -> Result<usize, ProtoError> {
    let e = at + len;
    if e > end {
        Err(ProtoError::Truncated(at))
    } else {
        Ok(e)
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: `tag`, the length of `content`, `content`.
fn delimited(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 5 + content.len());
    out.extend_from_slice(tag);
    push_varint(&mut out, content.len() as u64);
    out.extend_from_slice(content);
    out
}

/// An open nested message the walker is inside.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Input offset of its length varint.
    len_at: usize,
    /// Input offset of its content.
    content_at: usize,
    /// Output offset of its length varint, once something before its end was written.
    out_len_at: usize,
}

/// One step of the path to the current message, while paths are recorded.
#[derive(Debug, Clone, Copy)]
struct PathSeg {
    message: MessageIdx,
    number: u32,
    index: Option<u32>,
}

struct Walker<'a, 'r> {
    input: &'a [u8],
    rules: &'r ProtoRules<'r>,
    out: &'r mut Vec<u8>,
    /// Input before this offset is in `out` or was cut.
    copied: usize,
    changed: bool,
    frames: Vec<Frame>,
    /// `frames[..mapped]` know their output offset (something inside them changed).
    mapped: usize,
    report: &'r mut BodyReport,
    root: MessageIdx,
    path: Vec<PathSeg>,
}

impl Walker<'_, '_> {
    fn message(
        &mut self,
        table: &MessageTable,
        start: usize,
        end: usize,
        depth: usize,
    ) -> Result<(), Stop> {
        let input = self.input;
        let forbidden = self.rules.forbidden;
        let mut counts: Vec<(u32, u32)> = Vec::new();
        let mut pos = start;
        while pos < end {
            let field = next_field(input, pos, end)?;
            pos = field.value_end;
            let Some(slot) = table.get(field.number) else {
                continue;
            };
            if !slot.any.intersects(forbidden) {
                continue;
            }
            let index = if self.rules.record_paths && slot.repeated {
                Some(occurrence(&mut counts, field.number))
            } else {
                None
            };
            let hit = slot.cats.intersection(forbidden);
            if !hit.is_empty() {
                self.act(slot, hit, &field, index, depth)?;
                continue;
            }
            let FieldKind::Message(child) = slot.kind else {
                continue;
            };
            if field.wire != 2 {
                // Not a message on the wire: a scalar holds nothing below it.
                continue;
            }
            let Some(child_table) = self.rules.tables.message(child) else {
                continue;
            };
            if depth + 1 > MAX_DEPTH {
                return Err(Stop::Proto(ProtoError::TooDeep));
            }
            self.frames.push(Frame {
                len_at: field.tag_end,
                content_at: field.value_start,
                out_len_at: 0,
            });
            if self.rules.record_paths {
                self.path.push(PathSeg {
                    message: self.current_message(),
                    number: field.number,
                    index,
                });
            }
            self.message(child_table, field.value_start, field.value_end, depth + 1)?;
            if self.rules.record_paths {
                self.path.pop();
            }
            self.close_frame(field.value_end);
        }
        Ok(())
    }

    /// The message type being walked (the root, or the type of the last path step).
    fn current_message(&self) -> MessageIdx {
        let Some(seg) = self.path.last() else {
            return self.root;
        };
        let kind = self
            .rules
            .schema
            .message(seg.message)
            .and_then(|m| m.field(seg.number))
            .map(|f| f.kind);
        match kind {
            Some(FieldKind::Message(m)) => m,
            _ => self.root,
        }
    }

    fn act(
        &mut self,
        slot: &Slot,
        hit: CategorySet,
        field: &Field,
        index: Option<u32>,
        depth: usize,
    ) -> Result<(), Stop> {
        self.report.categories = self.report.categories.union(hit);
        let first = hit.iter().next();
        match resolve(self.rules.actions, hit) {
            Resolved::Block(c) => {
                self.record(field.number, index, Some(c), HitAction::Blocked);
                Err(Stop::Block(c))
            }
            Resolved::Remove => {
                self.cut(field.tag_start, field.value_end);
                self.report.removed += 1;
                self.record(field.number, index, first, HitAction::Removed);
                Ok(())
            }
            Resolved::Transform(category, action) => {
                match self.transform(category, action, slot.kind, field, depth) {
                    Some(bytes) => {
                        self.cut(field.tag_start, field.value_end);
                        self.out.extend_from_slice(&bytes);
                        self.report.transformed += 1;
                        let done = if action == FieldAction::Pseudonymise {
                            HitAction::Pseudonymised
                        } else {
                            HitAction::Coarsened
                        };
                        self.record(field.number, index, Some(category), done);
                    }
                    None => {
                        self.cut(field.tag_start, field.value_end);
                        self.report.removed += 1;
                        self.record(field.number, index, Some(category), HitAction::Removed);
                    }
                }
                Ok(())
            }
        }
    }

    /// The replacement of a whole field (tag included), or `None` to remove it.
    fn transform(
        &self,
        category: CategoryIdx,
        action: FieldAction,
        kind: FieldKind,
        field: &Field,
        depth: usize,
    ) -> Option<Vec<u8>> {
        let tag = self.input.get(field.tag_start..field.tag_end)?;
        let value = self.input.get(field.value_start..field.value_end)?;
        match action {
            FieldAction::Pseudonymise => {
                if field.wire != 2 || !matches!(kind, FieldKind::String | FieldKind::Bytes) {
                    return None;
                }
                let ps = pseudonym(self.rules.key?, value)?;
                Some(delimited(tag, ps.as_bytes()))
            }
            FieldAction::Coarsen => {
                let spec = self.rules.coarsen.get(category.position())?.as_ref()?;
                coarsen_field(self.rules, spec, kind, field.wire, tag, value, depth)
            }
            FieldAction::Remove | FieldAction::Block => None,
        }
    }

    /// Copies the input up to `from` and skips it to `to`; every open message learns where
    /// its length prefix went, to be rewritten when it closes.
    fn cut(&mut self, from: usize, to: usize) {
        let base = self.out.len();
        let copied = self.copied;
        for f in self.frames.iter_mut().skip(self.mapped) {
            f.out_len_at = base + (f.len_at - copied);
        }
        self.mapped = self.frames.len();
        let kept = self.input.get(copied..from).unwrap_or_default();
        self.out.extend_from_slice(kept);
        self.copied = to;
        self.changed = true;
    }

    /// Closes the innermost nested message, which ends at `end`: if its content changed,
    /// its rest is copied and its length prefix rewritten.
    fn close_frame(&mut self, end: usize) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        if self.mapped <= self.frames.len() {
            return;
        }
        self.mapped = self.frames.len();
        let kept = self.input.get(self.copied..end).unwrap_or_default();
        self.out.extend_from_slice(kept);
        self.copied = end;
        let old_size = frame.content_at - frame.len_at;
        let content_out = frame.out_len_at + old_size;
        let new_len = self.out.len().saturating_sub(content_out);
        let mut prefix = Vec::with_capacity(5);
        push_varint(&mut prefix, new_len as u64);
        match self.out.get_mut(frame.out_len_at..content_out) {
            Some(old) if old.len() == prefix.len() => old.copy_from_slice(&prefix),
            _ => {
                self.out.splice(frame.out_len_at..content_out, prefix);
            }
        }
    }

    /// Records a field acted on: the root type's full name, then each field's name, with
    /// the occurrence index of repeated fields (names come from the schema, never the body).
    fn record(
        &mut self,
        number: u32,
        index: Option<u32>,
        category: Option<CategoryIdx>,
        action: HitAction,
    ) {
        if !self.rules.record_paths {
            return;
        }
        let here = PathSeg {
            message: self.current_message(),
            number,
            index,
        };
        let schema = self.rules.schema;
        let root = self.root;
        let segments = &self.path;
        self.report.push_field(
            || {
                let mut path = schema
                    .message(root)
                    .map(|m| m.full_name.clone())
                    .unwrap_or_default();
                for seg in segments.iter().chain(std::iter::once(&here)) {
                    path.push('.');
                    let name = schema
                        .message(seg.message)
                        .and_then(|m| m.field(seg.number))
                        .map(|f| f.name.as_str());
                    match name {
                        Some(n) => path.push_str(n),
                        None => path.push_str(&seg.number.to_string()),
                    }
                    if let Some(i) = seg.index {
                        push_index(&mut path, i as usize);
                    }
                }
                path
            },
            category,
            action,
        );
    }
}

/// The index of this occurrence of a repeated field in its message (0 for the first).
fn occurrence(counts: &mut Vec<(u32, u32)>, number: u32) -> u32 {
    match counts.iter_mut().find(|(n, _)| *n == number) {
        Some((_, c)) => {
            *c += 1;
            *c - 1
        }
        None => {
            counts.push((number, 1));
            0
        }
    }
}

/// The coarse form of one field (tag included), or `None` when the rule cannot coarsen
/// it in a way its type can hold (then it is removed):
/// - `double`/`float` (also packed): each value rounded to the grid;
/// - `string`: the same transform as a JSON string (`"lat,lng"` grid or geohash, age
///   band, truncated address);
/// - a message (a `{lat, lng}` pair): with a grid, every coordinate inside rounded and
///   everything else in it dropped; a geohash cannot be written into a message field.
fn coarsen_field(
    rules: &ProtoRules<'_>,
    spec: &CoarsenSpec,
    kind: FieldKind,
    wire: u8,
    tag: &[u8],
    value: &[u8],
    depth: usize,
) -> Option<Vec<u8>> {
    match (kind, wire) {
        (FieldKind::Double, 1) => Some([tag, &coarse_f64(spec, value)?].concat()),
        (FieldKind::Float, 5) => Some([tag, &coarse_f32(spec, value)?].concat()),
        (FieldKind::Double, 2) => {
            let packed = each(value, 8, |x| coarse_f64(spec, x))?;
            Some(delimited(tag, &packed))
        }
        (FieldKind::Float, 2) => {
            let packed = each(value, 4, |x| coarse_f32(spec, x))?;
            Some(delimited(tag, &packed))
        }
        (FieldKind::String, 2) => {
            let text = std::str::from_utf8(value).ok()?;
            let coarse = coarsen_text(spec, text, rules.today)?;
            Some(delimited(tag, coarse.as_bytes()))
        }
        (FieldKind::Message(m), 2) if matches!(spec, CoarsenSpec::GridDegrees(_)) => {
            if depth + 1 > MAX_DEPTH {
                return None;
            }
            let table = rules.tables.message(m)?;
            let mut content = Vec::with_capacity(value.len());
            let mut pos = 0;
            while pos < value.len() {
                let f = next_field(value, pos, value.len()).ok()?;
                pos = f.value_end;
                let Some(slot) = table.get(f.number) else {
                    continue;
                };
                let (Some(t), Some(v)) = (
                    value.get(f.tag_start..f.tag_end),
                    value.get(f.value_start..f.value_end),
                ) else {
                    continue;
                };
                if let Some(bytes) = coarsen_field(rules, spec, slot.kind, f.wire, t, v, depth + 1)
                {
                    content.extend_from_slice(&bytes);
                }
            }
            Some(delimited(tag, &content))
        }
        _ => None,
    }
}

/// A `double` (8 bytes, little-endian) rounded to the grid.
fn coarse_f64(spec: &CoarsenSpec, bytes: &[u8]) -> Option<Vec<u8>> {
    let x = f64::from_le_bytes(bytes.try_into().ok()?);
    Some(coarsen_number(spec, x)?.to_le_bytes().to_vec())
}

/// A `float` (4 bytes, little-endian) rounded to the grid.
fn coarse_f32(spec: &CoarsenSpec, bytes: &[u8]) -> Option<Vec<u8>> {
    let x = f32::from_le_bytes(bytes.try_into().ok()?);
    Some(
        (coarsen_number(spec, f64::from(x))? as f32)
            .to_le_bytes()
            .to_vec(),
    )
}

/// Each `width`-byte value of a packed run through `one`; `None` if any fails.
fn each(value: &[u8], width: usize, one: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    if value.len() % width != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    for chunk in value.chunks_exact(width) {
        out.extend(one(chunk)?);
    }
    Some(out)
}
