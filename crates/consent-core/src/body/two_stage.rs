//! The two-stage JSON redactor, the one [`redact`](super::redact) runs: stage 1
//! ([`super::structural`]) indexes the tokens of the body with SIMD, 4 KiB at a time;
//! stage 2, here, walks the tokens: it checks the grammar token by token, parses numbers
//! and literals, matches each key with the compiled selectors, and copies untouched spans
//! as the scalar redactor does (the same [`Edits`]). A string costs two tokens, whatever
//! its length.
//!
//! It accepts exactly what the scalar redactor accepts and gives the same outcome and
//! report; whenever it cannot vouch for that (the body is not valid JSON, is nested too
//! deep, or is not UTF-8) it gives up and the scalar redactor decides, so every error,
//! with its offset, comes from the scalar pass. The one thing a body that gives up pays
//! twice is the verdict of a multi-subject element met before the point it gave up at.

use std::borrow::Cow;

use crate::policy::categories::{CategoryIdx, CategorySet};

use super::dfa::Dfa;
use super::matcher::{ChildKey, Matcher};
use super::redactor::{
    child_segment, element_verdict, resolve, transform_raw, BodyOutcome, BodyReport, BodyRules,
    Edits, ElementRules, ElementVerdict, FieldAction, HitAction, PathSeg, Resolved, VerdictFn,
};
use super::scan::{decode_string, MAX_DEPTH};
use super::structural::{index, BLOCK};

/// Redacts `input` in two stages; `None` when the scalar redactor must decide (see the
/// module documentation).
pub(crate) fn redact_indexed(
    input: &[u8],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
    element_rules: Option<&ElementRules<'_>>,
    verdict: Option<&mut VerdictFn<'_>>,
) -> Option<(BodyOutcome, BodyReport)> {
    let index = index(input)?;
    let mut w = Walker {
        input,
        masks: &index.masks,
        backslash: index.backslash,
        rules,
        element_rules,
        verdict,
        edits: Edits::new(input, rules.record_paths),
    };
    let root = rules.matcher.root_id();
    let element_root = element_rules.map(|er| er.elements.root_id());
    let mut cur = Cursor::start(&index.masks);
    let first = pop(&index.masks, &mut cur)?;
    let walked = if rules.record_paths || element_rules.is_some() {
        w.walk(cur, first, root, element_root, forbidden)
    } else if forbidden.bits() >> 64 != 0 {
        w.walk_plain::<true>(cur, first, root, forbidden)
    } else {
        w.walk_plain::<false>(cur, first, root, forbidden)
    };
    let mut cur = match walked {
        Ok(cur) => cur,
        Err(Stop::GiveUp) => return None,
        Err(Stop::Block(c)) => return Some(w.edits.blocked(c)),
    };
    // After the root value, nothing but whitespace.
    if pop(&index.masks, &mut cur).is_some() {
        return None;
    }
    Some(w.edits.finish())
}

/// Why the walk stopped early.
enum Stop {
    /// Not a body this pass vouches for: the scalar pass decides.
    GiveUp,
    /// A category whose action is `block` is present.
    Block(CategoryIdx),
}

/// Where the walk is in the token masks: the tokens of the current block not read yet,
/// and that block's number. Kept by value in the walk's locals, so it lives in registers.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    bits: u64,
    block: usize,
}

impl Cursor {
    /// At the first token of `masks`.
    fn start(masks: &[u64]) -> Self {
        Cursor {
            bits: masks.first().copied().unwrap_or(0),
            block: 0,
        }
    }
}

/// The offset of the next token; `None` past the last one.
#[inline(always)]
fn pop(masks: &[u64], cur: &mut Cursor) -> Option<usize> {
    while cur.bits == 0 {
        cur.block += 1;
        cur.bits = *masks.get(cur.block)?;
    }
    let at = cur.block * BLOCK + cur.bits.trailing_zeros() as usize;
    cur.bits &= cur.bits - 1;
    Some(at)
}

