//! The streaming JSON redactor: one validating pass over the body that copies every
//! untouched byte as it was and cuts or replaces only the values a decision forbids.
//!
//! Memory: the output buffer (at most the input plus replacements) and one small state
//! vector per nesting level. Duplicate keys are each matched, and keys are matched after
//! decoding escapes, so neither can carry a forbidden field through.

use std::borrow::Cow;

use crate::policy::categories::{CategoryIdx, CategorySet};

use super::matcher::{ChildKey, Matcher};
use super::scan::{decode_string, JsonError, Scanner, MAX_DEPTH};
use super::transform::{
    coarsen, coarsen_value, pseudonymise, pseudonymise_value, CivilDate, CoarsenSpec,
};
use super::two_stage::redact_indexed;

/// What to do with a value of a forbidden category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAction {
    /// Remove the member or element.
    Remove,
    /// Replace by its coarse form (the category's [`CoarsenSpec`]).
    Coarsen,
    /// Replace by a keyed hash.
    Pseudonymise,
    /// Refuse the whole body.
    Block,
}

/// Everything the redactor needs besides the body and the forbidden set.
pub struct BodyRules<'a> {
    /// Compiled selectors of every category.
    pub matcher: &'a Matcher,
    /// Action per forbidden category for the purpose at hand (default: remove).
    pub actions: &'a [(CategoryIdx, FieldAction)],
    /// Coarsening per category (indexed by category position).
    pub coarsen: &'a [Option<CoarsenSpec>],
    /// Key for pseudonyms; without one, pseudonymise falls back to remove.
    pub key: Option<&'a [u8]>,
    /// Today's date, for age bands.
    pub today: CivilDate,
    /// Record the path of every field acted on (for logs, dry-run and the explain tool).
    pub record_paths: bool,
}

/// How the elements of a multi-subject body are found and identified.
pub struct ElementRules<'a> {
    /// Matches the element values (e.g. `$.items[*]`); the "category" of a match is the
    /// index of its entry in `subject_paths`.
    pub elements: &'a Matcher,
    /// Per element selector: the key path from an element to its subject id (e.g. `["user_id"]`).
    pub subject_paths: &'a [Vec<String>],
}

/// What to do with one element of a multi-subject body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementVerdict {
    /// Remove the element (its subject's decision blocks).
    Drop,
    /// Keep it with these categories forbidden inside.
    Forbid(CategorySet),
}

/// Decides each multi-subject element from its subject id (`None` when it has none).
pub type VerdictFn<'v> = dyn FnMut(Option<&str>) -> ElementVerdict + 'v;

/// The result of a redaction pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Nothing forbidden was present: forward the body as it was.
    Unchanged,
    /// The new body.
    Rewritten(Vec<u8>),
    /// A category whose action is `block` was present.
    Blocked(CategoryIdx),
}

/// Most field paths one report records; further hits are only counted.
pub const MAX_FIELD_HITS: usize = 64;

/// What was done to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HitAction {
    /// The member or element was removed.
    Removed,
    /// The value was coarsened.
    Coarsened,
    /// The value was replaced by a keyed hash.
    Pseudonymised,
    /// The field made the whole body refused.
    Blocked,
    /// A multi-subject element was removed because its subject's decision blocks.
    ElementDropped,
}

/// One field acted on. The path names only keys the policy's selectors know and array
/// indexes; any other key is written `*`, so no key taken from the body (which could be
/// personal data, e.g. an e-mail address used as a key) reaches a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldHit {
    /// JSONPath-like location, e.g. `$.items[3].gps`.
    pub path: String,
    /// The category acted on (`None` for a dropped element).
    pub category: Option<CategoryIdx>,
    /// What was done.
    pub action: HitAction,
}

/// Counts of what a pass did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyReport {
    /// Members or elements removed.
    pub removed: usize,
    /// Values coarsened or pseudonymised.
    pub transformed: usize,
    /// Multi-subject elements dropped because their subject's decision blocks.
    pub dropped_elements: usize,
    /// Categories found and acted on.
    pub categories: CategorySet,
    /// Fields acted on, in body order (only with [`BodyRules::record_paths`]; at most
    /// [`MAX_FIELD_HITS`]).
    pub fields: Vec<FieldHit>,
    /// More fields were acted on than `fields` holds.
    pub fields_truncated: bool,
    /// The body, or some part of it, passed without being read: a format the filter
    /// cannot read, with `body.unparsed: pass` (the decision header then says
    /// `body=unread`).
    pub unread: bool,
}

impl BodyReport {
    /// Records one field acted on, up to [`MAX_FIELD_HITS`].
    pub(crate) fn push_hit(&mut self, hit: FieldHit) {
        if self.fields.len() >= MAX_FIELD_HITS {
            self.fields_truncated = true;
        } else {
            self.fields.push(hit);
        }
    }

