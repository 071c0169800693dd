//! Compiled selectors: which categories a JSON member or element belongs to.
//!
//! `$..name` selectors (the common case) go into a name table checked once per key;
//! every other selector runs as a small NFA whose states move one step per nesting level.

use std::cell::RefCell;

use crate::policy::categories::{CategoryIdx, CategorySet};

use super::dfa::Dfa;
use super::selector::{Segment, Selector};

/// A position in one general selector: (selector, next step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    sel: u16,
    pos: u16,
}

/// What a child of a container is called: its decoded key or its index.
#[derive(Debug, Clone, Copy)]
pub enum ChildKey<'k> {
    /// Object member (decoded key bytes).
    Key(&'k [u8]),
    /// Object member with its first eight bytes already loaded as a little-endian word
    /// (zero-padded), which saves the name lookup a copy.
    KeyWithHead(&'k [u8], u64),
    /// Array element.
    Index(usize),
}

#[derive(Debug, Clone)]
struct NameEntry {
    name: Box<[u8]>,
    signature: u64,
    categories: CategorySet,
    key_step: bool,
}

/// The first eight bytes of a key with bit 5 set in each (so `A`-`Z` fold onto `a`-`z`),
/// as one word: a cheap hash input and filter; a hit is confirmed by a real compare.
#[inline]
fn signature(head: u64) -> u64 {
    head | 0x2020_2020_2020_2020
}

/// Loads up to eight bytes of `key` as a little-endian word, zero-padded.
#[inline]
pub fn head_word(key: &[u8]) -> u64 {
    if let Some(head) = key.first_chunk::<8>() {
        return u64::from_le_bytes(*head);
    }
    let mut w = 0u64;
    for (i, b) in key.iter().enumerate() {
        w |= u64::from(*b) << (8 * i);
    }
    w
}

#[inline]
fn slot_of(signature: u64, len: usize, slots: usize) -> usize {
    let h = (signature ^ (len as u64).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize & (slots - 1)
}

#[derive(Debug, Clone)]
enum Step {
    /// A member whose name is `names[id]`.
    Key(u16),
    AnyKey,
    AnyIndex,
    Index(usize),
    /// Zero or more levels (an epsilon loop).
    AnyDepth,
}

#[derive(Debug, Clone)]
struct General {
    steps: Vec<Step>,
    category: CategoryIdx,
}

/// Selectors of every category, compiled for matching.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Names worth comparing: each with the categories of its `$..name` selectors and
    /// whether some general selector has it as a `Key` step. A key absent from this table
    /// can only move positional steps (`*`, `[*]`, `[n]`).
    names: Vec<NameEntry>,
    /// Open-addressing index over `names` (entry index + 1; 0 is empty).
    slots: Vec<u16>,
    general: Vec<General>,
    /// Every category that has at least one selector.
    pub categories: CategorySet,
    /// State sets and transitions seen so far, built lazily as bodies are read.
    dfa: RefCell<Dfa>,
}

/// The key of a child as the general selectors see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfaKey {
    /// A member whose name is the given `Key`-step name id, or `None` for any other name.
    Name(Option<u16>),
    /// An array element.
    Index(usize),
}

impl Matcher {
    /// Adds one selector for `category`.
    pub fn add(&mut self, selector: &Selector, category: CategoryIdx) -> Result<(), String> {
        self.categories.insert(category);
        if let [Segment::Descend(name)] = selector.segments.as_slice() {
            let id = self.name_id(name.as_bytes())?;
            self.entry_mut(id)?.categories.insert(category);
            return Ok(());
        }
        let mut steps = Vec::new();
        for seg in &selector.segments {
            match seg {
                Segment::Key(n) => {
                    let id = self.name_id(n.as_bytes())?;
                    self.entry_mut(id)?.key_step = true;
                    steps.push(Step::Key(id))
                }
                Segment::AnyKey => steps.push(Step::AnyKey),
                Segment::AnyIndex => steps.push(Step::AnyIndex),
                Segment::Index(i) => steps.push(Step::Index(*i)),
                Segment::Descend(n) => {
                    let id = self.name_id(n.as_bytes())?;
                    self.entry_mut(id)?.key_step = true;
                    steps.push(Step::AnyDepth);
                    steps.push(Step::Key(id));
                }
                Segment::DescendAny => steps.push(Step::AnyDepth),
            }
        }
        if self.general.len() >= usize::from(u16::MAX) || steps.len() >= usize::from(u16::MAX) {
            return Err("too many selectors".to_string());
        }
        self.general.push(General { steps, category });
        Ok(())
    }