/// The bytes that may follow a number or a literal: whitespace, an operator, a quote (for
/// the grammar to refuse), or the end.
// Indexing in a const initialiser cannot fail at run time: out of range would not compile.
#[allow(clippy::indexing_slicing)]
static ENDS_ATOM: [bool; 256] = {
    let mut table = [false; 256];
    let ends = b" \t\n\r{}[]:,\"";
    let mut i = 0;
    while i < ends.len() {
        table[ends[i] as usize] = true;
        i += 1;
    }
    table
};

/// The end of the number at `at` by JSON's grammar (`-`? `0` or `[1-9][0-9]*`, then
/// `.[0-9]+`?, then `[eE][+-]?[0-9]+`?), `None` when it breaks it; what follows is the
/// caller's to check. Runs of digits are skipped eight bytes at a time.
#[inline(always)]
fn number_end(input: &[u8], at: usize) -> Option<usize> {
    let byte = |p: usize| input.get(p).copied().unwrap_or(0);
    let mut p = at;
    if byte(p) == b'-' {
        p += 1;
    }
    match byte(p) {
        b'0' => p += 1,
        b'1'..=b'9' => p = skip_digits(input, p + 1),
        _ => return None,
    }
    if byte(p) == b'.' {
        if !byte(p + 1).is_ascii_digit() {
            return None;
        }
        p = skip_digits(input, p + 2);
    }
    if let b'e' | b'E' = byte(p) {
        p += 1;
        if let b'+' | b'-' = byte(p) {
            p += 1;
        }
        if !byte(p).is_ascii_digit() {
            return None;
        }
        p = skip_digits(input, p + 1);
    }
    Some(p)
}

/// The offset of the first byte at or after `p` that is not an ASCII digit.
#[inline(always)]
fn skip_digits(input: &[u8], mut p: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    while let Some(chunk) = input.get(p..).and_then(|r| r.first_chunk::<8>()) {
        // After the XOR a digit is a byte below 10; bit 7 flags every byte that is not
        // (its low seven bits plus 118 carry into bit 7 from 10 up, and no further).
        let x = u64::from_le_bytes(*chunk) ^ (u64::from(b'0') * ONES);
        let others = ((x & LOW7).wrapping_add((0x80 - 10) * ONES) | x) & !LOW7;
        if others != 0 {
            return p + (others.trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    while input.get(p).is_some_and(u8::is_ascii_digit) {
        p += 1;
    }
    p
}

/// The end of the literal `word` if the input holds it at `at`.
#[inline(always)]
fn literal_end(input: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let end = at + word.len();
    (input.get(at..end) == Some(word)).then_some(end)
}

/// The end of the number or literal at `at`, which must fill its run of bytes (what
/// follows is whitespace, an operator, a quote or the end); `None` when it is neither.
#[inline(always)]
fn atom_end(input: &[u8], at: usize) -> Option<usize> {
    let end = match input.get(at) {
        Some(b'-' | b'0'..=b'9') => number_end(input, at),
        Some(b't') => literal_end(input, at, b"true"),
        Some(b'f') => literal_end(input, at, b"false"),
        Some(b'n') => literal_end(input, at, b"null"),
        _ => None,
    }?;
    let ends = match input.get(end) {
        None => true,
        Some(&b) => ENDS_ATOM.get(usize::from(b)).copied().unwrap_or(false),
    };
    ends.then_some(end)
}

/// Whether the key bytes hold a backslash (an escape).
#[inline(always)]
fn has_backslash(raw: &[u8], head: Option<u64>) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    match head {
        // The head word holds the whole key, zero-padded: flag bytes equal to `\`.
        Some(word) if raw.len() <= 8 => {
            let x = word ^ (u64::from(b'\\') * ONES);
            !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7) != 0
        }
        _ => raw.contains(&b'\\'),
    }
}

struct Walker<'a, 'm, 'r, 's, 'v> {
    input: &'a [u8],
    /// Stage 1's token masks.
    masks: &'m [u64],
    /// Some byte of the body is a backslash (else no key needs decoding).
    backslash: bool,
    rules: &'r BodyRules<'r>,
    element_rules: Option<&'r ElementRules<'r>>,
    verdict: Option<&'s mut VerdictFn<'v>>,
    edits: Edits<'a>,
}