    /// Adds what another pass (a part of the same body) did.
    pub(crate) fn merge(&mut self, other: BodyReport) {
        self.removed += other.removed;
        self.transformed += other.transformed;
        self.dropped_elements += other.dropped_elements;
        self.categories = self.categories.union(other.categories);
        self.fields_truncated |= other.fields_truncated;
        self.unread |= other.unread;
        for hit in other.fields {
            self.push_hit(hit);
        }
    }
}

/// One step of the path to the current value, while paths are recorded.
#[derive(Debug, Clone)]
pub(crate) enum PathSeg<'a> {
    Key(Cow<'a, [u8]>),
    Unknown,
    Index(usize),
}

enum Stop {
    Json(JsonError),
    Block(CategoryIdx),
}

impl From<JsonError> for Stop {
    fn from(e: JsonError) -> Self {
        Stop::Json(e)
    }
}

/// What one field of forbidden categories gets, by the purpose's actions.
pub(crate) enum Resolved {
    /// Cut it out.
    Remove,
    /// Refuse the whole body (the first `block` category).
    Block(CategoryIdx),
    /// Replace it by this transform of this category.
    Transform(CategoryIdx, FieldAction),
}

/// Resolves the action for a field whose forbidden categories are `hit`: `block` wins,
/// then `remove` (also the default); one transform applies only when every category asks
/// for the same one, else the field is removed, to be safe. Shared by the JSON redactor
/// and the protobuf walker.
pub(crate) fn resolve(actions: &[(CategoryIdx, FieldAction)], hit: CategorySet) -> Resolved {
    let mut transform = None;
    for category in hit.iter() {
        let action = actions.iter().find(|(c, _)| *c == category).map(|(_, a)| a);
        match action {
            Some(FieldAction::Block) => return Resolved::Block(category),
            None | Some(FieldAction::Remove) => return Resolved::Remove,
            Some(a) => match transform {
                None => transform = Some((category, *a)),
                // Two categories asking for different transforms: remove, to be safe.
                Some((_, prev)) if prev != *a => return Resolved::Remove,
                Some(_) => {}
            },
        }
    }
    match transform {
        Some((c, a)) => Resolved::Transform(c, a),
        None => Resolved::Remove,
    }
}

impl BodyRules<'_> {
    /// The action for a value of the categories `hit` under these rules ([`resolve`]).
    pub(crate) fn resolve(&self, hit: CategorySet) -> Resolved {
        resolve(self.actions, hit)
    }

    /// The transformed form of a parsed value (a form parameter), `None` when it cannot be
    /// transformed (remove it instead).
    pub(crate) fn transform_value(
        &self,
        category: CategoryIdx,
        action: &FieldAction,
        value: &serde_json::Value,
    ) -> Option<serde_json::Value> {
        match action {
            FieldAction::Coarsen => {
                let spec = self.coarsen.get(category.position())?.as_ref()?;
                coarsen_value(spec, value, self.today)
            }
            FieldAction::Pseudonymise => pseudonymise_value(self.key?, value),
            FieldAction::Remove | FieldAction::Block => None,
        }
    }
}

/// Appends `[i]` to a field path.
pub(crate) fn push_index(path: &mut String, i: usize) {
    path.push('[');
    path.push_str(&i.to_string());
    path.push(']');
}

impl BodyReport {
    /// Records one field acted on, unless [`MAX_FIELD_HITS`] are recorded already (then
    /// it only marks the report truncated); `path` is built only when it is kept.
    pub(crate) fn push_field(
        &mut self,
        path: impl FnOnce() -> String,
        category: Option<CategoryIdx>,
        action: HitAction,
    ) {
        if self.fields.len() >= MAX_FIELD_HITS {
            self.fields_truncated = true;
            return;
        }
        self.fields.push(FieldHit {
            path: path(),
            category,
            action,
        });
    }
}

/// Redacts one JSON document. `forbidden` is the request's forbidden set; elements of a
/// multi-subject body get theirs from `verdict`.
///
/// The two-stage redactor (a SIMD structural index, then a walk over its tokens) does the
/// work; a body it does not vouch for (invalid, too deep, not UTF-8) goes to
/// [`redact_scalar`], so the result, errors included, is always the scalar redactor's.
pub fn redact<'v>(
    input: &[u8],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
    elements: Option<(&ElementRules<'_>, &'v mut VerdictFn<'v>)>,
) -> Result<(BodyOutcome, BodyReport), JsonError> {
    let (element_rules, mut verdict) = match elements {
        Some((r, v)) => (Some(r), Some(v)),
        None => (None, None),
    };
    if let Some(done) = redact_indexed(
        input,
        rules,
        forbidden,
        element_rules,
        verdict.as_deref_mut(),
    ) {
        return Ok(done);
    }
    redact_scalar(input, rules, forbidden, element_rules.zip(verdict))
}