    /// The id of a (lowercase) name, adding it to the table if new.
    fn name_id(&mut self, name: &[u8]) -> Result<u16, String> {
        if let Some((id, _)) = self.name(name) {
            return Ok(id);
        }
        let id =
            u16::try_from(self.names.len()).map_err(|_| "too many selector names".to_string())?;
        self.names.push(NameEntry {
            name: name.into(),
            signature: signature(head_word(name)),
            categories: CategorySet::EMPTY,
            key_step: false,
        });
        self.rebuild_slots();
        Ok(id)
    }

    fn entry_mut(&mut self, id: u16) -> Result<&mut NameEntry, String> {
        self.names
            .get_mut(usize::from(id))
            .ok_or_else(|| "selector name table out of step".to_string())
    }

    fn rebuild_slots(&mut self) {
        let size = (self.names.len() * 4).next_power_of_two().max(64);
        let mut slots = vec![0u16; size];
        for (i, entry) in self.names.iter().enumerate() {
            let mut at = slot_of(entry.signature, entry.name.len(), size);
            while slots.get(at).is_some_and(|s| *s != 0) {
                at = (at + 1) & (size - 1);
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = u16::try_from(i + 1).unwrap_or(u16::MAX);
            }
        }
        self.slots = slots;
    }

    /// Whether some selector names `key` (a `$..name` or a `Key` step): such names may
    /// appear in logged field paths.
    pub fn knows_name(&self, key: &[u8]) -> bool {
        self.name_with_head(key, head_word(key)).is_some()
    }

    /// The categories a key's name carries through `$..name` selectors, and its id when
    /// some general selector has it as a `Key` step.
    #[inline]
    pub fn classify(&self, key: ChildKey<'_>) -> (CategorySet, Option<u16>) {
        match key {
            ChildKey::Key(k) => self.classify_name(k, head_word(k)),
            ChildKey::KeyWithHead(k, head) => self.classify_name(k, head),
            ChildKey::Index(_) => (CategorySet::EMPTY, None),
        }
    }

    #[inline]
    fn classify_name(&self, key: &[u8], head: u64) -> (CategorySet, Option<u16>) {
        match self.name_with_head(key, head) {
            Some((id, entry)) => (entry.categories, entry.key_step.then_some(id)),
            None => (CategorySet::EMPTY, None),
        }
    }

    /// The general-selector part of a step: pushes the states `parent` reaches on `key`
    /// (not the carry) and returns the categories completed.
    pub fn advance_general(
        &self,
        parent: &[State],
        key: NfaKey,
        out: &mut Vec<State>,
    ) -> CategorySet {
        let mut matched = CategorySet::EMPTY;
        for &state in parent {
            let advance = match (self.step_at(state), key) {
                (Some(Step::Key(id)), NfaKey::Name(name)) => name == Some(*id),
                (Some(Step::AnyKey), NfaKey::Name(_))
                | (Some(Step::AnyIndex), NfaKey::Index(_)) => true,
                (Some(Step::Index(n)), NfaKey::Index(i)) => *n == i,
                _ => false,
            };
            if advance {
                self.enter(
                    State {
                        sel: state.sel,
                        pos: state.pos + 1,
                    },
                    out,
                    &mut matched,
                );
            }
        }
        matched
    }