/// An open container of the walk (the current one lives in locals, its parents on a
/// stack): its selector states and forbidden set, and the scalar redactor's per-container
/// bookkeeping of cuts.
#[derive(Debug, Clone, Copy)]
struct Level {
    state: u32,
    element_state: Option<u32>,
    forbidden: CategorySet,
    is_object: bool,
    kept_any: bool,
    drop_next_comma: bool,
    comma_at: usize,
    index: usize,
}

impl Level {
    fn new(state: u32, element_state: Option<u32>, forbidden: CategorySet, open: u8) -> Self {
        Level {
            state,
            element_state,
            forbidden,
            is_object: open == b'{',
            kept_any: false,
            drop_next_comma: false,
            comma_at: 0,
            index: 0,
        }
    }

    fn close(&self) -> u8 {
        if self.is_object {
            b'}'
        } else {
            b']'
        }
    }
}

/// The closing bracket of an opening one.
#[inline(always)]
fn closing(open: u8) -> u8 {
    if open == b'{' {
        b'}'
    } else {
        b']'
    }
}

/// Keeps the first `len` bytes of a little-endian word (`len` up to 8).
const HEAD_MASKS: [u64; 9] = [
    0,
    0xFF,
    0xFFFF,
    0xFF_FFFF,
    0xFFFF_FFFF,
    0xFF_FFFF_FFFF,
    0xFFFF_FFFF_FFFF,
    0xFF_FFFF_FFFF_FFFF,
    u64::MAX,
];

/// An open container of [`Walker::walk_plain`]: its selector state and kind, how many
/// members it has had before the current one (`index`, also the array index) and how many
/// of those were removed. That is all the scalar redactor's cut bookkeeping needs: some
/// earlier member was kept exactly when `index > removed`, and the comma before a member
/// is found from its start.
#[derive(Debug, Clone, Copy)]
struct PlainLevel {
    state: u32,
    is_object: bool,
    index: usize,
    removed: usize,
}

impl PlainLevel {
    fn new(state: u32, open: u8) -> Self {
        PlainLevel {
            state,
            is_object: open == b'{',
            index: 0,
            removed: 0,
        }
    }

    fn close(&self) -> u8 {
        if self.is_object {
            b'}'
        } else {
            b']'
        }
    }
}

/// The offset of the comma before the member starting at `start` (only whitespace lies
/// between them in a body the walk has checked).
fn comma_before(input: &[u8], start: usize) -> Option<usize> {
    let before = input.get(..start)?;
    let at = before
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    (before.get(at) == Some(&b',')).then_some(at)
}

/// The categories a child belongs to, as [`Walker::walk_plain`] keeps them: the low word
/// alone when no forbidden category lies beyond the 64th (`WIDE` false), which keeps
/// them, and a step's result, in registers.
#[derive(Debug, Clone, Copy)]
struct Matched<const WIDE: bool>(u128);

impl<const WIDE: bool> Matched<WIDE> {
    #[inline(always)]
    fn of(set: CategorySet) -> Self {
        if WIDE {
            Matched(set.bits())
        } else {
            Matched(u128::from(set.bits() as u64))
        }
    }

    /// Whether some category is forbidden (`narrow`: the forbidden set's low word).
    #[inline(always)]
    fn hits(self, forbidden: CategorySet, narrow: u64) -> bool {
        if WIDE {
            self.0 & forbidden.bits() != 0
        } else {
            self.0 as u64 & narrow != 0
        }
    }

    fn set(self) -> CategorySet {
        CategorySet::from_bits(self.0)
    }
}