/// The scalar redactor: one pass that scans and validates byte by byte. It decides every
/// body the two-stage redactor gives up on, and it is the reference that one is checked
/// against.
pub fn redact_scalar<'v>(
    input: &[u8],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
    elements: Option<(&ElementRules<'_>, &'v mut VerdictFn<'v>)>,
) -> Result<(BodyOutcome, BodyReport), JsonError> {
    if let Err(e) = std::str::from_utf8(input) {
        return Err(JsonError::Syntax(e.valid_up_to()));
    }
    let (element_rules, verdict) = match elements {
        Some((r, v)) => (Some(r), Some(v)),
        None => (None, None),
    };
    let mut r = Redactor {
        sc: Scanner::new(input),
        rules,
        element_rules,
        verdict,
        edits: Edits::new(input, rules.record_paths),
    };
    let root = rules.matcher.root_id();
    let element_root = r.element_rules.map(|er| er.elements.root_id());
    r.sc.skip_ws();
    let result = r.value(root, element_root, forbidden, 0);
    match result {
        Ok(()) => {}
        Err(Stop::Json(e)) => return Err(e),
        Err(Stop::Block(c)) => return Ok(r.edits.blocked(c)),
    }
    r.sc.skip_ws();
    if r.sc.pos != input.len() {
        return Err(r.sc.err());
    }
    Ok(r.edits.finish())
}

/// The output side of a redaction pass, shared by both redactors: the bytes kept so far,
/// the report, and the path to the current value while paths are recorded.
pub(crate) struct Edits<'a> {
    input: &'a [u8],
    record_paths: bool,
    out: Vec<u8>,
    copied: usize,
    changed: bool,
    /// What the pass did so far.
    pub(crate) report: BodyReport,
    path: Vec<PathSeg<'a>>,
}

impl<'a> Edits<'a> {
    /// Nothing cut yet from `input`.
    pub(crate) fn new(input: &'a [u8], record_paths: bool) -> Self {
        Edits {
            input,
            record_paths,
            out: Vec::new(),
            copied: 0,
            changed: false,
            report: BodyReport::default(),
            path: Vec::new(),
        }
    }

    /// The outcome of a pass that reached the end of the document.
    pub(crate) fn finish(mut self) -> (BodyOutcome, BodyReport) {
        if !self.changed {
            return (BodyOutcome::Unchanged, self.report);
        }
        let rest = self.input.get(self.copied..).unwrap_or_default();
        self.out.extend_from_slice(rest);
        (BodyOutcome::Rewritten(self.out), self.report)
    }

    /// The outcome of a pass stopped by a `block` category.
    pub(crate) fn blocked(self, category: CategoryIdx) -> (BodyOutcome, BodyReport) {
        (BodyOutcome::Blocked(category), self.report)
    }

    /// Enters a child (its path segment is pushed while paths are recorded).
    pub(crate) fn enter(&mut self, seg: PathSeg<'a>) {
        if self.record_paths {
            self.path.push(seg);
        }
    }

    /// Leaves the child entered last.
    pub(crate) fn leave(&mut self) {
        if self.record_paths {
            self.path.pop();
        }
    }

    /// Records a field acted on at `seg` below the current path.
    pub(crate) fn record(
        &mut self,
        seg: PathSeg<'a>,
        category: Option<CategoryIdx>,
        action: HitAction,
    ) {
        if !self.record_paths {
            return;
        }
        let segments = &self.path;
        self.report.push_field(
            || {
                let mut path = String::from("$");
                for s in segments.iter().chain(std::iter::once(&seg)) {
                    match s {
                        PathSeg::Key(k) => {
                            path.push('.');
                            path.push_str(std::str::from_utf8(k).unwrap_or("*"));
                        }
                        PathSeg::Unknown => path.push_str(".*"),
                        PathSeg::Index(i) => push_index(&mut path, *i),
                    }
                }
                path
            },
            category,
            action,
        );
    }

    /// Drops the input bytes `from..to` from the output.
    pub(crate) fn cut(&mut self, from: usize, to: usize) {
        if !self.changed {
            self.out.reserve(self.input.len());
            self.changed = true;
        }
        let kept = self.input.get(self.copied..from).unwrap_or_default();
        self.out.extend_from_slice(kept);
        self.copied = to;
    }

    /// Puts `bytes` in place of the input bytes `from..to`.
    pub(crate) fn replace(&mut self, from: usize, to: usize, bytes: &[u8]) {
        self.cut(from, to);
        self.out.extend_from_slice(bytes);
    }
}

/// The path segment of a child for field paths: a key some selector knows, `*` for any
/// other key, or the index (always `Unknown` when paths are not recorded).
pub(crate) fn child_segment<'a>(
    rules: &BodyRules<'_>,
    element_matcher: Option<&Matcher>,
    key_bytes: &Cow<'a, [u8]>,
    index: Option<usize>,
) -> PathSeg<'a> {
    if !rules.record_paths {
        return PathSeg::Unknown;
    }
    match index {
        Some(i) => PathSeg::Index(i),
        None => {
            let known = rules.matcher.knows_name(key_bytes)
                || element_matcher.is_some_and(|m| m.knows_name(key_bytes));
            if known {
                PathSeg::Key(key_bytes.clone())
            } else {
                PathSeg::Unknown
            }
        }
    }
}