    /// The exact indexes some `[n]` step of `states` waits for.
    pub fn index_constants(&self, states: &[State]) -> Vec<usize> {
        states
            .iter()
            .filter_map(|&s| match self.step_at(s) {
                Some(Step::Index(n)) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// The id of the root state set, for [`Matcher::step_id`].
    pub fn root_id(&self) -> u32 {
        {
            let mut dfa = self.dfa.borrow_mut();
            dfa.trim();
            if let Some(id) = dfa.root() {
                return id;
            }
        }
        let mut states = Vec::new();
        self.root_states(&mut states);
        let mut dfa = self.dfa.borrow_mut();
        let id = dfa.intern(self, states);
        dfa.set_root(id);
        id
    }

    /// One step from the state set `from` to a child, through the lazily built DFA: the
    /// child's state set id and the categories the child belongs to.
    #[inline]
    pub fn step_id(&self, from: u32, key: ChildKey<'_>) -> (u32, CategorySet) {
        self.dfa.borrow_mut().step(self, from, key)
    }

    /// The lazily built DFA, borrowed for a whole pass that calls nothing else that
    /// could step this matcher (`None` if it is borrowed already).
    pub(crate) fn hold_dfa(&self) -> Option<std::cell::RefMut<'_, Dfa>> {
        self.dfa.try_borrow_mut().ok()
    }

    /// [`Matcher::step_id`] for an unescaped key of at most eight bytes (`head`: its bytes
    /// as a little-endian word, zero-padded), when the DFA remembers that step; `None`
    /// sends the caller to `step_id`.
    #[inline(always)]
    pub fn step_remembered(&self, from: u32, head: u64, len: usize) -> Option<(u32, CategorySet)> {
        if len > 8 {
            return None;
        }
        self.dfa.try_borrow().ok()?.memo(from, head, len)
    }

    /// Whether any selector exists.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// States at the root of a document.
    pub fn root_states(&self, out: &mut Vec<State>) {
        for (sel, _) in self.general.iter().enumerate() {
            if let Ok(sel) = u16::try_from(sel) {
                let mut ignored = CategorySet::EMPTY;
                self.enter(State { sel, pos: 0 }, out, &mut ignored);
            }
        }
    }

    /// Moves `parent` states to a child (the NFA walk, without the DFA cache); pushes the
    /// child's states to `out` and returns the categories the child itself belongs to.
    pub fn step(&self, parent: &[State], key: ChildKey<'_>, out: &mut Vec<State>) -> CategorySet {
        self.carry(parent, out);
        let (name_categories, name_id) = self.classify(key);
        let nfa_key = match key {
            ChildKey::Index(i) => NfaKey::Index(i),
            ChildKey::Key(_) | ChildKey::KeyWithHead(..) => NfaKey::Name(name_id),
        };
        let mut extra = Vec::new();
        let matched = self.advance_general(parent, nfa_key, &mut extra);
        for state in extra {
            push_unique(out, state);
        }
        matched.union(name_categories)
    }

    /// The states every child of a container inherits whatever its key: the `..` loops
    /// and what they reach without consuming a level. Compute once per container.
    pub fn carry(&self, parent: &[State], out: &mut Vec<State>) {
        let mut ignored = CategorySet::EMPTY;
        for &state in parent {
            if let Some(Step::AnyDepth) = self.step_at(state) {
                self.enter(state, out, &mut ignored);
            }
        }
    }

    fn step_at(&self, state: State) -> Option<&Step> {
        self.general
            .get(usize::from(state.sel))
            .and_then(|g| g.steps.get(usize::from(state.pos)))
    }

    /// Adds `state` (and what it reaches without consuming a level) to `out`, or records a
    /// match when the selector is complete.
    fn enter(&self, state: State, out: &mut Vec<State>, matched: &mut CategorySet) {
        let Some(general) = self.general.get(usize::from(state.sel)) else {
            return;
        };
        match general.steps.get(usize::from(state.pos)) {
            None => matched.insert(general.category),
            Some(Step::AnyDepth) => {
                push_unique(out, state);
                self.enter(
                    State {
                        sel: state.sel,
                        pos: state.pos + 1,
                    },
                    out,
                    matched,
                );
            }
            Some(_) => push_unique(out, state),
        }
    }

    /// Finds a key in the name table (ASCII case-insensitively).
    #[inline]
    fn name(&self, key: &[u8]) -> Option<(u16, &NameEntry)> {
        self.name_with_head(key, head_word(key))
    }

    #[inline]
    fn name_with_head(&self, key: &[u8], head: u64) -> Option<(u16, &NameEntry)> {
        if self.slots.is_empty() {
            return None;
        }
        let sig = signature(head);
        let size = self.slots.len();
        let mut at = slot_of(sig, key.len(), size);
        loop {
            let slot = *self.slots.get(at)?;
            if slot == 0 {
                return None;
            }
            let id = slot - 1;
            let entry = self.names.get(usize::from(id))?;
            if entry.signature == sig
                && entry.name.len() == key.len()
                && entry.name.as_ref().eq_ignore_ascii_case(key)
            {
                return Some((id, entry));
            }
            at = (at + 1) & (size - 1);
        }
    }
}

/// Adds a state to a set kept as a small vector.
pub fn push_unique(out: &mut Vec<State>, state: State) {
    if !out.contains(&state) {
        out.push(state);
    }
}

#[cfg(test)]
mod tests {
    use super::super::selector::parse_selector;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn matcher(sels: &[(&str, u8)]) -> Matcher {
        let mut m = Matcher::default();
        for (s, c) in sels {
            m.add(&parse_selector(s).unwrap(), CategoryIdx(*c)).unwrap();
        }
        m
    }

    /// Walks a path of keys/indexes from the root, returning the categories of the last child.
    fn walk(m: &Matcher, path: &[ChildKey<'_>]) -> CategorySet {
        let mut states = Vec::new();
        m.root_states(&mut states);
        let mut cats = CategorySet::EMPTY;
        for key in path {
            let mut next = Vec::new();
            cats = m.step(&states, *key, &mut next);
            states = next;
        }
        cats
    }

    #[test]
    fn exact_paths_match_only_there() {
        let m = matcher(&[("$.user.email", 1)]);
        assert!(
            walk(&m, &[ChildKey::Key(b"user"), ChildKey::Key(b"email")]).contains(CategoryIdx(1))
        );
        assert!(walk(&m, &[ChildKey::Key(b"email")]).is_empty());
        assert!(walk(
            &m,
            &[
                ChildKey::Key(b"x"),
                ChildKey::Key(b"user"),
                ChildKey::Key(b"email")
            ]
        )
        .is_empty());
    }

    #[test]
    fn array_wildcards_match_every_element() {
        let m = matcher(&[("$.transactions[*].merchant", 2)]);
        for i in [0, 7] {
            let path = [
                ChildKey::Key(b"transactions"),
                ChildKey::Index(i),
                ChildKey::Key(b"merchant"),
            ];
            assert!(walk(&m, &path).contains(CategoryIdx(2)));
        }
        let path = [
            ChildKey::Key(b"transactions"),
            ChildKey::Key(b"x"),
            ChildKey::Key(b"merchant"),
        ];
        assert!(walk(&m, &path).is_empty());
    }

    #[test]
    fn recursive_names_match_at_any_depth_case_insensitively() {
        let m = matcher(&[("$..gps", 3)]);
        assert!(walk(&m, &[ChildKey::Key(b"GPS")]).contains(CategoryIdx(3)));
        let deep = [
            ChildKey::Key(b"a"),
            ChildKey::Index(4),
            ChildKey::Key(b"b"),
            ChildKey::Key(b"Gps"),
        ];
        assert!(walk(&m, &deep).contains(CategoryIdx(3)));
    }

    #[test]
    fn recursive_descent_followed_by_more_steps() {
        let m = matcher(&[("$..location.lat", 4), ("$..*.lng", 5)]);
        let p = [
            ChildKey::Key(b"a"),
            ChildKey::Key(b"location"),
            ChildKey::Key(b"lat"),
        ];
        assert!(walk(&m, &p).contains(CategoryIdx(4)));
        assert!(
            walk(&m, &[ChildKey::Key(b"location"), ChildKey::Key(b"lat")]).contains(CategoryIdx(4))
        );
        assert!(walk(&m, &[ChildKey::Key(b"lat")]).is_empty());
        assert!(walk(
            &m,
            &[
                ChildKey::Key(b"q"),
                ChildKey::Index(0),
                ChildKey::Key(b"lng")
            ]
        )
        .contains(CategoryIdx(5)));
    }

    #[test]
    fn names_differing_only_in_punctuation_case_are_not_confused() {
        let m = matcher(&[("$..a_b", 1)]);
        assert!(walk(&m, &[ChildKey::Key(b"A_B")]).contains(CategoryIdx(1)));
        assert!(walk(&m, &[ChildKey::Key(b"a\x7fb")]).is_empty());
    }

    #[test]
    fn specific_indexes_match_only_that_element() {
        let m = matcher(&[("$.a[1]", 6)]);
        assert!(walk(&m, &[ChildKey::Key(b"a"), ChildKey::Index(1)]).contains(CategoryIdx(6)));
        assert!(walk(&m, &[ChildKey::Key(b"a"), ChildKey::Index(0)]).is_empty());
    }
}