/// A key's step the DFA's memo did not answer: decoded when it may hold escapes (`clean`
/// false and a backslash in it), with its head word when eight input bytes follow its
/// start `s`, as the general walk builds it.
#[inline(never)]
fn key_step<const WIDE: bool>(
    dfa: &mut Dfa,
    matcher: &Matcher,
    state: u32,
    input: &[u8],
    s: usize,
    key: &[u8],
    clean: bool,
) -> (u32, Matched<WIDE>) {
    let head = input
        .get(s..)
        .and_then(|r| r.first_chunk::<8>())
        .map(|chunk| {
            let mask = HEAD_MASKS.get(key.len()).copied().unwrap_or(u64::MAX);
            u64::from_le_bytes(*chunk) & mask
        });
    let (next, matched) = if !clean && has_backslash(key, head) {
        let decoded = decode_string(key, true);
        dfa.step(matcher, state, ChildKey::Key(&decoded))
    } else {
        match head {
            Some(head) => dfa.step(matcher, state, ChildKey::KeyWithHead(key, head)),
            None => dfa.step(matcher, state, ChildKey::Key(key)),
        }
    };
    (next, Matched::of(matched))
}

impl<'a> Walker<'a, '_, '_, '_, '_> {
    /// Checks the value at `at` without looking for selectors in it; returns the offset
    /// just past it. The cursor goes in and out by value, so that the walk keeps its own
    /// in registers.
    #[inline(never)]
    fn skip(&mut self, mut cur: Cursor, at: usize, depth: usize) -> Result<(Cursor, usize), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::GiveUp);
        }
        let input = self.input;
        let open = input.get(at).copied().unwrap_or(0);
        if open == b'"' {
            let close = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
            return Ok((cur, close + 1));
        }
        if !matches!(open, b'{' | b'[') {
            return Ok((cur, atom_end(input, at).ok_or(Stop::GiveUp)?));
        }
        let close = closing(open);
        let byte = |at: usize| input.get(at).copied().unwrap_or(0);
        let mut t = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
        if byte(t) == close {
            return Ok((cur, t + 1));
        }
        loop {
            if open == b'{' {
                if byte(t) != b'"' {
                    return Err(Stop::GiveUp);
                }
                pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
                let colon = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
                if byte(colon) != b':' {
                    return Err(Stop::GiveUp);
                }
                t = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
            }
            (cur, _) = self.skip(cur, t, depth + 1)?;
            let after = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?;
            match byte(after) {
                b',' => t = pop(self.masks, &mut cur).ok_or(Stop::GiveUp)?,
                b if b == close => return Ok((cur, after + 1)),
                _ => return Err(Stop::GiveUp),
            }
        }
    }

    /// The value at `value_start`, of the forbidden categories `hit`: removed, transformed
    /// or the body refused, as the purpose's actions say; checks it. Returns the cursor,
    /// the offset just past the value and whether it was removed.
    #[inline(never)]
    fn act_on_hit(
        &mut self,
        cur: Cursor,
        hit: CategorySet,
        value_start: usize,
        depth: usize,
        seg: PathSeg<'a>,
    ) -> Result<(Cursor, usize, bool), Stop> {
        let rules = self.rules;
        let first = hit.iter().next();
        match resolve(rules.actions, hit) {
            Resolved::Block(c) => {
                self.edits.record(seg, Some(c), HitAction::Blocked);
                Err(Stop::Block(c))
            }
            Resolved::Remove => {
                let (cur, value_end) = self.skip(cur, value_start, depth)?;
                self.edits.report.removed += 1;
                self.edits.report.categories = self.edits.report.categories.union(hit);
                self.edits.record(seg, first, HitAction::Removed);
                Ok((cur, value_end, true))
            }
            Resolved::Transform(category, action) => {
                let (cur, value_end) = self.skip(cur, value_start, depth)?;
                let raw = self.input.get(value_start..value_end).unwrap_or_default();
                self.edits.report.categories = self.edits.report.categories.union(hit);
                match transform_raw(rules, category, &action, raw) {
                    Some(bytes) => {
                        self.edits.replace(value_start, value_end, &bytes);
                        self.edits.report.transformed += 1;
                        let done = if action == FieldAction::Pseudonymise {
                            HitAction::Pseudonymised
                        } else {
                            HitAction::Coarsened
                        };
                        self.edits.record(seg, Some(category), done);
                        Ok((cur, value_end, false))
                    }
                    None => {
                        self.edits.report.removed += 1;
                        self.edits.record(seg, Some(category), HitAction::Removed);
                        Ok((cur, value_end, true))
                    }
                }
            }
        }
    }

    /// [`Walker::walk`] for the common case, no field paths and no element rules: the
    /// forbidden set is the same everywhere, nothing is called back (so the DFA stays
    /// borrowed for the whole walk), and a short key the DFA has seen costs one memo
    /// compare. The scalar redactor's per-container bookkeeping of cuts is kept lazily
    /// (see [`PlainLevel`]), so that a member nothing matched touches none of it.
    /// `WIDE`: the forbidden set has categories beyond the 64th, so the hit test takes
    /// both words.
    fn walk_plain<const WIDE: bool>(
        &mut self,
        mut cur: Cursor,
        first: usize,
        root: u32,
        forbidden: CategorySet,
    ) -> Result<Cursor, Stop> {
        let input = self.input;
        let matcher = self.rules.matcher;
        let Some(mut held) = matcher.hold_dfa() else {
            return Err(Stop::GiveUp);
        };
        let dfa: &mut Dfa = &mut held;
        let narrow = forbidden.bits() as u64;
        let byte = |at: usize| input.get(at).copied().unwrap_or(0);
        macro_rules! pop {
            () => {
                match pop(self.masks, &mut cur) {
                    Some(at) => at,
                    None => return Err(Stop::GiveUp),
                }
            };
        }
        let open = byte(first);
        if !matches!(open, b'{' | b'[') {
            let (cur, _) = self.skip(cur, first, 0)?;
            return Ok(cur);
        }
        let mut t = pop!();
        if byte(t) == closing(open) {
            return Ok(cur);
        }
        let mut level = PlainLevel::new(root, open);
        let mut stack: Vec<PlainLevel> = Vec::new();
        // A member was just removed and nothing before it in its container was kept: the
        // comma after it goes too.
        let mut drop_comma = false;
        'member: loop {
            let depth = stack.len() + 1;
            let member_start = t;
            let value_start;
            let (child_state, matched) = if level.is_object {
                if byte(t) != b'"' {
                    return Err(Stop::GiveUp);
                }
                let e = pop!();
                let colon = pop!();
                if byte(colon) != b':' {
                    return Err(Stop::GiveUp);
                }
                value_start = pop!();
                let s = t + 1;
                let len = e.wrapping_sub(s);
                let mut remembered = None;
                if len <= 8 && !self.backslash {
                    if let (Some(chunk), Some(mask)) = (
                        input.get(s..).and_then(|r| r.first_chunk::<8>()),
                        HEAD_MASKS.get(len),
                    ) {
                        remembered = dfa.memo(level.state, u64::from_le_bytes(*chunk) & mask, len);
                    }
                }
                match remembered {
                    Some((next, matched)) => (next, Matched::<WIDE>::of(matched)),
                    None => {
                        let key = input.get(s..e).ok_or(Stop::GiveUp)?;
                        key_step::<WIDE>(dfa, matcher, level.state, input, s, key, !self.backslash)
                    }
                }
            } else {
                value_start = t;
                let (next, matched) = dfa.step(matcher, level.state, ChildKey::Index(level.index));
                (next, Matched::<WIDE>::of(matched))
            };
            let hit = matched.hits(forbidden, narrow);
            let value_end;
            if hit {
                let removed;
                (cur, value_end, removed) = self.act_on_hit(
                    cur,
                    matched.set().intersection(forbidden),
                    value_start,
                    depth,
                    PathSeg::Unknown,
                )?;
                if removed {
                    // The scalar redactor's cut: from the comma before the member when
                    // something before it in the container was kept, else from the
                    // member's start, and then the comma after it too.
                    if level.index > level.removed {
                        let comma_at = comma_before(input, member_start).ok_or(Stop::GiveUp)?;
                        self.edits.cut(comma_at, value_end);
                    } else {
                        self.edits.cut(member_start, value_end);
                        drop_comma = true;
                    }
                    level.removed += 1;
                }
            } else {
                if depth > MAX_DEPTH {
                    return Err(Stop::GiveUp);
                }
                match byte(value_start) {
                    // Nothing inside a string is a token: the next one is its closing
                    // quote.
                    b'"' => value_end = pop!() + 1,
                    open @ (b'{' | b'[') => {
                        let first = pop!();
                        if byte(first) == closing(open) {
                            // Empty: nothing below it to look at.
                            value_end = first + 1;
                        } else {
                            stack.push(level);
                            level = PlainLevel::new(child_state, open);
                            t = first;
                            continue 'member;
                        }
                    }
                    // A number or literal nothing matched: nothing below it to look at.
                    _ => {
                        value_end = match atom_end(input, value_start) {
                            Some(end) => end,
                            None => return Err(Stop::GiveUp),
                        }
                    }
                }
            }
            let _ = value_end;
            loop {
                let after = pop!();
                match byte(after) {
                    b',' => {
                        if drop_comma {
                            self.edits.cut(after, after + 1);
                            drop_comma = false;
                        }
                        level.index += 1;
                        t = pop!();
                        continue 'member;
                    }
                    b if b == level.close() => {
                        drop_comma = false;
                        let Some(parent) = stack.pop() else {
                            return Ok(cur);
                        };
                        level = parent;
                    }
                    _ => return Err(Stop::GiveUp),
                }
            }
        }
    }

    /// Redacts the root value, whose first token is at `first`. One loop over the tokens
    /// with the open containers on a stack; per member it does what the scalar
    /// redactor's `container` does, in the same order. For bodies with field paths or
    /// element rules; [`Walker::walk_plain`] does the rest.
    fn walk(
        &mut self,
        mut cur: Cursor,
        first: usize,
        root: u32,
        element_root: Option<u32>,
        forbidden: CategorySet,
    ) -> Result<Cursor, Stop> {
        let input = self.input;
        let rules = self.rules;
        let record_paths = rules.record_paths;
        let element_matcher: Option<&Matcher> = self.element_rules.map(|er| er.elements);
        let byte = |at: usize| input.get(at).copied().unwrap_or(0);
        macro_rules! pop {
            () => {
                match pop(self.masks, &mut cur) {
                    Some(at) => at,
                    None => return Err(Stop::GiveUp),
                }
            };
        }
        let open = byte(first);
        if !matches!(open, b'{' | b'[') {
            let (cur, _) = self.skip(cur, first, 0)?;
            return Ok(cur);
        }
        let mut t = pop!();
        if byte(t) == closing(open) {
            return Ok(cur);
        }
        let mut level = Level::new(root, element_root, forbidden, open);
        let mut stack: Vec<Level> = Vec::new();
        'member: loop {
            // A member (or element) of `level` starts at token `t`; `level` is at depth
            // `stack.len()`, its children one deeper.
            let depth = stack.len() + 1;
            let member_start = t;
            // The key as it is in the body, and decoded when it has escapes.
            let mut raw_key: &'a [u8] = &[];
            let mut decoded: Option<Vec<u8>> = None;
            let value_start;
            let key = if level.is_object {
                if byte(t) != b'"' {
                    return Err(Stop::GiveUp);
                }
                let (s, e) = (t + 1, pop!());
                let colon = pop!();
                if byte(colon) != b':' {
                    return Err(Stop::GiveUp);
                }
                value_start = pop!();
                raw_key = match input.get(s..e) {
                    Some(k) => k,
                    None => return Err(Stop::GiveUp),
                };
                // Keys followed by eight input bytes load their head in one go.
                let head = input
                    .get(s..)
                    .and_then(|r| r.first_chunk::<8>())
                    .map(|chunk| {
                        let mask = HEAD_MASKS.get(raw_key.len()).copied().unwrap_or(u64::MAX);
                        u64::from_le_bytes(*chunk) & mask
                    });
                if self.backslash && has_backslash(raw_key, head) {
                    decoded = Some(decode_string(raw_key, true).into_owned());
                }
                match (&decoded, head) {
                    (Some(d), _) => ChildKey::Key(d),
                    (None, Some(head)) => ChildKey::KeyWithHead(raw_key, head),
                    (None, None) => ChildKey::Key(raw_key),
                }
            } else {
                value_start = t;
                ChildKey::Index(level.index)
            };
            // Most keys are short and seen before: one memo compare, without building
            // the general key.
            let short = match (&key, decoded.is_none()) {
                (ChildKey::KeyWithHead(k, head), true) => Some((*head, k.len())),
                _ => None,
            };
            let step = |m: &Matcher, from: u32| {
                short
                    .and_then(|(head, len)| m.step_remembered(from, head, len))
                    .unwrap_or_else(|| m.step_id(from, key))
            };
            let (child_state, matched) = step(rules.matcher, level.state);
            let mut element_spec = None;
            let mut child_element_state = None;
            if let (Some(m), Some(es)) = (element_matcher, level.element_state) {
                let (next, specs) = step(m, es);
                element_spec = specs.iter().next();
                child_element_state = Some(next);
            }
            let hit = matched.intersection(level.forbidden);
            let seg = if record_paths {
                let key_bytes = match &decoded {
                    Some(d) => Cow::Owned(d.clone()),
                    None => Cow::Borrowed(raw_key),
                };
                child_segment(
                    rules,
                    element_matcher,
                    &key_bytes,
                    (!level.is_object).then_some(level.index),
                )
            } else {
                PathSeg::Unknown
            };
            let mut removed = false;
            // Where the value's children are walked: its selector state, element state
            // and forbidden set.
            let mut descend = None;
            let mut value_end = 0;
            if !hit.is_empty() {
                (cur, value_end, removed) = self.act_on_hit(cur, hit, value_start, depth, seg)?;
            } else if let Some(spec) = element_spec {
                match element_verdict(
                    self.element_rules,
                    self.verdict.as_deref_mut(),
                    input,
                    value_start,
                    spec,
                ) {
                    ElementVerdict::Drop => {
                        (cur, value_end) = self.skip(cur, value_start, depth)?;
                        self.edits.report.dropped_elements += 1;
                        self.edits.record(seg, None, HitAction::ElementDropped);
                        removed = true;
                    }
                    ElementVerdict::Forbid(element_forbidden) => {
                        descend = Some((child_state, None, element_forbidden, seg));
                    }
                }
            } else {
                descend = Some((child_state, child_element_state, level.forbidden, seg));
            }
            if let Some((state, element_state, forbidden, seg)) = descend {
                if depth > MAX_DEPTH {
                    return Err(Stop::GiveUp);
                }
                match byte(value_start) {
                    // Nothing inside a string is a token: the next one is its closing
                    // quote.
                    b'"' => value_end = pop!() + 1,
                    open @ (b'{' | b'[') => {
                        let first = pop!();
                        if byte(first) == closing(open) {
                            // Empty: nothing below it to look at.
                            value_end = first + 1;
                        } else {
                            self.edits.enter(seg);
                            stack.push(level);
                            level = Level::new(state, element_state, forbidden, open);
                            t = first;
                            continue 'member;
                        }
                    }
                    // A number or literal nothing matched: nothing below it to look at.
                    _ => {
                        value_end = match atom_end(input, value_start) {
                            Some(end) => end,
                            None => return Err(Stop::GiveUp),
                        }
                    }
                }
            }
            if removed {
                if level.kept_any {
                    self.edits.cut(level.comma_at, value_end);
                } else {
                    self.edits.cut(member_start, value_end);
                    level.drop_next_comma = true;
                }
            } else {
                level.kept_any = true;
                level.drop_next_comma = false;
            }
            // After a value of `level`: a comma, or the close of `level` (and then the
            // same question one level up).
            loop {
                let after = pop!();
                match byte(after) {
                    b',' => {
                        level.comma_at = after;
                        if level.drop_next_comma {
                            self.edits.cut(after, after + 1);
                            level.drop_next_comma = false;
                        }
                        level.index += 1;
                        t = pop!();
                        continue 'member;
                    }
                    b if b == level.close() => {
                        let Some(parent) = stack.pop() else {
                            return Ok(cur);
                        };
                        self.edits.leave();
                        level = parent;
                        level.kept_any = true;
                        level.drop_next_comma = false;
                    }
                    _ => return Err(Stop::GiveUp),
                }
            }
        }
    }
}