/// The transformed raw value (coarsened or pseudonymised), `None` when it cannot be
/// transformed (remove it instead).
pub(crate) fn transform_raw(
    rules: &BodyRules<'_>,
    category: CategoryIdx,
    action: &FieldAction,
    raw: &[u8],
) -> Option<Vec<u8>> {
    match action {
        FieldAction::Coarsen => {
            let spec = rules.coarsen.get(category.position())?.as_ref()?;
            coarsen(spec, raw, rules.today)
        }
        FieldAction::Pseudonymise => pseudonymise(rules.key?, raw),
        FieldAction::Remove | FieldAction::Block => None,
    }
}

/// Decides the multi-subject element starting at `start` (matched by element selector
/// `spec`) from its subject id; an ambiguous subject, or no verdict function, drops it.
pub(crate) fn element_verdict(
    element_rules: Option<&ElementRules<'_>>,
    verdict: Option<&mut VerdictFn<'_>>,
    input: &[u8],
    start: usize,
    spec: CategoryIdx,
) -> ElementVerdict {
    let subject = element_rules
        .and_then(|er| er.subject_paths.get(spec.position()))
        .map_or(Subject::Absent, |path| find_subject(input, start, path));
    let subject = match subject {
        Subject::Ambiguous => return ElementVerdict::Drop,
        Subject::One(id) => Some(id),
        Subject::Absent => None,
    };
    match verdict {
        Some(verdict) => verdict(subject.as_deref()),
        None => ElementVerdict::Drop,
    }
}

struct Redactor<'a, 'r, 'v> {
    sc: Scanner<'a>,
    rules: &'r BodyRules<'r>,
    element_rules: Option<&'r ElementRules<'r>>,
    verdict: Option<&'v mut VerdictFn<'v>>,
    edits: Edits<'a>,
}

impl<'a> Redactor<'a, '_, '_> {
    /// Redacts the value at the cursor; `state` is its selector state set (a DFA id) and
    /// `element_state` the element selectors' one, when there are element rules.
    fn value(
        &mut self,
        state: u32,
        element_state: Option<u32>,
        forbidden: CategorySet,
        depth: usize,
    ) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Json(JsonError::TooDeep));
        }
        match self.sc.peek() {
            Some(b'{') => self.container(state, element_state, forbidden, depth, true),
            Some(b'[') => self.container(state, element_state, forbidden, depth, false),
            _ => Ok(self.sc.skip_value(depth)?),
        }
    }

    fn container(
        &mut self,
        state: u32,
        element_state: Option<u32>,
        forbidden: CategorySet,
        depth: usize,
        is_object: bool,
    ) -> Result<(), Stop> {
        let close = if is_object { b'}' } else { b']' };
        self.sc.pos += 1;
        self.sc.skip_ws();
        if self.sc.peek() == Some(close) {
            self.sc.pos += 1;
            return Ok(());
        }
        let input = self.sc.input;
        let element_matcher = self.element_rules.map(|er| er.elements);
        let mut kept_any = false;
        let mut drop_next_comma = false;
        let mut comma_at = 0;
        let mut index = 0;
        loop {
            self.sc.skip_ws();
            let member_start = self.sc.pos;
            let mut key_bytes: Cow<'a, [u8]> = Cow::Borrowed(&[]);
            let key = if is_object {
                let (s, e, escaped) = self.sc.string()?;
                key_bytes = decode_string(input.get(s..e).unwrap_or_default(), escaped);
                self.sc.skip_ws();
                self.sc.expect(b':')?;
                self.sc.skip_ws();
                // Unescaped keys followed by eight input bytes load their head in one go.
                match input.get(s..).and_then(|r| r.first_chunk::<8>()) {
                    Some(chunk) if !escaped => {
                        let len = e - s;
                        let mask = if len >= 8 {
                            u64::MAX
                        } else {
                            (1u64 << (8 * len)) - 1
                        };
                        ChildKey::KeyWithHead(&key_bytes, u64::from_le_bytes(*chunk) & mask)
                    }
                    _ => ChildKey::Key(&key_bytes),
                }
            } else {
                ChildKey::Index(index)
            };
            let value_start = self.sc.pos;
            let (child_state, matched) = self.rules.matcher.step_id(state, key);
            let mut element_spec = None;
            let mut child_element_state = None;
            if let (Some(m), Some(es)) = (element_matcher, element_state) {
                let (next, specs) = m.step_id(es, key);
                element_spec = specs.iter().next();
                child_element_state = Some(next);
            }
            let hit = matched.intersection(forbidden);
            let mut removed = false;
            let seg = child_segment(
                self.rules,
                element_matcher,
                &key_bytes,
                (!is_object).then_some(index),
            );
            if !hit.is_empty() {
                let first = hit.iter().next();
                match resolve(self.rules.actions, hit) {
                    Resolved::Block(c) => {
                        self.edits.record(seg, Some(c), HitAction::Blocked);
                        return Err(Stop::Block(c));
                    }
                    Resolved::Remove => {
                        self.sc.skip_value(depth + 1)?;
                        self.edits.report.removed += 1;
                        self.edits.report.categories = self.edits.report.categories.union(hit);
                        self.edits.record(seg, first, HitAction::Removed);
                        removed = true;
                    }
                    Resolved::Transform(category, action) => {
                        self.sc.skip_value(depth + 1)?;
                        let raw = input.get(value_start..self.sc.pos).unwrap_or_default();
                        self.edits.report.categories = self.edits.report.categories.union(hit);
                        match transform_raw(self.rules, category, &action, raw) {
                            Some(bytes) => {
                                self.edits.replace(value_start, self.sc.pos, &bytes);
                                self.edits.report.transformed += 1;
                                let done = if action == FieldAction::Pseudonymise {
                                    HitAction::Pseudonymised
                                } else {
                                    HitAction::Coarsened
                                };
                                self.edits.record(seg, Some(category), done);
                            }
                            None => {
                                self.edits.report.removed += 1;
                                self.edits.record(seg, Some(category), HitAction::Removed);
                                removed = true;
                            }
                        }
                    }
                }
            } else if let Some(spec) = element_spec {
                match element_verdict(
                    self.element_rules,
                    self.verdict.as_deref_mut(),
                    input,
                    value_start,
                    spec,
                ) {
                    ElementVerdict::Drop => {
                        self.sc.skip_value(depth + 1)?;
                        self.edits.report.dropped_elements += 1;
                        self.edits.record(seg, None, HitAction::ElementDropped);
                        removed = true;
                    }
                    ElementVerdict::Forbid(element_forbidden) => {
                        self.edits.enter(seg);
                        self.value(child_state, None, element_forbidden, depth + 1)?;
                        self.edits.leave();
                    }
                }
            } else if !matches!(input.get(self.sc.pos), Some(b'{' | b'[')) {
                // A scalar nothing matched: there is nothing below it to look at.
                self.sc.skip_value(depth + 1)?;
            } else {
                self.edits.enter(seg);
                self.value(child_state, child_element_state, forbidden, depth + 1)?;
                self.edits.leave();
            }
            let value_end = self.sc.pos;
            if removed {
                if kept_any {
                    self.edits.cut(comma_at, value_end);
                } else {
                    self.edits.cut(member_start, value_end);
                    drop_next_comma = true;
                }
            } else {
                kept_any = true;
                drop_next_comma = false;
            }
            self.sc.skip_ws();
            match self.sc.peek() {
                Some(b',') => {
                    comma_at = self.sc.pos;
                    if drop_next_comma {
                        self.edits.cut(comma_at, comma_at + 1);
                        drop_next_comma = false;
                    }
                    self.sc.pos += 1;
                    index += 1;
                }
                Some(b) if b == close => {
                    self.sc.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Json(self.sc.err())),
            }
        }
    }
}

/// The subject id of a multi-subject element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    /// No member at the subject path (or not a string or number there).
    Absent,
    /// Exactly one id.
    One(String),
    /// The path names more than one member at some level (a duplicate key, or keys that
    /// differ only in case): readers disagree on which one counts, so nobody's consent can
    /// be assumed.
    Ambiguous,
}

/// Reads the subject id of an element: the string (or number) at `path` inside the object
/// starting at `start`. Keys match without regard to case, and every member is looked at,
/// so that a second `user_id` (which most JSON readers would take) cannot hide behind the
/// first.
fn find_subject(input: &[u8], start: usize, path: &[String]) -> Subject {
    let Some((first, rest)) = path.split_first() else {
        return Subject::Absent;
    };
    let mut sc = Scanner { input, pos: start };
    if sc.expect(b'{').is_err() {
        return Subject::Absent;
    }
    let mut found: Option<usize> = None;
    loop {
        sc.skip_ws();
        if sc.peek() == Some(b'}') {
            break;
        }
        let Ok((s, e, escaped)) = sc.string() else {
            return Subject::Absent;
        };
        let key = decode_string(input.get(s..e).unwrap_or_default(), escaped);
        sc.skip_ws();
        if sc.expect(b':').is_err() {
            return Subject::Absent;
        }
        sc.skip_ws();
        if key.as_ref().eq_ignore_ascii_case(first.as_bytes()) {
            if found.is_some() {
                return Subject::Ambiguous;
            }
            found = Some(sc.pos);
        }
        if sc.skip_value(1).is_err() {
            return Subject::Absent;
        }
        sc.skip_ws();
        match sc.peek() {
            Some(b',') => sc.pos += 1,
            _ => break,
        }
    }
    let Some(value_start) = found else {
        return Subject::Absent;
    };
    if !rest.is_empty() {
        return find_subject(input, value_start, rest);
    }
    let mut sc = Scanner {
        input,
        pos: value_start,
    };
    let id = match sc.peek() {
        Some(b'"') => sc.string().ok().and_then(|(s, e, escaped)| {
            String::from_utf8(decode_string(input.get(s..e)?, escaped).into_owned()).ok()
        }),
        Some(b'-' | b'0'..=b'9') => sc.number().ok().and_then(|()| {
            std::str::from_utf8(input.get(value_start..sc.pos)?)
                .ok()
                .map(str::to_string)
        }),
        _ => None,
    };
    id.map_or(Subject::Absent, Subject::One)
}

#[cfg(test)]
mod tests {
    use super::super::selector::parse_selector;
    use super::super::transform::TEST_TODAY as TODAY;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const EMAIL: CategoryIdx = CategoryIdx(0);
    const GPS: CategoryIdx = CategoryIdx(1);
    const MERCHANT: CategoryIdx = CategoryIdx(2);
    const DEVICE: CategoryIdx = CategoryIdx(3);
    const BIRTH: CategoryIdx = CategoryIdx(4);

    fn matcher() -> Matcher {
        let mut m = Matcher::default();
        for (s, c) in [
            ("$..email", EMAIL),
            ("$..gps", GPS),
            ("$.transactions[*].merchant", MERCHANT),
            ("$..device_id", DEVICE),
            ("$.profile.birth_date", BIRTH),
        ] {
            m.add(&parse_selector(s).unwrap(), c).unwrap();
        }
        m
    }

    fn set(cats: &[CategoryIdx]) -> CategorySet {
        let mut s = CategorySet::EMPTY;
        for c in cats {
            s.insert(*c);
        }
        s
    }

    /// Rules with `m` and `actions` alone: no coarsening, no key, no field paths.
    fn plain_rules<'a>(m: &'a Matcher, actions: &'a [(CategoryIdx, FieldAction)]) -> BodyRules<'a> {
        BodyRules {
            matcher: m,
            actions,
            coarsen: &[],
            key: None,
            today: TODAY,
            record_paths: false,
        }
    }

    /// `plain_rules` with `coarsen`, the test pseudonym key and `record_paths`.
    fn keyed_rules<'a>(
        m: &'a Matcher,
        actions: &'a [(CategoryIdx, FieldAction)],
        coarsen: &'a [Option<CoarsenSpec>],
        record_paths: bool,
    ) -> BodyRules<'a> {
        BodyRules {
            coarsen,
            key: Some(b"test-key-0123456789"),
            record_paths,
            ..plain_rules(m, actions)
        }
    }

    /// The text of a rewritten body; panics on any other outcome.
    fn rewritten(outcome: BodyOutcome) -> String {
        match outcome {
            BodyOutcome::Rewritten(b) => String::from_utf8(b).unwrap(),
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    fn run_with(
        input: &str,
        forbidden: &[CategoryIdx],
        actions: &[(CategoryIdx, FieldAction)],
    ) -> Result<(BodyOutcome, BodyReport), JsonError> {
        let m = matcher();
        let coarsen = vec![
            None,
            Some(CoarsenSpec::GridDegrees(0.01)),
            None,
            None,
            Some(CoarsenSpec::AgeBandYears(10)),
        ];
        let rules = keyed_rules(&m, actions, &coarsen, false);
        redact(input.as_bytes(), &rules, set(forbidden), None)
    }

    fn report_with_paths(
        input: &str,
        forbidden: &[CategoryIdx],
        actions: &[(CategoryIdx, FieldAction)],
    ) -> BodyReport {
        let m = matcher();
        let coarsen = vec![None, Some(CoarsenSpec::GridDegrees(0.01)), None, None, None];
        let rules = keyed_rules(&m, actions, &coarsen, true);
        let with = redact(input.as_bytes(), &rules, set(forbidden), None).unwrap();
        let without = redact(
            input.as_bytes(),
            &BodyRules {
                record_paths: false,
                ..rules
            },
            set(forbidden),
            None,
        )
        .unwrap();
        assert_eq!(with.0, without.0, "recording paths changes nothing");
        with.1
    }

    #[test]
    fn field_paths_name_known_keys_and_indexes_and_hide_every_other_key() {
        let input = r#"{"a@example.jp": {"email": "x", "gps": "35.86123,139.64567"},
                        "transactions": [{"merchant": "m"}, {"amount": 1, "merchant": "n"}],
                        "\u0065mail": "y"}"#;
        let report = report_with_paths(
            input,
            &[EMAIL, GPS, MERCHANT],
            &[(GPS, FieldAction::Coarsen)],
        );
        let got: Vec<(&str, HitAction)> = report
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("$.*.email", HitAction::Removed),
                ("$.*.gps", HitAction::Coarsened),
                ("$.transactions[0].merchant", HitAction::Removed),
                ("$.transactions[1].merchant", HitAction::Removed),
                ("$.email", HitAction::Removed),
            ]
        );
        assert!(report.fields.iter().all(|f| !f.path.contains("example")));
        assert_eq!(report.fields[1].category, Some(GPS));
    }

    #[test]
    fn field_paths_are_bounded() {
        let many: Vec<String> = (0..MAX_FIELD_HITS + 10)
            .map(|i| format!("{{\"email\": \"{i}\"}}"))
            .collect();
        let input = format!("[{}]", many.join(","));
        let report = report_with_paths(&input, &[EMAIL], &[]);
        assert_eq!(report.fields.len(), MAX_FIELD_HITS);
        assert!(report.fields_truncated);
        assert_eq!(report.removed, MAX_FIELD_HITS + 10);
    }

    fn out(input: &str, forbidden: &[CategoryIdx]) -> String {
        match run_with(input, forbidden, &[]).unwrap().0 {
            BodyOutcome::Rewritten(b) => String::from_utf8(b).unwrap(),
            BodyOutcome::Unchanged => input.to_string(),
            BodyOutcome::Blocked(c) => panic!("blocked on {c:?}"),
        }
    }

    fn same_json(a: &str, b: &str) {
        let a: serde_json::Value =
            serde_json::from_str(a).unwrap_or_else(|e| panic!("invalid output {a}: {e}"));
        let b: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_forbidden_member_goes_and_every_other_byte_stays() {
        let input = "{ \"id\" : 1,\n  \"email\": \"a@b\",\n  \"note\": \"x\" }";
        assert_eq!(out(input, &[EMAIL]), "{ \"id\" : 1,\n  \"note\": \"x\" }");
    }

    #[test]
    fn first_middle_last_and_only_members_leave_valid_json() {
        same_json(
            &out(r#"{"email":1,"a":2,"b":3}"#, &[EMAIL]),
            r#"{"a":2,"b":3}"#,
        );
        same_json(
            &out(r#"{"a":2,"email":1,"b":3}"#, &[EMAIL]),
            r#"{"a":2,"b":3}"#,
        );
        same_json(
            &out(r#"{"a":2,"b":3,"email":1}"#, &[EMAIL]),
            r#"{"a":2,"b":3}"#,
        );
        same_json(&out(r#"{"email":1}"#, &[EMAIL]), r#"{}"#);
        same_json(
            &out(
                r#"{"email":1,"email":2,"a":[{"email":3},{"email":4,"b":1}]}"#,
                &[EMAIL],
            ),
            r#"{"a":[{},{"b":1}]}"#,
        );
    }

    #[test]
    fn nothing_forbidden_present_leaves_the_body_unchanged() {
        let (outcome, report) = run_with(r#"{"a":{"email":1}}"#, &[GPS], &[]).unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged);
        assert_eq!(report, BodyReport::default());
        let (outcome, _) = run_with(r#"{"a":{"email":1}}"#, &[], &[]).unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged, "allowed categories pass");
    }

    #[test]
    fn array_wildcards_reach_every_element() {
        let input = r#"{"transactions":[{"amount":1,"merchant":"A"},{"merchant":"B","amount":2}],"merchant":"top"}"#;
        same_json(
            &out(input, &[MERCHANT]),
            r#"{"transactions":[{"amount":1},{"amount":2}],"merchant":"top"}"#,
        );
    }

    #[test]
    fn recursive_names_match_at_any_depth() {
        let input = r#"{"a":[{"b":{"gps":{"lat":1}}}],"gps":[1,2]}"#;
        same_json(&out(input, &[GPS]), r#"{"a":[{"b":{}}]}"#);
    }

    #[test]
    fn escaped_or_uppercased_keys_do_not_escape_a_selector() {
        same_json(
            &out(
                r#"{"\u0067ps":{"lat":1},"GPS":2,"Em\u0061il":"x","ok":1}"#,
                &[GPS, EMAIL],
            ),
            r#"{"ok":1}"#,
        );
    }

    #[test]
    fn whole_array_elements_can_be_removed() {
        let mut m = Matcher::default();
        m.add(&parse_selector("$.places[*]").unwrap(), GPS).unwrap();
        let rules = plain_rules(&m, &[]);
        let (outcome, report) =
            redact(br#"{"places":[1,2,3],"n":1}"#, &rules, set(&[GPS]), None).unwrap();
        same_json(&rewritten(outcome), r#"{"places":[],"n":1}"#);
        assert_eq!(report.removed, 3);
    }

    #[test]
    fn coarsen_and_pseudonymise_replace_values_in_place() {
        let actions = [
            (GPS, FieldAction::Coarsen),
            (DEVICE, FieldAction::Pseudonymise),
            (BIRTH, FieldAction::Coarsen),
        ];
        let input = r#"{"gps":{"lat":35.8617,"lng":139.6455},"device_id":"dev-1","profile":{"birth_date":"1990-04-01"}}"#;
        let (outcome, report) = run_with(input, &[GPS, DEVICE, BIRTH], &actions).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rewritten(outcome)).unwrap();
        assert_eq!(v["gps"], serde_json::json!({"lat": 35.86, "lng": 139.65}));
        assert!(v["device_id"].as_str().unwrap().starts_with("ps_"));
        assert_eq!(v["profile"]["birth_date"], "30-39");
        assert_eq!(report.transformed, 3);
    }

    #[test]
    fn a_value_that_cannot_be_coarsened_is_removed() {
        let actions = [(GPS, FieldAction::Coarsen)];
        let (outcome, _) = run_with(r#"{"gps":"somewhere","a":1}"#, &[GPS], &actions).unwrap();
        same_json(&rewritten(outcome), r#"{"a":1}"#);
    }

    #[test]
    fn pseudonymise_without_a_key_removes() {
        let m = matcher();
        let actions = [(DEVICE, FieldAction::Pseudonymise)];
        let rules = plain_rules(&m, &actions);
        let (outcome, _) =
            redact(br#"{"device_id":"d","a":1}"#, &rules, set(&[DEVICE]), None).unwrap();
        same_json(&rewritten(outcome), r#"{"a":1}"#);
    }

    #[test]
    fn a_block_category_blocks_the_whole_body() {
        let actions = [(MERCHANT, FieldAction::Block)];
        let (outcome, _) = run_with(
            r#"{"transactions":[{"merchant":"A"}]}"#,
            &[MERCHANT],
            &actions,
        )
        .unwrap();
        assert_eq!(outcome, BodyOutcome::Blocked(MERCHANT));
        let (outcome, _) = run_with(r#"{"transactions":[]}"#, &[MERCHANT], &actions).unwrap();
        assert_eq!(
            outcome,
            BodyOutcome::Unchanged,
            "absent, so nothing to block"
        );
    }

    #[test]
    fn invalid_json_is_an_error_not_a_pass() {
        for bad in [
            r#"{"email":1"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            "",
            r#"{"email":[1,}"#,
        ] {
            assert!(run_with(bad, &[EMAIL], &[]).is_err(), "{bad}");
        }
        let m = matcher();
        let rules = plain_rules(&m, &[]);
        assert!(
            redact(b"{\"a\":\"\xff\"}", &rules, set(&[EMAIL]), None).is_err(),
            "invalid UTF-8"
        );
    }

    #[test]
    fn removed_values_are_still_validated() {
        assert!(run_with(r#"{"email":{"x":tru},"a":1}"#, &[EMAIL], &[]).is_err());
    }

    #[test]
    fn multi_subject_elements_follow_their_own_subject() {
        let m = matcher();
        let mut elements = Matcher::default();
        elements
            .add(&parse_selector("$.items[*]").unwrap(), CategoryIdx(0))
            .unwrap();
        let paths = vec![vec!["user_id".to_string()]];
        let er = ElementRules {
            elements: &elements,
            subject_paths: &paths,
        };
        let rules = plain_rules(&m, &[]);
        let mut verdict = |subject: Option<&str>| match subject {
            Some("alice") => ElementVerdict::Forbid(CategorySet::EMPTY),
            Some("bob") => ElementVerdict::Forbid(set(&[EMAIL])),
            _ => ElementVerdict::Drop,
        };
        let input = r#"{"items":[{"email":"a@x","user_id":"alice"},{"user_id":"bob","email":"b@x","n":1},{"user_id":"carol","email":"c@x"},{"email":"anon"}],"email":"top"}"#;
        let (outcome, report) = redact(
            input.as_bytes(),
            &rules,
            set(&[EMAIL]),
            Some((&er, &mut verdict)),
        )
        .unwrap();
        same_json(
            &rewritten(outcome),
            r#"{"items":[{"email":"a@x","user_id":"alice"},{"user_id":"bob","n":1}]}"#,
        );
        assert_eq!(report.dropped_elements, 2);
    }

    #[test]
    fn an_element_naming_two_subjects_is_dropped_not_decided_for_the_first() {
        let paths = vec!["user_id".to_string()];
        let input = |items: &str| format!(r#"{{"items":[{items}]}}"#);
        for (items, expected) in [
            // Most JSON readers keep the last duplicate: alice's consent must not cover bob.
            (
                r#"{"user_id":"alice","user_id":"bob","email":"b@x"}"#,
                Subject::Ambiguous,
            ),
            (
                r#"{"USER_ID":"alice","user_id":"bob","email":"b@x"}"#,
                Subject::Ambiguous,
            ),
            (
                r#"{"user_\u0069d":"alice","user_id":"alice"}"#,
                Subject::Ambiguous,
            ),
            (
                r#"{"email":"a@x","user_id":"alice"}"#,
                Subject::One("alice".into()),
            ),
            (r#"{"user_id":{"x":1}}"#, Subject::Absent),
        ] {
            let body = input(items);
            let start = body.find("[{").unwrap() + 1;
            assert_eq!(
                find_subject(body.as_bytes(), start, &paths),
                expected,
                "{items}"
            );
        }
        let nested = vec!["who".to_string(), "id".to_string()];
        let body = r#"{"who":{"id":"a"},"who":{"id":"b"}}"#;
        assert_eq!(
            find_subject(body.as_bytes(), 0, &nested),
            Subject::Ambiguous
        );
    }
}
